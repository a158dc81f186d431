"""Tests of vcq_hf.data: the offline builders (Fashion-MNIST, emoji, digits), imagefolder export and the loader."""

import dataclasses
import gzip
import io
import json

import datasets
import numpy as np
import pytest
from PIL import Image

from vcq_hf.cli import main
from vcq_hf.data import (
    build_imagefolder,
    builtin_split_counts,
    class_dir_names,
    emoji_entries,
    encode_png,
    load_builtin_dataset,
    load_image_dataset,
    render_emoji,
)
from vcq_hf.data import builtin as data


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("vcq_data_cache")


def _pixels(image):
    return np.asarray(image.convert("RGB"))


def _raw_idx(name):
    with gzip.open(data.FASHION_MNIST_DIR / name, "rb") as handle:
        raw = handle.read()
    offset = 16 if "images" in name else 8
    array = np.frombuffer(raw, dtype=np.uint8, offset=offset)
    return array.reshape(-1, 28, 28) if "images" in name else array


# ---------------------------------------------------------------------------------------------------------- bad input


def test_unknown_name_lists_known_names_and_close_match():
    with pytest.raises(ValueError, match="known names: fashion-mnist, emoji, digits.*Did you mean 'fashion-mnist'"):
        load_builtin_dataset("fashion_mnist")
    with pytest.raises(ValueError, match="known names"):
        load_builtin_dataset("imagenet")


@pytest.mark.parametrize("resolution", [0, -4, 1.5, "32", True, 4096])
def test_bad_resolution(resolution):
    with pytest.raises(ValueError, match="resolution"):
        load_builtin_dataset("digits", resolution=resolution)


def test_bad_split_and_options():
    with pytest.raises(ValueError, match="Unknown split 'validation' for 'digits'; allowed splits: train, test"):
        load_builtin_dataset("digits", split="validation")
    with pytest.raises(ValueError, match="Unknown option.*skin_tones.*allowed options: limit, seed, test_size"):
        load_builtin_dataset("digits", skin_tones=False)
    with pytest.raises(ValueError, match="test_size = 1.5 is out of range"):
        builtin_split_counts("emoji", test_size=1.5)
    with pytest.raises(ValueError, match="validation_size = 0 is out of range"):
        builtin_split_counts("fashion-mnist", validation_size=0)
    with pytest.raises(ValueError, match="limit = 0"):
        builtin_split_counts("digits", limit=0)
    with pytest.raises(ValueError, match="skin_tones must be True or False"):
        builtin_split_counts("emoji", skin_tones="no")


def test_missing_source_names_the_debian_package(monkeypatch, tmp_path):
    spec = data._SPECS["fashion-mnist"]
    missing = dataclasses.replace(spec, sources=(tmp_path / "train-images-idx3-ubyte.gz",))
    monkeypatch.setitem(data._SPECS, "fashion-mnist", missing)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_builtin_dataset("fashion-mnist", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="unicode-data"):
        emoji_entries(tmp_path / "emoji-test.txt")


def test_encode_png_round_trips_and_rejects_bad_arrays():
    rng = np.random.default_rng(0)
    for shape in [(5, 7), (6, 3, 3)]:
        array = rng.integers(0, 256, size=shape, dtype=np.uint8)
        decoded = np.asarray(Image.open(io.BytesIO(encode_png(array))))
        np.testing.assert_array_equal(decoded, array)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4, 4), dtype=np.uint8))


# ------------------------------------------------------------------------------------------------------ Fashion-MNIST


def test_fashion_mnist_split_counts():
    counts = builtin_split_counts("fashion-mnist")
    assert counts["class_names"] == list(data.FASHION_MNIST_CLASSES)
    assert counts["class_names"][0] == "T-shirt/top" and counts["class_names"][9] == "Ankle boot"
    assert {split: sum(c) for split, c in counts["splits"].items()} == {
        "train": 55_000,
        "validation": 5_000,
        "test": 10_000,
        "train_full": 60_000,
    }
    assert counts["splits"]["validation"] == [500] * 10  # class-stratified carve-out
    assert counts["splits"]["test"] == [1000] * 10


