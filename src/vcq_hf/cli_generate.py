"""Generate class-conditional images with a saved VCQPipeline and write a labelled PNG grid.

`vcq generate --model PATH_OR_HUB_ID --class-labels 1 2 3 --num-images-per-class 4 --guidance-scale 2 --seed 0
--output grid.png` loads the pipeline (a local `save_pretrained` folder or a Hub repo id, also from the offline
cache), samples `num_images_per_class` images per class and writes one row per class, labelled with the class id
and name, to `--output`; `--save-individual DIR` also writes each image as its own PNG. Without `--model` the demo
checkpoint bundled with the package (`vcq_hf/demo/`) is used. The pipeline owns the sampling settings and the
class labels: a setting not given on the command line is the checkpoint's (its `generation_config`), else the
pipeline's documented default; `--class-labels` are resolved by `VCQPipeline.resolve_class_labels`.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from .sampling import DEFAULT_GUIDANCE_SCALE, GUIDANCE_SCHEDULES, check_sampling_settings


# The bundled demo checkpoint: a `VCQPipeline.save_pretrained` folder shipped inside the package.
DEFAULT_MODEL: Path = Path(__file__).resolve().parent / "demo"

# Above this many classes `--class-labels` must be given (a grid of every ImageNet class is not a sensible default).
MAX_DEFAULT_CLASSES = 32
# Grid cells are upscaled (nearest neighbour) to at least this many pixels, so 32x32 samples stay visible.
MIN_CELL_SIZE = 64
DTYPES = ("float32", "bfloat16", "float16")
# Size bounds, checked before anything is loaded: a grid cell side, the images of one run (larger sample sets are
# examples/sample.py's job, which streams them to disk) and the memory of the grid image.
MAX_CELL_SIZE = 1024
MAX_IMAGES = 4096
MAX_GRID_BYTES = 2**30


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vcq generate`."""
    parser.add_argument(
        "--model",
        default=None,
        help="A saved VCQPipeline folder or a Hub repo id (org/name; the local cache is used offline). Default: the "
        f"demo checkpoint bundled with the package ({DEFAULT_MODEL}).",
    )
    parser.add_argument(
        "--class-labels",
        nargs="+",
        default=None,
        metavar="LABEL",
        help="Classes to generate, as ids or names from the model's id2label (quote names with spaces). Default: "
        f"every class, if the model has at most {MAX_DEFAULT_CLASSES}.",
    )
    parser.add_argument("--num-images-per-class", type=int, default=4, help="Images per class (default: 4).")
    parser.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="Classifier-free guidance scale, finite and >= 0, 1 = none (default: the model's generation_config, "
        f"else {DEFAULT_GUIDANCE_SCALE}).",
    )
    parser.add_argument(
        "--guidance-schedule",
        choices=GUIDANCE_SCHEDULES,
        default=None,
        help="Guidance over positions: constant, or a linear ramp up to --guidance-scale (default: the model's, else "
        "constant).",
    )
    parser.add_argument(
        "--temperature", type=float, default=None, help="Sampling temperature > 0 (default: the model's, else 1.0)."
    )
    parser.add_argument(
        "--top-k", type=int, default=None, help="Top-k sampling, >= 1 (default: the model's, else off)."
    )
    parser.add_argument(
        "--top-p",
        type=float,
        default=None,
        help="Nucleus sampling threshold in (0, 1] (default: the model's, else off).",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Seed; image i of the grid uses its own generator seeded with seed + i, so it does not depend on the "
        "other classes requested (default: 0).",
    )
    parser.add_argument("--output", default="vcq_grid.png", help="Path of the PNG grid (default: vcq_grid.png).")
    parser.add_argument(
        "--save-individual", default=None, metavar="DIR", help="Also write every image as a PNG into DIR."
    )
    parser.add_argument(
        "--cell-size",
        type=int,
        default=None,
        help=f"Side in pixels of a grid cell (nearest-neighbour upscaling); default: the image size times the "
        f"smallest integer that reaches {MIN_CELL_SIZE} px.",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="Images per pipeline call; larger requests are sampled in batches with the same result (default: 32).",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu).")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="Model dtype (default: float32).")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")


