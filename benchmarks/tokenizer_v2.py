#!/usr/bin/env python
"""Tokenizer v2 benchmark: train tokenizers with the v2 recipe and measure them on a held-out test split.

The recipe is not defined here: it is the `small-32px` preset of `VCQVQConfig` (conv pixel decoder, L1 loss) plus the
defaults of `examples/train_tokenizer.py` (EfficientNet-Lite0 perceptual loss, EMA, learning rate, dead-code
restarts). This script only chooses the data, the schedule of each arm, the number of steps and the seed, and passes
`--train_args` through for recipe studies. Each arm:

1. trains with `examples/train_tokenizer.py` in a subprocess (`OMP_NUM_THREADS` threads, default 1: one arm per
   core side by side, or one arm on every core) for `--max_train_minutes` of wall time
   (constant learning rate after warm-up, so the EMA of the weights is a good model whenever the budget ends),
   checkpointing every `--checkpointing_steps` and resuming from the latest checkpoint when rerun (the training clock
   is stored in the checkpoints; `train.json` marks the arm done);
2. reconstructs the whole test split and writes `eval.json`: PSNR (pixels in [0, 1], MSE over the split), rFID with
   the domain classifier (`FMNIST-CNN`, Fashion-MNIST only) and with ImageNet EfficientNet-Lite0 (`EffNetLite0`), the
   seam ratio of reconstructions relative to the real images (`vcq_hf.metrics.relative_seam_ratio`), per-position code
   usage on the test split, training wall time and images/s, and a reconstruction grid.

Results are written as each arm finishes (`<output_dir>/<arm>/eval.json`) and collected into a Markdown table
(`--report`). Run the arms of one study as separate processes to train them side by side:

    setsid python benchmarks/tokenizer_v2.py --output_dir runs/tokenizer_v2 --arm uniform &
    setsid python benchmarks/tokenizer_v2.py --output_dir runs/tokenizer_v2 --arm linear &
    wait; python benchmarks/tokenizer_v2.py --output_dir runs/tokenizer_v2 --report benchmarks/results/tokenizer_v2.md

Arms: `uniform` (constant K = K_max), `linear` (K_t linear from 2 to K_max), `cosine`, `log`; any other name needs
`--schedule`. `--smoke` runs the same code path in seconds (tests).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vcq_hf.training_utils.files import atomic_write_json


REPO = Path(__file__).resolve().parents[1]
ARM_SCHEDULES = {"uniform": "constant", "linear": "linear", "cosine": "cosine", "log": "log"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--arm", type=str, default=None, help="Arm to train and evaluate (see above).")
    parser.add_argument("--schedule", type=str, default=None, help="Schedule of the arm; defaults from its name.")
    parser.add_argument("--dataset", type=str, default="fashion-mnist", help="A built-in data set (vcq data list).")
    parser.add_argument("--train_split", type=str, default="train_full")
    parser.add_argument("--test_split", type=str, default="test")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--preset", type=str, default="small-32px", help="VCQVQConfig preset (the v2 architecture).")
    parser.add_argument(
        "--max_train_minutes",
        type=float,
        default=40.0,
        help="Training wall-time budget of each arm (the issue's 40 minutes); constant LR after warm-up + EMA.",
    )
    parser.add_argument("--steps", type=int, default=100000, help="Step cap of each arm (the time budget ends it).")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--checkpointing_steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_test_samples", type=int, default=None, help="Evaluate on the first N test images.")
    parser.add_argument(
        "--train_args", type=str, default="", help="Extra train_tokenizer.py flags (quoted), e.g. for recipe studies."
    )
    parser.add_argument("--config_overrides", type=str, nargs="*", default=[], help="Extra config fields k=v.")
    parser.add_argument("--extractors", type=str, nargs="*", default=None, help="rFID extractors (default: auto).")
    parser.add_argument(
        "--effnet_samples",
        type=int,
        default=2000,
        help="rFID-EffNetLite0 on the first N test images and their reconstructions (224 px features are slow on a "
        "shared CPU); 0 = all.",
    )
    parser.add_argument("--report", type=Path, default=None, help="Collect every arm's eval.json into this .md file.")
    parser.add_argument("--smoke", action="store_true", help="Tiny model and data: the same code path in seconds.")
    args = parser.parse_args(argv)
    if args.arm is None and args.report is None:
        parser.error("give --arm (train and evaluate one arm) and/or --report (collect the results).")
    if args.arm is not None and args.schedule is None:
        if args.arm not in ARM_SCHEDULES:
            parser.error(f"--arm {args.arm!r} has no default schedule ({sorted(ARM_SCHEDULES)}); pass --schedule.")
        args.schedule = ARM_SCHEDULES[args.arm]
    if args.steps < 1 or args.batch_size < 1:
        parser.error(f"--steps = {args.steps} and --batch_size = {args.batch_size} must be >= 1.")
    if args.smoke:  # seconds, as documented: few steps on a few images (the tiny model comes from smoke_overrides)
        args.steps = min(args.steps, SMOKE_STEPS)
        args.max_train_samples = args.max_train_samples or SMOKE_SAMPLES
        args.max_test_samples = args.max_test_samples or SMOKE_SAMPLES
    return args


SMOKE_STEPS, SMOKE_SAMPLES = 4, 64


def smoke_overrides() -> list[str]:
    return [
        "encoder_hidden_size=32",
        "decoder_hidden_size=32",
        "encoder_num_layers=1",
        "decoder_num_layers=1",
        "encoder_num_heads=2",
        "decoder_num_heads=2",
        "num_image_tokens=8",
        "codebook_size=64",
        "decoder_conv_channels=8",
    ]


# --------------------------------------------------------------------------------------------------------- training
def train(args: argparse.Namespace, arm_dir: Path) -> dict:
    done = arm_dir / "train.json"
    if done.exists():
        return json.loads(done.read_text())
    tokenizer_dir = arm_dir / "tokenizer"
    summary_path = tokenizer_dir / "training_summary.json"
    overrides = [f"schedule={args.schedule}", *args.config_overrides]
    if args.smoke:
        overrides = smoke_overrides() + overrides
    command = [
        sys.executable,
        str(REPO / "examples" / "train_tokenizer.py"),
        f"--dataset_name={args.dataset}",
        f"--split={args.train_split}",
        f"--resolution={args.resolution}",
        f"--model_config={args.preset}",
        "--random_flip",
        f"--train_batch_size={args.batch_size}",
        f"--max_train_steps={args.steps}",
        f"--max_train_minutes={args.max_train_minutes}",
        "--lr_scheduler=constant_with_warmup",
        "--lr_warmup_steps=100",
        f"--checkpointing_steps={args.checkpointing_steps}",
        "--checkpoints_total_limit=1",
        "--resume_from_checkpoint=latest",
        "--validation_steps=1000000000",
        f"--seed={args.seed}",
        f"--output_dir={tokenizer_dir}",
        "--config_overrides",
        *overrides,
        *args.train_args.split(),
    ]
    if args.max_train_samples:
        command.append(f"--max_train_samples={args.max_train_samples}")
    if summary_path.exists():  # the training finished but this script was stopped before recording it
        result = {"command": command, "wall_time_s": None, "training_summary": json.loads(summary_path.read_text())}
        atomic_write_json(done, result)
        return result
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    print(f"[{args.arm}] training: {' '.join(command)}", flush=True)
    # Wall time over all attempts: an interrupted attempt adds its time on the way out (not after a SIGKILL).
    partial = arm_dir / "train_partial.json"
    earlier = json.loads(partial.read_text())["wall_time_s"] if partial.exists() else 0.0
    start = time.time()
    try:
        with open(arm_dir / "train.log", "a") as log:
            subprocess.run(command, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        atomic_write_json(partial, {"wall_time_s": round(earlier + time.time() - start, 1)})
    summary = json.loads((tokenizer_dir / "training_summary.json").read_text())
    result = {
        "command": command,
        "threads": int(env["OMP_NUM_THREADS"]),
        "wall_time_s": json.loads(partial.read_text())["wall_time_s"],
        "attempts_before_this_one_s": earlier,
        "training_summary": summary,
    }
    atomic_write_json(done, result)
    return result


# ------------------------------------------------------------------------------------------------------- evaluation
def load_split(dataset: str, split: str, resolution: int, limit: int | None) -> torch.Tensor:
    """The split as uint8 (N, 3, H, W)."""
    from vcq_hf import load_builtin_dataset

    data = load_builtin_dataset(dataset, split, resolution=resolution)
    if limit:
        data = data.select(range(min(limit, len(data))))
    pixels = np.stack([np.array(image.convert("RGB")) for image in data["image"]])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def real_features(args: argparse.Namespace, name: str, extractor, images: torch.Tensor) -> np.ndarray:
    """Features of the real test images, cached per extractor in output_dir (shared by the arms)."""
    path = args.output_dir / f"real-{args.dataset}-{args.test_split}-{len(images)}-{name}.npy"
    if path.exists():
        return np.load(path)
    features, _ = extractor.extract(images, batch_size=250)
    tmp = path.with_name(path.stem + f".{os.getpid()}.tmp.npy")
    np.save(tmp, features)
    tmp.replace(path)
    return features


def evaluate(args: argparse.Namespace, arm_dir: Path, training: dict) -> dict:
    from vcq_hf import VCQVQModel
    from vcq_hf.metrics import frechet_distance_from_features, load_feature_extractor, relative_seam_ratio

    start = time.time()
    model = VCQVQModel.from_pretrained(arm_dir / "tokenizer").eval()
    config = model.config
    images = load_split(args.dataset, args.test_split, args.resolution, args.max_test_samples)
    real = images.float() / 255.0
    reconstructions, codes = [], []
    with torch.no_grad():
        for batch in real.split(250):
            batch_codes = model.encode(batch * 2.0 - 1.0).codes
            codes.append(batch_codes)
            reconstructions.append((model.decode(batch_codes).sample + 1.0) / 2.0)
    reconstructions, codes = torch.cat(reconstructions), torch.cat(codes)
    mse = torch.mean((reconstructions - real) ** 2).item()
    result = {
        "arm": args.arm,
        "dataset": args.dataset,
        "test_split": args.test_split,
        "num_test_images": len(images),
        "schedule": config.schedule,
        "codebook_sizes": config.codebook_sizes,
        "decoder_type": config.decoder_type,
        "num_parameters": model.num_parameters(),
        "mse": mse,
        "psnr": 10 * math.log10(1.0 / mse),
        "relative_seam_ratio": relative_seam_ratio(reconstructions, real, config.patch_size),
    }
    from vcq_hf.metrics import seam_ratio

    result["seam_ratio_reconstructions"] = seam_ratio(reconstructions, config.patch_size)
    result["seam_ratio_real"] = seam_ratio(real, config.patch_size)
    used = [int(codes[:, t].unique().numel()) for t in range(codes.shape[1])]
    result["codes_used_per_position_test"] = used
    result["mean_usage_fraction_test"] = float(np.mean([u / k for u, k in zip(used, config.codebook_sizes)]))
    extractors = args.extractors or (
        ["fmnist-cnn", "effnet-lite0"] if args.dataset == "fashion-mnist" else ["effnet-lite0"]
    )
    if args.smoke:
        extractors = [e for e in extractors if e == "fmnist-cnn"]
    for name in extractors:
        extractor = load_feature_extractor(name)
        count = args.effnet_samples if name == "effnet-lite0" and args.effnet_samples else len(images)
        fake, _ = extractor.extract(reconstructions[:count], batch_size=250)
        result[f"rFID-{extractor.name}"] = frechet_distance_from_features(
            real_features(args, name, extractor, images[:count]), fake
        )
        result[f"rFID-{extractor.name}-num_images"] = count
    summary = training["training_summary"]
    images_seen = summary["global_step"] * summary["total_batch_size"]
    result["train_steps"] = summary["global_step"]
    result["train_batch_size"] = summary["total_batch_size"]
    result["train_wall_time_s"] = summary["training_wall_s"]  # the training loop, summed over resumed attempts
    result["train_cpu_time_s"] = summary["training_cpu_s"]
    result["train_threads"] = training.get("threads", 1)  # runs recorded before this field trained on one thread
    result["script_wall_time_s"] = training["wall_time_s"]  # + data loading, final save (None: not recorded)
    result["train_images_per_s"] = images_seen / max(summary["training_wall_s"], 1e-9)
    result["train_command"] = " ".join(training["command"][1:])
    result["code_usage_train"] = summary.get("code_usage")
    result["eval_wall_time_s"] = round(time.time() - start, 1)
    save_grid(real[:16], reconstructions[:16], arm_dir / "reconstructions.png")
    atomic_write_json(arm_dir / "eval.json", result)
    return result


def save_grid(top: torch.Tensor, bottom: torch.Tensor, path: Path, scale: int = 3) -> None:
    """Real images (`top`) over their reconstructions (`bottom`), tensors in [0, 1], on the library's grid."""
    from diffusers.utils import numpy_to_pil

    from vcq_hf.utils.image_grid import make_labelled_grid

    images = numpy_to_pil(torch.cat([top, bottom]).clamp(0, 1).permute(0, 2, 3, 1).numpy())
    grid = make_labelled_grid(
        images, num_columns=len(top), row_labels=["real", "reconstructed"], cell_size=top.shape[-1] * scale
    )
    grid.save(path)


