"""The checks of the exported encoder: an independent numpy forward pass of BERT (float64 over
the same weights, each text alone and unpadded), and the fp32 and int8 graphs against it."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from models_onnx.training.encoder_graph import Array, Batch, BertConfig, Weights

MAX_LENGTH = 128
FP32_TOLERANCE = 1e-4


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
    session: ort.InferenceSession, tokenizer: Tokenizer, reference: Array, texts: list[str]
) -> tuple[Array, Array]:
    """Cosines to the reference with all `texts` in one padded batch, and each alone."""
    batched = row_cosines(embed(session, encode(tokenizer, texts)), reference)
    alone = [
        row_cosines(embed(session, encode(tokenizer, [text])), reference[i : i + 1])
        for i, text in enumerate(texts)
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
