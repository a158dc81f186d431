"""Image-classification datasets on disk: write a built-in set as an imagefolder, load any dataset with "image" and
"label" columns (built-in name, imagefolder, Hub id or local dataset folder).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .builtin import (
    _SPECS,
    _as_rgb_png,
    _check_resolution,
    _check_sources,
    _get_spec,
    _resolve_options,
    load_builtin_dataset,
)


if TYPE_CHECKING:
    import datasets


__all__ = ["CLASSES_FILENAME", "METADATA_FILENAME", "build_imagefolder", "class_dir_names", "load_image_dataset"]

# Files the metadata JSON and class list of an exported imagefolder use.
CLASSES_FILENAME = "classes.txt"
METADATA_FILENAME = "vcq_data.json"


def class_dir_names(class_names: Sequence[str]) -> list[str]:
    """Folder names for classes in an imagefolder: "<label>_<slug>", zero-padded so that sorting keeps label order.

    `datasets`' imagefolder numbers labels by sorted folder name, so this prefix makes its label ids equal ours.
    Example: ["T-shirt/top", "Trouser"] -> ["0_T-shirt-top", "1_Trouser"].
    """
    width = len(str(max(len(class_names) - 1, 0)))
    names = []
    for label, class_name in enumerate(class_names):
        slug = re.sub(r"[^A-Za-z0-9]+", "-", class_name.replace("&", "and")).strip("-")
        names.append(f"{label:0{width}d}_{slug}" if slug else f"{label:0{width}d}")
    return names


def build_imagefolder(
    name: str,
    output_dir: str | os.PathLike,
    resolution: int | None = None,
    splits: Sequence[str] | None = None,
    *,
    overwrite: bool = False,
    cache_dir: str | os.PathLike | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Write a built-in data set as an imagefolder that `datasets.load_dataset("imagefolder", data_dir=...)` reads.

    Layout: `output_dir/<split>/<label>_<class slug>/<index>.png` (RGB PNGs; `<index>` is the row in the split, the
    label prefix keeps imagefolder's label ids equal to ours), `output_dir/classes.txt` (one human-readable class
    name per line, in label order) and `output_dir/vcq_data.json` (source, licence, options, counts).
    `load_image_dataset(train_data_dir=output_dir)` restores the human-readable class names.

    Args:
        name (`str`): one of `BUILTIN_DATASETS`.
        output_dir (`str` or `os.PathLike`): the folder to write; it must be empty or absent unless `overwrite`.
        resolution (`int`, *optional*): image side (default: native size).
        splits (`Sequence[str]`, *optional*): splits to write; default: all ("train", "validation", "test" for
            fashion-mnist; "train", "test" otherwise). "train_full" is refused: it is train + validation, and
            imagefolder would not recognise the folder name as a split.
        overwrite (`bool`, *optional*, defaults to `False`): replace the split folders in a non-empty `output_dir`
            that an earlier build wrote (it holds `vcq_data.json`); any other non-empty folder is refused. Each split
            is written beside its folder and swapped in when complete, and a second concurrent build into the same
            `output_dir` fails at once (`FolderLockedError`) instead of mixing its files in.
        cache_dir (`str` or `os.PathLike`, *optional*): cache for the built splits (see `load_builtin_dataset`).
        **options: the data set's options (see `load_builtin_dataset`).

    Returns:
        `dict`: the metadata also written to `vcq_data.json`.
    """
    spec = _get_spec(name)
    splits = list(spec.export_splits if splits is None else splits)
    if not splits:
        raise ValueError("splits must name at least one split.")
    for split in splits:
        if split == "train_full":
            raise ValueError(
                "The 'train_full' split cannot be written as an imagefolder split (it is train + validation and "
                "imagefolder does not recognise the folder name); write 'train' and 'validation' instead."
            )
        if split not in spec.export_splits:
            raise ValueError(
                f"Unknown split {split!r} for {spec.name!r}; allowed splits: {', '.join(spec.export_splits)}."
            )
    if len(set(splits)) != len(splits):
        raise ValueError(f"splits has duplicates: {splits}.")
    _check_resolution(resolution)
    resolved_options = _resolve_options(spec, options)
    _check_sources(spec)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"output_dir {output_dir} exists and is not a directory.")
    from vcq_hf.training_utils.files import atomic_write_json, atomic_write_text, folder_lock, replace_folder

    created = not output_dir.exists()
    try:
        # One writer per folder: a second concurrent build fails at once instead of interleaving its files.
        with folder_lock(output_dir, what="another `vcq data build`"):
            _check_build_target(output_dir, overwrite, created)
            metadata = _write_imagefolder(
                spec, output_dir, splits, resolution, resolved_options, options, cache_dir, replace_folder
            )
            atomic_write_text(output_dir / CLASSES_FILENAME, "".join(f"{name}\n" for name in metadata["class_names"]))
            atomic_write_json(output_dir / METADATA_FILENAME, metadata)
    except BaseException:
        if created and output_dir.is_dir() and not any(output_dir.iterdir()):
            output_dir.rmdir()
        raise
    return metadata


