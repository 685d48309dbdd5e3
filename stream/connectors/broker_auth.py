"""SCRAM authentication for the local broker (`signals broker start --auth scram`).

The broker then listens with SASL (SCRAM-SHA-512) on two ports: SASL_PLAINTEXT on ``--port`` and
SASL_SSL on ``--ssl-port``, whose certificate is signed by a CA generated here with ``openssl``
(kept as PEM: Kafka 4 reads ``ssl.keystore.type=PEM``). The KRaft controller listener stays
PLAINTEXT on 127.0.0.1; brokers talk to each other over SASL_PLAINTEXT as the user ``broker``.

The SCRAM credentials are created when the storage is formatted (``kafka-storage format
--add-scram``), so they exist before the first client connects. Random passwords, the CA and the
keystore live in ``<data-dir>/auth/`` (readable only by the owner) and are reused on restarts.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stream.errors import BrokerError

MECHANISM = "SCRAM-SHA-512"
CLIENT_USER = "content-signals"
BROKER_USER = "broker"
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required"


@dataclass(frozen=True, slots=True)
class ScramAuth:
    """The credentials and TLS files of one SCRAM broker, in `directory`."""

    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def keystore(self) -> Path:
        return self.directory / "broker-keystore.pem"

    @property
    def secrets_file(self) -> Path:
        return self.directory / "secrets.json"

    def exists(self) -> bool:
        return self.secrets_file.is_file()

    def secrets(self) -> dict[str, str]:
        data: dict[str, str] = json.loads(self.secrets_file.read_text())
        return data

    def prepare(self) -> None:
        """Create passwords, CA and keystore once (a no-op when they exist)."""
        if self.exists():
            return
        if shutil.which("openssl") is None:
            raise BrokerError("`openssl` is not on PATH; --auth scram needs it for the TLS CA")
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        values = {name: secrets.token_hex(16) for name in ("client", "broker", "key")}
        _make_tls(self.directory, values["key"], self.ca_file, self.keystore)
        self.secrets_file.write_text(json.dumps(values))
        os.chmod(self.secrets_file, 0o600)

    def format_args(self) -> list[str]:
        """The users to create at format time, before the broker ever starts."""
        values = self.secrets()
        return [arg for user, password in ((CLIENT_USER, values["client"]),
                                           (BROKER_USER, values["broker"]))
                for arg in ("--add-scram", f"{MECHANISM}=[name={user},password={password}]")]

    def listener_properties(self, port: int, ssl_port: int, controller_port: int) -> dict[str, str]:
        values = self.secrets()
        return {
            "listeners": f"SASL_PLAINTEXT://127.0.0.1:{port},SASL_SSL://127.0.0.1:{ssl_port},"
                         f"CONTROLLER://127.0.0.1:{controller_port}",
            "advertised_listeners": f"SASL_PLAINTEXT://127.0.0.1:{port},"
                                    f"SASL_SSL://127.0.0.1:{ssl_port}",
            "inter_broker_listener": "SASL_PLAINTEXT",
            "protocol_map": "CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL",
            "auth_properties": "\n".join((
                f"sasl.enabled.mechanisms={MECHANISM}",
                f"sasl.mechanism.inter.broker.protocol={MECHANISM}",
                f"listener.name.sasl_plaintext.{MECHANISM.lower()}.sasl.jaas.config={_SCRAM_LOGIN}"
                f' username="{BROKER_USER}" password="{values["broker"]}";',
                f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config={_SCRAM_LOGIN};",
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={self.keystore}",
                f"ssl.key.password={values['key']}",
            )),
        }

    def client_settings(self, port: int, ssl_port: int) -> list[str]:
        """What a client of this broker sets: SASL_SSL, and the SASL_PLAINTEXT alternative."""
        return [
            f"# SASL_SSL on 127.0.0.1:{ssl_port}; for SASL_PLAINTEXT use "
            f"SIGNALS_BOOTSTRAP_SERVERS=127.0.0.1:{port} SIGNALS_SECURITY_PROTOCOL=SASL_PLAINTEXT",
            f"export SIGNALS_BOOTSTRAP_SERVERS=127.0.0.1:{ssl_port}",
            "export SIGNALS_SECURITY_PROTOCOL=SASL_SSL",
            f"export SIGNALS_SASL_MECHANISM={MECHANISM}",
            f"export SIGNALS_SASL_USERNAME={CLIENT_USER}",
            f"export SIGNALS_SASL_PASSWORD={self.secrets()['client']}",
            f"export SIGNALS_SSL_CAFILE={self.ca_file}",
        ]


def plaintext_listener_properties(port: int, controller_port: int) -> dict[str, str]:
    """The listeners of a broker without authentication."""
    return {"listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised_listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "inter_broker_listener": "PLAINTEXT",
            "protocol_map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "auth_properties": ""}


def _make_tls(directory: Path, key_password: str, ca_file: Path, keystore: Path) -> None:
    """A self-signed CA and a broker certificate for 127.0.0.1/localhost signed by it. The key is
    PKCS#8 encrypted with PBE-SHA1-3DES: Java 17 cannot read PBES2 (openssl's default) keys."""
    ca_key, key, csr, cert = (directory / n for n in ("ca.key", "broker.key", "broker.csr",
                                                      "broker.crt"))
    extensions = directory / "broker.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                          "keyUsage=digitalSignature,keyEncipherment\n"
                          "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca_file,
             "-days", "3650", "-subj", "/CN=content-signals local CA",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", "/CN=127.0.0.1")
    _openssl("x509", "-req", "-in", csr, "-CA", ca_file, "-CAkey", ca_key, "-CAcreateserial",
             "-out", cert, "-days", "3650", "-extfile", extensions)
    encrypted = directory / "broker.p8"
    _openssl("pkcs8", "-topk8", "-in", key, "-out", encrypted, "-v1", "PBE-SHA1-3DES",
             "-passout", f"pass:{key_password}")
    keystore.write_bytes(encrypted.read_bytes() + cert.read_bytes())
    for path in (key, csr, encrypted, extensions, directory / "ca.srl"):
        path.unlink(missing_ok=True)


def _openssl(*args: str | Path) -> None:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise BrokerError(f"openssl {args[0]} failed: {result.stderr.strip()[-500:]}")
