"""End-to-end tests of the example scripts on tiny configs and the real fixture images (in-process, offline, CPU).

The chain train_tokenizer.py -> extract_codes.py -> train_ar.py -> sample.py runs once per module on 32 real images
(tests/fixtures/images: Fashion-MNIST, digits, emoji) sorted into a 3-class imagefolder; the other tests reuse it.
The real 2-process launch lives in tests/test_examples_multiprocess.py.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file


EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
FIXTURE_IMAGES = Path(__file__).resolve().parent / "fixtures" / "images"
sys.path.insert(0, str(EXAMPLES_DIR))

import extract_codes  # noqa: E402
import sample  # noqa: E402
import train_ar  # noqa: E402
import train_tokenizer  # noqa: E402
from vcq_hf.configuration_vcq_vq import VCQVQConfig  # noqa: E402
from vcq_hf.hub.model_card import build_model_card  # noqa: E402
from vcq_hf.image_processing_vcq import VCQImageProcessor  # noqa: E402
from vcq_hf.metrics.perceptual import VGGPerceptualLoss  # noqa: E402
from vcq_hf.modeling_vcq import VCQForCausalLM  # noqa: E402
from vcq_hf.modeling_vcq_vq import VCQVQModel  # noqa: E402
from vcq_hf.pipeline_vcq import VCQPipeline  # noqa: E402
from vcq_hf.training_utils import scripts as training_utils  # noqa: E402
from vcq_hf.training_utils.checkpointing import (  # noqa: E402
    CHECKPOINT_MARKER,
    NonFiniteTrainingError,
    rotate_checkpoints,
)


QUIET = ["--report_to", "jsonl"]


@pytest.fixture(autouse=True)
def reset_accelerate_state():
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def make_image_folder(root: Path) -> Path:
    """tests/fixtures/images/<kind>_<i>.png -> root/train/<kind>/<kind>_<i>.png (3 classes, 32 images)."""
    for path in sorted(FIXTURE_IMAGES.glob("*.png")):
        kind = path.stem.split("_")[0]
        (root / "train" / kind).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / "train" / kind / path.name)
    return root


def checkpoint_names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.startswith("checkpoint-")}


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def state_of(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def tokenizer_args(data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--train_data_dir", str(data_dir), "--model_config", "tiny", "--train_batch_size", "8",
        "--learning_rate", "3e-3", "--lr_warmup_steps", "1", "--output_dir", str(output_dir), *QUIET, *extra,
    ]  # fmt: skip


def ar_args(codes_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--codes_dir", str(codes_dir), "--model_config", "tiny", "--train_batch_size", "8",
        "--learning_rate", "3e-3", "--lr_warmup_steps", "1", "--validation_steps", "1000",
        "--num_validation_images_per_class", "2", "--output_dir", str(output_dir), *QUIET, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    data_dir = make_image_folder(root / "data")
    tokenizer_dir = root / "tokenizer"
    train_tokenizer.main(
        train_tokenizer.parse_args(
            tokenizer_args(
                data_dir, tokenizer_dir,
                "--max_train_steps", "6", "--checkpointing_steps", "2", "--checkpoints_total_limit", "2",
                "--random_flip", "--use_ema", "--ema_max_decay", "0.5", "--dead_code_restart_steps", "3",
                "--logging_steps", "2", "--validation_steps", "3", "--num_validation_images", "4",
            )
        )
    )  # fmt: skip
    AcceleratorState._reset_state(True)
    codes_dir = root / "codes"
    extract_codes.main(
        extract_codes.parse_args(
            ["--vq_model_path", str(tokenizer_dir), "--train_data_dir", str(data_dir), "--output_dir",
             str(codes_dir), "--flip_augmentation", "--batch_size", "7"]
        )
    )  # fmt: skip
    AcceleratorState._reset_state(True)
    return {"root": root, "data": data_dir, "tokenizer": tokenizer_dir, "codes": codes_dir}


# ---------------------------------------------------------------------------------------------------- tokenizer


def test_train_tokenizer_artefacts(workspace):
    out = workspace["tokenizer"]
    model = VCQVQModel.from_pretrained(out)
    processor = VCQImageProcessor.from_pretrained(out)
    assert processor.image_size == model.config.image_size == 12
    # 6 steps, checkpoint every 2, keep 2: exactly the newest two remain, each with model + EMA save_pretrained folders.
    assert checkpoint_names(out) == {"checkpoint-4", "checkpoint-6"}
    assert (out / "checkpoint-6" / "vq_model" / "config.json").is_file()
    assert json.loads((out / "checkpoint-6" / "vq_model_ema" / "ema_state.json").read_text())["optimization_step"] == 6
    # The final model holds the EMA weights, not the raw ones.
    final, raw = state_of(out), state_of(out / "checkpoint-6" / "vq_model")
    assert torch.equal(final["quantizer.embedding.weight"], state_of(out / "checkpoint-6" / "vq_model_ema")[
        "quantizer.embedding.weight"])  # fmt: skip
    assert not all(torch.equal(final[k], raw[k]) for k in final)

    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["global_step"] == 6 and summary["num_processes"] == 1
    usage = summary["code_usage"]
    assert len(usage["usage_fraction_per_position"]) == model.config.num_image_tokens
    assert all(0 < u <= k for u, k in zip(usage["codes_used_per_position"], model.config.codebook_sizes))
    records = read_jsonl(out / "logs" / "metrics.jsonl")
    per_position = [r for r in records if "usage/fraction_per_position" in r]
    assert [r["step"] for r in per_position] == [2, 4, 6]
    assert len(per_position[0]["usage/fraction_per_position"]) == model.config.num_image_tokens
    assert any("loss/reconstruction" in r and np.isfinite(r["loss/reconstruction"]) for r in records)
    assert any("usage/restarted_codes" in r for r in records)
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["recon-000003.png", "recon-000006.png"]

    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "image-feature-extraction"
    assert "vcq" in card.data.tags
    assert "K_max (codebook size) | 37" in card.text and "train_tokenizer.py" in card.text


def test_perceptual_loss_from_local_weights(tmp_path):
    torch.manual_seed(0)
    # A 2-stage VGG-like trunk in torchvision layout: conv,relu,conv,relu,pool | conv,relu; LPIPS heads per stage.
    weights = {
        "features.0.weight": torch.randn(4, 3, 3, 3) * 0.3, "features.0.bias": torch.zeros(4),
        "features.2.weight": torch.randn(4, 4, 3, 3) * 0.3, "features.2.bias": torch.zeros(4),
        "features.5.weight": torch.randn(6, 4, 3, 3) * 0.3, "features.5.bias": torch.zeros(6),
        "lin0.model.1.weight": torch.rand(1, 4, 1, 1), "lin1.model.1.weight": torch.rand(1, 6, 1, 1),
    }  # fmt: skip
    path = tmp_path / "vgg.safetensors"
    save_file(weights, str(path))
    loss_fn = VGGPerceptualLoss(path)
    assert loss_fn.lpips and loss_fn.channels == [4, 6]
    x = torch.rand(2, 3, 12, 12) * 2 - 1
    y = (x + 0.5 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    assert loss_fn(x, x).item() == pytest.approx(0.0, abs=1e-6)
    loss = loss_fn(y, x)
    loss.backward()
    assert loss.item() > 0 and y.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss_fn.parameters())

    save_file({"classifier.0.weight": torch.zeros(2, 2)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="features"):
        VGGPerceptualLoss(tmp_path / "bad.safetensors")


def test_train_tokenizer_with_perceptual_and_discriminator(workspace, tmp_path):
    torch.manual_seed(0)
    vgg = {"features.0.weight": torch.randn(4, 3, 3, 3), "features.0.bias": torch.zeros(4)}
    save_file(vgg, str(tmp_path / "vgg.safetensors"))
    out = tmp_path / "gan"
    args = train_tokenizer.parse_args(
        tokenizer_args(
            workspace["data"], out, "--max_train_steps", "3", "--checkpointing_steps", "3", "--logging_steps", "1",
            "--perceptual_loss", "vgg", "--perceptual_weights", str(tmp_path / "vgg.safetensors"),
            "--use_discriminator", "--disc_start_step", "1",
            "--disc_channels", "8", "--disc_num_layers", "2", "--dead_code_restart_steps", "0",
        )
    )  # fmt: skip
    train_tokenizer.main(args)
    records = read_jsonl(out / "logs" / "metrics.jsonl")
    by_step = {r["step"]: r for r in records if "loss" in r}
    assert "loss/perceptual" in by_step[1] and "loss/discriminator" not in by_step[1]  # GAN starts at step 1
    assert "loss/discriminator" in by_step[2] and "loss/generator" in by_step[3]
    assert (out / "checkpoint-3" / "discriminator" / "model.safetensors").is_file()


def test_train_tokenizer_resume_matches_uninterrupted_run(workspace, tmp_path):
    # Random flips and dead-code restarts (every 2 steps) are seeded per step: a resumed run repeats them exactly.
    common = ["--max_train_steps", "6", "--checkpointing_steps", "3", "--random_flip", "--dead_code_restart_steps",
              "2", "--dead_code_threshold", "0.5", "--validation_steps", "100"]  # fmt: skip
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    train_tokenizer.main(train_tokenizer.parse_args(tokenizer_args(workspace["data"], full, *common)))
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-3", resumed / "checkpoint-3")
    AcceleratorState._reset_state(True)
    train_tokenizer.main(
        train_tokenizer.parse_args(
            tokenizer_args(workspace["data"], resumed, *common, "--resume_from_checkpoint", "checkpoint-3")
        )
    )
    restarts = [
        r["usage/restarted_codes"] for r in read_jsonl(full / "logs" / "metrics.jsonl") if "usage/restarted_codes" in r
    ]
    assert sum(restarts) > 0  # the restart path really ran
    a, b = state_of(full), state_of(resumed)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_train_tokenizer_rerun_of_a_finished_run_changes_nothing(workspace, tmp_path):
    # The twin of the train_ar test: resuming at max_train_steps trained one step past it and rewrote the summary.
    out = tmp_path / "run"
    command = tokenizer_args(workspace["data"], out, "--max_train_steps", "2", "--checkpointing_steps", "2",
                             "--validation_steps", "100", "--resume_from_checkpoint", "latest")  # fmt: skip
    train_tokenizer.main(train_tokenizer.parse_args(command))
    summary, weights = (out / "training_summary.json").read_text(), state_of(out)
    AcceleratorState._reset_state(True)
    train_tokenizer.main(train_tokenizer.parse_args(command))
    assert (out / "training_summary.json").read_text() == summary
    assert json.loads(summary)["global_step"] == 2
    for key, value in state_of(out).items():
        assert torch.equal(value, weights[key]), key


def test_train_tokenizer_decoder_only_keeps_the_codes(workspace, tmp_path):
    # Retrain the decoder of the workspace tokenizer with a new pixel head: encoder and codebook are frozen.
    out = tmp_path / "decoder"
    train_tokenizer.main(
        train_tokenizer.parse_args(
            tokenizer_args(
                workspace["data"], out, "--model_config", str(workspace["tokenizer"]), "--decoder_only",
                "--config_overrides", "decoder_conv_channels=5", "--max_train_steps", "2", "--checkpointing_steps", "2",
                "--validation_steps", "100",
            )
        )
    )  # fmt: skip
    before, after = state_of(workspace["tokenizer"]), state_of(out)
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("encoder.", "quantizer.embedding")))
    assert after["decoder.proj_out.weight"].shape != before["decoder.proj_out.weight"].shape
    torch.testing.assert_close(
        after["decoder.layers.0.mlp.fc1.weight"], before["decoder.layers.0.mlp.fc1.weight"], rtol=0, atol=0.1
    )  # fmt: skip  (kept, then fine-tuned)
    assert VCQVQModel.from_pretrained(out).config.decoder_conv_channels == 5


def test_dead_codes_restart_with_the_conv_decoder_and_in_the_ema(tmp_path):
    # Codes 20..29 duplicate code 0, so a nearest-code lookup never picks them (ties go to the lowest index), and their
    # usage starts at 0 while every other code's starts at 1: after step 1 exactly these ten are dead and restarted.
    torch.manual_seed(0)
    init = tmp_path / "init"
    model = VCQVQModel(VCQVQConfig.from_preset("tiny", decoder_type="conv"))
    forced = list(range(20, 30))
    with torch.no_grad():
        model.quantizer.embedding.weight[forced] = model.quantizer.embedding.weight[0].clone()
        model.quantizer.code_usage.fill_(1.0)
        model.quantizer.code_usage[forced] = 0.0
    model.save_pretrained(init)
    out = tmp_path / "out"
    train_tokenizer.main(
        train_tokenizer.parse_args(
            tokenizer_args(
                make_image_folder(tmp_path / "data"), out, "--model_config", str(init), "--max_train_steps", "1",
                "--dead_code_restart_steps", "1", "--checkpointing_steps", "1", "--logging_steps", "1",
                "--validation_steps", "100", "--perceptual_loss", "none", "--usage_eval_samples", "16",
            )
        )
    )  # fmt: skip
    assert [r["usage/restarted_codes"] for r in read_jsonl(out / "logs" / "metrics.jsonl") if "usage/restarted_codes"
            in r] == [len(forced)]  # fmt: skip
    live = state_of(out / "checkpoint-1" / "vq_model")["quantizer.embedding.weight"]
    before = model.quantizer.embedding.weight.detach()  # the init rows
    assert not torch.allclose(live[forced], before[forced], atol=1e-2)  # re-seeded from encoder outputs
    # The saved model is the EMA; restarted at its last step, it keeps the new codes (the average alone would not).
    final = VCQVQModel.from_pretrained(out)
    assert final.config.decoder_type == "conv"
    torch.testing.assert_close(final.quantizer.embedding.weight.detach()[forced], live[forced], rtol=0, atol=0)
    usage = json.loads((out / "training_summary.json").read_text())["code_usage"]
    assert len(usage["codes_used_per_position"]) == len(usage["perplexity_per_position"]) == 5  # T of tiny
    assert all(0 < u <= k for u, k in zip(usage["codes_used_per_position"], final.config.codebook_sizes))


def test_train_tokenizer_time_budget_stops_and_records_the_clock(workspace, tmp_path):
    out = tmp_path / "budget"
    train_tokenizer.main(
        train_tokenizer.parse_args(
            tokenizer_args(
                workspace["data"], out, "--max_train_steps", "100000", "--max_train_minutes", "0.0001",
                "--checkpointing_steps", "1000", "--validation_steps", "100", "--perceptual_loss", "none",
            )
        )
    )  # fmt: skip
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["global_step"] == 1 and summary["stopped_by_time_budget"]
    assert summary["training_wall_s"] > 0 and summary["training_cpu_s"] > 0
    clock = json.loads((out / "checkpoint-1" / "training_clock.json").read_text())  # saved when the budget ends
    assert clock["training_wall_s"] >= 0.006


# ---------------------------------------------------------------------------------------------------- codes


def test_extract_codes_dataset(workspace):
    codes = datasets.load_from_disk(str(workspace["codes"]))
    meta = json.loads((workspace["codes"] / "vcq_meta.json").read_text())
    model = VCQVQModel.from_pretrained(workspace["tokenizer"]).eval()
    num_tokens = model.config.num_image_tokens
    assert codes.features["codes"] == datasets.Sequence(datasets.Value("int32"), length=num_tokens)
    assert codes.features["label"].names == ["digit", "emoji", "fashion"] == meta["class_names"]
    assert meta["codebook_sizes"] == list(model.config.codebook_sizes)
    assert len(codes) == 64 == 2 * meta["num_source_images"]  # flip augmentation doubles the set
    table = codes.with_format("numpy")[:]
    assert not table["flipped"][:32].any() and table["flipped"][32:].all()
    assert np.array_equal(table["source_index"][:32], np.arange(32))
    assert (table["codes"] < np.asarray(model.config.codebook_sizes)).all()

    # Row i is the tokenizer's code of image i (and row 32 + i of its mirror image).
    images = datasets.load_dataset("imagefolder", data_dir=str(workspace["data"]), split="train")
    pixel_values = VCQImageProcessor.from_pretrained(workspace["tokenizer"])(
        [images[0]["image"], images[31]["image"]], return_tensors="pt"
    ).pixel_values
    with torch.no_grad():
        expected = model.encode(pixel_values).codes.numpy()
        expected_flipped = model.encode(pixel_values.flip(-1)).codes.numpy()
    assert np.array_equal(table["codes"][[0, 31]], expected)
    assert np.array_equal(table["codes"][[32, 63]], expected_flipped)

    with pytest.raises(ValueError, match="--overwrite"):
        extract_codes.parse_args(
            ["--vq_model_path", str(workspace["tokenizer"]), "--train_data_dir", str(workspace["data"]),
             "--output_dir", str(workspace["codes"])]
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------------- AR + sampling


def test_train_ar_pipeline_and_sample(workspace, tmp_path):
    out = tmp_path / "ar"
    train_ar.main(train_ar.parse_args(ar_args(workspace["codes"], out, "--max_train_steps", "4",
                                              "--checkpointing_steps", "0", "--validation_steps", "2")))  # fmt: skip
    pipe = VCQPipeline.from_pretrained(out)
    assert pipe.id2label == {0: "digit", 1: "emoji", 2: "fashion"}
    assert list(pipe.transformer.config.codebook_sizes) == list(pipe.vq_model.config.codebook_sizes)
    assert not checkpoint_names(out)
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-000002.png", "step-000004.png"]
    assert (out / "sample_grid.png").is_file()
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "text-to-image" and card.data.library_name == "diffusers"
    assert "VCQPipeline.from_pretrained" in card.text and "digit" in card.text
    assert "Code usage over" in card.text  # carried over from the tokenizer's training_summary.json
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["global_step"] == 4 and np.isfinite(summary["final_logs"]["loss"])

    samples_dir = tmp_path / "samples"
    AcceleratorState._reset_state(True)
    sample.main(sample.parse_args(["--pipeline_path", str(out), "--num_samples", "5", "--batch_size", "2",
                                   "--output_dir", str(samples_dir), "--class_labels", "fashion", "0"]))  # fmt: skip
    npz = np.load(samples_dir / "samples.npz")
    assert npz["arr_0"].shape == (5, 12, 12, 3) and npz["arr_0"].dtype == np.uint8
    assert npz["labels"].tolist() == [2, 0, 2, 0, 2]
    sizes = VCQPipeline.from_pretrained(out).transformer.config.codebook_sizes
    assert npz["codes"].shape == (5, len(sizes)) and (npz["codes"] < np.asarray(sizes)).all()  # for `analyze copies`
    pngs = sorted(p.name for p in (samples_dir / "images").iterdir())
    assert pngs == ["000000_2.png", "000001_0.png", "000002_2.png", "000003_0.png", "000004_2.png"]
    # Per-image seeds: a different batch size gives the same images.
    AcceleratorState._reset_state(True)
    sample.main(sample.parse_args(["--pipeline_path", str(out), "--num_samples", "5", "--batch_size", "5",
                                   "--output_dir", str(tmp_path / "again"), "--class_labels", "fashion", "0",
                                   "--no_png"]))  # fmt: skip
    assert np.array_equal(np.load(tmp_path / "again" / "samples.npz")["arr_0"], npz["arr_0"])
    assert np.array_equal(np.load(tmp_path / "again" / "samples.npz")["codes"], npz["codes"])
    assert not (tmp_path / "again" / "images").exists()


def test_train_ar_resume_matches_uninterrupted_run(workspace, tmp_path):
    # 64 sequences / batch 8 / accumulation 2 = 4 optimizer steps per epoch: the resumed half crosses an epoch.
    common = ["--max_train_steps", "6", "--gradient_accumulation_steps", "2", "--checkpointing_steps", "3",
              "--use_ema", "--ema_max_decay", "0.9", "--lr_scheduler", "cosine"]  # fmt: skip
    full = tmp_path / "full"
    train_ar.main(train_ar.parse_args(ar_args(workspace["codes"], full, *common)))
    assert checkpoint_names(full) == {"checkpoint-3", "checkpoint-6"}

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-3", resumed / "checkpoint-3")
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    train_ar.main(train_ar.parse_args(ar_args(workspace["codes"], resumed, *common, "--resume_from_checkpoint",
                                              "latest")))  # fmt: skip
    for folder in ("checkpoint-6/transformer", "checkpoint-6/transformer_ema", "transformer"):
        a, b = state_of(full / folder), state_of(resumed / folder)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=f"{folder}: {key}")
    # ...and the run really trained after the resume (the weights moved away from checkpoint-3).
    before = state_of(full / "checkpoint-3" / "transformer")
    assert any(not torch.equal(before[k], state_of(resumed / "checkpoint-6" / "transformer")[k]) for k in before)


def test_train_ar_rerun_of_a_finished_run_changes_nothing(workspace, tmp_path):
    # Rerunning the same command (as benchmarks/train_demo.sh does) resumes at max_train_steps: it trained one more
    # step and rewrote training_summary.json with the few seconds of the rerun.
    out = tmp_path / "run"
    command = ar_args(workspace["codes"], out, "--max_train_steps", "4", "--checkpointing_steps", "2",
                      "--resume_from_checkpoint", "latest")  # fmt: skip
    train_ar.main(train_ar.parse_args(command))
    summary = (out / "training_summary.json").read_text()
    weights = state_of(out / "transformer")
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    train_ar.main(train_ar.parse_args(command))
    assert (out / "training_summary.json").read_text() == summary
    assert json.loads(summary)["global_step"] == 4
    for key, value in state_of(out / "transformer").items():
        assert torch.equal(value, weights[key]), key
    # Resuming at the last step without a finished summary (killed before the final save) saves without a step.
    (out / "training_summary.json").unlink()
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    train_ar.main(train_ar.parse_args(command))
    assert json.loads((out / "training_summary.json").read_text())["global_step"] == 4
    for key, value in state_of(out / "transformer").items():
        assert torch.equal(value, weights[key]), key


def test_checkpoint_limit_across_resume(workspace, tmp_path):
    out = tmp_path / "limit"
    common = ["--checkpointing_steps", "2", "--checkpoints_total_limit", "2"]
    train_ar.main(train_ar.parse_args(ar_args(workspace["codes"], out, "--max_train_steps", "6", *common)))
    assert checkpoint_names(out) == {"checkpoint-4", "checkpoint-6"}
    AcceleratorState._reset_state(True)
    train_ar.main(train_ar.parse_args(ar_args(workspace["codes"], out, "--max_train_steps", "10", *common,
                                              "--resume_from_checkpoint", "latest")))  # fmt: skip
    assert checkpoint_names(out) == {"checkpoint-8", "checkpoint-10"}
    assert json.loads((out / "training_summary.json").read_text())["global_step"] == 10


def test_nan_loss_stops_and_keeps_last_good_checkpoint(workspace, tmp_path, monkeypatch):
    original_forward = VCQForCausalLM.forward
    calls = {"n": 0}

    def forward_with_nan_at_step_4(self, *args, **kwargs):
        output = original_forward(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] >= 4 and output.loss is not None:
            output.loss = output.loss * float("nan")
        return output

    monkeypatch.setattr(VCQForCausalLM, "forward", forward_with_nan_at_step_4)
    out = tmp_path / "nan"
    args = train_ar.parse_args(ar_args(workspace["codes"], out, "--max_train_steps", "8", "--checkpointing_steps", "2",
                                       "--checkpoints_total_limit", "1"))  # fmt: skip
    with pytest.raises(NonFiniteTrainingError, match=r"nan at optimizer step 4.*checkpoint-2"):
        train_ar.main(args)
    assert checkpoint_names(out) == {"checkpoint-2"}
    assert not (out / "model_index.json").exists()
    good = state_of(out / "checkpoint-2" / "transformer")
    assert all(torch.isfinite(v).all() for v in good.values())


# ---------------------------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dataset_name", "digits"], "exactly one of --dataset_name and --train_data_dir"),
        (["--checkpoints_total_limit", "0"], "checkpoints_total_limit"),
        (["--checkpointing_steps", "0", "--checkpoints_total_limit", "2"], "checkpointing is off"),
        (["--hub_model_id", "me/model"], "--push_to_hub"),
        (["--resume_from_checkpoint", "checkpoint-99"], "no such checkpoint"),
        (["--max_train_steps", "0"], "max_train_steps"),
        (["--gradient_accumulation_steps", "0"], "gradient_accumulation_steps"),
        (["--report_to", "none,jsonl"], "'none' cannot be combined"),
        (["--config_overrides", "schedule"], "key=value"),
        (["--perceptual_weights", "/nonexistent.safetensors"], "no such file"),
        (["--perceptual_loss", "vgg"], "--perceptual_loss vgg needs --perceptual_weights"),
        (["--max_train_minutes", "nan"], "--max_train_minutes = nan must be a finite number > 0"),
        (["--decoder_only"], "--decoder_only needs a trained tokenizer folder"),
    ],
)
def test_tokenizer_cross_flag_errors(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        train_tokenizer.parse_args(tokenizer_args(tmp_path, tmp_path / "out", *extra))


def test_ar_and_sample_argument_errors(workspace, tmp_path):
    with pytest.raises(ValueError, match="vcq_meta.json"):
        train_ar.parse_args(ar_args(tmp_path, tmp_path / "out"))
    with pytest.raises(ValueError, match="class_dropout_prob"):
        train_ar.parse_args(ar_args(workspace["codes"], tmp_path / "out", "--class_dropout_prob", "1.5"))
    with pytest.raises(ValueError, match="num_samples"):
        sample.parse_args(["--pipeline_path", str(tmp_path), "--output_dir", str(tmp_path), "--num_samples", "0"])
    with pytest.raises(ValueError, match="model_index.json"):
        sample.parse_args(["--pipeline_path", str(tmp_path), "--output_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="--resolution 64"):
        train_ar.main(train_ar.parse_args(ar_args(workspace["codes"], tmp_path / "out", "--resolution", "64")))


def test_resume_latest_without_checkpoint_starts_fresh(tmp_path):
    args = training_utils.argparse.Namespace(resume_from_checkpoint="latest", output_dir=str(tmp_path))
    assert training_utils.resolve_resume_checkpoint(args) is None
    for step in (10, 2, 30, 40):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if step != 40:  # checkpoint-40 is incomplete: no completion marker
            (tmp_path / f"checkpoint-{step}" / CHECKPOINT_MARKER).write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert training_utils.resolve_resume_checkpoint(args).name == "checkpoint-30"
    removed = rotate_checkpoints(tmp_path, total_limit=1)
    assert [p.name for p in removed] == ["checkpoint-2", "checkpoint-10"]
    assert checkpoint_names(tmp_path) == {"checkpoint-30", "checkpoint-40", "checkpoint-x"}


# ---------------------------------------------------------------------------------------------------- model card


def test_model_card_metadata_and_sections(workspace):
    vq_config = VCQVQModel.from_pretrained(workspace["tokenizer"]).config
    from vcq_hf.configuration_vcq import VCQConfig

    ar_config = VCQConfig.from_vq_config(vq_config, preset="tiny", num_classes=3)
    card = build_model_card(
        "pipeline",
        vq_config=vq_config,
        ar_config=ar_config,
        num_parameters={"transformer": 1234, "vq_model": 5678},
        dataset="fashion-mnist",
        num_train_images=55000,
        id2label={0: "T-shirt/top", 1: "Trouser", 2: "Pullover"},
        training_args={"learning_rate": 1e-3, "hub_token": "secret"},
        command="accelerate launch examples/train_ar.py --codes_dir codes",
        results={"fid": 12.5, "loss": 2.0},
        repo_id="someone/vcq-demo",
    )
    data = card.data.to_dict()
    assert data["library_name"] == "diffusers"
    assert data["pipeline_tag"] == "text-to-image"
    assert data["datasets"] == ["zalando-datasets/fashion_mnist"]
    assert data["metrics"] == ["fid"] and data["license"] == "apache-2.0"
    assert "schedule-log" in data["tags"]
    text = card.text
    for needle in ("## Configuration", "## How to use", "## Training recipe", "## Results",
                   'VCQPipeline.from_pretrained("someone/vcq-demo")', 'pipe.get_label_ids(["T-shirt/top"])',
                   "tokens per image (T) | 5", "K_min (first position) | 3", "entropy-cliff position",
                   "parameters: transformer | 1,234", "| fid | 12.5 |"):  # fmt: skip
        assert needle in text, needle
    assert "secret" not in text
    with pytest.raises(ValueError, match="kind"):
        build_model_card("vae", vq_config=vq_config)
    with pytest.raises(ValueError, match="ar_config"):
        build_model_card("pipeline", vq_config=vq_config)


@pytest.mark.parametrize("saved_classes", [2, 5])
def test_train_ar_model_config_folder_with_another_class_count(workspace, tmp_path, saved_classes):
    """A prior saved with 2 or 5 classes fine-tuned on the 3-class codes: resized, trained, saved consistently."""
    from vcq_hf.configuration_vcq import VCQConfig

    vq_config = VCQVQModel.from_pretrained(workspace["tokenizer"]).config
    torch.manual_seed(0)
    source = VCQForCausalLM(VCQConfig.from_vq_config(vq_config, preset="tiny", num_classes=saved_classes))
    source.save_pretrained(tmp_path / "source")
    out = tmp_path / "ar"
    args = ar_args(workspace["codes"], out, "--max_train_steps", "1", "--checkpointing_steps", "0")
    args[args.index("--model_config") + 1] = str(tmp_path / "source")
    train_ar.main(train_ar.parse_args(args))
    pipe = VCQPipeline.from_pretrained(out)
    config = pipe.transformer.config
    assert (config.num_classes, config.vocab_size) == (3, vq_config.codebook_size + 4)
    assert pipe.transformer.get_input_embeddings().weight.shape[0] == config.vocab_size
    assert pipe.id2label == {0: "digit", 1: "emoji", 2: "fashion"}
    codes = pipe(class_labels=["fashion"], output_type="latent", generator=torch.Generator().manual_seed(0)).images
    assert codes.shape == (1, vq_config.num_image_tokens)


def test_train_ar_on_a_saved_dataset_without_vcq_meta_json(workspace, tmp_path):
    # issue 15.12: the schedule and tokenizer reference travel in the dataset's own info, so a code set saved with
    # `save_to_disk` (or pushed to the Hub) trains without the side file.
    codes = datasets.load_from_disk(str(workspace["codes"]))
    plain = tmp_path / "plain-codes"
    codes.save_to_disk(str(plain))
    assert not (plain / "vcq_meta.json").exists()
    out = tmp_path / "ar"
    train_ar.main(train_ar.parse_args(ar_args(plain, out, "--max_train_steps", "2")))
    assert (out / "model_index.json").is_file()
