"""From a lifecycle ``artifact_uri`` to a local checkpoint directory and its model card.

Trainers write checkpoints to the checkpoint store (a local dir or any fsspec URL) with an
``aitl_model.json`` card (see :mod:`kernel.lifecycle`). Serving reads local paths and
``file://`` URIs in place and copies anything else (``s3://``, ``gs://``, ...) once into a
local cache keyed by the URI.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.errors import ModelError
from kernel.lifecycle import STOCK, read_model_card

DEFAULT_CACHE = Path.home() / ".cache" / "aitl" / "checkpoints"


class ChecksumMismatch(ModelError):
    """A checkpoint's files are not the ones registered: changed or half written."""


@dataclass(frozen=True)
class ModelSpec:
    """Which version a deployment serves; ``artifact_uri`` empty means the stock model.

    This is the deployments' ``user_config``: ``{"version", "artifact_uri", "sha256"}``.
    """

    version: str = STOCK
    artifact_uri: str = ""
    sha256: str = ""  # the registered checksum of the checkpoint; "" skips the check

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> ModelSpec:
        config = config or {}
        return cls(
            str(config.get("version") or STOCK),
            str(config.get("artifact_uri") or ""),
            str(config.get("sha256") or ""),
        )

    def to_config(self) -> dict[str, str]:
        return {"version": self.version, "artifact_uri": self.artifact_uri, "sha256": self.sha256}

    @property
    def is_stock(self) -> bool:
        return not self.artifact_uri


def local_checkpoint(uri: str, cache_dir: Path = DEFAULT_CACHE) -> Path:
    """A local directory holding the checkpoint at ``uri`` (fetched once if remote)."""
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if "://" not in uri:
        return Path(uri)
    import fsspec

    target = cache_dir / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if (target / ".complete").exists():
        return target
    fs, path = fsspec.core.url_to_fs(uri)
    tmp = target.with_name(target.name + ".tmp")
    fs.get(path.rstrip("/") + "/", str(tmp) + "/", recursive=True)
    tmp.rename(target)
    (target / ".complete").touch()
    return target


def checkpoint_sha256(directory: Path) -> str:
    """sha256 over a checkpoint directory: every file's relative path and bytes, in path
    order (the cache's ``.complete`` marker excluded). Recorded at registration."""
    digest = hashlib.sha256()
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != ".complete")
    for path in files:
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def load_card(
    uri: str, expected_component: str | None = None, sha256: str = ""
) -> tuple[Path, dict[str, Any]]:
    """The local checkpoint dir and its model card; checks the component when given, and
    the files against the registered ``sha256`` when there is one."""
    directory = local_checkpoint(uri)
    if sha256:
        found = checkpoint_sha256(directory)
        if found != sha256:
            raise ChecksumMismatch(
                f"{uri} does not match its registered checksum",
                expected=sha256[:12],
                found=found[:12],
            )
    card = read_model_card(directory)
    component = str(card.get("component", "")).lower()
    if expected_component and component and component != expected_component.lower():
        raise ModelError(f"{uri} is a {component} checkpoint, expected a {expected_component}")
    return directory, card
