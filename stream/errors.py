"""Every error type of content-signals, in one place.

Two kinds of failure exist, and they travel differently:

* **Rejections are data.** An input event that cannot be processed (bad JSON, invalid UTF-8,
  schema violation, oversized text) is not an exception: validation returns a `Rejection`, and the
  pipeline turns it into a dead-letter record on ``content.events.dlq.v1``. The worker keeps going.
* **Exceptions are for the operator.** A bad setting, a missing or corrupt model file, a broker
  that will not start: the process cannot do its job, so it stops with a message that says what to
  fix. The CLI prints ``error: <message>`` and exits non-zero, without a traceback.

The exception tree::

    SignalsError                  base of everything raised on purpose
    ├── ConfigError               a setting, a CLI flag or an environment variable is wrong
    ├── ModelError                a model cannot be loaded or called
    │   ├── ModelFileError        the file is missing or its sha256 differs from the manifest
    │   └── ModelContractError    the graph lacks an input/output the caller needs
    ├── InputFileError            a JSONL file given to a tool cannot be read
    └── BrokerError               the local Kafka broker cannot be fetched, started or reached
        └── KafkaAuthError        a broker answers but refuses our login or TLS handshake
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SignalsError(Exception):
    """Base class for errors raised on purpose; the message is meant for a person."""


class ConfigError(SignalsError):
    """A setting is invalid; the message names it and says what to use instead."""


class ModelError(SignalsError):
    """A model cannot be loaded or called."""


class ModelFileError(ModelError):
    """A model file is missing, unreadable, or does not match its recorded sha256."""


class ModelContractError(ModelError):
    """A model graph does not have the inputs or outputs its caller needs."""


class InputFileError(SignalsError):
    """An input file (events to produce, replay or evaluate) cannot be read."""


class BrokerError(SignalsError):
    """The local Kafka broker cannot be fetched, started, stopped or reached."""


class KafkaAuthError(BrokerError):
    """A broker answers, but authentication or the TLS handshake fails (wrong credentials or
    mechanism, an untrusted certificate, a security protocol the listener does not speak)."""


class RejectReason(StrEnum):
    """Why an input event went to the dead-letter topic (the DLQ record's ``error.class``)."""

    TOMBSTONE = "tombstone"            # the message has no value (a null / compaction tombstone)
    TOO_LARGE = "too_large"            # the raw message exceeds max_event_bytes
    INVALID_UTF8 = "invalid_utf8"      # the bytes are not UTF-8
    INVALID_JSON = "invalid_json"      # not JSON, or not a JSON object
    MISSING_TEXT = "missing_text"      # no non-empty title, description or text
    SCHEMA = "schema_violation"        # wrong type, missing/unknown/duplicate field, text too long
    INVALID_TIME = "invalid_event_time"  # event_time is not a real ISO-8601 instant
    TIME_RANGE = "event_time_out_of_range"  # too far after / before the message's timestamp
    PROCESSING = "processing_error"    # a model failed on this event alone (see pipeline)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Validation's answer for an event it cannot accept: a reason code and a readable message."""

    reason: RejectReason
    message: str
