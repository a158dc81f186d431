#!/usr/bin/env python
"""Copy a trained VCQPipeline folder into the package as the bundled demo checkpoint (`src/vcq_hf/demo/`).

Only what loading needs and what documents it travels: `model_index.json`, `vq_model/` and `transformer/` (config
JSON + safetensors), the model card, the training summaries of both stages and the sample grid. Checkpoints, logs
and optimizer states stay behind. The pipeline is reloaded and sampled once as a check.

    python benchmarks/export_demo.py --pipeline_dir runs/reproduce_small/ar-log \
        --tokenizer_dir runs/reproduce_small/tokenizer-log --output_dir src/vcq_hf/demo
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch


KEEP_SUFFIXES = {".json", ".safetensors", ".txt"}


def export_demo(pipeline_dir: Path, tokenizer_dir: Path | None, output_dir: Path, max_megabytes: float = 25.0) -> int:
    from vcq_hf import VCQPipeline

    if not (pipeline_dir / "model_index.json").exists():
        raise FileNotFoundError(f"{pipeline_dir} is not a VCQPipeline folder (no model_index.json).")
    staging = output_dir.with_name(output_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    shutil.copy(pipeline_dir / "model_index.json", staging)
    for component in ("vq_model", "transformer"):
        (staging / component).mkdir()
        for path in (pipeline_dir / component).iterdir():
            if path.suffix in KEEP_SUFFIXES:
                shutil.copy(path, staging / component / path.name)
    for name, target in (
        ("README.md", "README.md"),
        ("training_summary.json", "training_summary_ar.json"),
        ("sample_grid.png", "sample_grid.png"),
    ):
        if (pipeline_dir / name).exists():
            shutil.copy(pipeline_dir / name, staging / target)
    if tokenizer_dir is not None and (tokenizer_dir / "training_summary.json").exists():
        shutil.copy(tokenizer_dir / "training_summary.json", staging / "training_summary_tokenizer.json")
    size = sum(path.stat().st_size for path in staging.rglob("*") if path.is_file())
    if size > max_megabytes * 2**20:
        shutil.rmtree(staging)
        raise ValueError(f"The demo would take {size / 2**20:.1f} MB; the limit is {max_megabytes} MB.")
    pipe = VCQPipeline.from_pretrained(staging)  # must load and sample before it replaces the old demo
    pipe.set_progress_bar_config(disable=True)
    pipe(class_labels=[0], generator=torch.manual_seed(0), output_type="latent")
    shutil.rmtree(output_dir, ignore_errors=True)
    staging.rename(output_dir)
    return size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline_dir", type=Path, required=True)
    parser.add_argument("--tokenizer_dir", type=Path, default=None)
    parser.add_argument("--output_dir", type=Path, default=Path(__file__).resolve().parents[1] / "src/vcq_hf/demo")
    args = parser.parse_args(argv)
    size = export_demo(args.pipeline_dir, args.tokenizer_dir, args.output_dir)
    print(f"demo written to {args.output_dir} ({size / 2**20:.1f} MB)")


if __name__ == "__main__":
    main()
