"""Built-in real image data sets, built offline from files that operating-system packages install.

Nothing here downloads anything. The built-in data sets come from files that operating-system packages install:

| name | source (Debian package) | images | classes | native size | licence |
| --- | --- | ---: | ---: | ---: | --- |
| `fashion-mnist` | idx files in /usr/share/datasets/fashion-mnist (`dataset-fashion-mnist`) | 70,000 | 10 | 28 | MIT |
| `emoji` | NotoColorEmoji.ttf (`fonts-noto-color-emoji`) + emoji-test.txt (`unicode-data`) | 3,655 | 9 | 136 | Apache-2.0 |
| `digits` | scikit-learn's bundled `load_digits` (`python3-sklearn` or `pip install scikit-learn`) | 1,797 | 10 | 8 | BSD-3-Clause |

Splits:
- `fashion-mnist`: `train` (the official 60k train split minus a seeded, class-stratified `validation` carve-out of
  5,000 images), `validation`, `test` (the official 10k test split: keep it for the final evaluation only, never for
  tuning) and `train_full` (all 60k official train images = `train` + `validation`).
- `emoji`: `train` / `test`, split by *base* emoji (seeded, stratified by group), so the skin-tone variants of an emoji
  are always in the same split as the emoji itself. Labels are the 9 Unicode emoji groups ("Component" is skipped).
  `skin_tones=False` keeps only the 1,870 emoji without a skin-tone modifier.
- `digits`: `train` / `test` (seeded, stratified).

Every built-in split is a `datasets.Dataset` with the columns "image" (`datasets.Image(mode="RGB")`: PIL RGB images
when read) and "label" (`datasets.ClassLabel` with human-readable names). Built splits are cached with
`Dataset.save_to_disk` under `$VCQ_HF_DATA_CACHE`, else `$HF_DATASETS_CACHE/vcq_hf`, else `~/.cache/vcq_hf/datasets`,
keyed by name, split, resolution, options and the source files' size and modification time.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..utils import logging


if TYPE_CHECKING:
    import datasets


logger = logging.get_logger(__name__)

# Bump when the stored images of a built-in data set change, so stale caches are not reused.
_CACHE_FORMAT_VERSION = 1
_MAX_RESOLUTION = 2048

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST_FILE = Path("/usr/share/unicode/emoji/emoji-test.txt")
# NotoColorEmoji is a CBDT bitmap font: its only strike is loaded at size 109 and gives 136x128 glyph bitmaps.
_EMOJI_FONT_SIZE = 109
_EMOJI_NATIVE_SIZE = 136
_SKIN_TONE_MODIFIERS = frozenset(range(0x1F3FB, 0x1F400))  # U+1F3FB..U+1F3FF, Fitzpatrick types 1-2 .. 6
_EMOJI_SKIPPED_GROUPS = ("Component",)


@dataclass(frozen=True)
class _BuiltinSpec:
    """Static description of one built-in data set."""

    name: str
    title: str
    splits: tuple[str, ...]
    export_splits: tuple[str, ...]
    native_resolution: int
    default_options: dict[str, Any]
    sources: tuple[Path, ...]
    install_hint: str
    license: str
    homepage: str
    citation: str = ""
    notes: str = ""


_SPECS: dict[str, _BuiltinSpec] = {
    "fashion-mnist": _BuiltinSpec(
        name="fashion-mnist",
        title="Fashion-MNIST: 70,000 28x28 grayscale images of 10 kinds of clothing (Zalando Research)",
        splits=("train", "validation", "test", "train_full"),
        export_splits=("train", "validation", "test"),
        native_resolution=28,
        default_options={"validation_size": 5000, "seed": 0, "limit": None},
        sources=tuple(
            FASHION_MNIST_DIR / f"{prefix}-{kind}-ubyte.gz"
            for prefix in ("train", "t10k")
            for kind in ("images-idx3", "labels-idx1")
        ),
        install_hint="install the Debian package dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`)",
        license="MIT",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        citation="Xiao, Rasul and Vollgraf, Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning "
        "Algorithms, arXiv:1708.07747, 2017.",
        notes="'train' is the official train split minus a seeded class-stratified 'validation' carve-out; 'test' is "
        "the official test split, for final evaluation only (never tune on it); 'train_full' is the whole official "
        "train split.",
    ),
    "emoji": _BuiltinSpec(
        name="emoji",
        title="Colour emoji rendered from Noto Color Emoji, labelled by Unicode emoji group",
        splits=("train", "test"),
        export_splits=("train", "test"),
        native_resolution=_EMOJI_NATIVE_SIZE,
        default_options={"skin_tones": True, "test_size": 0.1, "seed": 0, "limit": None},
        sources=(EMOJI_FONT, EMOJI_TEST_FILE),
        install_hint="install the Debian packages fonts-noto-color-emoji and unicode-data "
        "(`apt-get install fonts-noto-color-emoji unicode-data`)",
        license="Apache-2.0 (Noto Color Emoji images)",
        homepage="https://github.com/googlefonts/noto-emoji",
        notes="Fully-qualified emoji from emoji-test.txt, group 'Component' skipped; alpha composited on white; split "
        "by base emoji so skin-tone variants never straddle train and test.",
    ),
    "digits": _BuiltinSpec(
        name="digits",
        title="scikit-learn digits: 1,797 8x8 grayscale hand-written digits (UCI optical recognition data)",
        splits=("train", "test"),
        export_splits=("train", "test"),
        native_resolution=8,
        default_options={"test_size": 0.2, "seed": 0, "limit": None},
        sources=(),
        install_hint="install scikit-learn (`pip install scikit-learn` or the Debian package python3-sklearn)",
        license="BSD-3-Clause (scikit-learn); data CC BY 4.0 (UCI)",
        homepage="https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html",
    ),
}

BUILTIN_DATASETS: tuple[str, ...] = tuple(_SPECS)


# ----------------------------------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------------------------------


def _get_spec(name: str) -> _BuiltinSpec:
    if not isinstance(name, str) or name not in _SPECS:
        close = difflib.get_close_matches(str(name).lower(), BUILTIN_DATASETS, n=3, cutoff=0.4)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"Unknown built-in dataset {name!r}; known names: {', '.join(BUILTIN_DATASETS)}.{hint}")
    return _SPECS[name]


def _check_split(spec: _BuiltinSpec, split: str) -> None:
    if split not in spec.splits:
        raise ValueError(f"Unknown split {split!r} for {spec.name!r}; allowed splits: {', '.join(spec.splits)}.")


def _check_resolution(resolution: int | None) -> None:
    if resolution is None:
        return
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)):
        raise ValueError(f"resolution must be an int or None, got {resolution!r} ({type(resolution).__name__}).")
    if not 1 <= resolution <= _MAX_RESOLUTION:
        raise ValueError(f"resolution = {resolution} is out of range; it must be in [1, {_MAX_RESOLUTION}].")


def _check_sources(spec: _BuiltinSpec) -> None:
    missing = [str(path) for path in spec.sources if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"The {spec.name!r} dataset needs {', '.join(missing)}, which is missing: {spec.install_hint}."
        )


def _resolve_options(spec: _BuiltinSpec, options: dict[str, Any]) -> dict[str, Any]:
    """Fill in defaults and check the options of one built-in data set."""
    unknown = sorted(set(options) - set(spec.default_options))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {', '.join(unknown)} for {spec.name!r}; allowed options: "
            f"{', '.join(sorted(spec.default_options))}."
        )
    resolved = {**spec.default_options, **options}
    for key, value in resolved.items():
        if key == "seed":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"seed must be a non-negative int, got {value!r}.")
        elif key == "limit":
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
            ):
                raise ValueError(f"limit = {value!r} is invalid; it must be None or an int >= 1.")
        elif key == "skin_tones":
            if not isinstance(value, bool):
                raise ValueError(f"skin_tones must be True or False, got {value!r}.")
        elif key == "test_size":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise ValueError(f"test_size = {value!r} is out of range; it must be a fraction in (0, 1).")
            resolved[key] = float(value)
        elif key == "validation_size":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= 59_990:
                raise ValueError(f"validation_size = {value!r} is out of range; it must be an int in [1, 59990].")
    return {key: (int(value) if isinstance(value, np.integer) else value) for key, value in resolved.items()}


# ----------------------------------------------------------------------------------------------------------------------
# Splitting helpers
# ----------------------------------------------------------------------------------------------------------------------


def _stratified_holdout(labels: np.ndarray, num_holdout: int, seed: int) -> np.ndarray:
    """Boolean mask selecting `num_holdout` items, class proportions kept (largest-remainder quotas), seeded."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    exact = num_holdout * counts / counts.sum()
    quotas = np.floor(exact).astype(np.int64)
    remainder = num_holdout - int(quotas.sum())
    if remainder > 0:
        # Stable sort: ties go to the lower class id, so the quotas are deterministic.
        quotas[np.argsort(-(exact - quotas), kind="stable")[:remainder]] += 1
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for cls, quota in zip(classes, quotas):
        members = np.flatnonzero(labels == cls)
        mask[rng.permutation(members)[:quota]] = True
    return mask


