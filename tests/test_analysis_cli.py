import itertools
import json

import datasets
import numpy as np
import pytest

from vcq_hf.analysis.cli import load_code_set, read_codebook_sizes
from vcq_hf.cli import main


def enumerated_codes(seed=0):
    """256 rows: the first 4 tokens (K = 4) enumerate all 4^4 prefixes, 4 random tokens follow. Label = x_1."""
    rng = np.random.default_rng(seed)
    prefixes = np.array(list(itertools.product(range(4), repeat=4)))
    codes = np.concatenate([prefixes, rng.integers(0, 4, size=(256, 4))], axis=1).astype(np.int32)
    return codes, codes[:, 1].astype(np.int64)


def save_codes_dataset(folder, codes, labels, meta=None, flipped=None):
    features = datasets.Features(
        {
            "codes": datasets.Sequence(datasets.Value("int32"), length=codes.shape[1]),
            "label": datasets.ClassLabel(names=[f"c{i}" for i in range(int(labels.max()) + 1)]),
            "flipped": datasets.Value("bool"),
        }
    )
    flipped = np.zeros(len(codes), dtype=bool) if flipped is None else flipped
    dataset = datasets.Dataset.from_dict({"codes": codes, "label": labels, "flipped": flipped}, features=features)
    dataset.save_to_disk(str(folder))
    if meta is not None:
        (folder / "vcq_meta.json").write_text(json.dumps(meta))
    return dataset


def test_entropy_command_on_a_saved_dataset(tmp_path, capsys):
    codes, labels = enumerated_codes()
    # Flip-augmented copies (here: random rows) must be left out by default.
    extra = np.random.default_rng(1).integers(0, 4, size=(50, 8)).astype(np.int32)
    save_codes_dataset(
        tmp_path / "codes",
        np.concatenate([codes, extra]),
        np.concatenate([labels, extra[:, 1]]),
        meta={"codebook_sizes": [4] * 8, "num_source_images": 256},
        flipped=np.array([False] * 256 + [True] * 50),
    )
    assert main(["analyze", "entropy", "--codes", str(tmp_path / "codes"), "--output-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "observed cliff (first t with H_t < 0.05 bits): 4; predicted cliff (capacity >= log2 256): 4" in out
    report = json.loads((tmp_path / "out" / "entropy.json").read_text())
    assert report["num_sequences"] == 256
    np.testing.assert_allclose(report["conditional_entropy_bits"], [2.0] * 4 + [0.0] * 4, atol=1e-12)
    assert (tmp_path / "out" / "entropy.png").is_file()


def test_entropy_command_on_npy_and_parquet_with_sizes_from_a_model_config(tmp_path, capsys):
    codes, labels = enumerated_codes()
    np.save(tmp_path / "codes.npy", codes)
    model_dir = tmp_path / "vq_model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"model_type": "vcq_vq", "codebook_sizes": [4] * 8}))
    assert read_codebook_sizes(model_dir) == [4] * 8
    args = ["analyze", "entropy", "--codebook-sizes-from", str(model_dir), "--num-samples", "16"]
    assert main([*args, "--codes", str(tmp_path / "codes.npy")]) == 0
    assert "predicted cliff (capacity >= log2 16): 2" in capsys.readouterr().out
    datasets.Dataset.from_dict({"codes": codes.tolist(), "label": labels}).to_parquet(str(tmp_path / "c.parquet"))
    loaded = load_code_set(tmp_path / "c.parquet")
    np.testing.assert_array_equal(loaded.codes, codes)
    np.testing.assert_array_equal(loaded.labels, labels)


def test_probe_command_with_random_split(tmp_path, capsys):
    codes, labels = enumerated_codes()
    save_codes_dataset(tmp_path / "codes", codes, labels, meta={"codebook_sizes": [4] * 8})
    argv = ["analyze", "probe", "--codes", str(tmp_path / "codes"), "--ks", "0,1,2,8", "--seed", "3"]
    assert main([*argv, "--output-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "205 train / 51 test rows, 4 classes" in out
    report = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert report["ks"] == [0, 1, 2, 8]
    assert report["test_accuracy"][2] == 1.0  # the label is x_1
    assert report["test_accuracy"][1] < 0.5
    assert (tmp_path / "out" / "probe.png").is_file()


def test_probe_command_with_test_codes_and_npy_labels(tmp_path, capsys):
    codes, labels = enumerated_codes()
    np.save(tmp_path / "train.npy", codes[:200])
    np.save(tmp_path / "train_labels.npy", labels[:200])
    np.save(tmp_path / "test.npy", codes[200:])
    np.save(tmp_path / "test_labels.npy", labels[200:])
    argv = ["analyze", "probe", "--codes", str(tmp_path / "train.npy"), "--labels", str(tmp_path / "train_labels.npy")]
    argv += ["--test-codes", str(tmp_path / "test.npy"), "--test-labels", str(tmp_path / "test_labels.npy")]
    assert main([*argv, "--codebook-sizes", "4,4,4,4,4,4,4,4"]) == 0
    out = capsys.readouterr().out
    assert "200 train / 56 test rows" in out
    assert "| 2 | 8 | 1.0000 | 1.0000 |" in out  # default ks include 2; one-hot of 2 tokens of K = 4


def test_clean_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "entropy", "--codes", str(tmp_path / "absent")])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err
    np.save(tmp_path / "codes.npy", np.zeros((4, 3), dtype=np.int32))
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "probe", "--codes", str(tmp_path / "codes.npy")])
    assert exit_info.value.code == 2
    assert "no labels" in capsys.readouterr().err