# ----------------------------------------------------------------------------------------------------------- report
def report(args: argparse.Namespace) -> str:
    rows = []
    for path in sorted(args.output_dir.glob("*/eval.json")):
        r = json.loads(path.read_text())
        rows.append(
            f"| {r['arm']} | {r['dataset']} ({r['num_test_images']} {r['test_split']}) | "
            f"{r['train_steps']} x {r['train_batch_size']} | {r.get('train_threads', 1)} | "
            f"{r['train_wall_time_s'] / 60:.1f} | "
            f"{r['train_cpu_time_s'] / 60:.1f} | {r['train_images_per_s']:.0f} | {r['psnr']:.2f} | "
            f"{r.get('rFID-FMNIST-CNN', float('nan')):.2f} | {r.get('rFID-EffNetLite0', float('nan')):.2f} "
            f"({r.get('rFID-EffNetLite0-num_images', '-')}) | "
            f"{r['relative_seam_ratio']:.3f} ({r['seam_ratio_reconstructions']:.3f} / {r['seam_ratio_real']:.3f}) | "
            f"{r['mean_usage_fraction_test']:.3f} |"
        )
    table = "\n".join(
        [
            "| arm | test data | steps x batch | threads | train wall (min) | train CPU (min) | train images/s | PSNR (dB) "
            "| rFID-FMNIST-CNN | rFID-EffNetLite0 (images) | seam ratio rel. to real (recon / real) | mean code usage (test) |",
            "| --- | --- | --- | ---: | --- | --- | --- | --- | --- | --- | --- | --- |",
            *rows,
        ]
    )
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(
        f"# Tokenizer v2 results (`benchmarks/tokenizer_v2.py`, output dir `{args.output_dir}`)\n\n{table}\n"
    )
    return table


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    result = None
    if args.arm is not None:
        arm_dir = args.output_dir / args.arm
        arm_dir.mkdir(exist_ok=True)
        eval_path = arm_dir / "eval.json"
        if eval_path.exists():
            result = json.loads(eval_path.read_text())
        else:
            result = evaluate(args, arm_dir, train(args, arm_dir))
        print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (list, dict))}, indent=1), flush=True)
    if args.report is not None:
        print(report(args))
    return result


if __name__ == "__main__":
    main()
