"""The one image grid of vcq_hf: `diffusers.utils.make_image_grid` for the cells, plus a column of row labels.

`vcq generate`, the training scripts' validation grids and the web demo all draw through `make_labelled_grid`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont, ImageOps


__all__ = ["make_labelled_grid"]


def make_labelled_grid(
    images: Sequence[Image.Image],
    num_columns: int,
    row_labels: Sequence[str] | None = None,
    cell_size: int | None = None,
    padding: int = 0,
) -> Image.Image:
    """Rows of `num_columns` images on white, each row captioned on its left with Pillow's default font.

    Args:
        images (`Sequence[PIL.Image.Image]`): the images, row by row; a short last row is filled with white.
        num_columns (`int`): images per row.
        row_labels (`Sequence[str]`, *optional*): one caption per row (at most one per row; none: no label column).
        cell_size (`int`, *optional*): side of each cell, resized with nearest-neighbour (pixel art stays sharp);
            defaults to the first image's size.
        padding (`int`, *optional*, defaults to 0): white pixels between cells and around the cell area.

    Returns:
        `PIL.Image.Image`: the RGB grid.
    """
    if not images:
        raise ValueError("make_labelled_grid needs at least one image.")
    if num_columns < 1:
        raise ValueError(f"num_columns = {num_columns} is out of range: it must be >= 1.")
    if padding < 0:
        raise ValueError(f"padding = {padding} is out of range: it must be >= 0.")
    num_rows = math.ceil(len(images) / num_columns)
    if row_labels is not None and len(row_labels) > num_rows:
        raise ValueError(f"{len(row_labels)} row labels for {num_rows} rows of {num_columns} images.")
    width, height = images[0].size if cell_size is None else (cell_size, cell_size)
    cells = [image.convert("RGB").resize((width, height), Image.Resampling.NEAREST) for image in images]
    cells += [Image.new("RGB", (width, height), "white")] * (num_rows * num_columns - len(cells))
    cells = [ImageOps.expand(cell, border=(0, 0, padding, padding), fill="white") for cell in cells]

    from diffusers.utils import make_image_grid

    body = make_image_grid(cells, rows=num_rows, cols=num_columns)
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [measure.textbbox((0, 0), str(label), font=font) for label in row_labels or []]
    label_width = max(box[2] for box in boxes) + 2 * max(padding, 4) if boxes else padding
    grid = Image.new("RGB", (label_width + body.width, padding + body.height), "white")
    grid.paste(body, (label_width, padding))
    draw = ImageDraw.Draw(grid)
    for row, (label, box) in enumerate(zip(row_labels or [], boxes)):
        top = padding + row * (height + padding) + max(0, (height - box[3]) // 2)
        draw.text((max(padding, 4), top), str(label), fill="black", font=font)
    return grid
