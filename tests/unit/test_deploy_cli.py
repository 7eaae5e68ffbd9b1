"""Every ``aitl`` command that a deployment or the runbook runs exists in the CLI.

The commands are read from the Dockerfile, docker-compose.yml, the Kubernetes manifests
and the shell blocks of docs/operations.md, then parsed by the real typer app: an unknown
command, subcommand or option fails here instead of in a crash-looping pod.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer
import yaml

from tests.unit.test_deploy_compose import AITL_IMAGE, ROOT, aitl_services, dockerfile_stages

K8S = ROOT / "deploy" / "k8s"
OPERATIONS = ROOT / "docs" / "operations.md"


def _containers(doc: dict) -> list[dict]:
    """Containers of a Deployment, StatefulSet, CronJob, Job or pod template, anywhere."""
    found = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                found.extend(value)
            else:
                found.extend(_containers(value))
    elif isinstance(doc, list):
        for item in doc:
            found.extend(_containers(item))
    return found


def invocations() -> list[tuple[str, list[str]]]:
    """(where, argv after ``aitl``) for every aitl command the deployment files run."""
    out: list[tuple[str, list[str]]] = []
    final = dockerfile_stages()[-1].instructions
    entrypoint = [yaml.safe_load(rest) for kw, rest in final if kw == "ENTRYPOINT"][-1]
    cmd = [yaml.safe_load(rest) for kw, rest in final if kw == "CMD"][-1]
    assert entrypoint == ["aitl"]
    out.append(("Dockerfile CMD", cmd))
    for name, service in aitl_services().items():
        out.append((f"docker-compose.yml {name}", [str(a) for a in service["command"]]))
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            for container in _containers(doc):
                if container["image"].split(":")[0] != AITL_IMAGE.split(":")[0]:
                    continue
                if doc["kind"] == "RayService":  # KubeRay runs `ray start` itself
                    continue
                assert "command" not in container, f"{path.name}: keep the image's entrypoint"
                argv = [str(a) for a in container["args"]]
                out.append((f"{path.name} {doc['metadata']['name']}", argv))
    for lineno, line in enumerate(OPERATIONS.read_text().splitlines(), 1):
        line = line.strip().removeprefix("$ ")
        if line.startswith("aitl "):
            argv = shlex.split(line.split(" #")[0])[1:]
            argv = [a for a in argv if not re.fullmatch(r"[|&;>].*", a)]
            out.append((f"docs/operations.md:{lineno}", argv))
    return out


@pytest.fixture(scope="module")
def cli() -> Any:
    """The click command tree of ``aitl`` (typer vendors click, so it is duck-typed here)."""
    from aitl.cli import app, mount_sub_apps

    mount_sub_apps()
    return typer.main.get_command(app)


def check(cli: Any, argv: list[str]) -> None:
    """Resolve the subcommands and parse the options like `aitl ...` would, without running."""
    command = cli
    path = ["aitl"]
    rest = list(argv)
    while hasattr(command, "commands"):
        assert rest, f"`{' '.join(path)}` needs a subcommand"
        name = rest.pop(0)
        sub = command.commands.get(name)
        if sub is None:
            known = ", ".join(sorted(command.commands))
            pytest.fail(f"`{' '.join(path)} {name}`: no such command (has: {known})")
        command = sub
        path.append(name)
    try:
        command.make_context(" ".join(path), rest)
    except Exception as exc:  # click's UsageError / BadParameter
        error = exc
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        pytest.fail(f"`{' '.join(path + rest)}`: {type(error).__name__}: {message}")


CASES = invocations()


@pytest.mark.parametrize(("where", "argv"), CASES, ids=[f"{w}: {' '.join(a)}" for w, a in CASES])
def test_command_exists(cli: Any, where: str, argv: list[str]) -> None:
    check(cli, argv)


def test_every_process_is_started_by_a_real_command() -> None:
    started = {" ".join(argv[:2]) for _, argv in CASES}
    for command in ("gateway start", "processors start", "serve start", "trainers start"):
        assert command in started
    assert any(argv[:1] == ["train"] for _, argv in CASES)


def test_the_checker_refuses_unknown_commands_and_options(cli: Any) -> None:
    for argv in (["gateway", "stop"], ["gateway", "start", "--no-such-option"], ["nope"]):
        with pytest.raises(pytest.fail.Exception):
            check(cli, argv)
    check(cli, ["gateway", "start", "--port", "8080"])
