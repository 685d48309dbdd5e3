"""The ONNX wrapper, the manifest, the encoder: hashes enforced, contracts named, outputs right."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

from stream.core.builder import build_pipeline
from stream.core.pipeline import Pipeline
from stream.errors import ConfigError, ModelContractError, ModelFileError
from stream.models.encoder import TextEncoder
from stream.models.heads import ClassifierSpec, HeadModel, LanguageModel, head_signal
from stream.models.manifest import Manifest, load_manifest
from stream.models.onnx_session import OnnxModel
from stream.settings import Settings


@pytest.fixture(scope="module")
def manifest(settings: Settings) -> Manifest:
    return load_manifest(settings.manifest_path)


def copy_models(settings: Settings, tmp_path: Path) -> Path:
    target = tmp_path / "models"
    shutil.copytree(settings.models_dir, target, ignore=shutil.ignore_patterns("scripts"))
    return target


def test_every_manifest_entry_matches_its_file(manifest: Manifest) -> None:
    assert manifest.active, "the manifest names no active models"
    for task, version in manifest.active.items():
        spec = manifest.resolve(task, version)
        OnnxModel(spec.file, spec.sha256)  # verifies the sha256 and builds a session


def test_a_corrupt_model_file_is_refused_naming_it(settings: Settings, tmp_path: Path) -> None:
    models = copy_models(settings, tmp_path)
    spec = load_manifest(models / "manifest.json").resolve("embedding")
    data = bytearray(spec.file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    spec.file.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=spec.file.name) as info:
        build_pipeline(settings.replace(models_dir=models))
    assert "manifest records" in str(info.value)


def test_a_missing_model_file_stops_the_start_naming_it(settings: Settings,
                                                        tmp_path: Path) -> None:
    models = copy_models(settings, tmp_path)
    spec = load_manifest(models / "manifest.json").resolve("embedding")
    spec.file.unlink()
    with pytest.raises(ModelFileError, match=f"{spec.file.name} is missing"):
        build_pipeline(settings.replace(models_dir=models))


def test_an_unknown_version_lists_the_known_ones(manifest: Manifest) -> None:
    with pytest.raises(ConfigError, match="unknown embedding model version 'v999'"):
        manifest.resolve("embedding", "v999")


@pytest.mark.parametrize(("spinning", "entry"), [(False, "0"), (True, "1")])
def test_thread_spinning_is_set_on_the_session(manifest: Manifest, spinning: bool,
                                               entry: str) -> None:
    spec = manifest.resolve("spam")
    options = OnnxModel(spec.file, spec.sha256, spinning=spinning).session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == entry


def test_the_wrapper_reads_its_contract_from_the_session(manifest: Manifest) -> None:
    spec = manifest.resolve("embedding")
    model = OnnxModel(spec.file, spec.sha256)
    assert set(model.inputs) == {"input_ids", "attention_mask"}
    assert list(model.outputs) == ["embedding"]
    with pytest.raises(ModelContractError, match="no input 'token_type_ids'"):
        model.require(inputs=("token_type_ids",))
    ids = np.ones((1, 4), dtype=np.int64)
    with pytest.raises(ModelContractError, match="attention_mask"):
        model.run({"input_ids": ids})


def test_encoder_matches_the_reference_embeddings_recorded_at_export(
    manifest: Manifest, settings: Settings
) -> None:
    spec = manifest.resolve("embedding")
    reference = orjson.loads(spec.resolve_path(
        spec.extra("reference_embeddings", "encoder/reference_embeddings.json")).read_bytes())
    texts = [item["text"] for item in reference["texts"]]
    expected = np.asarray([item["embedding"] for item in reference["texts"]], dtype=np.float32)
    encoder = build_pipeline(settings).enricher.encoder
    got = encoder.encode(texts)
    cosine = np.sum(got * expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert got.shape == expected.shape
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)
    assert cosine.min() >= 0.98, dict(zip(texts, cosine.round(4), strict=True))


def test_bucketing_barely_changes_embeddings(settings: Settings) -> None:
    texts = ["short", "a somewhat longer sentence about podcasts and music",
             "x " * 200, "Folge 37: Der Fall der Mauer", "🎧🎧", "tiny"]
    one_bucket = build_pipeline(settings.replace(encoder_bucket_size=64)).enricher.encoder
    per_item = build_pipeline(settings.replace(encoder_bucket_size=1)).enricher.encoder
    a, b = one_bucket.encode(texts), per_item.encode(texts)
    assert np.sum(a * b, axis=1).min() > 0.99
    assert one_bucket.encode([]).shape == (0, one_bucket.dim)


def test_every_head_honours_its_contract_and_label_map(pipeline: Pipeline) -> None:
    """Output width = labels file, probabilities in range (softmax rows sum to 1), thresholds
    name real labels, and each signal carries the head's version."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(5, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    heads = [m for m in pipeline.enricher.classifiers if isinstance(m, HeadModel)]
    assert heads, "no classification head is active"
    for head in heads:
        spec = head.contract
        assert len(set(spec.labels)) == len(spec.labels) >= 2
        assert set(spec.thresholds) <= set(spec.labels)
        probs = head.model.run({"embedding": vectors})["probabilities"]
        assert probs.shape == (5, len(spec.labels))
        assert ((probs >= 0) & (probs <= 1)).all()
        if not spec.multi_label:
            assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        for signal in head.predict(vectors):
            assert signal.model == head.version
            assert signal.label in (*spec.labels, "none")
            assert list(signal.scores or ()) == list(spec.labels)


