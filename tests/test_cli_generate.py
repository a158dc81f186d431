"""Tests of `vcq generate` (in-process, on a tiny random VCQPipeline saved to a temporary folder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vcq_hf.cli_generate as cli_generate
from vcq_hf import VCQConfig, VCQForCausalLM, VCQVQConfig, VCQVQModel
from vcq_hf.cli import main
from vcq_hf.cli_generate import default_class_labels, make_grid
from vcq_hf.pipeline_vcq import VCQPipeline


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    vq_config = VCQVQConfig.from_preset("tiny")  # 12x12 images, T = 5
    pipe = VCQPipeline(
        VCQVQModel(vq_config).eval(),
        VCQForCausalLM(VCQConfig.from_vq_config(vq_config, preset="tiny")).eval(),
        id2label={0: "tench", 1: "golden retriever", 2: "sea anemone"},
    )
    folder = tmp_path_factory.mktemp("cli") / "pipe"
    pipe.save_pretrained(folder)
    return folder


def run(argv, capsys):
    """Run `vcq ...`; return (exit code, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_generate_writes_labelled_grid_and_individual_images(model_dir, tmp_path, capsys):
    grid_path, individual = tmp_path / "grid.png", tmp_path / "each"
    argv = ["generate", "--model", str(model_dir), "--class-labels", "2", "golden retriever", "--num-images-per-class"]
    argv += ["3", "--guidance-scale", "2.5", "--seed", "4", "--output", str(grid_path), "--save-individual"]
    code, out, err = run([*argv, str(individual)], capsys)
    assert code == 0, err
    assert f"wrote {grid_path} (2 classes x 3 images)" in out
    assert "5/5" in err  # the pipeline's progress bar, one step per image position

    grid = Image.open(grid_path)
    assert grid.mode == "RGB"
    cell, padding = 12 * 6, 4  # 12 px images upscaled x6 to reach 64 px
    assert grid.height == 2 * (cell + padding) + padding
    pixels = np.asarray(grid)
    label_column = pixels[:, : grid.width - 3 * (cell + padding)]
    assert (label_column < 128).any(), "the class labels are drawn in the left column"

    files = sorted(p.name for p in individual.iterdir())
    assert len(files) == 6
    assert files[0] == "0000_class2_sea-anemone_0.png" and files[3] == "0003_class1_golden-retriever_0.png"
    # The grid cells are the individual images, upscaled.
    first = np.asarray(Image.open(individual / files[0]).resize((cell, cell), Image.NEAREST))
    left = label_column.shape[1]
    assert np.array_equal(pixels[padding : padding + cell, left : left + cell], first)


def test_same_seed_same_grid(model_dir, tmp_path, capsys):
    outputs = []
    for name, seed in [("a.png", "1"), ("b.png", "1"), ("c.png", "2")]:
        argv = ["generate", "--model", str(model_dir), "--class-labels", "0", "--seed", seed, "--quiet"]
        assert run([*argv, "--output", str(tmp_path / name)], capsys)[0] == 0
        outputs.append(np.asarray(Image.open(tmp_path / name)))
    assert np.array_equal(outputs[0], outputs[1]) and not np.array_equal(outputs[0], outputs[2])


def test_default_class_labels_are_all_classes(model_dir, tmp_path, capsys):
    code, out, _ = run(["generate", "--model", str(model_dir), "--quiet", "--output", str(tmp_path / "g.png")], capsys)
    assert code == 0 and "(3 classes x 4 images)" in out
    with pytest.raises(ValueError, match="has 1000 classes; choose some with --class-labels"):
        default_class_labels(1000)
    assert default_class_labels(5) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--class-labels", "3"],
            "class label 3 (class_labels[0]) is out of range: this model has 3 classes, ids in [0, 3)",
        ),
        (["--class-labels", "-1"], "class label -1 (class_labels[0]) is out of range"),
        (
            ["--class-labels", "golden retreiver"],
            "Unknown class name 'golden retreiver'. Did you mean: 'golden retriever'",
        ),
        (["--num-images-per-class", "0"], "--num-images-per-class 0 is out of range"),
        (["--guidance-scale", "nan"], "guidance_scale = nan is out of range: it must be a finite number in [0, inf)"),
        (["--guidance-scale", "-1"], "guidance_scale = -1.0 is out of range"),
        (["--temperature", "inf"], "temperature = inf is out of range: it must be a finite number in (0, inf)"),
        (["--top-p", "nan"], "top_p = nan is out of range"),
        (["--top-k", "0"], "top_k = 0 is out of range"),
    ],
)
def test_bad_labels_are_clean_errors(model_dir, tmp_path, capsys, extra, message):
    code, _, err = run(["generate", "--model", str(model_dir), "--output", str(tmp_path / "g.png"), *extra], capsys)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "g.png").exists()


