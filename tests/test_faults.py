"""Faults that must never lose a user's files (issue 14): concurrent and overwriting data builds, interrupted and
poisoned checkpoints, `extract_codes.py --overwrite` onto its own input. Each test asserts that everything the user
had before is still there afterwards. The crash cases run as real subprocesses on tiny configs."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from safetensors.torch import load_file


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

from vcq_hf.cli import main  # noqa: E402
from vcq_hf.data import imagefolder as data  # noqa: E402
from vcq_hf.training_utils.checkpointing import (  # noqa: E402
    CHECKPOINT_MARKER,
    NONFINITE_NOTE,
    NonFiniteTrainingError,
    resolve_resume_checkpoint,
)
from vcq_hf.training_utils.files import FolderLockedError, folder_lock, replace_folder  # noqa: E402


def _snapshot(folder):
    """{relative path: bytes} of every file under `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------------- data build


def test_data_build_refuses_a_folder_it_did_not_write_even_with_overwrite(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "train").mkdir(parents=True)
    (out / "train" / "holiday.png").write_bytes(b"not really a png")
    (out / "notes.txt").write_text("keep me")
    before = _snapshot(out)
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "build", "digits", "-o", str(out), "--limit", "4", "--overwrite", "--cache-dir",
              str(tmp_path / "c")])  # fmt: skip
    assert exit_info.value.code == 2
    assert "was not written by `vcq data build`" in capsys.readouterr().err
    assert _snapshot(out) == before


def test_data_build_overwrite_swaps_split_folders_and_a_locked_folder_is_refused(tmp_path):
    out = tmp_path / "digits"
    args = dict(resolution=8, limit=6, cache_dir=tmp_path / "c")
    data.build_imagefolder("digits", out, **args)
    assert len(list((out / "train").glob("*/*.png"))) == 6
    with folder_lock(out, what="a test"), pytest.raises(FolderLockedError, match="being written by another"):
        data.build_imagefolder("digits", out, overwrite=True, **args)
    assert len(list((out / "train").glob("*/*.png"))) == 6
    metadata = data.build_imagefolder("digits", out, overwrite=True, **{**args, "limit": 4})
    assert metadata["splits"]["train"]["num_images"] == len(list((out / "train").glob("*/*.png"))) == 4
    assert json.loads((out / "vcq_data.json").read_text())["splits"]["test"]["num_images"] == 4
    # No temporary or set-aside folders are left behind.
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "test", "train", "vcq_data.json"]


def test_a_failed_build_leaves_no_new_folder(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(data, "_as_rgb_png", fail)
    out = tmp_path / "new"
    with pytest.raises(OSError, match="disk full"):
        data.build_imagefolder("digits", out, resolution=8, limit=2, cache_dir=tmp_path / "c")
    assert not out.exists()


def test_replace_folder_keeps_unmarked_targets(tmp_path):
    new, target = tmp_path / "new", tmp_path / "target"
    new.mkdir()
    (new / "a").write_text("new")
    target.mkdir()
    (target / "b").write_text("user's")
    with pytest.raises(FileExistsError, match="not written by vcq_hf"):
        replace_folder(new, target, marker="MARK")
    assert (target / "b").read_text() == "user's" and (new / "a").is_file()
    (target / "MARK").write_text("")
    replace_folder(new, target, marker="MARK")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]


# ------------------------------------------------------------------------------------------------ training scripts

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FIXTURE_IMAGES = Path(__file__).resolve().parent / "fixtures" / "images"
QUIET = ["--report_to", "jsonl"]

# Runs an example script as __main__ after patching vcq_hf's checkpoint writer to kill the process (SIGKILL, as
# `kill -9` or the OOM killer would) right after the N-th model folder of a checkpoint has been written.
KILL_DURING_SAVE = """
import os, runpy, signal, sys
import vcq_hf.training_utils.checkpointing as checkpointing
kill_at, original, calls = int(os.environ["KILL_AT_SAVE"]), checkpointing.save_module, [0]
def save_module(model, folder):
    original(model, folder)
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
checkpointing.save_module = save_module
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def run_script(script: str, args: list[str], env: dict | None = None, wrapper: str | None = None):
    """Run examples/<script> in a fresh Python process; returns the CompletedProcess (text output)."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    environment.update(env or {})
    prefix = ["-c", wrapper] if wrapper else []
    return subprocess.run(
        [sys.executable, *prefix, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if ": error: " in line]


def assert_one_line_error(result, *needles: str) -> str:
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def all_finite(folder: Path) -> bool:
    return all(
        bool(torch.isfinite(t).all()) for f in folder.rglob("*.safetensors") for t in load_file(str(f)).values()
    )


@pytest.fixture(autouse=True)
def reset_accelerate_state():
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny tokenizer trained for 2 steps and its codes for 32 fixture images in 3 classes (in-process)."""
    import extract_codes
    import train_tokenizer

    root = tmp_path_factory.mktemp("faults")
    data_dir = root / "data"
    for path in sorted(FIXTURE_IMAGES.glob("*.png")):
        kind = path.stem.split("_")[0]
        (data_dir / "train" / kind).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, data_dir / "train" / kind / path.name)
    tokenizer = root / "tokenizer"
    train_tokenizer.main(train_tokenizer.parse_args(
        ["--train_data_dir", str(data_dir), "--model_config", "tiny", "--train_batch_size", "8", "--max_train_steps",
         "2", "--checkpointing_steps", "0", "--output_dir", str(tokenizer), *QUIET]
    ))  # fmt: skip
    AcceleratorState._reset_state(True)
    codes = root / "codes"
    extract_codes.main(extract_codes.parse_args(
        ["--vq_model_path", str(tokenizer), "--train_data_dir", str(data_dir), "--output_dir", str(codes)]
    ))  # fmt: skip
    AcceleratorState._reset_state(True)
    return {"data": data_dir, "tokenizer": tokenizer, "codes": codes}


def ar_args(codes: Path, out: Path, *extra: str) -> list[str]:
    return ["--codes_dir", str(codes), "--model_config", "tiny", "--train_batch_size", "8", "--learning_rate", "3e-3",
            "--lr_warmup_steps", "1", "--validation_steps", "1000", "--num_validation_images_per_class", "1",
            "--output_dir", str(out), *QUIET, *extra]  # fmt: skip


def test_kill_during_checkpoint_save_then_resume_latest(workspace, tmp_path):
    out = tmp_path / "run"
    common = ["--max_train_steps", "6", "--checkpointing_steps", "2", "--checkpoints_total_limit", "1"]
    # Killed while writing checkpoint-4 (its model folder is written, nothing else): with rotation before the save
    # this lost checkpoint-2 and left an unusable checkpoint-4.
    result = run_script("train_ar.py", ar_args(workspace["codes"], out, *common), {"KILL_AT_SAVE": "2"},
                        KILL_DURING_SAVE)  # fmt: skip
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert (out / "checkpoint-2" / CHECKPOINT_MARKER).is_file() and all_finite(out / "checkpoint-2")
    before = _snapshot(out / "checkpoint-2")
    # A half-written newest checkpoint as older versions left it (an empty folder) must not block `latest`.
    (out / "checkpoint-5").mkdir()

    result = run_script("train_ar.py", ar_args(workspace["codes"], out, *common, "--resume_from_checkpoint", "latest"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "skipping checkpoint-5: incomplete" in result.stderr
    assert "resuming from checkpoint-2, the newest complete one" in result.stderr
    assert json.loads((out / "training_summary.json").read_text())["global_step"] == 6
    # Rotation kept the newest complete checkpoint, left the incomplete folder alone and cleaned the temporary one.
    assert sorted(p.name for p in out.iterdir() if "checkpoint" in p.name) == ["checkpoint-5", "checkpoint-6"]
    assert before  # checkpoint-2 was intact until a newer complete checkpoint replaced it under the limit


def test_corrupt_checkpoint_is_a_one_line_error_naming_the_file(workspace, tmp_path):
    import train_ar

    out = tmp_path / "run"
    train_ar.main(train_ar.parse_args(ar_args(workspace["codes"], out, "--max_train_steps", "2",
                                              "--checkpointing_steps", "2")))  # fmt: skip
    weights = out / "checkpoint-2" / "transformer" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = run_script("train_ar.py", ar_args(workspace["codes"], out, "--max_train_steps", "4",
                                               "--resume_from_checkpoint", "latest"))  # fmt: skip
    assert_one_line_error(result, str(weights), "truncated or corrupt")


def test_diverging_tokenizer_stops_cleanly_and_never_saves_or_recommends_nan(workspace, tmp_path):
    out = tmp_path / "nan"
    args = [
        "--train_data_dir",
        str(workspace["data"]),
        "--model_config",
        "tiny",
        "--train_batch_size",
        "8",
        "--learning_rate",
        "1e6",
        "--lr_warmup_steps",
        "0",
        "--lr_scheduler",
        "constant",
        "--max_grad_norm",
        "0",
        "--max_train_steps",
        "6",
        "--checkpointing_steps",
        "1",
        "--output_dir",
        str(out),
        "--perceptual_loss",
        "none",
        "--config_overrides",
        "decoder_type=linear",
        *QUIET,
    ]  # fmt: skip  (the v1 recipe: this divergence reaches the gradient norm first)
    result = run_script("train_tokenizer.py", args)
    # Step 1 is saved; the gradients of step 2 (from those weights) are non-finite: stop before they reach the
    # weights, and mark checkpoint-1, which would fail the same way on resume whatever the learning rate.
    line = assert_one_line_error(result, "gradient norm became nan at optimizer step 2")
    assert "No finite checkpoint was saved yet" in line
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    assert all_finite(out / "checkpoint-1") and (out / "checkpoint-1" / NONFINITE_NOTE).is_file()
    assert not (out / "model.safetensors").exists()
    # ...so `latest` refuses instead of resuming into the same failure (in-process: the run above is the subprocess).
    with pytest.raises(ValueError, match="none of the checkpoints .* can be resumed from"):
        resolve_resume_checkpoint("latest", out)


def test_extract_codes_overwrite_onto_its_own_input_is_refused(workspace, tmp_path):
    before = _snapshot(workspace["tokenizer"])
    result = run_script("extract_codes.py", ["--vq_model_path", str(workspace["tokenizer"]), "--train_data_dir",
                                             str(workspace["data"]), "--output_dir", str(workspace["tokenizer"]),
                                             "--overwrite"])  # fmt: skip
    assert_one_line_error(result, "would replace the input")
    assert _snapshot(workspace["tokenizer"]) == before


def test_extract_codes_overwrite_replaces_only_its_own_output(workspace, tmp_path):
    import extract_codes

    base = ["--vq_model_path", str(workspace["tokenizer"]), "--train_data_dir", str(workspace["data"])]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match="was not written by extract_codes.py"):
        extract_codes.parse_args([*base, "--output_dir", str(mine), "--overwrite"])
    with pytest.raises(ValueError, match="would replace the input"):
        extract_codes.parse_args([*base, "--output_dir", str(workspace["data"].parent), "--overwrite"])
    assert (mine / "thesis.tex").read_text() == "years of work"

    codes = tmp_path / "codes"
    extract_codes.main(extract_codes.parse_args([*base, "--output_dir", str(codes)]))
    AcceleratorState._reset_state(True)
    first = json.loads((codes / "vcq_meta.json").read_text())
    assert first["vq_model_fingerprint"].startswith("sha256:")
    with pytest.raises(ValueError, match="--overwrite"):
        extract_codes.parse_args([*base, "--output_dir", str(codes)])
    extract_codes.main(extract_codes.parse_args([*base, "--output_dir", str(codes), "--overwrite",
                                                 "--flip_augmentation"]))  # fmt: skip
    assert json.loads((codes / "vcq_meta.json").read_text())["num_rows"] == 2 * first["num_rows"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes", "mine"]  # no temporary folder left


def test_nan_right_after_a_save_marks_that_checkpoint_and_recommends_an_earlier_one(workspace, tmp_path, monkeypatch):
    import train_ar
    from vcq_hf.modeling_vcq import VCQForCausalLM

    original_forward = VCQForCausalLM.forward
    calls = {"n": 0}

    def forward_with_nan_from_call_5(self, *args, **kwargs):
        output = original_forward(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] >= 5 and output.loss is not None:
            output.loss = output.loss * float("nan")
        return output

    monkeypatch.setattr(VCQForCausalLM, "forward", forward_with_nan_from_call_5)
    out = tmp_path / "nan"
    args = train_ar.parse_args(
        ar_args(workspace["codes"], out, "--max_train_steps", "8", "--checkpointing_steps", "2")
    )
    # Checkpoint-4 holds the weights whose forward pass (optimizer step 5) gave NaN: resuming from it fails forever.
    with pytest.raises(
        NonFiniteTrainingError, match=r"nan at optimizer step 5.*last good checkpoint is .*checkpoint-2"
    ):
        train_ar.main(args)
    assert (out / "checkpoint-4" / NONFINITE_NOTE).is_file() and all_finite(out / "checkpoint-4")
    assert resolve_resume_checkpoint("latest", out).name == "checkpoint-2"
    with pytest.raises(ValueError, match="non-finite loss"):
        resolve_resume_checkpoint(str(out / "checkpoint-4"), out)


def test_resume_with_a_new_learning_rate_applies_and_records_it(workspace, tmp_path):
    import train_ar

    out = tmp_path / "lr"
    common = ["--max_train_steps", "4", "--checkpointing_steps", "2", "--lr_scheduler", "constant",
              "--lr_warmup_steps", "0", "--logging_steps", "1"]  # fmt: skip
    train_ar.main(train_ar.parse_args(ar_args(workspace["codes"], out, *common)))
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    shutil.rmtree(out / "checkpoint-4")
    train_ar.main(train_ar.parse_args(ar_args(workspace["codes"], out, *common, "--learning_rate", "1e-4",
                                              "--resume_from_checkpoint", "latest")))  # fmt: skip
    logged = [json.loads(line) for line in (out / "logs" / "metrics.jsonl").read_text().splitlines()]
    rates = {record["step"]: record["lr"] for record in logged if "lr" in record}
    assert rates[2] == pytest.approx(3e-3) and rates[3] == pytest.approx(1e-4) and rates[4] == pytest.approx(1e-4)
    assert json.loads((out / "logs" / "hparams.json").read_text())["learning_rate"] == 1e-4
    assert json.loads((out / "checkpoint-4" / CHECKPOINT_MARKER).read_text())["learning_rate"] == 1e-4


def test_codes_from_another_tokenizer_are_refused(workspace, tmp_path):
    import train_ar
    from vcq_hf.modeling_vcq_vq import VCQVQModel

    swapped = tmp_path / "swapped"
    model = VCQVQModel.from_pretrained(workspace["tokenizer"])
    with torch.no_grad():
        model.quantizer.embedding.weight.mul_(1.01)  # same config and schedule, different weights
    model.save_pretrained(swapped)
    args = train_ar.parse_args(ar_args(workspace["codes"], tmp_path / "out", "--max_train_steps", "1",
                                       "--vq_model_path", str(swapped)))  # fmt: skip
    with pytest.raises(ValueError, match="not the one the codes .* were extracted with"):
        train_ar.main(args)


# ---------------------------------------------------------------------------------------------------- bad input


def test_encode_rejects_pixels_outside_minus_one_one(workspace):
    from vcq_hf.modeling_vcq_vq import VCQVQModel

    model = VCQVQModel.from_pretrained(workspace["tokenizer"]).eval()
    size = model.config.image_size
    images = torch.rand(2, 3, size, size)
    model.encode(images * 2 - 1)
    with pytest.raises(ValueError, match=r"\[-1, 1\], got values in \[.*\] \(images in \[0, 255\]\?\)"):
        model.encode(images * 255)
    with pytest.raises(ValueError, match="non-finite"):
        model.encode(torch.full((1, 3, size, size), float("nan")))


def test_sample_npz_name_cannot_leave_the_output_dir(tmp_path):
    import sample

    for name in ("../x.npz", "/tmp/x.npz", "sub/x.npz", ".hidden.npz"):
        with pytest.raises(ValueError, match="plain file name"):
            sample.parse_args(["--pipeline_path", str(tmp_path), "--output_dir", str(tmp_path), "--npz_name", name])


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    from vcq_hf import VCQConfig, VCQForCausalLM, VCQVQConfig, VCQVQModel
    from vcq_hf.pipeline_vcq import VCQPipeline

    torch.manual_seed(0)
    vq_config = VCQVQConfig.from_preset("tiny")
    pipe = VCQPipeline(
        VCQVQModel(vq_config).eval(),
        VCQForCausalLM(VCQConfig.from_vq_config(vq_config, preset="tiny")).eval(),
        id2label={0: "a", 1: "b", 2: "c"},
    )
    folder = tmp_path_factory.mktemp("pipe") / "pipe"
    pipe.save_pretrained(folder)
    return folder


def run_cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--cell-size", "100000"], "--cell-size 100000 is out of range: it must be in [1, 1024]"),
        (["--num-images-per-class", "100000"], "--num-images-per-class 100000 is out of range"),
        (["--batch-size", "0"], "--batch-size 0 is out of range"),
        (["--num-images-per-class", "1000", "--cell-size", "1024"], "would take about"),
        (["--num-images-per-class", "2000"], "3 classes x 2000 images = 6000 images is more than 4096"),
    ],
)
def test_generate_sizes_are_bounded_before_allocating(tiny_pipeline, tmp_path, capsys, extra, message):
    code, err = run_cli(["generate", "--model", str(tiny_pipeline), "--output", str(tmp_path / "g.png"), *extra],
                        capsys)  # fmt: skip
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "g.png").exists()


def test_generate_in_batches_gives_the_same_grid(tiny_pipeline, tmp_path, capsys):
    base = ["generate", "--model", str(tiny_pipeline), "--num-images-per-class", "3", "--quiet"]
    assert run_cli([*base, "--output", str(tmp_path / "one.png")], capsys)[0] == 0
    assert run_cli([*base, "--output", str(tmp_path / "many.png"), "--batch-size", "2"], capsys)[0] == 0
    assert (tmp_path / "one.png").read_bytes() == (tmp_path / "many.png").read_bytes()


def test_truncated_weights_are_one_line_errors_naming_the_file(tiny_pipeline, tmp_path, capsys):
    from vcq_hf.pipeline_vcq import VCQPipeline
    from vcq_hf.training_utils.files import CorruptWeightsError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_pipeline, broken)
    weights = broken / "transformer" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CorruptWeightsError, match=r"transformer/model.safetensors cannot be read .*truncated"):
        VCQPipeline.from_pretrained(broken)
    code, err = run_cli(["generate", "--model", str(broken), "--output", str(tmp_path / "g.png")], capsys)
    assert code == 2 and "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"{weights} cannot be read" in errors[0] and "truncated or corrupt" in errors[0]


@pytest.mark.parametrize("component", ["transformer", "vq_model"])
def test_bare_model_from_pretrained_names_a_truncated_weights_file(tiny_pipeline, tmp_path, component):
    from vcq_hf.modeling_vcq import VCQForCausalLM
    from vcq_hf.modeling_vcq_vq import VCQVQModel
    from vcq_hf.validation import CorruptWeightsError

    model_class = {"transformer": VCQForCausalLM, "vq_model": VCQVQModel}[component]
    broken = tmp_path / component
    shutil.copytree(tiny_pipeline / component, broken)
    weights = broken / "model.safetensors"
    intact = weights.read_bytes()
    weights.write_bytes(intact[: len(intact) // 2])
    with pytest.raises(CorruptWeightsError, match=rf"{weights} cannot be read .*truncated or corrupt"):
        model_class.from_pretrained(broken)
    model_class.from_pretrained(tiny_pipeline / component)  # an intact folder still loads


def run_in_process(script, argv, capsys) -> tuple[int, str]:
    """`vcq_hf.training_utils.scripts.run_script` of an example script with `argv`: (exit code, stderr)."""
    from vcq_hf.training_utils import scripts as training_utils

    module = __import__(script)
    try:
        training_utils.run_script(module.main, lambda: module.parse_args(argv))
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    return code, capsys.readouterr().err


def bad_image_folders(root: Path) -> dict[str, Path]:
    from PIL import Image

    folders = {}
    empty = root / "empty"
    (empty / "train" / "a").mkdir(parents=True)
    (empty / "train" / "a" / "notes.txt").write_text("no images here")
    folders["empty"] = empty
    corrupt = root / "corrupt"
    for label in ("a", "b"):
        (corrupt / "train" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (12, 12), (40 * i, 0, 0)).save(corrupt / "train" / label / f"{i}.png")
    (corrupt / "train" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    folders["corrupt"] = corrupt
    return folders


@pytest.mark.parametrize(
    "case, extra, message",
    [
        ("empty", [], "has no images for split 'train'"),
        ("corrupt", [], "cannot identify image file '{corrupt}/train/a/broken.png'; remove or replace that file"),
        ("ok", ["--learning_rate", "nan"], "--learning_rate = nan is not a finite number"),
        ("ok", ["--max_grad_norm", "inf"], "--max_grad_norm = inf is not a finite number"),
        ("ok", ["--perceptual_weight", "nan"], "--perceptual_weight = nan is not a finite number"),
        ("ok", ["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps = 0 is out of range"),
    ],
)
def test_train_tokenizer_bad_input_is_one_line(workspace, tmp_path, capsys, case, extra, message):
    folders = {**bad_image_folders(tmp_path), "ok": workspace["data"]}
    argv = ["--train_data_dir", str(folders[case]), "--model_config", "tiny", "--train_batch_size", "2",
            "--max_train_steps", "1", "--output_dir", str(tmp_path / "out"), *QUIET, *extra]  # fmt: skip
    code, err = run_in_process("train_tokenizer", argv, capsys)
    assert code == 1 and "Traceback" not in err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and message.format(**folders) in errors[0], err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--validation_guidance_scale", "nan"], "guidance_scale = nan is out of range"),
        (["--learning_rate", "-1"], "--learning_rate = -1.0 is out of range"),
        (["--class_dropout_prob", "nan"], "--class_dropout_prob = nan is out of range"),
        (["--adam_epsilon", "inf"], "--adam_epsilon = inf is not a finite number"),
        (["--resume_from_checkpoint", "checkpoint-7"], "no such checkpoint folder"),
    ],
)
def test_train_ar_bad_flags_are_one_line(workspace, tmp_path, capsys, extra, message):
    code, err = run_in_process("train_ar", ar_args(workspace["codes"], tmp_path / "out", *extra), capsys)
    assert code == 1 and "Traceback" not in err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and message in errors[0], err


def test_requested_tracker_that_cannot_start_is_an_error_and_tensorboard_logs(workspace, tmp_path, capsys):
    from accelerate.tracking import get_available_trackers

    missing = next(name for name in ("wandb", "aim", "mlflow", "comet_ml") if name not in
                   {str(t) for t in get_available_trackers()})  # fmt: skip
    out = tmp_path / "out"
    code, err = run_in_process("train_ar", ar_args(workspace["codes"], out, "--max_train_steps", "1", "--report_to",
                                                   f"tensorboard,{missing}"), capsys)  # fmt: skip
    assert code == 1 and f"--report_to {missing!r} cannot start: its package is not installed" in err
    assert not (out / "logs" / "metrics.jsonl").exists()  # refused before training

    code, err = run_in_process("train_ar", ar_args(workspace["codes"], out, "--max_train_steps", "2", "--report_to",
                                                   "tensorboard", "--logging_steps", "1"), capsys)  # fmt: skip
    assert code == 0, err
    assert list((out / "logs").rglob("events.out.tfevents.*")), sorted(p.name for p in (out / "logs").rglob("*"))
    assert len((out / "logs" / "metrics.jsonl").read_text().splitlines()) == 2


def test_scripts_take_the_cli_names_for_the_same_things(workspace, tmp_path):
    import extract_codes
    import sample
    import train_ar

    base = ["--train_data_dir", str(workspace["data"]), "--output_dir", str(tmp_path / "c")]
    for flag in ("--vq_model", "--vq_model_path"):  # `vcq analyze --vq-model`; the older spelling still works
        assert extract_codes.parse_args([flag, str(workspace["tokenizer"]), *base]).vq_model_path == str(
            workspace["tokenizer"]
        )
        args = train_ar.parse_args(ar_args(workspace["codes"], tmp_path / "o", flag, str(workspace["tokenizer"])))
        assert args.vq_model_path == str(workspace["tokenizer"])
    for flag in ("--model", "--pipeline_path"):  # `vcq generate --model`
        with pytest.raises(ValueError, match="model_index.json"):
            sample.parse_args([flag, str(tmp_path), "--output_dir", str(tmp_path / "s")])


def test_pipeline_with_a_swapped_tokenizer_is_refused(workspace, tmp_path):
    from safetensors.torch import save_file

    import train_ar
    from vcq_hf.pipeline_vcq import VCQPipeline

    out = tmp_path / "pipe"
    train_ar.main(train_ar.parse_args(ar_args(workspace["codes"], out, "--max_train_steps", "1")))
    assert VCQPipeline.from_pretrained(out).transformer.config.vq_model_fingerprint.startswith("sha256:")
    weights = out / "vq_model" / "model.safetensors"
    state = load_file(str(weights))
    state["quantizer.embedding.weight"] = state["quantizer.embedding.weight"] * 1.01  # same schedule, other weights
    save_file(state, str(weights))
    with pytest.raises(ValueError, match="is not the tokenizer its transformer was trained with"):
        VCQPipeline.from_pretrained(out)