def test_fashion_mnist_validation_is_a_seeded_carve_out_of_the_official_train_split():
    index = data._build_index(data._SPECS["fashion-mnist"], data._resolve_options(data._SPECS["fashion-mnist"], {}))
    train, validation = set(index.item_ids["train"].tolist()), set(index.item_ids["validation"].tolist())
    assert not train & validation
    assert train | validation == set(range(60_000)) == set(index.item_ids["train_full"].tolist())
    assert min(index.item_ids["test"]) == 60_000  # the official test images, never in train/validation
    again = data._fashion_mnist_index(5000, 0)
    other = data._fashion_mnist_index(5000, 1)
    np.testing.assert_array_equal(again.item_ids["validation"], index.item_ids["validation"])
    assert not np.array_equal(other.item_ids["validation"], index.item_ids["validation"])


def test_fashion_mnist_test_and_validation_images_match_the_idx_files(cache_dir):
    test = load_builtin_dataset("fashion-mnist", split="test", cache_dir=cache_dir)
    assert len(test) == 10_000
    assert isinstance(test.features["image"], datasets.Image) and test.features["image"].mode == "RGB"
    assert test.features["label"].names == list(data.FASHION_MNIST_CLASSES)
    np.testing.assert_array_equal(np.asarray(test["label"]), _raw_idx("t10k-labels-idx1-ubyte.gz"))
    raw_test = _raw_idx("t10k-images-idx3-ubyte.gz")
    for row in (0, 4321, 9999):
        image = test[row]["image"]
        assert image.mode == "RGB" and image.size == (28, 28)
        np.testing.assert_array_equal(_pixels(image)[..., 0], raw_test[row])
        np.testing.assert_array_equal(_pixels(image)[..., 1], raw_test[row])

    validation = load_builtin_dataset("fashion-mnist", split="validation", cache_dir=cache_dir)
    ids = data._fashion_mnist_index(5000, 0).item_ids["validation"]
    raw_train, raw_labels = _raw_idx("train-images-idx3-ubyte.gz"), _raw_idx("train-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(np.asarray(validation["label"]), raw_labels[ids])
    for row in (0, 2500, 4999):
        np.testing.assert_array_equal(_pixels(validation[row]["image"])[..., 0], raw_train[ids[row]])


def test_cache_is_reused_and_use_cache_false_writes_nothing(cache_dir, tmp_path):
    first = load_builtin_dataset("fashion-mnist", split="train", resolution=32, limit=30, cache_dir=cache_dir)
    entries = sorted((cache_dir / "fashion-mnist").iterdir())
    again = load_builtin_dataset("fashion-mnist", split="train", resolution=32, limit=30, cache_dir=cache_dir)
    assert sorted((cache_dir / "fashion-mnist").iterdir()) == entries
    assert again.cache_files and again.cache_files[0]["filename"].startswith(str(cache_dir))
    assert len(first) == len(again) == 30
    np.testing.assert_array_equal(_pixels(first[7]["image"]), _pixels(again[7]["image"]))
    assert first[7]["image"].size == (32, 32)
    assert np.bincount(first["label"], minlength=10).tolist() == [3] * 10  # limit is class-balanced
    # A different resolution is a different cache entry.
    load_builtin_dataset("fashion-mnist", split="train", resolution=16, limit=30, cache_dir=cache_dir)
    assert len(list((cache_dir / "fashion-mnist").iterdir())) == len(entries) + 1
    memory = load_builtin_dataset("digits", limit=5, use_cache=False, cache_dir=tmp_path / "unused")
    assert len(memory) == 5 and not (tmp_path / "unused").exists()


# -------------------------------------------------------------------------------------------------------------- emoji


def test_emoji_entries_groups_and_bases():
    entries = emoji_entries()
    assert len(entries) == 3655
    groups = list(dict.fromkeys(entry.group for entry in entries))
    assert len(groups) == 9 and "Component" not in groups and groups[0] == "Smileys & Emotion"
    people = sum(entry.group == "People & Body" for entry in entries)
    assert 0.55 < people / len(entries) < 0.62
    bases = [entry for entry in entries if not entry.has_skin_tone]
    assert len(bases) == 1870
    for entry in entries:
        base = entries[entry.base]
        assert not base.has_skin_tone and base.group == entry.group
        assert entry.name.split(":")[0] == base.name.split(":")[0]
    # Mixed-tone sequences belong to their base even though their code points differ.
    handshake = [entry for entry in entries if entry.name.startswith("handshake: light skin tone, dark")]
    assert len(handshake) == 1 and entries[handshake[0].base].name == "handshake"


@pytest.mark.parametrize("skin_tones", [True, False])
def test_emoji_skin_tone_variants_never_straddle_splits(skin_tones):
    entries = emoji_entries()
    options = data._resolve_options(data._SPECS["emoji"], {"skin_tones": skin_tones})
    index = data._build_index(data._SPECS["emoji"], options)
    train, test = index.item_ids["train"], index.item_ids["test"]
    assert len(set(train.tolist()) & set(test.tolist())) == 0
    assert len(train) + len(test) == (3655 if skin_tones else 1870)
    train_bases = {entries[i].base for i in train}
    test_bases = {entries[i].base for i in test}
    assert not train_bases & test_bases
    assert all(not entries[i].has_skin_tone for i in np.concatenate([train, test])) != skin_tones
    assert 0.08 < len(test_bases) / (len(train_bases) + len(test_bases)) < 0.12
    assert np.all(np.bincount(index.labels["test"], minlength=9) > 0)  # stratified: every group in test
    # Dropping skin tones keeps the same base assignment.
    full = data._build_index(data._SPECS["emoji"], data._resolve_options(data._SPECS["emoji"], {}))
    assert set(test.tolist()) <= set(full.item_ids["test"].tolist())


def test_emoji_render_on_white():
    wave, wave_medium = render_emoji("\U0001f44b"), render_emoji("\U0001f44b\U0001f3fd")
    flag = render_emoji("\U0001f1fb\U0001f1e8")  # a regional-indicator pair: one flag glyph
    family = render_emoji("\U0001f468\u200d\U0001f469\u200d\U0001f467")  # a ZWJ sequence
    for image in (wave, wave_medium, flag, family):
        assert image.shape == (136, 136, 3) and image.dtype == np.uint8
        assert (image[0, 0] == 255).all() and (image[-1, -1] == 255).all()  # transparent corners became white
        assert (image < 200).any(axis=-1).mean() > 0.05  # there is a drawing
    assert np.abs(wave.astype(int) - wave_medium.astype(int)).mean() > 5  # the skin tone changes the pixels
    with pytest.raises(ValueError, match="no single glyph"):
        render_emoji("\U0001f600\U0001f600")


def test_emoji_builder_small_subset(cache_dir):
    dataset = load_builtin_dataset("emoji", split="test", resolution=24, limit=9, cache_dir=cache_dir)
    assert len(dataset) == 9
    assert dataset.features["label"].names[1] == "People & Body"
    assert sorted(dataset["label"]) == list(range(9))  # round-robin limit: one per group
    image = dataset[0]["image"]
    assert image.mode == "RGB" and image.size == (24, 24)
    no_tones = load_builtin_dataset("emoji", split="train", limit=9, skin_tones=False, cache_dir=cache_dir)
    assert no_tones[3]["image"].size == (136, 136)


# ------------------------------------------------------------------------------------------------------------- digits


def test_digits_builder(cache_dir):
    from sklearn.datasets import load_digits

    digits = load_digits()
    train = load_builtin_dataset("digits", split="train", cache_dir=cache_dir)
    test = load_builtin_dataset("digits", split="test", resolution=32, cache_dir=cache_dir)
    assert (len(train), len(test)) == (1438, 359)
    assert train.features["label"].names == [str(d) for d in range(10)]
    assert train[0]["image"].size == (8, 8) and test[0]["image"].size == (32, 32)
    index = data._digits_index(0.2, 0)
    assert not set(index.item_ids["train"].tolist()) & set(index.item_ids["test"].tolist())
    row = 11
    expected = np.round(digits.images[index.item_ids["train"][row]] * 255 / 16).astype(np.uint8)
    np.testing.assert_array_equal(_pixels(train[row]["image"])[..., 0], expected)
    assert train[row]["label"] == digits.target[index.item_ids["train"][row]]
    assert np.abs(np.bincount(test["label"]) - 36).max() <= 1  # stratified


# -------------------------------------------------------------------------------------------------------- imagefolder


def test_imagefolder_round_trip(cache_dir, tmp_path):
    out = tmp_path / "fmnist"
    metadata = build_imagefolder("fashion-mnist", out, resolution=20, limit=20, cache_dir=cache_dir)
    assert (out / "classes.txt").read_text().splitlines() == list(data.FASHION_MNIST_CLASSES)
    assert json.loads((out / "vcq_data.json").read_text()) == json.loads(json.dumps(metadata))
    assert metadata["splits"]["validation"]["num_images"] == 20 and metadata["resolution"] == 20
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "test", "train", "validation", "vcq_data.json"]
    assert (out / "train" / "0_T-shirt-top").is_dir() and (out / "train" / "9_Ankle-boot").is_dir()

    loaded = datasets.load_dataset("imagefolder", data_dir=str(out), cache_dir=str(tmp_path / "hf"))
    assert sorted(loaded) == ["test", "train", "validation"]
    assert loaded["train"].features["label"].names == class_dir_names(data.FASHION_MNIST_CLASSES)
    for split in ("train", "validation", "test"):
        built = load_builtin_dataset("fashion-mnist", split, resolution=20, limit=20, cache_dir=cache_dir)
        assert len(loaded[split]) == len(built) == 20
        # Files are <split>/<label>_<class>/<row>.png; check each one against that row of the built split.
        files = sorted((out / split).glob("*/*.png"))
        assert len(files) == 20
        for path in files[::7]:
            row = int(path.stem)
            assert path.parent.name == class_dir_names(data.FASHION_MNIST_CLASSES)[built[row]["label"]]
            np.testing.assert_array_equal(_pixels(Image.open(path)), _pixels(built[row]["image"]))
        assert sorted(loaded[split]["label"]) == sorted(built["label"])

    restored = load_image_dataset(train_data_dir=out, split="validation", cache_dir=tmp_path / "hf")
    assert restored.column_names == ["image", "label"]
    assert restored.features["label"].names[0] == "T-shirt/top"
    assert restored[0]["image"].mode == "RGB"

    with pytest.raises(FileExistsError, match="not empty"):
        build_imagefolder("fashion-mnist", out, limit=20, cache_dir=cache_dir)
    with pytest.raises(ValueError, match="train_full"):
        build_imagefolder("fashion-mnist", tmp_path / "x", splits=["train_full"], cache_dir=cache_dir)


