"""The Avro contracts: round trips in both framings, evolution, and clear errors."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from kernel import events as ev
from streams.producer import InvalidEvent, validate_event
from streams.serde import AvroSerde, SchemaSet, SerializationError, default_schemas
from tests.factories import as_json, samples

ALL = samples()


def _field_names(schema: dict[str, Any]) -> set[str]:
    return {f["name"] for f in schema["fields"]}


@pytest.mark.parametrize("event_type", sorted(ALL))
def test_single_object_round_trip(event_type: str) -> None:
    serde = AvroSerde()
    event = ALL[event_type]
    data = serde.encode(event)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == serde.schemas[event.schema_name].fingerprint
    assert serde.decode(data) == event


@pytest.mark.parametrize("event_type", sorted(ALL))
def test_confluent_wire_round_trip(event_type: str) -> None:
    registry = SchemaRegistryClient.new_client({"url": "mock://aitl"})
    writer = AvroSerde(registry=registry)
    event = ALL[event_type]
    data = writer.encode(event, topic="aitl.x")
    assert data[:1] == b"\x00"
    schema_id = int.from_bytes(data[1:5], "big")
    assert registry.get_schema(schema_id).schema_type == "AVRO"
    # a fresh decoder (no cache) resolves the id through the registry
    assert AvroSerde(registry=registry).decode(data) == event


def test_decoder_accepts_both_framings() -> None:
    registry = SchemaRegistryClient.new_client({"url": "mock://aitl"})
    both = AvroSerde(registry=registry)
    event = ALL["preference"]
    assert both.decode(AvroSerde().encode(event)) == event
    assert both.decode(both.encode(event, topic="t")) == event


def test_fingerprint_is_the_avro_spec_crc64() -> None:
    """Rabin CRC-64-AVRO, written from the spec, agrees with the encoded header."""
    empty = 0xC15D213AA4D7A795

    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)

    def crc64(data: bytes) -> int:
        fp = empty
        for b in data:
            fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
        return fp

    for sv in default_schemas().current.values():
        assert sv.fingerprint == crc64(sv.canonical.encode()).to_bytes(8, "little")


def test_models_mirror_schemas() -> None:
    """Every schema has a model with exactly its fields, and back."""
    schemas = default_schemas()
    assert set(schemas.current) == set(ev.BY_SCHEMA)
    for name, sv in schemas.current.items():
        model = ev.BY_SCHEMA[name]
        assert _field_names(sv.schema) == set(model.model_fields), name
        assert _field_names(sv.schema["fields"][0]["type"]) == set(ev.Envelope.model_fields)


def test_every_schema_frozen_at_its_version() -> None:
    """A schema change needs a version bump and a frozen copy (`aitl schemas freeze`)."""
    schemas = default_schemas()
    for name, sv in schemas.current.items():
        frozen = [h for h in schemas.history(name) if h.version == sv.version]
        assert frozen, f"{name} v{sv.version} has no frozen copy in schemas/history/"
        assert frozen[0].canonical == sv.canonical, (
            f"{name} changed without bumping aitl_version (frozen v{sv.version} differs)"
        )


def _default_record(schema: Any, named: dict[str, Any]) -> Any:
    """A minimal valid record for any schema (to write with old writer schemas)."""
    if isinstance(schema, str):
        prim = {
            "string": "x",
            "int": 1,
            "long": 1,
            "float": 1.0,
            "double": 1.0,
            "boolean": True,
            "null": None,
            "bytes": b"x",
        }
        return prim[schema] if schema in prim else _default_record(named[schema], named)
    if isinstance(schema, list):
        return _default_record(schema[0], named)
    t = schema["type"]
    if t == "record":
        named[schema["name"]] = named[f"{schema.get('namespace', 'ai.aitl')}.{schema['name']}"] = (
            schema
        )
        return {f["name"]: _default_record(f["type"], named) for f in schema["fields"]}
    if t == "enum":
        named[schema["name"]] = schema
        return schema["symbols"][0]
    if t == "array":
        return [_default_record(schema["items"], named)]
    if t == "map":
        return {"k": _default_record(schema["values"], named)}
    if schema.get("logicalType") == "uuid":
        return "6f1c2a4e-0c1b-4a57-9d3e-3a1f2b0c9d8e"
    return _default_record(t, named)


def test_every_schema_reads_all_its_history() -> None:
    """BACKWARD compatibility: today's reader decodes data written with every old version."""
    schemas = default_schemas()
    checked = 0
    for name, current in schemas.current.items():
        for old in schemas.history(name):
            record = _default_record(old.schema, {})
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, old.parsed, record)
            buf.seek(0)
            fastavro.schemaless_reader(buf, old.parsed, current.parsed)
            checked += 1
    assert checked >= len(schemas.current)


