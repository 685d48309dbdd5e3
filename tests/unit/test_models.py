"""The ONNX wrapper, the manifest, the encoder: hashes enforced, contracts named, outputs right."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

from stream.errors import ConfigError, ModelContractError, ModelFileError
from stream.manifest import Manifest, load_manifest
from stream.onnx_session import OnnxModel
from stream.settings import Settings
from stream.worker import build_pipeline


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
    reference = orjson.loads((spec.file.parent / "reference_embeddings.json").read_bytes())
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
