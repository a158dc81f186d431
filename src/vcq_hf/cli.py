"""The `vcq` command line: `vcq <command> --help` documents each command.

Each command lives in the module that implements it; that module defines `add_cli_arguments(parser)` and
`run_cli(args) -> int | None`. Modules are imported only when their command runs, so `vcq --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence


# command name -> (module, one-line help). Keep sorted by name.
COMMANDS: dict[str, tuple[str, str]] = {
    "analyze": (
        "vcq_hf.analysis.cli",
        "Analyse codes and priors: entropy cliff, linear probe, memorisation (nll, copies, nearest).",
    ),
    "data": ("vcq_hf.data", "Build real offline image data sets (Fashion-MNIST, emoji, digits)."),
    "demo": ("vcq_hf.gradio_app", "Serve a Gradio web demo of a VCQPipeline (needs the demo extra)."),
    "generate": (
        "vcq_hf.cli_generate",
        "Generate class-conditional images with a VCQPipeline into a labelled PNG grid.",
    ),
    "schedules": ("vcq_hf.schedules", "Entropy-cliff position and capacity of each codebook-size schedule."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vcq",
        description="vcq_hf: Variable Codebook Size Quantization for autoregressive image generation.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        subparser = subparsers.add_parser(name, help=help_text, description=module.__doc__.strip().splitlines()[0])
        module.add_cli_arguments(subparser)
        subparser.set_defaults(_module=module_name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(args._module)
    try:
        return module.run_cli(args) or 0
    except (ValueError, FileNotFoundError, PermissionError, OSError) as err:
        parser.exit(2, f"vcq {args.command}: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
