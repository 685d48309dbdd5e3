"""Where the project's own files are: the repository in a checkout, the wheel's data otherwise.

A checkout (or an editable install) reads ``models_onnx/``, ``schemas/``, ``deploy/`` and the
golden set from the repository; a wheel installs the same files under
``<prefix>/share/content-signals/`` (pyproject's data-files), and the defaults point there.
State the tools write (the local broker's and the worker's data) goes to ``.kafka/`` in the
checkout, or in the current directory for an installed package. Every path is also a setting
or a flag (``SIGNALS_MODELS_DIR``, ``--data-dir`` ...).
"""

from __future__ import annotations

import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
INSTALLED = Path(sys.prefix) / "share" / "content-signals"


def _in_checkout() -> bool:
    return (CHECKOUT / "models_onnx" / "manifest.json").is_file()


DATA_ROOT = CHECKOUT if _in_checkout() else INSTALLED
STATE_ROOT = CHECKOUT if _in_checkout() else Path(".")
# The labelled corpora beside the checkout (read in place, never copied): calibration, eval, bench.
SHARED_DATASETS = CHECKOUT.parent / "shared" / "datasets"
