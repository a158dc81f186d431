"""`benchmarks/tokenizer_v2.py --smoke`: issue 12's measuring script trains, evaluates and reports on tiny settings."""

import importlib.util
import json
import math
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("tokenizer_v2", REPO / "benchmarks" / "tokenizer_v2.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_smoke_arm_trains_evaluates_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    benchmark = load_benchmark()
    result = benchmark.main(["--smoke", "--output_dir", str(tmp_path), "--arm", "linear"])
    assert result["arm"] == "linear" and result["schedule"] == "linear"
    assert result["train_steps"] > 0 and result["train_threads"] == 1
    assert math.isfinite(result["psnr"]) and result["psnr"] > 0
    assert math.isfinite(result["rFID-FMNIST-CNN"])
    assert result["relative_seam_ratio"] > 0
    assert json.loads((tmp_path / "linear" / "eval.json").read_text()) == result
    # a rerun reads the recorded result instead of training again; the report has the arm's row
    log_size = (tmp_path / "linear" / "train.log").stat().st_size
    report_path = tmp_path / "results.md"
    again = benchmark.main(["--smoke", "--output_dir", str(tmp_path), "--arm", "linear", "--report", str(report_path)])
    assert again == result and (tmp_path / "linear" / "train.log").stat().st_size == log_size
    row = next(line for line in report_path.read_text().splitlines() if line.startswith("| linear |"))
    assert f"| {result['train_steps']} x {result['train_batch_size']} | 1 |" in row
    assert f"{result['psnr']:.2f}" in row