def _balanced_subset(labels: np.ndarray, limit: int | None) -> np.ndarray:
    """Positions of at most `limit` items, taken round-robin over the classes, returned in their original order."""
    positions = np.arange(len(labels))
    if limit is None or limit >= len(labels):
        return positions
    rank = np.zeros(len(labels), dtype=np.int64)
    for cls in np.unique(labels):
        members = labels == cls
        rank[members] = np.arange(members.sum())
    order = np.lexsort((labels, rank))  # by rank within the class, then by class
    return np.sort(order[:limit])


@dataclass
class _SplitIndex:
    """Which source items (ids) and labels make up each split of a built-in data set, before any image is made."""

    class_names: list[str]
    item_ids: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------------
# Fashion-MNIST
# ----------------------------------------------------------------------------------------------------------------------


def _read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Read a gzipped idx file (the MNIST format): big-endian magic, dimensions, then uint8 data."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expected_magic:
        raise ValueError(
            f"{path} is not an idx file of the expected kind (magic {magic:#010x}, expected {expected_magic:#010x})."
        )
    ndim = magic & 0xFF
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {data.size} values.")
    return data.reshape(shape)


@functools.lru_cache(maxsize=2)
def _fashion_mnist_images(prefix: str) -> np.ndarray:
    return _read_idx(FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz", 0x00000803)


def _fashion_mnist_index(validation_size: int, seed: int) -> _SplitIndex:
    train_labels = _read_idx(FASHION_MNIST_DIR / "train-labels-idx1-ubyte.gz", 0x00000801).astype(np.int64)
    test_labels = _read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz", 0x00000801).astype(np.int64)
    num_train = len(train_labels)
    validation = _stratified_holdout(train_labels, validation_size, seed)
    index = _SplitIndex(class_names=list(FASHION_MNIST_CLASSES))
    # Item ids: 0..59,999 are official train images, 60,000.. official test images.
    index.item_ids["train"] = np.flatnonzero(~validation)
    index.item_ids["validation"] = np.flatnonzero(validation)
    index.item_ids["train_full"] = np.arange(num_train)
    index.item_ids["test"] = num_train + np.arange(len(test_labels))
    all_labels = np.concatenate([train_labels, test_labels])
    for split, ids in index.item_ids.items():
        index.labels[split] = all_labels[ids]
    return index


def _fashion_mnist_arrays(item_ids: np.ndarray) -> Iterator[np.ndarray]:
    train = _fashion_mnist_images("train")
    test = _fashion_mnist_images("t10k") if (item_ids >= len(train)).any() else None
    for item in item_ids:
        yield train[item] if item < len(train) else test[item - len(train)]


# ----------------------------------------------------------------------------------------------------------------------
# Emoji
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmojiEntry:
    """One fully-qualified emoji of emoji-test.txt.

    Args:
        codepoints (`tuple[int, ...]`): the code point sequence.
        group (`str`): the Unicode emoji group (the class).
        name (`str`): the CLDR short name, e.g. "waving hand: medium skin tone".
        base (`int`): index (in the list `emoji_entries` returns) of the emoji without skin-tone modifiers that this
            entry is a variant of; an entry without modifiers is its own base.
    """

    codepoints: tuple[int, ...]
    group: str
    name: str
    base: int

    @property
    def text(self) -> str:
        return "".join(chr(codepoint) for codepoint in self.codepoints)

    @property
    def has_skin_tone(self) -> bool:
        return not _SKIN_TONE_MODIFIERS.isdisjoint(self.codepoints)


@functools.lru_cache(maxsize=4)
def _parse_emoji_test(path: str, mtime_ns: int) -> tuple[EmojiEntry, ...]:
    entries: list[EmojiEntry] = []
    group = None
    last_base = None
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("# group:"):
                group = line.split(":", 1)[1].strip()
                last_base = None
                continue
            if not line.strip() or line.startswith("#"):
                continue
            fields, _, comment = line.partition("#")
            codepoints, _, status = fields.partition(";")
            if status.strip() != "fully-qualified" or group is None or group in _EMOJI_SKIPPED_GROUPS:
                continue
            # The comment is "<emoji> E<version> <name>".
            name = comment.strip().split(" ", 2)[-1]
            codes = tuple(int(code, 16) for code in codepoints.split())
            if _SKIN_TONE_MODIFIERS.isdisjoint(codes):
                base = len(entries)
                last_base = base
            else:
                # emoji-test.txt lists every skin-tone variant right after its base emoji (CLDR order); mixed-tone
                # sequences such as "handshake: light skin tone, dark skin tone" have other code points than
                # their base ("handshake" U+1F91D), so the name is what ties them together.
                if last_base is None or name.split(":")[0] != entries[last_base].name.split(":")[0]:
                    raise ValueError(f"{path}: cannot find the base emoji of {name!r} ({codepoints.strip()}).")
                base = last_base
            entries.append(EmojiEntry(codepoints=codes, group=group, name=name, base=base))
    if not entries:
        raise ValueError(f"{path} holds no fully-qualified emoji; is it a Unicode emoji-test.txt?")
    return tuple(entries)


def emoji_entries(path: str | os.PathLike | None = None) -> tuple[EmojiEntry, ...]:
    """The fully-qualified emoji of emoji-test.txt in file order, without the "Component" group.

    Args:
        path (`str` or `os.PathLike`, *optional*, defaults to /usr/share/unicode/emoji/emoji-test.txt):
            the emoji-test.txt file (Debian package unicode-data).

    Returns:
        `tuple[EmojiEntry, ...]`: 3,655 entries for Unicode 15.0 (1,870 of them without a skin-tone modifier).
    """
    path = Path(path) if path is not None else EMOJI_TEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {_SPECS['emoji'].install_hint}.")
    return _parse_emoji_test(str(path), path.stat().st_mtime_ns)


def _emoji_index(skin_tones: bool, test_size: float, seed: int) -> _SplitIndex:
    entries = emoji_entries()
    class_names = list(dict.fromkeys(entry.group for entry in entries))
    labels = np.array([class_names.index(entry.group) for entry in entries], dtype=np.int64)
    bases = np.array(sorted({entry.base for entry in entries}), dtype=np.int64)
    # Split the base emoji (stratified by group); every variant follows its base.
    test_bases = bases[_stratified_holdout(labels[bases], round(test_size * len(bases)), seed)]
    in_test = np.isin([entry.base for entry in entries], test_bases)
    keep = np.array([skin_tones or not entry.has_skin_tone for entry in entries])
    index = _SplitIndex(class_names=class_names)
    index.item_ids["train"] = np.flatnonzero(keep & ~in_test)
    index.item_ids["test"] = np.flatnonzero(keep & in_test)
    for split, ids in index.item_ids.items():
        index.labels[split] = labels[ids]
    return index


@functools.lru_cache(maxsize=1)
def _emoji_font():
    from PIL import ImageFont

    return ImageFont.truetype(str(EMOJI_FONT), _EMOJI_FONT_SIZE, layout_engine=ImageFont.Layout.RAQM)


def render_emoji(text: str) -> np.ndarray:
    """Render one emoji (a code point sequence) from Noto Color Emoji, alpha composited on white.

    Args:
        text (`str`): the emoji, e.g. "\\U0001F44B\\U0001F3FD". Sequences (ZWJ, flags, skin tones) need Pillow with
            libraqm, which the wheels ship.

    Returns:
        `np.ndarray` of shape (136, 136, 3), uint8: the glyph (136x128) centred on a white square.
    """
    from PIL import Image, ImageDraw

    font = _emoji_font()
    left, top, right, bottom = font.getbbox(text)
    width, height = right - left, bottom - top
    if width > _EMOJI_NATIVE_SIZE or height > _EMOJI_NATIVE_SIZE:
        # More than one glyph: the font does not know this sequence and falls back to its parts.
        raise ValueError(f"{EMOJI_FONT.name} has no single glyph for {text!r} (rendered {width}x{height}).")
    canvas = Image.new("RGBA", (_EMOJI_NATIVE_SIZE, _EMOJI_NATIVE_SIZE), (255, 255, 255, 0))
    offset = ((_EMOJI_NATIVE_SIZE - width) // 2 - left, (_EMOJI_NATIVE_SIZE - height) // 2 - top)
    ImageDraw.Draw(canvas).text(offset, text, font=font, embedded_color=True)
    if canvas.getbbox() is None:
        raise ValueError(f"{EMOJI_FONT.name} rendered nothing for {text!r}.")
    white = Image.new("RGBA", canvas.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, canvas).convert("RGB"))


def _emoji_arrays(item_ids: np.ndarray) -> Iterator[np.ndarray]:
    entries = emoji_entries()
    for item in item_ids:
        yield render_emoji(entries[item].text)


# ----------------------------------------------------------------------------------------------------------------------
# Digits
# ----------------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _digits_arrays_all() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise FileNotFoundError(f"The 'digits' dataset needs scikit-learn: {_SPECS['digits'].install_hint}.") from err
    digits = load_digits()
    # Pixel values are counts in [0, 16].
    images = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return images, digits.target.astype(np.int64)


def _digits_index(test_size: float, seed: int) -> _SplitIndex:
    _, labels = _digits_arrays_all()
    test = _stratified_holdout(labels, round(test_size * len(labels)), seed)
    index = _SplitIndex(class_names=[str(digit) for digit in range(10)])
    index.item_ids["train"] = np.flatnonzero(~test)
    index.item_ids["test"] = np.flatnonzero(test)
    for split, ids in index.item_ids.items():
        index.labels[split] = labels[ids]
    return index


def _digits_arrays(item_ids: np.ndarray) -> Iterator[np.ndarray]:
    images, _ = _digits_arrays_all()
    for item in item_ids:
        yield images[item]


# ----------------------------------------------------------------------------------------------------------------------
# Images: resizing and PNG encoding
# ----------------------------------------------------------------------------------------------------------------------


def _build_index(spec: _BuiltinSpec, options: dict[str, Any]) -> _SplitIndex:
    if spec.name == "fashion-mnist":
        index = _fashion_mnist_index(options["validation_size"], options["seed"])
    elif spec.name == "emoji":
        index = _emoji_index(options["skin_tones"], options["test_size"], options["seed"])
    else:
        index = _digits_index(options["test_size"], options["seed"])
    for split in spec.splits:
        keep = _balanced_subset(index.labels[split], options["limit"])
        index.item_ids[split] = index.item_ids[split][keep]
        index.labels[split] = index.labels[split][keep]
    return index


def _source_arrays(name: str, item_ids: np.ndarray) -> Iterator[np.ndarray]:
    if name == "fashion-mnist":
        return _fashion_mnist_arrays(item_ids)
    if name == "emoji":
        return _emoji_arrays(item_ids)
    return _digits_arrays(item_ids)


def _resize(array: np.ndarray, resolution: int) -> np.ndarray:
    """Resize a square uint8 image: bicubic when upsampling, Lanczos when downsampling."""
    from PIL import Image

    if array.shape[0] == resolution and array.shape[1] == resolution:
        return array
    resample = Image.Resampling.BICUBIC if resolution > array.shape[0] else Image.Resampling.LANCZOS
    return np.asarray(Image.fromarray(array).resize((resolution, resolution), resample))


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(array: np.ndarray, compress_level: int = 6) -> bytes:
    """Encode a uint8 (H, W) grayscale or (H, W, 3) RGB array as PNG bytes.

    About twice as fast as `PIL.Image.save(format="PNG")` for small images (no per-row filter search), which matters
    for 60,000 Fashion-MNIST images.
    """
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"encode_png takes a uint8 (H, W) or (H, W, 3) array, got {array.dtype} {array.shape}.")
    height, width = array.shape[:2]
    color_type = 0 if array.ndim == 2 else 2
    rows = np.ascontiguousarray(array).reshape(height, -1)
    scanlines = np.concatenate([np.zeros((height, 1), dtype=np.uint8), rows], axis=1)  # filter type 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), compress_level))
        + _png_chunk(b"IEND", b"")
    )


