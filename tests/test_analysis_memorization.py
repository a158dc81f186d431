"""Memorisation measures on synthetic code sets whose answers are known: a pure memoriser, a uniform prior, brute force."""

import itertools
import math

import numpy as np
import pytest
import torch

from vcq_hf import VCQConfig, VCQForCausalLM
from vcq_hf.analysis import (
    analyze_entropy,
    code_log_likelihood_bits,
    copy_statistics,
    generalization_gap,
    nearest_neighbors,
    nearest_training_distances,
    prior_nll,
)


def empirical_logits(train: np.ndarray, queries: np.ndarray, vocab: int, alpha: float = 0.0) -> np.ndarray:
    """Logits of the empirical next-token distribution of `train` (plus `alpha` pseudo-counts) at each query prefix."""
    logits = np.full(queries.shape + (vocab,), -np.inf)
    for row, query in enumerate(queries):
        for t in range(queries.shape[1]):
            matches = train[(train[:, :t] == query[:t]).all(axis=1), t]
            counts = np.bincount(matches, minlength=vocab).astype(float) + alpha
            with np.errstate(divide="ignore"):
                logits[row, t] = np.log(counts)
    return logits


def unique_codes(num: int, num_tokens: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = np.unique(rng.integers(0, size, size=(num * 3, num_tokens)), axis=0)
    return codes[rng.permutation(len(codes))[:num]]


# ------------------------------------------------------------------------------------------------------ likelihood
def test_uniform_logits_cost_log2_k_per_position():
    codes = np.array([[1, 3, 0], [0, 7, 15]])
    bits = code_log_likelihood_bits(np.zeros((2, 3, 16)), codes, codebook_sizes=[2, 8, 16])
    np.testing.assert_allclose(bits, [[1.0, 3.0, 4.0]] * 2, atol=1e-12)
    unmasked = code_log_likelihood_bits(np.zeros((2, 3, 16)), codes)
    np.testing.assert_allclose(unmasked, 4.0, atol=1e-12)


def test_memoriser_pays_log2_n_per_training_image_and_generalises_nowhere():
    train = unique_codes(64, 6, 4, seed=0)  # 64 distinct sequences
    test = unique_codes(400, 6, 4, seed=1)
    test = test[~(test[:, None, :] == train[None]).all(-1).any(1)][:40]  # held-out: none is a training sequence
    bits = code_log_likelihood_bits(empirical_logits(train, train, 4), train)
    # The empirical distribution gives each training sequence probability 1/N: log2 N bits in total...
    np.testing.assert_allclose(bits.sum(axis=1), math.log2(64), atol=1e-9)
    # ...split over positions exactly as the code set's conditional entropy.
    profile = analyze_entropy(train, codebook_sizes=[4] * 6)
    np.testing.assert_allclose(bits.mean(axis=0), profile.conditional_entropy, atol=1e-9)
    # Held-out sequences get probability 0 from a pure memoriser, and a large finite cost with pseudo-counts.
    assert np.isinf(code_log_likelihood_bits(empirical_logits(train, test, 4), test)).any(axis=1).all()
    smoothed_test = code_log_likelihood_bits(empirical_logits(train, test, 4, alpha=1e-3), test).sum(axis=1)
    smoothed_train = code_log_likelihood_bits(empirical_logits(train, train, 4, alpha=1e-3), train).sum(axis=1)
    assert smoothed_test.mean() - smoothed_train.mean() > 5.0


def test_likelihood_input_checks():
    with pytest.raises(ValueError, match=r"shape \(N, T, V\)"):
        code_log_likelihood_bits(np.zeros((2, 3, 4)), np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 4\)"):
        code_log_likelihood_bits(np.zeros((1, 2, 4)), np.array([[0, 4]]))
    with pytest.raises(ValueError, match="codebook_sizes has 1 entries for 2 positions"):
        code_log_likelihood_bits(np.zeros((1, 2, 4)), np.array([[0, 1]]), codebook_sizes=[4])


def tiny_prior(seed: int = 0, **overrides) -> VCQForCausalLM:
    torch.manual_seed(seed)
    return VCQForCausalLM(VCQConfig.from_preset("tiny", **overrides)).eval()


def random_codes(config, num: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, size, num) for size in config.codebook_sizes], axis=1)


def test_prior_nll_equals_the_models_masked_loss():
    model = tiny_prior(mask_logits_in_loss=True)
    codes, labels = random_codes(model.config, 7, seed=0), np.arange(7) % model.config.num_classes
    nll = prior_nll(model, codes, labels, batch_size=3)  # batches of 3, 3, 1
    assert nll.bits.shape == (7, model.config.num_image_tokens) and nll.conditioning == "class"
    ids = model.build_input_ids(labels.tolist(), torch.as_tensor(codes))
    loss = model(input_ids=ids, labels=ids).loss.item()  # mean nats per image token
    assert nll.bits.mean() == pytest.approx(loss / math.log(2), rel=1e-5)
    np.testing.assert_allclose(nll.bits_per_image, nll.bits.sum(axis=1))
    unconditional = prior_nll(model, codes)
    assert unconditional.conditioning == "null" and not np.allclose(unconditional.bits, nll.bits)