def _check_build_target(output_dir: Path, overwrite: bool, created: bool) -> None:
    """A build may write into a new or empty folder, or with `overwrite` into a folder an earlier build wrote."""
    if created:
        return
    entries = list(output_dir.iterdir())
    if not entries:
        return
    if not overwrite:
        raise FileExistsError(f"output_dir {output_dir} is not empty; pass overwrite=True (--overwrite) to replace.")
    if not (output_dir / METADATA_FILENAME).is_file():
        raise FileExistsError(
            f"output_dir {output_dir} is not empty and was not written by `vcq data build` (it has no "
            f"{METADATA_FILENAME}); refusing to replace anything in it. Choose an empty or new folder."
        )


def _write_imagefolder(
    spec, output_dir: Path, splits, resolution, resolved_options, options, cache_dir, replace_folder
) -> dict[str, Any]:
    """Write each split into a temporary folder beside its target and swap it in when complete."""
    import datasets
    from tqdm.auto import tqdm

    split_info: dict[str, Any] = {}
    class_names: list[str] = []
    for split in splits:
        dataset = load_builtin_dataset(spec.name, split, resolution, cache_dir=cache_dir, **options)
        class_names = dataset.features["label"].names
        folders = class_dir_names(class_names)
        split_dir = output_dir / split
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{split}.build-", dir=output_dir))
        try:
            for folder in folders:
                (tmp_dir / folder).mkdir(parents=True, exist_ok=True)
            width = max(5, len(str(len(dataset) - 1)))
            labels = np.asarray(dataset["label"])
            stored = dataset.cast_column("image", datasets.Image(decode=False))
            for row, example in enumerate(tqdm(stored, desc=f"writing {split}", disable=None)):
                path = tmp_dir / folders[example["label"]] / f"{row:0{width}d}.png"
                path.write_bytes(_as_rgb_png(example["image"]["bytes"]))
            counts = np.bincount(labels, minlength=len(class_names)).tolist()
            split_info[split] = {"num_images": len(dataset), "per_class": dict(zip(class_names, counts))}
            # Empty class folders are invisible to imagefolder; drop them so the layout holds only images.
            for folder in folders:
                if not any((tmp_dir / folder).iterdir()):
                    (tmp_dir / folder).rmdir()
            replace_folder(tmp_dir, split_dir)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return {
        "name": spec.name,
        "description": spec.title,
        "notes": spec.notes,
        "license": spec.license,
        "homepage": spec.homepage,
        "citation": spec.citation,
        "sources": [str(path) for path in spec.sources],
        "resolution": int(resolution) if resolution is not None else spec.native_resolution,
        "options": resolved_options,
        "class_names": list(class_names),
        "class_dirs": class_dir_names(class_names),
        "splits": split_info,
    }


# Column names tried, in order, when a dataset has several candidate image or label columns.
_IMAGE_COLUMN_NAMES = ("image", "img", "images", "picture", "photo", "pixel_values")
_LABEL_COLUMN_NAMES = ("label", "labels", "class", "class_label", "fine_label", "target", "category")


def _pick_column(dataset, kind: str, preferred: tuple[str, ...], matches) -> str:
    candidates = [column for column, feature in dataset.features.items() if matches(feature)]
    for column in preferred:
        if column in candidates:
            return column
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(f"{column} ({type(feature).__name__})" for column, feature in dataset.features.items())
    which = f"several {kind} columns ({', '.join(candidates)})" if candidates else f"no {kind} column"
    raise ValueError(f"Cannot tell the {kind} column: found {which} among: {found}. Pass {kind}_column=... .")


