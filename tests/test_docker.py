"""docker/: the compose file and the two Dockerfiles, checked without a Docker engine.

Every check runs on the compose file as PyYAML reads it (with Compose's ``${VAR:-default}`` interpolation done
here), and again on the output of ``docker compose config --format json`` where a Docker client with the
compose plugin exists (``config`` validates against the Compose specification and needs no engine).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
WORKER_DOCKERFILE = DOCKER / "worker.Dockerfile"
COORDINATOR_DOCKERFILE = DOCKER / "coordinator.Dockerfile"
COORDINATOR_REQUIREMENTS = DOCKER / "coordinator-requirements.txt"

PLACEHOLDER_PASSWORD = "change-me"
# Variables compose.yaml reads; the tests start from an environment without them, to see the defaults.
COMPOSE_VARIABLES = (
    "POSTGRES_PASSWORD",
    "KERAS_BACKEND",
    "HPSEARCH_STUDIES",
    "HPSEARCH_WITH_GP",
    "HPSEARCH_PG_PUBLISH",
)
# Distributions only workers need: the coordinator image must not install them.
WORKER_ONLY = {"keras", "tensorflow", "keras-tuner", "tensorboard", "torch", "jax", "jaxlib"}
# Python modules the coordinator must never import.
FORBIDDEN_MODULES = ("keras", "keras_tuner", "tensorflow", "torch", "jax")

Loader = Callable[[Mapping[str, str]], dict[str, Any]]


# --- loading the compose file ----------------------------------------------------------------------------


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


DOCKER_COMPOSE = _docker_compose_available()

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}`` and ``${VAR:?error}`` substitution."""

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        value = env.get(name)
        if op in (":-", ":?") and not value:
            value = None
        if value is not None:
            return value
        if op in (":?", "?"):
            raise ValueError(f"compose.yaml requires ${name}: {arg}")
        return arg if op in (":-", "-") else ""

    return _VARIABLE.sub(replace, text.replace("$$", "\0")).replace("\0", "$")


def _interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items()}
    return node


def load_yaml(env: Mapping[str, str]) -> dict[str, Any]:
    raw = yaml.safe_load(COMPOSE.read_text())  # resolves the anchors and `<<` merges
    assert isinstance(raw, dict), "compose.yaml is not a mapping"
    return {key: _interpolate_tree(value, env) for key, value in raw.items() if not key.startswith("x-")}


