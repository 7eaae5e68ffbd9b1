"""``aitl models promote`` against an in-memory lifecycle log: overruling the gate takes
``--force`` and ``--reason``, and leaves a trace on the event."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from aitl import cli_models
from kernel.events import Component, LifecycleAction
from trainers.registry import MemoryLifecycleLog, Registry

runner = CliRunner()
R = Component.RETRIEVER


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """v1 serves, the gate rejected v2."""
    reg = Registry(MemoryLifecycleLog())
    for version in ("v1", "v2"):
        reg.register(R, version, f"/ckpt/{version}")
    reg.promote(R, "v1", reason="gate passed")
    reg.reject(R, "v2", "recall_at_75 0.6 does not beat 0.7")
    monkeypatch.setattr(cli_models, "_registry", lambda *_, **__: reg)
    return reg


def test_promoting_a_rejected_version_without_force_fails_and_says_how(
    registry: Registry,
) -> None:
    result = runner.invoke(cli_models.models_app, ["promote", "retriever", "v2"])
    assert result.exit_code != 0
    assert "rejected by the gate" in result.output and "--force --reason" in result.output
    assert registry.state().serving[R] == "v1"


def test_force_without_a_reason_fails(registry: Registry) -> None:
    result = runner.invoke(cli_models.models_app, ["promote", "retriever", "v2", "--force"])
    assert result.exit_code != 0 and "--force needs --reason" in result.output
    assert registry.state().serving[R] == "v1"


def test_force_with_a_reason_promotes_and_records_both(registry: Registry) -> None:
    args = ["promote", "retriever", "v2", "--force", "--reason", "agents prefer it"]
    result = runner.invoke(cli_models.models_app, args)
    assert result.exit_code == 0, result.output
    state = registry.state()
    assert state.serving[R] == "v2"
    event = state.versions[R]["v2"].event
    assert event is not None and event.action is LifecycleAction.PROMOTED
    assert event.reason == "forced: agents prefer it"


def test_a_version_the_gate_did_not_reject_needs_no_force(registry: Registry) -> None:
    registry.register(R, "v3", "/ckpt/v3")
    result = runner.invoke(cli_models.models_app, ["promote", "retriever", "v3"])
    assert result.exit_code == 0, result.output
    event = registry.state().versions[R]["v3"].event
    assert event is not None and event.reason == "manual promotion"
