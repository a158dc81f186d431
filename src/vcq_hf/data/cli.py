"""`vcq data`: build and inspect the built-in data sets.

`vcq data build NAME --output DIR [--resolution R]` writes an imagefolder (`DIR/<split>/<label>_<class
slug>/<index>.png`, `classes.txt`, `vcq_data.json`) and `vcq data info NAME` prints the counts per split and class.
"""

from __future__ import annotations

import argparse
from typing import Any

from .builtin import BUILTIN_DATASETS, _get_spec, builtin_split_counts
from .imagefolder import build_imagefolder


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vcq data build` and `vcq data info`."""
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="Write a built-in data set as an imagefolder (PNGs, classes.txt, vcq_data.json).",
        description="Write a built-in data set as an imagefolder: DIR/<split>/<label>_<class>/<index>.png, "
        "classes.txt and vcq_data.json. Load it with datasets.load_dataset('imagefolder', data_dir=DIR) or "
        "vcq_hf.data.load_image_dataset(train_data_dir=DIR).",
    )
    info = actions.add_parser("info", help="Counts per split and class of a built-in data set.")
    for sub in (build, info):
        sub.add_argument("name", help=f"one of: {', '.join(BUILTIN_DATASETS)}")
        sub.add_argument("--seed", type=int, default=None, help="split seed (default 0)")
        sub.add_argument("--limit", type=int, default=None, help="at most N images per split (class-balanced)")
        sub.add_argument("--no-skin-tones", action="store_true", help="emoji only: drop skin-tone variants")
    build.add_argument("--output", "-o", required=True, help="output folder")
    build.add_argument("--resolution", "-r", type=int, default=None, help="image side (default: native size)")
    build.add_argument("--splits", nargs="+", default=None, help="splits to write (default: all)")
    build.add_argument("--overwrite", action="store_true", help="replace the split folders of a non-empty output")
    build.add_argument("--cache-dir", default=None, help="cache for built splits")


def _cli_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if args.seed is not None:
        options["seed"] = args.seed
    if args.limit is not None:
        options["limit"] = args.limit
    if args.no_skin_tones:
        if args.name != "emoji":
            raise ValueError(f"--no-skin-tones applies to 'emoji' only, not {args.name!r}.")
        options["skin_tones"] = False
    return options


def format_counts_table(counts: dict[str, Any]) -> str:
    """Markdown table of `builtin_split_counts` output: one row per class, one column per split, and totals."""
    splits = list(counts["splits"])
    lines = ["| class | " + " | ".join(splits) + " |", "| --- |" + " ---: |" * len(splits)]
    for label, class_name in enumerate(counts["class_names"]):
        lines.append(f"| {class_name} | " + " | ".join(f"{counts['splits'][s][label]:,}" for s in splits) + " |")
    lines.append("| **total** | " + " | ".join(f"{sum(counts['splits'][s]):,}" for s in splits) + " |")
    return "\n".join(lines)


def run_cli(args: argparse.Namespace) -> int:
    options = _cli_options(args)
    if args.data_action == "info":
        spec = _get_spec(args.name)
        counts = builtin_split_counts(args.name, **options)
        sources = ", ".join(str(path) for path in spec.sources) or "scikit-learn (bundled)"
        print(f"{spec.name}: {spec.title}")
        print(f"native size {spec.native_resolution}x{spec.native_resolution}; licence {spec.license}")
        print(f"source: {sources}")
        if spec.notes:
            print(spec.notes)
        print()
        print(format_counts_table(counts))
        return 0
    metadata = build_imagefolder(
        args.name,
        args.output,
        resolution=args.resolution,
        splits=args.splits,
        overwrite=args.overwrite,
        cache_dir=args.cache_dir,
        **options,
    )
    sizes = ", ".join(f"{split} {info['num_images']:,}" for split, info in metadata["splits"].items())
    print(f"wrote {args.output}: {metadata['name']} at {metadata['resolution']}px, {sizes} images")
    return 0
