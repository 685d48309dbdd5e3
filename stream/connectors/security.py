"""Kafka security settings, translated once for every client we create.

The tools (kafka-python), the connection probe and the Faust worker (aiokafka) all get their TLS
context from `ssl_context` and their SASL options from here, so a setting means the same thing
to each of them. A CA, certificate or key file that cannot be read is a `ConfigError` naming the
file and the variable, raised before any connection is tried.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from stream.errors import ConfigError
from stream.settings import Settings


def uses_tls(settings: Settings) -> bool:
    return settings.security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(settings: Settings) -> bool:
    return settings.security_protocol.startswith("SASL")


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context: the CA file (else the system's CAs), and a client certificate for
    mutual TLS when one is set. Hostnames are checked against the broker's certificate."""
    _readable(settings.ssl_cafile, "SIGNALS_SSL_CAFILE")
    _readable(settings.ssl_certfile, "SIGNALS_SSL_CERTFILE")
    _readable(settings.ssl_keyfile, "SIGNALS_SSL_KEYFILE")
    try:
        context = ssl.create_default_context(cafile=settings.ssl_cafile or None)
    except ssl.SSLError as exc:
        raise ConfigError(f"SIGNALS_SSL_CAFILE={settings.ssl_cafile}: not a PEM CA file "
                          f"({exc.reason or exc})") from exc
    if settings.ssl_certfile:
        try:
            context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile or None)
        except ssl.SSLError as exc:
            raise ConfigError(f"SIGNALS_SSL_CERTFILE={settings.ssl_certfile} / SIGNALS_SSL_KEYFILE"
                              f"={settings.ssl_keyfile}: not a PEM certificate and key "
                              f"({exc.reason or exc})") from exc
    return context


def kafka_python_security(settings: Settings) -> dict[str, Any]:
    """The security part of a kafka-python client's configuration."""
    config: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if uses_sasl(settings):
        config |= {"sasl_mechanism": settings.sasl_mechanism,
                   "sasl_plain_username": settings.sasl_username,
                   "sasl_plain_password": settings.sasl_password}
    if uses_tls(settings):
        config["ssl_context"] = ssl_context(settings)
    return config


def faust_credentials(settings: Settings) -> Any:
    """Faust's `broker_credentials` (handed to aiokafka), or None for PLAINTEXT."""
    import faust  # here, not at the top: the kafka-python tools should not load Faust

    if settings.security_protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings) if uses_tls(settings) else None
    if settings.security_protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.sasl_username, password=settings.sasl_password,
        mechanism=settings.sasl_mechanism, ssl_context=context)


def _readable(path: str, variable: str) -> None:
    if not path:
        return
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{variable}={path}: no such file")
    try:
        file.open("rb").close()
    except OSError as exc:
        raise ConfigError(f"{variable}={path}: cannot be read ({exc.strerror})") from exc
