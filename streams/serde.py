"""Avro binary serde for every aitl event.

Two framings, and the decoder accepts both:

* **Single-object encoding** (the Avro spec; default): ``C3 01`` + the writer schema's
  8-byte little-endian CRC-64-AVRO fingerprint + the Avro body. No registry needed: the
  fingerprint names the writer schema, found among the current and frozen schemas.
* **Confluent wire format** (when a Schema Registry is configured): ``00`` + 4-byte
  big-endian schema id + body; subjects follow TopicNameStrategy (``<topic>-value``).

Old writer schemas are resolved against the current reader schema, so consumers keep
reading events produced before a (backward compatible) schema change.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form
from pydantic import ValidationError

from kernel.errors import ContractError
from kernel.events import BY_SCHEMA, Event

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

from kernel.schemas import SCHEMA_DIR  # noqa: E402

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
ENVELOPE_NAME = "ai.aitl.Envelope"


class SerializationError(ContractError):
    """An event could not be encoded or decoded; says where it came from."""

    def __init__(
        self,
        message: str,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
        kind: str = "decode",
    ) -> None:
        where = "" if topic is None else f" [{topic}/{partition}@{offset}]"
        super().__init__(f"{message}{where}")
        self.context = {"topic": topic, "partition": partition, "offset": offset, "kind": kind}
        self.reason = message
        self.topic, self.partition, self.offset, self.kind = topic, partition, offset, kind


@dataclass(frozen=True)
class SchemaVersion:
    """One schema (current or frozen), self-contained (the envelope inlined)."""

    name: str
    version: int
    schema: dict[str, Any]
    parsed: Any
    canonical: str
    fingerprint: bytes  # 8 bytes, little-endian, as single-object encoding writes it

    @property
    def json(self) -> str:
        return json.dumps(self.schema, separators=(",", ":"))


def _inline_envelope(node: Any, envelope: dict[str, Any]) -> Any:
    if node == ENVELOPE_NAME:
        return envelope
    if isinstance(node, dict):
        return {k: _inline_envelope(v, envelope) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_envelope(v, envelope) for v in node]
    return node


def _version(name: str, version: int, schema: dict[str, Any]) -> SchemaVersion:
    canonical = to_parsing_canonical_form(schema)
    # fastavro spells the fingerprint as the hex of its little-endian bytes
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    return SchemaVersion(name, version, schema, fastavro.parse_schema(schema), canonical, fp)


class SchemaSet:
    """The current schemas of ``schemas/`` and their frozen history, parsed once."""

    def __init__(self, directory: Path = SCHEMA_DIR) -> None:
        self.directory = directory
        envelope = json.loads((directory / "envelope.avsc").read_text())
        self.current: dict[str, SchemaVersion] = {}
        self.by_fingerprint: dict[bytes, SchemaVersion] = {}
        self.frozen: dict[str, list[SchemaVersion]] = {}
        for path in sorted(directory.glob("*.avsc")):
            if path.name == "envelope.avsc":
                continue
            raw = json.loads(path.read_text())
            short = raw["name"]
            sv = _version(short, int(raw.get("aitl_version", 1)), _inline_envelope(raw, envelope))
            self.current[short] = sv
            self.by_fingerprint[sv.fingerprint] = sv
        for path in sorted((directory / "history").glob("*.avsc")):
            raw = json.loads(path.read_text())
            sv = _version(raw["name"], int(raw.get("aitl_version", 1)), raw)
            self.frozen.setdefault(sv.name, []).append(sv)
            self.by_fingerprint.setdefault(sv.fingerprint, sv)

    def history(self, name: str) -> Iterator[SchemaVersion]:
        """Frozen versions of one schema, oldest first."""
        yield from sorted(self.frozen.get(name, []), key=lambda sv: sv.version)

    def __getitem__(self, name: str) -> SchemaVersion:
        return self.current[name]


@cache
def default_schemas() -> SchemaSet:
    return SchemaSet()


class AvroSerde:
    """Encodes events to Avro binary and decodes either framing back to events."""

    def __init__(
        self, schemas: SchemaSet | None = None, registry: SchemaRegistryClient | None = None
    ) -> None:
        self.schemas = schemas or default_schemas()
        self.registry = registry
        self._ids: dict[tuple[str, str], int] = {}
        self._by_id: dict[int, SchemaVersion] = {}

    # -- encode ---------------------------------------------------------------------
    def encode(self, event: Event, topic: str | None = None) -> bytes:
        return self.encode_record(event.schema_name, event.to_avro(), topic)

    def encode_record(self, name: str, record: dict[str, Any], topic: str | None = None) -> bytes:
        sv = self.schemas[name]
        buf = io.BytesIO()
        if self.registry is None:
            buf.write(SINGLE_OBJECT_MAGIC + sv.fingerprint)
        else:
            if topic is None:
                raise SerializationError("a topic is needed for the Schema Registry subject")
            buf.write(CONFLUENT_MAGIC + struct.pack(">I", self._schema_id(topic, sv)))
        try:
            fastavro.schemaless_writer(buf, sv.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise SerializationError(f"{name}: {exc}", topic=topic, kind="encode") from exc
        return buf.getvalue()

    def _schema_id(self, topic: str, sv: SchemaVersion) -> int:
        key = (topic, sv.canonical)
        if key not in self._ids:
            from confluent_kafka.schema_registry import Schema

            assert self.registry is not None
            sid = self.registry.register_schema(f"{topic}-value", Schema(sv.json, "AVRO"))
            self._ids[key] = sid
            self._by_id[sid] = sv
        return self._ids[key]

    # -- decode ---------------------------------------------------------------------
    def decode_record(
        self,
        data: bytes | None,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Decode either framing to (schema name, record in the current reader schema)."""

        def fail(message: str) -> SerializationError:
            return SerializationError(message, topic=topic, partition=partition, offset=offset)

        if data is None or len(data) < 5:
            raise fail("empty or truncated message")
        if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
            writer = self.schemas.by_fingerprint.get(data[2:10])
            if writer is None:
                raise fail(f"unknown schema fingerprint {data[2:10].hex()}")
            body = data[10:]
        elif data[:1] == CONFLUENT_MAGIC:
            writer = self._writer_by_id(struct.unpack(">I", data[1:5])[0], fail)
            body = data[5:]
        else:
            raise fail(f"not Avro: unknown framing {data[:2].hex()}")
        reader = self.schemas.current.get(writer.name)
        if reader is None:
            raise fail(f"no current schema named {writer.name}")
        try:
            fo = io.BytesIO(body)
            record = fastavro.schemaless_reader(fo, writer.parsed, reader.parsed)
            if fo.tell() != len(body):
                raise ValueError(f"{len(body) - fo.tell()} trailing bytes")
        except Exception as exc:  # fastavro raises many types on corrupt bodies
            raise fail(f"corrupt {writer.name} body: {exc}") from exc
        assert isinstance(record, dict)
        return writer.name, record

    def _writer_by_id(self, sid: int, fail: Callable[[str], SerializationError]) -> SchemaVersion:
        if sid in self._by_id:
            return self._by_id[sid]
        if self.registry is None:
            raise fail(
                f"Confluent-framed message (schema id {sid}) but no Schema Registry is configured"
            )
        try:
            raw = json.loads(self.registry.get_schema(sid).schema_str or "")
        except Exception as exc:
            raise fail(f"schema id {sid} not found in registry: {exc}") from exc
        sv = _version(raw["name"], int(raw.get("aitl_version", 1)), raw)
        self._by_id[sid] = sv
        return sv

    def decode(
        self,
        data: bytes | None,
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> Event:
        """Decode and validate into the event's pydantic model."""
        name, record = self.decode_record(data, topic=topic, partition=partition, offset=offset)
        try:
            return BY_SCHEMA[name].from_avro(record)
        except ValidationError as exc:
            raise SerializationError(
                f"invalid {name}: {describe_validation_error(exc)}",
                topic=topic,
                partition=partition,
                offset=offset,
                kind="validate",
            ) from exc


def describe_validation_error(exc: ValidationError) -> str:
    """One line per failing field: ``field.path: message``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(event)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
