"""The output contracts in schemas/, for the tests that check records against them."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from stream.paths import CHECKOUT

SCHEMAS = CHECKOUT / "schemas"


def schema_path(topic: str) -> Path:
    return SCHEMAS / f"{topic}.json"


@functools.cache
def schema(topic: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_path(topic).read_text(encoding="utf-8"))
    return loaded


@functools.cache
def validator(topic: str) -> Callable[[Any], Any]:
    return fastjsonschema.compile(schema(topic))


def assert_valid(topic: str, records: list[dict[str, Any]]) -> None:
    check = validator(topic)
    for record in records:
        try:
            check(record)
        except fastjsonschema.JsonSchemaException as exc:
            shown = {k: v for k, v in record.items() if k != "embedding"}
            pytest.fail(f"{topic}: {exc}\n{shown}")
