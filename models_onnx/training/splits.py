"""The split rule of the heads: which rows are held back, and which cross-validation fold the
others are in. v1 was trained with it and v2 will be; change SALT (and the model versions) rather
than the rule, or the new numbers are not comparable with the old ones.

The rule, per dataset file and per the file's own (original) label:

* every row's key is ``sha256(f"{SALT}:{id}")`` (hex); the label's rows are sorted by key (ties,
  i.e. duplicate ids, by file position);
* the first ``round(VAL_FRACTION * n)`` rows of that order are the held-back **validation split**,
  used once, for the reported numbers;
* the rest, the **training part**, is dealt round-robin in that order into N_FOLDS folds; every
  choice (data, model, hyper-parameters, thresholds) is made by cross-validation on these folds.

So the split depends only on the ids and labels of one file: a corpus used by two heads (Davidson:
offensive and hate) has the same split in both, and adding rows to a file moves few others. The
language model uses the same hash order with its own salt (`hash_order`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

SALT = "content-signals-heads-v1"
VAL_FRACTION = 0.2
N_FOLDS = 4
SPLIT_RULE = (f"per file and original label, rows sorted by sha256('{SALT}:' + id): the first "
              f"round({VAL_FRACTION} * n) are the held-back validation split, the rest are "
              f"dealt round-robin into {N_FOLDS} cross-validation folds; every choice uses the "
              "folds of the training part only")

Row = Mapping[str, Any]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def hash_key(text: str, salt: str = SALT) -> str:
    """The sort key of a row id: sha256 of ``salt:text``, hex."""
    return hashlib.sha256(f"{salt}:{text}".encode()).hexdigest()


def hash_order(items: Iterable[tuple[int, Hashable, str]], salt: str) -> dict[Hashable, list[int]]:
    """Row indices per label, each list sorted by `hash_key(id, salt)` (then by index); `items`
    are (index, label, id) triples, labels in order of first appearance."""
    by_label: dict[Hashable, list[tuple[str, int]]] = {}
    for i, label, row_id in items:
        by_label.setdefault(label, []).append((hash_key(row_id, salt), i))
    return {label: [i for _, i in sorted(members)] for label, members in by_label.items()}


def assign_split(rows: Sequence[Row]) -> tuple[BoolArray, IntArray]:
    """(is_val, fold) for every row of one file: fold is 0..N_FOLDS-1 on the training part and
    -1 on the validation split (see the module docstring)."""
    order = hash_order(((i, str(r["label"]), str(r["id"])) for i, r in enumerate(rows)), SALT)
    is_val = np.zeros(len(rows), dtype=bool)
    fold = np.full(len(rows), -1, dtype=np.int64)
    for members in order.values():
        n_val = round(VAL_FRACTION * len(members))
        for rank, i in enumerate(members):
            if rank < n_val:
                is_val[i] = True
            else:
                fold[i] = (rank - n_val) % N_FOLDS
    return is_val, fold


def cap_rows(rows: Sequence[Row], keep: BoolArray, labels: Sequence[str],
             cap: int | None) -> BoolArray:
    """`keep` with at most `cap` kept rows per (head) label in `labels`, the first by
    ``hash_key("cap:" + id)``; None keeps all."""
    if cap is None:
        return keep
    keep = keep.copy()
    order = sorted(np.flatnonzero(keep).tolist(),
                   key=lambda i: hash_key("cap:" + str(rows[i]["id"])))
    seen: dict[str, int] = {}
    for i in order:
        seen[labels[i]] = seen.get(labels[i], 0) + 1
        keep[i] = seen[labels[i]] <= cap
    return keep
