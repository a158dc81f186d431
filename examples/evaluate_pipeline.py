#!/usr/bin/env python
"""Evaluate a trained `VCQPipeline`: sample N images per class and score them against a reference split.

Every process samples a contiguous block of the N x C images (image i gets its own generator seeded with (seed, i),
so results do not depend on the number of processes or the batch size), quantises them to uint8 as a PNG would
store them, and computes the features and logits of each requested extractor on its own device. Rank 0 gathers
them, extracts the reference features and writes `metrics.json` with FID, KID, precision/recall and IS per
extractor (keys labelled by extractor, e.g. "FID-FMNIST-CNN"), the sampling settings and the wall time; with
`--save_npz` also `samples.npz` in the ADM-evaluator format (`arr_0` uint8 (N, H, W, 3), `arr_1` labels).

    accelerate launch --num_processes 2 examples/evaluate_pipeline.py --model vcq-fmnist \
        --reference_dataset fashion-mnist --reference_split test --num_samples_per_class 1000 \
        --feature_extractors fmnist-cnn --output_dir eval-fmnist --save_npz

Reference data: a built-in data set name (`fashion-mnist`, `emoji`, `digits`, see `vcq_hf.data`), a `datasets`
folder saved with `save_to_disk`, an image folder (class sub-folders), or an ADM `.npz`. Extractors: `fmnist-cnn`
(shipped Fashion-MNIST classifier), `effnet-lite0` (extra `metrics`), `inception-v3` (with `--inception_weights` or
`$VCQ_INCEPTION_WEIGHTS`; the only one comparable with published FID).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from accelerate.logging import get_logger
from accelerate.utils import gather_object

from vcq_hf.metrics import (
    FEATURE_EXTRACTORS,
    compute_generation_metrics,
    load_adm_npz,
    load_feature_extractor,
    save_adm_npz,
)
from vcq_hf.training_utils import sampling as su
from vcq_hf.training_utils import scripts as tu


logger = get_logger(__name__, log_level="INFO")

BUILTIN_DATASETS = ("fashion-mnist", "emoji", "digits")


def parse_args(input_args: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
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
    parser.add_argument("--num_samples_per_class", type=int, default=100)
    parser.add_argument("--class_labels", type=str, nargs="*", default=None, help="Class ids or names (default: all).")
    parser.add_argument("--reference_dataset", type=str, required=True, help="Built-in name, folder or ADM .npz.")
    parser.add_argument("--reference_split", type=str, default="test")
    parser.add_argument("--reference_resolution", type=int, default=None, help="Resize built-in reference images.")
    parser.add_argument("--max_reference_samples", type=int, default=None)
    parser.add_argument(
        "--feature_extractors",
        type=str,
        default=None,
        help=f"Comma-separated from {sorted(FEATURE_EXTRACTORS)} (default: fmnist-cnn for fashion-mnist, "
        "effnet-lite0 otherwise).",
    )
    parser.add_argument("--inception_weights", type=str, default=None, help="Local FID InceptionV3 weights.")
    parser.add_argument(
        "--class_accuracy",
        action="store_true",
        help="Also report the FMNIST-CNN accuracy on the "
        "sampled classes (only meaningful when the pipeline's classes are Fashion-MNIST's, in order).",
    )
    su.add_sampling_args(parser)
    parser.add_argument("--kid_subsets", type=int, default=100)
    parser.add_argument("--kid_subset_size", type=int, default=1000)
    parser.add_argument("--save_npz", action="store_true", help="Write samples.npz (ADM evaluator format).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixed_precision", type=str, default=None, choices=["no", "fp16", "bf16"])
    args = parser.parse_args(input_args)
    if args.num_samples_per_class < 1:
        raise ValueError(f"--num_samples_per_class = {args.num_samples_per_class} must be >= 1.")
    tu.check_finite_flags(args)  # NaN passes every range check
    su.check_sampling_args(args)
    if args.max_reference_samples is not None and args.max_reference_samples < 4:
        raise ValueError(f"--max_reference_samples = {args.max_reference_samples} must be >= 4.")
    su.check_pipeline_path(args.pipeline_path)
    if args.feature_extractors is None:
        args.feature_extractors = "fmnist-cnn" if args.reference_dataset == "fashion-mnist" else "effnet-lite0"
    args.feature_extractors = [name.strip() for name in args.feature_extractors.split(",") if name.strip()]
    unknown = [name for name in args.feature_extractors if name not in FEATURE_EXTRACTORS]
    if unknown or not args.feature_extractors:
        raise ValueError(
            f"--feature_extractors {unknown or '(empty)'}: expected names from {sorted(FEATURE_EXTRACTORS)}."
        )
    if args.class_accuracy and "fmnist-cnn" not in args.feature_extractors:
        raise ValueError("--class_accuracy needs the fmnist-cnn extractor in --feature_extractors.")
    if args.reference_dataset not in BUILTIN_DATASETS and not os.path.exists(args.reference_dataset):
        raise ValueError(
            f"--reference_dataset {args.reference_dataset!r} is neither a built-in data set {BUILTIN_DATASETS} nor an "
            "existing folder or .npz file."
        )
    return args


def build_extractors(args: argparse.Namespace, device: torch.device) -> dict:
    extractors = {}
    for name in args.feature_extractors:
        kwargs = {"weights_path": args.inception_weights} if name == "inception-v3" else {}
        extractors[name] = load_feature_extractor(name, **kwargs).to(device)
    return extractors


def reference_batches(args: argparse.Namespace):
    """Yield uint8 (B, H, W, 3) arrays or PIL lists of the reference images, and the number of images."""
    path = args.reference_dataset
    limit = args.max_reference_samples
    if path.endswith(".npz"):
        images, _ = load_adm_npz(path)
        images = images[:limit] if limit else images
        return [images[i : i + 256] for i in range(0, len(images), 256)], len(images)
    if path in BUILTIN_DATASETS:
        from vcq_hf.data import load_builtin_dataset

        options = {"limit": limit} if limit else {}
        dataset = load_builtin_dataset(
            path, split=args.reference_split, resolution=args.reference_resolution, **options
        )
    else:
        import datasets

        if os.path.isfile(os.path.join(path, "dataset_info.json")) or os.path.isfile(os.path.join(path, "state.json")):
            dataset = datasets.load_from_disk(path)
        else:
            dataset = datasets.load_dataset("imagefolder", data_dir=path, split="train")
        if limit:
            dataset = dataset.select(range(min(limit, len(dataset))))
    image_column = "image" if "image" in dataset.column_names else dataset.column_names[0]
    batches = (dataset[i : i + 256][image_column] for i in range(0, len(dataset), 256))
    return batches, len(dataset)


@torch.no_grad()
def main(args: argparse.Namespace) -> dict | None:
    start_time = time.time()
    accelerator, pipeline = su.load_pipeline(args)
    classes = su.resolve_classes(pipeline, args.class_labels)
    labels = [c for c in classes for _ in range(args.num_samples_per_class)]
    extractors = build_extractors(args, accelerator.device)
    output_dir = Path(args.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)

    sample_seconds = feature_seconds = 0.0
    with accelerator.split_between_processes(list(range(len(labels)))) as indices:
        features = {name: [] for name in extractors}
        logits = {name: [] for name in extractors}
        images_kept = []
        for batch in su.index_batches(accelerator, indices, args.batch_size):
            generators = su.sample_generators(args.seed, batch)
            tick = time.time()
            # (B, C, H, W) in [0, 1]
            images = su.generate(accelerator, pipeline, args, [labels[i] for i in batch], generators, "pt")
            uint8 = (images.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()  # what a PNG would hold
            sample_seconds += time.time() - tick
            tick = time.time()
            for name, extractor in extractors.items():
                batch_features, batch_logits = extractor.extract(uint8, batch_size=args.batch_size)
                features[name].append(batch_features)
                if batch_logits is not None:
                    logits[name].append(batch_logits)
            feature_seconds += time.time() - tick
            if args.save_npz:
                images_kept.append(uint8)
        payload = {
            "indices": list(indices),
            "features": {name: np.concatenate(parts) if parts else None for name, parts in features.items()},
            "logits": {name: np.concatenate(parts) if parts else None for name, parts in logits.items()},
            "images": torch.cat(images_kept) if images_kept else None,
            "sample_seconds": sample_seconds,
            "feature_seconds": feature_seconds,
        }
    shards = gather_object([payload])
    sampling_wall = time.time() - start_time

    result = None
    if accelerator.is_main_process:
        shards = [shard for shard in shards if shard["indices"]]
        order = np.concatenate([shard["indices"] for shard in shards])
        if not np.array_equal(order, np.arange(len(labels))):
            raise RuntimeError(f"Gathered samples do not cover 0..{len(labels) - 1} in order.")
        label_array = np.asarray(labels, dtype=np.int64)
        tick = time.time()
        batches, num_reference = reference_batches(args)
        reference = {name: ([], []) for name in extractors}
        for batch in batches:
            for name, extractor in extractors.items():
                batch_features, batch_logits = extractor.extract(batch, batch_size=args.batch_size)
                reference[name][0].append(batch_features)
                if batch_logits is not None:
                    reference[name][1].append(batch_logits)
        reference_seconds = time.time() - tick

        metrics: dict[str, float] = {}
        for name, extractor in extractors.items():
            fake_features = np.concatenate([shard["features"][name] for shard in shards])
            fake_logits = None
            if shards[0]["logits"][name] is not None:
                fake_logits = np.concatenate([shard["logits"][name] for shard in shards])
            scores = compute_generation_metrics(
                np.concatenate(reference[name][0]),
                fake_features,
                fake_logits=fake_logits,
                extractor_name=extractor.name,
                kid_subsets=args.kid_subsets,
                kid_subset_size=args.kid_subset_size,
                seed=args.seed,
            )
            metrics.update({key: value for key, value in scores.items() if key not in ("num_real", "num_fake")})
            if args.class_accuracy and name == "fmnist-cnn":
                metrics[f"class-accuracy-{extractor.name}"] = float((fake_logits.argmax(1) == label_array).mean())
        if args.save_npz:
            images = torch.cat([shard["images"] for shard in shards])
            save_adm_npz(output_dir / "samples.npz", images, labels=label_array)
        result = {
            "metrics": metrics,
            "num_samples": len(labels),
            "num_reference": num_reference,
            "num_samples_per_class": args.num_samples_per_class,
            "classes": classes,
            "class_names": su.class_names(pipeline, classes),
            "reference_dataset": args.reference_dataset,
            "reference_split": args.reference_split if args.reference_dataset in BUILTIN_DATASETS else None,
            "feature_extractors": {name: extractor.name for name, extractor in extractors.items()},
            "pipeline_path": str(Path(args.pipeline_path).resolve()),
            **su.sampling_settings(args, accelerator),
            "timing_s": {
                "sampling_wall": round(sampling_wall, 2),
                "sampling_per_rank": [round(shard["sample_seconds"], 2) for shard in shards],
                "features_per_rank": [round(shard["feature_seconds"], 2) for shard in shards],
                "reference_features": round(reference_seconds, 2),
                "total_wall": round(time.time() - start_time, 2),
            },
        }
        tu.write_json(output_dir / "metrics.json", result)
        logger.info(f"{json.dumps(metrics)} ({len(labels)} samples, {result['timing_s']['total_wall']} s)")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return result


if __name__ == "__main__":
    tu.run_script(main, parse_args)
