.PHONY: quality style test bench

check_dirs := src tests examples benchmarks

quality:
	ruff check $(check_dirs)
	ruff format --check $(check_dirs)

style:
	ruff check --fix $(check_dirs)
	ruff format $(check_dirs)

test:
	OMP_NUM_THREADS=1 python -m pytest -x -q tests

bench:
	OMP_NUM_THREADS=1 python benchmarks/bench_quantizer.py
