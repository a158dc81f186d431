"""The accelerator check `benchmarks/gpu_check.py` runs end to end with `--tiny` on the CPU, so it cannot rot before a
GPU is lent to run it for real."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_gpu_check_runs_and_reports(tmp_path):
    gpu_check = load_script()
    output = tmp_path / "gpu_check.md"
    results = gpu_check.main(gpu_check.parse_args(["--tiny", "--output", str(output)]))
    assert [(r["dtype"], r["compiled"]) for r in results["sampling"]] == [
        ("fp32", False),
        ("bf16", False),
        ("fp32", True),
    ]
    assert all(r["codes_within_K_t"] and r["images_finite"] and r["images_per_s"] > 0 for r in results["sampling"])
    assert [r["dtype"] for r in results["prior_training"]] == ["fp32", "bf16"]
    assert all(r["tokens_per_s"] > 0 for r in results["prior_training"])
    assert all(r["images_per_s"] > 0 for r in results["tokenizer_training"])
    assert json.loads(output.with_suffix(".json").read_text())["tiny"] is True
    text = output.read_text()
    assert "| bf16 | False | 2 |" in text and "tokens/s" in text and "images/s" in text


def test_gpu_check_refuses_bad_arguments_and_a_missing_gpu(tmp_path):
    gpu_check = load_script()
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--batch-size", "0"])
    with pytest.raises(SystemExit, match="needs a CUDA device"):
        gpu_check.main(gpu_check.parse_args(["--device", "cpu", "--output", str(tmp_path / "x.md")]))
