"""Generation metrics computed from feature sets: FID, KID, Inception Score and k-NN precision/recall.

Every function here takes features (or logits) already extracted by a `vcq_hf.metrics.FeatureExtractor`, as numpy
arrays or torch tensors of shape `(N, D)`, and does its arithmetic in float64. Scores depend on the extractor: label
them with it (`"FID-FMNIST-CNN"`, `"FID-EffNetLite0"`); only the standard InceptionV3 features give numbers that are
comparable with published FID.

Checked against torchmetrics (`tests/test_metrics_torchmetrics.py`: FID, KID and IS agree to 1e-6 relative on the same
features). Kept rather than replaced by torchmetrics because torchmetrics' metrics are stateful modules that run their
feature extractor on images inside `update`, while the evaluation here extracts each feature set once, caches it on
disk and scores it many times (every guidance scale, arm and metric of a study reuses the same reference features);
its KID and IS draw their subsets and shuffles from the global torch RNG, where ours take a `seed`, so a score is
reproducible on its own; and precision/recall (Kynkaanniemi et al., k-NN manifolds) has no torchmetrics counterpart.

References:
    - FID: Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium", 2017.
    - KID: Binkowski et al., "Demystifying MMD GANs", 2018 (unbiased MMD^2, cubic polynomial kernel).
    - IS: Salimans et al., "Improved Techniques for Training GANs", 2016.
    - Precision/recall: Kynkaanniemi et al., "Improved Precision and Recall Metric for Assessing Generative
      Models", 2019 (k-NN hypersphere manifolds, k = 3).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch


def _as_float64(array, name: str, ndim: int | None = None) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().double().numpy()
    array = np.asarray(array, dtype=np.float64)
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return array


def _features(features, name: str, min_samples: int = 2) -> np.ndarray:
    features = _as_float64(features, name, ndim=2)
    if features.shape[0] < min_samples:
        raise ValueError(f"{name} has {features.shape[0]} samples; at least {min_samples} are needed.")
    return features


@dataclass(frozen=True)
class GaussianStatistics:
    """Mean `(D,)` and unbiased covariance `(D, D)` of a feature set, in float64 (what FID compares)."""

    mu: np.ndarray
    sigma: np.ndarray
    num_samples: int

    def save(self, path) -> None:
        """Write `mu`, `sigma` and `num_samples` to an `.npz` file (pytorch-fid's reference-statistics format)."""
        np.savez(path, mu=self.mu, sigma=self.sigma, num_samples=np.int64(self.num_samples))

    @classmethod
    def load(cls, path) -> GaussianStatistics:
        """Read statistics written by `save` (or a pytorch-fid `.npz` holding `mu` and `sigma`)."""
        with np.load(path, allow_pickle=False) as data:
            num_samples = int(data["num_samples"]) if "num_samples" in data else -1
            return cls(
                mu=data["mu"].astype(np.float64), sigma=data["sigma"].astype(np.float64), num_samples=num_samples
            )


def gaussian_statistics(features, warn_if_rank_deficient: bool = True) -> GaussianStatistics:
    """Mean and unbiased covariance of a feature set `(N, D)`.

    Warns when N <= D: the covariance is then singular and FID is strongly biased; prefer KID for such small sets.
    """
    features = _features(features, "features")
    num_samples, dim = features.shape
    if warn_if_rank_deficient and num_samples <= dim:
        warnings.warn(
            f"FID from {num_samples} samples of {dim}-d features: the covariance is rank-deficient and FID is strongly "
            "biased; prefer KID for sets smaller than the feature dimension.",
            UserWarning,
            stacklevel=2,
        )
    return GaussianStatistics(
        mu=features.mean(axis=0), sigma=np.cov(features, rowvar=False).reshape(dim, dim), num_samples=num_samples
    )


def _drop_round_off(eigenvalues: np.ndarray) -> np.ndarray:
    """Set eigenvalues of a PSD matrix that are round-off (|lambda| <= D * eps * max |lambda|) to exactly zero."""
    scale = np.abs(eigenvalues).max(initial=0.0)
    threshold = eigenvalues.shape[0] * np.finfo(np.float64).eps * scale
    return np.where(eigenvalues > threshold, eigenvalues, 0.0)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2), in float64.

    d^2 = ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^{1/2}).

    The trace of the matrix square root is computed as the sum of the square roots of the eigenvalues of the
    symmetric PSD matrix sigma1^{1/2} sigma2 sigma1^{1/2} (which is similar to sigma1 sigma2), so no complex
    arithmetic or `scipy.linalg.sqrtm` iteration is involved and singular covariances need no diagonal offset.

    Args:
        mu1 (`np.ndarray` or `torch.Tensor` of shape `(D,)`): mean of the first distribution.
        sigma1 (`np.ndarray` or `torch.Tensor` of shape `(D, D)`): covariance of the first distribution.
        mu2 (`np.ndarray` or `torch.Tensor` of shape `(D,)`): mean of the second distribution.
        sigma2 (`np.ndarray` or `torch.Tensor` of shape `(D, D)`): covariance of the second distribution.

    Returns:
        `float`: the squared Fréchet distance (the number reported as FID), >= 0.

    Example:
        >>> import numpy as np
        >>> frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))  # 2 + 2 * (2 - 1)^2
        4.0
    """
    mu1, mu2 = _as_float64(mu1, "mu1", ndim=1), _as_float64(mu2, "mu2", ndim=1)
    sigma1, sigma2 = _as_float64(sigma1, "sigma1", ndim=2), _as_float64(sigma2, "sigma2", ndim=2)
    dim = mu1.shape[0]
    for name, value in (("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        expected = (dim,) if name == "mu2" else (dim, dim)
        if value.shape != expected:
            raise ValueError(f"{name} has shape {value.shape} but mu1 has {dim} dimensions; expected {expected}.")
    sigma1 = (sigma1 + sigma1.T) / 2
    sigma2 = (sigma2 + sigma2.T) / 2
    eigenvalues, eigenvectors = np.linalg.eigh(sigma1)
    sqrt_sigma1 = (eigenvectors * np.sqrt(_drop_round_off(eigenvalues))) @ eigenvectors.T
    middle = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    trace_sqrt = float(np.sqrt(_drop_round_off(np.linalg.eigvalsh((middle + middle.T) / 2))).sum())
    diff = mu1 - mu2
    distance = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt)
    return max(distance, 0.0)


def frechet_distance_from_features(features1, features2) -> float:
    """FID between two feature sets `(N1, D)` and `(N2, D)` (warns when a set has no more samples than dimensions)."""
    stats1, stats2 = gaussian_statistics(features1), gaussian_statistics(features2)
    return frechet_distance(stats1.mu, stats1.sigma, stats2.mu, stats2.sigma)


def _polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef: float) -> np.ndarray:
    return (x @ y.T * gamma + coef) ** degree


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef: float) -> float:
    m, n = x.shape[0], y.shape[0]
    k_xx = _polynomial_kernel(x, x, degree, gamma, coef)
    k_yy = _polynomial_kernel(y, y, degree, gamma, coef)
    k_xy = _polynomial_kernel(x, y, degree, gamma, coef)
    sum_xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    sum_yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(sum_xx + sum_yy - 2.0 * k_xy.mean())


def kernel_inception_distance(
    features1,
    features2,
    num_subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """KID: the unbiased MMD^2 with kernel k(x, y) = (gamma x.y + coef)^degree, averaged over random subsets.

    Args:
        features1 (`np.ndarray` or `torch.Tensor` of shape `(N1, D)`): e.g. reference features.
        features2 (`np.ndarray` or `torch.Tensor` of shape `(N2, D)`): e.g. generated features.
        num_subsets (`int`, *optional*, defaults to 100): number of subset pairs drawn without replacement.
        subset_size (`int`, *optional*, defaults to 1000): samples per subset; clipped to min(N1, N2).
        degree (`int`, *optional*, defaults to 3): polynomial degree.
        gamma (`float`, *optional*): kernel scale; defaults to 1 / D.
        coef (`float`, *optional*, defaults to 1.0): kernel offset.
        seed (`int`, *optional*, defaults to 0): seed of the subset draws (results are reproducible).

    Returns:
        `tuple[float, float]`: mean and standard deviation of MMD^2 over the subsets.
    """
    x, y = _features(features1, "features1"), _features(features2, "features2")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"features1 has {x.shape[1]} dimensions but features2 has {y.shape[1]}.")
    if num_subsets < 1:
        raise ValueError(f"num_subsets = {num_subsets} is out of range: it must be >= 1.")
    if subset_size < 2:
        raise ValueError(f"subset_size = {subset_size} is out of range: it must be >= 2.")
    if degree < 1:
        raise ValueError(f"degree = {degree} is out of range: it must be >= 1.")
    gamma = 1.0 / x.shape[1] if gamma is None else float(gamma)
    size = min(subset_size, x.shape[0], y.shape[0])
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for index in range(num_subsets):
        subset_x = x[rng.choice(x.shape[0], size, replace=False)]
        subset_y = y[rng.choice(y.shape[0], size, replace=False)]
        values[index] = _unbiased_mmd2(subset_x, subset_y, degree, gamma, coef)
    return float(values.mean()), float(values.std())


def inception_score(logits, num_splits: int = 10, seed: int | None = 0) -> tuple[float, float]:
    """Inception Score exp(E_x KL(p(y|x) || p(y))) from classifier logits, mean and std over splits.

    Args:
        logits (`np.ndarray` or `torch.Tensor` of shape `(N, C)`): unnormalised class scores of generated images.
        num_splits (`int`, *optional*, defaults to 10): the set is cut into this many splits (as in the original
            implementation); clipped to N.
        seed (`int`, *optional*, defaults to 0): rows are put in a random order drawn with this seed before they are
            split, so a sample set stored grouped by class (e.g. 500 images of class 0, then class 1, ...) is not
            scored split by split on one class each, which would push the score towards 1. `None` keeps the order.

    Returns:
        `tuple[float, float]`: mean and standard deviation of the score over splits. It lies in [1, C].
    """
    logits = _features(logits, "logits", min_samples=1)
    if num_splits < 1:
        raise ValueError(f"num_splits = {num_splits} is out of range: it must be >= 1.")
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    probs = np.exp(log_probs)
    order = np.arange(logits.shape[0]) if seed is None else np.random.default_rng(seed).permutation(logits.shape[0])
    scores = []
    for part in np.array_split(order, min(num_splits, logits.shape[0])):
        p_yx, log_p_yx = probs[part], log_probs[part]
        log_p_y = np.log(np.clip(p_yx.mean(axis=0, keepdims=True), 1e-300, None))
        kl = (p_yx * (log_p_yx - log_p_y)).sum(axis=1).mean()
        scores.append(math.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def _pairwise_distances(x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Euclidean distances `(len(x), len(y))`, computed in row blocks (float64)."""
    return torch.cat([torch.cdist(x[i : i + batch_size], y) for i in range(0, x.shape[0], batch_size)])


