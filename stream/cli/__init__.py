"""The `signals` command: `main` parses arguments, loads the settings once, runs a handler."""

from stream.cli.main import main

__all__ = ["main"]
