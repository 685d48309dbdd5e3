"""models_onnx/manifest.json: which model files exist, their versions, hashes and contracts.

Each entry names a task (``embedding``, ``topic``, ``language`` ...), a version, the file (relative
to the manifest's folder) and its sha256. ``active`` maps each task to the version a worker runs
unless told otherwise; replay and eval can pick any listed version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from stream.errors import ConfigError, ModelFileError


@dataclass(frozen=True, slots=True)
class ModelSpec:
    task: str
    version: str
    kind: str
    file: Path
    sha256: str
    base: Path
    raw: dict[str, Any]

    def resolve_path(self, relative: str) -> Path:
        """A path named in this entry (e.g. its tokenizer), relative to the manifest's folder."""
        return self.base / relative

    def extra(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)


@dataclass(frozen=True, slots=True)
class Manifest:
    path: Path
    models: tuple[ModelSpec, ...]
    active: dict[str, str]

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.active)

    def resolve(self, task: str, version: str | None = None) -> ModelSpec:
        """The spec for `task` at `version` (default: the active one), or a ConfigError."""
        wanted = version or self.active.get(task)
        if wanted is None:
            raise ConfigError(f"no active model for task {task!r} in {self.path}; "
                              f"tasks: {sorted(self.active)}")
        for spec in self.models:
            if spec.task == task and spec.version == wanted:
                return spec
        known = sorted(s.version for s in self.models if s.task == task)
        raise ConfigError(f"unknown {task} model version {wanted!r}; {self.path} lists {known}")


def load_manifest(path: Path) -> Manifest:
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ModelFileError(f"cannot read model manifest {path}: {exc.strerror}") from exc
    except orjson.JSONDecodeError as exc:
        raise ModelFileError(f"model manifest {path} is not valid JSON: {exc}") from exc
    base = path.parent
    models = tuple(
        ModelSpec(task=m["task"], version=m["version"], kind=m.get("kind", ""),
                  file=base / m["file"], sha256=m["sha256"], base=base, raw=m)
        for m in data.get("models", [])
    )
    return Manifest(path=path, models=models, active=dict(data.get("active", {})))


def parse_task_versions(pairs: Iterable[str], what: str) -> dict[str, str]:
    """``["topic=topic-v2", ...]`` → {task: version}; `what` names the flag or setting in the
    error (the manifest check comes later, in `Manifest.resolve`)."""
    result: dict[str, str] = {}
    for pair in pairs:
        task, sep, version = (part.strip() for part in pair.partition("="))
        if not (sep and task and version):
            raise ConfigError(f"{what} {pair!r}: write TASK=VERSION, e.g. "
                              "language=langid-charngram-v1")
        result[task] = version
    return result