def _knn_radii(features: torch.Tensor, k: int, batch_size: int) -> torch.Tensor:
    """Distance of each sample to its k-th nearest other sample."""
    radii = []
    for start in range(0, features.shape[0], batch_size):
        distances = torch.cdist(features[start : start + batch_size], features)
        # The k+1 smallest include the sample itself at distance 0.
        radii.append(distances.kthvalue(k + 1, dim=1).values)
    return torch.cat(radii)


def _coverage_fraction(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, batch_size: int) -> float:
    """Fraction of `queries` inside at least one ball B(support_j, radii_j)."""
    inside = 0
    for start in range(0, queries.shape[0], batch_size):
        distances = torch.cdist(queries[start : start + batch_size], support)
        inside += (distances <= radii[None, :]).any(dim=1).sum().item()
    return inside / queries.shape[0]


def precision_recall(real_features, fake_features, k: int = 3, batch_size: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) from k-NN manifold estimates.

    The real manifold is the union of balls around each real feature with radius the distance to its k-th nearest
    real neighbour; precision is the fraction of generated samples inside it. Recall swaps the roles.

    Args:
        real_features (`np.ndarray` or `torch.Tensor` of shape `(N1, D)`): reference features.
        fake_features (`np.ndarray` or `torch.Tensor` of shape `(N2, D)`): generated features.
        k (`int`, *optional*, defaults to 3): neighbourhood size (the paper's default).
        batch_size (`int`, *optional*, defaults to 1024): rows per distance block (memory is batch_size x N).

    Returns:
        `tuple[float, float]`: precision and recall, each in [0, 1].
    """
    real = torch.from_numpy(_features(real_features, "real_features", min_samples=k + 1))
    fake = torch.from_numpy(_features(fake_features, "fake_features", min_samples=k + 1))
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real_features has {real.shape[1]} dimensions but fake_features has {fake.shape[1]}.")
    if k < 1:
        raise ValueError(f"k = {k} is out of range: it must be >= 1.")
    real_radii = _knn_radii(real, k, batch_size)
    fake_radii = _knn_radii(fake, k, batch_size)
    precision = _coverage_fraction(fake, real, real_radii, batch_size)
    recall = _coverage_fraction(real, fake, fake_radii, batch_size)
    return precision, recall


def compute_generation_metrics(
    real_features,
    fake_features,
    fake_logits=None,
    extractor_name: str | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    pr_k: int = 3,
    is_splits: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """All metrics for one pair of feature sets, as a flat dict whose keys carry the extractor's label.

    Keys: `"FID-<name>"`, `"KID-<name>"`, `"KID-<name>-std"`, `"precision-<name>"`, `"recall-<name>"` and, when
    `fake_logits` is given, `"IS-<name>"`, `"IS-<name>-std"`, plus `"num_real"` and `"num_fake"`. Without a name the
    keys are the bare metric names. FID warns when a set has no more samples than feature dimensions (prefer KID).
    """
    suffix = f"-{extractor_name}" if extractor_name else ""
    real = _features(real_features, "real_features")
    fake = _features(fake_features, "fake_features")
    result = {"num_real": float(real.shape[0]), "num_fake": float(fake.shape[0])}
    result[f"FID{suffix}"] = frechet_distance_from_features(real, fake)
    kid_mean, kid_std = kernel_inception_distance(
        real, fake, num_subsets=kid_subsets, subset_size=kid_subset_size, seed=seed
    )
    result[f"KID{suffix}"], result[f"KID{suffix}-std"] = kid_mean, kid_std
    precision, recall = precision_recall(real, fake, k=pr_k)
    result[f"precision{suffix}"], result[f"recall{suffix}"] = precision, recall
    if fake_logits is not None:
        result[f"IS{suffix}"], result[f"IS{suffix}-std"] = inception_score(
            fake_logits, num_splits=is_splits, seed=seed
        )
    return result
