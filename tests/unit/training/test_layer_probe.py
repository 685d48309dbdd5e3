"""The layer probe's cut of e5-small-v2: at full depth it is the runtime encoder, byte for byte in
its outputs; cut after k layers it runs k layers (no other weight read) and still pools to unit
vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")  # training-only: pip install -e ".[train]"
pytest.importorskip("sklearn")

import onnx

from models_onnx.training.common import MODELS_DIR
from models_onnx.training.layer_probe import ENCODER, FULL, cut_after, depth_encoder
from stream.models.encoder import TextEncoder
from stream.models.manifest import load_manifest

TEXTS = ["Hard bop, saxophone and trumpet.", "I hate that I love this show", "ok",
         "A weekly podcast about the bond market, central banks and what they mean for you."]


def layers_read(graph: bytes) -> set[int]:
    model = onnx.load_from_string(graph)
    return {int(node.name.split("/layer.")[1].split("/")[0])
            for node in model.graph.node if "/layer." in node.name}


def test_the_full_depth_is_the_runtime_encoder(tmp_path: Path) -> None:
    spec = load_manifest(MODELS_DIR / "manifest.json").resolve("embedding", ENCODER)
    runtime = TextEncoder(spec, threads=1, bucket_size=8).encode(TEXTS)
    assert np.array_equal(depth_encoder(FULL, tmp_path).encode(TEXTS), runtime)


@pytest.mark.parametrize("layers", [1, 6])
def test_a_cut_runs_only_its_first_layers_and_pools_to_unit_vectors(layers: int,
                                                                     tmp_path: Path) -> None:
    spec = load_manifest(MODELS_DIR / "manifest.json").resolve("embedding", ENCODER)
    full = onnx.load(str(spec.file))
    assert layers_read(cut_after(full, FULL)) == set(range(FULL))
    assert layers_read(cut_after(full, layers)) == set(range(layers))
    vectors = depth_encoder(layers, tmp_path).encode(TEXTS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors, depth_encoder(FULL, tmp_path).encode(TEXTS), atol=1e-3)
