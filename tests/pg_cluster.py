"""A PostgreSQL cluster of a test's own: ``initdb`` into a temporary directory, ``pg_ctl start`` on a free
port with its unix socket inside that directory and trust auth, one database made with ``createdb``; the
test may restart or kill it as it likes, and it is stopped and removed afterwards (also when the test fails).
Nothing else on the machine is touched: not the machine's server, not its configuration, not its port.

Run as root, the server runs as the ``postgres`` OS user (``initdb`` refuses root), in a directory it owns.

    with running_cluster() as cluster:   # skips the test when no PostgreSQL binaries are installed
        engine = sqlalchemy.create_engine(cluster.url)
        cluster.restart()
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

# Where to find initdb/pg_ctl when they are not the newest /usr/lib/postgresql/*/bin (or on PATH).
BINDIR_VARIABLE = "HPSEARCH_PG_BINDIR"
SUPERUSER = "postgres"
# Settings of a throwaway test server: no fsync (a clean restart still flushes everything; only an OS crash
# would lose data), enough connections for a few workers, coordinators and their trial processes.
SETTINGS = """
listen_addresses = '127.0.0.1'
unix_socket_directories = '{socket_dir}'
max_connections = 200
fsync = off
logging_collector = off
"""


def find_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl: $HPSEARCH_PG_BINDIR, else the newest
    /usr/lib/postgresql/*/bin (Debian, Ubuntu), else wherever PATH finds initdb; None when there is none.

    >>> find_bindir()  # doctest: +SKIP
    PosixPath('/usr/lib/postgresql/15/bin')
    """
    candidates = [os.environ.get(BINDIR_VARIABLE, "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    initdb = shutil.which("initdb")
    candidates.append(str(Path(initdb).parent) if initdb else "")
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    return None


def free_port() -> int:
    """A TCP port nobody listens on now (the OS picks it when binding port 0).

    >>> 0 < free_port() < 65536
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PgCluster:
    """A running cluster of the test's own. ``url`` is its database (SQLAlchemy, psycopg, TCP on
    127.0.0.1:``port``). Example: ``PgCluster(...).restart()``."""

    bindir: Path
    root: Path  # the temporary directory: data/, sock/, server.log
    port: int
    database: str
    run_as: str | None  # the OS user the server runs as (postgres when the test runs as root), None: ourselves

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{self.database}"

    def command(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one of the cluster's programs (as ``run_as``), from inside its directory; a failure raises
        with the program's output and the end of the server log."""
        argv = [str(self.bindir / program), *args]
        if self.run_as is not None:
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        done = subprocess.run(argv, cwd=self.root, capture_output=True, text=True, timeout=180)
        if check and done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{tail}"
            )
        return done

    def pg_ctl(self, action: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # -o passes the port on every start and restart: the server listens where the url says.
        options = ["-D", str(self.data), "-l", str(self.log), "-w", "-t", "120", "-o", f"-p {self.port}"]
        return self.command("pg_ctl", action, *options, *args, check=check)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self.pg_ctl("start")

    def restart(self) -> None:
        """Restart the server (fast shutdown: open connections are cut, as in a real restart)."""
        self.pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        """Stop the server: fast, else immediate. No error when it is not running."""
        if self.pg_ctl("stop", "-m", "fast", check=False).returncode != 0:
            self.pg_ctl("stop", "-m", "immediate", check=False)


def _owner() -> str | None:
    """The OS user to run the server as: postgres when we are root (initdb refuses root), else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        pytest.skip(f"running as root and there is no '{SUPERUSER}' OS user to run initdb as")
    if shutil.which("runuser") is None:
        pytest.skip("running as root and runuser is missing (needed to run initdb as postgres)")
    return SUPERUSER


@contextmanager
def running_cluster(database: str = "hpsearch") -> Iterator[PgCluster]:
    """Yield a started cluster with one empty ``database``; stop and delete it afterwards. Skips the test
    when PostgreSQL's server binaries are not installed (set $HPSEARCH_PG_BINDIR to point at them).

    >>> with running_cluster() as cluster:  # doctest: +SKIP
    ...     cluster.url
    'postgresql+psycopg://postgres@127.0.0.1:40123/hpsearch'
    """
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(f"no PostgreSQL server binaries (initdb, pg_ctl) found; set {BINDIR_VARIABLE}")
    run_as = _owner()
    # Not pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="hpsearch-pg-"))
    (root / "sock").mkdir()
    if run_as is not None:
        entry = pwd.getpwnam(run_as)
        for path in (root, root / "sock"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    cluster = PgCluster(bindir=bindir, root=root, port=0, database=database, run_as=run_as)
    started = False
    try:
        cluster.command(
            "initdb", "-D", str(cluster.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"
        )
        with (cluster.data / "postgresql.conf").open("a") as conf:
            conf.write(SETTINGS.format(socket_dir=cluster.socket_dir))
        for _ in range(3):  # another process may take the free port before the server binds it
            cluster.port = free_port()
            try:
                cluster.start()
                started = True
                break
            except RuntimeError:
                if cluster.log.exists() and "could not bind" not in cluster.log.read_text(errors="replace"):
                    raise
        if not started:
            cluster.start()  # raises with the log
            started = True
        socket_args = ["-h", str(cluster.socket_dir), "-p", str(cluster.port), "-U", SUPERUSER]
        cluster.command("createdb", *socket_args, database)
        yield cluster
    finally:
        if started or (cluster.data / "postmaster.pid").exists():
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
