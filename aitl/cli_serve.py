"""``aitl serve start|status|stop|load-knowledge``: the Ray Serve application.

``start`` runs Ray in its own process (or joins ``RAY_ADDRESS``), deploys the app, waits
until ``/healthz`` answers and stays in the foreground until stopped; ``--detach`` runs
that in the background with its log in ``<data_dir>/serve.log``. ``stop`` signals the
process recorded in ``<data_dir>/serve.json``, which removes the app and stops the Ray it
started (never a Ray it did not start).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console

from kernel.errors import InfraError
from kernel.settings import Settings, load_settings

app = typer.Typer(
    help="The Ray Serve application (retriever, ranker, generator).", no_args_is_help=True
)
console = Console()


def _state_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / "serve.json"


def _headers(settings: Settings) -> dict[str, str]:
    tokens = sorted(settings.token_set())
    return {"Authorization": f"Bearer {tokens[0]}"} if tokens else {}


def wait_healthy(
    url: str, timeout_s: float = 600.0, proc: subprocess.Popen[bytes] | None = None
) -> dict[str, Any]:
    """Poll ``{url}/healthz`` until it answers 200; returns its body."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise InfraError(f"the serving process exited with {proc.returncode}")
        try:
            r = httpx.get(f"{url}/healthz", timeout=15)
            if r.status_code == 200:
                body: dict[str, Any] = r.json()
                return body
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(2)
    raise TimeoutError(f"{url}/healthz not healthy after {timeout_s:.0f}s: {last}")


@app.command("start")
def start(
    detach: bool = typer.Option(False, help="run in the background; log to <data_dir>/serve.log"),
    timeout_s: float = typer.Option(900, help="how long to wait for /healthz"),
) -> None:
    """Deploy the application and serve until stopped (Ctrl-C or `aitl serve stop`)."""
    from serving.config import load_serving_settings

    settings, cfg = load_settings(), load_serving_settings()
    url = f"http://{cfg.host}:{cfg.port}"
    state = _state_file(settings)
    state.parent.mkdir(parents=True, exist_ok=True)
    if detach:
        log_path = state.with_name("serve.log")
        with log_path.open("ab") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "aitl.cli_serve", "start"],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        console.print(f"serving starting in the background (pid {proc.pid}, log {log_path})")
        body = wait_healthy(url, timeout_s, proc)
        console.print(f"[green]serving at {url}[/green] {json.dumps(body['model_versions'])}")
        return

    import ray
    from ray import serve

    from serving.app import start as start_app

    stopping = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    from streams.admin import ensure_topics

    ensure_topics(settings.kafka)  # idempotent: the suggestion, knowledge and model topics
    start_app(settings, cfg)
    # after ray.init, which installs its own SIGTERM handler that would exit at once
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    state.write_text(
        json.dumps(
            {"pid": os.getpid(), "url": url, "app": cfg.app_name, "ray_address": cfg.ray_address}
        )
    )
    try:
        body = wait_healthy(url, timeout_s)
        console.print(f"[green]serving at {url}[/green] {json.dumps(body['model_versions'])}")
        while not stopping:
            time.sleep(0.5)
    finally:
        console.print("stopping serving")
        state.unlink(missing_ok=True)
        if cfg.ray_address:
            serve.delete(cfg.app_name)
        else:
            serve.shutdown()
        ray.shutdown()


@app.command("status")
def status() -> None:
    """Model versions, knowledge index and health of the running application."""
    settings = load_settings()
    state = _state_file(settings)
    if not state.exists():
        console.print("serving is not running (no state file)")
        raise typer.Exit(code=1)
    info = json.loads(state.read_text())
    try:
        r = httpx.get(f"{info['url']}/healthz", timeout=15, headers=_headers(settings))
    except httpx.HTTPError as exc:
        console.print(f"[red]pid {info['pid']}: {info['url']} does not answer: {exc}[/red]")
        raise typer.Exit(code=1) from exc
    console.print_json(json.dumps({"pid": info["pid"], "url": info["url"], **r.json()}))
    if r.status_code != 200:
        raise typer.Exit(code=1)


@app.command("stop")
def stop(timeout_s: float = typer.Option(120, help="how long to wait for a clean stop")) -> None:
    """Stop the application started by `aitl serve start`."""
    settings = load_settings()
    state = _state_file(settings)
    if not state.exists():
        console.print("serving is not running")
        return
    pid = int(json.loads(state.read_text())["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        state.unlink(missing_ok=True)
        console.print(f"pid {pid} was already gone")
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            console.print("stopped")
            return
        time.sleep(0.5)
    console.print(f"[red]pid {pid} did not stop in {timeout_s:.0f}s[/red]")
    raise typer.Exit(code=1)


@app.command("load-knowledge")
def load_knowledge(
    dataset: Path = typer.Argument(..., help="a DSTC-format dataset directory"),
) -> None:
    """Publish a dataset's knowledge base as upsert events on the knowledge topic."""
    from serving.knowledge.dataset import load_dstc
    from serving.knowledge.indexer import knowledge_events
    from streams.producer import Publisher

    settings = load_settings()
    events = knowledge_events(load_dstc(dataset).knowledge)
    with Publisher(settings.kafka, producer_name="aitl-cli", tenant_id=settings.tenant_id) as pub:
        pub.publish_many(events)
    console.print(f"published {len(events)} knowledge objects from {dataset}")


if __name__ == "__main__":
    app()
