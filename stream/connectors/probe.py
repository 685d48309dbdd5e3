"""Before any client connects: one connection that says, in one line, why Kafka will not talk to us.

kafka-python and aiokafka retry a refused login, a failed TLS handshake or a protocol mismatch
like an unreachable broker: they log a socket error per attempt and finally time out with
"Unable to bootstrap". `check_connection` opens one connection to the first bootstrap server that
accepts TCP, does what the configured security protocol needs (TLS handshake with
`security.ssl_context`, then a SASL handshake and login), and raises:

* `KafkaAuthError` "authentication failed ...": wrong user or password, a mechanism the broker
  does not offer, a client without SASL at a SASL listener (or the reverse);
* `KafkaAuthError` "TLS handshake with ... failed ...": the certificate is not signed by the CA
  file (named), or the port does not speak TLS;
* `BrokerError` "no Kafka broker answers at ...": nothing accepted TCP within connect_timeout_s.

The SASL exchange is Kafka's own (SaslHandshake v1, SaslAuthenticate v1); the SCRAM arithmetic is
kafka-python's `ScramClient`.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from typing import Any

from kafka.net.sasl.scram import ScramClient

from stream.connectors.security import ssl_context, uses_sasl, uses_tls
from stream.errors import BrokerError, KafkaAuthError
from stream.settings import Settings

_SASL_HANDSHAKE, _SASL_AUTHENTICATE = 17, 36
_UNSUPPORTED_MECHANISM, _AUTH_FAILED = 33, 58
_MAX_FRAME = 1 << 20


class _Unreachable(Exception):
    """No TCP connection to this server (refused, unknown host, timed out)."""


class _NotKafka(Exception):
    """The server closed the connection or answered with bytes that are not a Kafka response."""


def check_connection(settings: Settings) -> None:
    """Return once a bootstrap server accepted our security settings; raise the reason otherwise."""
    context = ssl_context(settings) if uses_tls(settings) else None
    servers = [s.strip() for s in settings.bootstrap_servers.split(",")]
    deadline = time.monotonic() + settings.connect_timeout_s
    while True:
        for server in servers:
            host, _, port = server.rpartition(":")
            try:
                _probe(settings, context, host.strip("[]"), int(port), deadline)
                return
            except _Unreachable:
                continue
        if time.monotonic() >= deadline:
            raise BrokerError(f"no Kafka broker answers at {settings.bootstrap_servers}; start "
                              "one with `signals broker start` or set SIGNALS_BOOTSTRAP_SERVERS")
        time.sleep(0.2)


def _probe(settings: Settings, context: ssl.SSLContext | None, host: str, port: int,
           deadline: float) -> None:
    where = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=max(deadline - time.monotonic(), 1))
    except OSError as exc:
        raise _Unreachable(where) from exc
    try:
        if context is not None:
            sock = _tls(sock, context, settings, where)
        _sasl(sock, settings, where)
    finally:
        sock.close()


def _tls(sock: socket.socket, context: ssl.SSLContext, settings: Settings,
         where: str) -> ssl.SSLSocket:
    ca = settings.ssl_cafile or "the system CA store (set SIGNALS_SSL_CAFILE)"
    try:
        return context.wrap_socket(sock, server_hostname=where.rpartition(":")[0])
    except ssl.SSLCertVerificationError as exc:
        raise KafkaAuthError(f"TLS handshake with {where} failed: {exc.verify_message}; the "
                             f"broker's certificate is not trusted by {ca}") from exc
    except (ssl.SSLError, OSError) as exc:
        raise KafkaAuthError(
            f"TLS handshake with {where} failed ({getattr(exc, 'reason', None) or exc}): the port "
            f"may not speak TLS; check SIGNALS_SECURITY_PROTOCOL={settings.security_protocol} "
            f"and the CA file {ca}") from exc


def _sasl(sock: socket.socket, settings: Settings, where: str) -> None:
    """SASL login; without SASL, make sure the listener does not expect it."""
    mechanism = settings.sasl_mechanism if uses_sasl(settings) else "PLAIN"
    try:
        error, offered = _handshake(sock, mechanism)
    except _NotKafka as exc:
        protocol = settings.security_protocol
        raise KafkaAuthError(
            f"authentication failed at {where}: the broker {exc} to the first request; it may "
            f"expect another SIGNALS_SECURITY_PROTOCOL than {protocol} (TLS, or SASL)") from exc
    if not uses_sasl(settings):
        if error in (0, _UNSUPPORTED_MECHANISM):   # a SASL listener answers the handshake
            raise KafkaAuthError(
                f"authentication failed at {where}: the listener expects SASL "
                f"({', '.join(offered)}) but SIGNALS_SECURITY_PROTOCOL="
                f"{settings.security_protocol}; use SASL_PLAINTEXT or SASL_SSL with "
                "SIGNALS_SASL_MECHANISM, _USERNAME and _PASSWORD")
        return
    if error == _UNSUPPORTED_MECHANISM:
        raise KafkaAuthError(f"authentication failed at {where}: the broker does not offer "
                             f"SIGNALS_SASL_MECHANISM={mechanism} (it offers "
                             f"{', '.join(offered) or 'none'})")
    if error != 0:
        raise KafkaAuthError(f"authentication failed at {where}: the listener refused a SASL "
                             f"handshake (Kafka error {error}); does it expect SASL?")
    _login(sock, settings, where)


def _login(sock: socket.socket, settings: Settings, where: str) -> None:
    who = f"user {settings.sasl_username!r} with {settings.sasl_mechanism}"
    try:
        if settings.sasl_mechanism == "PLAIN":
            _authenticate(sock, f"\0{settings.sasl_username}\0{settings.sasl_password}".encode())
            return
        scram = ScramClient(settings.sasl_username, settings.sasl_password,
                            settings.sasl_mechanism)
        scram.process_server_first_message(_authenticate(sock, scram.first_message()))
        scram.process_server_final_message(_authenticate(sock, scram.final_message()))
    except _LoginRefused as exc:
        raise KafkaAuthError(f"authentication failed at {where} for {who}: {exc}; check "
                             "SIGNALS_SASL_USERNAME and SIGNALS_SASL_PASSWORD") from exc
    except (_NotKafka, ValueError, KeyError) as exc:
        raise KafkaAuthError(f"authentication failed at {where} for {who}: {exc}") from exc


class _LoginRefused(Exception):
    """The broker answered SaslAuthenticate with an error."""


def _handshake(sock: socket.socket, mechanism: str) -> tuple[int, list[str]]:
    body = _request(sock, _SASL_HANDSHAKE, _string(mechanism))
    error, = struct.unpack_from(">h", body)
    count, = struct.unpack_from(">i", body, 2)
    offered, offset = [], 6
    for _ in range(max(count, 0)):
        text, offset = _read_string(body, offset)
        offered.append(text or "")
    return error, offered


def _authenticate(sock: socket.socket, token: bytes) -> bytes:
    body = _request(sock, _SASL_AUTHENTICATE, struct.pack(">i", len(token)) + token)
    error, = struct.unpack_from(">h", body)
    message, offset = _read_string(body, 2)
    if error != 0:
        raise _LoginRefused(message or f"Kafka error {error}")
    size, = struct.unpack_from(">i", body, offset)
    return body[offset + 4: offset + 4 + max(size, 0)]


def _request(sock: socket.socket, api_key: int, body: bytes) -> bytes:
    """Send a version-1 request with a v1 header; return the response body after its header."""
    header = struct.pack(">hhi", api_key, 1, api_key) + _string("content-signals-probe")
    payload = header + body
    try:
        sock.sendall(struct.pack(">i", len(payload)) + payload)
        size, = struct.unpack(">i", _read(sock, 4))
        if not 4 <= size <= _MAX_FRAME:
            raise _NotKafka("answered with bytes that are not a Kafka response")
        response = _read(sock, size)
    except (OSError, struct.error) as exc:
        raise _NotKafka(f"closed the connection ({exc})") from exc
    correlation, = struct.unpack_from(">i", response)
    if correlation != api_key:
        raise _NotKafka("answered another request")
    return response[4:]


def _read(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed by the broker")
        data += chunk
    return data


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _read_string(body: bytes, offset: int) -> tuple[str | None, int]:
    size: Any
    size, = struct.unpack_from(">h", body, offset)
    if size < 0:
        return None, offset + 2
    return body[offset + 2: offset + 2 + size].decode(errors="replace"), offset + 2 + size
