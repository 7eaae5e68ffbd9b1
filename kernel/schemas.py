"""Where the Avro contracts live, and what the kernel reads from them directly.

The ``.avsc`` files in ``schemas/`` are the one source of the wire contract; the kernel
derives what it can from them instead of writing it again: the annotation types a verdict
may name (the ``AnnotationType`` enum's symbols) and the Arrow schemas of the training rows
(``schemas/rows/``).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
ROW_SCHEMA_DIR = SCHEMA_DIR / "rows"


@cache
def load(name: str, directory: Path = SCHEMA_DIR) -> dict[str, Any]:
    """The parsed ``.avsc`` file ``name`` (e.g. ``judge_verdict.avsc``)."""
    schema: dict[str, Any] = json.loads((directory / name).read_text())
    return schema


def enum_symbols(name: str, field: str) -> tuple[str, ...]:
    """The symbols of the enum that field ``field`` of schema file ``name`` declares."""
    for f in load(name)["fields"]:
        if f["name"] == field:
            return tuple(f["type"]["symbols"])
    raise KeyError(f"{name} has no enum field {field!r}")


_PRIMITIVES = {
    "string": pa.string(),
    "float": pa.float32(),
    "double": pa.float64(),
    "int": pa.int32(),
    "long": pa.int64(),
    "boolean": pa.bool_(),
}


def _arrow_type(avro: Any) -> pa.DataType:
    if isinstance(avro, str):
        return _PRIMITIVES[avro]
    if isinstance(avro, list):  # ["null", X]: Arrow columns are nullable anyway
        (inner,) = [t for t in avro if t != "null"]
        return _arrow_type(inner)
    if avro.get("logicalType") == "timestamp-millis":
        return pa.timestamp("ms", tz="UTC")
    if avro["type"] == "array":
        return pa.list_(_arrow_type(avro["items"]))
    return _arrow_type(avro["type"])


def arrow_schema(avro: dict[str, Any]) -> pa.Schema:
    """The Arrow schema of an Avro record of primitives, arrays and timestamps."""
    return pa.schema([(f["name"], _arrow_type(f["type"])) for f in avro["fields"]])


def row_schema(name: str) -> pa.Schema:
    """The Arrow schema of the training rows ``schemas/rows/<name>.avsc`` declares."""
    return arrow_schema(load(f"{name}.avsc", ROW_SCHEMA_DIR))
