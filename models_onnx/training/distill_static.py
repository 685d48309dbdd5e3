"""A static-embedding encoder distilled from e5-small-v2: the fast tier (Model2Vec-style).

Every vocabulary token is run alone through the active transformer encoder (``[CLS] token
[SEP]``, no prefix) and its unit output vector becomes that token's row; the rows are weighted by
SIF, ``a / (a + p(token))``, after the frequency-weighted mean row is subtracted (e5's outputs
share one large direction), with token frequencies counted on the *training parts* of the heads'
corpora (`models_onnx.training.splits`; validation rows are not read), so frequent function
words and subword pieces count little. A text's embedding is the L2-normalised sum of its
tokens' rows. No attention, no layers: the cost is the tokenizer and a table lookup.

The graph meets the worker's encoder contract (``input_ids``/``attention_mask`` →
``embedding`` float32[batch,384]): Gather from an fp16 table, Cast, mask, ReduceSum, L2
normalisation. It reuses the teacher's tokenizer file. The entry is listed, not active; the
manifest's ``fast`` profile names it (`SIGNALS_PROFILE=fast`).

    python -m models_onnx.training.distill_static
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models_onnx.training.common import DATA_DIR, MODELS_DIR, Array
from models_onnx.training.embed import CORPORA, load_rows, model_text
from models_onnx.training.splits import assign_split
from stream.models.encoder import TextEncoder, load_tokenizer
from stream.models.manifest import ManifestEntry, load_manifest, upsert_entry
from stream.models.onnx_session import OnnxModel
from stream.similarity.calibration import carried_calibration

TEACHER = "e5-small-v2-int8-v1"
VERSION = "e5-static-v1"
MODEL_FILE = "encoder/e5-static.fp16.onnx"
SIF_A = 1e-3
SPECIAL = (0, 100, 101, 102, 103)  # [PAD] [UNK] [CLS] [SEP] [MASK]
MAX_LENGTH = 256
CHUNK = 512


def token_rows(teacher: TextEncoder, vocab_size: int) -> Array:
    """The teacher's unit output for every token id alone; special tokens get zero rows."""
    rows = np.zeros((vocab_size, 384), np.float32)
    ids = [i for i in range(vocab_size) if i not in SPECIAL]
    started = time.monotonic()
    for start in range(0, len(ids), CHUNK):
        chunk = np.asarray(ids[start:start + CHUNK], np.int64)
        batch = np.stack([np.full_like(chunk, 101), chunk, np.full_like(chunk, 102)], axis=1)
        out = teacher.model.run({"input_ids": batch, "attention_mask": np.ones_like(batch)})
        rows[chunk] = out["embedding"]
        print(f"  tokens {start + len(chunk)}/{len(ids)} "
              f"({(start + len(chunk)) / (time.monotonic() - started):.0f}/s)", flush=True)
    return rows


def token_frequencies(teacher: TextEncoder, vocab_size: int) -> tuple[Array, dict[str, str]]:
    """p(token) over the training parts of the heads' corpora; the files' sha256."""
    counts: Counter[int] = Counter()
    hashes = {}
    for name in CORPORA:
        path = DATA_DIR / name
        rows = load_rows(path)
        is_val = assign_split(rows)[0]
        texts = [model_text(r) for r, val in zip(rows, is_val, strict=True) if not val]
        for encoding in teacher.tokenizer.encode_batch(texts):
            counts.update(encoding.ids)
        hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    freq = np.zeros(vocab_size, np.float64)
    for token, n in counts.items():
        freq[token] = n
    return freq / max(freq.sum(), 1.0), hashes


def static_graph(table: Array) -> onnx.ModelProto:
    """ids, mask → L2-normalised masked sum of fp16 table rows (opset 17)."""
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["rows16"]),
        helper.make_node("Cast", ["rows16"], ["rows"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["rows", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceL2", ["summed"], ["norm"], axes=[1], keepdims=1),
        helper.make_node("Max", ["norm", "tiny"], ["norm_safe"]),
        helper.make_node("Div", ["summed", "norm_safe"], ["embedding"])]
    inits = [numpy_helper.from_array(table.astype(np.float16), "table"),
             numpy_helper.from_array(np.asarray([2], np.int64), "axis2"),
             numpy_helper.from_array(np.asarray([1], np.int64), "axis1"),
             numpy_helper.from_array(np.asarray(1e-9, np.float32), "tiny")]
    graph = helper.make_graph(
        nodes, "e5_static", [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 384])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="content-signals distill_static")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    manifest_path = MODELS_DIR / "manifest.json"
    spec = load_manifest(manifest_path).resolve("embedding", TEACHER)
    teacher = TextEncoder(spec, threads=args.threads, bucket_size=32)
    vocab_size = load_tokenizer(spec).get_vocab_size()
    started = time.monotonic()
    rows = token_rows(teacher, vocab_size)
    p, hashes = token_frequencies(teacher, vocab_size)
    # Centre first (what Model2Vec's PCA does): every e5 output shares a large common direction,
    # so uncentred sums of token rows all land near it (median cosine 0.99 between unrelated
    # texts). The mean is weighted by p, i.e. the direction common to real text.
    nonzero = np.any(rows != 0, axis=1, keepdims=True)  # special tokens stay zero
    centred = (rows - (p[:, None] * rows).sum(axis=0)) * nonzero
    table = centred * (SIF_A / (SIF_A + p))[:, None].astype(np.float32)
    data = static_graph(table).SerializeToString()
    (MODELS_DIR / MODEL_FILE).write_bytes(data)
    OnnxModel(MODELS_DIR / MODEL_FILE, hashlib.sha256(data).hexdigest())  # it loads
    entry = ManifestEntry(
        task="embedding", version=VERSION, kind="encoder", file=MODEL_FILE,
        sha256=hashlib.sha256(data).hexdigest(), fields={
            "inputs": {"input_ids": "int64[batch,seq]", "attention_mask": "int64[batch,seq]"},
            "outputs": {"embedding": "float32[batch,384]"},
            "max_length": MAX_LENGTH, "tokenizer": spec.raw["tokenizer"],
            "quantization": "fp16 table, fp32 arithmetic",
            "provenance": {
                "teacher": {"version": TEACHER, "sha256": spec.sha256},
                "method": f"each token alone through the teacher ([CLS] t [SEP]); rows centred "
                          f"on their p-weighted mean, then weighted by SIF a/(a+p), a={SIF_A}, "
                          "p from the training parts of the heads' corpora; special tokens "
                          "zero",
                "data": hashes, "script": "models_onnx/training/distill_static.py",
                "wall_s": round(time.monotonic() - started, 1)}})
    kept = carried_calibration(manifest_path, VERSION, entry.sha256)
    upsert_entry(manifest_path, replace(entry, fields={**entry.fields, **kept}), activate=False,
                 after=TEACHER)
    print(f"wrote {MODELS_DIR / MODEL_FILE} ({len(data)} bytes) in "
          f"{time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
