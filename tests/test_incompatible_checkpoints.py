"""Resuming from a checkpoint written for another model config or other flags (issue 12): a one-line
`IncompatibleCheckpointError` that names the folder, what differs and what to do, and the checkpoint left unchanged.

The end-to-end cases resume `train_tokenizer.py` (tiny config, in-process) from a checkpoint whose EMA folder was
replaced, or with flags that do not fit it; the unit cases cover the same loaders as `train_ar.py` uses them.
"""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import train_tokenizer  # noqa: E402
from vcq_hf.configuration_vcq import VCQConfig  # noqa: E402
from vcq_hf.configuration_vcq_vq import VCQVQConfig  # noqa: E402
from vcq_hf.modeling_vcq import VCQForCausalLM  # noqa: E402
from vcq_hf.modeling_vcq_vq import VCQVQModel  # noqa: E402
from vcq_hf.training_utils.checkpointing import (  # noqa: E402
    IncompatibleCheckpointError,
    check_optimizer_state,
    load_module,
)
from vcq_hf.training_utils.ema import create_ema, load_ema, save_ema  # noqa: E402


FIXTURE_IMAGES = Path(__file__).resolve().parent / "fixtures" / "images"
ADVICE = r"start a new run in another --output_dir \(the checkpoint was left unchanged\)\.$"


