"""Offline evaluation input: a labelled JSONL file through the worker's own pipeline.

Two kinds of line are accepted (mixed freely):

* a **content event plus expectations** (the golden set, ``tests/golden/events.jsonl``): the event's
  fields and ``"expected": {task: label, ...}`` (a list of labels for multi-label tasks such as
  ``safety``; ``"edge"`` names the edge case a line exercises and becomes a slice). ``expected`` is
  removed and the rest is validated exactly as the worker validates it;
* a **plain labelled text** (``text`` or ``title``/``description``, and ``label``), e.g. the
  shared corpora: it is wrapped as the smallest valid event — a show with its title/description
  when it has them, otherwise a comment with its text — and ``label`` is the truth of ``--task``.

Every record goes through `stream.core.pipeline.process_batch` with the pipeline of
`stream.core.builder.build_pipeline`, so validation, language routing and the models are the
worker's. This module only collects what came out: per task the truth, the signal and the slice
keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from stream.core.enrich import Enricher
from stream.core.outputs import DeadLetter, Signal, SignalRecord
from stream.core.pipeline import Pipeline, process_batch
from stream.core.records import Position, RawMessage
from stream.core.validate import TEXT_FIELDS
from stream.errors import ConfigError, InputFileError
from stream.evaluation.metrics import length_bucket
from stream.models.heads import CONTENT_TYPES, ClassifierSpec

EVAL_TIME = "2026-01-01T00:00:00Z"
EDGE = "edge"
PASS_THROUGH = ("market", "language")  # optional event fields a plain record may carry


@dataclass(frozen=True, slots=True)
class EvalRecord:
    line: int
    event: dict[str, Any]
    expected: dict[str, Any]


CONTENT_TYPES_ALL = frozenset(CONTENT_TYPES)


@dataclass(slots=True)
class TaskPredictions:
    model: ClassifierSpec
    truth: list[tuple[str, ...]] = field(default_factory=list)  # one label unless multi-label
    signals: list[Signal] = field(default_factory=list)
    slices: list[dict[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class Evaluation:
    path: Path
    sha256: str
    records: int
    versions: dict[str, str]
    tasks: dict[str, TaskPredictions]
    rejected: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_label_map(specs: Iterable[str]) -> dict[str, str]:
    """``["World=News,Sci/Tech=Technology", "Spam="]`` → a mapping (an empty target drops)."""
    mapping: dict[str, str] = {}
    for spec in specs:
        for pair in filter(None, (p.strip() for p in spec.split(","))):
            old, sep, new = pair.partition("=")
            if not sep or not old.strip():
                raise ConfigError(f"--map {pair!r}: write OLD=NEW pairs separated by commas, "
                                  "e.g. --map World=News,Sci/Tech=Technology (NEW empty: drop)")
            mapping[old.strip()] = new.strip()
    return mapping


def load_records(path: Path, task: str | None,
                 applies_to: frozenset[str] | None = None) -> list[EvalRecord]:
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}") from exc
    records = [_parse_line(raw, number, path, task, applies_to or CONTENT_TYPES_ALL)
               for number, raw in enumerate(lines, start=1) if raw.strip()]
    if not records:
        raise InputFileError(f"{path} has no records (one JSON object per line expected)")
    return records


def _parse_line(raw: bytes, line: int, path: Path, task: str | None,
                applies_to: frozenset[str]) -> EvalRecord:
    where = f"{path}:{line}"
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputFileError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise InputFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "expected" in obj:
        expected = obj.pop("expected")
        if not isinstance(expected, dict):
            raise InputFileError(f"{where}: \"expected\" must be an object {{task: label}}")
        return EvalRecord(line, obj, expected)
    if "label" not in obj:
        raise InputFileError(f"{where}: no \"label\" (plain records) and no \"expected\" "
                             "(content events)")
    if task is None:
        raise ConfigError(f"{where} is a plain text+label record: say which model it scores "
                          "with --task (e.g. --task language)")
    return EvalRecord(line, wrap_plain(obj, line, where, applies_to), {task: obj["label"]})


def wrap_plain(obj: Mapping[str, Any], line: int, where: str,
               applies_to: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The smallest valid content event carrying a plain record's text, of a content type the
    task's model reads: a show (title/description) unless the model reads only comments, a
    comment (text) unless the model does not read comments."""
    event: dict[str, Any] = {"event_id": f"eval-{line}", "content_id": f"eval-{line}",
                             "event_time": EVAL_TIME}
    fields = {k: obj[k] for k in ("title", "description", "text") if _text(obj.get(k))}
    if not fields:
        raise InputFileError(f"{where}: needs a non-empty \"text\", \"title\" or \"description\"")
    has_show_fields = "title" in fields or "description" in fields
    comments_only = applies_to == frozenset({"comment"})
    if not comments_only and ("comment" not in applies_to or has_show_fields):
        show = {k: v for k, v in fields.items() if k != "text"} or {"title": fields["text"]}
        event |= {"event_type": "content.published", "content_type": "show", **show}
    else:
        text = fields.get("text") or ". ".join(fields[k] for k in ("title", "description")
                                               if k in fields)
        event |= {"event_type": "comment.created", "content_type": "comment", "text": text}
    return event | {k: obj[k] for k in PASS_THROUGH if isinstance(obj.get(k), str)}


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def task_models(enricher: Enricher) -> dict[str, ClassifierSpec]:
    """The contracts of the classification models the enricher runs (not the encoder), by task."""
    return {model.task: model.contract for model in enricher.classifiers}


