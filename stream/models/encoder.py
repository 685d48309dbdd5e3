"""The text encoder: tokenizer + ONNX sentence-embedding model, one session call per length bucket.

Texts are tokenised without padding, sorted by token count and cut into buckets of at most
``bucket_size``; each bucket is padded to its own longest text (not to ``max_length``) and encoded
with one `OnnxModel.run`. A batch no larger than ``bucket_size`` is one call. Pooling and L2
normalisation are inside the graph, so the output rows are unit vectors. An entry's ``text_prefix``
(e5's ``query: ``) is put before every text, as the model was trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tokenizers import Tokenizer

from stream.core.batching import length_buckets
from stream.errors import ModelFileError
from stream.models.manifest import ModelSpec
from stream.models.onnx_session import OnnxModel, verify_file

INPUTS = ("input_ids", "attention_mask")
OUTPUT = "embedding"


def load_tokenizer(spec: ModelSpec) -> Tokenizer:
    info = spec.extra("tokenizer")
    if not info:
        raise ModelFileError(f"manifest entry {spec.task}@{spec.version} names no tokenizer")
    path = spec.resolve_path(info["file"])
    verify_file(path, info["sha256"])
    tokenizer = Tokenizer.from_file(str(path))
    # The shipped tokenizer.json pads every input to 128; we pad per bucket instead.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=int(spec.extra("max_length", 128)))
    return tokenizer


class TextEncoder:
    """`encode(texts)` → float32 array [len(texts), dim] of L2-normalised sentence embeddings."""

    def __init__(self, spec: ModelSpec, *, threads: int, bucket_size: int,
                 spinning: bool = False) -> None:
        self.spec = spec
        self.version = spec.version
        self.bucket_size = bucket_size
        self.prefix = str(spec.extra("text_prefix", ""))
        self.tokenizer = load_tokenizer(spec)
        self.model = OnnxModel(spec.file, spec.sha256, threads=threads, spinning=spinning)
        self.model.require(inputs=INPUTS, outputs=(OUTPUT,))
        dim = self.model.outputs[OUTPUT].shape[-1]
        self.dim = dim if isinstance(dim, int) else 384

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch([self.prefix + t for t in texts])
        lengths = [len(e.ids) for e in encodings]
        for bucket in length_buckets(lengths, self.bucket_size):
            width = max(lengths[i] for i in bucket)
            ids = np.zeros((len(bucket), width), dtype=np.int64)
            mask = np.zeros((len(bucket), width), dtype=np.int64)
            for row, i in enumerate(bucket):
                ids[row, : lengths[i]] = encodings[i].ids
                mask[row, : lengths[i]] = 1
            result = self.model.run({"input_ids": ids, "attention_mask": mask})
            out[bucket] = result[OUTPUT]
        return out
