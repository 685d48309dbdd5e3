"""One owner of the manifest format: what the training writes (ManifestEntry, upsert_entry,
head_entry) is what stream.models.manifest.load_manifest and the heads read back."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from stream.models.heads import CONTENT_TYPES
from stream.models.manifest import ManifestEntry, load_manifest, upsert_entry

MODELS = Path(__file__).resolve().parents[3] / "models_onnx"


def raw_entries() -> list[dict[str, object]]:
    manifest = json.loads((MODELS / "manifest.json").read_text())
    heads = [raw for folder in ("heads", "heads-e5")
             for raw in json.loads((MODELS / folder / "manifest_entries.json").read_text())]
    return [*manifest["models"], *heads]


@pytest.mark.parametrize("raw", raw_entries(), ids=lambda r: str(r["version"]))
def test_every_committed_entry_round_trips_with_its_key_order(raw: dict[str, object]) -> None:
    entry = ManifestEntry.from_json(raw)
    assert entry.to_json() == raw
    assert list(entry.to_json()) == list(raw)


def test_an_entry_without_a_required_field_is_refused() -> None:
    from stream.errors import ModelFileError

    with pytest.raises(ModelFileError, match="sha256"):
        ManifestEntry.from_json({"task": "t", "version": "v", "kind": "head", "file": "f"})


def test_upsert_replaces_inserts_after_and_activates(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    a = ManifestEntry("topic", "topic-v1", "head", "heads/a.onnx", "0" * 64, input="embedding")
    b = ManifestEntry("spam", "spam-v1", "head", "heads/b.onnx", "1" * 64)
    upsert_entry(path, a, activate=True)
    upsert_entry(path, b, activate=True)
    challenger = ManifestEntry("topic", "topic-v2", "head", "heads/c.onnx", "2" * 64,
                               fields={"applies_to": ["show"]})
    upsert_entry(path, challenger, activate=False, after="topic-v1")
    upsert_entry(path, a, activate=True)  # a retrain: same version, moved last, still active
    manifest = load_manifest(path)
    assert [s.version for s in manifest.models] == ["topic-v2", "spam-v1", "topic-v1"]
    assert manifest.active == {"topic": "topic-v1", "spam": "spam-v1"}
    assert manifest.resolve("topic", "topic-v2").extra("applies_to") == ["show"]
    assert json.loads(path.read_text())["format"] == 1


def test_the_committed_manifest_rewritten_entry_by_entry_is_byte_identical(
        tmp_path: Path) -> None:
    """Writing an entry back in its place (what challenger does) leaves the file as it was."""
    original = (MODELS / "manifest.json").read_text()
    path = tmp_path / "manifest.json"
    path.write_text(original)
    models = json.loads(original)["models"]
    for previous, raw in itertools.pairwise(models):
        upsert_entry(path, ManifestEntry.from_json(raw), activate=False,
                     after=previous["version"])
    assert path.read_text() == original


def test_a_trained_head_entry_is_what_the_worker_reads(tmp_path: Path) -> None:
    pytest.importorskip("onnx")  # head_entry sits beside the ONNX export
    from models_onnx.training.artefacts import head_entry
    from stream.models.heads import HeadModel

    onnx_file = MODELS / "heads" / "spam-minilm-lr-v1.onnx"
    heads = tmp_path / "heads"
    heads.mkdir()
    (heads / "spam-minilm-lr-v1.onnx").write_bytes(onnx_file.read_bytes())
    (heads / "spam.labels.json").write_text('["ham", "spam"]')
    entry = head_entry("spam", "spam-minilm-lr-v1", heads / "spam-minilm-lr-v1.onnx",
                       ["ham", "spam"], False, {"spam": 0.61}, {"spam_f1": 0.9},
                       {"spam_sms.jsonl": "ab" * 32}, encoder="minilm-l6-v2-int8-v1")
    upsert_entry(tmp_path / "manifest.json", entry, activate=True)
    spec = load_manifest(tmp_path / "manifest.json").resolve("spam")
    assert ManifestEntry.from_json(spec.raw) == entry
    assert spec.file == heads / "spam-minilm-lr-v1.onnx"
    head = HeadModel(spec, threads=1)
    assert head.contract.labels == ("ham", "spam") and head.contract.thresholds == {"spam": 0.61}
    assert not head.contract.multi_label and head.contract.reliable_languages == {"en"}
    assert head.contract.applies_to == frozenset(CONTENT_TYPES)
    assert spec.extra("reference") == "heads/spam.reference.json"
    assert spec.extra("encoder") == "minilm-l6-v2-int8-v1"
