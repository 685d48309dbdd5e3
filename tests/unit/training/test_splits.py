"""The heads' split rule (models_onnx.training.splits): deterministic, stratified per label, the
documented hash order, and the language model's holdout on the same hash order."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models_onnx.training import splits


def rows_of(labels: list[str]) -> list[dict[str, str]]:
    return [{"id": f"row-{i}", "label": label} for i, label in enumerate(labels)]


def documented_rule(rows: list[dict[str, str]]) -> tuple[list[bool], list[int]]:
    """The module docstring, restated: per label, sort by sha256(SALT:id), first
    round(0.2 n) validation, the rest round-robin into 4 folds."""
    is_val, fold = [False] * len(rows), [-1] * len(rows)
    for label in {r["label"] for r in rows}:
        members = sorted((hashlib.sha256(f"content-signals-heads-v1:{r['id']}".encode())
                          .hexdigest(), i) for i, r in enumerate(rows) if r["label"] == label)
        n_val = round(0.2 * len(members))
        for rank, (_, i) in enumerate(members):
            is_val[i] = rank < n_val
            fold[i] = -1 if rank < n_val else (rank - n_val) % 4
    return is_val, fold


labels_strategy = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=120)


@settings(max_examples=60, deadline=None)
@given(labels_strategy)
def test_split_follows_the_documented_rule_and_is_stratified(labels: list[str]) -> None:
    rows = rows_of(labels)
    is_val, fold = splits.assign_split(rows)
    want_val, want_fold = documented_rule(rows)
    assert is_val.tolist() == want_val and fold.tolist() == want_fold
    for label, n in Counter(labels).items():
        mine = np.array([lab == label for lab in labels])
        assert is_val[mine].sum() == round(splits.VAL_FRACTION * n)
        sizes = np.bincount(fold[mine & ~is_val], minlength=splits.N_FOLDS)
        assert sizes.max() - sizes.min() <= 1  # round-robin: folds differ by at most one row
    assert ((fold == -1) == is_val).all()


def test_split_is_deterministic_and_independent_of_row_order() -> None:
    rows = rows_of(["x"] * 50 + ["y"] * 30)
    is_val, fold = splits.assign_split(rows)
    again = splits.assign_split(list(reversed(rows)))
    assert (again[0][::-1] == is_val).all() and (again[1][::-1] == fold).all()


def test_split_is_pinned() -> None:
    """v2 is trained with the same rule: these ten rows must keep their places."""
    is_val, fold = splits.assign_split(rows_of(["a"] * 10))
    assert is_val.sum() == 2
    assert fold.tolist() == [0, -1, 2, 3, 3, -1, 1, 1, 0, 2]


def test_cap_keeps_the_first_rows_per_label_in_hash_order() -> None:
    rows = rows_of(["a"] * 20 + ["b"] * 3)
    keep = splits.cap_rows(rows, np.ones(23, dtype=bool), [r["label"] for r in rows], 5)
    assert keep[:20].sum() == 5 and keep[20:].all()
    order = sorted(range(20), key=lambda i: splits.hash_key("cap:" + rows[i]["id"]))
    assert set(np.flatnonzero(keep[:20])) == set(order[:5])


def old_stratified_split(rows: list[dict[str, str]], idx: range | list[int], tag: str,
                         fraction: float) -> tuple[list[int], list[int]]:
    """train_language.stratified_split before the move, verbatim."""
    by_label: dict[str, list[tuple[str, int]]] = {}
    for i in idx:
        key = hashlib.sha256(f"langid-charngram-v1-split-0:{tag}:{rows[i]['id']}".encode()
                             ).hexdigest()
        by_label.setdefault(rows[i]["label"], []).append((key, i))
    held: set[int] = set()
    for members in by_label.values():
        members.sort()
        held.update(i for _, i in members[: round(fraction * len(members))])
    return [i for i in idx if i not in held], sorted(held)


@settings(max_examples=30, deadline=None)
@given(labels_strategy)
def test_language_holdout_is_unchanged(labels: list[str]) -> None:
    pytest.importorskip("onnx")  # the language module exports its graph: the train extra
    from models_onnx.training import language

    rows = rows_of(labels)
    train, val = old_stratified_split(rows, range(len(rows)), "val", 0.2)
    fit, dev = old_stratified_split(rows, train, "dev", 0.2)
    assert language.split_rows(rows) == {"train": train, "val": val, "fit": fit, "dev": dev}