def test_generalization_gap_bookkeeping_and_checks():
    model = tiny_prior()
    train, test = random_codes(model.config, 6, seed=0), random_codes(model.config, 5, seed=1)
    gap = generalization_gap(model, train, test, np.zeros(6, int), np.ones(5, int), num_train_images=1000)
    np.testing.assert_allclose(gap.gap_per_position, gap.test.bits_per_position - gap.train.bits_per_position)
    assert gap.gap_bits_per_image == pytest.approx(gap.gap_per_position.sum())
    assert gap.memorization_bits == pytest.approx(math.log2(1000))
    report = gap.to_dict()
    assert report["train"]["num_sequences"] == 6 and report["test"]["num_sequences"] == 5
    assert "log2 N = 9.97" in gap.summary() and gap.format_table().count("\n") == model.config.num_image_tokens + 1
    with pytest.raises(ValueError, match="for both"):
        generalization_gap(model, train, test, np.zeros(6, int), None)
    with pytest.raises(ValueError, match="positions but the prior has T"):
        prior_nll(model, train[:, :-1])


# ---------------------------------------------------------------------------------------------------------- copies
def brute_force_shared_prefix(queries: np.ndarray, reference: np.ndarray) -> list[int]:
    result = []
    for query in queries:
        best = 0
        for row in reference:
            length = 0
            while length < len(query) and query[length] == row[length]:
                length += 1
            best = max(best, length)
        result.append(best)
    return result


def test_copy_statistics_match_brute_force():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 3, size=(50, 6))  # small K: long shared prefixes are common
    queries = np.concatenate([rng.integers(0, 3, size=(40, 6)), reference[:10]])
    stats = copy_statistics(queries, reference)
    assert stats.shared_prefix.tolist() == brute_force_shared_prefix(queries, reference)
    assert stats.copy_rate == pytest.approx(np.mean(stats.shared_prefix == 6)) and stats.copy_rate >= 10 / 50
    rate = stats.prefix_match_rate
    assert rate[0] == 1.0 and rate[-1] == stats.copy_rate and (np.diff(rate) <= 0).all()


def test_copy_rate_of_the_training_set_is_one_and_of_disjoint_codes_zero():
    train = np.array(list(itertools.product(range(2), repeat=4)))[:8]  # all sequences starting with 0
    assert copy_statistics(train, train).copy_rate == 1.0
    disjoint = copy_statistics(1 - train[:, :1] + np.zeros((8, 4), int), train)  # first token 1: never in train
    assert disjoint.copy_rate == 0.0 and disjoint.shared_prefix.tolist() == [0] * 8
    with pytest.raises(ValueError, match="4 positions but the reference sequences 3"):
        copy_statistics(train, train[:, :3])


# ------------------------------------------------------------------------------------------- nearest neighbours
def test_nearest_neighbors_match_brute_force_and_find_copies():
    rng = np.random.default_rng(0)
    reference, queries = rng.normal(size=(300, 5)), rng.normal(size=(70, 5))
    distances, indices = nearest_neighbors(queries, reference, batch_size=16)
    full = np.linalg.norm(queries[:, None] - reference[None], axis=-1)
    np.testing.assert_array_equal(indices, full.argmin(axis=1))
    np.testing.assert_allclose(distances, full.min(axis=1), atol=1e-4)
    copies, copy_indices = nearest_neighbors(reference[[5, 9]] + [[0.01, 0, 0, 0, 0]], reference)
    assert copy_indices.tolist() == [5, 9] and copies == pytest.approx([0.01, 0.01], abs=1e-4)
    with pytest.raises(ValueError, match="finite"):
        nearest_neighbors(np.full((1, 5), np.nan), reference)
    with pytest.raises(ValueError, match="same D"):
        nearest_neighbors(queries[:, :4], reference)


def test_copying_sampler_is_flagged_and_a_fresh_sampler_is_not():
    rng = np.random.default_rng(1)
    train, heldout = rng.normal(size=(500, 8)), rng.normal(size=(400, 8))
    copier = train[rng.integers(0, 500, 200)] + rng.normal(scale=1e-3, size=(200, 8))
    fresh = rng.normal(size=(200, 8))
    copied = nearest_training_distances(copier, train, heldout, feature_name="toy").to_dict()
    assert copied["close_rate_q01"] == 1.0 and copied["median_ratio"] < 0.01
    new = nearest_training_distances(fresh, train, heldout).to_dict()
    assert new["close_rate_q01"] < 0.05 and 0.8 < new["median_ratio"] < 1.25
    assert copied["feature_name"] == "toy" and new["num_heldout"] == 400


def test_docstring_examples_run():
    import doctest

    from vcq_hf.analysis import memorization

    runner = doctest.DocTestRunner()
    tests = doctest.DocTestFinder().find(memorization)
    for test in tests:
        runner.run(test)
    assert sum(len(test.examples) for test in tests) >= 5
    assert runner.summarize(verbose=False).failed == 0
