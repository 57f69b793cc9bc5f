from __future__ import annotations

import json

import pytest

from mxd_cli.console import Output
from mxd_cli.errors import ConfigError


def test_json_error_on_stdout_and_message_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    Output(json_mode=True, color=False).error(ConfigError("bad", hint="try this"))
    out, err = capsys.readouterr()
    assert json.loads(out) == {"error": "config_error", "message": "bad", "hint": "try this"}
    assert "Error: bad" in err and "Hint: try this" in err


def test_quiet_suppresses_messages_but_not_data(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output(quiet=True, color=False)
    out.info("hello")
    out.warn("careful")
    out.text("data")
    captured = capsys.readouterr()
    assert captured.out == "data\n"
    assert captured.err == ""


def test_table_escapes_markup(capsys: pytest.CaptureFixture[str]) -> None:
    Output(color=False).table(["a", "n"], [("[bold]x[/bold]", 3)], numeric=["n"])
    out = capsys.readouterr().out
    assert "[bold]x[/bold]" in out and "3" in out
