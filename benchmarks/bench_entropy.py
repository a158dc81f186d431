"""Benchmark the entropy-cliff analyzer on ImageNet-sized synthetic code sets.

Draws N x T codes (default N = 1,281,167 ImageNet training images, T = 256) with codes[:, t] uniform on [0, K_t)
under a VCQ schedule, stored as int32 in column-major order (as a memory-mapped `.npy` of codes would be read column
by column), then times `vcq_hf.analysis.analyze_entropy`:

- "pruned" (the default): sequences whose prefix is already unique are dropped from later steps;
- "full pass" (`prune_unique=False`): relabels all N sequences at all T positions, the O(N T log N) worst case
  (what the pruned mode costs when duplicates never resolve).

`--duplicate_fraction` replaces that fraction of rows by copies of other rows (near-duplicate images in real data
give identical code sequences that never become unique).

Peak memory is the process's maximum resident set size (codes included) read from `resource.getrusage`, and the
analyzer's own peak from `tracemalloc` (numpy allocations are traced).

    OMP_NUM_THREADS=1 python benchmarks/bench_entropy.py --output_file bench_entropy.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
import tracemalloc

import numpy as np

from vcq_hf.analysis import analyze_entropy
from vcq_hf.schedules import codebook_sizes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--num_samples", type=int, default=1_281_167)
    parser.add_argument("--num_tokens", type=int, default=256)
    parser.add_argument("--k_min", type=int, default=2)
    parser.add_argument("--k_max", type=int, default=16384)
    parser.add_argument("--schedules", type=str, default="log,constant", help="Comma-separated schedule kinds.")
    parser.add_argument("--skip_full_pass", action="store_true", help="Only time the default (pruned) mode.")
    parser.add_argument("--duplicate_fraction", type=float, default=0.0, help="Fraction of rows made duplicates.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_file", type=str, default=None)
    return parser.parse_args(argv)


def synthetic_codes(num_samples: int, sizes: tuple[int, ...], seed: int, duplicate_fraction: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    num_copies = int(num_samples * duplicate_fraction)
    sources = rng.integers(0, num_samples - num_copies, size=num_copies)
    codes = np.empty((num_samples, len(sizes)), dtype=np.int32, order="F")
    for t, size in enumerate(sizes):
        column = rng.integers(0, size, size=num_samples, dtype=np.int32)
        column[num_samples - num_copies :] = column[sources]
        codes[:, t] = column
    return codes


def timed(codes: np.ndarray, sizes: tuple[int, ...], prune_unique: bool) -> dict:
    tracemalloc.start()
    start = time.perf_counter()
    profile = analyze_entropy(codes, codebook_sizes=sizes, prune_unique=prune_unique)
    elapsed = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "mode": "pruned" if prune_unique else "full pass",
        "seconds": elapsed,
        "analyzer_peak_mib": traced_peak / 2**20,
        "process_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,
        "observed_cliff": profile.observed_cliff,
        "predicted_cliff": profile.predicted_cliff,
        "unique_at": profile.unique_at,
        "first_entropies_bits": [round(float(x), 4) for x in profile.conditional_entropy[:6]],
    }


def main(args: argparse.Namespace) -> list[dict]:
    results = []
    for kind in args.schedules.split(","):
        sizes = codebook_sizes(args.num_tokens, args.k_min, args.k_max, kind)
        start = time.perf_counter()
        codes = synthetic_codes(args.num_samples, sizes, args.seed, args.duplicate_fraction)
        generate_seconds = time.perf_counter() - start
        modes = [True] if args.skip_full_pass else [True, False]
        for prune_unique in modes:
            row = timed(codes, sizes, prune_unique)
            row.update(
                schedule=kind,
                duplicate_fraction=args.duplicate_fraction,
                num_samples=args.num_samples,
                num_tokens=args.num_tokens,
                codes_mib=codes.nbytes / 2**20,
                generate_seconds=generate_seconds,
                omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
                machine=f"{platform.machine()} {os.cpu_count()} cpus",
            )
            results.append(row)
            print(json.dumps(row), flush=True)
        del codes
    print()
    print(
        "| schedule | duplicates | mode | time (s) | analyzer peak (MiB) | process peak RSS (MiB) | observed / predicted cliff |"
    )
    print("| --- | ---: | --- | ---: | ---: | ---: | --- |")
    for row in results:
        print(
            f"| {row['schedule']} | {row['duplicate_fraction']:.0%} | {row['mode']} | {row['seconds']:.1f} | {row['analyzer_peak_mib']:.0f} | "
            f"{row['process_peak_rss_mib']:.0f} | {row['observed_cliff']} / {row['predicted_cliff']} |"
        )
    if args.output_file:
        with open(args.output_file, "w") as handle:
            json.dump(results, handle, indent=2)
    return results


if __name__ == "__main__":
    main(parse_args())
