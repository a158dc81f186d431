"""benchmarks/combine_studies.py: seeds from several study folders side by side, mean ± spread, refusals."""

import copy
import importlib.util
import json
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]


def load_module():
    spec = importlib.util.spec_from_file_location("combine_studies", REPO / "benchmarks" / "combine_studies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_study(seed: int, gfid: dict[str, float], psnr: dict[str, float]) -> dict:
    """A results.json of reproduce_small with one tiny-prior cell per arm at N = 1000 (only the fields read)."""
    settings = {
        "resolution": 32, "num_tokens": 32, "k_max": 1024, "baseline_arm": "uniform", "seeds": [seed],
        "priors": [{"name": "tiny", "preset": "tiny", "overrides": {}}], "prior_plateau_chunk": None,
        "prior_plateau_tolerance": 0.01, "prior_batch_size": 64, "prior_learning_rate": 1e-3,
        "nll_max_sequences": 5000, "guidance_scales": [1.0, 2.0], "guidance_step": 1.0, "guidance_max": 8.0,
        "sweep_samples": 1000, "num_samples": 5000, "adopted_tokenizers": {},
        "tokenizer": {"vq_preset": "small-32px", "vq_overrides": {}, "batch_size": 32, "extra_args": ["--random_flip"]},
        "domains": {"fmnist": {"feature_spaces": ["fmnist-cnn"]}},
    }  # fmt: skip
    cells, tokenizer_eval, tokenizers = {}, {}, {}
    for arm, value in gfid.items():
        cell = {"domain": "fmnist", "arm": arm, "seed": seed, "num_train": 1000, "prior": "tiny", "steps": 100}
        cells[f"fmnist-{arm}-s{seed}-n1000-tiny-100"] = {
            "cell": cell,
            "nll": {"train": {"mean_bits_per_image": 100.0}, "test": {"mean_bits_per_image": 150.0 + seed},
                    "gap_bits_per_image": 50.0 + seed},
            "no_guidance": {"FID-fmnist-cnn": value, "copies": {"copy_rate": 0.0, "mean_shared_prefix": 1.0}},
            "best_guidance": {"FID-fmnist-cnn": value - 1}, "best_guidance_scale": 2.0,
        }  # fmt: skip
        tokenizer_eval[f"fmnist-{arm}-{seed}"] = {
            "psnr": psnr[arm], "rFID": {"fmnist-cnn": 3.0}, "capacity_bits": 320.0,
            "entropy": {"1000": {"predicted_cliff": 1, "observed_cliff": 3}},
            "probe": {"onehot": {"ks": [0, 1, 4, 10, 32], "test_accuracy": [0.1, 0.2, 0.4, 0.6, 0.7]}},
        }  # fmt: skip
        tokenizers[f"fmnist-{arm}-{seed}"] = {"global_step": 5300}
    return {"settings": settings, "cells": cells, "tokenizer_eval": tokenizer_eval, "tokenizers": tokenizers}


def test_seeds_of_two_folders_give_mean_spread_and_ratios(tmp_path):
    combine = load_module()
    first = fake_study(0, {"uniform": 20.0, "linear": 10.0}, {"uniform": 21.0, "linear": 20.0})
    second = fake_study(1, {"uniform": 24.0, "linear": 8.0}, {"uniform": 23.0, "linear": 22.0})
    for i, study in enumerate((first, second)):
        (tmp_path / f"s{i}").mkdir()
        (tmp_path / f"s{i}" / "results.json").write_text(json.dumps(study))
    report = combine.main([str(tmp_path / "s0"), str(tmp_path / "s1"), "--output", str(tmp_path / "out")])
    assert (tmp_path / "out" / "results.md").read_text() == report
    # uniform gFID 20 and 24: mean 22, sample std 2.83; linear 10 and 8: 9 ± 1.41; ratio of means 9 / 22
    assert "| 22.00 ± 2.83 (20.00, 24.00) |" in report and "| 9.00 ± 1.41 (10.00, 8.00) |" in report
    assert f"| {9 / 22:.2f} | s0: 0.50, s1: 0.33 |" in report
    assert "| fmnist, uniform | 0, 1 | 5300, 5300 | 22.00 ± 1.41 |" in report  # PSNR 21 and 23
    assert "| 20.0 ± 0.0 / — | 40.0 ± 0.0 / — |" in report  # probe k=1 and 4 (20 %, 40 %); no embedding probe


def test_refuses_mixed_recipes_and_duplicate_seeds():
    combine = load_module()
    first = fake_study(0, {"uniform": 20.0, "linear": 10.0}, {"uniform": 21.0, "linear": 20.0})
    other = copy.deepcopy(first)
    other["settings"]["prior_learning_rate"] = 3e-4
    with pytest.raises(ValueError, match="prior_learning_rate"):
        combine.format_report({"a": first, "b": other})
    other = copy.deepcopy(first)
    other["settings"]["tokenizer"]["batch_size"] = 64
    with pytest.raises(ValueError, match="tokenizer recipe's batch_size"):
        combine.format_report({"a": first, "b": other})
    with pytest.raises(ValueError, match="seed 0"):  # the same seed's cell trained twice
        combine.format_report({"a": first, "b": copy.deepcopy(first)})
    with pytest.raises(FileNotFoundError, match="no results.json"):
        combine.main(["/nonexistent-folder", "--output", "/tmp/unused"])
