"""The agents' console and the flywheel page in a real browser (Debian's chromium driven
by Playwright) against the real gateway and broker.

``AITL_CONSOLE_SCREENSHOTS=docs/img`` also writes the README's screenshots.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

import kernel.events as ev
from aitl.console import create_console_app
from aitl.kafka_local import free_port
from kernel.settings import KafkaSettings, Settings
from streams.admin import ensure_topics
from streams.catalog import Topics
from streams.consumer import EventConsumer
from streams.producer import Publisher

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make system-deps installs it)"
)

AGENT_TOKEN = "agent-token-1"
LEAD_TOKEN = "lead-token-1"
SHOTS = os.environ.get("AITL_CONSOLE_SCREENSHOTS")
KNOWLEDGE = {
    "kb-roam": ("Roaming charges abroad", "Calls and data abroad are billed at roaming rates."),
    "kb-late": ("Late payment fee", "A fee of 5 EUR is added when a bill is paid late."),
    "kb-plan": ("Plan upgrades", "Upgrading mid-cycle bills both plans pro rata."),
    "kb-esim": ("eSIM activation", "Scan the QR code from the welcome email to add the eSIM."),
}


class Gateway:
    """A real uvicorn gateway (with the console) that a test can stop and start again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        app = create_console_app(self.settings, ack_timeout_s=3.0)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self._server.started, "the gateway did not start"

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)
            self._server = None


@pytest.fixture
def gateway(kafka_settings: KafkaSettings) -> Iterator[Gateway]:
    ensure_topics(kafka_settings)
    gw = Gateway(
        Settings(kafka=kafka_settings, api_tokens=AGENT_TOKEN, models_admin_tokens=LEAD_TOKEN)
    )
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    pg = context.new_page()
    yield pg
    context.close()


def publish_case(settings: KafkaSettings, case_id: str, request_id: str) -> None:
    """A live case as serving leaves it: knowledge, the customer's turn, the suggestion."""
    with Publisher(settings, producer_name="test") as pub:
        for kid, (title, text) in KNOWLEDGE.items():
            pub.publish(ev.KnowledgeChanged(knowledge_id=kid, op="UPSERT", title=title, text=text))
        pub.publish(
            ev.CustomerInteraction(
                case_id=case_id,
                customer_message="Why did my bill double after my trip to Spain?",
                history=[ev.Turn(speaker=ev.Speaker.AGENT, text="Hi! How can I help?")],
            )
        )
        shown = ["kb-late", "kb-plan", "kb-esim"]  # the roaming object is the one missing
        pub.publish(
            ev.SuggestionServed(
                request_id=request_id,
                case_id=case_id,
                query="bill doubled after trip",
                retrieved=[ev.ScoredKnowledge(knowledge_id=k, score=0.5) for k in shown],
                ranked=[ev.ScoredKnowledge(knowledge_id=k, score=0.5) for k in shown],
                candidates=[
                    ev.Candidate(candidate_id="A", text="A late fee was added.", model_version="g"),
                    ev.Candidate(
                        candidate_id="B", text="Your plan was upgraded.", model_version="g"
                    ),
                ],
            )
        )


def annotations(settings: KafkaSettings, expected: int, timeout_s: float = 30) -> list[Any]:
    """The annotation events on the test's topics: all ``expected`` and 2 s of quiet."""
    topics = Topics(settings).annotations
    out: list[Any] = []
    deadline, quiet_since = time.monotonic() + timeout_s, None
    with EventConsumer(settings, f"g-{uuid.uuid4().hex[:8]}", topics) as consumer:
        while time.monotonic() < deadline:
            batch = consumer.poll(100, 0.5)
            out.extend(d.event for d in batch.events)
            if len(out) >= expected:
                quiet_since = quiet_since or time.monotonic()
                if batch.events:
                    quiet_since = time.monotonic()
                if time.monotonic() - quiet_since > 2:
                    break
    return out


def open_case(page: Any, url: str, request_id: str) -> None:
    page.goto(f"{url}/console?request_id={request_id}#token={AGENT_TOKEN}&agent=agent-7")
    page.wait_for_selector(f"#case-label:has-text('{request_id}')", timeout=30_000)


def keys(page: Any, *pressed: str) -> int:
    for key in pressed:
        page.keyboard.press(key)
    return len(pressed)


def no_serious_violations(page: Any) -> None:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, bad


def screenshot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name))


