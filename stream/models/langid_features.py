"""Hashed character n-gram features for language identification.

One code path for training (``models_onnx/training/language.py``) and runtime: the
functions here turn a batch of strings into padded bucket ids that the ONNX model
``models_onnx/language/langid-charngram-v1.onnx`` sums over (Gather + ReduceSum).

Normalisation, per text:
  1. truncate to ``max_chars`` code points, then ``str.lower()``;
  2. map to a space: ASCII digits, punctuation and controls (the apostrophe ``'`` is
     kept), U+0080-U+00BF (Latin-1 controls, punctuation, symbols; not the letters
     ª µ º) and General Punctuation U+2000-U+206F (U+2019 is folded to ``'``);
  3. collapse runs of spaces and wrap the text in one boundary space on each side.

Every n-gram of length ``ngram_min..ngram_max`` that does not cross a text boundary is
hashed, except the lone-space unigram. The hash is fixed and platform independent
(no Python ``hash()``): over the Unicode code points c_1..c_n,

    h = 0;  h = (h * 0x100000001B3 + c_k + 1) mod 2**64   for k = 1..n
    bucket = fmix64(h XOR (n * 0x9E3779B97F4A7C15)) mod n_buckets + 1

where ``fmix64`` is MurmurHash3's 64-bit finaliser. Bucket 0 is reserved for padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["MULTIPLIER", "char_ngram_ids", "hash_ngrams", "normalise_codepoints"]

MULTIPLIER = np.uint64(0x100000001B3)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_FMIX_1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX_2 = np.uint64(0xC4CEB9FE1A85EC53)
_SHIFT = np.uint64(33)
_SPACE = 32
_SEP = 0  # separates texts in the concatenated batch; never a real character
_TABLE_SIZE = 0x2070


def _build_table() -> np.ndarray:
    """Code point remapping for U+0000..U+206F (identity elsewhere)."""
    table = np.arange(_TABLE_SIZE, dtype=np.uint32)
    for cp in range(0x80):
        if not chr(cp).isalpha() and chr(cp) != "'":
            table[cp] = _SPACE
    table[0x80:0xC0] = _SPACE  # C1 controls, NBSP, Latin-1 punctuation and symbols
    for cp in (0xAA, 0xB5, 0xBA):  # ª µ º are letters
        table[cp] = cp
    table[0x2000:0x2070] = _SPACE  # General Punctuation: dashes, quotes, spaces
    table[0x2019] = ord("'")
    table[_SEP] = _SEP
    return table


_TABLE = _build_table()


def normalise_codepoints(texts: Sequence[str], max_chars: int) -> np.ndarray:
    """Concatenate the normalised texts as uint64 code points, separated by 0.

    Each text becomes ``' ' + text + ' '`` (after steps 1-3 of the module docstring), so
    a text with no letters reduces to a single space. Text ``i`` is the i-th segment.
    """
    parts = []
    for text in texts:
        lowered = text[:max_chars].lower()
        if "\x00" in lowered:
            lowered = lowered.replace("\x00", " ")
        parts.append(lowered)
    joined = " \x00 ".join(parts)
    raw = np.frombuffer((" " + joined + " ").encode("utf-32-le", "surrogatepass"), np.uint32)
    mapped = np.where(raw < _TABLE_SIZE, _TABLE[np.minimum(raw, _TABLE_SIZE - 1)], raw)
    is_space = mapped == _SPACE
    keep = np.ones(mapped.shape[0], dtype=bool)
    keep[1:] = ~(is_space[1:] & is_space[:-1])
    return mapped[keep].astype(np.uint64)


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3 fmix64 finaliser, vectorised over uint64 (wrapping arithmetic)."""
    h = h ^ (h >> _SHIFT)
    h = h * _FMIX_1
    h = h ^ (h >> _SHIFT)
    h = h * _FMIX_2
    out: np.ndarray = h ^ (h >> _SHIFT)
    return out


def hash_ngrams(
    cps: np.ndarray, *, n_buckets: int, ngram_min: int, ngram_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """Bucket ids [positions, orders] and validity mask for every start position.

    Column j holds the n-gram of length ``ngram_min + j`` starting at that position;
    it is valid when it does not reach a separator (or past the end) and is not the
    lone-space unigram.
    """
    n_pos = cps.shape[0]
    padded = np.concatenate([cps, np.zeros(ngram_max, dtype=np.uint64)])
    lengths = np.arange(ngram_min, ngram_max + 1)
    raw = np.empty((n_pos, lengths.shape[0]), dtype=np.uint64)
    h = np.zeros(n_pos, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for n in range(1, ngram_max + 1):
            h = h * MULTIPLIER + padded[n - 1 : n - 1 + n_pos] + np.uint64(1)
            if n >= ngram_min:
                raw[:, n - ngram_min] = h
        mixed = _fmix64(raw ^ (lengths.astype(np.uint64) * _GOLDEN))
    ids = (mixed % np.uint64(n_buckets)).astype(np.int64) + 1
    seps = np.concatenate([[0], np.cumsum(padded == _SEP)])
    starts = np.arange(n_pos)
    valid = seps[starts[:, None] + lengths] == seps[:n_pos, None]
    if ngram_min == 1:
        valid[:, 0] &= cps != _SPACE
    return ids, valid


def char_ngram_ids(
    texts: Sequence[str],
    *,
    n_buckets: int = 1 << 17,
    ngram_min: int = 1,
    ngram_max: int = 4,
    max_chars: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Featurise a batch: padded bucket ids and per-row scale.

    Returns ``(ids, scale)``: ``ids`` int64 [batch, L] with real buckets in
    ``1..n_buckets`` (in text order, shortest n-gram first at each position) and 0 as
    padding, L = max(1, most n-grams in a row); ``scale`` float32 [batch, 1] =
    1 / max(1, number of n-grams in the row), so ``sum(W[ids]) * scale`` is the mean.
    """
    if not 1 <= ngram_min <= ngram_max:
        raise ValueError("need 1 <= ngram_min <= ngram_max")
    batch = len(texts)
    cps = normalise_codepoints(texts, max_chars)
    ids, valid = hash_ngrams(cps, n_buckets=n_buckets, ngram_min=ngram_min, ngram_max=ngram_max)
    pos, col = np.nonzero(valid)
    flat_ids = ids[pos, col]
    flat_rows = np.cumsum(cps == _SEP)[pos]  # separators before each position = row
    counts = np.bincount(flat_rows, minlength=batch)[:batch]
    width = max(1, int(counts.max(initial=0)))
    starts = np.cumsum(counts) - counts
    rank = np.arange(flat_ids.shape[0]) - starts[flat_rows]
    out = np.zeros((batch, width), dtype=np.int64)
    out[flat_rows, rank] = flat_ids
    scale = (1.0 / np.maximum(counts, 1)).astype(np.float32)[:, None]
    return out, scale
