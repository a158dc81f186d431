"""The reproduction study's --smoke mode: the full code path on tiny settings, then a resumed rerun."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]


def load_study_module():
    spec = importlib.util.spec_from_file_location("reproduce_small", REPO / "benchmarks" / "reproduce_small.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_smoke_study_end_to_end_and_resume(tmp_path, capsys):
    study = load_study_module()
    output_dir, report_dir = tmp_path / "study", tmp_path / "report"
    results = study.main(["--smoke", "--sweep", "--output_dir", str(output_dir), "--report", str(report_dir)])

    for arm in ("constant", "log"):
        assert (output_dir / f"ar-{arm}" / "model_index.json").exists()
        recon = results[f"reconstruction-{arm}"]
        assert recon["mse"] > 0 and recon["num_images"] == study.SMOKE.max_test_samples
        entropy = results["entropy"][arm]
        assert len(entropy["conditional_entropy_bits"]) == study.SMOKE.vq_overrides["num_tokens"]
        assert results["probe"][arm]["ks"][0] == 0
        generation = results["generation"][arm]
        assert generation["no_guidance"]["num_fake"] == study.SMOKE.num_samples
        assert generation["best_guidance_scale"] in (1.0, *study.SMOKE.guidance_scales)
    # the two arms differ only in the schedule: predicted cliffs follow the arithmetic
    assert results["entropy"]["constant"]["predicted_cliff"] < results["entropy"]["log"]["predicted_cliff"]
    assert results["entropy"]["constant"]["codebook_sizes"] == [64] * 8
    assert results["entropy"]["log"]["codebook_sizes"][0] == 2

    table = (report_dir / "results.md").read_text()
    for heading in (
        "Reconstruction",
        "Entropy cliff",
        "Linear probe",
        "Generation",
        "Prior fidelity",
        "Schedule sweep",
    ):
        assert f"## {heading}" in table
    assert "## Wall time per stage" in table
    assert set(results["sweep"]["rows"]) == {f"{kind}-kmin{k}" for kind, k in study.SMOKE.sweep_schedules}
    assert results["prior_fidelity"]["log"]["no_guidance"]["num_fake"] == study.SMOKE.num_samples
    for plot in ("entropy.png", "probe.png", "samples.png"):
        assert (report_dir / plot).stat().st_size > 1000
    assert json.loads((report_dir / "results.json").read_text())["settings"]["tokenizer_steps"] == 4

    # a rerun skips every finished stage
    capsys.readouterr()
    study.main(["--smoke", "--output_dir", str(output_dir)])
    out = capsys.readouterr().out
    assert "[run ]" not in out and out.count("[skip]") >= 8

    # another configuration in the same folder is refused instead of mixing results
    with pytest.raises(ValueError, match="other settings"):
        study.run_study(output_dir, study.StudySettings(), jobs=1, sweep=False, report_dir=None)
