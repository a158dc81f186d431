"""Encode / decode throughput (images/s) of the VCQ image tokenizer on CPU.

Builds `VCQVQModel` from a preset (default `small-32px`, randomly initialised: the cost does not depend on the
weights), then times `encode` and `decode` under `torch.no_grad()` in eval mode, and one training step (forward +
backward + AdamW) in train mode. Prints the median over `--repeats` runs after a warm-up, as a Markdown table.

    OMP_NUM_THREADS=1 python benchmarks/bench_vq.py
    OMP_NUM_THREADS=2 python benchmarks/bench_vq.py --batch-size 64
"""

from __future__ import annotations

import argparse
import os

import torch

from _timing import median_seconds
from vcq_hf import VCQVQConfig, VCQVQModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small-32px", choices=VCQVQConfig.list_presets())
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-train", action="store_true", help="do not time a training step")
    args = parser.parse_args()

    threads = int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = VCQVQConfig.from_preset(args.preset)
    model = VCQVQModel(config).eval()
    num_parameters = sum(parameter.numel() for parameter in model.parameters())
    pixel_values = torch.rand(args.batch_size, config.num_channels, config.image_size, config.image_size) * 2 - 1

    with torch.no_grad():
        codes = model.encode(pixel_values).codes
        encode = median_seconds(lambda: model.encode(pixel_values), args.repeats)
        decode = median_seconds(lambda: model.decode(codes), args.repeats)

    rows = [("encode", encode), ("decode", decode)]
    if not args.skip_train:
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def train_step() -> None:
            loss = model(pixel_values).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        rows.append(("train step (fwd+bwd+AdamW)", median_seconds(train_step, args.repeats)))

    print(
        f"preset {args.preset}: {num_parameters / 1e6:.2f}M parameters, T={config.num_image_tokens}, "
        f"K_max={config.codebook_size}, batch {args.batch_size}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})"
    )
    print()
    print("| operation | ms / batch | images / s |")
    print("| --- | --- | --- |")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1e3:.1f} | {args.batch_size / seconds:,.0f} |")


if __name__ == "__main__":
    main()
