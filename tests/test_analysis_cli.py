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


# ------------------------------------------------------------------------------------------- memorisation commands
def test_nll_command_on_a_saved_prior(tmp_path, capsys):
    import torch

    from vcq_hf import VCQConfig, VCQForCausalLM

    torch.manual_seed(0)
    model = VCQForCausalLM(VCQConfig.from_preset("tiny"))
    model.save_pretrained(tmp_path / "prior")
    rng = np.random.default_rng(0)
    sizes = model.config.codebook_sizes
    codes = np.stack([rng.integers(0, k, 30) for k in sizes], axis=1).astype(np.int32)
    labels = rng.integers(0, model.config.num_classes, 30)
    save_codes_dataset(tmp_path / "train", codes[:20], labels[:20])
    save_codes_dataset(tmp_path / "test", codes[20:], labels[20:])
    argv = ["analyze", "nll", "--prior", str(tmp_path / "prior"), "--codes", str(tmp_path / "train")]
    argv += ["--test-codes", str(tmp_path / "test"), "--num-train-images", "1024", "--output-dir", str(tmp_path / "o")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "on 20 sequences" in out and "on 10;" in out and "log2 N = 10.00" in out
    report = json.loads((tmp_path / "o" / "nll.json").read_text())
    assert len(report["gap_per_position"]) == len(sizes) and report["train"]["conditioning"] == "class"
    assert report["gap_bits_per_image"] == pytest.approx(
        report["test"]["mean_bits_per_image"] - report["train"]["mean_bits_per_image"]
    )
    assert (tmp_path / "o" / "nll.png").is_file()
    assert main([*argv[:-2], "--unconditional", "--max-sequences", "5"]) == 0
    assert "on 5 sequences" in capsys.readouterr().out


def test_copies_command_counts_exact_copies(tmp_path, capsys):
    codes, labels = enumerated_codes()
    save_codes_dataset(tmp_path / "train", codes[:200], labels[:200])
    samples = np.concatenate([codes[:30], codes[200:210]])  # 30 copies, 10 new sequences
    np.savez(tmp_path / "samples.npz", arr_0=np.zeros((40, 4, 4, 3), np.uint8), codes=samples)
    np.save(tmp_path / "test.npy", codes[200:])
    argv = ["analyze", "copies", "--samples", str(tmp_path / "samples.npz"), "--codes", str(tmp_path / "train")]
    assert main([*argv, "--test-codes", str(tmp_path / "test.npy"), "--output-dir", str(tmp_path / "o")]) == 0
    report = json.loads((tmp_path / "o" / "copies.json").read_text())
    assert report["samples"]["copy_rate"] == 0.75 and report["heldout"]["copy_rate"] == 0.0
    assert report["heldout"]["prefix_match_rate"][4] == 0.0  # the 4-token prefixes are all distinct
    assert "copy rate 0.7500" in capsys.readouterr().out
    np.savez(tmp_path / "images_only.npz", arr_0=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(SystemExit):
        main(["analyze", "copies", "--samples", str(tmp_path / "images_only.npz"), "--codes", str(tmp_path / "train")])
    assert "no 'codes' array" in capsys.readouterr().err


def test_nearest_command_flags_copied_images(tmp_path, capsys):
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, size=(60, 28, 28, 3), dtype=np.uint8)
    heldout = rng.integers(0, 256, size=(40, 28, 28, 3), dtype=np.uint8)
    np.savez(tmp_path / "train.npz", arr_0=train)
    np.savez(tmp_path / "heldout.npz", arr_0=heldout)
    np.savez(tmp_path / "copies.npz", arr_0=train[:20])
    argv = ["analyze", "nearest", "--samples", str(tmp_path / "copies.npz"), "--train-images"]
    argv += [str(tmp_path / "train.npz"), "--heldout-images", str(tmp_path / "heldout.npz")]
    assert main([*argv, "--features", "fmnist-cnn", "--output-dir", str(tmp_path / "o")]) == 0
    report = json.loads((tmp_path / "o" / "nearest.json").read_text())
    assert report["sample_median"] < 1e-2 < report["heldout_median"] and report["close_rate_q01"] == 1.0
    assert report["distinct_nearest_training_images"] == 20
    assert "closer than the 1% quantile" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["analyze", "nearest", "--samples", str(tmp_path / "copies.npz"), "--train-images", "nonsense"])
    assert "NAME:SPLIT" in capsys.readouterr().err