def choose_tasks(records: Sequence[EvalRecord], models: Mapping[str, ClassifierSpec],
                 task: str | None, manifest: Path) -> list[str]:
    if task is not None:
        if task not in models:
            raise ConfigError(f"task {task!r} has no classification model in {manifest}; "
                              f"tasks: {sorted(models)}")
        if not any(task in r.expected for r in records):
            raise InputFileError(f"no record has an expected {task!r} label")
        return [task]
    named = {t for r in records for t in r.expected if t != EDGE}
    tasks = sorted(named & set(models))
    if not tasks:
        raise InputFileError(f"no record has an expected label for a task the models run "
                             f"({sorted(models)}); the records name {sorted(named)}")
    return tasks


def truth_of(record: EvalRecord, model: ClassifierSpec, mapping: Mapping[str, str],
             where: str) -> tuple[str, ...] | None:
    """The mapped truth of one record for one task; None when it has none (or it maps away)."""
    value = record.expected.get(model.task)
    if value is None:
        return None
    if model.multi_label and isinstance(value, list):
        labels = [str(v) for v in value]
    elif isinstance(value, str) and value:
        labels = [value]
    else:
        kind = "a label or a list of labels" if model.multi_label else "one label (a string)"
        raise InputFileError(f"{where}: expected {model.task} must be {kind}, got {value!r}")
    mapped = tuple(sorted({mapping.get(v, v) for v in labels} - {""}))
    if not model.multi_label and not mapped:
        return None
    return mapped


def check_labels(records: Sequence[EvalRecord], model: ClassifierSpec, mapping: Mapping[str, str],
                 path: Path) -> None:
    unknown: dict[str, list[int]] = {}
    for r in records:
        for label in truth_of(r, model, mapping, f"{path}:{r.line}") or ():
            if label not in model.labels:
                unknown.setdefault(label, []).append(r.line)
    if unknown:
        listed = "; ".join(f"{label!r} ({len(lines)} line{'s' * (len(lines) != 1)}, first "
                           f"{path}:{lines[0]})" for label, lines in sorted(unknown.items())[:8])
        raise InputFileError(
            f"labels unknown to the {model.task} model {model.version}: {listed}. It knows "
            f"{list(model.labels)}; rename with --map OLD=NEW (NEW empty drops the record)")


