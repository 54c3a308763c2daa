"""The `recsys` command without a stack: every command listed, the shared options in either position, and
errors as one line with what to do (an unreachable gateway, missing prerequisites, bad values)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest
from typer.testing import CliRunner

from cli.app import app, main
from cli.gateway_commands import DeviceName, DiversityMethodName, FeedbackTypeName
from client.gateway import DEVICES, DIVERSITY_METHODS, FEEDBACK_TYPES
from tools.stack import free_port

from ..conftest import REPO

runner = CliRunner()


@pytest.fixture()
def nowhere() -> str:
    """An address nothing listens on."""
    return f"127.0.0.1:{free_port()}"


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    return lines[0]


def test_help_lists_every_command() -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    commands = top.stdout.split("Commands:")[1].split()
    for name in ("recommend", "similar", "feedback", "health", "train", "eval", "loadtest", "bench"):
        assert name in commands, top.stdout
    bench = runner.invoke(app, ["bench", "--help"])
    assert bench.exit_code == 0
    for name in ("recommend", "load", "rerank", "ranking", "retrieval"):
        assert name in bench.stdout.split("Commands:")[1].split(), bench.stdout


def test_choices_are_the_client_vocabularies() -> None:
    assert set(get_args(DeviceName)) == set(DEVICES)
    assert set(get_args(DiversityMethodName)) == set(DIVERSITY_METHODS)
    assert set(get_args(FeedbackTypeName)) == set(FEEDBACK_TYPES)


@pytest.mark.parametrize(
    "command", [["health"], ["recommend", "--user", "1", "--count", "5"], ["similar", "--item", "50"]]
)
def test_an_unreachable_gateway_is_one_line_that_says_to_start_the_stack(
    nowhere: str, command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    before = runner.invoke(app, ["--address", nowhere, "--timeout", "3", "--json", *command])
    after = runner.invoke(app, [*command, "--address", nowhere, "--timeout", "3", "--json"])
    for result in (before, after):
        assert result.exit_code == 1 and result.stdout == ""
        line = _one_error_line(result.stderr)
        assert line == f"error: cannot reach the gateway at {nowhere} (UNAVAILABLE); is the stack running? `make run`"
    assert "TQDM_DISABLE" not in os.environ, "--json quiets progress bars only while the command runs"


def test_an_option_after_the_command_wins(nowhere: str) -> None:
    result = runner.invoke(app, ["--address", "127.0.0.1:1", "health", "--address", nowhere])
    assert nowhere in _one_error_line(result.stderr)


def test_the_command_prints_no_traceback(nowhere: str) -> None:
    """The entry point as a user runs it: one line on stderr and exit code 1."""
    done = subprocess.run(
        [sys.executable, "-m", "cli.app", "recommend", "--user", "1", "--address", nowhere, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert "cannot reach the gateway" in _one_error_line(done.stderr)


def test_bad_values_are_usage_errors() -> None:
    for argv in (
        ["recommend", "--user", "1", "--count", "x"],
        ["recommend", "--user", "1", "--device", "fridge"],
        ["bench", "ranking", "--backend", "gpu"],
        ["bench", "load", "--rates", "10,fast"],
        ["recommend"],
    ):
        result = runner.invoke(app, argv)
        assert result.exit_code == 2, (argv, result.stderr)
        assert "Usage: recsys" in result.stderr and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("Error: ")


def test_a_bench_without_a_bundle_says_to_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_BUNDLE_DIR", str(tmp_path))
    for argv in (["bench", "rerank"], ["bench", "ranking", "--backend", "inprocess"], ["bench", "retrieval"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 1, result.stderr
        assert (
            _one_error_line(result.stderr) == f"error: no model bundle published in {tmp_path}; run `make train` first"
        )


def test_debug_adds_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_BUNDLE_DIR", str(tmp_path))
    for argv, env in ((["--debug", "bench", "rerank"], {}), (["bench", "rerank"], {"RECSYS_DEBUG": "1"})):
        result = runner.invoke(app, argv, env=env)
        assert result.exit_code == 1
        assert "Traceback" in result.stderr and result.stderr.strip().splitlines()[-1].startswith("error: no model")


def test_loadtest_gets_its_arguments_and_the_shared_options_before_it(nowhere: str) -> None:
    help_ = runner.invoke(app, ["loadtest", "--help"])
    assert help_.exit_code == 0 and help_.stdout.startswith("usage: recsys loadtest")
    result = runner.invoke(app, ["--address", nowhere, "loadtest", "--rate", "5", "--duration", "0.5", "--json"])
    assert result.exit_code == 1 and result.stdout == ""
    line = _one_error_line(result.stderr)
    assert line.startswith("error: cannot reach the server (UNAVAILABLE: ") and nowhere in line
    token = runner.invoke(app, ["--token", "t", "loadtest"])
    assert token.exit_code == 1 and "--token and --ca-file do not apply" in _one_error_line(token.stderr)


def test_main_returns_the_exit_code(nowhere: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert main(["--address", nowhere, "health"]) == 1
    assert main(["health", "--timeout", "-1"]) == 2
    assert "cannot reach the gateway" in capsys.readouterr().err
