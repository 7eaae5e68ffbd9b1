"""A checkpoint is served only if its files are the ones registered."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from kernel.checkpoints import ChecksumMismatch, ModelSpec, checkpoint_sha256, load_card
from kernel.errors import ModelError
from kernel.events import Component
from kernel.lifecycle import write_model_card
from serving.app import _Swappable
from serving.watcher import SWAP_FAILURES


def _checkpoint(root: Path) -> Path:
    directory = root / "generator" / "g-1"
    (directory / "adapter").mkdir(parents=True)
    (directory / "adapter" / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    write_model_card(directory, component="generator", version="g-1", kind="causal-lm")
    return directory


def test_the_checksum_covers_every_file_and_nothing_else(tmp_path: Path) -> None:
    directory = _checkpoint(tmp_path)
    first = checkpoint_sha256(directory)
    assert first == checkpoint_sha256(directory)  # stable
    (directory / ".complete").touch()  # the download cache's marker is not the model
    assert checkpoint_sha256(directory) == first
    (directory / "adapter" / "weights.bin").write_bytes(b"\x00\x02" * 1000)
    assert checkpoint_sha256(directory) != first
    (directory / "adapter" / "weights.bin").write_bytes(b"\x00\x01" * 1000)
    (directory / "adapter" / "weights.bin").rename(directory / "adapter" / "other.bin")
    assert checkpoint_sha256(directory) != first  # the paths count, not only the bytes


def test_a_checkpoint_that_changed_after_registration_does_not_load(tmp_path: Path) -> None:
    directory = _checkpoint(tmp_path)
    registered = checkpoint_sha256(directory)
    assert load_card(f"file://{directory}", "generator", registered)[0] == directory
    (directory / "adapter" / "weights.bin").write_bytes(b"tampered")
    with pytest.raises(ChecksumMismatch, match="registered checksum") as refused:
        load_card(f"file://{directory}", "generator", registered)
    assert isinstance(refused.value, ModelError)
    assert load_card(f"file://{directory}", "generator")[0] == directory  # no sha: no check


class _Replica(_Swappable):
    component = Component.GENERATOR

    def __init__(self) -> None:
        self.spec = ModelSpec()
        self._swap_lock = threading.Lock()
        self.swap_error: str | None = None
        self.watcher = None
        self.loaded: list[str] = []

    def _load(self, spec: ModelSpec) -> None:
        load_card(spec.artifact_uri, "generator", spec.sha256)
        self.loaded.append(spec.version)


def test_serving_keeps_the_old_version_and_counts_a_checksum_refusal(tmp_path: Path) -> None:
    directory = _checkpoint(tmp_path)
    good = ModelSpec("g-1", f"file://{directory}", checkpoint_sha256(directory))
    replica = _Replica()
    replica.apply_spec(good)
    assert replica.spec == good and replica.loaded == ["g-1"]
    counter = SWAP_FAILURES.labels("generator", "checksum")
    before = counter._value.get()
    forged = ModelSpec("g-2", f"file://{directory}", "0" * 64)
    with pytest.raises(ChecksumMismatch):
        replica.apply_spec(forged)
    assert replica.spec == good and replica.loaded == ["g-1"]  # still serving g-1
    assert replica.swap_error is not None and replica.swap_error.startswith("g-2:")
    assert counter._value.get() == before + 1
