"""The command line: every subcommand has --help; user errors are one clear message, exit 2."""
import subprocess
import sys

import pytest

from rsmoe.cli import build_parser, main

SUBCOMMANDS = ["stage", "synth", "validate", "prepare", "params"]


def test_top_level_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "rsmoe", "--help"], capture_output=True, text=True, check=True).stdout
    for name in SUBCOMMANDS:
        assert name in out


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_each_subcommand_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([name, "--help"])
    assert exit_.value.code == 0
    assert "usage: rsmoe " + name in capsys.readouterr().out


def test_stage_names_are_checked(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["stage", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_params_typo_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text("prepare:\n  overlapp: 3\n")
    assert main(["params", "--params", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'prepare.overlapp'" in err and "did you mean 'overlap'" in err and "Traceback" not in err


def test_prepare_on_missing_folder_is_a_clear_error(tmp_path, capsys):
    code = main(["prepare", str(tmp_path / "nowhere"), str(tmp_path / "out"), "--params", str(tmp_path / "none.yaml")])
    assert code == 2
    assert "no images folder" in capsys.readouterr().err
