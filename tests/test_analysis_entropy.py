import itertools
import math
from collections import Counter

import numpy as np
import pytest
import torch

from vcq_hf.analysis import analyze_entropy, per_position_entropy, plot_entropy_profile
from vcq_hf.schedules import cliff_position


def brute_force_conditional_entropy(codes):
    """H(x_<=t) - H(x_<t) from dictionaries of prefix tuples."""
    n, num_tokens = codes.shape

    def entropy(counter):
        return -sum(c / n * math.log2(c / n) for c in counter.values())

    joint = [entropy(Counter(tuple(row[: t + 1]) for row in codes.tolist())) for t in range(num_tokens)]
    return np.diff(joint, prepend=0.0)


def test_identical_sequences_have_zero_entropy():
    codes = np.tile(np.array([[3, 1, 4, 1, 5]]), (17, 1))
    profile = analyze_entropy(codes)
    np.testing.assert_array_equal(profile.conditional_entropy, np.zeros(5))
    np.testing.assert_array_equal(profile.distinct_prefixes, np.ones(5))
    assert profile.observed_cliff == 0
    assert profile.unique_at is None


def test_full_cartesian_product_has_capacity_entropy():
    sizes = (2, 3, 4, 4)
    codes = np.array(list(itertools.product(*(range(k) for k in sizes))))
    np.random.default_rng(0).shuffle(codes)  # row order must not matter
    profile = analyze_entropy(codes, codebook_sizes=sizes)
    np.testing.assert_allclose(profile.conditional_entropy, np.log2(sizes), rtol=0, atol=1e-12)
    np.testing.assert_allclose(profile.joint_entropy, np.cumsum(np.log2(sizes)), atol=1e-12)
    np.testing.assert_array_equal(profile.distinct_prefixes, np.cumprod(sizes))
    assert profile.observed_cliff is None
    assert profile.unique_at == 4
    assert profile.predicted_cliff == cliff_position(len(codes), sizes) == 4


def test_copied_and_skewed_positions():
    # x_0 uniform on 4 values, x_1 = x_0 (determined), x_2 uniform on 2 values: H = [2, 0, 1].
    codes = np.array([[a, a, b] for a in range(4) for b in range(2)])
    np.testing.assert_allclose(per_position_entropy(codes), [2.0, 0.0, 1.0], atol=1e-12)
    # Skewed first token with probabilities (1/2, 1/4, 1/8, 1/8): H = 1.75 bits exactly.
    skewed = np.array([[0]] * 4 + [[1]] * 2 + [[2]] + [[3]])
    assert per_position_entropy(skewed)[0] == pytest.approx(1.75, abs=1e-12)


def test_cliff_matches_prediction_on_enumerated_prefixes():
    # N = 1024 sequences whose first 10 binary tokens enumerate all 1024 strings, then random tokens:
    # H_t = 1 bit for t < 10 and exactly 0 afterwards; the predicted cliff for K = 2 is ceil(10 / 1) = 10.
    rng = np.random.default_rng(1)
    prefixes = np.array(list(itertools.product(range(2), repeat=10)))
    codes = np.concatenate([prefixes, rng.integers(0, 2, size=(1024, 6))], axis=1)
    profile = analyze_entropy(codes, codebook_sizes=[2] * 16)
    np.testing.assert_allclose(profile.conditional_entropy, [1.0] * 10 + [0.0] * 6, atol=1e-12)
    assert profile.observed_cliff == 10
    assert profile.predicted_cliff == 10
    assert profile.unique_at == 10
    np.testing.assert_array_equal(profile.distinct_prefixes[9:], [1024] * 7)


@pytest.mark.parametrize("prune_unique", [True, False])
def test_matches_brute_force_on_random_codes(prune_unique):
    rng = np.random.default_rng(2)
    # Few distinct values per position so that prefixes collide for a while; large values exercise the sort path.
    codes = rng.integers(0, 3, size=(300, 9))
    codes[:, 4] *= 100_000
    codes[250:] = codes[:50]  # exact duplicates never become unique: pruning must keep them to the end
    result = analyze_entropy(codes, prune_unique=prune_unique)
    np.testing.assert_allclose(result.conditional_entropy, brute_force_conditional_entropy(codes), atol=1e-10)
    distinct = [len({tuple(row[: t + 1]) for row in codes.tolist()}) for t in range(codes.shape[1])]
    np.testing.assert_array_equal(result.distinct_prefixes, distinct)


def test_accepts_torch_tensors_and_memmaps(tmp_path):
    codes = torch.randint(0, 5, (64, 6))
    expected = brute_force_conditional_entropy(codes.numpy())
    np.testing.assert_allclose(per_position_entropy(codes), expected, atol=1e-10)
    np.save(tmp_path / "codes.npy", codes.numpy().astype(np.int32))
    mapped = np.load(tmp_path / "codes.npy", mmap_mode="r")
    np.testing.assert_allclose(per_position_entropy(mapped), expected, atol=1e-10)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="2-D"):
        per_position_entropy(np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="integers"):
        per_position_entropy(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        per_position_entropy(np.array([[0, -1], [1, 2]]))
    with pytest.raises(ValueError, match=r"codes\[:, 1\] holds 4 but K_1 = 4"):
        analyze_entropy(np.array([[0, 4], [1, 2]]), codebook_sizes=[2, 4])
    with pytest.raises(ValueError, match="threshold"):
        analyze_entropy(np.zeros((2, 2), dtype=int), threshold=0)


def test_num_samples_sets_the_predicted_cliff_and_the_plot_is_written(tmp_path):
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 4, size=(200, 8))
    profile = analyze_entropy(codes, codebook_sizes=[4] * 8, num_samples=100)
    assert profile.predicted_cliff == cliff_position(100, [4] * 8) == 4
    summary = profile.to_dict()
    assert summary["predicted_cliff"] == 4 and len(summary["conditional_entropy_bits"]) == 8
    assert "| 0 | 4 | 2.000 |" in profile.format_table()
    plot_entropy_profile(profile, tmp_path / "cliff.png")
    assert (tmp_path / "cliff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
