#!/usr/bin/env python
"""Write a trained VCQPipeline folder into the package as the bundled demo checkpoint (`src/vcq_hf/demo/`).

The pipeline is loaded from `--pipeline_dir` and written with `VCQPipeline.save_pretrained`, so the demo has the
layout of every saved pipeline (`vcq_hf/hub/pipeline.py`): weights and configs, the model code (it loads with
`DiffusionPipeline.from_pretrained(demo, trust_remote_code=True)` without vcq_hf) and `vq_model/`'s image processor
config (the tokenizer's own `preprocessor_config.json` from `--tokenizer_dir` when it has one); its README is the
demo model card (`vcq_hf.hub.model_card.build_demo_card`). The training summaries of both stages, evaluation results and the sample grid travel along; checkpoints, logs and
optimizer states stay behind. The written folder is reloaded and sampled once before it replaces the old demo.
Re-exporting the demo onto itself (`--pipeline_dir src/vcq_hf/demo`) keeps everything and refreshes the layout.

`--vq_model_dir` swaps in a tokenizer whose decoder was retrained with `train_tokenizer.py --decoder_only` (tokenizer
v2: the conv pixel decoder on the frozen encoder and codebook). Its codebook must equal the pipeline's, so the codes
and the prior trained on them stay valid; its `training_summary.json` travels as `training_summary_decoder.json`.

    python benchmarks/export_demo.py --pipeline_dir runs/reproduce_small/ar-log \
        --tokenizer_dir runs/reproduce_small/tokenizer-log --output_dir src/vcq_hf/demo
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch


# pipeline_dir file -> demo file, besides what save_pretrained writes; plus every evaluation*.json and
# training_summary_*.json at the top of pipeline_dir.
TOP_LEVEL_FILES = {
    "README.md": "README.md",
    "training_summary.json": "training_summary_ar.json",
    "sample_grid.png": "sample_grid.png",
}
TOP_LEVEL_PATTERNS = ("evaluation*.json", "training_summary_*.json")


def same_codes(vq_model: torch.nn.Module, reference: torch.nn.Module) -> bool:
    """Whether two tokenizers turn every image into the same codes: equal schedules, and equal encoder and codebook
    weights (the decoder and the quantizer's usage statistics may differ, as after `train_tokenizer.py --decoder_only`)."""
    if vq_model.config.codebook_sizes != reference.config.codebook_sizes:
        return False
    ours, theirs = dict(vq_model.named_parameters()), dict(reference.named_parameters())
    names = [name for name in theirs if not name.startswith("decoder.")]
    return all(name in ours and torch.equal(ours[name], theirs[name]) for name in names)


def export_demo(
    pipeline_dir: Path,
    tokenizer_dir: Path | None,
    output_dir: Path,
    max_megabytes: float = 25.0,
    vq_model_dir: Path | None = None,
) -> int:
    from vcq_hf import VCQImageProcessor, VCQPipeline, VCQVQModel
    from vcq_hf.hub.model_card import build_demo_card
    from vcq_hf.training_utils.checkpointing import weights_fingerprint
    from vcq_hf.training_utils.files import replace_folder, sibling_temp_folder

    if not (pipeline_dir / "model_index.json").exists():
        raise FileNotFoundError(f"{pipeline_dir} is not a VCQPipeline folder (no model_index.json).")
    staging = sibling_temp_folder(output_dir, "export")
    copies = {pipeline_dir / name: staging / target for name, target in TOP_LEVEL_FILES.items()}
    copies.update({path: staging / path.name for pattern in TOP_LEVEL_PATTERNS for path in pipeline_dir.glob(pattern)})
    for source, target in copies.items():
        if source.is_file():
            shutil.copy(source, target)  # before save_pretrained, which keeps an existing README.md
    if tokenizer_dir is not None and (tokenizer_dir / "training_summary.json").exists():
        shutil.copy(tokenizer_dir / "training_summary.json", staging / "training_summary_tokenizer.json")
    for processor_dir in (tokenizer_dir, pipeline_dir / "vq_model"):  # the tokenizer's own settings first
        if processor_dir is not None and (processor_dir / "preprocessor_config.json").exists():
            VCQImageProcessor.from_pretrained(processor_dir).save_pretrained(staging / "vq_model")
            break
    pipe = VCQPipeline.from_pretrained(pipeline_dir)
    if vq_model_dir is not None:
        vq_model = VCQVQModel.from_pretrained(vq_model_dir)
        if not same_codes(vq_model, pipe.vq_model):
            shutil.rmtree(staging)
            raise ValueError(
                f"{vq_model_dir} has another encoder or codebook than {pipeline_dir}'s tokenizer: the prior was not trained on "
                "its codes. Retrain only the decoder (train_tokenizer.py --decoder_only) or train a new prior."
            )
        pipe.register_modules(vq_model=vq_model)
        # The prior is paired with its tokenizer by a fingerprint of all its weights (train_ar.py); the decoder swap
        # keeps the codes (checked above), so the pair is re-made for the new decoder.
        pipe.transformer.config.vq_model_fingerprint = weights_fingerprint(vq_model)
        if (vq_model_dir / "training_summary.json").exists():
            shutil.copy(vq_model_dir / "training_summary.json", staging / "training_summary_decoder.json")
    pipe.save_pretrained(staging)
    # The folder's own card is the demo card (Hub metadata, measured results, install, citation), built from the files
    # just written; the training card it replaces is where the prior's command is read from, so it is built first.
    build_demo_card(staging, card_dir=staging).save(str(staging / "README.md"))
    size = sum(path.stat().st_size for path in staging.rglob("*") if path.is_file())
    if size > max_megabytes * 2**20:
        shutil.rmtree(staging)
        raise ValueError(f"The demo would take {size / 2**20:.1f} MB; the limit is {max_megabytes} MB.")
    pipe = VCQPipeline.from_pretrained(staging)  # must load and sample before it replaces the old demo
    pipe.set_progress_bar_config(disable=True)
    pipe(class_labels=[0], generator=torch.manual_seed(0), output_type="latent")
    replace_folder(staging, output_dir, marker="model_index.json")
    return size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline_dir", type=Path, required=True)
    parser.add_argument("--tokenizer_dir", type=Path, default=None)
    parser.add_argument(
        "--vq_model_dir",
        type=Path,
        default=None,
        help="A decoder-only retrained tokenizer to swap in (same codebook).",
    )
    parser.add_argument("--output_dir", type=Path, default=Path(__file__).resolve().parents[1] / "src/vcq_hf/demo")
    args = parser.parse_args(argv)
    size = export_demo(args.pipeline_dir, args.tokenizer_dir, args.output_dir, vq_model_dir=args.vq_model_dir)
    print(f"demo written to {args.output_dir} ({size / 2**20:.1f} MB)")


if __name__ == "__main__":
    main()
