"""``aitl serve`` commands that need no running application."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aitl.cli_serve import app

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AITL_DATA_DIR", str(tmp_path))
    return tmp_path


def test_status_without_a_running_app_fails(data_dir: Path) -> None:
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 1
    assert "not running" in result.output


def test_stop_cleans_up_after_a_dead_process(data_dir: Path) -> None:
    state = data_dir / "serve.json"
    state.write_text(json.dumps({"pid": 2**22 + 12345, "url": "http://127.0.0.1:1"}))
    result = runner.invoke(app, ["stop"])
    assert result.exit_code == 0, result.output
    assert "already gone" in result.output
    assert not state.exists()