def test_a_case_annotated_by_keyboard_reaches_the_four_topics(
    kafka_settings: KafkaSettings, gateway: Gateway, page: Any
) -> None:
    publish_case(kafka_settings, "case-kb", "req-kb")
    open_case(page, gateway.url, "req-kb")
    no_serious_violations(page)
    typed = keys(page, "b", "y", "n", "u")  # prefer B; late fee relevant, plan not, rest not
    page.keyboard.press("/")
    page.keyboard.type("roaming")
    keys(page, "Enter")
    page.wait_for_selector("#results button")
    keys(page, "ArrowDown", "Enter", "Escape")  # attach the first result, back to the case
    assert page.locator("#attached").inner_text().startswith("Roaming charges abroad")
    keys(page, "e", "End")
    page.keyboard.type(" Anything else?")
    keys(page, "Tab", "ArrowDown", "Tab")  # category: the second one, INCOMPLETE
    page.keyboard.type("asked for the trip dates")
    screenshot(page, "console.png")
    keys(page, "Control+Enter")
    page.wait_for_selector("#pending-count:text-is('0')", timeout=20_000)
    assert typed == 4
    assert "sent (edited)" in page.locator("#status").inner_text()

    got = {e.event_type: e for e in annotations(kafka_settings, 4)}
    assert sorted(got) == ["adoption", "missing-knowledge", "preference", "relevance"]
    for e in got.values():
        assert (e.request_id, e.case_id, e.agent_id) == ("req-kb", "case-kb", "agent-7")
        assert e.envelope.producer == "aitl-gateway"  # the edge stamps it, not the page
    assert got["preference"].preferred == ev.Preference.B
    adoption = got["adoption"]
    assert adoption.decision == ev.Adoption.EDITED and adoption.candidate_id == "B"
    assert adoption.final_text == "Your plan was upgraded. Anything else?"
    assert adoption.rationale_category == ev.RationaleCategory.INCOMPLETE
    assert adoption.rationale_text == "asked for the trip dates"
    labels = {lab.knowledge_id: lab.label for lab in got["relevance"].labels}
    assert labels == {
        "kb-late": ev.Relevance.RELEVANT,
        "kb-plan": ev.Relevance.IRRELEVANT,
        "kb-esim": ev.Relevance.IRRELEVANT,
    }
    missing = got["missing-knowledge"]
    assert [i.knowledge_id for i in missing.items] == ["kb-roam"]
    assert missing.timing == ev.AnnotationTiming.IMMEDIATE
    assert missing.looked_up_at <= missing.annotated_at
    # each event keeps the time of the decision, not of the send
    assert got["preference"].envelope.event_time < got["relevance"].envelope.event_time
    assert got["relevance"].envelope.event_time < adoption.envelope.event_time


def test_annotations_made_while_the_gateway_is_down_arrive_exactly_once(
    kafka_settings: KafkaSettings, gateway: Gateway, page: Any
) -> None:
    publish_case(kafka_settings, "case-down", "req-down")
    open_case(page, gateway.url, "req-down")
    gateway.stop()
    assert keys(page, "a", "y", "y", "u", "s") <= 10  # a typical case, sent as-is
    page.wait_for_selector("#pending-count:text-is('3')")
    page.keyboard.press("i")
    page.wait_for_selector("#outbox-list li:has-text('tries')")
    assert "network" in page.locator("#outbox-list").inner_text()
    pending_ids = page.evaluate(
        """() => new Promise((ok) => { const r = indexedDB.open("aitl-console");
        r.onsuccess = () => { const q = r.result.transaction("outbox").objectStore("outbox")
        .getAllKeys(); q.onsuccess = () => ok(q.result); }; })"""
    )
    time.sleep(2)  # a few failed retries while the gateway is down
    gateway.start()
    page.wait_for_selector("#pending-count:text-is('0')", timeout=30_000)
    got = annotations(kafka_settings, 3)
    ids = [str(e.envelope.event_id) for e in got]
    assert sorted(ids) == sorted(pending_ids), "each annotation exactly once, ids kept"
    assert sorted(e.event_type for e in got) == ["adoption", "preference", "relevance"]


def test_flywheel_page_shows_a_promotion_made_in_the_test(
    kafka_settings: KafkaSettings, gateway: Gateway, page: Any
) -> None:
    from trainers.registry import KafkaLifecycleLog, Registry

    log = KafkaLifecycleLog(kafka_settings)
    registry = Registry(log)
    for version, recall in (("retriever-v1", 0.81), ("retriever-v2", 0.86)):
        registry.register(
            ev.Component.RETRIEVER,
            version,
            f"file:///ckpt/{version}",
            metrics={"recall@75": recall},
        )
    registry.promote(ev.Component.RETRIEVER, "retriever-v1", reason="gate: +0.05")
    publish_case(kafka_settings, "case-fw", "req-fw")
    publish_verdicts(kafka_settings)

    page.goto(f"{gateway.url}/console/flywheel#token={LEAD_TOKEN}")
    page.wait_for_selector("h3:has-text('retriever: serving retriever-v1')", timeout=30_000)
    assert page.locator("#role").inner_text().startswith("models role")
    page.wait_for_selector("#agents td:has-text('p-careful')", timeout=15_000)
    page.wait_for_selector("#volume svg[aria-label*='preference 1']", timeout=15_000)
    no_serious_violations(page)
    screenshot(page, "flywheel.png")
    page.get_by_role("button", name="promote retriever-v2").click()
    page.wait_for_selector("#status:has-text('PROMOTED'), #status.error", timeout=30_000)
    assert "PROMOTED retriever-v2" in page.locator("#status").inner_text()
    page.wait_for_selector("h3:has-text('retriever: serving retriever-v2')", timeout=30_000)
    assert registry.state().serving[ev.Component.RETRIEVER] == "retriever-v2"
    page.get_by_role("button", name="roll back retriever").click()
    page.wait_for_selector("h3:has-text('retriever: serving retriever-v1')", timeout=30_000)
    log.close()

    with httpx.Client(base_url=gateway.url) as client:  # an agent's token has no models role
        agent = {"Authorization": f"Bearer {AGENT_TOKEN}"}
        r = client.post("/console/api/models/retriever/rollback", json={}, headers=agent)
        assert r.status_code == 403
        assert client.get("/console/api/flywheel", headers=agent).json()["can_manage"] is False


