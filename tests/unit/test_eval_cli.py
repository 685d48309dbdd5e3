"""`signals eval` end to end with the real models: reports, label maps, errors and the gate."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.cli import main
from stream.core.pipeline import Pipeline
from stream.evaluation.gate import load_gate
from stream.evaluation.offline import task_models
from stream.models.heads import LanguageModel
from stream.models.manifest import load_manifest
from stream.paths import CHECKOUT
from stream.settings import Settings
from stream.similarity.calibration import shipped_threshold

GOLDEN = CHECKOUT / "tests" / "golden" / "events.jsonl"
BASELINE = CHECKOUT / "tests" / "golden" / "baseline.json"
SHARED_DATASETS = CHECKOUT.parent / "shared" / "datasets"   # optional: tests skip without it

SENTENCES = {
    "en": ["The committee will publish its final report on rural broadband next spring.",
           "We walked along the river until the sun went down behind the old mill."],
    "de": ["Die Gemeinde plant im nächsten Jahr eine neue Brücke über den Fluss zu bauen.",
           "Wir haben gestern Abend lange über die Zukunft der Stadtbibliothek gesprochen."],
    "fr": ["Le conseil municipal a voté hier soir la rénovation complète de la bibliothèque.",
           "Nous avons marché le long de la rivière jusqu'au coucher du soleil."],
    "es": ["El ayuntamiento aprobó ayer la construcción de un nuevo puente sobre el río.",
           "Caminamos por la orilla del río hasta que el sol se escondió detrás del molino."],
}


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def plain_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{"text": text, "label": lang}
                                  for lang, texts in SENTENCES.items() for text in texts]
    rows.append({"title": "Stadtgespräche", "description": SENTENCES["de"][0], "label": "de"})
    return rows


def run(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = main(["eval", "--bootstrap", "40", "--no-progress", *(str(a) for a in args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


def test_plain_records_run_through_the_worker_pipeline(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], pipeline: Pipeline) -> None:
    data = write_jsonl(tmp_path / "lang.jsonl", plain_rows())
    out = tmp_path / "report"
    code, stdout, _ = run(capsys, "--data", data, "--task", "language", "--out", out,
                          "--target-precision", "0.9")
    assert code == 0
    assert "language" in stdout and "macro_f1" in stdout
    for name in ("result.json", "report.md", "language_confusion.png", "language_pr.png",
                 "language_reliability.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "language_pr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = read_json(out / "result.json")
    scored = result["tasks"]["language"]
    # the same numbers from the language model called directly on the same texts
    texts = [r.get("text") or f"{r['title']}. {r['description']}" for r in plain_rows()]
    language = pipeline.enricher.language
    assert isinstance(language, LanguageModel)
    predicted = [s.label for s in language.predict(texts)]
    truth = [r["label"] for r in plain_rows()]
    assert scored["n"] == len(truth)
    assert scored["metrics"]["accuracy"] == pytest.approx(
        sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth), abs=1e-6)
    assert sum(sum(row) for row in scored["confusion"]["matrix"]) == len(truth)
    assert sum(row["support"] for row in scored["per_label"].values()) == len(truth)
    for metric in ("accuracy", "macro_f1"):
        low, high = scored["ci95"][metric]
        assert low <= scored["metrics"][metric] <= high
    assert set(scored["slices"]["content_type"]) == {"comment", "show"}
    assert scored["slices"]["content_type"]["show"]["n"] == 1
    assert scored["operating_points"][0]["target"] == "precision"
    assert "## language" in (out / "report.md").read_text(encoding="utf-8")


def test_content_events_with_expected_labels_and_rejections(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = {"event_type": "comment.created", "content_type": "comment",
            "event_time": "2026-10-01T10:00:00Z", "market": "DE"}
    rows = [{**base, "event_id": f"e{i}", "content_id": f"c{i}", "text": text,
             "expected": {"language": lang, **({"edge": "short"} if i == 0 else {})}}
            for i, (lang, text) in enumerate((lang, t) for lang, ts in SENTENCES.items()
                                              for t in ts)]
    rows.append({**base, "event_id": "bad", "content_id": "c-bad", "text": "x",
                 "event_time": "yesterday", "expected": {"language": "en"}})
    out = tmp_path / "golden-like"
    code, stdout, _ = run(capsys, "--data", write_jsonl(tmp_path / "g.jsonl", rows),
                          "--out", out)
    assert code == 0
    result = read_json(out / "result.json")
    assert result["data"]["rejected"] == 1
    assert result["data"]["rejections"][0]["line"] == len(rows)
    assert result["tasks"]["language"]["n"] == len(rows) - 1   # "expected" was stripped
    slices = result["tasks"]["language"]["slices"]
    assert slices["edge"]["short"]["n"] == 1 and slices["market"]["DE"]["n"] == len(rows) - 1
    assert "rejected by validation" in stdout


def test_a_label_map_renames_and_drops(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    names = {"en": "English", "de": "German", "fr": "French", "es": "Spanish"}
    rows = [{"text": t, "label": names[lang]} for lang, ts in SENTENCES.items() for t in ts]
    rows.append({"text": "whatever this is", "label": "Unknown"})
    out = tmp_path / "mapped"
    code, _, _ = run(capsys, "--data", write_jsonl(tmp_path / "m.jsonl", rows), "--task",
                     "language", "--map", "English=en,German=de", "--map",
                     "French=fr,Spanish=es,Unknown=", "--out", out)
    assert code == 0
    result = read_json(out / "result.json")
    assert result["tasks"]["language"]["n"] == len(rows) - 1
    assert result["options"]["map"]["Unknown"] == ""


def test_progress_bar_goes_to_stderr(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = write_jsonl(tmp_path / "p.jsonl", plain_rows()[:2])
    assert main(["eval", "--data", str(data), "--task", "language", "--bootstrap", "0",
                 "--progress"]) == 0
    captured = capsys.readouterr()
    assert "eval" in captured.err and "rec" in captured.err
    assert "rec/s" not in captured.out


GOOD = {"text": SENTENCES["en"][0], "label": "en"}


@pytest.mark.parametrize(("lines", "args", "fragment"), [
    ([], ["--task", "language"], "has no records"),
    ([b"{not json"], ["--task", "language"], "not valid JSON"),
    ([b"[1, 2]"], ["--task", "language"], "expected a JSON object"),
    ([orjson.dumps({"text": "hello there"})], ["--task", "language"], 'no "label"'),
    ([orjson.dumps({"label": "en"})], ["--task", "language"], 'needs a non-empty "text"'),
    ([orjson.dumps(GOOD)], [], "--task"),
    ([orjson.dumps(GOOD)], ["--task", "nosuch"], "task 'nosuch' has no classification model"),
    ([orjson.dumps(GOOD)], ["--task", "embedding"], "has no classification model"),
    ([orjson.dumps({**GOOD, "label": "klingon"})], ["--task", "language"],
     "labels unknown to the language model"),
    ([orjson.dumps(GOOD)], ["--task", "language", "--model", "language=v999"],
     "unknown language model version 'v999'"),
    ([orjson.dumps(GOOD)], ["--task", "language", "--model", "nosuch=v1"], "no task 'nosuch'"),
    ([orjson.dumps(GOOD)], ["--task", "language", "--map", "World"], "OLD=NEW"),
    ([orjson.dumps({"event_id": "e", "expected": {"language": ["en"]}})], [],
     "must be one label"),
    ([orjson.dumps({"event_id": "e", "expected": {"mood": "calm"}})], [],
     "no record has an expected label for a task the models run"),
])
def test_bad_input_gets_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        lines: list[bytes], args: list[str],
                                        fragment: str) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_bytes(b"\n".join(lines))
    code, _, err = run(capsys, "--data", data, *args)
    assert code == 2
    assert err.startswith("error: ") and fragment in err, err
    assert "Traceback" not in err


def test_a_missing_data_file_or_bad_baseline_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--data", tmp_path / "nope.jsonl", "--task", "language")
    assert code == 2 and "cannot read" in err and "nope.jsonl" in err
    data = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    (tmp_path / "old.json").write_text('{"tasks": {}}')
    code, _, err = run(capsys, "--data", data, "--task", "language", "--baseline",
                       tmp_path / "old.json")
    assert code == 2 and "is not a result of `signals eval`" in err


# ------------------------------------------------------------------ the regression gate


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small evaluation and its result.json, to be used as a baseline."""
    folder = tmp_path_factory.mktemp("gate")
    data = write_jsonl(folder / "data.jsonl", plain_rows())
    assert main(["eval", "--data", str(data), "--task", "language", "--bootstrap", "0",
                 "--no-progress", "--out", str(folder / "good")]) == 0
    return data, folder / "good" / "result.json"


