"""The house rules the layout relies on: one place per annotation type, contracts
generated or checked against the Avro files, one vocabulary, one error base."""

from __future__ import annotations

import json
import typing

import pytest
from pydantic import BaseModel, SecretStr

from kernel import events as ev
from kernel.annotations import ANNOTATIONS, BY_TYPE, Annotation
from kernel.errors import AitlError, ContractError, DeliveryError, SecurityError
from kernel.reasons import REJECTING, Reason, rejects
from kernel.schemas import ROW_SCHEMA_DIR
from kernel.settings import KafkaSettings
from kernel.shards import ROW_SCHEMAS, ROW_TYPES
from streams import security
from streams.catalog import CATALOG, Topics
from streams.config import client_config
from streams.serde import AvroSerde, SerializationError, default_schemas


def test_every_annotation_module_is_discovered_and_wired() -> None:
    """Each type is found by discovery and reaches the verdict enum, the catalog and serde."""
    assert {a.__name__ for a in ANNOTATIONS} >= {
        "PairwisePreference",
        "AdoptionDecision",
        "KnowledgeRelevance",
        "MissingKnowledge",
    }
    assert set(BY_TYPE) == set(ev.ANNOTATION_TYPES)
    topics = Topics(KafkaSettings(topic_prefix="t."))
    assert sorted(topics.annotations) == sorted(f"t.{a.topic}" for a in ANNOTATIONS)
    assert {s.event for s in CATALOG if s.suffix.startswith("annotations.")} == set(ANNOTATIONS)
    schemas = default_schemas().current
    for cls in ANNOTATIONS:
        assert issubclass(cls, Annotation) and cls.schema_name in schemas
        assert ev.EVENT_TYPES[cls.event_type] is cls


def _field_type(model: type[BaseModel], name: str) -> object:
    return typing.get_type_hints(model)[name]


@pytest.mark.parametrize("cls", list(ev.EVENT_TYPES.values()), ids=lambda c: c.__name__)
def test_pii_fields_name_text_fields(cls: type[ev.Event]) -> None:
    """A misspelt redaction path would silently leave text unredacted."""
    for path in cls.pii_fields:
        name, _, sub = path.partition("[].")
        assert name in cls.model_fields, f"{cls.__name__}: no field {name}"
        if sub:
            (item,) = typing.get_args(_field_type(cls, name))
            assert _field_type(item, sub) in (str, str | None), f"{cls.__name__}.{path}"
        else:
            assert _field_type(cls, name) in (str, str | None), f"{cls.__name__}.{path}"


def test_redaction_follows_the_declared_fields() -> None:
    phone = "call +44 20 7946 0958"
    adoption = ev.AdoptionDecision(
        request_id="r",
        case_id="c",
        agent_id="a",
        decision=ev.Adoption.REJECTED,
        final_text=phone,
        rationale_text=phone,
    )
    out = adoption.redacted(lambda text: text.replace("+44 20 7946 0958", "[PHONE]"))
    assert out.final_text == out.rationale_text == "call [PHONE]"
    assert out.agent_id == "a"  # ids are never redacted


def test_row_types_and_arrow_schemas_follow_the_row_contracts() -> None:
    for component, row_type in ROW_TYPES.items():
        avro = json.loads((ROW_SCHEMA_DIR / f"{component.slug}.avsc").read_text())
        names = [f["name"] for f in avro["fields"]]
        assert names == list(typing.get_type_hints(row_type)), component
        assert ROW_SCHEMAS[component].names == names, component


def test_reason_codes_say_whether_they_reject() -> None:
    assert Reason.PREFERENCE_MISMATCH.rejects and not Reason.DEFERRED_ANNOTATION.rejects
    assert Reason.UNKNOWN_CANDIDATE("C") == "unknown_candidate:C"
    assert rejects("orphan: no suggestion") and not rejects("fatigue_volume_drop")
    assert not rejects("something_new:detail")  # an unknown code never rejects
    assert {r.value for r in Reason if r.rejects} == REJECTING


def test_one_vocabulary_for_components() -> None:
    assert ev.Component.parse("retriever") is ev.Component.parse("RETRIEVER")
    assert ev.Component.RANKER.slug == "ranker" and ev.Split.parse("eval") is ev.Split.EVAL
    with pytest.raises(ValueError, match="known: retriever, ranker, generator"):
        ev.Component.parse("embedder")


def test_the_same_sasl_mistake_raises_the_same_error_everywhere() -> None:
    broken = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_password=SecretStr("x"))
    with pytest.raises(SecurityError, match="AITL_KAFKA_SASL_MECHANISM") as checked:
        security.check(broken)
    with pytest.raises(SecurityError) as configured:
        client_config(broken)
    assert str(checked.value) == str(configured.value)


def test_errors_share_one_base_and_carry_context() -> None:
    with pytest.raises(SerializationError) as caught:
        AvroSerde().decode(b"\x00garbage", topic="t", partition=1, offset=7)
    err = caught.value
    assert isinstance(err, ContractError) and isinstance(err, AitlError)
    assert err.context["topic"] == "t" and err.context["offset"] == 7
    delivery = DeliveryError("not acknowledged", topic="t", partition=0, offset=3)
    assert str(delivery) == "not acknowledged (offset=3, partition=0, topic=t)"
