"""A real single-node Apache Kafka broker (KRaft, broker+controller) that aitl runs itself.

The jars come from Maven Central through ``deploy/kafka/pom.xml`` into
``~/.cache/aitl/kafka-<version>/lib``; the broker keeps its config, data, logs and pid
file in one data dir, so ``stop()`` then ``start()`` on that dir keeps every message.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from kernel.errors import InfraError
from kernel.settings import KafkaSettings

_log = logging.getLogger(__name__)

DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy" / "kafka"
# log4j2's own shutdown hook would race Kafka's and cut the shutdown lines from server.log.
JVM_OPTS = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-Djava.awt.headless=true",
    "-Dlog4j2.shutdownHookEnabled=false",
)
# The jars every broker start needs; a copy missing one of them is not complete.
REQUIRED_JARS = ("kafka_2.13", "kafka-server", "kafka-storage", "kafka-metadata", "kafka-clients")
_HOST = "127.0.0.1"
_STAMP = ".complete"


class LocalKafkaError(InfraError):
    """The local broker could not be set up, started or stopped."""


@dataclass(frozen=True)
class KafkaStatus:
    """What ``aitl kafka status`` reports."""

    running: bool
    pid: int | None
    bootstrap: str
    version: str
    data_dir: Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


@functools.cache
def find_java(java_home: Path | None = None) -> Path:
    """The ``java`` of ``java_home`` (the caller's ``$JAVA_HOME``) or of PATH, at least 17."""
    candidate = java_home / "bin" / "java" if java_home else None
    if candidate is None or not candidate.is_file():
        found = shutil.which("java")
        if found is None:
            raise LocalKafkaError(
                "java not found: install Java 17+ (apt-get install openjdk-17-jre-headless) "
                "or set JAVA_HOME"
            )
        candidate = Path(found)
    out = subprocess.run(
        [str(candidate), "-version"], capture_output=True, text=True, check=False
    ).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match is None:
        raise LocalKafkaError(f"cannot read the version of {candidate}: {out.strip()!r}")
    major = int(match.group(1))
    if major == 1:  # "1.8.0_392" is Java 8
        major = int(match.group(2) or 0)
    if major < 17:
        raise LocalKafkaError(f"Kafka 4 needs Java 17+, but {candidate} is Java {major}")
    return candidate


def random_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, base64url without padding (as Kafka's Uuid)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):  # Kafka avoids ids that read as a CLI flag
            return cid


@dataclass
class LocalKafka:
    """One combined broker+controller listening on 127.0.0.1, optionally with SASL/PLAIN."""

    data_dir: Path
    port: int = 9092
    controller_port: int = 9093
    version: str = "4.1.2"
    partitions: int = 6
    sasl_plain_users: Mapping[str, str] | None = field(default=None, repr=False)
    java_home: Path | None = None
    cache_root: Path = field(default_factory=lambda: Path.home() / ".cache" / "aitl")
    deploy_dir: Path = DEPLOY_DIR
    on_step: Callable[[str], None] | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        for user, password in (self.sasl_plain_users or {}).items():
            if not user or any(c in user + password for c in '"\\\n '):
                raise LocalKafkaError(f"SASL user {user!r}: no quotes, backslashes or spaces")

    @classmethod
    def from_settings(cls, settings: KafkaSettings, **overrides: Any) -> LocalKafka:
        """The local broker the settings describe; SASL/PLAIN settings become its one user."""
        users = None
        if settings.security_protocol == "SASL_PLAINTEXT" and settings.sasl_mechanism == "PLAIN":
            if not settings.sasl_username or settings.sasl_password is None:
                raise LocalKafkaError("SASL/PLAIN needs sasl_username and sasl_password")
            users = {settings.sasl_username: settings.sasl_password.get_secret_value()}
        kwargs: dict[str, Any] = {
            "data_dir": settings.local_dir,
            "port": settings.local_port,
            "controller_port": settings.local_controller_port,
            "version": settings.version,
            "partitions": settings.default_partitions,
            "sasl_plain_users": users,
        }
        return cls(**(kwargs | overrides))

    @property
    def lib_dir(self) -> Path:
        return self.cache_root / f"kafka-{self.version}" / "lib"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "kafka.pid"

    @property
    def bootstrap(self) -> str:
        return f"{_HOST}:{self.port}"

    def client_config(self) -> dict[str, str]:
        """confluent-kafka settings that reach this broker (as the first SASL user)."""
        conf = {"bootstrap.servers": self.bootstrap}
        if self.sasl_plain_users:
            user, password = next(iter(self.sasl_plain_users.items()))
            conf |= {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "PLAIN",
                "sasl.username": user,
                "sasl.password": password,
            }
        return conf

    def _step(self, message: str) -> None:
        (self.on_step or _log.info)(message)

    def ensure_jars(self) -> Path:
        """Copy the broker's jars into the cache with Maven unless a complete copy is there."""
        stamp = self.lib_dir.parent / _STAMP
        if stamp.is_file() and self.lib_dir.is_dir():
            return self.lib_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalKafkaError("mvn not found: install Maven (apt-get install maven)")
        pom = self.deploy_dir / "pom.xml"
        if not pom.is_file():
            raise LocalKafkaError(f"{pom} is missing: run aitl from a source checkout")
        tmp = self.lib_dir.with_name(f"lib.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        self._step(f"[1/2] resolving Kafka {self.version} jars from Maven Central (mvn)")
        cmd = [mvn, "-q", "-B", "-f", str(pom), f"-Dkafka.version={self.version}",
               "dependency:copy-dependencies", f"-DoutputDirectory={tmp}",
               "-DincludeScope=runtime"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            out = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
            raise LocalKafkaError(f"mvn failed ({done.returncode}):\n{out}")
        jars = {p.name for p in tmp.glob("*.jar")}
        missing = [j for j in REQUIRED_JARS if f"{j}-{self.version}.jar" not in jars]
        if missing:
            raise LocalKafkaError(f"mvn copied no {', '.join(missing)} jar into {tmp}")
        self._step(f"[2/2] caching {len(jars)} jars in {self.lib_dir}")
        shutil.rmtree(self.lib_dir, ignore_errors=True)
        tmp.rename(self.lib_dir)
        stamp.write_text(f"{self.version}\n")
        return self.lib_dir

    def _server_properties(self) -> str:
        listener = "SASL_PLAINTEXT" if self.sasl_plain_users else "PLAINTEXT"
        external = f"{listener}://{_HOST}:{self.port}"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{_HOST}:{self.controller_port}",
            "listeners": f"{external},CONTROLLER://{_HOST}:{self.controller_port}",
            "advertised.listeners": external,
            "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": listener,
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.data_dir / "data"),
            "num.partitions": str(self.partitions),
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
        }
        if self.sasl_plain_users:
            # The broker reaches itself over the same listener, as a user of its own.
            broker_secret = secrets.token_urlsafe(24)
            users = {"aitl-broker": broker_secret, **self.sasl_plain_users}
            entries = " ".join(f'user_{name}="{pw}"' for name, pw in users.items())
            jaas = (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f'username="aitl-broker" password="{broker_secret}" {entries};'
            )
            props |= {
                "sasl.enabled.mechanisms": "PLAIN",
                "sasl.mechanism.inter.broker.protocol": "PLAIN",
                f"listener.name.{listener.lower()}.plain.sasl.jaas.config": jaas,
            }
        header = "# Written by aitl/kafka_local.py on every start; edits are overwritten.\n"
        return header + "".join(f"{key}={value}\n" for key, value in props.items())

    def _write_config(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        # The file holds SASL secrets: readable by its owner only.
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(self._server_properties())

    def _java(self, main: str, *args: str, jvm: tuple[str, ...]) -> list[str]:
        logs = (
            f"-Dkafka.logs.dir={self.log_dir}",
            f"-Dlog4j2.configurationFile={self.deploy_dir / 'log4j2.yaml'}",
        )
        java = find_java(self.java_home)
        return [str(java), *jvm, *logs, "-cp", f"{self.lib_dir}/*", main, *args]

    def _format_storage(self) -> None:
        if (self.data_dir / "data" / "meta.properties").is_file():
            return
        self._step(f"formatting KRaft storage in {self.data_dir / 'data'}")
        cmd = self._java(
            "kafka.tools.StorageTool", "format", "--standalone",
            "-t", random_cluster_id(), "-c", str(self.config_path),
            jvm=("-Xmx256m",),
        )  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise LocalKafkaError(f"kafka-storage format failed:\n{done.stdout}{done.stderr}")

    def _pid(self) -> int | None:
        """The broker's pid if it runs: the pid file names a live java with our config."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if self._proc is not None and self._proc.pid == pid:
            return pid if self._proc.poll() is None else None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return None
        alive = state not in ("Z", "X") and str(self.config_path) in cmdline
        return pid if alive else None

    def is_running(self) -> bool:
        """Whether this data dir's broker process is alive (not whether it is ready)."""
        return self._pid() is not None

    def status(self) -> KafkaStatus:
        """The broker's pid, address, version and data dir."""
        pid = self._pid()
        return KafkaStatus(pid is not None, pid, self.bootstrap, self.version, self.data_dir)

    def start(self, wait_s: float = 60) -> str:
        """Start the broker (or find it running) and return its bootstrap once it answers."""
        if self.is_running():
            self._wait_ready(wait_s)
            return self.bootstrap
        for port in (self.port, self.controller_port):
            if _port_open(port):
                raise LocalKafkaError(f"port {port} on {_HOST} is taken by another process")
        self.ensure_jars()
        self._write_config()
        self._format_storage()
        self._step(f"starting Kafka {self.version} on {self.bootstrap} (data in {self.data_dir})")
        cmd = self._java("kafka.Kafka", str(self.config_path), jvm=JVM_OPTS)
        with open(self.log_dir / "kafka.out", "ab") as out:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.data_dir, start_new_session=True,
            )  # fmt: skip
        self.pid_path.write_text(f"{self._proc.pid}\n")
        try:
            self._wait_ready(wait_s)
        except LocalKafkaError:
            self.stop(timeout_s=10)  # a broker that failed its start is not left behind
            raise
        self._step(f"Kafka ready on {self.bootstrap}")
        return self.bootstrap

    def _wait_ready(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        admin: AdminClient | None = None
        last = "no TCP connection"
        while time.monotonic() < deadline:
            if not self.is_running():
                raise LocalKafkaError(f"the broker exited during start:\n{self._log_tails()}")
            if _port_open(self.port):
                # log_level 0: no librdkafka lines for the refused connections of a booting broker
                admin = admin or AdminClient(self.client_config() | {"log_level": 0})
                try:
                    if admin.list_topics(timeout=5).brokers:
                        return
                    last = "metadata without brokers"
                except KafkaException as exc:
                    last = str(exc)
            time.sleep(0.5)
        raise LocalKafkaError(
            f"the broker did not answer on {self.bootstrap} within {wait_s:.0f}s ({last}):\n"
            f"{self._log_tails()}"
        )

    def _log_tails(self) -> str:
        parts = []
        for log in (self.log_dir / "server.log", self.log_dir / "kafka.out"):
            if log.is_file():
                text = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                parts.append(f"--- last lines of {log} ---\n{text}")
        return "\n".join(parts) or "(no broker log written)"

    def stop(self, timeout_s: float = 30) -> bool:
        """SIGTERM the broker, wait for its clean shutdown, SIGKILL it after the timeout.

        Returns whether a broker was running.
        """
        pid = self._pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return False
        self._step(f"stopping Kafka (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self._pid() is not None and time.monotonic() < deadline:
            time.sleep(0.2)
        if self._pid() is not None:
            self._step(f"Kafka did not stop within {timeout_s:.0f}s: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            if self._proc is not None:
                self._proc.wait(timeout=10)
        self.pid_path.unlink(missing_ok=True)
        self._proc = None
        return True


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((_HOST, port)) == 0
