"""GPU settings for workers, on a machine without a GPU: what K processes sharing one GPU get, which GPUs
``--gpu all`` finds, and its one-line refusal where there are none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpsearch.execution.gpu import memory_settings, share_gpu, visible_gpus
from hpsearch.store import open_store


def test_k_slots_share_one_gpu_per_backend() -> None:
    settings = memory_settings(4)
    assert settings["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert settings["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert float(settings["XLA_PYTHON_CLIENT_MEM_FRACTION"]) * 4 <= 0.9
    assert settings["HPSEARCH_TORCH_MEMORY_FRACTION"] == settings["XLA_PYTHON_CLIENT_MEM_FRACTION"]
    assert float(memory_settings(1)["XLA_PYTHON_CLIENT_MEM_FRACTION"]) == 0.9


def test_a_setting_the_user_made_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in memory_settings(2):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.3")
    in_effect = share_gpu(2)
    assert in_effect["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.3" and os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"


def test_visible_gpus_from_the_environment_or_nvidia_smi(tmp_path: Path) -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1,3"}) == ["1", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    tool = tmp_path / "nvidia-smi"
    tool.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-a)'\necho 'GPU 1: NVIDIA H200 (UUID: GPU-b)'\n")
    tool.chmod(0o755)
    assert visible_gpus({"PATH": str(tmp_path)}) == ["0", "1"]
    assert visible_gpus({"PATH": str(tmp_path / "nowhere")}) == []


def test_gpu_all_without_a_gpu_says_so_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hpsearch.db'}"
    open_store(url, create=True).engine.dispose()
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + "/usr/bin:/bin"  # no nvidia-smi on it
    done = subprocess.run(
        [sys.executable, "-m", "hpsearch", "worker", "--db", url, "--gpu", "all", "--slots", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --gpu all: no GPU is visible on this machine (CUDA_VISIBLE_DEVICES names none, nvidia-smi lists none)"
    ]


@pytest.mark.slow
def test_gpu_all_starts_one_worker_per_gpu(db_url: str, tmp_path: Path) -> None:
    """Two GPUs listed (a stand-in nvidia-smi; the trials still train on the CPU): one worker process each."""
    import sqlalchemy as sa

    from hpsearch.api import create_study
    from hpsearch.control.coordinator import Coordinator
    from hpsearch.store import TrialState
    from hpsearch.store.models import Worker

    from ..conftest import write_tiny_study

    tools = tmp_path / "bin"
    tools.mkdir()
    listing = "echo 'GPU 0: Stand-in (UUID: GPU-a)'\necho 'GPU 1: Stand-in (UUID: GPU-b)'\n"
    (tools / "nvidia-smi").write_text("#!/bin/sh\n" + listing)
    (tools / "nvidia-smi").chmod(0o755)
    store = open_store(db_url, create=True)
    path = write_tiny_study(tmp_path, max_trials=2, max_epochs=1)
    study = create_study(path, store=store, artifacts=tmp_path / "artifacts").record
    Coordinator(store, [study.name]).step(study, target_queued=2)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PATH"] = f"{tools}{os.pathsep}{env.get('PATH', '')}"
    command = ["worker", "--db", db_url, "--gpu", "all", "--study", "tiny", "--idle-timeout", "3"]
    done = subprocess.run([sys.executable, "-m", "hpsearch", *command], env=env, capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [t.state for t in store.trials(study.id)] == [TrialState.COMPLETED] * 2
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(Worker.gpu, Worker.pid, Worker.state)).all()
    assert sorted(row.gpu for row in rows) == ["0", "1"] and len({row.pid for row in rows}) == 2
    assert {row.state for row in rows} == {"STOPPED"}
