"""Promotion: the final job retrains, resumes after a kill, evaluates per class / slice / threshold, exports
models that reload in a fresh process and predict what the job predicted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpsearch.analysis.report import render_report
from hpsearch.api import create_study, run_final_job_here
from hpsearch.control.coordinator import Coordinator
from hpsearch.control.promotion import plan_final_job
from hpsearch.errors import UsageError
from hpsearch.execution.worker import Worker
from hpsearch.store import Store, TrialState

from ..conftest import add_study

pytestmark = pytest.mark.slow
# What Keras makes on each backend (torch has no SavedModel export); the model card says why one is missing.
BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
EXPORTS = {"keras", "onnx"} | ({"savedmodel"} if BACKEND in ("tensorflow", "jax") else set())

MODULE = """
from __future__ import annotations
import time
import numpy as np
import keras

def load_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 4)).astype("float32")
    y = (x[:, 0] - x[:, 2] > 0).astype("int64")
    group = np.where(x[:, 3] > 0, "p", "q")
    parity = np.array(["even", "odd"])[np.arange(60) % 2]
    return {
        "train": (x[:280], y[:280], np.linspace(0.5, 1.5, 280).astype("float32")),
        "validation": (x[280:340], y[280:340]),
        "test": (x[340:], y[340:]),
        "slices": {"group": group[340:], "parity": parity},
        "class_names": ["negative", "positive"],
    }

@keras.saving.register_keras_serializable(package="binary")
def balanced_error(y_true, y_pred):
    # a custom metric: the mean of the two classes' error rates
    y_true = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "float32")
    wrong = keras.ops.cast(keras.ops.not_equal(keras.ops.reshape(y_pred, (-1,)) > 0.5, y_true > 0.5), "float32")
    positives = keras.ops.maximum(keras.ops.sum(y_true), 1.0)
    negatives = keras.ops.maximum(keras.ops.sum(1.0 - y_true), 1.0)
    return 0.5 * (keras.ops.sum(wrong * y_true) / positives + keras.ops.sum(wrong * (1.0 - y_true)) / negatives)

def build_model(hp):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(hp.Int("units", 4, 8, step=4), activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-1, sampling="log", default=1e-2)),
                  loss="binary_crossentropy", metrics=["accuracy", keras.metrics.AUC(name="auc"), balanced_error])
    return model

class Slow(keras.callbacks.Callback):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(self.seconds)
"""

STUDY = """
[study]
name = "binary"
hypermodel = "binary.py:build_model"
data = "binary.py:load_data"
objective = "val_auc"
seed = 5

[search]
algorithm = "random"
max_trials = 1
max_epochs = 2

[fit]
batch_size = 32
shuffle = false
callbacks = [{ name = "EarlyStopping", monitor = "val_loss", patience = 1 }, {extra}]

[run]
lease_seconds = 30
heartbeat_seconds = 0.5

[promote]
epochs = {epochs}
patience = {patience}
thresholds = [0.3, 0.5]
slices = [["group"], ["group", "parity"]]
"""

RELOAD = """
import sys, json
import numpy as np
import keras
out, x_path = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3])
import binary  # registers the custom metric the saved model was compiled with
x = np.load(x_path)
found = {"keras": keras.models.load_model(f"{out}/model.keras").predict(x, verbose=0).tolist()}
import os
if os.path.isdir(f"{out}/saved_model"):
    import tensorflow as tf
    saved = tf.saved_model.load(f"{out}/saved_model")  # kept referenced: its variables die with it
    found["savedmodel"] = saved.serve(x).numpy().tolist()
