"""Driving a `signals` subprocess as an operator would; shared by unit and integration tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path


def interrupt_after_checkpoint(argv: list[str], checkpoint: Path, env: Mapping[str, str],
                               cwd: Path | None = None) -> tuple[int, bytes, bytes]:
    """Run ``python -m stream.cli ARGV``, press Ctrl-C once its first checkpoint exists (or after
    60 s), and return its exit code, stdout and stderr."""
    process = subprocess.Popen([sys.executable, "-m", "stream.cli", *argv], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr
