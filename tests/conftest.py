"""Shared fixtures: one real Kafka broker per test session, unique names per test.

Tests are an entrypoint, so this is where the environment is read:
``AITL_KAFKA_BOOTSTRAP`` points the suite at an existing broker instead of a local one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from aitl.kafka_local import LocalKafka, free_port
from kernel.settings import KafkaSettings

TESTS_DIR = Path(__file__).parent


def java_home() -> Path | None:
    """``$JAVA_HOME``, for the brokers the tests start."""
    value = os.environ.get("JAVA_HOME")
    return Path(value) if value else None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-nemesis",
        action="store_true",
        help="run the fault suite's nemesis tests (make test-faults; minutes, 3 brokers)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by folder (integration, e2e), skip ``nemesis`` tests unless asked for
    (``--run-nemesis``: they run for many minutes) and ``gpu`` tests without CUDA."""
    nemesis = pytest.mark.skip(reason="the fault suite runs with --run-nemesis (make test-faults)")
    for item in items:
        path = Path(item.path)
        if item.get_closest_marker("nemesis") and not config.getoption("--run-nemesis"):
            item.add_marker(nemesis)
        if path.is_relative_to(TESTS_DIR / "integration") or path.is_relative_to(
            TESTS_DIR / "faults"
        ):
            item.add_marker(pytest.mark.integration)
        elif path.is_relative_to(TESTS_DIR / "e2e"):
            item.add_marker(pytest.mark.e2e)
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    try:
        import torch  # lazily: importing torch costs seconds

        has_cuda = bool(torch.cuda.is_available())
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is false)")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def local_kafka_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., LocalKafka]]:
    """Makes (unstarted) local brokers on free ports in fresh dirs; stops them all at the end."""
    made: list[LocalKafka] = []

    def make(**overrides: Any) -> LocalKafka:
        kwargs: dict[str, Any] = {
            "data_dir": tmp_path_factory.mktemp("kafka"),
            "port": free_port(),
            "controller_port": free_port(),
            "java_home": java_home(),
        }
        made.append(LocalKafka(**(kwargs | overrides)))
        return made[-1]

    yield make
    for kafka in made:
        kafka.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(local_kafka_factory: Callable[..., LocalKafka]) -> str:
    """Bootstrap of the session's broker: ``AITL_KAFKA_BOOTSTRAP`` or a local one."""
    external = os.environ.get("AITL_KAFKA_BOOTSTRAP")
    if external:
        return external
    return local_kafka_factory().start(wait_s=120)


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    """Makes a name no other test uses, for topics and consumer groups."""
    return lambda prefix: f"{prefix}-{uuid4().hex[:10]}"


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Settings for the session's broker with a topic prefix of this test's own."""
    return KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix=f"t{uuid4().hex[:10]}.")