def test_imagefolder_with_missing_classes_keeps_label_ids(cache_dir, tmp_path):
    out = tmp_path / "emoji"
    build_imagefolder("emoji", out, resolution=12, splits=["test"], limit=3, cache_dir=cache_dir)
    built = load_builtin_dataset("emoji", "test", resolution=12, limit=3, cache_dir=cache_dir)
    restored = load_image_dataset(train_data_dir=out, split="test", cache_dir=tmp_path / "hf")
    assert restored.features["label"].names == built.features["label"].names
    assert sorted(restored["label"]) == sorted(built["label"]) == [0, 1, 2]


# ----------------------------------------------------------------------------------------------- load_image_dataset


def test_load_image_dataset_normalises_columns_of_a_local_dataset(tmp_path):
    images = [Image.fromarray(np.full((10, 20), 40 * i, dtype=np.uint8), mode="L") for i in range(4)]
    source = datasets.Dataset.from_dict(
        {"caption": ["a", "b", "c", "d"], "img": images, "fine_label": [0, 3, 1, 3]},
        features=datasets.Features(
            {"caption": datasets.Value("string"), "img": datasets.Image(), "fine_label": datasets.Value("int64")}
        ),
    )
    folder = tmp_path / "local"
    folder.mkdir()
    source.to_parquet(str(folder / "train.parquet"))
    dataset = load_image_dataset(dataset_name=str(folder), cache_dir=tmp_path / "hf")
    assert dataset.column_names == ["image", "label"]
    assert dataset.features["label"].names == ["0", "1", "2", "3"]
    assert dataset["label"] == [0, 3, 1, 3]
    assert dataset[1]["image"].mode == "RGB" and dataset[1]["image"].size == (20, 10)
    resized = load_image_dataset(dataset_name=str(folder), resolution=8, cache_dir=tmp_path / "hf")
    assert resized[2]["image"].size == (8, 8) and resized[2]["image"].mode == "RGB"

    no_image = datasets.Dataset.from_dict({"text": ["x"], "label": [0]})
    no_image_folder = tmp_path / "text"
    no_image_folder.mkdir()
    no_image.to_parquet(str(no_image_folder / "train.parquet"))
    with pytest.raises(ValueError, match="Cannot tell the image column: found no image column among: text"):
        load_image_dataset(dataset_name=str(no_image_folder), cache_dir=tmp_path / "hf")
    with pytest.raises(ValueError, match="label_column 'nope' is not a column"):
        load_image_dataset(dataset_name=str(folder), label_column="nope", cache_dir=tmp_path / "hf")