@pytest.fixture(autouse=True)
def reset_accelerate_state():
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--train_data_dir", str(data), "--model_config", "tiny", "--train_batch_size", "8", "--learning_rate", "3e-3",
        "--lr_warmup_steps", "1", "--output_dir", str(out), "--report_to", "jsonl", "--perceptual_loss", "none",
        "--validation_steps", "100", "--checkpointing_steps", "1", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A 1-step tiny tokenizer run with EMA (the default) and its checkpoint-1."""
    root = tmp_path_factory.mktemp("incompatible")
    for path in sorted(FIXTURE_IMAGES.glob("*.png"))[:16]:
        kind = path.stem.split("_")[0]
        (root / "data" / "train" / kind).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / "data" / "train" / kind / path.name)
    train_tokenizer.main(train_tokenizer.parse_args(_args(root / "data", root / "saved", "--max_train_steps", "1")))
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return root


def _copy_run(saved_run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    shutil.copytree(saved_run / "saved" / "checkpoint-1", out / "checkpoint-1")
    return out


def _replace_ema(ema: Path, config: VCQVQConfig, drop_fields: tuple[str, ...] = ()) -> None:
    state = (ema / "ema_state.json").read_text()
    shutil.rmtree(ema)
    VCQVQModel(config).save_pretrained(ema)
    (ema / "ema_state.json").write_text(state)
    if drop_fields:  # a config.json written before these fields existed
        saved = json.loads((ema / "config.json").read_text())
        (ema / "config.json").write_text(json.dumps({k: v for k, v in saved.items() if k not in drop_fields}))


@pytest.mark.parametrize(
    "other, drop_fields, message",
    [
        ({"decoder_conv_channels": 5}, (), r"decoder_conv_channels = 5 in the checkpoint, 6 in this run"),
        # The v1 format: no decoder_type in config.json, read as the linear patch head.
        ({"decoder_type": "linear"}, ("decoder_type",), r"decoder_type = 'linear' in the checkpoint, 'conv' in this"),
    ],
)
def test_resume_with_an_ema_of_another_config_names_what_differs(saved_run, tmp_path, other, drop_fields, message):
    out = _copy_run(saved_run, tmp_path)
    _replace_ema(out / "checkpoint-1" / "vq_model_ema", VCQVQConfig.from_preset("tiny", **other), drop_fields)
    before = _snapshot(out / "checkpoint-1")
    args = train_tokenizer.parse_args(
        _args(saved_run / "data", out, "--max_train_steps", "2", "--resume_from_checkpoint", "checkpoint-1")
    )
    with pytest.raises(IncompatibleCheckpointError) as error:
        train_tokenizer.main(args)
    text = str(error.value)
    assert "\n" not in text
    assert text.startswith(f"{out / 'checkpoint-1' / 'vq_model_ema'} does not match this run's VCQVQModel: ")
    assert re.search(message, text), text
    assert "weight(s) differ in shape (decoder." in text
    assert re.search(ADVICE, text), text
    assert _snapshot(out / "checkpoint-1") == before  # never deleted or modified
    assert not (out / "checkpoint-2").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--config_overrides", "decoder_conv_channels=5"],
         r"checkpoint-1/vq_model does not match this run's VCQVQModel: config fields differ \(decoder_conv_channels = "
         r"6 in the checkpoint, 5 in this run\); 7 weight\(s\) differ in shape"),
        (["--use_discriminator"], r"checkpoint-1 has no discriminator/ folder for this run's PatchDiscriminator"),
    ],
)  # fmt: skip
def test_resume_with_flags_that_do_not_fit_the_checkpoint(saved_run, tmp_path, extra, message):
    out = _copy_run(saved_run, tmp_path)
    before = _snapshot(out / "checkpoint-1")
    args = train_tokenizer.parse_args(
        _args(saved_run / "data", out, "--max_train_steps", "2", "--resume_from_checkpoint", "checkpoint-1", *extra)
    )
    with pytest.raises(IncompatibleCheckpointError, match=message + ".*" + ADVICE):
        train_tokenizer.main(args)
    assert _snapshot(out / "checkpoint-1") == before


def test_unreadable_training_clock_names_the_file(saved_run, tmp_path):
    out = _copy_run(saved_run, tmp_path)
    clock_file = out / "checkpoint-1" / "training_clock.json"
    clock_file.write_text(json.dumps({"training_wall_s": 3.0}))  # an older or foreign format
    model = VCQVQModel(VCQVQConfig.from_preset("tiny"))
    with pytest.raises(IncompatibleCheckpointError, match=r"training_clock.json cannot be used \(KeyError"):
        train_tokenizer.load_extra_state(out / "checkpoint-1", None, model, train_tokenizer.TrainingClock())


# ------------------------------------------------------------------------------------------- the loaders themselves


def test_ar_ema_of_another_config_names_the_folder_and_fields(tmp_path):
    # train_ar.py's transformer_ema goes through the same load_ema -> load_module.
    saved = VCQForCausalLM(VCQConfig.from_preset("tiny", intermediate_size=36))
    save_ema(create_ema(saved), saved, tmp_path / "transformer_ema")
    model = VCQForCausalLM(VCQConfig.from_preset("tiny"))
    ema = create_ema(model)
    shadow = [p.clone() for p in ema.shadow_params]
    with pytest.raises(
        IncompatibleCheckpointError,
        match=r"transformer_ema does not match this run's VCQForCausalLM: config fields differ \(intermediate_size = 36 "
        r"in the checkpoint, 40 in this run\); 6 weight\(s\) differ in shape \(model.layers.0.mlp.down_proj.weight: "
        r"\[24, 36\] in the checkpoint, \[24, 40\] in this run",
    ):
        load_ema(ema, model, tmp_path / "transformer_ema")
    assert all(torch.equal(a, b) for a, b in zip(shadow, ema.shadow_params))  # the EMA was left as it was


def test_missing_ema_folder_says_the_saving_run_had_none(tmp_path):
    model = VCQVQModel(VCQVQConfig.from_preset("tiny"))
    (tmp_path / "checkpoint-4").mkdir()
    with pytest.raises(IncompatibleCheckpointError, match=r"checkpoint-4 has no vq_model_ema/ folder .*--use_ema"):
        load_ema(create_ema(model), model, tmp_path / "checkpoint-4" / "vq_model_ema")


def test_plain_module_of_another_shape(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "discriminator").mkdir()
    save_file(
        {"weight": torch.zeros(4, 3), "extra": torch.zeros(1)}, str(tmp_path / "discriminator" / "model.safetensors")
    )
    with pytest.raises(
        IncompatibleCheckpointError,
        match=r"discriminator does not match this run's Linear: 1 weight\(s\) differ in shape \(weight: \[4, 3\] in the "
        r"checkpoint, \[5, 3\] in this run\); 1 weight\(s\) of this run are missing \(bias\); 1 weight\(s\) are not in "
        r"this run's model \(extra\)",
    ):
        load_module(torch.nn.Linear(3, 5), tmp_path / "discriminator")


def test_optimizer_state_of_another_shape_is_refused():
    saved = torch.nn.Linear(3, 4)
    saved_optimizer = torch.optim.AdamW(saved.parameters())
    saved(torch.ones(2, 3)).sum().backward()
    saved_optimizer.step()
    model = torch.nn.Linear(3, 5)
    optimizer = torch.optim.AdamW(model.parameters())
    optimizer.load_state_dict(saved_optimizer.state_dict())  # torch compares only the number of parameters
    with pytest.raises(
        IncompatibleCheckpointError,
        match=r"checkpoint-9/optimizer.bin does not match this run's optimizer: the state '(exp_avg|exp_avg_sq)' of "
        r"parameter 0 \(group 0\) has shape \[4, 3\], the parameter \[5, 3\]",
    ):
        check_optimizer_state([optimizer], "out/checkpoint-9")
    check_optimizer_state([saved_optimizer], "out/checkpoint-9")  # a matching state passes
