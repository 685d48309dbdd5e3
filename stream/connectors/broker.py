"""A local single-node Apache Kafka (KRaft) for the demo and the tests, fetched from Maven Central.

`LocalBroker.start()` resolves the broker's jars with Maven (deploy/kafka/pom.xml) into
deploy/kafka/lib/ once, writes ``server.properties`` into its data folder, formats the storage on
first use, starts the JVM in its own session and waits until the broker answers. Starting a running
broker is a no-op; `stop()` ends it (and `clean=True` deletes its data).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from stream.connectors.broker_auth import ScramAuth, plaintext_listener_properties
from stream.errors import BrokerError
from stream.paths import DATA_ROOT, STATE_ROOT

DEPLOY_DIR = DATA_ROOT / "deploy" / "kafka"
JVM_OPTIONS = ("-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true")


@dataclass(frozen=True, slots=True)
class LocalBroker:
    data_dir: Path = STATE_ROOT / ".kafka" / "broker"
    port: int = 9092
    controller_port: int = 9093
    deploy_dir: Path = DEPLOY_DIR
    auth: str = "none"          # or "scram": SASL_PLAINTEXT on `port`, SASL_SSL on `ssl_port`
    ssl_port: int = 9094
    overrides: tuple[tuple[str, str], ...] = ()   # server properties after the file's (last wins)

    @property
    def scram(self) -> ScramAuth:
        return ScramAuth(self.data_dir / "auth")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def lib_dir(self) -> Path:
        return self.deploy_dir / "lib"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def fetch(self) -> None:
        """Resolve Kafka and its dependencies from Maven Central (once; a no-op afterwards)."""
        if any(self.lib_dir.glob("kafka_2.13-*.jar")):
            return
        _require_tool("mvn", "Maven (apt-get install maven)")
        command = ["mvn", "-q", "-B", "-f", str(self.deploy_dir / "pom.xml"),
                   "dependency:copy-dependencies"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BrokerError("fetching Kafka from Maven Central failed:\n"
                              + (result.stdout + result.stderr)[-2000:])

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def is_running(self) -> bool:
        return self.pid() is not None and _port_open(self.port)

    def start(self, timeout_s: float = 90.0) -> str:
        if self.is_running():
            return f"Kafka already running at {self.bootstrap} (pid {self.pid()})"
        if _port_open(self.port):
            raise BrokerError(f"port {self.port} is taken by another process; stop it or choose "
                              "another port (--port)")
        _require_tool("java", "a Java 17+ runtime")
        self.fetch()
        self._check_auth_matches_storage()
        if self.auth == "scram":
            self.scram.prepare()
        config = self._write_config()
        self._format_storage(config)
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        process = self._launch(config)
        self._wait_ready(process, timeout_s, log_offset)
        return "\n".join([f"Kafka started at {self.bootstrap} (pid {process.pid}, logs "
                          f"{self.log_file})", *self.client_settings()])

    def client_settings(self) -> list[str]:
        """The SIGNALS_* settings a client needs (none for a broker without authentication)."""
        return self.scram.client_settings(self.port, self.ssl_port) if self.scram.exists() else []

    def _check_auth_matches_storage(self) -> None:
        formatted = (self.data_dir / "logs" / "meta.properties").exists()
        if formatted and self.scram.exists() != (self.auth == "scram"):
            was = "with --auth scram" if self.scram.exists() else "without authentication"
            raise BrokerError(f"the broker in {self.data_dir} was set up {was}; start it the same "
                              "way, or `signals broker stop --clean` (deletes its data) first")

    def stop(self, timeout_s: float = 30.0, clean: bool = False) -> str:
        pid = self.pid()
        message = "Kafka is not running"
        if pid is not None:
            _terminate(pid, timeout_s)
            message = f"Kafka stopped (pid {pid})"
        self.pid_file.unlink(missing_ok=True)
        if clean and self.data_dir.exists():
            shutil.rmtree(self.data_dir)
            message += f"; removed {self.data_dir}"
        return message

    def status(self) -> str:
        if self.is_running():
            return "\n".join([f"running at {self.bootstrap} (pid {self.pid()}, data "
                              f"{self.data_dir})", *self.client_settings()])
        return f"not running (data {self.data_dir})"

    def _classpath(self) -> str:
        return str(self.lib_dir / "*")

    def _java(self, main: str, *args: str) -> list[str]:
        return ["java", *JVM_OPTIONS, "-cp", self._classpath(),
                f"-Dkafka.logs.dir={self.data_dir}",
                f"-Dlog4j2.configurationFile={self.deploy_dir / 'log4j2.properties'}", main, *args]

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = (self.deploy_dir / "server.properties").read_text()
        listeners = (self.scram.listener_properties(self.port, self.ssl_port, self.controller_port)
                     if self.auth == "scram"
                     else plaintext_listener_properties(self.port, self.controller_port))
        values = {**listeners, "port": str(self.port), "controller_port": str(self.controller_port),
                  "data_dir": str(self.data_dir)}
        for name, value in values.items():
            config = config.replace("${" + name + "}", value)
        config += "".join(f"{key}={value}\n" for key, value in self.overrides)
        path = self.data_dir / "server.properties"
        path.write_text(config)
        return path

    def _format_storage(self, config: Path) -> None:
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        result = subprocess.run(
            self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                       "-c", str(config),
                       *(self.scram.format_args() if self.auth == "scram" else ())),
            capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BrokerError("formatting Kafka storage failed:\n" + result.stderr[-2000:])

    def _launch(self, config: Path) -> subprocess.Popen[bytes]:
        stdout = (self.data_dir / "stdout.log").open("ab")
        process = subprocess.Popen(self._java("kafka.Kafka", str(config)), stdout=stdout,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.pid_file.write_text(str(process.pid))
        return process

    def _wait_ready(self, process: subprocess.Popen[bytes], timeout_s: float,
                    log_offset: int) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(f"Kafka exited with code {process.returncode} while starting; "
                                  f"last log lines:\n{self._log_tail()}")
            if _port_open(self.port) and "Kafka Server started" in self._new_log(log_offset):
                return
            time.sleep(0.3)
        raise BrokerError(f"Kafka did not start within {timeout_s:.0f}s; see {self.log_file}")

    def _new_log(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as handle:
                handle.seek(offset)
                return handle.read().decode(errors="replace")
        except OSError:
            return ""

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log yet)"


def _require_tool(name: str, what: str) -> None:
    if shutil.which(name) is None:
        raise BrokerError(f"`{name}` is not on PATH; the local broker needs {what}")


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    """True while `pid` runs; reaps it first if it is our own exited child (a zombie)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _terminate(pid: int, timeout_s: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
