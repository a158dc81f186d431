import numpy as np
import pytest

from vcq_hf.analysis import default_ks, embedding_features, linear_probe, onehot_features, plot_probe
from vcq_hf.analysis.probe import split_train_test


def make_codes(num_rows, sizes, seed):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, k, size=num_rows) for k in sizes], axis=1)


def test_onehot_features_layout():
    codes = np.array([[1, 0, 3], [0, 2, 1]])
    features = onehot_features(codes, 2, [2, 3, 4]).toarray()
    np.testing.assert_array_equal(features, [[0, 1, 1, 0, 0], [1, 0, 0, 0, 1]])
    assert onehot_features(codes, 0, [2, 3, 4]).shape == (2, 0)
    codebook = np.arange(12, dtype=np.float32).reshape(6, 2)
    np.testing.assert_array_equal(embedding_features(codes, 2, codebook), [[2, 3, 0, 1], [0, 1, 4, 5]])


def test_probe_finds_the_informative_position():
    sizes = [2, 4, 8, 8, 8]
    train, test = make_codes(600, sizes, 0), make_codes(300, sizes, 1)
    # The class is the code at position 3 (8 classes); every other position is noise.
    result = linear_probe(train, train[:, 3], test, test[:, 3], ks=[0, 1, 3, 4, 5], codebook_sizes=sizes)
    accuracy = dict(zip(result.ks, result.test_accuracy))
    assert accuracy[4] == 1.0 and accuracy[5] == 1.0
    for k in (0, 1, 3):
        assert accuracy[k] < 0.25  # chance is 1/8
    assert result.num_features == [0, 2, 14, 22, 30]
    assert result.num_classes == 8 and result.feature_kind == "onehot"
    assert "| 4 | 22 | 1.0000 | 1.0000 |" in result.format_table()


def test_probe_majority_baseline_and_embedding_features():
    sizes = [4, 4, 4]
    train, test = make_codes(400, sizes, 2), make_codes(200, sizes, 3)
    labels_train, labels_test = train[:, 0] % 2, test[:, 0] % 2
    onehot = linear_probe(train, labels_train, test, labels_test, ks=[0, 1], codebook_sizes=sizes)
    assert onehot.test_accuracy[0] == pytest.approx(max(np.mean(labels_test), 1 - np.mean(labels_test)), abs=0.06)
    assert onehot.test_accuracy[1] == 1.0
    # A codebook whose first coordinate is the parity of the code: linearly separable from one embedding.
    codebook = np.stack([np.arange(4) % 2, np.random.default_rng(0).normal(size=4)], axis=1)
    embedded = linear_probe(train, labels_train, test, labels_test, ks=[1, 3], codebook=codebook)
    assert embedded.feature_kind == "embedding" and embedded.num_features == [2, 6]
    assert embedded.test_accuracy[0] == 1.0


def test_probe_is_reproducible_and_validates_inputs(tmp_path):
    sizes = [3, 5, 5]
    codes = make_codes(300, sizes, 4)
    labels = (codes[:, 1] + codes[:, 2]) % 3
    train_rows, test_rows = split_train_test(300, 0.25, seed=7)
    assert len(test_rows) == 75 and not set(train_rows) & set(test_rows)
    np.testing.assert_array_equal(split_train_test(300, 0.25, seed=7)[1], test_rows)
    args = (codes[train_rows], labels[train_rows], codes[test_rows], labels[test_rows])
    first = linear_probe(*args, ks=[2, 3], seed=7)
    assert first.to_dict() == linear_probe(*args, ks=[2, 3], seed=7).to_dict()
    with pytest.raises(ValueError, match="ks"):
        linear_probe(*args, ks=[4])
    with pytest.raises(ValueError, match="must be < K_t"):
        linear_probe(*args, ks=[1], codebook_sizes=[2, 5, 5])
    with pytest.raises(ValueError, match="test_fraction"):
        split_train_test(10, 1.5, seed=0)
    assert default_ks(12, extra=[5]) == [0, 1, 2, 4, 5, 8, 12]
    plot_probe(first, tmp_path / "probe.png", predicted_cliff=2)
    assert (tmp_path / "probe.png").stat().st_size > 1000
