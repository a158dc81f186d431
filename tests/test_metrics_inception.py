import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vcq_hf.metrics import FIDInceptionV3, InceptionV3FeatureExtractor, load_feature_extractor, load_fid_inception_v3
from vcq_hf.metrics.inception import INCEPTION_WEIGHTS_ENV


@pytest.fixture(scope="module")
def random_inception():
    torch.manual_seed(0)
    model = FIDInceptionV3().eval()
    # Non-trivial batch-norm statistics so that a loader that skipped buffers would be caught.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


def test_architecture_matches_the_fid_inception_layout(random_inception):
    state = random_inception.state_dict()
    # Key names and shapes of pytorch-fid's pt_inception-2015-12-05 state dict (torchvision Inception3 layout).
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_5b.branch_pool.conv.weight"].shape == (32, 192, 1, 1)
    assert state["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert state["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    assert state["fc.weight"].shape == (1008, 2048)
    assert not any(key.startswith("AuxLogits") for key in state)
    num_parameters = sum(p.numel() for p in random_inception.parameters())
    # torchvision inception_v3() has 27,161,264 parameters; minus its aux head (3,326,696), plus 8 more classes
    # (8 * 2048 + 8) for the 1008-way FID head.
    assert num_parameters == 27_161_264 - 3_326_696 + 8 * 2049


def test_loads_weights_from_safetensors_pth_and_env(tmp_path, monkeypatch, random_inception):
    state = {key: value.contiguous() for key, value in random_inception.state_dict().items()}
    save_file(state, str(tmp_path / "inception.safetensors"))
    legacy = {key: value for key, value in state.items() if not key.endswith("num_batches_tracked")}
    torch.save(legacy, tmp_path / "pt_inception.pth")

    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected_features, expected_logits = random_inception(images)
    assert expected_features.shape == (2, 2048) and expected_logits.shape == (2, 1008)

    from_safetensors = load_fid_inception_v3(tmp_path / "inception.safetensors")
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(tmp_path / "pt_inception.pth"))
    extractor = load_feature_extractor("inception-v3")
    assert isinstance(extractor, InceptionV3FeatureExtractor) and extractor.name == "InceptionV3"
    with torch.no_grad():
        torch.testing.assert_close(from_safetensors(images)[0], expected_features)
    features, logits = extractor.extract((images * 255).round().byte().permute(0, 2, 3, 1).numpy())
    np.testing.assert_allclose(features, expected_features.double().numpy(), rtol=1e-3, atol=1e-3)
    assert logits.shape == (2, 1008)


def test_missing_or_wrong_weights_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    with pytest.raises(ValueError, match=INCEPTION_WEIGHTS_ENV):
        load_fid_inception_v3()
    with pytest.raises(FileNotFoundError):
        load_fid_inception_v3(tmp_path / "absent.pth")
    save_file({"fc.weight": torch.zeros(3, 3)}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(ValueError, match="missing keys"):
        load_fid_inception_v3(tmp_path / "wrong.safetensors")
