"""Helpers shared by the example scripts that sample a trained `VCQPipeline` (`examples/sample.py`,
`examples/evaluate_pipeline.py`): the sampling flags and their checks, the `Accelerator` and pipeline set-up, class
selection by id or name, per-image generators, the batched pipeline call and the sampling settings recorded next to
the results. Promoted from `examples/sampling_utils.py` so that the scripts import the library, not each other.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from vcq_hf.pipeline_vcq import VCQPipeline
from vcq_hf.sampling import DEFAULT_GUIDANCE_SCALE, GUIDANCE_SCHEDULES, check_sampling_settings
from vcq_hf.training_utils import scripts as tu


def add_sampling_args(parser: argparse.ArgumentParser) -> None:
    """Add the guidance and sampling flags (`VCQPipeline.__call__` arguments) and the per-call batch size. A flag
    left unset takes the pipeline's default (the checkpoint's generation_config, else vcq_hf.sampling's)."""
    default = "default: the checkpoint's generation_config, else"
    parser.add_argument("--guidance_scale", type=float, default=None, help=f"({default} {DEFAULT_GUIDANCE_SCALE})")
    parser.add_argument("--guidance_schedule", type=str, default=None, choices=GUIDANCE_SCHEDULES)
    parser.add_argument("--temperature", type=float, default=None, help=f"({default} 1.0)")
    parser.add_argument("--top_k", type=int, default=None, help=f">= 1 ({default} off)")
    parser.add_argument("--top_p", type=float, default=None, help=f"1 = off ({default} off)")
    parser.add_argument("--batch_size", type=int, default=64, help="Images per pipeline call per process.")


def check_sampling_args(args: argparse.Namespace) -> None:
    """Range checks of the flags `add_sampling_args` adds. Raises `ValueError` naming the bad value."""
    if args.batch_size < 1:
        raise ValueError(f"--batch_size = {args.batch_size} must be >= 1.")
    check_sampling_settings(  # the pipeline's own checks, before a model is loaded
        guidance_scale=args.guidance_scale,
        guidance_schedule=args.guidance_schedule,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
    )


def check_pipeline_path(pipeline_path: str) -> None:
    """Raise `ValueError` unless `pipeline_path` is a saved pipeline folder (has `model_index.json`)."""
    if not os.path.isfile(os.path.join(pipeline_path, "model_index.json")):
        raise ValueError(f"--pipeline_path {pipeline_path!r} has no model_index.json (train_ar.py output?).")


def load_pipeline(args: argparse.Namespace) -> tuple[Accelerator, VCQPipeline]:
    """An `Accelerator` with --mixed_precision and the scripts' logging, and the pipeline from --pipeline_path on its
    device with the per-step progress bar off."""
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    tu.setup_logging(accelerator)
    pipeline = VCQPipeline.from_pretrained(args.pipeline_path).to(accelerator.device)
    pipeline.set_progress_bar_config(disable=True)
    # unset sampling flags take the pipeline's defaults, so the recorded settings are the ones sampled with
    settings = pipeline.resolve_sampling_settings(
        guidance_scale=args.guidance_scale,
        guidance_schedule=args.guidance_schedule,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
    )
    for name in ("guidance_scale", "guidance_schedule", "temperature", "top_k", "top_p"):
        setattr(args, name, settings[name])
    return accelerator, pipeline


def resolve_classes(pipeline: VCQPipeline, class_labels: list[str] | None) -> list[int]:
    """Class ids from --class_labels (ids or names, resolved by the pipeline), all classes when empty."""
    if not class_labels:
        return list(range(pipeline.num_classes))
    return pipeline.resolve_class_labels(class_labels)


def class_names(pipeline: VCQPipeline, classes: Sequence[int]) -> list[str]:
    """The pipeline's name of each class id (the id itself where it has none)."""
    return [pipeline.id2label.get(c, str(c)) for c in classes]


def index_batches(accelerator: Accelerator, indices: Sequence[int], batch_size: int) -> Iterator[Sequence[int]]:
    """This process's sample indices in consecutive batches, with a progress bar on the local main process."""
    batches = range(0, len(indices), batch_size)
    for start in tqdm(batches, desc="Sampling", disable=not accelerator.is_local_main_process):
        yield indices[start : start + batch_size]


def sample_generators(seed: int, indices: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per image, seeded from (seed, image index): images do not depend on batching or ranks."""
    return [tu.seeded_generator(seed, i) for i in indices]


def generate(
    accelerator: Accelerator,
    pipeline: VCQPipeline,
    args: argparse.Namespace,
    class_labels: list[int],
    generators: list[torch.Generator],
    output_type: str,
    return_codes: bool = False,
) -> Any:
    """One pipeline call under `accelerator.autocast()` with the sampling flags; returns its `.images` (and, with
    `return_codes`, the `(B, T)` sampled codes as a second value)."""
    with accelerator.autocast():
        output = pipeline(
            class_labels=class_labels,
            guidance_scale=args.guidance_scale,
            guidance_schedule=args.guidance_schedule,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            generator=generators,
            output_type=output_type,
        )
    return (output.images, output.codes) if return_codes else output.images


def sampling_settings(args: argparse.Namespace, accelerator: Accelerator) -> dict[str, Any]:
    """The settings a result depends on, recorded in `sample_info.json` / `metrics.json`."""
    return {
        "guidance_scale": args.guidance_scale,
        "guidance_schedule": args.guidance_schedule,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "seed": args.seed,
        "num_processes": accelerator.num_processes,
    }
