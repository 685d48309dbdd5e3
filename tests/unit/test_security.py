"""One translation of the Kafka security settings for kafka-python, the probe and Faust."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from stream.connectors.security import faust_credentials, kafka_python_security, ssl_context
from stream.errors import ConfigError
from stream.settings import Settings

SASL = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "signals", "sasl_password": "secret"}


def test_plaintext_has_no_credentials() -> None:
    settings = Settings()
    assert kafka_python_security(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None


def test_sasl_ssl_gives_both_clients_the_same_mechanism_and_a_tls_context() -> None:
    settings = Settings().replace(**SASL)
    config = kafka_python_security(settings)
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "signals"
    assert isinstance(config["ssl_context"], ssl.SSLContext)
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.ssl_context.check_hostname


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "ca.pem"
    settings = Settings().replace(**SASL, ssl_cafile=str(missing))
    with pytest.raises(ConfigError, match=f"SIGNALS_SSL_CAFILE={missing}: no such file"):
        kafka_python_security(settings)
    with pytest.raises(ConfigError, match="no such file"):
        faust_credentials(settings)


def test_a_ca_file_that_is_not_pem_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=f"SIGNALS_SSL_CAFILE={bad}: not a PEM CA file"):
        ssl_context(Settings().replace(**SASL, ssl_cafile=str(bad)))
