"""Encode / decode / training-step throughput (images/s) of the VCQ image tokenizer on CPU.

Builds `VCQVQModel` from a preset (default `small-32px`, randomly initialised: the cost does not depend on the
weights), then times `encode` and `decode` under `torch.no_grad()` in eval mode, and one training step (forward +
backward + AdamW, plus the EfficientNet-Lite0 perceptual loss at `--perceptual-resolution` as train_tokenizer.py adds
it) in train mode. Prints the median over `--repeats` runs after a warm-up, as a Markdown table: wall time and the
process's CPU time (all threads), so that runs on a shared machine can also be compared by CPU cost.

    OMP_NUM_THREADS=1 python benchmarks/bench_vq.py                                   # tokenizer v2 recipe
    OMP_NUM_THREADS=1 python benchmarks/bench_vq.py --decoder-type linear --loss-type mse \\
        --perceptual-resolution 0                                                     # the v1 recipe
    OMP_NUM_THREADS=2 python benchmarks/bench_vq.py --batch-size 64
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

from vcq_hf import VCQVQConfig, VCQVQModel


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `fn()` over `repeats` runs after one warm-up run."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small-32px", choices=VCQVQConfig.list_presets())
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-train", action="store_true", help="do not time a training step")
    parser.add_argument("--decoder-type", default=None, choices=["conv", "linear"], help="override the preset's")
    parser.add_argument("--loss-type", default=None, choices=["mse", "l1"], help="override the preset's pixel loss")
    parser.add_argument(
        "--perceptual-resolution",
        type=int,
        default=32,
        help="add the EfficientNet-Lite0 perceptual loss (weight 0.5) at this resolution to the train step, as "
        "train_tokenizer.py does by default; 0 = none",
    )
    args = parser.parse_args()

    threads = int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    overrides = {}
    if args.decoder_type:
        overrides["decoder_type"] = args.decoder_type
    if args.loss_type:
        overrides["reconstruction_loss_type"] = args.loss_type
    config = VCQVQConfig.from_preset(args.preset, **overrides)
    model = VCQVQModel(config).eval()
    num_parameters = model.num_parameters()
    pixel_values = torch.rand(args.batch_size, config.num_channels, config.image_size, config.image_size) * 2 - 1

    with torch.no_grad():
        codes = model.encode(pixel_values).codes
        rows = [
            ("encode", timed(lambda: model.encode(pixel_values), args.repeats)),
            ("decode", timed(lambda: model.decode(codes), args.repeats)),
        ]
    if not args.skip_train:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        perceptual = None
        if args.perceptual_resolution:
            from vcq_hf.metrics import PerceptualLoss

            perceptual = PerceptualLoss(min_size=args.perceptual_resolution)

        def train_step() -> None:
            output = model(pixel_values)
            loss = output.loss
            if perceptual is not None:
                loss = loss + 0.5 * perceptual(output.sample, pixel_values)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        rows.append(("train step (fwd+bwd+AdamW)", timed(train_step, args.repeats)))

    print(
        f"preset {args.preset}: decoder {config.decoder_type}, pixel loss {config.reconstruction_loss_type}, "
        f"perceptual {args.perceptual_resolution or 'none'}; {num_parameters / 1e6:.2f}M parameters, "
        f"T={config.num_image_tokens}, K_max={config.codebook_size}, batch {args.batch_size}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print()
    print("| operation | wall ms / batch | images / s (wall) | CPU ms / batch | images / CPU-s |")
    print("| --- | --- | --- | --- | --- |")
    for name, (wall, cpu) in rows:
        print(
            f"| {name} | {wall * 1e3:.1f} | {args.batch_size / wall:,.0f} | {cpu * 1e3:.1f} | {args.batch_size / cpu:,.0f} |"
        )


if __name__ == "__main__":
    main()