def test_the_same_models_pass_the_gate(good_run: tuple[Path, Path],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    data, baseline = good_run
    code, stdout, _ = run(capsys, "--data", data, "--task", "language", "--baseline", baseline)
    assert code == 0 and "gate: no regression" in stdout


def perturbed(baseline: Path, target: Path, change: float, **extra_tasks: Any) -> Path:
    result = read_json(baseline)
    for metric in ("accuracy", "macro_f1"):
        result["tasks"]["language"]["metrics"][metric] += change
    result["tasks"].update(extra_tasks)
    target.write_bytes(orjson.dumps(result))
    return target


def test_a_better_baseline_fails_the_gate_with_a_list(
        good_run: tuple[Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    data, baseline = good_run
    better = perturbed(baseline, tmp_path / "better.json", 0.1)
    code, _, err = run(capsys, "--data", data, "--task", "language", "--baseline", better)
    assert code == 1
    assert "2 regression(s)" in err
    assert "language: accuracy" in err and "language: macro_f1" in err
    assert "tolerance 0.02" in err and "Traceback" not in err


def test_a_drop_within_the_tolerance_passes(good_run: tuple[Path, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    data, baseline = good_run
    slightly = perturbed(baseline, tmp_path / "slightly.json", 0.015)
    code, _, _ = run(capsys, "--data", data, "--task", "language", "--baseline", slightly)
    assert code == 0


def test_a_task_the_new_run_lacks_is_a_regression(good_run: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data, baseline = good_run
    old = read_json(baseline)["tasks"]["language"]
    with_topic = perturbed(baseline, tmp_path / "topic.json", 0.0,
                           topic=copy.deepcopy(old) | {"model": "topic-v0"})
    code, _, err = run(capsys, "--data", data, "--task", "language", "--baseline", with_topic)
    assert code == 1 and "topic: accuracy was" in err and "now not evaluated" in err


def degraded_manifest(settings: Settings, tmp_path: Path) -> Path:
    """The real manifest plus a worse language version: the same verified weights, but it
    reads only the first 3 characters of each text (the manifest's ``features.max_chars``)."""
    manifest = read_json(settings.manifest_path)
    for model in manifest["models"]:   # point at the real files from the temporary folder
        model["file"] = str(settings.models_dir / model["file"])
        for key in ("labels",):
            if key in model:
                model[key] = str(settings.models_dir / model[key])
        if "tokenizer" in model:
            model["tokenizer"]["file"] = str(settings.models_dir / model["tokenizer"]["file"])
    active = next(m for m in manifest["models"]
                  if m["task"] == "language" and m["version"] == manifest["active"]["language"])
    worse = copy.deepcopy(active)
    worse["version"] = "langid-degraded-test"
    worse["features"]["max_chars"] = 3
    manifest["models"].append(worse)
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "manifest.json").write_bytes(orjson.dumps(manifest))
    return folder / "manifest.json"


def test_a_degraded_model_version_fails_the_gate(
        good_run: tuple[Path, Path], tmp_path: Path, settings: Settings,
        capsys: pytest.CaptureFixture[str]) -> None:
    data, baseline = good_run
    manifest = degraded_manifest(settings, tmp_path)
    code, stdout, err = run(capsys, "--data", data, "--task", "language", "--manifest",
                            manifest, "--model", "language=langid-degraded-test",
                            "--baseline", baseline)
    assert code == 1, (stdout, err)
    assert "language: macro_f1" in err
    assert "langid-degraded-test" in stdout   # the note says which versions were compared


def test_the_manifest_carries_the_gate_tolerances(settings: Settings) -> None:
    gate = load_gate(settings.manifest_path)
    assert {"accuracy", "macro_f1"} <= set(gate.metrics)
    assert all(0 < gate.tolerance[m] < 0.1 for m in gate.metrics)


def test_the_committed_baseline_is_of_the_committed_golden_set() -> None:
    if not BASELINE.exists():
        pytest.skip("no tests/golden/baseline.json yet (make eval-baseline writes it)")
    baseline = read_json(BASELINE)
    assert baseline["data"]["sha256"] == hashlib.sha256(GOLDEN.read_bytes()).hexdigest(), (
        "tests/golden/events.jsonl changed: re-run `make eval-baseline` and review the diff")
    assert set(baseline["tasks"]) >= {"language"}


# ------------------------------------------------------------------ heads and real corpora


def test_every_active_head_can_be_evaluated(tmp_path: Path, pipeline: Pipeline,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    heads = [m for m in task_models(pipeline.enricher).values() if m.task != "language"]
    if not heads:
        pytest.skip("no classification head is active in models_onnx/manifest.json")
    for model in heads:
        comment = "comment" in model.applies_to        # each head reads its own content types
        base = {"event_type": "comment.created" if comment else "content.published",
                "content_type": "comment" if comment else sorted(model.applies_to)[0],
                "event_time": "2026-10-01T10:00:00Z"}
        rows = []
        for i, text in enumerate(SENTENCES["en"] * 3):
            label = model.labels[i % len(model.labels)]
            rows.append({**base, "event_id": f"{model.task}-{i}", "content_id": f"c{i}",
                         "text" if comment else "title": text,
                         "expected": {model.task: [label] if model.multi_label else label}})
        out = tmp_path / model.task
        code, _, err = run(capsys, "--data", write_jsonl(tmp_path / f"{model.task}.jsonl", rows),
                           "--task", model.task, "--out", out)
        assert code == 0, err
        scored = read_json(out / "result.json")["tasks"][model.task]
        assert scored["n"] == len(rows) and scored["multi_label"] == model.multi_label
        assert set(scored["per_label"]) <= set(model.labels)
        assert scored["pr"]["score_source"] == "scores"


def test_a_shared_corpus_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = SHARED_DATASETS / "language_lingua.jsonl"
    if not corpus.exists():
        pytest.skip(f"{corpus} is not here (the shared datasets are optional)")
    lines = corpus.read_bytes().splitlines()[::1500]   # ~30 rows, many languages
    data = tmp_path / "sample.jsonl"
    data.write_bytes(b"\n".join(lines))
    out = tmp_path / "lingua"
    code, _, err = run(capsys, "--data", data, "--task", "language", "--out", out)
    assert code == 0, err
    scored = read_json(out / "result.json")["tasks"]["language"]
    assert scored["n"] == len(lines)
    assert scored["metrics"]["accuracy"] >= 0.8


def test_near_duplicates_are_scored_at_the_shipped_threshold(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], settings: Settings) -> None:
    """`--near-duplicates` derives the calibration's pairs from a datasets folder and reports
    the held-out half at the threshold the worker uses with these models."""
    datasets = tmp_path / "datasets"
    datasets.mkdir()
    topics = {"Sports": "the match ended in a late penalty and the coach resigned",
              "World": "the summit closed with a trade agreement between the two countries",
              "Business": "shares fell after the company cut its profit forecast again"}
    rows = [{"id": f"ag-{label}-{n}", "label": label, "text": f"{text}, report {n} of {label}"}
            for label, text in topics.items() for n in range(8)]
    (datasets / "news_topic_ag.jsonl").write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    data = write_jsonl(tmp_path / "plain.jsonl", plain_rows())
    out = tmp_path / "nd"
    code, printed, err = run(capsys, "--data", data, "--task", "language", "--out", out,
                             "--near-duplicates", "--datasets-dir", datasets)
    assert code == 0, err
    report = read_json(out / "result.json")["near_duplicate"]
    assert report["threshold"] == shipped_threshold(settings)
    assert report["encoder"] == load_manifest(settings.manifest_path).active["embedding"]
    assert report["pairs"]["held_out"] > 0 and 0.0 <= report["held_out"]["recall"] <= 1.0
    assert "case" in report["held_out_by_edit"]
    assert f"near_duplicate {report['encoder']} at" in printed
    assert "## near_duplicate" in (out / "report.md").read_text()
