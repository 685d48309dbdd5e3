"""models_onnx/manifest.json: which model files exist, their versions, hashes and contracts.

Each entry names a task (``embedding``, ``topic``, ``language`` ...), a version, the file (relative
to the manifest's folder) and its sha256. ``active`` maps each task to the version a worker runs
unless told otherwise; replay and eval can pick any listed version. ``profiles`` names other
choices a worker can run (``fast``: the static encoder and the heads trained on it); a profile
need only name the encoder, the heads follow it (`Manifest.resolve_beside`). ``language_tier``
names a multilingual encoder whose heads serve the items in languages the active heads are not
reliable in (`stream.core.enrich.LanguageTier`). ``cascades`` maps a profile name to the stronger
encoder its unconfident items escalate to and each task's minimum confidence
(`CascadeSpec`, `stream.core.cascade`).

This module owns the format both ways: `load_manifest` reads it, and the training code
(``models_onnx/training``) writes entries as `ManifestEntry` objects through `upsert_entry`, so what
a worker reads and what a training run writes is one contract.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from stream.errors import ConfigError, ModelFileError

FORMAT = 1
REQUIRED = ("task", "version", "kind", "file", "sha256")


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One entry of the manifest's ``models`` list, as a training run writes it.

    ``file`` (and every path in `fields`) is relative to the manifest's folder. ``input`` names the
    model whose output this one reads (``embedding`` for a head; None for a model that reads text).
    `fields` holds the rest in the order it is written: the kind's contract (``inputs``,
    ``outputs``, ``labels``, ``multi_label``, ``thresholds``, ``tokenizer`` ...) and its
    documentation (``metrics``, ``provenance``). `to_json` and `from_json` are inverse.
    """

    task: str
    version: str
    kind: str
    file: str
    sha256: str
    input: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        head: dict[str, Any] = {"task": self.task, "version": self.version, "kind": self.kind}
        if self.input is not None:
            head["input"] = self.input
        return {**head, "file": self.file, "sha256": self.sha256, **self.fields}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ManifestEntry:
        missing = [key for key in REQUIRED if key not in raw]
        if missing:
            raise ModelFileError(f"manifest entry {dict(raw).get('version', '?')!r} lacks "
                                 f"{missing}")
        rest = {k: v for k, v in raw.items() if k not in (*REQUIRED, "input")}
        return cls(task=raw["task"], version=raw["version"], kind=raw["kind"], file=raw["file"],
                   sha256=raw["sha256"], input=raw.get("input"), fields=rest)


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
class CascadeSpec:
    """A profile's escalation: items whose signal of a task is less confident than
    ``min_confidence[task]`` are encoded again by `encoder` and served by its heads."""

    encoder: str
    min_confidence: dict[str, float]
    metrics: str | None = None  # its validation report, relative to the manifest's folder

    @classmethod
    def from_json(cls, name: str, raw: Any) -> CascadeSpec:
        where = f"cascades.{name}"
        if not isinstance(raw, Mapping) or not isinstance(raw.get("encoder"), str):
            raise ModelFileError(f"{where} needs an \"encoder\" (an embedding version)")
        minimums = raw.get("min_confidence", {})
        if not isinstance(minimums, Mapping) or not all(
                isinstance(v, int | float) and 0.0 <= v <= 1.0 for v in minimums.values()):
            raise ModelFileError(f"{where}.min_confidence must map tasks to numbers in [0, 1]")
        metrics = raw.get("metrics")
        return cls(raw["encoder"], {str(k): float(v) for k, v in minimums.items()},
                   str(metrics) if metrics else None)


@dataclass(frozen=True, slots=True)
class Manifest:
    path: Path
    models: tuple[ModelSpec, ...]
    active: dict[str, str]
    # name → {task: version}: what a worker runs instead of `active` (SIGNALS_PROFILE)
    profiles: dict[str, dict[str, str]] = field(default_factory=dict)
    language_tier: str | None = None  # an embedding version (see the module docstring)
    cascades: dict[str, CascadeSpec] = field(default_factory=dict)  # profile name → escalation

    def heads_on(self, encoder: str) -> list[ModelSpec]:
        """The first listed head of each task trained on `encoder`."""
        first: dict[str, ModelSpec] = {}
        for spec in self.models:
            if reads_encoder(spec) == encoder:
                first.setdefault(spec.task, spec)
        return list(first.values())

    def tier_versions(self, encoder: str, enabled: bool = True) -> dict[str, str]:
        """Task → version of the language tier that serves beside `encoder`: its encoder (as
        ``embedding``) and the heads trained on it; empty when there is none (no tier named,
        turned off, or `encoder` is the tier's own)."""
        tier = self.language_tier if enabled else None
        if tier is None or tier == encoder:
            return {}
        return {"embedding": tier, **{spec.task: spec.version for spec in self.heads_on(tier)}}

    def profile(self, name: str) -> dict[str, str]:
        """The versions profile `name` chooses ("" or "default": none, i.e. `active`)."""
        if name in ("", "default"):
            return {}
        if name not in self.profiles:
            raise ConfigError(f"SIGNALS_PROFILE={name!r}: {self.path} has the profiles "
                              f"{['default', *sorted(self.profiles)]}")
        return dict(self.profiles[name])

    def cascade(self, name: str, encoder: str | None = None) -> CascadeSpec | None:
        """The escalation of profile `name`, if it has one — and, given the `encoder` the
        profile runs, only if it escalates to another one (onto itself it would serve nothing)."""
        spec = self.cascades.get(name)
        return None if spec is None or spec.encoder == encoder else spec

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

    def resolve_beside(self, task: str, version: str | None, encoder: str) -> ModelSpec:
        """The model `task` runs beside the embedding version `encoder`: `version` if named (it
        must read that encoder), else the active one if it does, else the first listed one
        trained on it; a ConfigError that lists the choices otherwise."""
        spec = self.resolve(task, version)
        if reads_encoder(spec) in (None, encoder):
            return spec
        on_it = [s.version for s in self.models if s.task == task and reads_encoder(s) == encoder]
        if version is None and on_it:
            return self.resolve(task, on_it[0])
        raise ConfigError(f"{task}@{spec.version} reads embeddings of {reads_encoder(spec)}, "
                          f"but the encoder is {encoder}: choose a {task} model trained on it "
                          f"({', '.join(on_it) or 'none is listed'})")


