"""A thin, strict wrapper around one ONNX Runtime session.

It verifies the model file against the sha256 recorded in the manifest before the session is
built, reads input and output names, types and shapes from the session itself, and refuses a call
that lacks an input, naming it. One `OnnxModel` serves one micro-batch per `run` call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stream.errors import ModelContractError, ModelFileError


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    type: str
    shape: tuple[int | str | None, ...]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, expected_sha256: str) -> None:
    """Raise ModelFileError, naming the file, if it is missing or not the recorded content."""
    if not path.is_file():
        raise ModelFileError(f"model file {path} is missing; run `make models` or check "
                             "SIGNALS_MODELS_DIR")
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise ModelFileError(
            f"model file {path} has sha256 {actual}, but the manifest records {expected_sha256}; "
            "the file is corrupt or does not belong to this manifest")


class OnnxModel:
    """One verified ONNX model: `run(feeds)` returns every output by name."""

    def __init__(self, path: Path, sha256: str, *, threads: int = 1,
                 spinning: bool = False) -> None:
        verify_file(path, sha256)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Busy-waiting intra-op threads (ORT's default) keep the cores after each call, so on
        # shared cores they slow the next model of the batch: `signals bench` measures both.
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if spinning else "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = path
        self.session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name: TensorInfo(i.name, i.type, tuple(i.shape))
                       for i in self.session.get_inputs()}
        self.outputs = {o.name: TensorInfo(o.name, o.type, tuple(o.shape))
                        for o in self.session.get_outputs()}

    def require(self, inputs: tuple[str, ...] = (), outputs: tuple[str, ...] = ()) -> None:
        """Fail at load time, not per batch, when the graph lacks what the caller will use."""
        for name in inputs:
            if name not in self.inputs:
                raise ModelContractError(
                    f"{self.path.name} has no input {name!r}; it has {sorted(self.inputs)}")
        for name in outputs:
            if name not in self.outputs:
                raise ModelContractError(
                    f"{self.path.name} has no output {name!r}; it has {sorted(self.outputs)}")

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [name for name in self.inputs if name not in feeds]
        if missing:
            raise ModelContractError(
                f"{self.path.name} needs input(s) {missing}; got {sorted(feeds)}")
        results = self.session.run(None, {name: feeds[name] for name in self.inputs})
        return dict(zip(self.outputs, results, strict=True))