def test_load_image_dataset_routes_builtin_and_hub_names(monkeypatch, cache_dir):
    digits = load_image_dataset("digits", split="test", resolution=16, cache_dir=cache_dir)
    assert len(digits) == 359 and digits[0]["image"].size == (16, 16)

    calls = []

    def fake_load_dataset(path, split=None, cache_dir=None, **kwargs):
        calls.append((path, split))
        image = Image.new("RGB", (5, 5), "red")
        return datasets.Dataset.from_dict(
            {"image": [image], "labels": [2]},
            features=datasets.Features(
                {"image": datasets.Image(), "labels": datasets.ClassLabel(names=["cat", "dog", "emu"])}
            ),
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    hub = load_image_dataset(dataset_name="someone/pets", split="validation")
    assert calls == [("someone/pets", "validation")]
    assert hub.column_names == ["image", "label"] and hub.features["label"].names[2] == "emu"

    with pytest.raises(ValueError, match="exactly one of dataset_name"):
        load_image_dataset()
    with pytest.raises(ValueError, match="exactly one of dataset_name"):
        load_image_dataset("digits", train_data_dir="somewhere")
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        load_image_dataset(train_data_dir=cache_dir / "does-not-exist")


# ---------------------------------------------------------------------------------------------------------------- CLI


def test_cli_info(capsys):
    assert main(["data", "info", "emoji", "--no-skin-tones"]) == 0
    out = capsys.readouterr().out
    assert "| class | train | test |" in out
    assert "| **total** | 1,683 | 187 |" in out and "| Flags |" in out


def test_cli_build(tmp_path, capsys):
    out = tmp_path / "digits"
    args = ["data", "build", "digits", "-r", "16", "-o", str(out), "--limit", "10", "--cache-dir", str(tmp_path / "c")]
    assert main(args) == 0
    assert "train 10, test 10 images" in capsys.readouterr().out
    assert len(list((out / "train").glob("*/*.png"))) == 10
    assert Image.open(next((out / "test").glob("*/*.png"))).size == (16, 16)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert "not empty" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--splits", "test"]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "info", "fashon-mnist"], "Did you mean 'fashion-mnist'"),
        (["data", "info", "digits", "--no-skin-tones"], "--no-skin-tones applies to 'emoji' only"),
        (["data", "build", "digits", "-o", "x", "--splits", "validation"], "Unknown split 'validation'"),
        (["data", "build", "digits", "-o", "x", "-r", "0"], "resolution = 0 is out of range"),
    ],
)
def test_cli_bad_input_is_a_clean_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
