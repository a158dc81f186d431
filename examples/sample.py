#!/usr/bin/env python
"""Sample N class-balanced images from a trained `VCQPipeline` on any number of processes.

Image i gets class `classes[i % len(classes)]` and its own generator seeded with `(seed, i)`, so the result does not
depend on the number of processes or the batch size. Each rank samples a contiguous block of indices; after every
batch `gather_object` brings the images to rank 0 (no shared file system needed), which writes the PNGs and
`samples.npz` (`arr_0`: uint8 (N, H, W, 3), the format of the ADM evaluator used by ImageNet papers; `labels`:
int64 (N,); `codes`: int64 (N, T), the sampled image codes, for `vcq analyze copies`) and `sample_info.json`. PNGs go to `output_dir/images/<index>_<class id>.png` unless `--no_png`.

    accelerate launch --num_processes 8 examples/sample.py --model vcq-imagenet \
        --num_samples 50000 --guidance_scale 2.0 --batch_size 125 --output_dir samples-50k
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
from accelerate.logging import get_logger
from accelerate.utils import gather_object
from PIL import Image
from tqdm.auto import tqdm

from vcq_hf.training_utils import sampling as su
from vcq_hf.training_utils import scripts as tu
from vcq_hf.training_utils.files import atomic_write_json


logger = get_logger(__name__, log_level="INFO")


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[1], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--model",
        "--pipeline_path",
        dest="pipeline_path",
        type=str,
        required=True,
        help="A VCQPipeline folder, train_ar.py's output (as `vcq generate --model`; --pipeline_path is the older "
        "spelling).",
    )
    parser.add_argument("--output_dir", type=str, required=True)
    parser.add_argument("--num_samples", type=int, default=50000, help="Total number of images N.")
    parser.add_argument(
        "--class_labels",
        type=str,
        nargs="*",
        default=None,
        help="Class ids or names to sample (default: all classes of the pipeline), balanced round-robin.",
    )
    su.add_sampling_args(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_png", action="store_true", help="Write only the .npz, no PNG files.")
    parser.add_argument("--npz_name", type=str, default="samples.npz")
    parser.add_argument("--mixed_precision", type=str, default=None, choices=["no", "fp16", "bf16"])
    args = parser.parse_args(input_args)
    if args.num_samples < 1:
        raise ValueError(f"--num_samples = {args.num_samples} must be >= 1.")
    tu.check_finite_flags(args)  # NaN passes every range check
    su.check_sampling_args(args)
    if not args.npz_name.endswith(".npz"):
        raise ValueError(f"--npz_name {args.npz_name!r} must end with .npz.")
    if os.path.basename(args.npz_name) != args.npz_name or args.npz_name.startswith("."):
        raise ValueError(
            f"--npz_name {args.npz_name!r} must be a plain file name (it is written inside --output_dir); use "
            "--output_dir to choose the folder."
        )
    su.check_pipeline_path(args.pipeline_path)
    return args


def main(args: argparse.Namespace) -> Path:
    start_time = time.time()
    accelerator, pipeline = su.load_pipeline(args)
    classes = su.resolve_classes(pipeline, args.class_labels)
    labels = [classes[i % len(classes)] for i in range(args.num_samples)]

    output_dir = Path(args.output_dir)
    image_dir = output_dir / "images"
    if accelerator.is_main_process:
        (output_dir if args.no_png else image_dir).mkdir(parents=True, exist_ok=True)

    samples: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    # Ranks hold at most ceil(N / P) indices; every rank takes part in the same number of gathers.
    num_batches = math.ceil(math.ceil(args.num_samples / accelerator.num_processes) / args.batch_size)
    with accelerator.split_between_processes(list(range(args.num_samples))) as indices:
        batches = [indices[start : start + args.batch_size] for start in range(0, len(indices), args.batch_size)]
        for step in tqdm(range(num_batches), desc="Sampling", disable=not accelerator.is_local_main_process):
            batch = batches[step] if step < len(batches) else []
            local = []
            if batch:
                generators = su.sample_generators(args.seed, batch)
                # (B, H, W, C) in [0, 1]; (B, T) codes
                images, codes = su.generate(
                    accelerator, pipeline, args, [labels[i] for i in batch], generators, "np", return_codes=True
                )
                uint8 = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
                if uint8.shape[-1] == 1:
                    uint8 = np.repeat(uint8, 3, axis=-1)
                local = list(zip(batch, uint8, codes.cpu().numpy().astype(np.int64)))
            for index, image, image_codes in gather_object(local):
                if accelerator.is_main_process:
                    samples[index] = (image, image_codes)
                    if not args.no_png:
                        Image.fromarray(image).save(image_dir / f"{index:06d}_{labels[index]}.png")

    npz_path = output_dir / args.npz_name
    if accelerator.is_main_process:
        if sorted(samples) != list(range(args.num_samples)):
            raise RuntimeError(f"The gathered samples do not cover 0..{args.num_samples - 1}.")
        images = np.stack([samples[i][0] for i in range(args.num_samples)])
        codes = np.stack([samples[i][1] for i in range(args.num_samples)])
        tmp = output_dir / f".{args.npz_name}.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, arr_0=images, labels=np.asarray(labels, dtype=np.int64), codes=codes)
        os.replace(tmp, npz_path)
        atomic_write_json(
            output_dir / "sample_info.json",
            {
                "pipeline_path": str(Path(args.pipeline_path).resolve()),
                "num_samples": args.num_samples,
                "classes": classes,
                "class_names": su.class_names(pipeline, classes),
                **su.sampling_settings(args, accelerator),
                "shape": list(images.shape),
                "wall_time_s": round(time.time() - start_time, 1),
            },
        )
        logger.info(f"Wrote {len(images)} samples to {npz_path} in {time.time() - start_time:.1f} s.")
    accelerator.wait_for_everyone()
    return npz_path


if __name__ == "__main__":
    tu.run_script(main, parse_args)