def test_the_language_model_names_75_iso_codes(pipeline: Pipeline) -> None:
    language = pipeline.enricher.language
    assert isinstance(language, LanguageModel)
    assert len(language.labels) == 75 and all(len(code) == 2 for code in language.labels)
    [german, english] = language.predict(["Das ist ein ganz normaler deutscher Satz.",
                                          "This is a perfectly ordinary English sentence."])
    assert (german.label, english.label) == ("de", "en")


def test_a_label_for_some_content_types_is_scored_everywhere_but_flagged_only_there() -> None:
    spec = ClassifierSpec("safety", "v", ("offensive", "hate", "explicit"), multi_label=True,
                          thresholds={"offensive": 0.5, "hate": 0.5, "explicit": 0.5},
                          label_applies_to={"explicit": frozenset({"show", "episode"})})
    row = np.asarray([0.7, 0.1, 0.9], dtype=np.float32)
    on_comment, on_show = head_signal(row, spec, "comment"), head_signal(row, spec, "show")
    assert on_comment.flagged == ("offensive",) and on_comment.label == "offensive"
    assert on_comment.scores is not None and on_comment.scores["explicit"] == pytest.approx(0.9)
    assert on_show.flagged == ("explicit", "offensive") and on_show.label == "explicit"
    assert head_signal(row, spec).flagged == ("explicit", "offensive")  # no type: all labels


def test_the_shipped_safety_heads_flag_explicit_only_on_catalogue_items(
        manifest: Manifest) -> None:
    for spec in (s for s in manifest.models if s.task == "safety"):
        head = HeadModel(spec, threads=1)
        assert "comment" not in head.contract.label_applies_to["explicit"], spec.version


def test_the_fast_profiles_static_encoder_is_a_bag_of_tokens(manifest: Manifest) -> None:
    """The fast tier's known limit, as a property: word order does not change its vector."""
    spec = manifest.resolve("embedding", manifest.profile("fast")["embedding"])
    encoder = TextEncoder(spec, threads=1, bucket_size=32)
    a, b, other = encoder.encode(["the dog bites the man", "the man bites the dog",
                                  "a quiet podcast about gardening"])
    assert np.dot(a, b) == pytest.approx(1.0, abs=1e-5)
    assert np.dot(a, other) < 0.9
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-3)