def _as_rgb_png(png: bytes) -> bytes:
    """The PNG itself if it is 8-bit RGB already (emoji), else re-encoded as RGB (gray Fashion-MNIST, digits)."""
    from PIL import Image

    # IHDR follows the 8-byte signature: length, "IHDR", width, height, bit depth (byte 24), colour type (byte 25).
    if png[:8] == b"\x89PNG\r\n\x1a\n" and png[24] == 8 and png[25] == 2:
        return png
    with Image.open(io.BytesIO(png)) as image:
        return encode_png(np.asarray(image.convert("RGB")))


# ----------------------------------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """`$VCQ_HF_DATA_CACHE`, else `$HF_DATASETS_CACHE/vcq_hf`, else `~/.cache/vcq_hf/datasets`."""
    if os.environ.get("VCQ_HF_DATA_CACHE"):
        return Path(os.environ["VCQ_HF_DATA_CACHE"]).expanduser()
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"]).expanduser() / "vcq_hf"
    return Path.home() / ".cache" / "vcq_hf" / "datasets"


def _cache_path(spec: _BuiltinSpec, split: str, resolution: int, options: dict[str, Any], cache_dir: Path) -> Path:
    sources = [(str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in spec.sources]
    key = json.dumps(
        {"version": _CACHE_FORMAT_VERSION, "options": options, "sources": sources}, sort_keys=True, default=str
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / spec.name / f"{split}-{resolution}px-{digest}"


# ----------------------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------------------


def builtin_split_counts(name: str, **options: Any) -> dict[str, Any]:
    """Counts per split and class of a built-in data set, without making any image (fast).

    Args:
        name (`str`): one of `BUILTIN_DATASETS`.
        **options: the data set's options (see `load_builtin_dataset`).

    Returns:
        `dict` with "class_names" (`list[str]`) and "splits": split -> list of per-class counts in label order.
    """
    spec = _get_spec(name)
    options = _resolve_options(spec, options)
    _check_sources(spec)
    index = _build_index(spec, options)
    counts = {
        split: np.bincount(index.labels[split], minlength=len(index.class_names)).tolist() for split in spec.splits
    }
    return {"class_names": index.class_names, "splits": counts}


def load_builtin_dataset(
    name: str,
    split: str = "train",
    resolution: int | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    **options: Any,
) -> datasets.Dataset:
    """Load a real image data set built offline from locally installed files.

    Args:
        name (`str`):
            "fashion-mnist", "emoji" or "digits" (see the module docstring for sources and licences).
        split (`str`, *optional*, defaults to `"train"`):
            fashion-mnist: "train", "validation", "test" (official test split: final evaluation only) or
            "train_full"; emoji and digits: "train" or "test".
        resolution (`int`, *optional*):
            Side of the square output images. Defaults to the native size (28, 136 and 8). Upsampling is bicubic,
            downsampling Lanczos.
        cache_dir (`str` or `os.PathLike`, *optional*):
            Where built splits are cached (default: see `default_cache_dir`).
        use_cache (`bool`, *optional*, defaults to `True`):
            Reuse and write the cache. With `False` the split is built in memory and nothing is written.
        **options:
            Per data set: `seed` (`int`, defaults to 0) and `limit` (`int`, at most this many images per split,
            taken round-robin over the classes) for all; fashion-mnist `validation_size` (`int`, defaults to 5000);
            emoji `skin_tones` (`bool`, defaults to `True`) and `test_size` (`float`, defaults to 0.1); digits
            `test_size` (`float`, defaults to 0.2).

    Returns:
        `datasets.Dataset` with columns "image" (`datasets.Image(mode="RGB")`) and "label" (`datasets.ClassLabel`).

    Raises:
        `ValueError`: unknown name (with close matches), split, option, or a bad resolution.
        `FileNotFoundError`: the source files are missing; the message names the package to install.

    Examples:

    ```python
    >>> from vcq_hf.data import load_builtin_dataset

    >>> dataset = load_builtin_dataset("digits", split="test", resolution=16)
    >>> dataset.features["label"].names[:3], dataset[0]["image"].size
    (['0', '1', '2'], (16, 16))
    ```
    """
    spec = _get_spec(name)
    _check_split(spec, split)
    _check_resolution(resolution)
    options = _resolve_options(spec, options)
    _check_sources(spec)
    resolution = int(resolution) if resolution is not None else spec.native_resolution

    import datasets

    path = None
    if use_cache:
        cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        path = _cache_path(spec, split, resolution, options, cache_root)
        if (path / "dataset_info.json").is_file():
            logger.info("Loading %s/%s at %dpx from the cache %s", spec.name, split, resolution, path)
            return datasets.load_from_disk(str(path))
    logger.info(
        "Building %s/%s at %dpx from %s", spec.name, split, resolution, ", ".join(map(str, spec.sources)) or spec.name
    )

    from tqdm.auto import tqdm

    index = _build_index(spec, options)
    item_ids = index.item_ids[split]
    images = []
    arrays = _source_arrays(spec.name, item_ids)
    for array in tqdm(arrays, total=len(item_ids), desc=f"{spec.name}/{split} @ {resolution}px", disable=None):
        images.append({"bytes": encode_png(_resize(array, resolution), compress_level=1), "path": None})
    features = datasets.Features(
        {"image": datasets.Image(mode="RGB"), "label": datasets.ClassLabel(names=index.class_names)}
    )
    info = datasets.DatasetInfo(
        features=features,
        description=f"{spec.title}. Split {split!r}, {resolution}x{resolution}. {spec.notes}".strip(),
        license=spec.license,
        homepage=spec.homepage,
        citation=spec.citation,
    )
    dataset = datasets.Dataset.from_dict(
        {"image": images, "label": index.labels[split]}, features=features, info=info, split=datasets.NamedSplit(split)
    )
    if path is None:
        return dataset
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        with _quiet_datasets_progress():
            dataset.save_to_disk(str(tmp))
        try:
            os.replace(tmp, path)
        except OSError:  # another process cached the same split first
            if not (path / "dataset_info.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(path))


@contextlib.contextmanager
def _quiet_datasets_progress() -> Iterator[None]:
    """Silence the `datasets` progress bars inside the block, restoring the previous state after it."""
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()
