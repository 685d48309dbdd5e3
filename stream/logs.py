"""structlog set-up: one JSON object per line (or readable console lines), for our logs and for
the stdlib loggers of Faust, aiokafka and kafka-python alike."""

from __future__ import annotations

import logging.config
from typing import Any

import structlog

from stream.settings import Settings

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping; the Faust worker is given the same one."""
    renderer: Any = (structlog.processors.JSONRenderer() if settings.log_format == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {
            "()": structlog.stdlib.ProcessorFormatter,
            "foreign_pre_chain": _SHARED,
            "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                           structlog.processors.format_exc_info, renderer],
        }},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "structured",
                                "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["stderr"], "level": settings.log_level.upper()},
        "loggers": {name: {"level": "WARNING"} for name in ("aiokafka", "kafka", "faust", "mode")},
    }


def configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings))
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
