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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from kernel.errors import InfraError
from kernel.settings import KafkaSettings

_log = logging.getLogger(__name__)

DEPLOY_DIR = Path(__file__).resolve().parents[1] / "deploy" / "kafka"
# log4j2's own shutdown hook would race Kafka's and cut the shutdown lines from server.log.
JVM_OPTS = (
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
    # -- one node of a LocalKafkaCluster (defaults: the single broker) ---------------------
    node_id: int = 1
    voters: str | None = None  # static controller quorum "1@host:port,2@host:port,..."
    cluster_id: str | None = None  # the same for every node of a cluster
    replication: int = 1  # of the broker's internal topics and its topic default
    heap: str = "768m"
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
        rf, min_isr = str(self.replication), str(min(2, self.replication))
        quorum = (
            {"controller.quorum.voters": self.voters}
            if self.voters
            else {"controller.quorum.bootstrap.servers": f"{_HOST}:{self.controller_port}"}
        )
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            **quorum,
            "listeners": f"{external},CONTROLLER://{_HOST}:{self.controller_port}",
            "advertised.listeners": external,
            "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": listener,
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.data_dir / "data"),
            "num.partitions": str(self.partitions),
            "auto.create.topics.enable": "false",
            "group.initial.rebalance.delay.ms": "0",
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
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
        # a static quorum (voters in the config) is formatted without --standalone
        solo = () if self.voters else ("--standalone",)
        cmd = self._java(
            "kafka.tools.StorageTool", "format", *solo,
            "-t", self.cluster_id or random_cluster_id(), "-c", str(self.config_path),
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

    def launch(self) -> None:
        """Start the broker's JVM (unless it runs) without waiting for it to answer."""
        if self.is_running():
            return
        for port in (self.port, self.controller_port):
            if _port_open(port):
                raise LocalKafkaError(f"port {port} on {_HOST} is taken by another process")
        self.ensure_jars()
        self._write_config()
        self._format_storage()
        self._step(f"starting Kafka {self.version} on {self.bootstrap} (data in {self.data_dir})")
        heap = (f"-Xms{min(256, int(self.heap.rstrip('m')))}m", f"-Xmx{self.heap}")
        cmd = self._java("kafka.Kafka", str(self.config_path), jvm=heap + JVM_OPTS)
        with open(self.log_dir / "kafka.out", "ab") as out:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.data_dir, start_new_session=True,
            )  # fmt: skip
        self.pid_path.write_text(f"{self._proc.pid}\n")

    def start(self, wait_s: float = 60) -> str:
        """Start the broker (or find it running) and return its bootstrap once it answers."""
        if self.is_running():
            self._wait_ready(wait_s)
            return self.bootstrap
        self.launch()
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

    def send_signal(self, sig: signal.Signals) -> bool:
        """Send ``sig`` to the running broker (the fault tests' SIGKILL, SIGSTOP, SIGCONT)."""
        pid = self._pid()
        if pid is None:
            return False
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            if self._proc is not None and self._proc.pid == pid:
                self._proc.wait(timeout=10)
                self._proc = None
            self.pid_path.unlink(missing_ok=True)
        return True

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


@dataclass
class LocalKafkaCluster:
    """Several combined broker+controller nodes on 127.0.0.1: a static KRaft quorum of all
    of them, topics replicated ``min(3, brokers)`` times with ``min.insync.replicas=2``, so
    one node may die (or stall) with no acknowledged write lost and no pause in writes.

    Node ``i`` keeps its data in ``<data_dir>/node-<i>`` and listens on ``ports[i-1]``."""

    data_dir: Path
    ports: list[int]
    controller_ports: list[int]
    version: str = "4.1.2"
    partitions: int = 6
    java_home: Path | None = None
    cache_root: Path = field(default_factory=lambda: Path.home() / ".cache" / "aitl")
    heap: str = "256m"
    on_step: Callable[[str], None] | None = None
    nodes: list[LocalKafka] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        if len(self.ports) != len(self.controller_ports) or len(self.ports) < 2:
            raise LocalKafkaError("a cluster needs two or more nodes, each with two ports")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        id_file = self.data_dir / "cluster.id"
        if not id_file.is_file():
            id_file.write_text(random_cluster_id() + "\n")
        cluster_id = id_file.read_text().strip()
        voters = ",".join(
            f"{i}@{_HOST}:{port}" for i, port in enumerate(self.controller_ports, start=1)
        )
        self.nodes = [
            LocalKafka(
                self.data_dir / f"node-{i}",
                port,
                cport,
                self.version,
                self.partitions,
                java_home=self.java_home,
                cache_root=self.cache_root,
                on_step=self.on_step,
                node_id=i,
                voters=voters,
                cluster_id=cluster_id,
                replication=min(3, len(self.ports)),
                heap=self.heap,
            )  # fmt: skip
            for i, (port, cport) in enumerate(
                zip(self.ports, self.controller_ports, strict=True), start=1
            )
        ]

    @classmethod
    def from_settings(cls, settings: KafkaSettings, brokers: int, **overrides: Any) -> Self:
        """The cluster ``aitl kafka start --brokers N`` runs: node i on local_port + 2(i-1)."""
        kwargs: dict[str, Any] = {
            "data_dir": settings.local_dir,
            "ports": local_ports(settings.local_port, brokers),
            "controller_ports": local_ports(settings.local_controller_port, brokers),
            "version": settings.version,
            "partitions": settings.default_partitions,
        }
        return cls(**(kwargs | overrides))

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def client_config(self) -> dict[str, str]:
        return {"bootstrap.servers": self.bootstrap}

    def status(self) -> list[KafkaStatus]:
        return [node.status() for node in self.nodes]

    def ensure_jars(self) -> Path:
        return self.nodes[0].ensure_jars()

    def is_running(self) -> bool:
        return all(node.is_running() for node in self.nodes)

    def start(self, wait_s: float = 90) -> str:
        """Start every node (the quorum needs a majority before any answers), then wait
        until each answers and all brokers are registered."""
        self.ensure_jars()
        for node in self.nodes:
            node.launch()
        try:
            self.wait_ready(wait_s)
        except LocalKafkaError:
            self.stop(timeout_s=10)
            raise
        return self.bootstrap

    def wait_ready(self, wait_s: float = 90, nodes: list[LocalKafka] | None = None) -> None:
        """Wait until ``nodes`` (default: all) answer and the cluster lists all brokers."""
        deadline = time.monotonic() + wait_s
        for node in nodes or self.nodes:
            node._wait_ready(max(1.0, deadline - time.monotonic()))
        admin = AdminClient(self.client_config() | {"log_level": 0})
        while True:
            try:
                if len(admin.list_topics(timeout=5).brokers) == len(self.nodes):
                    return
            except KafkaException:
                pass
            if time.monotonic() > deadline:
                raise LocalKafkaError(f"not every broker of {self.bootstrap} registered")
            time.sleep(0.5)

    def stop(self, timeout_s: float = 30) -> bool:
        """Stop every node at once (a SIGSTOPped node is continued first): one at a time,
        the last ones would wait for a quorum that is gone and be killed after the timeout."""
        for node in self.nodes:
            node.send_signal(signal.SIGCONT)
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            stopped = list(pool.map(lambda node: node.stop(timeout_s=timeout_s), self.nodes))
        return any(stopped)


def local_ports(first: int, brokers: int) -> list[int]:
    """The local cluster's ports: ``first``, ``first + 2``, ... (broker and controller
    ports interleave: 9092, 9094, 9096 and 9093, 9095, 9097)."""
    return [first + 2 * i for i in range(brokers)]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((_HOST, port)) == 0
