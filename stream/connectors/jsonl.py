"""JSONL files of events: opening (plain, gzip or stdin), non-blank lines, keying by content id.

`signals produce`, the demo, replay's file source and the bench read events through these.
"""

from __future__ import annotations

import gzip
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import orjson

from stream.errors import InputFileError

GZIP_MAGIC = b"\x1f\x8b"


def open_input(path: Path) -> BinaryIO:
    """The file to read events from ('-' is stdin), or an InputFileError that names it."""
    if str(path) == "-":
        return sys.stdin.buffer
    try:
        return path.open("rb")
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}") from exc


def open_jsonl(path: Path) -> io.BufferedIOBase:
    """The file's bytes, decompressed when it starts with the gzip magic number."""
    try:
        with path.open("rb") as probe:
            compressed = probe.read(2) == GZIP_MAGIC
        return gzip.open(path, "rb") if compressed else path.open("rb")
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_lines(handle: BinaryIO) -> Iterator[bytes]:
    """Non-blank lines as bytes, exactly as written (invalid ones too: the DLQ gets them)."""
    return (line.rstrip(b"\r\n") for line in handle if line.strip())


def keyed_lines(lines: Iterator[bytes]) -> Iterator[tuple[bytes | None, bytes]]:
    """Key each line by its content_id when it has one (the input topic's partitioning key)."""
    for line in lines:
        try:
            content_id = orjson.loads(line).get("content_id")
        except (orjson.JSONDecodeError, AttributeError):
            content_id = None
        yield (content_id.encode() if isinstance(content_id, str) else None), line
