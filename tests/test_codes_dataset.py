"""Code sets carry their schedule and tokenizer reference in the dataset's own metadata (issue 15.12):
`load_codes_dataset` reads an extract_codes.py folder, a plain `save_to_disk` folder and a Hub dataset id."""

import json
import shutil

import datasets
import pytest
from huggingface_hub import DatasetCard, DatasetCardData

from vcq_hf.data import codes as codes_module
from vcq_hf.data.codes import META_FILENAME, codes_dataset_info, load_codes_dataset, meta_from_info


META = {
    "codebook_sizes": [2, 4, 8],
    "num_tokens": 3,
    "class_names": ["cat", "dog"],
    "vq_model_path": "/models/vq",
    "vq_model_fingerprint": "abc123",
}
FEATURES = datasets.Features(
    {"codes": datasets.Sequence(datasets.Value("int32"), length=3), "label": datasets.ClassLabel(names=["cat", "dog"])}
)
ROWS = {"codes": [[0, 1, 2], [1, 3, 7]], "label": [0, 1]}


def make_dataset(with_meta: bool = True) -> datasets.Dataset:
    info = codes_dataset_info(META, FEATURES) if with_meta else datasets.DatasetInfo(features=FEATURES)
    return datasets.Dataset.from_dict(ROWS, features=FEATURES, info=info)


def test_extract_codes_folder_and_plain_save_to_disk_folder(tmp_path):
    folder = tmp_path / "codes"
    make_dataset().save_to_disk(str(folder))
    (folder / META_FILENAME).write_text(json.dumps(META))
    dataset, meta = load_codes_dataset(folder)
    assert meta == META and dataset["codes"] == ROWS["codes"]
    # the same folder without vcq_meta.json: the metadata comes from the dataset's own info
    (folder / META_FILENAME).unlink()
    dataset, meta = load_codes_dataset(folder)
    assert meta == META and meta_from_info(dataset) == META


def test_hub_dataset_id_reads_info_or_card(monkeypatch):
    # push_to_hub keeps features and split sizes, not the description: the card's YAML carries the metadata
    calls = {}

    def fake_load_dataset(name, split, revision=None, token=None):
        calls["load"] = (name, split)
        return make_dataset(with_meta=False)

    def fake_card_load(repo_id, repo_type=None, revision=None, token=None):
        calls["card"] = (repo_id, repo_type)
        return DatasetCard.from_template(DatasetCardData(vcq_meta=META))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(DatasetCard, "load", fake_card_load)
    dataset, meta = load_codes_dataset("me/fmnist-codes")
    assert meta == META and len(dataset) == 2
    assert calls == {"load": ("me/fmnist-codes", "train"), "card": ("me/fmnist-codes", "dataset")}


def test_push_codes_to_hub_writes_the_card_metadata(monkeypatch):
    pushed = {}
    monkeypatch.setattr(datasets.Dataset, "push_to_hub", lambda self, repo_id, **kwargs: pushed.update(data=repo_id))
    monkeypatch.setattr(DatasetCard, "load", lambda *args, **kwargs: DatasetCard.from_template(DatasetCardData()))
    monkeypatch.setattr(DatasetCard, "push_to_hub", lambda self, repo_id, **kwargs: pushed.update(card=str(self)))
    assert codes_module.push_codes_to_hub(make_dataset(), META, "me/fmnist-codes") == "me/fmnist-codes"
    assert pushed["data"] == "me/fmnist-codes"
    assert DatasetCard(pushed["card"]).data.to_dict()["vcq_meta"] == META


def test_a_dataset_without_code_set_metadata_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "plain"
    make_dataset(with_meta=False).save_to_disk(str(folder))
    with pytest.raises(ValueError, match="lacks codebook_sizes, class_names"):
        load_codes_dataset(folder)
    bad = dict(META, codebook_sizes=[2, 4])
    shutil.rmtree(folder)
    make_dataset().save_to_disk(str(folder))
    (folder / META_FILENAME).write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="holds 3 tokens per image but the schedule has 2 positions"):
        load_codes_dataset(folder)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        load_codes_dataset(tmp_path / "file.txt")