def load_docker_config(env: Mapping[str, str], tmp_path: Path) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if k not in COMPOSE_VARIABLES and not k.startswith("COMPOSE_")}
    empty_env_file = tmp_path / "empty.env"  # a docker/.env with a real password must not leak into the test
    empty_env_file.write_text("")
    options = ["-f", str(COMPOSE), "--env-file", str(empty_env_file), "--profile", "tools"]
    result = subprocess.run(
        ["docker", "compose", *options, "config", "--format", "json"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
    loaded = json.loads(result.stdout)
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(params=["yaml", "docker-compose-config"])
def load(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Loader]:
    """A function from an environment to the compose configuration, from one of the two sources."""
    if request.param == "yaml":
        yield load_yaml
        return
    if not DOCKER_COMPOSE:
        pytest.skip("no `docker compose` here (a Docker client with the compose plugin); the YAML checks ran")
    yield lambda env: load_docker_config(env, tmp_path)


@pytest.fixture
def config(load: Loader) -> dict[str, Any]:
    return load({})


# --- normalizing the two forms (short syntax in the YAML, long syntax from `docker compose config`) --------


def services(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(config["services"])


def workers(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in services(config).items() if name.startswith("worker")}


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def mounts(service: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Target path -> {type, source, read_only}."""
    out: dict[str, dict[str, Any]] = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            parts = volume.split(":")
            source, target = parts[0], parts[1]
            named = not source.startswith((".", "/", "~", "$"))
            out[target] = {"type": "volume" if named else "bind", "source": source, "read_only": "ro" in parts[2:]}
        else:
            out[volume["target"]] = {
                "type": volume["type"],
                "source": volume.get("source"),
                "read_only": bool(volume.get("read_only")),
            }
    return out


def depends_on(service: Mapping[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def command(service: Mapping[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(part) for part in cmd]


def gpu_devices(service: Mapping[str, Any]) -> list[dict[str, Any]]:
    deploy = service.get("deploy") or {}
    return list(((deploy.get("resources") or {}).get("reservations") or {}).get("devices") or [])


def hpsearch_services(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services(config).items() if "HPSEARCH_DB" in environment(s)}


# --- the compose file --------------------------------------------------------------------------------------


def test_services(config: dict[str, Any]) -> None:
    names = set(services(config))
    assert {"postgres", "migrate", "coordinator"} <= names
    assert len(workers(config)) >= 1, names
    assert services(config)["postgres"]["image"].startswith("postgres:16")
    assert command(services(config)["migrate"])[-2:] == ["db", "upgrade"]
    assert "coordinator" in command(services(config)["coordinator"])


def test_every_worker_reserves_its_own_nvidia_gpu(config: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for name, worker in workers(config).items():
        assert command(worker)[0] == "worker", (name, command(worker))
        devices = gpu_devices(worker)
        assert len(devices) == 1, f"{name}: reserve exactly one device entry, got {devices}"
        device = devices[0]
        assert device.get("driver") == "nvidia", name
        assert "gpu" in device.get("capabilities", []), name
        ids = [str(i) for i in device.get("device_ids") or []]
        count = device.get("count")
        if ids:
            # Docker exposes a reserved GPU as device 0 in the container: --gpu must then be 0.
            assert len(ids) == 1, f"{name}: one GPU per worker, got {ids}"
            cmd = command(worker)
            assert "--gpu" in cmd and cmd[cmd.index("--gpu") + 1] == "0", f"{name}: {cmd}"
            assert ids[0] not in seen, f"{name} and {seen.get(ids[0])} both reserve GPU {ids[0]}"
            seen[ids[0]] = name
        else:
            # `count: N` always maps to GPUs 0..N-1: replicas of such a service would share GPU 0.
            assert str(count) == "1", f"{name}: reserve one GPU (count 1 or one device id), got {device}"
            replicas = (worker.get("deploy") or {}).get("replicas", 1)
            assert int(replicas) == 1 and len(workers(config)) == 1, f"{name}: several workers on GPU 0"


def test_coordinator_and_migrate_reserve_no_gpu(config: dict[str, Any]) -> None:
    for name in ("coordinator", "migrate"):
        assert gpu_devices(services(config)[name]) == [], name


def test_healthchecks(config: dict[str, Any]) -> None:
    for name, needle in (("postgres", "pg_isready"), ("coordinator", "hpsearch")):
        check = services(config)[name].get("healthcheck") or {}
        assert not check.get("disable"), name
        test = check.get("test")
        assert test, f"{name} has no healthcheck"
        assert needle in (test if isinstance(test, str) else " ".join(test)), (name, test)


def test_depends_on_conditions(config: dict[str, Any]) -> None:
    svc = services(config)
    assert depends_on(svc["migrate"]).get("postgres") == "service_healthy"
    assert depends_on(svc["coordinator"]).get("migrate") == "service_completed_successfully"
    for name, worker in workers(config).items():
        assert depends_on(worker).get("migrate") == "service_completed_successfully", name
    assert svc["migrate"].get("restart", "no") == "no", "a one-shot migration must not restart"


def test_artifacts_and_studies_are_at_the_same_paths_everywhere(config: dict[str, Any]) -> None:
    users = {"coordinator": services(config)["coordinator"], **workers(config)}
    targets: dict[str, set[str]] = {"artifacts": set(), "studies": set()}
    for name, service in users.items():
        by_target = mounts(service)
        artifact_root = environment(service).get("HPSEARCH_ARTIFACTS")
        assert artifact_root in by_target, f"{name}: HPSEARCH_ARTIFACTS={artifact_root} is not mounted"
        mount = by_target[artifact_root]
        assert mount["type"] == "volume" and mount["source"] == "artifacts", (name, mount)
        assert not mount["read_only"], name
        targets["artifacts"].add(artifact_root)
        studies = [(t, m) for t, m in by_target.items() if t.rstrip("/").endswith("studies")]
        assert len(studies) == 1, f"{name}: mount the study files once, got {by_target}"
        targets["studies"].add(f"{studies[0][1]['source']} -> {studies[0][0]}")
    assert targets["artifacts"] == {"/artifacts"}, targets
    assert len(targets["studies"]) == 1, targets
    assert "artifacts" in (config.get("volumes") or {}), "the artifacts volume is not declared"


def test_database_url_points_at_the_postgres_service(load: Loader) -> None:
    for env in ({}, {"POSTGRES_PASSWORD": "from-the-environment"}):
        config = load(env)
        postgres = environment(services(config)["postgres"])
        for name, service in hpsearch_services(config).items():
            url = sa.engine.make_url(environment(service)["HPSEARCH_DB"])
            assert url.drivername == "postgresql+psycopg", name
            assert url.host == "postgres" and (url.port or 5432) == 5432, name
            assert url.username == postgres["POSTGRES_USER"], name
            assert url.database == postgres.get("POSTGRES_DB", postgres["POSTGRES_USER"]), name
            assert url.password == postgres["POSTGRES_PASSWORD"], f"{name}: not the server's password"
            assert url.password == (env.get("POSTGRES_PASSWORD") or PLACEHOLDER_PASSWORD), name
        assert {"migrate", "coordinator", *workers(config)} <= set(hpsearch_services(config))


def test_keras_backend_reaches_the_worker_build(load: Loader) -> None:
    for backend in ("tensorflow", "jax"):
        config = load({} if backend == "tensorflow" else {"KERAS_BACKEND": backend})
        for name, worker in workers(config).items():
            build = worker["build"]
            assert Path(build["dockerfile"]).name == WORKER_DOCKERFILE.name, name
            assert (build.get("args") or {}).get("KERAS_BACKEND") == backend, name
            assert backend in worker["image"], f"{name}: tag the image by backend, got {worker['image']}"
    coordinator = services(load({}))["coordinator"]["build"]
    assert Path(coordinator["dockerfile"]).name == COORDINATOR_DOCKERFILE.name


def test_build_context_is_the_repository_root(config: dict[str, Any]) -> None:
    for name, service in services(config).items():
        if "build" not in service:
            continue
        context = Path(service["build"]["context"])
        context = context if context.is_absolute() else (COMPOSE.parent / context)
        assert context.resolve() == REPO, name
        assert (REPO / service["build"]["dockerfile"]).is_file(), name


def test_no_password_other_than_the_placeholder() -> None:
    text = COMPOSE.read_text()
    uses = re.findall(r"\$\{POSTGRES_PASSWORD([^}]*)\}", text)
    assert uses, "the password does not come from POSTGRES_PASSWORD"
    assert set(uses) == {f":-{PLACEHOLDER_PASSWORD}"}, uses
    for match in re.finditer(r"://[^:/@\s]+:([^@\s]+)@", text):
        assert match[1].startswith("${POSTGRES_PASSWORD"), f"a password literal in a URL: {match[0]}"
    for match in re.finditer(r"(?m)^\s*-?\s*(\w*PASSWORD\w*)\s*[:=]\s*(\S+)", text):
        assert match[2].strip("\"'").startswith("${POSTGRES_PASSWORD"), f"a password literal: {match[0].strip()}"


# --- the Dockerfiles ---------------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def test_worker_dockerfile() -> None:
    steps = _instructions(WORKER_DOCKERFILE)
    args = [a for k, a in steps if k == "ARG"]
    assert any(re.fullmatch(r"KERAS_BACKEND(=\w+)?", a) for a in args), args
    assert "KERAS_BACKEND=tensorflow" in args, "the default backend is tensorflow"
    env = " ".join(a for k, a in steps if k == "ENV")
    assert "KERAS_BACKEND=${KERAS_BACKEND}" in env
    assert any(k == "FROM" for k, _ in steps)
    assert re.search(r"nvidia/cuda|tensorflow/tensorflow:.*gpu", WORKER_DOCKERFILE.read_text()), "not a GPU base"
    runs = " ".join(a for k, a in steps if k == "RUN")
    for backend in ("tensorflow)", "jax)", "torch)"):
        assert backend in runs, f"no install case {backend}"
    entry = [json.loads(a) for k, a in steps if k in ("ENTRYPOINT", "CMD")]
    assert entry == [["hpsearch"], ["worker"]], entry


def test_coordinator_dockerfile_installs_no_keras() -> None:
    steps = _instructions(COORDINATOR_DOCKERFILE)
    assert steps[0][0] == "FROM" and re.match(r"python:3\.1[1-9]", steps[0][1]), steps[0]
    runs = [a for k, a in steps if k == "RUN"]
    installs = [m for run in runs for m in re.findall(r"pip install ([^;&|]*)", run)]
    assert installs, "no pip install"
    for install in installs:
        for name in ("keras", "tensorflow", "tensorboard"):
            assert name not in install.lower(), f"the coordinator image installs {name}: pip install {install}"
        if "/tmp/hpsearch" in install and "-r" not in install.split():
            assert "--no-deps" in install.split(), f"the package must be installed with --no-deps: {install}"
    entry = [json.loads(a) for k, a in steps if k in ("ENTRYPOINT", "CMD")]
    assert entry == [["hpsearch"], ["coordinator"]], entry


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _requirements(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {_requirement_name(line): line for line in lines if line}


def _project_dependencies() -> list[str]:
    return list(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])


def _installed_closure(requirements: Iterable[str]) -> set[str]:
    """The distributions ``pip install`` of these requirements brings, as installed here (extras followed)."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = _requirement_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            child = Requirement(line)
            extras = requirement.extras or {""}
            if child.marker is None or any(child.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(child)
    return seen


def test_coordinator_requirements_match_pyproject() -> None:
    requirements = _requirements(COORDINATOR_REQUIREMENTS)
    assert not WORKER_ONLY & set(requirements), WORKER_ONLY & set(requirements)
    declared = {_requirement_name(r): r.replace(" ", "") for r in _project_dependencies()}
    for name, requirement in requirements.items():
        if name in declared:
            assert requirement.replace(" ", "") == declared[name], f"{requirement!r} != pyproject's {declared[name]!r}"


_IMPORT_CHECK = """
import importlib, importlib.abc, importlib.metadata, json, sys
FORBIDDEN = set(sys.argv[1].split(","))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ModuleNotFoundError(f"the coordinator image has no {name}", name=name)
        return None

sys.meta_path.insert(0, Block())
for module in sys.argv[2].split(","):
    importlib.import_module(module)
dists = importlib.metadata.packages_distributions()
print(json.dumps(sorted({d for m in list(sys.modules) for d in dists.get(m.split(".")[0], [])})))
"""
# What the coordinator image runs: the CLI, `db upgrade`, the coordinator loop and the samplers' lazy imports.
COORDINATOR_MODULES = (
    "hpsearch.cli",
    "hpsearch.control.coordinator",
    "hpsearch.store.db",
    "hpsearch.strategies.samplers",
    "hpsearch.strategies.schedulers",
    "optuna",
    "scipy.stats.qmc",
)


def test_coordinator_imports_nothing_outside_its_requirements() -> None:
    """Import what the coordinator image runs with keras, tensorflow, torch and jax made unimportable, and
    check that every dependency of pyproject.toml it pulls in is installed by docker/coordinator-requirements.txt
    (directly or as a dependency of one of those)."""
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK, ",".join(FORBIDDEN_MODULES), ",".join(COORDINATOR_MODULES)],
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"the coordinator's imports need a worker-only package:\n{result.stderr}"
    used = {_requirement_name(d) for d in json.loads(result.stdout.strip().splitlines()[-1])}
    project = {_requirement_name(r) for r in _project_dependencies()}
    installed = _installed_closure(_requirements(COORDINATOR_REQUIREMENTS).values())
    missing = (used & project) - installed
    assert not missing, f"the coordinator imports {sorted(missing)}, which docker/coordinator-requirements.txt lacks"
