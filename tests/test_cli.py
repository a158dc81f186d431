import subprocess
import sys

import pytest

from vcq_hf.cli import COMMANDS, build_parser, main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_every_command_has_help():
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name, "--help"])
        assert exit_info.value.code == 0


def test_schedules_command(capsys):
    assert main(["schedules", "--num-samples", "60000", "--num-tokens", "32", "--k-max", "1024"]) == 0
    assert "| constant | 1024" in capsys.readouterr().out


def test_bad_value_is_a_clean_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["schedules", "--k-min", "0"])
    assert exit_info.value.code == 2
    assert "k_min = 0 is out of range" in capsys.readouterr().err


def test_console_script_installed():
    result = subprocess.run(
        [sys.executable, "-m", "vcq_hf.cli", "schedules", "--num-tokens", "4"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "| log |" in result.stdout


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "code",
    [
        "import vcq_hf.schedules",
        "import vcq_hf, vcq_hf.data",
        "from vcq_hf.cli import main; main(['--help'])",
        "from vcq_hf.cli import main; main(['--version'])",
        "from vcq_hf.cli import main; main(['schedules', '--num-tokens', '4'])",
    ],
)
def test_light_entry_points_import_no_heavy_library(code):
    # `vcq --help` and the pure maths must not pay for torch / transformers / diffusers (seconds each).
    script = (
        "import sys\n"
        "try:\n"
        f"    {code}\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'diffusers', 'datasets') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout


def test_version(capsys):
    from vcq_hf import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"vcq_hf {__version__} (torch ")


def test_lazy_public_names_resolve():
    import vcq_hf

    assert set(vcq_hf.__all__) <= set(dir(vcq_hf))
    assert vcq_hf.codebook_sizes.__module__ == "vcq_hf.schedules"
    with pytest.raises(AttributeError, match="no attribute 'NotAName'"):
        vcq_hf.NotAName  # noqa: B018


def test_verbosity_option_reaches_the_library_logger(tmp_path):
    from vcq_hf.utils import logging

    before = logging.get_verbosity()
    try:
        assert main(["--verbosity", "info", "schedules", "--num-tokens", "4"]) == 0
        assert logging.get_verbosity() == logging.INFO
    finally:
        logging.set_verbosity(before)
