"""Import cost of the package face: `vcq --help`, `vcq --version`, `import vcq_hf.schedules`, `import vcq_hf`.

Each command runs in a fresh Python process (`python -c ...` with `PYTHONPATH=<src>`), `--repeats` times after one
warm-up run (which fills the OS file cache); the table reports the median wall time and which heavy libraries
(torch, transformers, diffusers, datasets) the process ended up importing. Pass several `--src` folders to compare
versions, e.g. a `git archive <commit> src | tar -x -C /tmp/before` export of an older commit:

    python benchmarks/bench_import.py --src /tmp/before/src --src src --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


COMMANDS: dict[str, str] = {
    "vcq --help": "from vcq_hf.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "vcq --version": "from vcq_hf.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass",
    "import vcq_hf.schedules": "import vcq_hf.schedules",
    "import vcq_hf": "import vcq_hf",
    "from vcq_hf import VCQPipeline": "from vcq_hf import VCQPipeline",
}
HEAVY = ("torch", "transformers", "diffusers", "datasets")
REPORT = "import sys\nprint('HEAVY=' + ','.join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)"


def run_once(src: Path, code: str) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    script = code + "\n" + REPORT.format(heavy=HEAVY)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{code!r} failed with PYTHONPATH={src}:\n{result.stderr}")
    heavy = result.stderr.strip().rsplit("HEAVY=", 1)[-1]
    return elapsed, heavy or "none"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", type=Path, help="a src/ folder holding vcq_hf (repeatable)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command (after one warm-up)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}.")
    args.src = args.src or [Path(__file__).resolve().parents[1] / "src"]
    return args


def main(args: argparse.Namespace) -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of {args.repeats} fresh processes\n")
    print("| src | command | median wall time (s) | heavy libraries imported |")
    print("| --- | --- | ---: | --- |")
    for src in args.src:
        for name, code in COMMANDS.items():
            run_once(src, code)  # warm-up
            runs = [run_once(src, code) for _ in range(args.repeats)]
            median = statistics.median(seconds for seconds, _ in runs)
            print(f"| {src} | `{name}` | {median:.2f} | {runs[-1][1]} |", flush=True)


if __name__ == "__main__":
    main(parse_args())
