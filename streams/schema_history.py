"""Frozen copies of every schema version, for the backward-compatibility check.

``aitl schemas freeze`` writes ``schemas/history/<Name>.v<N>.avsc`` (self-contained,
envelope inlined) for each current schema that has no frozen copy at its version yet.
A frozen copy is never rewritten: changing a schema means bumping ``aitl_version``.
"""

from __future__ import annotations

import json
from pathlib import Path

from streams.serde import SchemaSet


def freeze(schemas: SchemaSet) -> list[Path]:
    """Write missing frozen copies; returns the files written."""
    out_dir = schemas.directory / "history"
    out_dir.mkdir(exist_ok=True)
    written = []
    for name, sv in sorted(schemas.current.items()):
        path = out_dir / f"{name}.v{sv.version}.avsc"
        if path.exists():
            continue
        schema = dict(sv.schema) | {"aitl_version": sv.version}
        path.write_text(json.dumps(schema, indent=2) + "\n")
        written.append(path)
    return written