def resolve_model(model: str | None) -> str:
    """The folder or Hub id to load: `model`, or the bundled demo checkpoint when it is `None`.

    Raises:
        `FileNotFoundError`: for a path-like `model` that does not exist or is not a saved pipeline folder, or when
            the demo checkpoint is needed but not installed.
    """
    if model is None:
        if not (DEFAULT_MODEL / "model_index.json").is_file():
            raise FileNotFoundError(
                f"No --model given and the bundled demo checkpoint is not installed ({DEFAULT_MODEL} has no "
                "model_index.json). Pass --model with a saved VCQPipeline folder or a Hub repo id (org/name)."
            )
        return str(DEFAULT_MODEL)
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(
                f"--model {model!r} is a folder but not a saved VCQPipeline: it has no model_index.json "
                "(create one with VCQPipeline.save_pretrained)."
            )
        return str(path)
    looks_like_repo_id = re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+", model) is not None and not model.startswith(".")
    if not looks_like_repo_id:
        raise FileNotFoundError(
            f"--model {model!r} does not exist: give a saved VCQPipeline folder or a Hub repo id of the form org/name."
        )
    return model


def default_class_labels(num_classes: int) -> list[int]:
    """The classes drawn without `--class-labels`: all of them, if there are at most `MAX_DEFAULT_CLASSES`."""
    if num_classes > MAX_DEFAULT_CLASSES:
        raise ValueError(
            f"This model has {num_classes} classes; choose some with --class-labels (ids in [0, {num_classes}) "
            "or names)."
        )
    return list(range(num_classes))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "class"


def check_output_path(output: str | os.PathLike) -> Path:
    """Fail early, before sampling, on an output path that cannot be written."""
    path = Path(output).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"--output {str(output)!r} is a directory; give a file name such as grid.png.")
    if path.suffix.lower() != ".png":
        raise ValueError(f"--output {str(output)!r} must end in .png.")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"Cannot write --output {str(output)!r}: the folder {str(parent)!r} does not exist.")
    existed = path.exists()
    try:  # a real write test: os.access says yes to root and on read-only or virtual file systems
        with open(path, "ab"):
            pass
    except OSError as err:
        raise PermissionError(f"Cannot write --output {str(output)!r}: {err.strerror or err}.") from err
    if not existed:
        path.unlink()
    return path


def make_grid(
    rows: Sequence[Sequence[Image.Image]],
    row_labels: Sequence[str],
    cell_size: int | None = None,
    padding: int = 4,
) -> Image.Image:
    """A white canvas with one row of images per class and its label, drawn with Pillow's default font, on the left.

    Args:
        rows (`Sequence[Sequence[PIL.Image.Image]]`): images per row (equal sizes).
        row_labels (`Sequence[str]`): one label per row.
        cell_size (`int`, *optional*): side of each cell; defaults to an integer upscale reaching `MIN_CELL_SIZE`.
        padding (`int`, *optional*, defaults to 4): pixels between cells.

    Returns:
        `PIL.Image.Image`: the RGB grid.
    """
    if len(rows) != len(row_labels):
        raise ValueError(f"{len(rows)} rows but {len(row_labels)} labels.")
    from .utils.image_grid import make_labelled_grid

    first = rows[0][0]
    if cell_size is None:
        cell_size = first.width * max(1, math.ceil(MIN_CELL_SIZE / first.width))
    columns = max(len(row) for row in rows)
    blank = Image.new("RGB", first.size, "white")
    images = [image for row in rows for image in [*row, *[blank] * (columns - len(row))]]
    return make_labelled_grid(images, columns, row_labels=row_labels, cell_size=cell_size, padding=padding)


def check_sizes(num_images_per_class: int, cell_size: int | None, batch_size: int) -> None:
    """Range checks of the size flags that do not need the model (before anything is loaded)."""
    if not 1 <= num_images_per_class <= MAX_IMAGES:
        raise ValueError(
            f"--num-images-per-class {num_images_per_class} is out of range: it must be in [1, {MAX_IMAGES}] "
            "(for larger sample sets use examples/sample.py, which writes them to disk as it goes)."
        )
    if cell_size is not None and not 1 <= cell_size <= MAX_CELL_SIZE:
        raise ValueError(f"--cell-size {cell_size} is out of range: it must be in [1, {MAX_CELL_SIZE}].")
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size} is out of range: it must be >= 1.")