def publish_verdicts(settings: KafkaSettings) -> None:
    """An agent's annotations on req-fw, and the judge's verdicts on two agents."""
    with Publisher(settings, producer_name="test") as pub:
        ids = {"request_id": "req-fw", "case_id": "case-fw", "agent_id": "agent-7"}
        pub.publish(ev.PairwisePreference(**ids, preferred=ev.Preference.A))
        labels = [ev.RelevanceLabel(knowledge_id="kb-late", label=ev.Relevance.RELEVANT)]
        pub.publish(ev.KnowledgeRelevance(**ids, labels=labels))
        for i in range(6):
            for agent, accepted in (("p-careful", True), ("p-careless", i % 2 == 0)):
                pub.publish(
                    ev.JudgeVerdict(
                        annotation_event_id=uuid.uuid4(),
                        annotation_type="RELEVANCE",
                        request_id=f"r-{i}",
                        case_id=f"c-{i}",
                        agent_pseudonym=agent,
                        judge_name="rule",
                        judge_version="rule-4",
                        accepted=accepted,
                        reasons=[] if accepted else ["boilerplate_rationale"],
                    )
                )


@contextlib.contextmanager
def host_page(html: str) -> Iterator[str]:
    """The contact center's page, served from a loopback port of its own (Chromium does
    not let a page that is not on a local address frame one that is)."""
    body = html.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


HOST_PAGE = """<!doctype html><html lang="en"><title>contact center</title><body>
<iframe id="console" title="aitl console" src="{url}/console" width="1280" height="720"></iframe>
<script>
window.got = [];
addEventListener("message", (e) => {{
  window.got.push(e.data);
  if (e.data.type !== "aitl.ready") return;
  const frame = document.getElementById("console").contentWindow;
  frame.postMessage({{type: "aitl.init", token: "{token}", agent_id: "agent-9"}}, "{url}");
  frame.postMessage({{type: "aitl.case", request_id: "req-emb"}}, "{url}");
}});
</script></body></html>"""


def test_an_embedded_console_sends_then_annotates_the_case_later(
    kafka_settings: KafkaSettings, gateway: Gateway, page: Any
) -> None:
    """The contact center embeds the console from another origin, loads a case by
    postMessage and hears "sent"; the agent annotates it later from the deferred queue."""
    publish_case(kafka_settings, "case-emb", "req-emb")
    html = HOST_PAGE.format(url=gateway.url, token=AGENT_TOKEN)
    with host_page(html) as host:  # another origin: another port
        page.goto(host)
        frame = page.frame_locator("#console")
        frame.locator("#case-label:has-text('req-emb')").wait_for(timeout=30_000)
    frame.locator("#panel").focus()
    keys(page, "b", "d")  # send B as-is now, annotate later
    page.wait_for_function("window.got.some((m) => m.type === 'aitl.sent')")
    sent = page.evaluate("window.got.find((m) => m.type === 'aitl.sent')")
    assert sent == {
        "type": "aitl.sent",
        "request_id": "req-emb",
        "case_id": "case-emb",
        "decision": "AS_IS",
        "candidate_id": "B",
        "text": "Your plan was upgraded.",
    }
    time.sleep(1)  # the annotations come later: their times must say so
    keys(page, "q")
    frame.locator("#queue-list button:has-text('req-emb')").wait_for()
    keys(page, "Enter")
    frame.locator("#mode:text-is('deferred')").wait_for()
    keys(page, "b", "y", "u", "w")
    page.keyboard.type("roaming rates abroad")
    keys(page, "Enter", "Escape", "s")
    frame.locator("#pending-count:text-is('0')").wait_for(timeout=20_000)

    got = {e.event_type: e for e in annotations(kafka_settings, 4)}
    assert sorted(got) == ["adoption", "missing-knowledge", "preference", "relevance"]
    assert {e.agent_id for e in got.values()} == {"agent-9"}
    sent_at = got["adoption"].envelope.event_time
    assert got["adoption"].decision == ev.Adoption.AS_IS
    missing = got["missing-knowledge"]
    assert missing.timing == ev.AnnotationTiming.DEFERRED
    assert [i.text for i in missing.items] == ["roaming rates abroad"]
    assert missing.looked_up_at == sent_at  # when the agent handled the case
    assert (missing.annotated_at - sent_at).total_seconds() >= 1  # capture latency kept
    assert (got["preference"].envelope.event_time - sent_at).total_seconds() >= 1
