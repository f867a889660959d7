"""The bad-input corpus (tests/bad_inputs/cases.toml): every case gives its exit code, exactly one stderr line
``error: <where>: <what>`` without a traceback (the traceback only with --debug), and leaves the database
as it was, or, for a trial that fails at run time, consistent with the failure recorded.

Commands run in this process (``hpsearch.cli.main`` with its argv), so keras is imported once; runtime cases
run a real worker whose trial processes fork from one shared, keras-preloaded server. A few cases also run
as real processes, where TensorFlow's start-up logging must not add lines to stderr."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from .cli.clirun import run_cli
from .conftest import PG_SERVER

CORPUS = Path(__file__).parent / "bad_inputs"
CASES: list[dict[str, Any]] = tomllib.loads((CORPUS / "cases.toml").read_text())["case"]
NEWER_REVISION = "ffff0000future"


def _params() -> list[Any]:
    params = []
    for case in CASES:
        for engine in case.get("engines", ["sqlite", "postgresql"]):
            params.append(pytest.param(case, engine, engine, id=f"{case['id']}-{engine}"))
    return params


# --- running the command line --------------------------------------------------------------------------------


def run_process(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A real ``hpsearch`` process with the user's environment: no TF_CPP_MIN_LOG_LEVEL of ours."""
    clean = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"} | env
    return subprocess.run(
        [sys.executable, "-m", "hpsearch", *argv], cwd=cwd, env=clean, capture_output=True, text=True, timeout=120
    )


# --- databases -----------------------------------------------------------------------------------------------


def _sqlite_file(url: str) -> Path | None:
    parsed = sa.engine.make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def snapshot(url: str) -> dict[str, list[str]] | None:
    """Every row of every table, without creating anything (None: no database file)."""
    file = _sqlite_file(url)
    if file is not None and not file.exists():
        return None
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            tables = sorted(sa.inspect(connection).get_table_names())
            return {
                table: sorted(repr(tuple(row)) for row in connection.execute(sa.text(f'SELECT * FROM "{table}"')))
                for table in tables
            }
    finally:
        engine.dispose()


def assert_consistent(url: str, artifact_root: Path) -> dict[str, Any]:
    """After a worker ran a failing trial: nothing left running or half-written. Returns trial 0."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:

            def rows(query: str) -> list[Any]:
                return list(connection.execute(sa.text(query)).mappings())

            trials = rows("SELECT * FROM trials ORDER BY number")
            assert [t["state"] for t in trials if t["state"] == "RUNNING"] == []
            for trial in trials:
                if trial["state"] in ("COMPLETED", "PRUNED", "FAILED"):
                    assert trial["finished_at"] is not None and trial["lease_expires_at"] is None, trial
                if trial["state"] == "FAILED":
                    assert trial["error"], trial
            assert rows("SELECT * FROM trial_attempts WHERE ended_at IS NULL") == []
            assert [w["state"] for w in rows("SELECT state FROM workers")] == ["STOPPED"]
            beyond = "SELECT m.* FROM trial_metrics m JOIN trials t ON t.id = m.trial_id WHERE m.epoch > t.epochs_done"
            assert rows(beyond) == []
            for artifact in rows("SELECT * FROM artifacts"):
                path = Path(artifact["uri"])
                assert path.is_file() and path.is_relative_to(artifact_root.resolve()), artifact
                assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact["sha256"]
            assert len(rows("SELECT id FROM studies")) == 1
    finally:
        engine.dispose()
    assert not [p for p in artifact_root.rglob("*") if ".tmp" in p.name], "a partial checkpoint was left behind"
    return trials[0]


def populate(url: str, study_file: Path, artifacts: Path) -> None:
    """A study "demo" as `study create` writes it (without a hypermodel), with a completed, a failed and a
    queued trial."""
    from hpsearch.spec import load_spec
    from hpsearch.store import NewStudy, TrialState, open_store
    from hpsearch.strategies import NewTrial

    spec = load_spec(study_file).model_dump(mode="json")
    spec["study"]["name"] = "demo"
    units = {"name": "units", "conditions": [], "min_value": 4, "max_value": 8, "step": 4, "sampling": "linear"}
    store = open_store(url, create=True)
    study, _ = store.create_study(
        NewStudy(
            name="demo",
            objective_name="val_accuracy",
            direction="max",
            objectives=[{"name": "val_accuracy", "direction": "max"}],
            algorithm="random",
            max_trials=3,
            max_epochs=1,
            seed=0,
            spec=spec,
            space={"space": [{"class_name": "Int", "config": {**units, "default": None}}], "values": {}},
            source_path=str(study_file),
            base_dir=str(study_file.parent),
            artifact_root=str(artifacts.resolve()),
        )
    )
    store.add_trials(study, [NewTrial({"units": 4}, 1), NewTrial({"units": 8}, 1), NewTrial({"units": 4}, 1)])
    worker = store.register_worker("w-demo", "host", 1, None)
    first = store.claim(worker, study.id)
    assert first is not None
    store.record_epoch(first.trial_id, worker, 1, {"val_accuracy": 0.75, "loss": 0.5}, "val_accuracy", "max")
    store.finish(first.trial_id, worker, TrialState.COMPLETED)
    second = store.claim(worker, study.id)
    assert second is not None
    store.finish(second.trial_id, worker, TrialState.FAILED, "ValueError: boom")
    store.worker_stopped(worker)
    store.engine.dispose()


class RefusingPostgres:
    """A server that speaks just enough of PostgreSQL's protocol to ask for a password and refuse it: the
    local test server trusts every client, so it cannot produce a real authentication failure."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            with connection, suppress(OSError):
                self._refuse(connection)

    @staticmethod
    def _read_startup(connection: socket.socket) -> int:
        length = struct.unpack("!I", connection.recv(4, socket.MSG_WAITALL))[0]
        body = connection.recv(length - 4, socket.MSG_WAITALL)
        return int(struct.unpack("!I", body[:4])[0])

    def _refuse(self, connection: socket.socket) -> None:
        # SSLRequest (80877103) and GSSENCRequest (80877104) are answered "N"; then the startup message.
        while self._read_startup(connection) in (80877103, 80877104):
            connection.sendall(b"N")
        connection.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
        kind = connection.recv(1, socket.MSG_WAITALL)
        length = struct.unpack("!I", connection.recv(4, socket.MSG_WAITALL))[0]
        connection.recv(length - 4, socket.MSG_WAITALL)
        assert kind == b"p"
        fields = [b"SFATAL", b"VFATAL", b"C28P01", b'Mpassword authentication failed for user "bob"']
        payload = b"".join(field + b"\0" for field in fields) + b"\0"
        connection.sendall(b"E" + struct.pack("!I", len(payload) + 4) + payload)

    def close(self) -> None:
        self.socket.close()