def test_unknown_model_paths_are_clean_errors(tmp_path, capsys):
    output = str(tmp_path / "g.png")
    code, _, err = run(["generate", "--model", str(tmp_path / "missing"), "--output", output], capsys)
    assert code == 2 and "does not exist" in err and "missing" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(["generate", "--model", str(tmp_path / "empty"), "--output", output], capsys)
    assert code == 2 and "not a saved VCQPipeline: it has no model_index.json" in err
    code, _, err = run(["generate", "--model", "no-such-org/no-such-model", "--output", output], capsys)  # offline
    assert code == 2 and "Could not load --model 'no-such-org/no-such-model'" in err


def test_unwritable_outputs_fail_before_sampling(model_dir, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    cases = [
        (tmp_path / "no_dir" / "g.png", "does not exist"),
        (tmp_path / "a_file" / "g.png", "does not exist"),
        (tmp_path, "is a directory"),
        (tmp_path / "g.jpg", "must end in .png"),
    ]
    for output, message in cases:
        code, out, err = run(["generate", "--model", str(model_dir), "--output", str(output)], capsys)
        assert code == 2 and message in err, err
        assert "it/s" not in err  # nothing was sampled
    code, _, err = run(
        [
            "generate",
            "--model",
            str(model_dir),
            "--output",
            str(tmp_path / "g.png"),
            "--save-individual",
            str(tmp_path / "a_file"),
        ],
        capsys,
    )
    assert code == 2 and "exists and is not a directory" in err


def test_default_model_is_the_bundled_demo(model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli_generate, "DEFAULT_MODEL", tmp_path / "demo")
    code, _, err = run(["generate", "--output", str(tmp_path / "g.png")], capsys)
    assert code == 2 and "bundled demo checkpoint is not installed" in err and "--model" in err
    monkeypatch.setattr(cli_generate, "DEFAULT_MODEL", model_dir)
    code, out, err = run(["generate", "--class-labels", "1", "--quiet", "--output", str(tmp_path / "g.png")], capsys)
    assert code == 0, err
    assert (tmp_path / "g.png").is_file()


def test_default_model_location():
    import vcq_hf

    assert cli_generate.DEFAULT_MODEL == Path(vcq_hf.__file__).resolve().parent / "demo"


def test_help_documents_every_option(capsys):
    code, out, _ = run(["generate", "--help"], capsys)
    assert code == 0
    for option in ["--model", "--class-labels", "--num-images-per-class", "--guidance-scale", "--seed", "--output"]:
        assert option in out
    assert "--save-individual" in out and "labelled PNG grid" in out


def test_make_grid_shape_and_validation():
    images = [Image.new("RGB", (8, 8), (255, 0, 0)) for _ in range(4)]
    grid = make_grid([images[:2], images[2:]], ["0: a", "1: b"], cell_size=16, padding=2)
    assert grid.height == 2 * (16 + 2) + 2
    assert np.asarray(grid)[2, -3].tolist() == [255, 0, 0]  # last cell of the first row, red
    with pytest.raises(ValueError, match="2 rows but 1 labels"):
        make_grid([images[:2], images[2:]], ["x"])


def test_one_grid_function_on_diffusers_make_image_grid():
    from vcq_hf.utils.image_grid import make_labelled_grid

    images = [Image.new("RGB", (4, 4), (0, 0, 255)) for _ in range(5)]
    plain = make_labelled_grid(images, num_columns=3)  # diffusers' grid: no labels, no padding
    assert plain.size == (12, 8)
    assert np.asarray(plain)[5, 5].tolist() == [0, 0, 255] and np.asarray(plain)[5, 9].tolist() == [255, 255, 255]
    labelled = make_labelled_grid(images, num_columns=3, row_labels=["0: a", "1: b"], cell_size=8, padding=1)
    assert labelled.height == 1 + 2 * (8 + 1) and labelled.width > 3 * (8 + 1)
    with pytest.raises(ValueError, match="3 row labels for 2 rows"):
        make_labelled_grid(images, num_columns=3, row_labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="at least one image"):
        make_labelled_grid([], num_columns=3)
