"""Tests for the hashed character n-gram featuriser and the committed language model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stream.models.langid_features import char_ngram_ids, normalise_codepoints

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "models_onnx" / "language"
MODEL = MODEL_DIR / "langid-charngram-v1.onnx"
SMALL = {"n_buckets": 1000, "ngram_min": 1, "ngram_max": 3, "max_chars": 64}


def n_grams_expected(n_chars: int, ngram_max: int) -> int:
    """N-grams of a text of n_chars letters wrapped in two boundary spaces."""
    total = n_chars + 2
    return sum(total - n + 1 for n in range(1, ngram_max + 1)) - 2  # minus lone spaces


def test_ids_are_deterministic_and_in_range() -> None:
    texts = ["The quick brown fox.", "Le renard brun rapide.", "x"]
    ids1, scale1 = char_ngram_ids(texts, **SMALL)
    ids2, scale2 = char_ngram_ids(list(texts), **SMALL)
    assert ids1.dtype == np.int64 and scale1.dtype == np.float32
    np.testing.assert_array_equal(ids1, ids2)
    np.testing.assert_array_equal(scale1, scale2)
    assert ids1.min() >= 0 and ids1.max() <= SMALL["n_buckets"]
    # a row does not depend on the other rows of the batch
    alone, _ = char_ngram_ids([texts[1]], **SMALL)
    np.testing.assert_array_equal(ids1[1, : alone.shape[1]], alone[0])


def reference_bucket(ngram: str, n_buckets: int) -> int:
    """The documented hash, in plain Python integers."""
    mask = (1 << 64) - 1
    h = 0
    for ch in ngram:
        h = (h * 0x100000001B3 + ord(ch) + 1) & mask
    h ^= (len(ngram) * 0x9E3779B97F4A7C15) & mask
    for mult in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
        h = ((h ^ (h >> 33)) * mult) & mask
    h ^= h >> 33
    return h % n_buckets + 1


def test_hash_matches_documented_formula() -> None:
    ids, _ = char_ngram_ids(["Ab"], n_buckets=1 << 16, ngram_min=1, ngram_max=4, max_chars=256)
    ngrams = [" a", " ab", " ab ", "a", "ab", "ab ", "b", "b "]  # position-major order
    assert ids[0].tolist() == [reference_bucket(g, 1 << 16) for g in ngrams]
    # pinned: a change to the hash would silently break the committed model
    assert ids[0].tolist() == [4545, 10248, 540, 27168, 37772, 9374, 25361, 23120]


def test_padding_and_scale() -> None:
    ids, scale = char_ngram_ids(["ab", "abcdef"], **SMALL)
    n_short, n_long = n_grams_expected(2, 3), n_grams_expected(6, 3)
    assert ids.shape == (2, n_long)
    assert (ids[0, :n_short] > 0).all() and (ids[0, n_short:] == 0).all()
    assert (ids[1] > 0).all()
    np.testing.assert_allclose(scale[:, 0], [1 / n_short, 1 / n_long], rtol=1e-6)


def test_empty_and_blank_strings() -> None:
    ids, scale = char_ngram_ids(["", "   ", "!!! 123 ...", "a"], **SMALL)
    assert ids.shape[0] == 4
    assert (ids[:3] == 0).all()
    np.testing.assert_array_equal(scale[:3, 0], [1.0, 1.0, 1.0])
    assert (ids[3] > 0).sum() == n_grams_expected(1, 3)
    empty, empty_scale = char_ngram_ids([], **SMALL)
    assert empty.shape[0] == 0 and empty_scale.shape == (0, 1)


def test_normalisation_lowercases_and_strips_punctuation() -> None:
    same_a, _ = char_ngram_ids(["Hello, World!"], **SMALL)
    same_b, _ = char_ngram_ids(["hello   world"], **SMALL)
    np.testing.assert_array_equal(same_a, same_b)
    assert normalise_codepoints(["A\x00B"], 10).tolist() == [32, 97, 32, 98, 32]


@pytest.mark.parametrize("text", ["日本語のテキスト", "中文文本", "النص العربي", "emoji 😀🎉 ok",
                                  "한국어", "עִבְרִית", "\ud800 lone surrogate"])
def test_unicode(text: str) -> None:
    ids, scale = char_ngram_ids([text, "plain"], **SMALL)
    letters = len(normalise_codepoints([text], SMALL["max_chars"])) - 2
    assert ids.shape[0] == 2 and (ids[0] > 0).sum() > 0
    assert (ids[0] > 0).sum() <= n_grams_expected(letters, 3)
    assert scale[0, 0] == pytest.approx(1 / (ids[0] > 0).sum())


def test_max_chars_truncates() -> None:
    long_ids, _ = char_ngram_ids(["abc" * 1000], **SMALL)
    assert long_ids.shape[1] <= n_grams_expected(SMALL["max_chars"], 3)


SENTENCES = {
    "en": "The weather is lovely today and we are going to the park with the children.",
    "fr": "Nous avons mangé une très bonne soupe au restaurant hier soir avec mes amis.",
    "de": "Ich habe gestern ein sehr interessantes Buch über die Geschichte gelesen.",
    "es": "Mañana vamos a visitar a mi abuela que vive en un pueblo cerca de la costa.",
    "it": "Questa sera andiamo al cinema a vedere un film con i nostri amici.",
    "pt": "Eu gosto muito de ler livros e de ouvir música quando estou em casa.",
    "ja": "今日はとても良い天気なので、公園に散歩に行きました。",
    "ru": "Сегодня мы ходили в магазин и купили много свежих овощей.",
    "zh": "我们明天要去北京参观博物馆，然后和朋友一起吃晚饭。",
    "ar": "ذهبت إلى السوق صباح اليوم واشتريت الخبز والفواكه.",
    "pl": "Wczoraj wieczorem poszliśmy do kina na bardzo dobry film.",
    "nl": "Wij gaan morgen met de fiets naar het strand als het mooi weer is.",
}


@pytest.mark.skipif(not MODEL.exists(), reason="model file not present")
def test_model_classifies_obvious_sentences() -> None:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    labels = json.loads((MODEL_DIR / "labels.json").read_text())
    features = json.loads(session.get_modelmeta().custom_metadata_map["features"])
    ids, scale = char_ngram_ids(list(SENTENCES.values()), **features)
    (probs,) = session.run(["probabilities"], {"ngram_ids": ids, "row_scale": scale})
    assert probs.shape == (len(SENTENCES), len(labels))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    predicted = [labels[j] for j in probs.argmax(axis=1)]
    assert predicted == list(SENTENCES)
    assert (probs.max(axis=1) > 0.5).all()
    empty_ids, empty_scale = char_ngram_ids([""], **features)
    (empty,) = session.run(["probabilities"], {"ngram_ids": empty_ids, "row_scale": empty_scale})
    assert empty.max() < 0.1  # no evidence: close to the (near-uniform) prior
