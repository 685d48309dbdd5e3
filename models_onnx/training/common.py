"""What every training module shares: the checkout's paths, the array type, rounding, JSON files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO / "models_onnx"
HEADS_DIR = MODELS_DIR / "heads"
LANGID_DIR = MODELS_DIR / "language"
DATA_DIR = REPO.parent / "shared" / "datasets"  # the labelled corpora, never in the repository

Array = npt.NDArray[Any]
Row = dict[str, Any]
# The runtime encoder contract (stream.models.encoder), as every encoder's manifest entry states it.
ENCODER_IO = {"inputs": {"input_ids": "int64[batch,seq]", "attention_mask": "int64[batch,seq]"},
              "outputs": {"embedding": "float32[batch,384]"}}


def r4(value: float | np.floating[Any]) -> float:
    """A reported number: a float rounded to 4 decimals."""
    return round(float(value), 4)


def write_json(path: Path, value: object) -> None:
    """A training output file: JSON indented by 1, final newline."""
    path.write_text(json.dumps(value, indent=1) + "\n")