def run_records(pipeline: Pipeline, records: Sequence[EvalRecord], *, name: str,
                batch_size: int, progress: bool | None) -> list[SignalRecord | DeadLetter]:
    """One output per record: its signal record, or its dead letter."""
    outcomes: list[SignalRecord | DeadLetter | None] = [None] * len(records)
    disable = None if progress is None else not progress  # None: a bar only on a terminal
    with tqdm(total=len(records), desc="eval", unit="rec", disable=disable, leave=False) as bar:
        for start in range(0, len(records), batch_size):
            chunk = records[start:start + batch_size]
            messages = [RawMessage(orjson.dumps(r.event), Position(name, 0, start + i))
                        for i, r in enumerate(chunk)]
            output = process_batch(pipeline, messages)
            done: list[SignalRecord | DeadLetter] = [*output.signals, *output.dead_letters]
            for out in done:
                outcomes[out.source.offset] = out
            bar.update(len(chunk))
    return [outcome for outcome in outcomes if outcome is not None]


def slice_keys(record: EvalRecord, signal_record: SignalRecord,
               model: ClassifierSpec) -> dict[str, str]:
    event = record.event
    predicted = signal_record.signals.get("language")
    language = (record.expected.get("language") or event.get("language")
                or (predicted.label if predicted is not None else None))
    chars = len(" ".join(str(event.get(f) or "").strip() for f in TEXT_FIELDS).strip())
    keys = {"content_type": signal_record.content_type,
            "language": str(language or "unknown"),
            "market": signal_record.market or "unknown",
            "length_chars": length_bucket(chars)}
    if EDGE in record.expected:
        keys[EDGE] = str(record.expected[EDGE])
    if model.reliable_languages is not None:
        signal = signal_record.signals[model.task]
        keys["reliable"] = "yes" if signal.is_reliable else "no"
    return keys


def evaluate(path: Path, pipeline: Pipeline, task: str | None, mapping: Mapping[str, str], *,
             manifest: Path, batch_size: int = 64,
             progress: bool | None = None) -> Evaluation:
    models = task_models(pipeline.enricher)
    records = load_records(path, task, models[task].applies_to if task in models else None)
    tasks = choose_tasks(records, models, task, manifest)
    for name in tasks:
        check_labels(records, models[name], mapping, path)
    outcomes = run_records(pipeline, records, name=path.name, batch_size=batch_size,
                           progress=progress)
    result = Evaluation(path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                        records=len(records), versions=pipeline.enricher.versions,
                        tasks={name: TaskPredictions(models[name]) for name in tasks})
    for record, outcome in zip(records, outcomes, strict=True):
        if isinstance(outcome, DeadLetter):
            result.rejected.append({"line": record.line, "class": outcome.reason.value,
                                    "message": outcome.message})
            continue
        for predictions in result.tasks.values():
            _collect(predictions, record, outcome, mapping, f"{path}:{record.line}")
    result.notes = _notes(records, models, result)
    for name, predictions in result.tasks.items():
        if not predictions.truth:
            reasons = sorted({r["class"] for r in result.rejected})
            raise InputFileError(f"{path}: no record with an expected {name} label was scored "
                                 f"({len(result.rejected)} rejected by validation: {reasons})")
    return result


def _collect(predictions: TaskPredictions, record: EvalRecord, outcome: SignalRecord,
             mapping: Mapping[str, str], where: str) -> None:
    model = predictions.model
    truth = truth_of(record, model, mapping, where)
    signal = outcome.signals.get(model.task)
    if truth is None or signal is None:
        return
    predictions.truth.append(truth)
    predictions.signals.append(signal)
    predictions.slices.append(slice_keys(record, outcome, model))


def _notes(records: Sequence[EvalRecord], models: Mapping[str, ClassifierSpec],
           result: Evaluation) -> list[str]:
    notes = []
    if result.rejected:
        notes.append(f"{len(result.rejected)} of {result.records} records were rejected by "
                     "validation (they would go to the dead-letter topic) and are not scored")
    unrun = sorted({t for r in records for t in r.expected} - set(models) - {EDGE})
    if unrun:
        notes.append(f"expected labels for tasks no active model runs were ignored: {unrun}")
    return notes
