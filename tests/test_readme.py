"""The README's and the docs' code: Python blocks of README.md run, and every shell command in README.md,
docs/imagenet.md and model_cards/*.md uses scripts, accelerate flags and `vcq` options that exist; links resolve."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import shlex
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

from vcq_hf import VCQConfig, VCQForCausalLM, VCQPipeline, VCQVQConfig, VCQVQModel
from vcq_hf.cli import build_parser


REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
COMMAND_DOCS = [README, REPO / "docs" / "imagenet.md", *sorted((REPO / "model_cards").glob("*.md"))]
LINK_DOCS = [README, REPO / "docs" / "index.md", REPO / "docs" / "imagenet.md", *sorted((REPO / "model_cards").glob("*.md"))]  # fmt: skip
# Written by the lead's reproduction study; links to them may precede them.
PENDING_LINKS = {REPO / "docs" / "reproduction.md", REPO / "docs" / "reproduction"}
PIPELINE_PLACEHOLDER = "path/to/vcq-pipeline"


def code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), flags=re.S | re.M)


def shell_commands(path: Path) -> list[str]:
    commands = []
    for block in code_blocks(path, "bash"):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                commands += [part.strip() for part in line.split("&&") if part.strip()]
    return commands


def all_commands() -> list[tuple[str, str]]:
    return [(path.relative_to(REPO).as_posix(), command) for path in COMMAND_DOCS for command in shell_commands(path)]


# ------------------------------------------------------------------------------------------------ README python


@pytest.fixture
def tiny_pipeline_folder(tmp_path) -> Path:
    torch.manual_seed(0)
    vq_config = VCQVQConfig.from_preset("tiny")
    transformer = VCQForCausalLM(VCQConfig.from_vq_config(vq_config, preset="tiny"))
    pipe = VCQPipeline(vq_model=VCQVQModel(vq_config), transformer=transformer, id2label={0: "a", 1: "b", 2: "c"})
    folder = tmp_path / "pipeline"
    pipe.save_pretrained(folder)
    return folder


README_PYTHON = code_blocks(README, "python")


def test_readme_has_the_entry_point_blocks():
    text = README.read_text()
    assert any("VCQPipeline.from_pretrained" in block for block in README_PYTHON)
    assert any("logits_processor=VCQMask()" in block for block in README_PYTHON)
    assert any(command.startswith("accelerate launch examples/train_ar.py") for _, command in all_commands())
    for figure in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (REPO / figure).is_file(), figure


@pytest.mark.parametrize("index", range(len(README_PYTHON)))
def test_readme_python_block_runs(index, tiny_pipeline_folder, tmp_path, monkeypatch, capsys):
    source = README_PYTHON[index].replace(PIPELINE_PLACEHOLDER, str(tiny_pipeline_folder))
    monkeypatch.chdir(tmp_path)
    exec(compile(source, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
    if PIPELINE_PLACEHOLDER in README_PYTHON[index]:
        assert (tmp_path / "sample.png").is_file()
        assert "(12, 12)" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ shell commands


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def script_parser(script: Path) -> argparse.ArgumentParser:
    """The argparse parser an examples/ script builds in its `parse_args` (captured before it parses anything)."""
    saved_path = list(sys.path)
    spec = importlib.util.spec_from_file_location(f"_vcq_doc_check_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)

        def capture(self, *args, **kwargs):
            raise _Captured(self)

        with mock.patch.object(argparse.ArgumentParser, "parse_args", capture), pytest.raises(_Captured) as info:
            module.parse_args([])
    finally:
        sys.path[:] = saved_path
    return info.value.parser


_PARSERS: dict[str, argparse.ArgumentParser] = {}


def check_script_args(script: str, args: list[str]) -> None:
    path = REPO / script
    assert path.is_file(), f"{script} does not exist"
    if script not in _PARSERS:
        _PARSERS[script] = script_parser(path)
    try:
        _PARSERS[script].parse_args(args)
    except SystemExit as err:
        raise AssertionError(f"{script} rejects {args}") from err


def check_accelerate_launch(tokens: list[str]) -> None:
    from accelerate.commands.launch import launch_command_parser

    known = launch_command_parser()._option_string_actions
    script_index = next(i for i, token in enumerate(tokens) if token.endswith(".py"))
    launch_args = tokens[2:script_index]
    for token in launch_args:
        if token.startswith("--"):
            assert token.split("=")[0] in known, f"accelerate launch has no {token}"
    if "--config_file" in launch_args:
        config = launch_args[launch_args.index("--config_file") + 1]
        assert (REPO / config).is_file(), f"accelerate config {config} does not exist"
    check_script_args(tokens[script_index], tokens[script_index + 1 :])


def check_vcq(tokens: list[str]) -> None:
    if "--help" in tokens or len(tokens) == 1:
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args([*tokens[1:], "--help"] if len(tokens) > 1 else ["--help"])
        assert info.value.code == 0
        return
    try:
        build_parser().parse_args(tokens[1:])
    except SystemExit as err:
        raise AssertionError(f"vcq rejects {tokens[1:]}") from err


def check_python_module(tokens: list[str]) -> None:
    module = importlib.import_module(tokens[2])
    parser = argparse.ArgumentParser()
    module.add_cli_arguments(parser)
    parser.parse_args(tokens[3:])


def check_command(command: str) -> bool:
    """Check one shell command; returns False for commands that are not vcq_hf's (pip, hf, export, the ADM tool)."""
    tokens = shlex.split(command)
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
        tokens = tokens[1:]
    if tokens[:2] == ["accelerate", "launch"]:
        check_accelerate_launch(tokens)
    elif tokens[0] == "vcq":
        check_vcq(tokens)
    elif tokens[0] == "python" and tokens[1].startswith("examples/"):
        check_script_args(tokens[1], tokens[2:])
    elif tokens[:2] == ["python", "-m"] and tokens[2].startswith("vcq_hf."):
        check_python_module(tokens)
    else:
        return False
    return True


