"""Study v2's --smoke mode: every stage and group on tiny settings, the plan, the report, then a resumed rerun."""

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


def test_plan_cells_cover_every_axis_once():
    study = load_study_module()
    settings = study.StudySettings()
    cells = study.plan_cells(settings, "linear", num_emoji_train=3000)
    names = [cell.name for cell in cells]
    assert len(names) == len(set(names))
    main = [c for c in cells if c.group == "main"]
    assert [c.arm for c in main] == ["uniform", "log", "linear", "cosine"]
    short, long = settings.prior_steps
    assert settings.train_sizes == (60000, 5000, 1000) and settings.long_steps_max_n == 1000
    assert {(c.num_train, c.prior, c.steps) for c in main} == {(60000, "small", short)}
    regime = [c for c in cells if c.group == "regime"]
    assert {c.arm for c in regime} == {"uniform", "linear"}
    # N x prior at the main length, plus the long runs at N = 1k, the main cell not repeated: 3 x 2 + 2 - 1 per arm
    assert len(regime) == 2 * 7 and {c.num_train for c in regime if c.steps == long} == {1000}
    assert {(c.arm, c.seed) for c in cells if c.group == "seeds"} == {("uniform", 1), ("linear", 1)}
    assert {(c.domain, c.arm, c.num_train) for c in cells if c.group == "emoji"} == {
        ("emoji", "uniform", 3000),
        ("emoji", "linear", 3000),
    }
    assert study.schedule_wall([3.0, 2.0, 2.0, 1.0], jobs=2) == 4.0
    # one place for the tokenizer recipe, pinned into the settings
    assert settings.tokenizer == study.tokenizer_recipe()


def test_smoke_study_end_to_end_and_resume(tmp_path, capsys):
    study = load_study_module()
    output_dir, report_dir = tmp_path / "study", tmp_path / "report"
    results = study.main(["--smoke", "--output_dir", str(output_dir), "--report", str(report_dir)])
    smoke = study.smoke_settings()
    out = capsys.readouterr().out
    assert "Planned cost per stage" in out and "| **total** |" in out
    assert out.index("Planned cost per stage") < out.index("[run ] tokenizers-main")  # the plan comes first

    best = results["best_vcq_arm"]
    assert best in ("log", "linear")
    expected = study.plan_cells(smoke, best, num_emoji_train=smoke.domains["emoji"].max_train_samples)
    assert set(results["cells"]) == {cell.name for cell in expected}
    for name, cell in results["cells"].items():
        nll = cell["nll"]
        assert nll["train"]["num_sequences"] == min(cell["num_train"], smoke.nll_max_sequences)
        assert len(nll["gap_per_position"]) == smoke.num_tokens
        assert cell["best_guidance_scale"] in [float(k) for k in cell["guidance_sweep"]["fid"]]
        sweep = [float(k) for k in cell["guidance_sweep"]["fid"]]
        # a sweep whose best is its largest scale was extended, up to the cap
        assert max(sweep) >= max(smoke.guidance_scales)
        if cell["best_guidance_scale"] == max(sweep):
            assert max(sweep) + smoke.guidance_step > smoke.guidance_max
        for label in ("no_guidance", "best_guidance"):
            metrics = cell[label]
            assert metrics["num_fake"] == smoke.num_samples
            assert 0.0 <= metrics["copies"]["copy_rate"] <= 1.0
            assert "fmnist-cnn" in metrics["nearest"]
        if cell["cell"]["domain"] == "fmnist":
            assert 0.0 <= cell["no_guidance"]["accuracy-fmnist-cnn"] <= 1.0
    evals = results["tokenizer_eval"]
    assert set(evals) >= {"fmnist-uniform-0", "fmnist-log-0", "fmnist-linear-0", f"fmnist-{best}-1", "emoji-uniform-0"}
    uniform, log = evals["fmnist-uniform-0"], evals["fmnist-log-0"]
    assert uniform["codebook_sizes"] == [32] * 6 and log["codebook_sizes"][0] == 2
    assert uniform["entropy"]["64"]["predicted_cliff"] < log["entropy"]["64"]["predicted_cliff"]
    assert set(uniform["probe"]) == {"onehot", "embedding"} and uniform["probe"]["onehot"]["ks"][0] == 0

    table = (report_dir / "results.md").read_text()
    for heading in ("Tokenizers", "Claim 1", "Claim 3", "Cells", "Claim 2", "Seeds", "Wall time", "Planned cost"):
        assert f"## {heading}" in table
    for plot in ("entropy.png", "probe.png", "nll_gap.png"):
        assert (report_dir / plot).stat().st_size > 1000
    assert json.loads((report_dir / "results.json").read_text())["settings"]["tokenizer"]["steps"] == 3

    # a rerun skips every finished stage
    study.main(["--smoke", "--output_dir", str(output_dir)])
    out = capsys.readouterr().out
    assert "[run ]" not in out and out.count("[skip]") >= len(expected) + 10

    # another configuration in the same folder is refused instead of mixing results
    with pytest.raises(ValueError, match="other settings"):
        study.run_study(output_dir, study.StudySettings(), plan_only=True)


def test_cli_subsets_and_checks():
    study = load_study_module()
    args = study.parse_args(["--arms", "uniform,linear", "--train_sizes", "1000", "--priors", "tiny", "--seeds", "0"])
    settings = study.settings_from_args(args)
    assert [a.name for a in settings.arms] == ["uniform", "linear"] and settings.main_prior == "tiny"
    assert settings.train_sizes == (1000,) and settings.seeds == (0,)
    sliced = study.settings_from_args(
        study.parse_args(["--train_sizes", "1000", "--max_train_images", "1000", "--feature_spaces", "fmnist-cnn"])
    )
    assert sliced.domains["fmnist"].max_train_samples == 1000
    assert (
        sliced.domains["fmnist"].feature_spaces == ("fmnist-cnn",) and sliced.domains["emoji"].classifier_space is None
    )
    with pytest.raises(ValueError, match="below the largest"):
        study.settings_from_args(study.parse_args(["--max_train_images", "500"]))
    with pytest.raises(ValueError, match="including 'uniform'"):
        study.settings_from_args(study.parse_args(["--arms", "linear"]))
    with pytest.raises(SystemExit):
        study.parse_args(["--groups", "main,nonsense"])
    with pytest.raises(SystemExit):
        study.parse_args(["--tokenizer", "uniform"])
