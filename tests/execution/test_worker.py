"""The worker against real trial child processes (forked from a keras-preloaded server)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hpsearch.api import create_study
from hpsearch.control.coordinator import Coordinator
from hpsearch.errors import UserCodeError
from hpsearch.execution.training import sha256_of
from hpsearch.execution.worker import Worker
from hpsearch.store import Store, StudyState, TrialState
from hpsearch.store.models import Artifact

from ..conftest import write_tiny_study

pytestmark = pytest.mark.slow

FAULTS = '''

def build_nan(hp):
    model = build_model(hp)
    model.compile(optimizer="sgd", loss=lambda y, p: p[:, 0] * float("nan"), metrics=["accuracy"])
    return model


def build_wrong_metric(hp):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(hp.Int("units", 2, 4), activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")  # logs no val_accuracy
    return model


def build_kills_itself(hp):
    import multiprocessing
    import signal

    model = build_model(hp)
    # Only in a trial's process: discovery builds every choice in the calling process.
    if hp.get("act") == "tanh" and multiprocessing.current_process().name != "MainProcess":
        os.kill(os.getpid(), signal.SIGKILL)
    return model


def build_slow(hp):
    import time

    import multiprocessing

    if multiprocessing.current_process().name != "MainProcess":
        time.sleep(3600)  # only trial_timeout ends it (else pytest's timeout fails the test)
    return build_model(hp)


def build_slow_exit(hp):
    import multiprocessing
    import time
    from multiprocessing import util
    from pathlib import Path

    here = Path(__file__).parent

    def exit_after_the_worker_recorded_the_finish(finished_before):
        # The test's store writes finished-<id> once it recorded a trial finished: this process exits only after
        # the worker recorded its trial (a worker that waited for the exit first would leave it waiting).
        deadline = time.monotonic() + 120
        while len(list(here.glob("finished-*"))) <= finished_before:
            if time.monotonic() > deadline:
                (here / f"never-finished-{os.getpid()}").touch()
                break
            time.sleep(0.05)
        (here / f"exited-{os.getpid()}").touch()

    if multiprocessing.current_process().name != "MainProcess":
        finished_before = len(list(here.glob("finished-*")))
        util.Finalize(None, exit_after_the_worker_recorded_the_finish, args=(finished_before,), exitpriority=0)
    return build_model(hp)


import keras  # noqa: E402


class KillOnceAtEpoch(keras.callbacks.Callback):
    """SIGKILLs its process at the end of ``epoch`` (0-based) the first time; logs every epoch begun."""

    def __init__(self, marker, epoch):
        super().__init__()
        self.marker, self.epoch = marker, epoch

    def on_epoch_begin(self, epoch, logs=None):
        with open(self.marker + ".log", "a") as handle:
            handle.write(f"{epoch}\\n")

    def on_epoch_end(self, epoch, logs=None):
        import signal

        if epoch == self.epoch and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


class StopAfterEpoch(keras.callbacks.Callback):
    """Ends training after ``epoch`` (0-based), as EarlyStopping does."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.stop_training = True


class CorruptCheckpointAndKillOnce(KillOnceAtEpoch):
    """As KillOnceAtEpoch, and first damages the checkpoint the next attempt would resume from."""

    def __init__(self, marker, epoch, checkpoint):
        super().__init__(marker, epoch)
        self.checkpoint = checkpoint

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch and not os.path.exists(self.marker):
            import glob

            (found,) = glob.glob(self.checkpoint)  # under the study's own directory, tiny-<8 hex>
            with open(found, "r+b") as handle:
                handle.write(b"garbage")
        super().on_epoch_end(epoch, logs)