def test_backward_check_catches_a_breaking_change(tmp_path: Any) -> None:
    """Adding a field without a default breaks old data: the resolution check must fail."""
    base = default_schemas().directory
    (tmp_path / "history").mkdir()
    for f in base.glob("*.avsc"):
        (tmp_path / f.name).write_text(f.read_text())
    for f in (base / "history").glob("*.avsc"):
        (tmp_path / "history" / f.name).write_text(f.read_text())
    raw = json.loads((tmp_path / "pairwise_preference.avsc").read_text())
    raw["fields"].append({"name": "confidence", "type": "float"})
    raw["aitl_version"] = 2
    (tmp_path / "pairwise_preference.avsc").write_text(json.dumps(raw))
    schemas = SchemaSet(tmp_path)
    old = next(schemas.history("PairwisePreference"))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, old.parsed, _default_record(old.schema, {}))
    buf.seek(0)
    with pytest.raises(fastavro.read.SchemaResolutionError):
        fastavro.schemaless_reader(buf, old.parsed, schemas["PairwisePreference"].parsed)


def test_old_writer_decodes_into_current_model(tmp_path: Any) -> None:
    """An event written with an older schema version decodes (new field takes its default)."""
    base = default_schemas().directory
    (tmp_path / "history").mkdir()
    for f in base.glob("*.avsc"):
        (tmp_path / f.name).write_text(f.read_text())
    for f in (base / "history").glob("*.avsc"):
        (tmp_path / "history" / f.name).write_text(f.read_text())
    raw = json.loads((tmp_path / "pairwise_preference.avsc").read_text())
    raw["fields"].append({"name": "note", "type": "string", "default": ""})
    raw["aitl_version"] = 2
    (tmp_path / "pairwise_preference.avsc").write_text(json.dumps(raw))
    old_data = AvroSerde().encode(ALL["preference"])
    name, record = AvroSerde(SchemaSet(tmp_path)).decode_record(old_data)
    assert name == "PairwisePreference" and record["note"] == ""
    assert record["preferred"] == "A"


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"\xc3\x01" + b"\x00" * 8 + b"abc", "unknown schema fingerprint"),
        (b"hello world, not avro", "unknown framing"),
        (b"\x00\x00\x00\x00\x07abc", "no Schema Registry"),
    ],
)
def test_garbage_raises_serialization_error(data: bytes, reason: str) -> None:
    with pytest.raises(SerializationError, match=reason) as info:
        AvroSerde().decode(data, topic="t", partition=3, offset=17)
    assert "[t/3@17]" in str(info.value)


def test_truncated_body_is_reported() -> None:
    data = AvroSerde().encode(ALL["adoption"])
    with pytest.raises(SerializationError, match="corrupt AdoptionDecision"):
        AvroSerde().decode(data[:-20])


def test_schema_valid_but_semantically_invalid_is_a_validate_error() -> None:
    serde = AvroSerde()
    record = ALL["suggestion"].to_avro()
    record["candidates"] = record["candidates"][:1]
    data = serde.encode_record("SuggestionServed", record)
    with pytest.raises(SerializationError, match="exactly two candidates") as info:
        serde.decode(data)
    assert info.value.kind == "validate"


def test_validation_names_the_field() -> None:
    payload = as_json(ALL["adoption"])
    payload["decision"] = "MAYBE"
    del payload["final_text"]
    with pytest.raises(InvalidEvent) as info:
        validate_event(payload, "adoption")
    assert set(info.value.errors) == {"decision", "final_text"}
    assert "AS_IS" in info.value.errors["decision"]


def test_cross_field_rules() -> None:
    payload = as_json(ALL["adoption"])
    payload["decision"] = "REJECTED"
    with pytest.raises(InvalidEvent, match="candidate_id must be null"):
        validate_event(payload, "adoption")
    mk = as_json(ALL["missing-knowledge"])
    mk["items"] = [{}]
    with pytest.raises(InvalidEvent, match="needs a knowledge_id, text or url"):
        validate_event(mk, "missing-knowledge")
    naive = as_json(ALL["preference"]) | {"envelope": {"event_time": "2026-01-01T00:00:00"}}
    with pytest.raises(InvalidEvent, match="timezone"):
        validate_event(naive, "preference")


def test_unknown_event_type_lists_known() -> None:
    with pytest.raises(InvalidEvent, match="known: adoption"):
        validate_event({}, "nope")


def test_json_round_trip_through_validation() -> None:
    for event_type, event in ALL.items():
        again = validate_event(event.model_dump(mode="json"), event_type)
        assert again == event
