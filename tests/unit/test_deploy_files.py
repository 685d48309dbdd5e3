"""docker-compose.yml cannot run here (no Docker engine); check that what it references is real."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from stream.cli.main import build_parser
from stream.paths import CHECKOUT
from stream.settings import ENV_PREFIX, Settings


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHECKOUT / "docker-compose.yml").read_text())
    return data


def pom_kafka_version() -> str:
    pom = (CHECKOUT / "deploy" / "kafka" / "pom.xml").read_text()
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert match
    return match.group(1)


def test_compose_runs_the_same_kafka_version_as_the_local_broker(compose: dict[str, Any]) -> None:
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{pom_kafka_version()}"


def test_compose_workers_build_from_the_dockerfile_and_run_a_real_subcommand(
    compose: dict[str, Any]
) -> None:
    worker = compose["services"]["worker"]
    assert (CHECKOUT / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file()
    assert worker["deploy"]["replicas"] >= 2
    args = build_parser().parse_args(worker["command"])
    assert args.command == "worker"


def test_compose_environment_names_real_settings(compose: dict[str, Any]) -> None:
    known = {ENV_PREFIX + f.name.upper() for f in fields(Settings)}
    for name in ("worker", "tools"):
        env = compose["services"][name]["environment"]
        assert set(env) <= known, set(env) - known
        Settings.load({k: str(v) for k, v in env.items()})   # and their values are valid


def test_dockerfile_copies_what_the_worker_reads() -> None:
    dockerfile = (CHECKOUT / "Dockerfile").read_text()
    for folder in ("stream", "schemas", "models_onnx"):
        assert f"COPY {folder} ./{folder}" in dockerfile
        assert Path(CHECKOUT / folder).is_dir()


def test_the_spark_extra_pins_the_version_whose_connector_the_pom_fetches() -> None:
    pom = (CHECKOUT / "deploy" / "spark" / "pom.xml").read_text()
    match = re.search(r"<spark.version>([^<]+)</spark.version>", pom)
    assert match
    pyproject = (CHECKOUT / "pyproject.toml").read_text()
    assert f'spark = ["pyspark=={match.group(1)}"]' in pyproject
    from stream.replay.spark import SPARK_VERSION  # what the job checks pyspark against

    assert match.group(1) == SPARK_VERSION
