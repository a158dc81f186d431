"""Real image data sets built offline (Fashion-MNIST, colour emoji, digits) and a loader for any image dataset.

- `builtin`: the built-in sets, made from files that operating-system packages install (nothing is downloaded),
  cached with `Dataset.save_to_disk`: `load_builtin_dataset`, `builtin_split_counts`.
- `imagefolder`: `build_imagefolder` writes a built-in set as an imagefolder; `load_image_dataset` loads any image
  classification dataset (built-in name, imagefolder, Hub id or local dataset folder) with "image" and "label".
- `cli`: `vcq data build NAME --output DIR` and `vcq data info NAME`.

Importing this package costs numpy only; `datasets`, PIL and tqdm are imported by the functions that need them.
"""

from .builtin import (
    BUILTIN_DATASETS,
    builtin_split_counts,
    default_cache_dir,
    emoji_entries,
    encode_png,
    load_builtin_dataset,
    render_emoji,
)
from .imagefolder import CLASSES_FILENAME, METADATA_FILENAME, build_imagefolder, class_dir_names, load_image_dataset


__all__ = [
    "BUILTIN_DATASETS",
    "CLASSES_FILENAME",
    "METADATA_FILENAME",
    "build_imagefolder",
    "builtin_split_counts",
    "class_dir_names",
    "default_cache_dir",
    "emoji_entries",
    "encode_png",
    "load_builtin_dataset",
    "load_image_dataset",
    "render_emoji",
]