@contextmanager
def tiny_tmpfs(path: Path) -> Iterator[None]:
    """A 16 kB filesystem at ``path`` (needs CAP_SYS_ADMIN, as root in CI's container)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(path)], capture_output=True, check=False
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# --- the corpus ----------------------------------------------------------------------------------------------


def prepare_directory(case: dict[str, Any], directory: Path) -> Path:
    shutil.copytree(CORPUS / "base", directory, dirs_exist_ok=True)
    study = directory / "study.toml"
    text = case.get("text", study.read_text())
    for old, new in case.get("replace", []):
        assert old in text, (case["id"], old)
        text = text.replace(old, new)
    study.write_text(text + case.get("append", ""))
    for name, content in case.get("files", {}).items():
        (directory / name).write_text(content)
    if "latin1" in case:
        (directory / case["latin1"]).write_bytes('[study]\nname = "café"\n'.encode("latin-1"))
    return study


def assert_one_error_line(stderr: str, case: dict[str, Any]) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in stderr
    assert case["error"] in line, line
    if "error_also" in case:
        assert case["error_also"] in line, line
    return line


@pytest.fixture(scope="module")
def refusing_postgres() -> Iterator[RefusingPostgres]:
    server = RefusingPostgres()
    yield server
    server.close()


@pytest.mark.parametrize(("case", "engine", "db_url"), _params(), indirect=["db_url"])
def test_bad_input(
    case: dict[str, Any],
    engine: str,
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    refusing_postgres: RefusingPostgres,
) -> None:
    import typer

    from hpsearch.cli import app

    required = case.get("requires_command")
    if required and required not in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        pytest.skip(f"`hpsearch {required}` does not exist yet")
    work = tmp_path / "work"
    study_file = prepare_directory(case, work)
    artifacts = tmp_path / "artifacts"
    monkeypatch.chdir(work)
    monkeypatch.setenv("HPSEARCH_DB", db_url)
    monkeypatch.setenv("HPSEARCH_ARTIFACTS", str(artifacts))
    with ExitStack() as stack:
        setup = case.get("setup", "populated")
        if case.get("mutate") == "full_artifacts":
            stack.enter_context(tiny_tmpfs(artifacts))
        if setup == "populated":
            populate(db_url, CORPUS / "base" / "study.toml", artifacts)
        elif setup == "blank" and _sqlite_file(db_url) is not None:
            _sqlite_file(db_url).touch()  # type: ignore[union-attr]
        elif setup == "queued":
            queue_one_trial(db_url, study_file, capsys)
        mutate(case.get("mutate"), db_url, artifacts)

        readonly = f"sqlite:///file:{_sqlite_file(db_url)}?mode=ro&uri=true" if _sqlite_file(db_url) else ""
        missing_pg = sa.engine.make_url(PG_SERVER).set(password="Hunter2Secret", database="no_such_hpsearch_db")
        values = {
            "study": str(study_file),
            "tmp": str(work),
            "fake_pg": f"postgresql+psycopg://bob:Hunter2Secret@127.0.0.1:{refusing_postgres.port}/x",
            "fake_pg_query": f"postgresql+psycopg://bob@127.0.0.1:{refusing_postgres.port}/x?password=Hunter2Secret",
            "missing_pg": missing_pg.render_as_string(hide_password=False),
            "readonly_db": readonly,
        }
        argv = [part.format(**values) for part in case.get("command", ["study", "create", "{study}"])]

        before = snapshot(db_url)
        code, out, err = run_cli(argv, capsys)
        assert code == case["exit"], f"exit {code}\nstdout: {out}\nstderr: {err}"
        secret = case.get("secret")
        if "trial_state" in case:
            assert err.strip() == "", err
            trial = assert_consistent(db_url, artifacts)
            assert trial["state"] == case["trial_state"]
            assert case["trial_error"] in trial["error"], trial["error"]
            return
        line = assert_one_error_line(err, case)
        assert snapshot(db_url) == before, "the database changed"
        if "absent" in case:
            assert not (work / case["absent"]).exists()
        if secret:
            assert secret not in out + err

        if case.get("debug"):
            code, out, err = run_cli(["--debug", *argv], capsys)
            assert code == case["exit"], err
            assert "Traceback (most recent call last)" in err
            assert err.strip().splitlines()[-1] == line
            assert snapshot(db_url) == before
            if secret:
                assert secret not in out + err, "--debug printed the password"
        if case.get("process") and engine == "sqlite":  # start-up logging does not depend on the database
            done = run_process(argv, work, {"HPSEARCH_DB": db_url, "HPSEARCH_ARTIFACTS": str(artifacts)})
            assert done.returncode == case["exit"], done.stderr
            assert_one_error_line(done.stderr, case)
            assert snapshot(db_url) == before


def queue_one_trial(url: str, study_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hpsearch study create` (in this process), then one coordinator step queues trial 0."""
    from hpsearch.control.coordinator import Coordinator
    from hpsearch.store import open_store

    code, _, err = run_cli(["study", "create", str(study_file)], capsys)
    assert code == 0, err
    store = open_store(url)
    study = store.study("bad")
    Coordinator(store, ["bad"]).step(study, target_queued=1)
    assert [t.state for t in store.trials(study.id)] == ["QUEUED"]
    store.engine.dispose()


