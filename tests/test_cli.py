"""CLI contract: user errors are one clear line on stderr, exit 2, never a traceback."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest

from mathtune import cli
from mathtune.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def assert_one_clear_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("mathtune: error: ")
    assert len(lines) <= 2  # the error, and at most a hint
    for n in needles:
        assert n in err


def test_unknown_model(capsys):
    code, err = run_cli(capsys, "solve", "--model", "smolm2", "1+1")
    assert_one_clear_error(code, err, "unknown model 'smolm2'", "did you mean")


def test_missing_local_directory(capsys, tmp_path):
    code, err = run_cli(capsys, "solve", "--model", str(tmp_path / "missing"), "1+1")
    assert_one_clear_error(code, err, "model directory not found")


def test_hub_id_while_offline(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    code, err = run_cli(capsys, "solve", "--model", "Qwen/Qwen2.5-Math-1.5B", "1+1")
    assert_one_clear_error(code, err, "cannot download 'Qwen/Qwen2.5-Math-1.5B'", "HF_HUB_OFFLINE")


def test_no_problem_given(capsys):
    code, err = run_cli(capsys, "solve", "--file", "/nonexistent/problems.txt")
    assert_one_clear_error(code, err, "problem file not found")


def _mathtune(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mathtune.cli", *argv], capture_output=True, text=True, timeout=60)


def test_help_lists_every_stage():
    proc = _mathtune("--help")
    assert proc.returncode == 0, proc.stderr
    # Subcommand rows are indented 4 spaces under "COMMAND": name, then its one-line help.
    listed = re.findall(r"^    ([a-z][\w-]*)(?:\s|$)", proc.stdout, flags=re.MULTILINE)
    assert listed == cli.COMMANDS, proc.stdout
    for name in cli.COMMANDS:
        first_word = importlib.import_module(f"mathtune.commands.{name}").HELP.split()[0]
        assert re.search(rf"^    {name}\s+{re.escape(first_word)}", proc.stdout, flags=re.MULTILINE), name


@pytest.mark.parametrize("name", cli.COMMANDS)
def test_every_subcommand_help_works(name):
    proc = _mathtune(name, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith(f"usage: mathtune {name} "), proc.stdout
    assert "-h, --help" in proc.stdout


def test_missing_command_module_is_not_hidden(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, "no_such_command"])
    with pytest.raises(ModuleNotFoundError, match="mathtune.commands.no_such_command"):
        cli.build_parser()


@pytest.mark.parametrize("argv", [["pull", "no-such-model"]])
def test_pull_unknown(capsys, argv):
    code, err = run_cli(capsys, *argv)
    assert_one_clear_error(code, err, "unknown model 'no-such-model'")


def test_malformed_recipe(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: smollm2-135m-instruct\n method: [lora\n")
    code, err = run_cli(capsys, "train", str(bad))
    assert_one_clear_error(code, err, "malformed YAML", str(bad), "line")


def test_unknown_recipe_key_names_file_key_and_closest(capsys, tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("model:\n  name: smollm2-135m-instruct\nmethod:\n  kind: lora\n  alpah: 8\n")
    code, err = run_cli(capsys, "train", str(bad))
    assert_one_clear_error(code, err, str(bad), "'method.alpah'", "did you mean 'method.alpha'")
