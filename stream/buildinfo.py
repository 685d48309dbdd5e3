"""What build is running: the package version and, in a git checkout, the commit."""

from __future__ import annotations

import subprocess

from stream import __version__
from stream.paths import CHECKOUT

VERSION = __version__


def git_commit() -> str | None:
    """HEAD of the checkout the package runs from; None outside git (e.g. a container image)."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=CHECKOUT, capture_output=True,
                              text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None
