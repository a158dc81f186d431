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

    # A second study adopts the first one's tokenizers instead of training them (--tokenizer_dirs) and trains its
    # priors until their train NLL stops falling: chunks of 2 steps, cap 6; tolerance 0.99 stops them after 2 chunks.
    adopted = {arm: output_dir / f"tokenizer-fmnist-{arm}-s0" for arm in ("uniform", "linear")}
    second_dir = tmp_path / "adopting"
    second = study.main(
        ["--smoke", "--output_dir", str(second_dir), "--arms", "uniform,linear", "--groups", "main", "--no_emoji",
         "--seeds", "0", "--best_vcq_arm", "linear", "--costs_from", str(output_dir),
         "--tokenizer_dirs", ",".join(f"{arm}={path}" for arm, path in adopted.items()),
         "--prior_steps", "6", "--prior_plateau_chunk", "2", "--prior_plateau_tolerance", "0.99",
         "--report", str(tmp_path / "second-report")]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert f"Tokenizer of arm uniform adopted from {adopted['uniform'].resolve()}" in out
    assert "| main | 0 tokenizers x" in out and "at most 6 steps)" in out  # the plan trains none; priors capped
    assert not list(second_dir.glob("tokenizer-fmnist-*"))  # no tokenizer trained here
    pinned = json.loads((second_dir / "settings.json").read_text())["adopted_tokenizers"]
    for arm, path in adopted.items():
        summary = json.loads((path / "training_summary.json").read_text())
        assert pinned[arm] == {"path": str(path.resolve()), "training_summary": summary}
        assert second["tokenizers"][f"fmnist-{arm}-0"] == {**summary, "adopted_from": str(path.resolve())}
        # the same tokenizer, so the same test reconstructions as in the first study
        assert second["tokenizer_eval"][f"fmnist-{arm}-0"]["psnr"] == evals[f"fmnist-{arm}-0"]["psnr"]
    assert set(second["cells"]) == {"fmnist-uniform-s0-n64-small-upto6", "fmnist-linear-s0-n64-small-upto6"}
    for cell in second["cells"].values():
        assert cell["prior_steps"] == 4 and cell["plateau"]["stopped_by"] == "plateau"
        assert len(cell["plateau"]["chunk_mean_train_bits_per_image"]) == 2
    table = (tmp_path / "second-report" / "results.md").read_text()
    assert (
        f"Tokenizer of arm `linear` (fmnist, seed 0) adopted, not trained here: `{adopted['linear'].resolve()}`"
        in table
    )
    assert "| fmnist-uniform-s0-n64-small-upto6 | 4 (plateau) |" in table

    # A third study adopts the first one's emoji tokenizers ("emoji:ARM=FOLDER") and runs only the emoji cells.
    emoji_adopted = {arm: output_dir / f"tokenizer-emoji-{arm}-s0" for arm in ("uniform", best)}
    third_dir = tmp_path / "adopting-emoji"
    third = study.main(
        ["--smoke", "--output_dir", str(third_dir), "--arms", f"uniform,{best}", "--groups", "emoji",
         "--seeds", "0", "--best_vcq_arm", best, "--costs_from", str(output_dir),
         "--tokenizer_dirs", ",".join(f"emoji:{arm}={path}" for arm, path in emoji_adopted.items()),
         "--report", str(tmp_path / "third-report")]
    )  # fmt: skip
    assert not list(third_dir.glob("tokenizer-emoji-*-s0"))  # no tokenizer trained here
    assert set(third["cells"]) == {cell.name for cell in expected if cell.group == "emoji"}
    for arm, path in emoji_adopted.items():
        assert third["tokenizers"][f"emoji-{arm}-0"]["adopted_from"] == str(path.resolve())
        assert third["tokenizer_eval"][f"emoji-{arm}-0"]["psnr"] == evals[f"emoji-{arm}-0"]["psnr"]
    table = (tmp_path / "third-report" / "results.md").read_text()
    assert (
        f"Tokenizer of arm `{best}` (emoji, seed 0) adopted, not trained here: `{emoji_adopted[best].resolve()}`"
        in table
    )


def write_fake_tokenizer(folder: Path, schedule: str, k_max: int = 1024, num_tokens: int = 32) -> Path:
    """A folder with what check_adopted_tokenizer reads: config.json, a weights file, training_summary.json."""
    from vcq_hf.schedules import codebook_sizes

    folder.mkdir(parents=True)
    config = {
        "schedule": schedule, "codebook_size": k_max, "num_image_tokens": num_tokens, "k_min": 2, "image_size": 32,
        "codebook_sizes": list(codebook_sizes(num_tokens, 2, k_max, schedule)),
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "training_summary.json").write_text(json.dumps({"global_step": 7, "total_batch_size": 32}))
    return folder


def test_tokenizer_dirs_checked_against_their_arms(tmp_path):
    study = load_study_module()
    uniform = write_fake_tokenizer(tmp_path / "uniform", "constant")
    linear = write_fake_tokenizer(tmp_path / "linear", "linear")

    def settings(spec: str):
        return study.settings_from_args(study.parse_args(["--arms", "uniform,linear", "--tokenizer_dirs", spec]))

    adopted = settings(f"uniform={uniform},linear={linear}").adopted_tokenizers
    assert adopted["linear"] == {
        "path": str(linear.resolve()),
        "training_summary": {"global_step": 7, "total_batch_size": 32},
    }
    with pytest.raises(ValueError, match=r"linear=.*schedule = 'constant', the arm 'linear' needs 'linear'"):
        settings(f"linear={uniform}")
    with pytest.raises(ValueError, match="codebook_size = 512, the arm 'uniform' needs 1024"):
        settings(f"uniform={write_fake_tokenizer(tmp_path / 'k512', 'constant', k_max=512)}")
    with pytest.raises(ValueError, match="num_image_tokens = 16, the arm 'linear' needs 32"):
        settings(f"linear={write_fake_tokenizer(tmp_path / 't16', 'linear', num_tokens=16)}")
    kmin = write_fake_tokenizer(tmp_path / "kmin", "linear")
    config = json.loads((kmin / "config.json").read_text())
    (kmin / "config.json").write_text(json.dumps({**config, "k_min": 4}))
    with pytest.raises(ValueError, match="k_min = 4, the arm 'linear' needs 2"):
        settings(f"linear={kmin}")
    (linear / "training_summary.json").unlink()
    with pytest.raises(ValueError, match="training_summary.json does not exist"):
        settings(f"linear={linear}")
    with pytest.raises(ValueError, match="'log' is not an arm of this study"):
        settings(f"log={uniform}")
    # another domain's tokenizer: "DOMAIN:ARM"; plain ARM and "fmnist:ARM" are the same Fashion-MNIST tokenizer
    emoji_linear = write_fake_tokenizer(tmp_path / "emoji-linear", "linear")
    both = settings(f"fmnist:uniform={uniform},emoji:linear={emoji_linear}").adopted_tokenizers
    assert set(both) == {"uniform", "emoji:linear"} and both["emoji:linear"]["path"] == str(emoji_linear.resolve())
    with pytest.raises(ValueError, match="names the tokenizer of 'uniform' twice"):
        settings(f"uniform={uniform},fmnist:uniform={uniform}")
    with pytest.raises(ValueError, match="'mnist' is not a domain of this study; its domains are"):
        settings(f"mnist:uniform={uniform}")
    with pytest.raises(ValueError, match="'emoji' is not a domain of this study"):
        study.settings_from_args(study.parse_args(["--no_emoji", "--tokenizer_dirs", f"emoji:uniform={uniform}"]))
    for bad in ("uniform", "uniform=", f"uniform={uniform},uniform={uniform}"):
        with pytest.raises(SystemExit):
            study.parse_args(["--tokenizer_dirs", bad])


def test_plateau_rule_reads_the_training_log(tmp_path):
    study = load_study_module()
    (tmp_path / "logs").mkdir()
    records = [{"step": step, "bits_per_image": 300.0 - step} for step in (10, 20, 30, 40)]
    records += [{"step": 40, "bits_per_image": 250.0}, {"step": 40, "lr": 0.001}]  # step 40 logged again on resume
    (tmp_path / "logs" / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert study.chunk_means(tmp_path, chunk=20, steps=40) == [285.0, 260.0]
    assert study.chunk_means(tmp_path, chunk=20, steps=30) == [285.0, 270.0]  # a partial last chunk
    assert study.chunk_means(tmp_path, chunk=20, steps=0) == []
    with pytest.raises(RuntimeError, match="no train NLL logged in steps 41..60"):
        study.chunk_means(tmp_path, chunk=20, steps=60)
    assert study.plateau_reached([[285.0, 260.0]], tolerance=0.1) and not study.plateau_reached([[285.0, 260.0]], 0.05)
    assert not study.plateau_reached([[285.0]], tolerance=0.5)  # one chunk: nothing to compare
    assert not study.plateau_reached([[300.0, 299.0], [300.0, 200.0]], tolerance=0.01)  # every arm must be flat
    settings = study.settings_from_args(study.parse_args(["--prior_steps", "6000", "--prior_plateau_chunk", "1000"]))
    cells = study.plan_cells(settings, "linear", num_emoji_train=3000)
    assert all(c.plateau and c.name.endswith("-upto6000") for c in cells)
    with pytest.raises(ValueError, match="must be in \\[0, 1\\)"):
        study.settings_from_args(study.parse_args(["--prior_plateau_chunk", "10", "--prior_plateau_tolerance", "nan"]))
    with pytest.raises(ValueError, match="needs --prior_plateau_chunk"):
        study.settings_from_args(study.parse_args(["--prior_plateau_tolerance", "0.1"]))


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
    matched = study.settings_from_args(study.parse_args(["--tokenizer_steps", "5300", "--probe_max_train", "5000"]))
    assert matched.tokenizer.steps == 5300 and matched.probe_max_train == 5000
    assert matched.tokenizer.extra_args == study.tokenizer_recipe().extra_args  # only the step count changes
    with pytest.raises(ValueError, match="--tokenizer_steps = 0 must be >= 1"):
        study.settings_from_args(study.parse_args(["--tokenizer_steps", "0"]))
    with pytest.raises(ValueError, match="--probe_max_train = 1 must be >= 2"):
        study.settings_from_args(study.parse_args(["--probe_max_train", "1"]))
    with pytest.raises(ValueError, match="including 'uniform'"):
        study.settings_from_args(study.parse_args(["--arms", "linear"]))
    with pytest.raises(SystemExit):
        study.parse_args(["--groups", "main,nonsense"])
    with pytest.raises(SystemExit):
        study.parse_args(["--tokenizer_dirs", "uniform"])


def test_copied_unit_costs_must_cover_the_study(tmp_path):
    """Unit costs copied from another folder (--costs_from) that lack a prior size or a feature space of this study
    are refused with one error naming what is missing, before any planning."""
    study = load_study_module()
    settings = study.smoke_settings()
    calibrated = {
        "prior_step_s": {"tiny": 0.1, "small": 0.2},
        "features_s": dict.fromkeys(settings.feature_spaces, 0.01),
    }
    cases = {
        "priors": {**calibrated, "prior_step_s": {"tiny": 0.1}},
        "feature spaces": {**calibrated, "features_s": {}},
    }
    for what, costs in cases.items():
        source = tmp_path / f"source-{what}" / "calibrate.json"
        source.parent.mkdir()
        source.write_text(json.dumps(costs))
        with pytest.raises(ValueError, match=f"cover the {what}"):
            study.run_study(tmp_path / f"study-{what}", settings, plan_only=True, costs_from=source.parent)
