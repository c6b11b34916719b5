"""The command line: every subcommand has --help; user errors are one clear message, exit 2."""
import subprocess
import sys

import pytest

from rsmoe.cli import build_parser, main

SUBCOMMANDS = ["stage", "synth", "validate", "prepare", "params", "model"]


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


def test_synth_validate_prepare_on_folders(tmp_path, capsys):
    raw, none = tmp_path / "raw", tmp_path / "no-params.yaml"
    assert main(["synth", "--out", str(raw), "--scenes", "2", "--seed", "1", "--min-size", "512",
                 "--max-size", "600", "--params", str(none)]) == 0
    assert sorted(p.name for p in (raw / "labelTxt").iterdir()) == ["P0000.txt", "P0001.txt"]
    report = tmp_path / "report.json"
    assert main(["validate", str(raw), "--report", str(report), "--params", str(none)]) == 0
    assert report.is_file() and "verdict: OK" in capsys.readouterr().out
    assert main(["prepare", str(raw), str(tmp_path / "out"), "--report", str(report), "--params", str(none)]) == 0
    assert (tmp_path / "out" / "captions.json").is_file() and any((tmp_path / "out" / "images").iterdir())
    # every image corrupt: a hard error, non-zero exit, and the report still written
    for img in (raw / "images").iterdir():
        img.write_bytes(b"\x89PNG broken")
    assert main(["validate", str(raw), "--report", str(report), "--params", str(none)]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_model_prints_parameter_table(capsys):
    assert main(["model", "--preset", "paper-1b", "--meta", "--experts", "2"]) == 0
    out = capsys.readouterr().out
    assert "preset=paper-1b experts=theme,details mode=stage2" in out
    assert "1,235,814,400" in out  # Llama-3.2-1B, frozen


def test_model_without_local_weights_is_a_clear_error(capsys):
    assert main(["model", "--preset", "paper-7b"]) == 2
    assert "set model.instructblip in params.yaml (in Python: the preset's image_encoder.path)" in capsys.readouterr().err


def test_help_imports_no_heavy_library():
    """`rsmoe --help` and every subcommand's --help build the parser only: torch, transformers,
    PEFT and Prefect load lazily (importing them took ~5 s of every --help on a 2-core CPU)."""
    import subprocess
    import sys

    code = ("import sys; from rsmoe.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'prefect') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
