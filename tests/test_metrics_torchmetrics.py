"""vcq_hf.metrics.scores (float64, on feature sets) agrees with torchmetrics' FID, KID and Inception Score.

torchmetrics runs its metrics on images through a feature extractor; here that extractor is a small fixed module
(offline, no weights to download), and ours get the same features from it. Settings that make both sides
deterministic: KID with one subset of the whole set (a permutation does not change the unbiased MMD^2), IS with one
split (the shuffle does not change it). Precision/recall (Kynkaanniemi et al.) has no torchmetrics counterpart.
"""

import pytest
import torch
from torch import nn

# torchmetrics is in the test extra; its Inception weights (torch-fidelity) are not needed with a custom extractor.
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from vcq_hf.metrics import frechet_distance_from_features, inception_score, kernel_inception_distance


IMAGE_SIZE = (3, 6, 6)


class FixedProjection(nn.Module):
    """uint8 images (N, 3, 6, 6) -> (N, D) features by a seeded linear map (plus a non-linearity for richer sets)."""

    def __init__(self, num_features: int, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(3 * 6 * 6, num_features, generator=generator, dtype=torch.float64))
        self.num_features = num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.reshape(images.shape[0], -1).double() / 255.0
        return torch.tanh(x @ self.weight) * 3.0


def image_sets(num_real: int = 96, num_fake: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    real = torch.randint(0, 256, (num_real, *IMAGE_SIZE), generator=generator, dtype=torch.uint8)
    # a shifted distribution, so that the scores are well away from 0
    fake = (torch.randint(0, 200, (num_fake, *IMAGE_SIZE), generator=generator) + 40).to(torch.uint8)
    return real, fake


def test_fid_matches_torchmetrics():
    extractor = FixedProjection(8)
    real, fake = image_sets()
    metric = FrechetInceptionDistance(feature=extractor, input_img_size=IMAGE_SIZE)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    expected = float(metric.compute())
    with torch.no_grad():
        ours = frechet_distance_from_features(extractor(real), extractor(fake))
    assert expected > 0.1
    assert ours == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_kid_matches_torchmetrics():
    extractor = FixedProjection(8)
    real, fake = image_sets(num_real=64, num_fake=64)
    metric = KernelInceptionDistance(feature=extractor, subsets=3, subset_size=64)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    expected_mean, expected_std = (float(value) for value in metric.compute())
    with torch.no_grad():
        mean, std = kernel_inception_distance(extractor(real), extractor(fake), num_subsets=3, subset_size=64)
    assert expected_mean > 1e-4
    assert mean == pytest.approx(expected_mean, rel=1e-6)
    assert std == pytest.approx(expected_std, abs=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_matches_torchmetrics():
    extractor = FixedProjection(10)  # the "logits" of a 10-class classifier
    _, fake = image_sets()
    metric = InceptionScore(feature=extractor, splits=1)
    metric.update(fake)
    expected_mean, _ = (float(value) for value in metric.compute())
    with torch.no_grad():
        mean, _ = inception_score(extractor(fake), num_splits=1)
    assert 1.0 < expected_mean < 10.0
    assert mean == pytest.approx(expected_mean, rel=1e-5)