'''


def run_study(store: Store, path: Path, artifacts: Path) -> int:
    study, _ = _created(create_study(path, store=store, artifacts=artifacts))
    Coordinator(store, [study.name]).step(study, target_queued=study.max_trials)
    ran = Worker(store, study=study.name, idle_timeout=0, poll_seconds=0.1).run()
    return ran


def test_trials_complete_with_every_epoch_and_a_verified_checkpoint(store: Store, tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path, max_trials=2, max_epochs=3)
    assert run_study(store, path, tmp_path / "artifacts") == 2
    study = store.study("tiny")
    for trial in store.trials(study.id):
        assert trial.state == TrialState.COMPLETED
        curve = store.metrics(trial.id)
        assert sorted(curve) == [1, 2, 3]
        assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(curve[3])
        assert trial.objective == max(epoch["val_accuracy"] for epoch in curve.values())
        with store.session() as session:
            checkpoint = session.query(Artifact).filter_by(trial_id=trial.id, kind="checkpoint").one()
        assert checkpoint.epoch == 3
        assert checkpoint.sha256 == sha256_of(Path(checkpoint.uri))
        assert checkpoint.size_bytes == Path(checkpoint.uri).stat().st_size
        assert Path(checkpoint.uri).is_relative_to(Path(study.artifact_root) / "tiny" / "trials")
        assert Path(study.artifact_root).parent == (tmp_path / "artifacts").resolve()
        # Earlier epochs' files were removed once the newer one was recorded.
        assert [p.name for p in Path(checkpoint.uri).parent.iterdir()] == ["checkpoint-a1-0003.weights.h5"]


def test_a_killed_trial_resumes_from_its_last_checkpoint(store: Store, tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    path = write_tiny_study(tmp_path, extra_module=FAULTS, max_trials=1, max_epochs=4)
    path.write_text(
        path.read_text().replace(
            "[fit]", f'[fit]\ncallbacks = [{{ name = "tiny.py:KillOnceAtEpoch", marker = "{marker}", epoch = 1 }}]'
        )
    )
    assert run_study(store, path, tmp_path / "artifacts") == 2  # the killed attempt and the resumed one
    trial = store.trials(store.study("tiny").id)[0]
    assert trial.state == TrialState.COMPLETED
    assert trial.retries == 1 and "SIGKILL" in (trial.error or "")
    assert sorted(store.metrics(trial.id)) == [1, 2, 3, 4]
    # The kill comes from a user callback, which runs before hpsearch's reporter: epoch index 1 ended
    # without a checkpoint, so the second attempt resumed from the checkpoint after epoch index 0.
    assert Path(f"{marker}.log").read_text().split() == ["0", "1", "1", "2", "3"]


def test_a_trial_is_finished_when_it_reports_and_its_process_is_reaped_later(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_tiny_study(tmp_path, extra_module=FAULTS, build="build_slow_exit", max_trials=2, max_epochs=1)
    finish = store.finish

    def finish_and_say_so(trial_id: int, *args: object, **kwargs: object) -> object:
        done = finish(trial_id, *args, **kwargs)  # type: ignore[arg-type]
        (tmp_path / f"finished-{trial_id}").touch()
        return done

    monkeypatch.setattr(store, "finish", finish_and_say_so)
    assert run_study(store, path, tmp_path / "artifacts") == 2
    # Each trial's process waited, as it exited, until the worker had recorded its trial finished: the worker
    # did not wait for the process to exit before recording it...
    assert not list(tmp_path.glob("never-finished-*"))
    # ...and it waited for the last process's exit before it stopped.
    assert len(list(tmp_path.glob("exited-*"))) == 2
    for trial in store.trials(store.study("tiny").id):
        assert trial.state == TrialState.COMPLETED
        assert trial.finished_at is not None


def with_run_and_callbacks(path: Path, run: str, callbacks: str) -> None:
    path.write_text(
        path.read_text().replace("[run]\n", f"[run]\n{run}\n").replace("[fit]", f"[fit]\ncallbacks = [{callbacks}]")
    )


def test_with_checkpoint_seconds_a_trial_checkpoints_its_last_epoch_and_resumes_from_what_it_wrote(
    store: Store, tmp_path: Path
) -> None:
    marker = tmp_path / "killed"
    path = write_tiny_study(tmp_path, extra_module=FAULTS, max_trials=1, max_epochs=3)
    callback = f'{{ name = "tiny.py:KillOnceAtEpoch", marker = "{marker}", epoch = 1 }}'
    with_run_and_callbacks(path, "checkpoint_seconds = 3600", callback)
    assert run_study(store, path, tmp_path / "artifacts") == 2
    trial = store.trials(store.study("tiny").id)[0]
    assert trial.state == TrialState.COMPLETED and trial.retries == 1
    # No checkpoint was due after epoch index 0 (the first is an hour away): the second attempt started over.
    assert Path(f"{marker}.log").read_text().split() == ["0", "1", "0", "1", "2"]
    with store.session() as session:
        checkpoint = session.query(Artifact).filter_by(trial_id=trial.id, kind="checkpoint").one()
    assert checkpoint.epoch == 3 and checkpoint.sha256 == sha256_of(Path(checkpoint.uri))


def test_with_checkpoint_seconds_training_that_ends_early_checkpoints_the_epoch_it_ended_at(
    store: Store, tmp_path: Path
) -> None:
    path = write_tiny_study(tmp_path, extra_module=FAULTS, max_trials=1, max_epochs=5)
    with_run_and_callbacks(path, "checkpoint_seconds = 3600", '{ name = "tiny.py:StopAfterEpoch", epoch = 1 }')
    assert run_study(store, path, tmp_path / "artifacts") == 1
    trial = store.trials(store.study("tiny").id)[0]
    assert trial.state == TrialState.COMPLETED and trial.epochs_done == 2
    with store.session() as session:
        checkpoint = session.query(Artifact).filter_by(trial_id=trial.id, kind="checkpoint").one()
    assert checkpoint.epoch == 2 and Path(checkpoint.uri).is_file()


def test_failing_trials_are_recorded_and_the_worker_goes_on(store: Store, tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path, extra_module=FAULTS, build="build_nan", max_trials=2, max_epochs=2)
    assert run_study(store, path, tmp_path / "artifacts") == 2
    trials = store.trials(store.study("tiny").id)
    assert [t.state for t in trials] == [TrialState.FAILED, TrialState.FAILED]
    assert all("nan loss at epoch 1" in (t.error or "") for t in trials), [t.error for t in trials]


def test_an_unlogged_objective_is_refused_at_creation_else_fails_the_study_at_the_first_trial(
    store: Store, tmp_path: Path
) -> None:
    path = write_tiny_study(tmp_path, extra_module=FAULTS, build="build_wrong_metric", max_trials=2, max_epochs=2)
    with pytest.raises(UserCodeError, match="'val_accuracy' is not logged by the model"):
        create_study(path, store=store, artifacts=tmp_path / "artifacts")
    # A [fit] callback may log anything: creation cannot know, so the first trial finds out, and fails the study.
    with_run_and_callbacks(path, "", '{ name = "tiny.py:StopAfterEpoch", epoch = 5 }')
    assert run_study(store, path, tmp_path / "artifacts") == 1
    study = store.study("tiny")
    assert study.state == "FAILED" and "objective 'val_accuracy' is not logged" in (study.message or "")
    assert [t.state for t in store.trials(study.id)] == [TrialState.FAILED, TrialState.QUEUED]


def test_a_child_crash_is_retried_then_failed_without_stopping_the_worker(store: Store, tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path, extra_module=FAULTS, build="build_kills_itself", max_trials=6, max_epochs=1)
    run_study(store, path, tmp_path / "artifacts")
    trials = store.trials(store.study("tiny").id)
    killed = [t for t in trials if t.params["act"] == "tanh"]
    healthy = [t for t in trials if t.params["act"] != "tanh"]
    assert killed and healthy
    assert all(t.state == TrialState.FAILED and t.retries == 2 and "SIGKILL" in (t.error or "") for t in killed)
    assert all(t.state == TrialState.COMPLETED for t in healthy)


HYPERMODEL = """

import keras_tuner


class TunesBatchSize(keras_tuner.HyperModel):
    def build(self, hp):
        return build_model(hp)

    def fit(self, hp, model, *args, **kwargs):
        return model.fit(*args, batch_size=hp.Choice("batch_size", [16, 64]), **kwargs)
"""


def test_a_hypermodel_class_tuning_batch_size_in_fit(store: Store, tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path, extra_module=HYPERMODEL, build="TunesBatchSize", max_trials=2, max_epochs=1)
    path.write_text(path.read_text().replace("batch_size = 32\n", ""))  # the HyperModel owns batch_size
    assert run_study(store, path, tmp_path / "artifacts") == 2
    study = store.study("tiny")
    trials = store.trials(study.id)
    assert all(t.state == TrialState.COMPLETED and t.params["batch_size"] in (16, 64) for t in trials)
    assert "batch_size" in [entry["config"]["name"] for entry in study.space["space"]]


GUIDE = """

import keras_tuner


class GuideHyperModel(keras_tuner.HyperModel):
    \"\"\"Keras Tuner's "Getting started" HyperModel: its fit tunes shuffle (and here batch_size) itself.\"\"\"

    def build(self, hp):
        import keras

        model = keras.Sequential([keras.Input((4,)), keras.layers.Flatten()])
        model.add(keras.layers.Dense(units=hp.Int("units", min_value=4, max_value=8, step=4), activation="relu"))
        model.add(keras.layers.Dense(2, activation="softmax"))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    def fit(self, hp, model, *args, **kwargs):
        return model.fit(
            *args,
            # Tune whether to shuffle the data in each epoch.
            shuffle=hp.Boolean("shuffle"),
            batch_size=hp.Choice("batch_size", [16, 32]),
            **kwargs,
        )
"""


def test_the_keras_tuner_guides_hypermodel_tuning_shuffle_and_batch_size_in_fit_completes(
    store: Store, tmp_path: Path
) -> None:
    path = write_tiny_study(tmp_path, extra_module=GUIDE, build="GuideHyperModel", max_trials=2, max_epochs=2)
    path.write_text(path.read_text().replace("batch_size = 32\n", ""))  # the HyperModel's fit owns batch_size
    assert run_study(store, path, tmp_path / "artifacts") == 2
    study = store.study("tiny")
    trials = store.trials(study.id)
    assert [t.state for t in trials] == [TrialState.COMPLETED] * 2, [t.error for t in trials]
    assert all(isinstance(t.params["shuffle"], bool) and t.params["batch_size"] in (16, 32) for t in trials)
    assert all(sorted(store.metrics(t.id)) == [1, 2] for t in trials)
    assert {"shuffle", "batch_size"} <= {entry["config"]["name"] for entry in study.space["space"]}


def test_hyperband_promotions_continue_from_the_parent_with_its_optimizer_state(store: Store, tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path, algorithm="hyperband", max_trials=100, max_epochs=3, workers=1)
    path.write_text(path.read_text().replace("max_trials = 100\n", ""))
    study, _ = _created(create_study(path, store=store, artifacts=tmp_path / "artifacts"))
    # Keras Tuner's Hyperband(max_epochs=3, factor=3): bracket 1 runs 3 trials for 1 epoch and promotes
    # the best to 3 epochs; bracket 0 runs 2 trials for 3 epochs.
    assert study.max_trials == 6
    coordinator = Coordinator(store, ["tiny"], prefetch=0)
    worker = Worker(store, study="tiny", idle_timeout=0, poll_seconds=0.1)
    while coordinator.step(store.study_by_id(study.id), target_queued=1):
        worker.run()
    trials = {t.number: t for t in store.trials(study.id)}
    assert all(t.state == TrialState.COMPLETED for t in trials.values()), [t.error for t in trials.values()]
    promoted = [t for t in trials.values() if t.parent_trial_id is not None]
    assert len(trials) == 6 and len(promoted) == 1
    child = promoted[0]
    parent = next(t for t in trials.values() if t.id == child.parent_trial_id)
    assert (parent.budget_epochs, child.initial_epoch, child.budget_epochs) == (1, 1, 3)
    assert child.params == parent.params
    assert sorted(store.metrics(child.id)) == [2, 3]  # it trained only the extra epochs
    with store.session() as session:
        checkpoint = session.query(Artifact).filter_by(trial_id=child.id, kind="checkpoint").one()
    import keras

    from hpsearch.execution.loading import load_hypermodel

    model = load_hypermodel("tiny.py:build_model", tmp_path).build(_hp(study.space, child.params))
    model.optimizer.build(model.trainable_variables)
    model.load_weights(checkpoint.uri)
    steps_per_epoch = 160 // 32
    # Three epochs of Adam steps: the parent's one epoch of optimizer state was carried over.
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 3 * steps_per_epoch


def _hp(space: dict, params: dict):  # type: ignore[no-untyped-def, type-arg]
    import keras_tuner as kt

    return kt.HyperParameters.from_config({"space": space["space"], "values": params})


def test_a_trial_past_its_timeout_fails_and_the_worker_goes_on(store: Store, tmp_path: Path) -> None:
    path = write_tiny_study(tmp_path, extra_module=FAULTS, build="build_slow", max_trials=2, max_epochs=1)
    path.write_text(
        path.read_text().replace("[fit]", "[fit]").replace("max_epochs = 1", "max_epochs = 1\ntrial_timeout = 3")
    )
    assert run_study(store, path, tmp_path / "artifacts") == 2
    trials = store.trials(store.study("tiny").id)
    assert [t.state for t in trials] == [TrialState.FAILED] * 2
    assert all("timed out after 3s" in (t.error or "") for t in trials)


def test_an_unusable_checkpoint_restarts_the_trial_from_scratch(store: Store, tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    checkpoint = tmp_path / "artifacts" / "tiny-*" / "tiny" / "trials" / "0" / "checkpoint-a1-0001.weights.h5"
    path = write_tiny_study(tmp_path, extra_module=FAULTS, max_trials=1, max_epochs=3)
    callback = (
        f'{{ name = "tiny.py:CorruptCheckpointAndKillOnce", marker = "{marker}", epoch = 1, '
        f'checkpoint = "{checkpoint}" }}'
    )
    path.write_text(path.read_text().replace("[fit]", f"[fit]\ncallbacks = [{callback}]"))
    assert run_study(store, path, tmp_path / "artifacts") == 2
    trial = store.trials(store.study("tiny").id)[0]
    assert trial.state == TrialState.COMPLETED
    assert "restarted from scratch" in (trial.error or "")
    attempts = store.attempts(trial.id)
    assert [(a.attempt, a.start_epoch, a.outcome) for a in attempts] == [(1, 0, "LOST"), (2, 0, "COMPLETED")]
    assert attempts[0].last_checkpoint_epoch == 1
    assert sorted(store.metrics(trial.id)) == [1, 2, 3]
    assert Path(f"{marker}.log").read_text().split() == ["0", "1", "0", "1", "2"]


SLOW = """

import time as _time

import keras as _keras


class SlowEpochs(_keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        _time.sleep(0.7)
"""


def test_stopping_a_study_releases_its_trial_and_resuming_continues_it(store: Store, tmp_path: Path) -> None:
    import threading

    path = write_tiny_study(tmp_path, extra_module=SLOW, max_trials=1, max_epochs=6)
    path.write_text(path.read_text().replace("[fit]", '[fit]\ncallbacks = [{ name = "tiny.py:SlowEpochs" }]'))
    study, _ = _created(create_study(path, store=store, artifacts=tmp_path / "artifacts"))
    Coordinator(store, ["tiny"]).step(study, target_queued=1)

    def stop_after_two_epochs() -> None:
        while store.trials(study.id)[0].epochs_done < 2:
            time.sleep(0.1)
        store.set_study_state(study.id, StudyState.STOPPED)

    stopper = threading.Thread(target=stop_after_two_epochs)
    stopper.start()
    assert Worker(store, study="tiny", max_trials=1, poll_seconds=0.1).run() == 1  # --max-trials 1
    stopper.join()
    trial = store.trials(study.id)[0]
    assert trial.state == TrialState.QUEUED and 2 <= trial.epochs_done < 6
    store.set_study_state(study.id, StudyState.RUNNING)
    assert Worker(store, study="tiny", idle_timeout=0, poll_seconds=0.1).run() == 1
    trial = store.trials(study.id)[0]
    attempts = store.attempts(trial.id)
    assert trial.state == TrialState.COMPLETED and sorted(store.metrics(trial.id)) == [1, 2, 3, 4, 5, 6]
    assert [a.outcome for a in attempts] == ["RELEASED", "COMPLETED"]
    assert attempts[1].start_epoch == attempts[0].last_checkpoint_epoch >= 2


def test_tensorboard_logs_carry_the_trial_hparams(store: Store, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = write_tiny_study(tmp_path, max_trials=1, max_epochs=2)
    path.write_text(path.read_text().replace("[run]", "[run]\ntensorboard = true"))
    run_study(store, path, tmp_path / "artifacts")
    logdir = Path(store.study("tiny").artifact_root) / "tiny" / "tensorboard" / "trial-0"
    events = EventAccumulator(str(logdir), size_guidance={"tensors": 0}).Reload()
    plugins = events.PluginTagToContent("hparams")
    assert plugins, "no HParams summary"
    trial = store.trials(store.study("tiny").id)[0]
    content = b"".join(plugins.values())
    assert all(name.encode() in content for name in trial.params)
    assert (logdir / "train").is_dir() and (logdir / "validation").is_dir()


def _created(study: Any) -> tuple[Any, bool]:
    """The stored row of a study handle and whether create_study inserted it."""
    return study.record, study.created
