"""Grouped vs naive variable-codebook lookup.

The grouped lookup multiplies each group of positions only against codebook[:K_group], so its cost is ~sum_t K_t;
the naive lookup computes all T * K_max distances and masks. Prints median times, the measured speed-up and the
ideal ratio T * K_max / sum_t K_t. Target: speed-up >= 0.6 x ideal for the log schedule.

`--forward` times the whole quantizer forward (eval mode, what `VCQVQModel.encode` runs) against its lookup alone,
with and without the per-position usage statistics (`output_usage=True`, a histogram over T * K_max bins, which
only training logs ask for). Target (issue 13.6): forward without usage costs little more than the lookup.

    OMP_NUM_THREADS=1 python benchmarks/bench_quantizer.py
    OMP_NUM_THREADS=1 python benchmarks/bench_quantizer.py --forward
"""

from __future__ import annotations

import argparse
import inspect
import os
import time

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


def run_forward(batch_size: int, num_tokens: int, k_max: int, dim: int, kind: str, repeats: int) -> dict:
    """Best-of-`repeats` ms of the lookup, the eval forward and (where supported) the eval forward with usage
    statistics.

    The three are timed interleaved, one call of each per round, and the minimum is kept: on a shared machine other
    processes only ever add time, so the minimum is the estimate least disturbed by them. Code without the
    `output_usage` flag always computed the statistics.
    """
    torch.manual_seed(0)
    sizes = codebook_sizes(num_tokens, 2, k_max, kind)
    quantizer = VariableCodebookQuantizer(sizes, codebook_dim=dim).eval()
    latents = torch.randn(batch_size, num_tokens, dim)
    has_flag = "output_usage" in inspect.signature(quantizer.forward).parameters
    with torch.no_grad():
        codebook = quantizer.get_codebook()
        normalized = F.normalize(latents, dim=-1)
        calls = {
            "lookup": lambda: quantizer.nearest_codes(normalized, codebook),
            "forward": lambda: quantizer(latents),
            "usage": (lambda: quantizer(latents, output_usage=True)) if has_flag else (lambda: quantizer(latents)),
        }
        times = {name: [] for name in calls}
        for name, call in calls.items():
            call()  # warm-up
        for _ in range(repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    best = {name: min(values) * 1e3 for name, values in times.items()}
    return {
        "setting": f"B={batch_size} T={num_tokens} D={dim} K_max={k_max}",
        "kind": kind,
        "lookup_ms": best["lookup"],
        "forward_ms": best["forward"],
        "usage_ms": best["usage"],
        "usage_on_by_default": not has_flag,
    }


def main_forward(repeats: int) -> None:
    rows = [run_forward(32, 256, 16384, 8, "log", repeats)]  # issue 13.6's setting
    rows.append(run_forward(32, 32, 1024, 12, "log", repeats))  # the demo tokenizer (small-32px)
    print("best of", repeats, "interleaved rounds")
    print("| setting | schedule | lookup ms | forward ms | forward / lookup | forward + usage ms | usage by default |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['setting']} | {row['kind']} | {row['lookup_ms']:.1f} | {row['forward_ms']:.1f} "
            f"| {row['forward_ms'] / row['lookup_ms']:.2f}x | {row['usage_ms']:.1f} | {row['usage_on_by_default']} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--forward", action="store_true", help="time forward vs lookup instead of grouped vs naive")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, threads = {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})"
    )
    if args.forward:
        main_forward(args.repeats)
        return
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
