"""The public surface of `stream`: what a user may import, pinned (as httpx pins its own)."""

from __future__ import annotations

import subprocess
import sys

import stream

EXPECTED = {
    "BatchOutput", "BrokerError", "ConfigError", "ContentEvent", "DeadLetter", "EnrichedRecord",
    "HoppingWindow", "InputFileError", "ModelError", "Pipeline", "Position", "RawMessage",
    "RejectReason", "Rejection", "Settings", "ShadowRecord", "Signal", "SignalRecord",
    "SignalsError", "TopicSpec", "Topics", "TumblingWindow", "WindowAggregator", "WindowRecord",
    "build_pipeline", "process_batch", "serialise",
}


def test_exported_members() -> None:
    assert set(stream.__all__) == EXPECTED
    for name in stream.__all__:
        member = getattr(stream, name)
        assert member.__name__ == name
        assert member.__module__.startswith("stream.")


def test_importing_the_package_loads_neither_models_nor_faust() -> None:
    code = ("import sys, stream; stream.Settings; "
            "print(any(m in sys.modules for m in ('faust', 'onnxruntime')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"
