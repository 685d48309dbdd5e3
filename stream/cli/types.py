"""argparse value types shared by the `signals` subcommands: a bad value is a usage error that
says what was expected."""

from __future__ import annotations

import argparse
import math
from typing import Any


def positive_int(text: str) -> int:
    value = int(_parse(int, text, "a whole number"))
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    value = int(_parse(int, text, "a whole number"))
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def positive_float(text: str) -> float:
    value = float(_parse(float, text, "a number"))
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _parse(kind: type[int] | type[float], text: str, what: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
