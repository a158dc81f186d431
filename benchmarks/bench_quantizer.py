"""Grouped vs naive variable-codebook lookup.

The grouped lookup multiplies each group of positions only against codebook[:K_group], so its cost is ~sum_t K_t;
the naive lookup computes all T * K_max distances and masks. Prints median times, the measured speed-up and the
ideal ratio T * K_max / sum_t K_t. Target: speed-up >= 0.6 x ideal for the log schedule.

    OMP_NUM_THREADS=1 python benchmarks/bench_quantizer.py
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F

from _timing import median_seconds
from vcq_hf.quantizer import VariableCodebookQuantizer, naive_nearest_codes
from vcq_hf.schedules import codebook_sizes


def run(batch_size: int, num_tokens: int, k_max: int, dim: int, kind: str, repeats: int) -> dict:
    sizes = codebook_sizes(num_tokens, 2, k_max, kind)
    quantizer = VariableCodebookQuantizer(sizes, codebook_dim=dim)
    latents = F.normalize(torch.randn(batch_size, num_tokens, dim), dim=-1)
    codebook = quantizer.get_codebook()
    with torch.no_grad():
        grouped = median_seconds(lambda: quantizer.nearest_codes(latents, codebook), repeats)
        naive = median_seconds(lambda: naive_nearest_codes(latents, codebook, sizes), repeats)
        assert torch.equal(quantizer.nearest_codes(latents, codebook), naive_nearest_codes(latents, codebook, sizes))
    return {
        "setting": f"B={batch_size} T={num_tokens} D={dim} K_max={k_max}",
        "kind": kind,
        "groups": len(quantizer.lookup_groups),
        "naive_ms": naive * 1e3,
        "grouped_ms": grouped * 1e3,
        "speedup": naive / grouped,
        "ideal": num_tokens * k_max / sum(sizes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, threads = {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})"
    )
    rows = [run(32, 256, 16384, 8, kind, args.repeats) for kind in ("log", "linear", "cosine", "constant")]
    rows += [run(32, 64, 4096, 8, kind, args.repeats) for kind in ("log", "linear", "constant")]
    print(
        "| setting | schedule | groups | naive ms | grouped ms | speed-up | ideal T*K_max/sum K_t | speed-up / ideal |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['setting']} | {row['kind']} | {row['groups']} | {row['naive_ms']:.1f} | {row['grouped_ms']:.1f} "
            f"| {row['speedup']:.2f}x | {row['ideal']:.2f}x | {row['speedup'] / row['ideal']:.2f} |"
        )


if __name__ == "__main__":
    main()