def _normalise_columns(dataset, image_column: str | None, label_column: str | None):
    import datasets

    def is_image(feature) -> bool:
        return isinstance(feature, datasets.Image)

    def is_label(feature) -> bool:
        return isinstance(feature, datasets.ClassLabel) or (
            isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint"))
        )

    for column, kind in ((image_column, "image"), (label_column, "label")):
        if column is not None and column not in dataset.column_names:
            raise ValueError(f"{kind}_column {column!r} is not a column; columns: {', '.join(dataset.column_names)}.")
    if image_column is None:
        image_column = _pick_column(dataset, "image", _IMAGE_COLUMN_NAMES, is_image)
    elif not is_image(dataset.features[image_column]):
        raise ValueError(f"image_column {image_column!r} is {dataset.features[image_column]}, not a datasets.Image.")
    if label_column is None:
        strict = [c for c, f in dataset.features.items() if isinstance(f, datasets.ClassLabel)]
        label_column = strict[0] if len(strict) == 1 else _pick_column(dataset, "label", _LABEL_COLUMN_NAMES, is_label)
    dataset = dataset.select_columns([image_column, label_column])
    if image_column != "image" or label_column != "label":
        # Two-step rename so that e.g. {"label": "image"} swaps cannot collide.
        dataset = dataset.rename_columns({image_column: "__vcq_image", label_column: "__vcq_label"})
        dataset = dataset.rename_columns({"__vcq_image": "image", "__vcq_label": "label"})
    label_feature = dataset.features["label"]
    if isinstance(label_feature, datasets.Value):
        if label_feature.dtype == "string":
            dataset = dataset.class_encode_column("label")
        elif label_feature.dtype.startswith(("int", "uint")):
            labels = np.asarray(dataset["label"])
            if len(labels) and labels.min() < 0:
                raise ValueError(f"label column {label_column!r} has negative values; labels must be >= 0.")
            num_classes = int(labels.max()) + 1 if len(labels) else 1
            dataset = dataset.cast_column("label", datasets.ClassLabel(names=[str(i) for i in range(num_classes)]))
        else:
            raise ValueError(f"label column {label_column!r} has dtype {label_feature.dtype}; need int or string.")
    elif not isinstance(label_feature, datasets.ClassLabel):
        raise ValueError(f"label column {label_column!r} is {label_feature}; need a ClassLabel, int or string.")
    return dataset.cast_column("image", datasets.Image(mode="RGB"))


def _restore_class_names(dataset, folder: Path):
    """Map imagefolder labels ("<label>_<slug>" folder names) back to the names in `folder/classes.txt`."""
    import datasets

    classes_file = folder / CLASSES_FILENAME
    feature = dataset.features["label"]
    if not classes_file.is_file() or not isinstance(feature, datasets.ClassLabel):
        return dataset
    class_names = classes_file.read_text().splitlines()
    expected = class_dir_names(class_names)
    if feature.names == expected:
        return dataset.cast_column("label", datasets.ClassLabel(names=class_names))
    if set(feature.names) <= set(expected):  # some classes have no image at all (e.g. a --limit build)
        mapping = np.array([expected.index(folder_name) for folder_name in feature.names], dtype=np.int64)
        features = datasets.Features({**dataset.features, "label": datasets.ClassLabel(names=class_names)})
        return dataset.map(
            lambda batch: {"label": mapping[np.asarray(batch["label"], dtype=np.int64)].tolist()},
            batched=True,
            features=features,
            desc="restoring class names",
        )
    return dataset


def _resize_center_crop(dataset, resolution: int):
    from PIL import Image

    def transform(example):
        image = example["image"]
        scale = resolution / min(image.size)
        size = (max(resolution, round(image.width * scale)), max(resolution, round(image.height * scale)))
        resample = Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS
        image = image.resize(size, resample)
        left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
        return {"image": image.crop((left, top, left + resolution, top + resolution))}

    return dataset.map(transform, features=dataset.features, desc=f"resizing to {resolution}px")


