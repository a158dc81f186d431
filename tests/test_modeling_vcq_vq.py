"""Tests of VCQVQConfig and VCQVQModel, the VCQ image tokenizer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError
from PIL import Image
from transformers import AutoConfig, AutoModel

from vcq_hf import VCQImageProcessor, VCQVQConfig, VCQVQEncoderOutput, VCQVQModel, VCQVQModelOutput
from vcq_hf.schedules import SCHEDULE_KINDS, codebook_sizes


FIXTURES = Path(__file__).resolve().parent / "fixtures" / "images"


class VCQVQModelTester:
    """Tiny configs (odd sizes: 12px, 9 patches, T=5, K = 3..37) and seeded inputs, one place for all tests."""

    batch_size = 7

    @staticmethod
    def get_config(**overrides) -> VCQVQConfig:
        return VCQVQConfig.from_preset("tiny", **overrides)

    @classmethod
    def get_model(cls, seed: int = 0, **overrides) -> VCQVQModel:
        torch.manual_seed(seed)
        return VCQVQModel(cls.get_config(**overrides)).eval()

    @classmethod
    def get_pixel_values(cls, config: VCQVQConfig, seed: int = 0, batch_size: int | None = None) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        shape = (batch_size or cls.batch_size, config.num_channels, config.image_size, config.image_size)
        return torch.rand(shape, generator=generator) * 2 - 1


tester = VCQVQModelTester()


# --------------------------------------------------------------------------------------------------------- config


def test_tiny_config_derives_and_stores_codebook_sizes(tmp_path):
    config = tester.get_config()
    assert config.codebook_sizes == list(codebook_sizes(5, 3, 37, "log")) == [3, 6, 11, 20, 37]
    assert config.num_patches == 9
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "vcq_vq"
    assert saved["codebook_sizes"] == [3, 6, 11, 20, 37]
    # A stored schedule wins over the formula fields: the checkpoint never depends on the formula.
    saved["codebook_sizes"] = [1, 2, 2, 30, 37]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert VCQVQConfig.from_pretrained(tmp_path).codebook_sizes == [1, 2, 2, 30, 37]


@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_config_schedule_kinds(kind):
    config = tester.get_config(schedule=kind, ramp_length=3)
    assert config.codebook_sizes == list(codebook_sizes(5, 3, 37, kind, 3))
    assert config.codebook_sizes[-1] == 37
    reloaded = VCQVQConfig.from_dict(config.to_dict())
    assert reloaded.codebook_sizes == config.codebook_sizes and reloaded.schedule == kind


def test_presets():
    assert VCQVQConfig.list_presets() == ["imagenet-256", "small-32px", "tiny"]
    small = VCQVQConfig.from_preset("small-32px")
    assert (small.image_size, small.patch_size, small.num_image_tokens, small.codebook_size) == (32, 8, 32, 1024)
    assert small.codebook_sizes[0] == 2 and small.codebook_sizes[-1] == 1024 and 8 <= small.codebook_dim <= 16
    imagenet = VCQVQConfig.from_preset("imagenet-256")
    assert (imagenet.image_size, imagenet.patch_size, imagenet.num_image_tokens) == (256, 16, 256)
    assert (imagenet.codebook_size, imagenet.codebook_dim, len(imagenet.codebook_sizes)) == (16384, 8, 256)
    assert VCQVQConfig.from_preset("small-32px", schedule="constant").codebook_sizes == [1024] * 32
    with pytest.raises(ValueError, match="Unknown VCQVQConfig preset 'smal-32px'.*Did you mean 'small-32px'"):
        VCQVQConfig.from_preset("smal-32px")


def test_preset_parameter_counts():
    counts = {}
    for name in VCQVQConfig.list_presets():
        with torch.device("meta"):
            model = VCQVQModel(VCQVQConfig.from_preset(name))
        counts[name] = sum(parameter.numel() for parameter in model.parameters())
    assert counts["tiny"] < 50_000
    assert 1_000_000 < counts["small-32px"] < 10_000_000
    assert 100_000_000 < counts["imagenet-256"] < 250_000_000


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(patch_size=5), r"patch_size = 5 must divide image_size = 12"),
        (dict(encoder_num_heads=4), r"encoder_num_heads = 4 must divide encoder_hidden_size = 30"),
        (dict(decoder_num_heads=7), r"decoder_num_heads = 7 must divide decoder_hidden_size = 30"),
        (dict(num_image_tokens=0), r"num_image_tokens = 0 is out of range"),
        (dict(image_size=12.0), r"image_size' expected int, got float"),
        (dict(encoder_num_layers=True), r"encoder_num_layers' expected int, got bool"),
        (dict(k_min=40), r"k_min = 40 is out of range: it must be in \[1, codebook_size = 37\]"),
        (dict(schedule="exp"), r"schedule = 'exp' is not supported; expected one of"),
        (dict(ramp_length=6), r"ramp_length = 6 is out of range: it must be in \[1, num_image_tokens = 5\]"),
        (dict(codebook_sizes=[3, 6, 11, 37]), r"codebook_sizes has 4 entries but num_image_tokens is 5"),
        (dict(codebook_sizes=[3, 6, 5, 20, 37]), r"monotone non-decreasing.*codebook_sizes\[2\] = 5"),
        (dict(codebook_sizes=[3, 6, 11, 20, 38]), r"codebook_sizes\[-1\] = 38 must equal codebook_size = 37"),
        (dict(codebook_sizes=[3, 6, 11, 20, 30]), r"codebook_sizes\[-1\] = 30 must equal codebook_size = 37"),
        (dict(codebook_sizes=[0, 6, 11, 20, 37]), r"codebook_sizes\[0\] = 0"),
        (dict(mlp_ratio=0), r"mlp_ratio = 0 is out of range"),
        (dict(commitment_weight=-0.1), r"commitment_weight = -0.1 is out of range"),
        (dict(entropy_temperature=0.0), r"entropy_temperature = 0.0 is out of range"),
        (dict(usage_decay=1.0), r"usage_decay = 1.0 is out of range"),
        (dict(use_l2_norm="yes"), r"use_l2_norm' expected bool, got str"),
        (dict(reconstruction_loss_type="l3"), r"reconstruction_loss_type = 'l3' is not supported"),
        (
            dict(layer_norm_eps=float("nan")),
            r"layer_norm_eps = nan is out of range: it must be a finite number in \(0, inf\)",
        ),
        (dict(mlp_ratio=float("inf")), r"mlp_ratio = inf is out of range"),
        (dict(commitment_weight=float("nan")), r"commitment_weight = nan is out of range: .* in \[0, inf\)"),
        (dict(initializer_range=float("-inf")), r"initializer_range = -inf is out of range"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(StrictDataclassError, match=message) as info:
        tester.get_config(**overrides)
    assert isinstance(info.value.__cause__, (ValueError, TypeError))


def test_overrides_and_assignments_are_validated(tmp_path):
    tester.get_config().save_pretrained(tmp_path)
    with pytest.raises(StrictDataclassError, match="codebook_sizes has 5 entries but num_image_tokens is 6"):
        VCQVQConfig.from_pretrained(tmp_path, num_image_tokens=6)  # validated after the override
    with pytest.raises(StrictDataclassError, match="layer_norm_eps = nan is out of range"):
        VCQVQConfig.from_pretrained(tmp_path, layer_norm_eps=float("nan"))
    assert VCQVQConfig.from_pretrained(tmp_path, commitment_weight=0.5).commitment_weight == 0.5
    with pytest.raises(StrictDataclassError, match="mlp_ratio = inf is out of range"):
        VCQVQModel.from_pretrained(tmp_path, mlp_ratio=float("inf"))  # the model's overrides go the same way
    config = tester.get_config()
    with pytest.raises(StrictDataclassError, match="expected int, got str"):
        config.encoder_hidden_size = "x"  # field types are checked on assignment
    with pytest.raises(StrictDataclassError, match="layer_norm_eps = nan"):
        config.layer_norm_eps = float("nan")
    config.patch_size = 5  # cross-field checks run in validate() (and at save)
    with pytest.raises(StrictDataclassError, match="patch_size = 5 must divide image_size = 12"):
        config.validate()


def test_old_configs_with_num_tokens_still_load(tmp_path):
    config = tester.get_config()
    saved = config.to_dict()
    saved["num_tokens"] = saved.pop("num_image_tokens")  # the key configs were saved with before the rename
    (tmp_path / "config.json").write_text(json.dumps(saved))
    reloaded = VCQVQConfig.from_pretrained(tmp_path)
    assert reloaded.num_image_tokens == reloaded.num_tokens == config.num_image_tokens
    assert reloaded.codebook_schedule is config.codebook_schedule  # one validated object per schedule
    assert VCQVQConfig.from_preset("tiny", num_tokens=5).num_image_tokens == 5


# ---------------------------------------------------------------------------------------------------------- model


def test_encode_decode_forward_shapes():
    model = tester.get_model()
    config = model.config
    pixel_values = tester.get_pixel_values(config)
    assert model.encode(pixel_values).codes_used is None  # usage statistics only when asked
    encoded = model.encode(pixel_values, output_usage=True)
    assert isinstance(encoded, VCQVQEncoderOutput)
    assert encoded.codes.shape == (7, 5) and encoded.codes.dtype == torch.int64
    assert encoded.quantized.shape == encoded.latents.shape == (7, 5, config.codebook_dim)
    assert encoded.codes_used.shape == encoded.perplexity.shape == (5,)
    for name in ("loss", "codebook_loss", "commitment_loss", "entropy_loss"):
        assert getattr(encoded, name).shape == ()
    sample = model.decode(encoded.codes).sample
    assert sample.shape == (7, 3, 12, 12) and sample.dtype == torch.float32
    assert sample.min() >= -1 and sample.max() <= 1

    output = model(pixel_values)
    assert isinstance(output, VCQVQModelOutput)
    assert output.sample.shape == (7, 3, 12, 12) and output.sample.min() >= -1 and output.sample.max() <= 1
    assert torch.equal(output.codes, encoded.codes)
    # decode(codes) is exactly the reconstruction path of forward.
    torch.testing.assert_close(model.decode(output.codes).sample, output.sample, atol=1e-6, rtol=0)


def test_return_dict_false_gives_tuples():
    model = tester.get_model()
    pixel_values = tester.get_pixel_values(model.config)
    codes, quantized, latents, *rest = model.encode(pixel_values, return_dict=False)
    assert torch.equal(codes, model.encode(pixel_values).codes) and quantized.shape == latents.shape
    (sample,) = model.decode(codes, return_dict=False)
    assert torch.equal(sample, model.decode(codes).sample)
    outputs = model(pixel_values, return_dict=False)
    assert isinstance(outputs, tuple) and torch.equal(outputs[0], model(pixel_values).sample)


def test_outputs_are_deterministic_and_batch_independent():
    model = tester.get_model()
    pixel_values = tester.get_pixel_values(model.config)
    codes = model.encode(pixel_values).codes
    assert torch.equal(codes, model.encode(pixel_values).codes)
    assert torch.equal(codes[2:4], model.encode(pixel_values[2:4]).codes)
    torch.testing.assert_close(model.decode(codes[1:2]).sample, model.decode(codes).sample[1:2], atol=1e-6, rtol=0)


def test_expected_output_slice():
    """Pins the numerics of the tiny model (seeded init), so an unintended change of the architecture shows."""
    model = tester.get_model(seed=0)
    pixel_values = tester.get_pixel_values(model.config, batch_size=2)
    encoded = model.encode(pixel_values)
    assert encoded.codes.tolist() == EXPECTED_CODES
    sample = model.decode(encoded.codes).sample
    expected = torch.tensor(EXPECTED_SLICE)
    torch.testing.assert_close(sample[0, 0, :3, :3], expected, atol=1e-3, rtol=0)


# Tokenizer v2 (conv pixel decoder in the tiny preset) re-pinned these values.
EXPECTED_CODES = [[0, 1, 4, 15, 32], [0, 1, 4, 15, 32]]
EXPECTED_SLICE = [[0.0038, 0.0020, 0.0103], [-0.0019, -0.0023, 0.0012], [0.0048, 0.0033, -0.0098]]


@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_codes_respect_schedule_for_every_kind(kind):
    model = tester.get_model(schedule=kind, ramp_length=4, use_l2_norm=False)
    torch.nn.init.normal_(model.quantizer.embedding.weight)  # spread the codebook so large indices are reachable
    codes = model.encode(tester.get_pixel_values(model.config, batch_size=64)).codes
    sizes = torch.tensor(model.config.codebook_sizes)
    assert (codes >= 0).all() and (codes < sizes).all()
    assert model.decode(codes).sample.shape == (64, 3, 12, 12)


def test_constant_schedule_is_standard_vq():
    model = tester.get_model(schedule="constant")
    assert model.config.codebook_sizes == [37] * 5
    pixel_values = tester.get_pixel_values(model.config)
    encoded = model.encode(pixel_values)
    latents = F.normalize(encoded.latents, dim=-1).reshape(-1, model.config.codebook_dim)
    full_search = torch.cdist(latents, model.quantizer.get_codebook()).argmin(-1).view(7, 5)
    assert torch.equal(encoded.codes, full_search)
    torch.testing.assert_close(encoded.quantized, model.quantizer.get_codebook()[encoded.codes])


def test_loss_terms_and_commitment_weight():
    model = tester.get_model(commitment_weight=0.7, quantizer_loss_weight=0.5, entropy_weight=0.3)
    output = model(tester.get_pixel_values(model.config))
    expected = output.reconstruction_loss + 0.5 * (
        output.codebook_loss + 0.7 * output.commitment_loss + 0.3 * output.entropy_loss
    )
    torch.testing.assert_close(output.loss, expected)
    assert output.entropy_loss != 0
    l1 = tester.get_model(reconstruction_loss_type="l1")
    pixel_values = tester.get_pixel_values(l1.config)
    raw = l1.decoder(l1.encode(pixel_values).quantized)
    torch.testing.assert_close(l1(pixel_values).reconstruction_loss, (raw - pixel_values).abs().mean())


def test_gradients_reach_encoder_codebook_and_decoder():
    model = tester.get_model().train()
    model(tester.get_pixel_values(model.config)).loss.backward()
    for name in [
        "encoder.patch_embedding.weight",
        "encoder.latent_tokens",
        "encoder.proj_out.weight",
        "quantizer.embedding.weight",
        "decoder.mask_token",
        "decoder.proj_in.weight",
        "decoder.proj_out.weight",
    ]:
        gradient = model.get_parameter(name).grad
        assert gradient is not None and gradient.abs().sum() > 0, name
    # Only the selected codebook rows receive gradient.
    model.zero_grad()
    encoded = model.encode(tester.get_pixel_values(model.config))
    encoded.codebook_loss.backward()
    touched = model.quantizer.embedding.weight.grad.abs().sum(-1).nonzero().flatten()
    assert set(touched.tolist()) == set(encoded.codes.flatten().tolist())


def test_training_mode_updates_code_usage_and_eval_does_not():
    model = tester.get_model()
    pixel_values = tester.get_pixel_values(model.config)
    model.encode(pixel_values)
    assert model.quantizer.code_usage.sum() == 0
    model.train().encode(pixel_values)
    assert model.quantizer.code_usage.sum() > 0


def test_decode_rejects_bad_codes():
    model = tester.get_model()
    good = torch.zeros(3, 5, dtype=torch.long)
    assert model.decode(good).sample.shape == (3, 3, 12, 12)
    assert model.decode(good.int()).sample.shape == (3, 3, 12, 12)
    bad = good.clone()
    bad[1, 2] = 11  # K_2 = 11
    bad[2, 0] = 5
    with pytest.raises(
        ValueError,
        match=r"codes\[1, 2\] = 11 is not a valid image code at image position 2: allowed range \[0, K_2\) = \[0, 11\)",
    ):
        model.decode(bad)
    bad = good.clone()
    bad[0, 4] = -1
    with pytest.raises(ValueError, match=r"codes\[0, 4\] = -1 is not a valid image code .*\[0, K_4\) = \[0, 37\)"):
        model.decode(bad)
    with pytest.raises(ValueError, match=r"Expected codes of shape \(batch_size, 5\), got \(3, 4\)"):
        model.decode(good[:, :4])
    with pytest.raises(ValueError, match=r"Expected codes of shape \(batch_size, 5\), got \(5,\)"):
        model.decode(good[0])
    with pytest.raises(ValueError, match="integer dtype"):
        model.decode(good.float())
    with pytest.raises(ValueError, match="integer dtype"):
        model.decode(good.bool())
    with pytest.raises(ValueError, match="must be a torch.Tensor"):
        model.decode([[0, 0, 0, 0, 0]])


def test_encode_rejects_bad_pixel_values():
    model = tester.get_model()
    with pytest.raises(
        ValueError, match=r"Expected pixel_values of shape \(batch_size, 3, 12, 12\).*got \(2, 3, 16, 16\)"
    ):
        model.encode(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"got \(3, 12, 12\)"):
        model.encode(torch.zeros(3, 12, 12))
    with pytest.raises(ValueError, match="floating point"):
        model.encode(torch.zeros(2, 3, 12, 12, dtype=torch.uint8))
    with pytest.raises(ValueError, match="non-finite"):
        model.encode(torch.full((2, 3, 12, 12), float("nan")))


# -------------------------------------------------------------------------------------------- save / load / auto


def _trained_tiny_model() -> VCQVQModel:
    """A tiny model with non-default codebook and usage buffer (one optimiser step in train mode)."""
    model = tester.get_model(seed=3).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(tester.get_pixel_values(model.config, seed=1)).loss.backward()
    optimizer.step()
    return model.eval()


def test_save_load_round_trip_is_bit_identical(tmp_path):
    model = _trained_tiny_model()
    assert model.quantizer.code_usage.sum() > 0
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and not (tmp_path / "pytorch_model.bin").exists()
    reloaded = VCQVQModel.from_pretrained(tmp_path).eval()
    original_state, reloaded_state = model.state_dict(), reloaded.state_dict()
    assert original_state.keys() == reloaded_state.keys()
    assert "quantizer.code_usage" in reloaded_state
    for key, value in original_state.items():
        assert torch.equal(value, reloaded_state[key]), key
    pixel_values = tester.get_pixel_values(model.config, seed=5)
    codes = model.encode(pixel_values).codes
    assert torch.equal(reloaded.encode(pixel_values).codes, codes)
    assert torch.equal(reloaded.decode(codes).sample, model.decode(codes).sample)
    assert reloaded.config.codebook_sizes == model.config.codebook_sizes


def test_fresh_model_from_config_is_initialised_everywhere():
    """Every parameter and buffer is set by `_init_weights` (nothing left from `torch.empty`)."""
    model = tester.get_model(seed=4)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        assert torch.isfinite(tensor).all(), name
        assert tensor.abs().max() < 10, name
    assert model.quantizer.code_usage.sum() == 0
    bound = 1 / model.config.codebook_size
    assert model.quantizer.embedding.weight.abs().max() <= bound
    assert model.encoder.latent_tokens.std() < 0.05 and model.encoder.latent_tokens.std() > 0
    assert torch.equal(model.encoder.norm.weight, torch.ones_like(model.encoder.norm.weight))


def test_auto_classes_resolve_vcq_vq(tmp_path):
    model = _trained_tiny_model()
    model.save_pretrained(tmp_path)
    VCQImageProcessor(image_size=12).save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is VCQVQConfig
    auto_model = AutoModel.from_pretrained(tmp_path)
    assert type(auto_model) is VCQVQModel
    pixel_values = tester.get_pixel_values(model.config)
    assert torch.equal(auto_model.encode(pixel_values).codes, model.encode(pixel_values).codes)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"] == {
        "AutoConfig": "configuration_vcq_vq.VCQVQConfig",
        "AutoModel": "modeling_vcq_vq.VCQVQModel",
    }
    for module in ("configuration_vcq_vq.py", "modeling_vcq_vq.py", "quantizer.py", "schedules.py", "presets.py"):
        assert (tmp_path / module).is_file(), module


REMOTE_SCRIPT = textwrap.dedent(
    """
    import os, sys
    # Drop every path entry that holds vcq_hf (the editable install's src/), so it cannot be imported.
    sys.path = [p for p in sys.path if not os.path.isdir(os.path.join(p or ".", "vcq_hf"))]
    try:
        import vcq_hf  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("vcq_hf is still importable: " + vcq_hf.__file__)
    import torch
    from transformers import AutoImageProcessor, AutoModel
    from PIL import Image

    model_dir = sys.argv[1]
    model = AutoModel.from_pretrained(model_dir, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir, trust_remote_code=True)
    pixel_values = processor(Image.open(sys.argv[2]), return_tensors="pt").pixel_values
    with torch.no_grad():
        codes = model.encode(pixel_values).codes
        sample = model.decode(codes).sample
    assert "vcq_hf" not in sys.modules, "vcq_hf was imported"
    print(type(model).__module__, type(processor).__module__)
    print("CODES", codes.tolist())
    print("SUM", float(sample.double().sum()))
    """
)


@pytest.mark.subprocess
def test_remote_code_loading_without_vcq_hf(tmp_path):
    model = _trained_tiny_model()
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    processor = VCQImageProcessor(image_size=12)
    processor.save_pretrained(model_dir)
    image_path = FIXTURES / "emoji_01.png"
    script = tmp_path / "load_remote.py"
    script.write_text(REMOTE_SCRIPT)
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(model_dir), str(image_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("transformers_modules.") and "image_processing_vcq" in lines[0]
    pixel_values = processor(Image.open(image_path), return_tensors="pt").pixel_values
    with torch.no_grad():
        codes = model.encode(pixel_values).codes
        sample = model.decode(codes).sample
    assert f"CODES {codes.tolist()}" in lines
    remote_sum = float(next(line for line in lines if line.startswith("SUM")).split()[1])
    assert remote_sum == pytest.approx(float(sample.double().sum()), abs=1e-6)


# ------------------------------------------------------------------------------------- reconstruction sanity check


def test_training_tiny_on_real_images_reduces_reconstruction_error():
    """A few hundred steps of the `tiny` preset on 32 real images (Fashion-MNIST, digits, emoji) must learn codes.

    Predicting the batch-mean image is what a collapsed tokenizer (one code per position) achieves, so the final error
    must beat that by a wide margin, not only the random start. Dead codes are re-seeded every 10 steps as the
    training script does; without that, 3 of 4 seeds collapsed to the mean image in a trial run.
    """
    images = [Image.open(path) for path in sorted(FIXTURES.glob("*.png"))]
    assert len(images) == 32
    torch.manual_seed(1)
    config = VCQVQConfig.from_preset("tiny")
    pixel_values = VCQImageProcessor(image_size=config.image_size)(images, return_tensors="pt").pixel_values
    model = VCQVQModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)

    def reconstruction_error() -> float:
        model.eval()
        with torch.no_grad():
            error = F.mse_loss(model.decode(model.encode(pixel_values).codes).sample, pixel_values).item()
        model.train()
        return error

    start = reconstruction_error()
    mean_image_error = F.mse_loss(pixel_values.mean(0, keepdim=True).expand_as(pixel_values), pixel_values).item()
    for step in range(300):
        output = model(pixel_values)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        if step % 10 == 9:
            with torch.no_grad():
                model.quantizer.restart_dead_codes(model.encode(pixel_values).latents, 0.03, generator=generator)
    end = reconstruction_error()
    assert end < 0.4 * start, (start, end)
    assert end < 0.6 * mean_image_error, (mean_image_error, end)
    assert (model.encode(pixel_values, output_usage=True).codes_used > 1).sum() >= 3


def test_docstring_examples_run():
    import doctest

    from vcq_hf import configuration_vcq_vq, image_processing_vcq, modeling_vcq_vq

    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    examples = 0
    for module in (configuration_vcq_vq, modeling_vcq_vq, image_processing_vcq):
        for test in doctest.DocTestFinder().find(module):
            examples += len(test.examples)
            runner.run(test)
    assert examples >= 10
    assert runner.summarize(verbose=False).failed == 0
