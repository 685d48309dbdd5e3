"""The metric code of `signals eval`: hand-computed cases, then scikit-learn as the reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.evaluation import metrics as m


def sklearn(module: str = "metrics") -> Any:
    """scikit-learn (the `dev` extra) as the reference; the hand-computed tests do not need it."""
    return pytest.importorskip(f"sklearn.{module}")


def ints(*values: int) -> m.IntArray:
    return np.array(values, dtype=np.int64)


def bools(*rows: tuple[int, ...]) -> m.BoolArray:
    return np.array(rows, dtype=bool)


# ------------------------------------------------------------------ hand-computed


def test_confusion_and_per_label_scores_by_hand() -> None:
    truth, pred = ints(0, 0, 1, 1, 2), ints(0, 1, 1, 1, 0)
    cm = m.confusion_matrix(truth, pred, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    counts = m.counts_from_confusion(cm)
    assert (counts.tp.tolist(), counts.fp.tolist(), counts.fn.tolist()) == (
        [1, 2, 0], [1, 1, 0], [1, 0, 1])
    precision, recall, f1 = m.precision_recall_f1(counts)
    assert precision == pytest.approx([0.5, 2 / 3, 0.0])
    assert recall == pytest.approx([0.5, 1.0, 0.0])
    assert f1 == pytest.approx([0.5, 0.8, 0.0])
    summary = m.single_label_summary(truth, pred, 3)
    assert summary["accuracy"] == summary["micro_f1"] == pytest.approx(0.6)
    assert summary["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert summary["macro_precision"] == pytest.approx((0.5 + 2 / 3) / 3)


def test_macro_average_skips_labels_the_truth_lacks() -> None:
    # label 2 never occurs in the truth; predicting it once is a false positive (it lowers micro
    # precision) but it does not enter the macro mean as a zero.
    summary = m.single_label_summary(ints(0, 0, 1, 1), ints(0, 2, 1, 1), 3)
    assert summary["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert summary["micro_f1"] == pytest.approx(0.75)


def test_multi_label_by_hand() -> None:
    truth = bools((1, 0), (1, 1), (0, 0))
    pred = bools((1, 0), (0, 1), (0, 1))
    counts = m.counts_from_indicators(truth, pred)
    assert (counts.tp.tolist(), counts.fp.tolist(), counts.fn.tolist()) == (
        [1, 1], [0, 1], [1, 0])
    summary = m.multi_label_summary(truth, pred)
    assert summary["accuracy"] == pytest.approx(1 / 3)   # only the first row is entirely right
    assert summary["macro_f1"] == pytest.approx(2 / 3)
    assert summary["micro_f1"] == pytest.approx(2 / 3)


def test_pr_curve_average_precision_and_thresholds_by_hand() -> None:
    curve = m.pr_curve(bools(1, 0, 1, 0).ravel(), np.array([0.9, 0.8, 0.7, 0.7]))
    assert curve.thresholds.tolist() == [0.9, 0.8, 0.7]   # one point per distinct score
    assert curve.precision.tolist() == [1.0, 0.5, 0.5]
    assert curve.recall.tolist() == [0.5, 0.5, 1.0]
    assert m.average_precision(curve) == pytest.approx(0.5 * 1.0 + 0.5 * 0.5)
    assert m.threshold_for_precision(curve, 0.6) == m.OperatingPoint(0.9, 1.0, 0.5)
    assert m.threshold_for_recall(curve, 1.0) == m.OperatingPoint(0.7, 0.5, 1.0)
    # recall 0.5 is reached at 0.9 and 0.8; 0.9 has the better precision
    assert m.threshold_for_recall(curve, 0.5) == m.OperatingPoint(0.9, 1.0, 0.5)


def test_unreachable_targets_and_no_positives_give_none() -> None:
    curve = m.pr_curve(np.array([False, True]), np.array([0.9, 0.1]))
    assert m.threshold_for_precision(curve, 0.6) is None
    empty = m.pr_curve(np.array([False, False]), np.array([0.9, 0.1]))
    assert empty.positives == 0
    assert m.threshold_for_recall(empty, 0.5) is None
    assert m.average_precision(empty) == 0.0


def test_expected_calibration_error_by_hand() -> None:
    confidence = np.array([0.95, 0.95, 0.15, 0.55, 1.0])
    correct = np.array([True, False, False, True, True])
    ece, bins = m.calibration(confidence, correct, n_bins=10)
    # bin 9: 0.95, 0.95, 1.0 (1.0 belongs to the last bin) → accuracy 2/3, confidence 0.9667
    assert bins[9].count == 3
    assert bins[9].accuracy == pytest.approx(2 / 3)
    assert bins[9].confidence == pytest.approx((0.95 + 0.95 + 1.0) / 3)
    assert (bins[1].count, bins[5].count, bins[0].count) == (1, 1, 0)
    expected = (3 * abs(2 / 3 - 2.9 / 3) + 1 * 0.15 + 1 * 0.45) / 5
    assert ece == pytest.approx(expected)


def test_bootstrap_is_seeded_and_brackets_the_estimate() -> None:
    rng = np.random.default_rng(1)
    values = rng.random(200)

    def mean(idx: m.IntArray) -> dict[str, float]:
        return {"mean": float(values[idx].mean())}

    first = m.bootstrap_ci(mean, 200, rounds=300, seed=7)
    assert first == m.bootstrap_ci(mean, 200, rounds=300, seed=7)
    assert first != m.bootstrap_ci(mean, 200, rounds=300, seed=8)
    low, high = first["mean"]
    assert low < values.mean() < high
    # the interval of a mean is about ±1.96 standard errors wide
    half = 1.96 * values.std() / np.sqrt(200)
    assert (high - low) / 2 == pytest.approx(half, rel=0.25)
    assert m.bootstrap_ci(lambda idx: {"c": 1.0}, 10, rounds=50) == {"c": (1.0, 1.0)}
    assert m.bootstrap_ci(mean, 200, rounds=0) == {}


def test_slices_and_length_buckets() -> None:
    groups = m.slice_indices(["b", "a", "b", "c"])
    assert list(groups) == ["a", "b", "c"]
    assert groups["b"].tolist() == [0, 2]
    assert [m.length_bucket(n) for n in (0, 49, 50, 199, 200, 799, 800, 10**6)] == [
        "0-49", "0-49", "50-199", "50-199", "200-799", "200-799", "800+", "800+"]


# ------------------------------------------------------------------ against scikit-learn

label_arrays = st.integers(min_value=1, max_value=60).flatmap(
    lambda n: st.tuples(st.lists(st.integers(0, 4), min_size=n, max_size=n),
                        st.lists(st.integers(0, 4), min_size=n, max_size=n)))


@settings(max_examples=150, deadline=None)
@given(label_arrays)
def test_single_label_metrics_match_sklearn(pair: tuple[list[int], list[int]]) -> None:
    sk = sklearn()
    truth, pred = np.array(pair[0]), np.array(pair[1])
    k = 5
    cm = m.confusion_matrix(truth, pred, k)
    assert cm.tolist() == sk.confusion_matrix(truth, pred, labels=list(range(k))).tolist()
    precision, recall, f1 = m.precision_recall_f1(m.counts_from_confusion(cm))
    ref = sk.precision_recall_fscore_support(truth, pred, labels=list(range(k)),
                                             zero_division=0)
    np.testing.assert_allclose(precision, ref[0])
    np.testing.assert_allclose(recall, ref[1])
    np.testing.assert_allclose(f1, ref[2])
    summary = m.single_label_summary(truth, pred, k)
    present = sorted(set(truth.tolist()))
    assert summary["accuracy"] == pytest.approx(sk.accuracy_score(truth, pred))
    assert summary["micro_f1"] == pytest.approx(sk.f1_score(truth, pred, average="micro"))
    for name, fn in (("macro_f1", sk.f1_score), ("macro_precision", sk.precision_score),
                     ("macro_recall", sk.recall_score)):
        assert summary[name] == pytest.approx(
            fn(truth, pred, labels=present, average="macro", zero_division=0))


indicator_pairs = st.integers(min_value=1, max_value=40).flatmap(
    lambda n: st.tuples(*(st.lists(st.lists(st.booleans(), min_size=3, max_size=3),
                                   min_size=n, max_size=n) for _ in range(2))))


@settings(max_examples=100, deadline=None)
@given(indicator_pairs)
def test_multi_label_metrics_match_sklearn(pair: tuple[list[list[bool]], ...]) -> None:
    sk = sklearn()
    truth, pred = np.array(pair[0], dtype=bool), np.array(pair[1], dtype=bool)
    counts = m.counts_from_indicators(truth, pred)
    mcm = sk.multilabel_confusion_matrix(truth, pred)  # per label [[tn, fp], [fn, tp]]
    assert counts.tp.tolist() == mcm[:, 1, 1].tolist()
    assert counts.fp.tolist() == mcm[:, 0, 1].tolist()
    assert counts.fn.tolist() == mcm[:, 1, 0].tolist()
    summary = m.multi_label_summary(truth, pred)
    assert summary["accuracy"] == pytest.approx(sk.accuracy_score(truth, pred))
    assert summary["micro_f1"] == pytest.approx(
        sk.f1_score(truth, pred, average="micro", zero_division=0))
    present = [k for k in range(3) if truth[:, k].any()]
    expected = (sk.f1_score(truth, pred, labels=present, average="macro", zero_division=0)
                if present else 0.0)
    assert summary["macro_f1"] == pytest.approx(expected)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 80), st.sampled_from([3, 10, 1000]))
def test_pr_curve_and_average_precision_match_sklearn(seed: int, n: int, levels: int) -> None:
    sk = sklearn()
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.4
    truth[0] = True  # at least one positive: sklearn's recall is undefined otherwise
    scores = rng.integers(0, levels, n) / levels  # few levels: many ties
    curve = m.pr_curve(truth, scores)
    ref_p, ref_r, ref_t = sk.precision_recall_curve(truth, scores)
    assert set(ref_t.tolist()) <= set(curve.thresholds.tolist())
    for p, r, t in zip(ref_p[:-1], ref_r[:-1], ref_t, strict=True):
        i = int(np.flatnonzero(curve.thresholds == t)[0])
        assert (curve.precision[i], curve.recall[i]) == pytest.approx((p, r))
    assert m.average_precision(curve) == pytest.approx(sk.average_precision_score(truth, scores))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 200), st.sampled_from([5, 10, 15]))
def test_reliability_bins_match_sklearn_calibration_curve(seed: int, n: int, bins: int) -> None:
    rng = np.random.default_rng(seed)
    confidence = rng.random(n)
    correct = rng.random(n) < confidence
    ece, table = m.calibration(confidence, correct, n_bins=bins)
    filled = [b for b in table if b.count]
    if len(set(correct.tolist())) == 2:  # sklearn needs both outcomes
        prob_true, prob_pred = sklearn("calibration").calibration_curve(correct, confidence,
                                                                n_bins=bins)
        np.testing.assert_allclose([b.accuracy for b in filled], prob_true)
        np.testing.assert_allclose([b.confidence for b in filled], prob_pred)
    weights = np.array([b.count for b in filled]) / n
    gaps = np.abs(np.array([b.accuracy - b.confidence for b in filled]))
    assert ece == pytest.approx(float(np.sum(weights * gaps)))
    assert 0.0 <= ece <= 1.0
