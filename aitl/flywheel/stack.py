"""Start and stop the whole aitl stack on one machine: Kafka, processors, serving.

Each service runs as its own process, started through the ``aitl`` command line with its
settings in the environment (exactly how an operator runs them), logging to a file in
the work dir. Everything started here is stopped on exit, also on errors.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from aitl.kafka_local import LocalKafka, free_port
from kernel.errors import InfraError
from kernel.settings import KafkaSettings, Settings


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    stopped: bool = False  # stopped on purpose (not a crash)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        if not self.log.closed:
            self.log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout_s: float = 60) -> None:
        self.stopped = True
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if not self.log.closed:
            self.log.close()


@dataclass
class Stack:
    """A work dir with its own broker, topic prefix, stores and service ports."""

    workdir: Path
    topic_prefix: str = "aitl."
    bootstrap: str | None = None  # an existing cluster; None: start a local broker
    extra_env: dict[str, str] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    kafka: LocalKafka | None = None
    serve_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)

    # -- settings ---------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The environment every service of this stack reads its settings from."""
        assert self.bootstrap is not None, "start the broker first"
        w = self.workdir
        return {
            "AITL_KAFKA_BOOTSTRAP": self.bootstrap,
            "AITL_KAFKA_TOPIC_PREFIX": self.topic_prefix,
            "AITL_DATA_DIR": str(w),
            "AITL_SHARD_STORE": str(w / "shards"),
            "AITL_CHECKPOINT_STORE": str(w / "checkpoints"),
            "AITL_QDRANT_PATH": str(w / "qdrant"),
            "AITL_SERVE_PORT": str(self.serve_port),
            # one machine, loopback only: the services start without tokens (and say so)
            "AITL_AUTH": "off",
            "AITL_GATEWAY_PORT": str(self.gateway_port),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
        } | self.extra_env

    def settings(self) -> Settings:
        """The same settings, as an object for in-process work (trainers, clients)."""
        env = self.env()
        return Settings(
            kafka=KafkaSettings(
                bootstrap=env["AITL_KAFKA_BOOTSTRAP"], topic_prefix=self.topic_prefix
            ),
            data_dir=Path(env["AITL_DATA_DIR"]),
            shard_store=env["AITL_SHARD_STORE"],
            checkpoint_store=env["AITL_CHECKPOINT_STORE"],
            qdrant_path=Path(env["AITL_QDRANT_PATH"]),
            auth="off",
        )

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    # -- lifecycle --------------------------------------------------------------------
    def start_kafka(self, wait_s: float = 120) -> str:
        if self.bootstrap is None:
            self.kafka = LocalKafka(self.workdir / "kafka", free_port(), free_port())
            self.bootstrap = self.kafka.start(wait_s=wait_s)
        return self.bootstrap

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> Service:
        """Run ``aitl <args>`` as a service with this stack's settings."""
        log_path = self.workdir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 (closed by Service.stop)
        proc = subprocess.Popen(
            [sys.executable, "-m", "aitl", *args],
            env=os.environ | self.env() | (env or {}),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        service = Service(name, proc, log_path, log)
        self.services[name] = service
        return service

    def wait_serving(self, timeout_s: float = 900) -> dict[str, object]:
        """Wait for the Ray Serve application's /healthz (the serve process must live)."""
        from aitl.cli_serve import wait_healthy

        service = self.services["serve"]
        try:
            return dict(wait_healthy(self.serve_url, timeout_s, service.proc))
        except RuntimeError as exc:
            raise InfraError(f"{exc}:\n{service.tail()}") from exc

    def check(self) -> None:
        """Raise if a service died (services stopped on purpose are not checked)."""
        for service in self.services.values():
            if not service.stopped and not service.alive():
                raise RuntimeError(
                    f"{service.name} exited ({service.proc.returncode}):\n{service.tail()}"
                )

    def close(self) -> None:
        for name in reversed(list(self.services)):
            self.services[name].stop(timeout_s=120 if name == "serve" else 60)
        if self.kafka is not None:
            self.kafka.stop()

    def __enter__(self) -> Stack:
        # a SIGTERM (Ctrl-C's cousin from schedulers and CI) unwinds and stops the stack
        def terminate(_signum: int, _frame: object) -> None:
            raise SystemExit(143)

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, terminate)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