def mutate(kind: str | None, url: str, artifacts: Path) -> None:
    if kind == "newer_schema":  # as if a newer hpsearch had migrated this database
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            connection.execute(sa.text(f"UPDATE alembic_version SET version_num = '{NEWER_REVISION}'"))
        engine.dispose()
    elif kind == "block_artifacts":  # the study's directory under its root is a file: nothing can be written
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            root = connection.scalar(sa.text("SELECT artifact_root FROM studies WHERE name = 'bad'"))
        engine.dispose()
        blocked = Path(root) / "bad"
        blocked.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(blocked)
        blocked.write_text("not a directory")
    elif kind == "full_artifacts":  # fill the tiny filesystem to the last byte
        with suppress(OSError), (artifacts / "filler").open("wb") as handle:
            while True:
                handle.write(b"\0" * 1024)
                handle.flush()


def test_the_corpus_covers_every_bullet_of_the_issue() -> None:
    ids = [case["id"] for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 50
    for prefix in ("toml-", "hypermodel-", "data-", "db-", "runtime-", "cli-"):
        assert any(i.startswith(prefix) for i in ids), prefix
    for needed in (
        "toml-broken",
        "unknown-key",
        "string-for-int",
        "float-range-inverted",
        "log-float-min-zero",
        "hypermodel-one-name-two-types",
        "unknown-algorithm",
        "option-of-another-algorithm",
        "objective-never-logged",
        "hypermodel-conditional-parent-missing",
        "data-labels-out-of-range",
        "db-wrong-password",
        "db-schema-newer",
        "db-read-only-file",
        "runtime-nan-loss",
        "runtime-oom-killed",
        "runtime-artifact-root-full",
        "runtime-trial-timeout",
        "cli-trial-out-of-range",
        "cli-promote-before-any-completed-trial",
    ):
        assert needed in ids, needed