def check_grid_memory(num_rows: int, num_columns: int, cell_size: int, padding: int = 4) -> int:
    """The bytes of the RGB grid (`make_grid`'s layout without the label column); `ValueError` above
    `MAX_GRID_BYTES`, naming the estimate and the largest cell size that fits."""
    estimate = 3 * (num_columns * (cell_size + padding) + 256) * (num_rows * (cell_size + padding) + padding)
    if estimate > MAX_GRID_BYTES:
        fits = math.isqrt(MAX_GRID_BYTES // (3 * max(num_rows * num_columns, 1))) - padding
        raise ValueError(
            f"The grid of {num_rows} x {num_columns} cells of {cell_size} px would take about "
            f"{estimate / 2**30:.1f} GiB (limit {MAX_GRID_BYTES / 2**30:.0f} GiB); use a --cell-size of at most "
            f"{max(fits, 1)}, fewer classes or fewer --num-images-per-class (or --save-individual for the images)."
        )
    return estimate


def run_cli(args: argparse.Namespace) -> int:
    """Run `vcq generate`."""
    check_sizes(args.num_images_per_class, args.cell_size, args.batch_size)
    # the pipeline's own checks, before the model is loaded (NaN and infinities included)
    check_sampling_settings(
        guidance_scale=args.guidance_scale, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p
    )
    output = check_output_path(args.output)
    individual_dir = None
    if args.save_individual is not None:
        individual_dir = Path(args.save_individual).expanduser()
        if individual_dir.exists() and not individual_dir.is_dir():
            raise NotADirectoryError(f"--save-individual {args.save_individual!r} exists and is not a directory.")
        individual_dir.mkdir(parents=True, exist_ok=True)
        if not os.access(individual_dir, os.W_OK):
            raise PermissionError(f"Cannot write into --save-individual {args.save_individual!r}: permission denied.")
    model = resolve_model(args.model)

    import torch  # imported here: keeps `vcq --help` fast

    from .pipeline_vcq import VCQPipeline

    try:
        pipe = VCQPipeline.from_pretrained(model, dtype=getattr(torch, args.dtype))
    except OSError as err:
        raise OSError(f"Could not load --model {model!r}: {err}") from err
    pipe = pipe.to(args.device)
    pipe.set_progress_bar_config(disable=args.quiet, desc="vcq generate")

    labels = args.class_labels if args.class_labels is not None else default_class_labels(pipe.num_classes)
    label_ids = pipe.resolve_class_labels(labels)  # ids or names; unknown names and bad ids raise ValueError
    count = len(label_ids) * args.num_images_per_class
    if count > MAX_IMAGES:
        raise ValueError(
            f"{len(label_ids)} classes x {args.num_images_per_class} images = {count} images is more than "
            f"{MAX_IMAGES} for one grid; ask for fewer, or use examples/sample.py for large sample sets."
        )
    image_size = pipe.vq_model.config.image_size
    cell_size = args.cell_size or image_size * max(1, math.ceil(MIN_CELL_SIZE / image_size))
    check_grid_memory(len(label_ids), args.num_images_per_class, cell_size)
    device_type = torch.device(args.device).type
    generators = [torch.Generator(device=device_type).manual_seed(args.seed + i) for i in range(count)]
    # One generator per image makes each image independent of the batch it is sampled in, so batching bounds the
    # memory (KV cache, logits) without changing the result.
    per_image = [label for label in label_ids for _ in range(args.num_images_per_class)]
    output_images = []
    for start in range(0, count, args.batch_size):
        output_images += pipe(
            class_labels=per_image[start : start + args.batch_size],
            guidance_scale=args.guidance_scale,
            guidance_schedule=args.guidance_schedule,
            generator=generators[start : start + args.batch_size],
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            num_images_per_class=1,
            output_type="pil",
        ).images

    names = pipe.id2label
    row_labels = [f"{label}: {names[label]}" if label in names else str(label) for label in label_ids]
    n = args.num_images_per_class
    rows = [output_images[i * n : (i + 1) * n] for i in range(len(label_ids))]
    make_grid(rows, row_labels, cell_size=cell_size).save(output)
    print(f"wrote {output} ({len(label_ids)} classes x {n} images)")
    if individual_dir is not None:
        for i, label in enumerate(label_ids):
            for j in range(n):
                name = _slug(names.get(label, f"class-{label}"))
                path = individual_dir / f"{i * n + j:04d}_class{label}_{name}_{j}.png"
                output_images[i * n + j].save(path)
        print(f"wrote {count} images to {individual_dir}")
    return 0
