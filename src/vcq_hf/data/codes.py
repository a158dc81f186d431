"""Code sets: the token ids a VCQ tokenizer gives a data set, stored as a `datasets.Dataset` that carries its own
schedule and tokenizer reference, so that a prior can be trained from it wherever it lives.

A code set has the columns "codes" (`Sequence(int32, length=T)`), "label" (`ClassLabel`), "flipped" and
"source_index", and a metadata dict (`CODES_META_KEY`): `codebook_sizes` (the K_t schedule), `num_tokens`,
`image_size`, `class_names`, and the tokenizer reference (`vq_model_path`, `vq_model_fingerprint`). The dict is kept
in three places, each read by `load_codes_dataset`:

- the dataset's own info (`DatasetInfo.description`, JSON `{"vcq_meta": {...}}`), which `save_to_disk` keeps: a
  folder written by `Dataset.save_to_disk` needs nothing else;
- `vcq_meta.json` next to it, written last by `examples/extract_codes.py` as the mark of a complete folder;
- the dataset card's YAML (`vcq_meta:`), which `push_codes_to_hub` writes, because `push_to_hub` keeps only the
  features and split sizes of a dataset's info: a Hub dataset id then loads like a folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..utils import logging


if TYPE_CHECKING:
    import datasets


logger = logging.get_logger(__name__)

CODES_META_KEY = "vcq_meta"
META_FILENAME = "vcq_meta.json"
# What a prior needs from a code set's metadata.
REQUIRED_META_KEYS: tuple[str, ...] = ("codebook_sizes", "class_names")

__all__ = [
    "CODES_META_KEY",
    "META_FILENAME",
    "codes_dataset_info",
    "load_codes_dataset",
    "meta_from_info",
    "push_codes_to_hub",
]


def codes_dataset_info(meta: dict[str, Any], features: datasets.Features) -> datasets.DatasetInfo:
    """The `DatasetInfo` of a code set: its features, with `meta` in the description (`{"vcq_meta": meta}`)."""
    import datasets

    return datasets.DatasetInfo(description=json.dumps({CODES_META_KEY: meta}), features=features)


def meta_from_info(dataset: datasets.Dataset) -> dict[str, Any]:
    """The code-set metadata stored in `dataset.info.description`, or `{}` when it holds none."""
    description = getattr(dataset.info, "description", None) or ""
    try:
        parsed = json.loads(description)
    except (json.JSONDecodeError, TypeError):
        return {}
    meta = parsed.get(CODES_META_KEY) if isinstance(parsed, dict) else None
    return dict(meta) if isinstance(meta, dict) else {}


def _meta_from_card(repo_id: str, revision: str | None, token: str | bool | None) -> dict[str, Any]:
    from huggingface_hub import DatasetCard
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        card = DatasetCard.load(repo_id, repo_type="dataset", revision=revision, token=token)
    except (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError):
        return {}
    meta = card.data.to_dict().get(CODES_META_KEY)
    return dict(meta) if isinstance(meta, dict) else {}


def _check_meta(meta: dict[str, Any], dataset: datasets.Dataset, source: str) -> dict[str, Any]:
    missing = [key for key in REQUIRED_META_KEYS if key not in meta]
    if missing:
        raise ValueError(
            f"{source} is not a VCQ code set: its metadata lacks {', '.join(missing)} (a vcq_meta.json, the dataset's "
            f"info description or its dataset card's `{CODES_META_KEY}`). Extract codes with "
            "examples/extract_codes.py, or push them with vcq_hf.data.codes.push_codes_to_hub."
        )
    if "codes" not in dataset.column_names:
        raise ValueError(f"{source} has no 'codes' column; its columns are {dataset.column_names}.")
    length = getattr(dataset.features["codes"], "length", -1)
    if length not in (-1, None) and length != len(meta["codebook_sizes"]):
        raise ValueError(
            f"{source}: the 'codes' column holds {length} tokens per image but the schedule has "
            f"{len(meta['codebook_sizes'])} positions."
        )
    return meta


def load_codes_dataset(
    codes: str | os.PathLike,
    split: str = "train",
    revision: str | None = None,
    token: str | bool | None = None,
) -> tuple[datasets.Dataset, dict[str, Any]]:
    """Load a code set and its metadata (schedule, class names, tokenizer reference).

    Args:
        codes (`str` or `os.PathLike`): a folder written by `examples/extract_codes.py` or by
            `Dataset.save_to_disk` (metadata from `vcq_meta.json`, else the dataset's info), or a Hub dataset id
            (metadata from the dataset's info, else its dataset card).
        split (`str`, *optional*, defaults to `"train"`): the split of a Hub dataset.
        revision (`str`, *optional*): the revision of a Hub dataset.
        token (`str` or `bool`, *optional*): Hub token.

    Returns:
        `tuple[datasets.Dataset, dict]`: the dataset and its metadata.

    Raises:
        `ValueError`: the data set carries no code-set metadata, or its codes do not match its schedule.
    """
    import datasets

    path = Path(codes)
    if path.is_dir():
        dataset = datasets.load_from_disk(str(path))
        if isinstance(dataset, datasets.DatasetDict):
            if split not in dataset:
                raise ValueError(f"{path} holds the splits {list(dataset)}, not {split!r}.")
            dataset = dataset[split]
        meta_file = path / META_FILENAME
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else meta_from_info(dataset)
        return dataset, _check_meta(meta, dataset, str(path))
    if os.path.exists(path):
        raise ValueError(f"{path} is a file; a code set is a folder (save_to_disk) or a Hub dataset id.")
    logger.info("Loading the code set %s (split %s) with datasets.load_dataset", codes, split)
    dataset = datasets.load_dataset(str(codes), split=split, revision=revision, token=token)
    meta = meta_from_info(dataset) or _meta_from_card(str(codes), revision, token)
    return dataset, _check_meta(meta, dataset, f"The Hub dataset {codes}")


def push_codes_to_hub(
    dataset: datasets.Dataset,
    meta: dict[str, Any],
    repo_id: str,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Push a code set to the Hub with its metadata in the dataset card's YAML (`vcq_meta:`), since `push_to_hub`
    keeps only the features and split sizes of the dataset's info; `load_codes_dataset(repo_id)` reads it back.

    Returns:
        `str`: the repository id.
    """
    from huggingface_hub import DatasetCard

    _check_meta(meta, dataset, "the code set to push")
    dataset.push_to_hub(repo_id, private=private, token=token, commit_message=commit_message)
    card = DatasetCard.load(repo_id, repo_type="dataset", token=token)
    card.data[CODES_META_KEY] = meta
    card.push_to_hub(repo_id, repo_type="dataset", token=token, commit_message="Add the VCQ code-set metadata")
    return repo_id