def test_doc_commands_exist_with_these_flags():
    checked = [(doc, command) for doc, command in all_commands() if check_command(command)]
    docs = {doc for doc, _ in checked}
    assert {"README.md", "docs/imagenet.md", "model_cards/vcq-b.md"} <= docs
    scripts = {script for _, command in checked for script in re.findall(r"examples/\w+\.py", command)}
    assert {"examples/train_tokenizer.py", "examples/extract_codes.py", "examples/train_ar.py",
            "examples/sample.py", "examples/evaluate_pipeline.py"} <= scripts  # fmt: skip
    imagenet = " ".join(command for doc, command in checked if doc == "docs/imagenet.md")
    for needle in ("multi_gpu.yaml", "multi_node.yaml", "fsdp.yaml", "--flip_augmentation", "--num_samples 50000",
                   "--model_config imagenet-256", "vcq analyze entropy", "vcq analyze probe"):  # fmt: skip
        assert needle in imagenet, needle


def test_the_checker_rejects_unknown_flags_and_scripts():
    with pytest.raises(AssertionError, match="rejects"):
        check_command("accelerate launch examples/train_ar.py --codes_dir c --output_dir o --no_such_flag 1")
    with pytest.raises(AssertionError, match="has no --no_such_launch_flag"):
        check_command("accelerate launch --no_such_launch_flag 1 examples/sample.py --pipeline_path p --output_dir o")
    with pytest.raises(AssertionError, match="does not exist"):
        check_command("accelerate launch examples/train_nothing.py --output_dir o")
    with pytest.raises(AssertionError, match="rejects"):
        check_command("vcq analyze entropy --codes c --no-such-option")
    assert check_command("pip install -e .") is False


# ------------------------------------------------------------------------------------------------ links


def relative_links(path: Path) -> list[str]:
    links = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    return [link for link in links if not re.match(r"^(https?:|mailto:|#)", link)]


@pytest.mark.parametrize("doc", LINK_DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_links_resolve(doc):
    for link in relative_links(doc):
        target = (doc.parent / link.split("#")[0]).resolve()
        if target in PENDING_LINKS:
            continue
        if (
            target == (REPO / "model_cards" / "vcq-demo-fmnist.md")
            and not (REPO / "src/vcq_hf/demo/model_index.json").is_file()
        ):
            continue  # the demo card is written once the demo checkpoint is there
        assert target.exists(), f"{doc.name}: broken link {link}"


def test_index_links_every_doc():
    index = REPO / "docs" / "index.md"
    linked = {(index.parent / link.split("#")[0]).resolve() for link in relative_links(index)}
    docs = [p for p in (REPO / "docs").glob("*.md") if p.name != "index.md"]
    docs += sorted((REPO / "model_cards").glob("*.md")) + [REPO / "examples" / "README.md", README]
    missing = [p.relative_to(REPO).as_posix() for p in docs if p.resolve() not in linked]
    assert not missing, f"docs/index.md does not link {missing}"
    assert "docs/index.md" in README.read_text()
