"""A throwaway PostgreSQL server for the tests (used by the `postgres_url` fixture).

`postgres_url()` yields a SQLAlchemy URL such as
``postgresql+psycopg2://fusionnas:secret@127.0.0.1:PORT/fusionnas``:

* if ``FUSIONNAS_POSTGRES_URL`` is set, that server is used as it is (nothing is
  started or removed; the tests create and delete their own studies in it);
* otherwise a fresh cluster is created in a temporary directory with the server
  binaries (``initdb``, ``pg_ctl``, ``postgres``) found by `find_bindir`, listens
  on 127.0.0.1 at a free port (its Unix socket stays in the temporary directory),
  gets a password user and a database, and is stopped and deleted at the end.
  initdb refuses to run as root, so as root the server runs as the ``postgres``
  user (created by Debian's package), else as ``nobody``.

Without the binaries the tests skip with a message saying how to install them,
except under ``CI=true``, where they fail: CI must run them.
"""
from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

ENV_URL = "FUSIONNAS_POSTGRES_URL"
USER = "fusionnas"
PASSWORD = "secret"
DATABASE = "fusionnas"
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH, via "
    "`pg_config --bindir` or in /usr/lib/postgresql/*/bin. Install them "
    "(Debian/Ubuntu: `sudo apt-get install postgresql`; macOS: `brew install "
    f"postgresql`) or point {ENV_URL} at a server, e.g. "
    f"{ENV_URL}=postgresql+psycopg2://user:password@host:5432/dbname"
)


def in_ci() -> bool:
    """True when the environment variable CI is ``true`` (or ``1``), as CI services set it."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip the test locally; fail it in CI, where the database tests must run."""
    if in_ci():
        pytest.fail(f"CI=true, so the PostgreSQL tests must run: {reason}", pytrace=False)
    pytest.skip(reason)


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in SERVER_BINARIES)


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None.

    Looks at ``initdb`` on PATH (symlinks resolved), then ``pg_config --bindir``
    (which may belong to a client-only install, so it is checked), then Debian's
    /usr/lib/postgresql/<version>/bin and similar layouts, newest version first.
    """
    candidates: list[Path] = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True,
                                 text=True, timeout=10, check=True).stdout.strip()
            if out:
                candidates.append(Path(out))

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path))

    for pattern in ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin",
                    "/opt/homebrew/opt/postgresql*/bin", "/usr/local/opt/postgresql*/bin"):
        candidates += [Path(p) for p in sorted(glob.glob(pattern), key=version, reverse=True)]
    for bindir in candidates:
        if _has_server(bindir):
            return bindir
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_account() -> pwd.struct_passwd | None:
    """The account to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user "
                       "exists to run PostgreSQL as (initdb refuses root)")


class Cluster:
    """A PostgreSQL cluster in its own temporary directory."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.account = _server_account()
        self.root = Path(tempfile.mkdtemp(prefix="fusionnas-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        if self.account is not None:
            os.chown(self.root, self.account.pw_uid, self.account.pw_gid)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        kwargs = {}
        env = dict(os.environ, LC_ALL="C", LANG="C")
        if self.account is not None:
            kwargs = dict(user=self.account.pw_uid, group=self.account.pw_gid, extra_groups=[])
            env["HOME"] = str(self.root)
        return subprocess.run([str(self.bindir / args[0]), *args[1:]], capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=self.root, **kwargs)

    def _check(self, proc: subprocess.CompletedProcess, what: str) -> None:
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}{log}")

    def start(self) -> None:
        self._check(self._run("initdb", "-D", str(self.data), "-U", "postgres",
                              "--auth-local=trust", "--auth-host=scram-sha-256",
                              "--encoding=UTF8", "--no-locale", "--no-sync",
                              "--no-instructions"), "initdb")
        # Speed over durability: the cluster is thrown away after the tests.
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\n"
                       f"unix_socket_directories = '{self.root}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                       "max_connections = 100\n")
        for attempt in range(5):  # the free port can be taken before the server binds it
            self.port = free_port()
            proc = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                             "-t", "60", "-o", f"-p {self.port}", "start", timeout=90)
            if proc.returncode == 0:
                break
            if attempt == 4 or "already in use" not in self.log.read_text(errors="replace"):
                self._check(proc, "pg_ctl start")
        self.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'",
                     f"CREATE DATABASE {DATABASE} OWNER {USER}")

    def execute(self, *statements: str) -> None:
        """Run statements as the superuser over the Unix socket (trusted, no password)."""
        import psycopg2

        conn = psycopg2.connect(host=str(self.root), port=self.port, user="postgres",
                                dbname="postgres", connect_timeout=10)
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
        finally:
            conn.close()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def postgres_url() -> Iterator[str]:
    """Yield the URL of a PostgreSQL database for the tests (see the module docstring)."""
    try:
        import psycopg2  # noqa: F401  (the driver behind postgresql+psycopg2://)
    except ImportError:
        skip_or_fail("psycopg2 not installed: pip install -e '.[test]' (or psycopg2-binary)")
    url = os.environ.get(ENV_URL)
    if url:
        yield url
        return
    bindir = find_bindir()
    if bindir is None:
        skip_or_fail(INSTALL_HINT)
    cluster = Cluster(bindir)
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


def waiting_on_a_lock(url: str) -> list[str]:
    """Statements of other sessions of the database that wait for a lock."""
    import psycopg2
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    conn = psycopg2.connect(host=parsed.host, port=parsed.port, user=parsed.username,
                            password=parsed.password, dbname=parsed.database, connect_timeout=10)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'")
            return [row[0] for row in cursor.fetchall()]
    finally:
        conn.close()