import onnxruntime
session = onnxruntime.InferenceSession(f"{out}/model.onnx")
found["onnx"] = session.run(None, {session.get_inputs()[0].name: x})[0].tolist()
print(json.dumps(found))
"""


def make_study(store: Store, tmp_path: Path, *, epochs: int = 6, patience: int = 3, slow: float = 0.0):
    (tmp_path / "binary.py").write_text(MODULE)
    extra = f'{{ name = "binary.py:Slow", seconds = {slow} }}'
    path = tmp_path / "binary.toml"
    text = STUDY.replace("{extra}", extra).replace("{epochs}", str(epochs)).replace("{patience}", str(patience))
    path.write_text(text)
    study, _ = _created(create_study(path, store=store, artifacts=tmp_path / "artifacts"))
    Coordinator(store, [study.name]).step(study, target_queued=study.max_trials)
    assert Worker(store, study=study.name, idle_timeout=0, poll_seconds=0.1).run() == 1
    assert store.trials(study.id)[0].state == TrialState.COMPLETED
    return study


def test_final_job_evaluates_exports_and_the_exports_reload(store: Store, tmp_path: Path) -> None:
    study = make_study(store, tmp_path)
    job, created = store.create_final_job(plan_final_job(store, study))
    assert created and (job.epochs, job.patience, job.train_on) == (6, 3, "train")
    job = run_final_job_here(store, job)
    assert job.state == TrialState.COMPLETED, job.error
    assert set(job.test_metrics or {}) >= {"loss", "accuracy", "auc", "balanced_error"}  # custom metric too
    curve = store.final_metrics(job.id)
    assert list(curve) == list(range(1, job.epochs_done + 1)) and "val_auc" in curve[1]
    best = max(curve, key=lambda epoch: curve[epoch]["val_auc"] or 0)
    assert job.best_epoch == best and job.objective == pytest.approx(curve[best]["val_auc"])

    classes, slices = store.final_evaluation(job.id)
    assert [c.class_label for c in classes] == ["0", "1"] and sum(c.support for c in classes) == 60
    assert job.confusion_matrix is not None and np.sum(job.confusion_matrix["matrix"]) == 60
    # The loader's class names travel with the evaluation into the report's per-class table and heatmap.
    assert job.confusion_matrix["class_names"] == ["negative", "positive"]
    page = render_report(store, study.name)
    final_section = page[page.index('<section id="final-model">') : page.index('<section id="trials">')]
    assert final_section.count("<tr><td>negative</td>") == 1 and final_section.count("<tr><td>positive</td>") == 1
    values = {(r.slice, r.slice_value) for r in slices}
    assert values == {("all", "all"), ("group", "p"), ("group", "q")} | {
        ("group,parity", f"{g},{p}") for g in "pq" for p in ("even", "odd")
    }
    assert len(slices) == 2 * len(values) and {r.threshold for r in slices} == {0.3, 0.5}
    overall = next(r for r in slices if r.slice == "all" and r.threshold == 0.5)
    assert overall.count == 60 and overall.accuracy == pytest.approx(job.test_metrics["accuracy"], abs=1e-6)

    artifacts = {a.kind: a for a in store.final_artifacts(job.id)}
    assert set(artifacts) == EXPORTS | {"model_card", "best_weights", "predictions"}
    from hpsearch.execution.finaljob import tree_sha256

    for artifact in artifacts.values():
        assert tree_sha256(Path(artifact.uri)) == (artifact.sha256, artifact.size_bytes)
    card = json.loads(Path(artifacts["model_card"].uri).read_text())
    assert card["params"] == job.params and card["training"]["start_epochs"] == [0]
    named = [(c["class_label"], c["class_name"]) for c in card["class_metrics"]]
    assert named == [("0", "negative"), ("1", "positive")]
    assert Path(artifacts["model_card"].uri).parent.name == "a1" and card["attempt"] == job.attempt == 1
    assert card["software"]["keras"].startswith("3.") and card["data"]["slice_features"] == ["group", "parity"]
    assert card["backend"]["name"] == BACKEND and card["backend"]["version"] == card["software"][BACKEND]
    assert set(card["skipped_exports"]) == {"keras", "savedmodel", "onnx"} - EXPORTS

    # A fresh process loads each export and predicts what the final job predicted on the test split.
    out = Path(artifacts["keras"].uri).parent
    x_test = np.random.default_rng(1).normal(size=(400, 4)).astype("float32")[340:]
    np.save(tmp_path / "x.npy", x_test)
    found = subprocess.run(
        [sys.executable, "-c", RELOAD, str(out), str(tmp_path / "x.npy"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    expected = np.load(artifacts["predictions"].uri)
    for kind, predictions in json.loads(found.stdout.strip().splitlines()[-1]).items():
        np.testing.assert_allclose(np.asarray(predictions), expected, rtol=1e-5, atol=1e-6, err_msg=kind)

    again, created = store.create_final_job(plan_final_job(store, study))
    assert not created and again.id == job.id  # promoting again with the same settings is the same job


def test_a_killed_final_job_resumes_where_it_stopped(db_url: str, store: Store, tmp_path: Path) -> None:
    study = make_study(store, tmp_path, epochs=12, patience=12, slow=0.4)
    env = {**os.environ, "HPSEARCH_DB": db_url, "HPSEARCH_ARTIFACTS": str(tmp_path / "artifacts")}
    command = [sys.executable, "-m", "hpsearch", "promote", "binary", "--local"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True)
    job = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        jobs = store.final_jobs(study.id)
        if jobs and jobs[0].epochs_done >= 4:
            job = jobs[0]
            break
        assert process.poll() is None, "promote ended before it could be killed"
        time.sleep(0.2)
    assert job is not None, "the final job never reached epoch 4"
    os.killpg(process.pid, signal.SIGKILL)  # promote, its fork server and the training child
    process.wait()
    killed_at = store.final_job(job.id).epochs_done
    assert store.final_job(job.id).state == TrialState.RUNNING  # nobody could say otherwise

    resumed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {killed_at}" in resumed.stdout
    assert "test auc" in resumed.stdout and "group,parity" in resumed.stdout  # the slice table
    assert "negative (0)" in resumed.stdout and "positive (1)" in resumed.stdout  # the class table, by name
    job = store.final_job(job.id)
    assert job.state == TrialState.COMPLETED and job.attempts == 2 and "is gone" in (job.error or "")
    assert list(store.final_metrics(job.id)) == list(range(1, job.epochs_done + 1))
    card_uri = next(a.uri for a in store.final_artifacts(job.id) if a.kind == "model_card")
    # The second attempt worked in a directory of its own, resumed from a copy of the first one's backup (the
    # one the store accepted last), and deleted the first attempt's directory once it completed.
    assert Path(card_uri).parent.name == "a2" and (job.attempt, job.checkpoint_attempt) == (2, 2)
    assert [p.name for p in Path(card_uri).parent.parent.iterdir()] == ["a2"]
    starts = json.loads(Path(card_uri).read_text())["training"]["start_epochs"]
    # The second attempt started from the backup of the last finished epoch (or the one before, if the
    # kill fell between writing the backup and reporting the epoch), not from 0.
    assert starts[0] == 0 and len(starts) == 2 and killed_at - 1 <= starts[1] <= killed_at + 1

    listed = subprocess.run(
        [sys.executable, "-m", "hpsearch", "models", "binary", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert EXPORTS | {"model_card"} <= {row["kind"] for row in json.loads(listed.stdout)}


def test_train_plus_validation_retrains_for_the_trials_best_epochs(store: Store, tmp_path: Path) -> None:
    study = make_study(store, tmp_path)
    trial = store.trials(study.id)[0]
    job, _ = store.create_final_job(plan_final_job(store, study, on="train+validation"))
    assert (job.epochs, job.patience) == (trial.best_epoch, None)
    job = run_final_job_here(store, job)
    assert job.state == TrialState.COMPLETED, job.error
    assert job.epochs_done == trial.best_epoch and "val_loss" not in store.final_metrics(job.id)[1]


def test_promote_needs_a_completed_trial(store: Store) -> None:
    study = add_study(store)
    with pytest.raises(UsageError, match="no completed trial to promote"):
        plan_final_job(store, study)
    from hpsearch.strategies.base import NewTrial

    store.add_trials(study, [NewTrial(params={}, budget_epochs=1)])
    with pytest.raises(UsageError, match="is QUEUED; only a COMPLETED trial can be promoted"):
        plan_final_job(store, study, trial_number=0)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf2onnx, the ONNX converter of the tensorflow backend")
def test_an_onnx_graph_no_runtime_could_load_is_skipped_with_the_reason(tmp_path: Path) -> None:
    """tf2onnx writes a graph even when it cannot convert an op (image augmentation here): the export is
    checked, and refused with the reason instead of being registered."""
    import keras

    from hpsearch.execution.finaljob import export_model

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.RandomTranslation(0.1, 0.1), keras.layers.Flatten()])
    model.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0)
    written, skipped = export_model(model, tmp_path, ["onnx"])
    assert written == {} and not (tmp_path / "model.onnx").exists()
    assert "No Op registered" in skipped["onnx"]


def _created(study: Any) -> tuple[Any, bool]:
    """The stored row of a study handle and whether create_study inserted it."""
    return study.record, study.created
