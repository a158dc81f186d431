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
