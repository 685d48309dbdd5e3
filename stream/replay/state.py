"""Replay state that outlives a batch: the counters and the checkpoint file.

The checkpoint is one JSON file, replaced atomically (write a temporary file, fsync, rename) after
every batch has been produced *and* flushed. It holds the replay's fingerprint (so a checkpoint is
only resumed by the same replay), the per-partition ranges resolved at the first start, the next
position per partition, the counters, the sizes of output files (a file sink truncates to them on
resume) and, with ``--aggregate``, the open windows.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stream.errors import ConfigError, InputFileError

CHECKPOINT_FORMAT = 1


@dataclass(slots=True)
class ReplayCounts:
    read: int = 0           # input records (or file lines) taken from the source
    signals: int = 0        # signal records produced (in a dry run: that would be produced)
    dead_letters: int = 0
    skipped: int = 0        # not processed: blank lines, records outside the time range
    windows: int = 0
    indexed: int = 0        # vectors upserted or deleted in the similarity index (--index)

    def add(self, other: ReplayCounts) -> None:
        for name in ("read", "signals", "dead_letters", "skipped", "windows", "indexed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(slots=True)
class Checkpoint:
    fingerprint: str
    replay_id: str
    sink: str
    ranges: dict[int, tuple[int, int]]
    positions: dict[int, int]
    counts: ReplayCounts = field(default_factory=ReplayCounts)
    sink_state: dict[str, int] = field(default_factory=dict)
    windows: dict[str, Any] | None = None
    finished: bool = False

    @property
    def read_all(self) -> bool:
        return all(self.positions[p] >= stop for p, (_, stop) in self.ranges.items())

    def remaining(self) -> dict[int, tuple[int, int]]:
        """Per partition, what is left to read: [next position, stop)."""
        return {p: (min(self.positions[p], stop), stop) for p, (_, stop) in self.ranges.items()}

    def ensure_matches(self, path: Path, fingerprint: str, replay_id: str, sink: str) -> None:
        """A checkpoint resumes only the replay that wrote it, into the same sink."""
        if self.fingerprint != fingerprint or self.replay_id != replay_id:
            raise ConfigError(
                f"checkpoint {path} belongs to another replay ({self.replay_id}): the source, "
                "range, model versions (language tier included) or batch options differ; run "
                "that replay again with the same arguments, or delete the file / pick another "
                "--checkpoint")
        if self.sink != sink:
            raise ConfigError(f"checkpoint {path} was written for the sink {self.sink}, not "
                              f"{sink}; delete it or pick another --checkpoint")

    def to_json(self) -> bytes:
        data = asdict(self)
        data["format"] = CHECKPOINT_FORMAT
        data["ranges"] = {str(p): list(r) for p, r in self.ranges.items()}
        data["positions"] = {str(p): n for p, n in self.positions.items()}
        # Insertion order kept: open windows must come back exactly as they were written.
        return orjson.dumps(data, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, raw: bytes) -> Checkpoint:
        data = orjson.loads(raw)
        if data.pop("format", None) != CHECKPOINT_FORMAT:
            raise ValueError(f"format is not {CHECKPOINT_FORMAT}")
        data["ranges"] = {int(p): (int(r[0]), int(r[1])) for p, r in data["ranges"].items()}
        data["positions"] = {int(p): int(n) for p, n in data["positions"].items()}
        data["counts"] = ReplayCounts(**data["counts"])
        return cls(**data)


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at `path`, None when there is none, InputFileError when it is unusable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputFileError(f"cannot read checkpoint {path}: {exc.strerror}") from exc
    try:
        return Checkpoint.from_json(raw)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputFileError(f"checkpoint {path} is not a replay checkpoint ({exc}); "
                             "delete it to start over") from exc


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Replace `path` atomically: a reader sees the old or the new checkpoint, never a mix."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(checkpoint.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ConfigError(f"cannot write checkpoint {path}: {exc.strerror}") from exc