def load_image_dataset(
    dataset_name: str | None = None,
    train_data_dir: str | os.PathLike | None = None,
    split: str = "train",
    resolution: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    *,
    image_column: str | None = None,
    label_column: str | None = None,
) -> datasets.Dataset:
    """Load any image classification dataset a training script is given, with columns "image" and "label".

    Sources, in this order:
    1. `dataset_name` is a built-in name ("fashion-mnist", "emoji", "digits"): `load_builtin_dataset`.
    2. `train_data_dir`: a local imagefolder (`datasets.load_dataset("imagefolder", data_dir=...)`); for a folder
       `build_imagefolder` wrote, the human-readable class names of its `classes.txt` are restored.
    3. `dataset_name` is anything else: `datasets.load_dataset(dataset_name)`, a Hub id (read from the local cache
       when offline) or a local dataset folder.

    Column choice: the image column is `image_column` if given, else the column called "image" (or "img", "images",
    "picture", "photo", "pixel_values") holding a `datasets.Image`, else the only `datasets.Image` column. The label
    column is `label_column` if given, else the only `ClassLabel` column, else the first of "label", "labels",
    "class", "class_label", "fine_label", "target", "category" with an int or `ClassLabel` feature, else the only such
    column. Int labels become a `ClassLabel` named "0".."max", string labels are class-encoded (sorted names). Other
    columns are dropped; images are decoded as RGB. A `ValueError` lists the columns when no choice is possible.

    Args:
        dataset_name (`str`, *optional*): a built-in name, a Hub dataset id or a local dataset folder.
        train_data_dir (`str` or `os.PathLike`, *optional*): a local imagefolder. Give exactly one of the two.
        split (`str`, *optional*, defaults to `"train"`): the split to load.
        resolution (`int`, *optional*): resize to `resolution` x `resolution`. Built-in sets are built at that size
            (and cached); other datasets have their shorter side resized (bicubic up, Lanczos down) and are
            centre-cropped with `Dataset.map`, which writes a processed copy next to the dataset's cache: for large
            datasets prefer `None` and let the image processor resize on the fly.
        cache_dir (`str` or `os.PathLike`, *optional*): cache for built-in sets, or `datasets`' `cache_dir`.
        image_column (`str`, *optional*): the image column of a non-built-in dataset.
        label_column (`str`, *optional*): the label column of a non-built-in dataset.

    Returns:
        `datasets.Dataset` with columns "image" (`datasets.Image(mode="RGB")`) and "label" (`datasets.ClassLabel`).
    """
    if (dataset_name is None) == (train_data_dir is None):
        raise ValueError(
            "Give exactly one of dataset_name (a built-in name, Hub id or dataset folder) and train_data_dir (an "
            f"imagefolder); got dataset_name={dataset_name!r}, train_data_dir={train_data_dir!r}."
        )
    _check_resolution(resolution)
    if dataset_name in _SPECS:
        if image_column is not None or label_column is not None:
            raise ValueError("image_column/label_column do not apply to built-in datasets (always image/label).")
        return load_builtin_dataset(dataset_name, split, resolution, cache_dir=cache_dir)

    import datasets

    cache_dir = str(cache_dir) if cache_dir is not None else None
    if train_data_dir is not None:
        folder = Path(train_data_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"train_data_dir {folder} is not a directory.")
        try:
            dataset = datasets.load_dataset("imagefolder", data_dir=str(folder), split=split, cache_dir=cache_dir)
        except (
            ValueError,
            FileNotFoundError,
        ) as err:  # datasets says e.g. 'Instruction "train" corresponds to no data!'
            raise ValueError(
                f"train_data_dir {folder} has no images for split {split!r} ({err}); expected image files in "
                f"{folder}/<class>/ or {folder}/{split}/<class>/."
            ) from err
    else:
        if not isinstance(dataset_name, str) or not dataset_name:
            raise ValueError(f"dataset_name must be a non-empty string, got {dataset_name!r}.")
        folder = Path(dataset_name) if Path(dataset_name).is_dir() else None
        dataset = datasets.load_dataset(dataset_name, split=split, cache_dir=cache_dir)
    dataset = _normalise_columns(dataset, image_column, label_column)
    if folder is not None:
        dataset = _restore_class_names(dataset, folder)
    if resolution is not None:
        dataset = _resize_center_crop(dataset, int(resolution))
    return dataset
