"""A real Prometheus (Debian's ``prometheus`` package) scrapes a running aitl process.

The gateway runs as ``aitl gateway start`` against the session's broker; Prometheus, on
a free loopback port with a temporary config and data dir, scrapes it every second and
loads the project's alert rules. Events posted to the gateway must show up in a query.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from aitl.kafka_local import free_port
from kernel.settings import KafkaSettings
from streams.admin import ensure_topics
from tests.factories import as_json, samples

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus not installed (apt-get install prometheus)"
)
TOKEN = "prom-test-token"
EVENTS = 7


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture
def gateway(kafka_settings: KafkaSettings, tmp_path: Path) -> Iterator[str]:
    """``aitl gateway start`` in its own process; yields its base URL."""
    ensure_topics(kafka_settings)
    port = free_port()
    env = os.environ | {
        "AITL_KAFKA_BOOTSTRAP": str(kafka_settings.bootstrap),
        "AITL_KAFKA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "AITL_API_TOKENS": TOKEN,
    }
    cmd = [sys.executable, "-m", "aitl", "gateway", "start", "--host", "127.0.0.1"]
    with open(tmp_path / "gateway.log", "wb") as log:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/healthz", proc)
        yield url
    finally:
        stop(proc)


@pytest.fixture
def prometheus(gateway: str, tmp_path: Path) -> Iterator[str]:
    """Prometheus scraping the gateway every second, with the project's rules loaded."""
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in sorted((ROOT / "deploy/prometheus/rules").glob("*.yml"))],
        "scrape_configs": [
            {
                "job_name": "aitl-gateway",
                "static_configs": [{"targets": [gateway.removeprefix("http://")]}],
            }
        ],
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    assert PROMETHEUS is not None
    cmd = [
        PROMETHEUS,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
    ]
    with open(tmp_path / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/-/ready", proc)
        yield url
    finally:
        stop(proc)


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5)
    answer.raise_for_status()
    body = answer.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_prometheus_scrapes_the_gateway_and_loads_the_rules(gateway: str, prometheus: str) -> None:
    events = [samples(case_id=f"case-{i}")["interaction"] for i in range(EVENTS)]
    with httpx.Client(base_url=gateway, timeout=30) as client:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        body = [as_json(e) for e in events]
        answer = client.post("/v1/events/interaction", json=body, headers=headers)
        assert answer.status_code == 202, answer.text
        assert client.post("/v1/events/interaction", json=body[:1]).status_code == 401

    promql = 'sum(aitl_gateway_events_total{event_type="interaction"})'
    deadline = time.monotonic() + 30
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = query(prometheus, promql)
        if result and float(result[0]["value"][1]) == EVENTS:
            break
        time.sleep(0.5)
    assert result and float(result[0]["value"][1]) == EVENTS, result

    up = query(prometheus, 'up{job="aitl-gateway"}')
    assert [float(r["value"][1]) for r in up] == [1.0]
    refused = query(prometheus, 'aitl_gateway_requests_total{status="401"}')
    assert [float(r["value"][1]) for r in refused] == [1.0]

    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded = {r["name"]: r for g in rules for r in g["rules"]}
    assert "AitlConsumerLagGrowing" in loaded and "aitl:consumer_lag:sum" in loaded
    assert all(r["health"] != "err" for r in loaded.values()), [
        (name, r.get("lastError")) for name, r in loaded.items() if r["health"] == "err"
    ]
    # the gateway is up, so the target-down alert must not be pending or firing
    assert loaded["AitlTargetDown"]["state"] == "inactive"
