"""The `vcq` command line: `vcq <command> --help` documents each command.

Each command lives in the module that implements it; that module defines `add_cli_arguments(parser)` and
`run_cli(args) -> int | None`. Only the module of the command being run (or asked for `--help`) is imported, so
`vcq --help` and `vcq --version` import neither torch nor transformers (see `benchmarks/bench_import.py`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Iterable, Sequence

from . import __version__


# command name -> (module, one-line help). Keep sorted by name.
COMMANDS: dict[str, tuple[str, str]] = {
    "analyze": (
        "vcq_hf.analysis.cli",
        "Analyse codes and priors: entropy cliff, linear probe, memorisation (nll, copies, nearest).",
    ),
    "data": ("vcq_hf.data.cli", "Build real offline image data sets (Fashion-MNIST, emoji, digits)."),
    "demo": ("vcq_hf.gradio_app", "Serve a Gradio web demo of a VCQPipeline (needs the demo extra)."),
    "generate": (
        "vcq_hf.cli_generate",
        "Generate class-conditional images with a VCQPipeline into a labelled PNG grid.",
    ),
    "schedules": ("vcq_hf.schedules", "Entropy-cliff position and capacity of each codebook-size schedule."),
}


def version_string() -> str:
    """`vcq_hf X (torch Y, transformers Z, diffusers W)`, read from the installed distributions' metadata."""
    versions = []
    for package in ("torch", "transformers", "diffusers"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} not installed")
    return f"vcq_hf {__version__} ({', '.join(versions)})"


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The `vcq` parser; only the modules of `commands` (default: all) are imported to add their arguments."""
    selected = set(COMMANDS if commands is None else commands)
    parser = argparse.ArgumentParser(
        prog="vcq",
        description="vcq_hf: Variable Codebook Size Quantization for autoregressive image generation.",
    )
    parser.add_argument("--version", action="version", version=version_string())
    parser.add_argument(
        "--verbosity",
        choices=("debug", "info", "warning", "error", "critical"),
        default=None,
        help="log level of the vcq_hf logger (default: $VCQ_HF_VERBOSITY, else warning)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if name not in selected:
            subparsers.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        subparser = subparsers.add_parser(name, help=help_text, description=module.__doc__.strip().splitlines()[0])
        module.add_cli_arguments(subparser)
        subparser.set_defaults(_module=module_name)
    return parser


def _command_in(argv: Sequence[str]) -> list[str]:
    """The command named in `argv` (the first positional argument), as a list of zero or one names."""
    args = iter(argv)
    for arg in args:
        if arg == "--verbosity":  # the one top-level option that takes a value
            next(args, None)
        elif not arg.startswith("-"):
            return [arg] if arg in COMMANDS else []
    return []


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(argv))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.verbosity is not None:
        from .utils import logging

        logging.set_verbosity(args.verbosity)
    module = importlib.import_module(args._module)
    try:
        return module.run_cli(args) or 0
    except (ValueError, FileNotFoundError, PermissionError, OSError) as err:
        parser.exit(2, f"vcq {args.command}: error: {err}\n")
    except Exception as err:
        from huggingface_hub.errors import StrictDataclassError  # a config that fails validation

        if not isinstance(err, StrictDataclassError):
            raise
        parser.exit(2, f"vcq {args.command}: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