def reads_encoder(spec: ModelSpec) -> str | None:
    """The embedding version a head was trained on (its entry's ``encoder``; None for a model
    that reads text)."""
    version = spec.extra("encoder")
    return str(version) if version else None


def load_manifest(path: Path) -> Manifest:
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ModelFileError(f"cannot read model manifest {path}: {exc.strerror}") from exc
    except orjson.JSONDecodeError as exc:
        raise ModelFileError(f"model manifest {path} is not valid JSON: {exc}") from exc
    base = path.parent
    models = tuple(spec_of(m, base) for m in data.get("models", []))
    unknown = sorted(set(data.get("cascades", {})) - set(data.get("profiles", {})))
    if unknown:
        raise ModelFileError(f"model manifest {path}: cascades {unknown} name no profile")
    return Manifest(path=path, models=models, active=dict(data.get("active", {})),
                    profiles={name: dict(versions)
                              for name, versions in data.get("profiles", {}).items()},
                    language_tier=data.get("language_tier"),
                    cascades={name: CascadeSpec.from_json(name, raw)
                              for name, raw in data.get("cascades", {}).items()})


def spec_of(raw: dict[str, Any], base: Path) -> ModelSpec:
    """The ModelSpec of one raw entry of a manifest in folder `base`."""
    entry = ManifestEntry.from_json({"kind": "", **raw})
    return ModelSpec(task=entry.task, version=entry.version, kind=entry.kind,
                     file=base / entry.file, sha256=entry.sha256, base=base, raw=raw)


def write_json(path: Path, data: object, indent: int = 2) -> None:
    """The manifest's own layout: `indent` spaces, UTF-8 as is, a final newline."""
    path.write_text(json.dumps(data, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


def upsert_entry(path: Path, entry: ManifestEntry, *, activate: bool,
                 after: str | None = None) -> None:
    """Write `entry` into the manifest at `path` (created if absent), replacing the entry of the
    same version and keeping every other one and every other key. It goes right after the entry of
    version `after` when given, else last; `activate` makes it its task's active version."""
    manifest: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    models = [m for m in manifest.get("models", []) if m.get("version") != entry.version]
    at = len(models)
    if after is not None:
        at = next(i for i, m in enumerate(models) if m["version"] == after) + 1
    models.insert(at, entry.to_json())
    active = dict(manifest.get("active", {}))
    if activate:
        active[entry.task] = entry.version
    write_json(path, {**manifest, "format": manifest.get("format", FORMAT), "models": models,
                      "active": active})


def replace_entry(path: Path, entry: ManifestEntry) -> None:
    """Rewrite the entry of `entry`'s version in the manifest at `path` where it stands (a
    ConfigError if it is not listed); everything else is kept."""
    manifest: dict[str, Any] = json.loads(path.read_text())
    models = manifest.get("models", [])
    at = next((i for i, m in enumerate(models) if m.get("version") == entry.version), None)
    if at is None:
        raise ConfigError(f"{path} lists no model version {entry.version!r}")
    models[at] = entry.to_json()
    write_json(path, manifest)


def set_profile(path: Path, name: str, versions: Mapping[str, str]) -> None:
    """Make profile `name` choose `versions` in the manifest at `path` (each must be listed)."""
    manifest = load_manifest(path)
    for task, version in versions.items():
        manifest.resolve(task, version)
    raw: dict[str, Any] = json.loads(path.read_text())
    raw["profiles"] = {**raw.get("profiles", {}), name: dict(versions)}
    write_json(path, raw)


def set_cascade(path: Path, name: str, cascade: Mapping[str, Any]) -> None:
    """Give profile `name` (already in the manifest at `path`) the escalation `cascade`
    (`CascadeSpec`'s fields; other keys, such as its metrics file, are kept as written)."""
    spec = CascadeSpec.from_json(name, cascade)
    manifest = load_manifest(path)
    manifest.profile(name)
    manifest.resolve("embedding", spec.encoder)
    raw: dict[str, Any] = json.loads(path.read_text())
    raw["cascades"] = {**raw.get("cascades", {}), name: dict(cascade)}
    write_json(path, raw)


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
