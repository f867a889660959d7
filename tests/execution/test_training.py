"""Checkpoints inside the trial process: resume is exact, including the optimizer state."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from hpsearch.execution.training import TrialFailed, restore_checkpoint, save_checkpoint

pytestmark = pytest.mark.slow


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    return x, (x[:, :4].sum(axis=1) > 0).astype("int64")


def build() -> keras.Model:
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2, activation="softmax")]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_two_epochs_plus_two_resumed_equal_four_uninterrupted(tmp_path: Path) -> None:
    x, y = data()
    keras.utils.set_random_seed(3)
    straight = build()
    history = straight.fit(x, y, epochs=4, batch_size=32, shuffle=False, verbose=0)

    keras.utils.set_random_seed(3)
    first = build()
    first.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    path, sha256, _ = save_checkpoint(first, tmp_path, 2)

    keras.utils.set_random_seed(3)
    resumed = build()
    restore_checkpoint(resumed, path, sha256, str(tmp_path))
    assert int(resumed.optimizer.iterations.numpy()) == 2 * 8  # Adam's step count (and moments) came back
    rest = resumed.fit(x, y, epochs=4, initial_epoch=2, batch_size=32, shuffle=False, verbose=0)

    assert rest.history["loss"][-1] == pytest.approx(history.history["loss"][-1], rel=1e-6)
    for a, b in zip(straight.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_corrupt_checkpoint_is_refused(tmp_path: Path) -> None:
    model = build()
    model.fit(*data(), epochs=1, verbose=0)
    path, sha256, _ = save_checkpoint(model, tmp_path, 1)
    corrupt = bytearray(Path(path).read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF
    Path(path).write_bytes(bytes(corrupt))
    with pytest.raises(TrialFailed, match="does not match its sha256"):
        restore_checkpoint(build(), path, sha256, str(tmp_path))


def test_a_checkpoint_outside_the_artifact_root_is_never_read(tmp_path: Path) -> None:
    model = build()
    path, sha256, _ = save_checkpoint(model, tmp_path / "elsewhere", 1)
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "elsewhere")
    for uri in (path, str(tmp_path / "root" / ".." / "elsewhere" / Path(path).name), "relative.h5"):
        with pytest.raises(TrialFailed, match="artifact"):
            restore_checkpoint(build(), uri, sha256, str(tmp_path / "root"))
    with pytest.raises(TrialFailed, match="outside the artifact root"):
        restore_checkpoint(build(), str(tmp_path / "root" / "link" / Path(path).name), sha256, str(tmp_path / "root"))


def test_a_failed_checkpoint_write_says_why_and_leaves_no_partial_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(TrialFailed, match="cannot write checkpoint"):
        save_checkpoint(build(), blocker / "trials", 1)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


class _Pipe:
    """Collects what a trial's child sends to its worker."""

    def __init__(self) -> None:
        self.sent: list[object] = []

    def send(self, message: object) -> None:
        self.sent.append(message)

    def close(self) -> None:
        pass


def test_rerunning_a_trial_with_its_seed_gives_the_same_metrics(tmp_path: Path) -> None:
    """The trial's seed (Python, NumPy, backend via keras.utils.set_random_seed) fixes initial weights, dropout
    and shuffling: the same trial run twice on the CPU reports identical metrics; another seed does not."""
    import threading

    from hpsearch.execution.loading import Split, save_dataset
    from hpsearch.execution.protocol import EpochEnded, TrialDone
    from hpsearch.execution.training import TrialTask, run_trial

    (tmp_path / "model.py").write_text(
        "import keras\n"
        "def build(hp):\n"
        "    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int('units', 8, 16, step=8)),\n"
        "                              keras.layers.Dropout(0.3), keras.layers.Dense(2, activation='softmax')])\n"
        "    model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])\n"
        "    return model\n"
    )
    x, y = data()
    save_dataset({"train": Split(x[:192], y[:192]), "validation": Split(x[192:], y[192:])}, tmp_path / "data")
    space = {
        "space": [
            {
                "class_name": "Int",
                "config": {
                    "name": "units",
                    "min_value": 8,
                    "max_value": 16,
                    "step": 8,
                    "sampling": "linear",
                    "conditions": [],
                    "default": None,
                },
            }
        ]
    }

    def run(seed: int, name: str) -> list[dict[str, float]]:
        task = TrialTask(
            study_name="s",
            number=0,
            params={"units": 16},
            space=space,
            hypermodel="model.py:build",
            base_dir=str(tmp_path),
            data_dir=str(tmp_path / "data"),
            objectives=["val_accuracy"],
            budget_epochs=3,
            initial_epoch=0,
            seed=seed,
            checkpoint_dir=str(tmp_path / name),
            artifact_root=str(tmp_path),
            batch_size=16,
            shuffle=True,
        )
        pipe = _Pipe()
        run_trial(task, pipe, threading.Event())
        assert isinstance(pipe.sent[-1], TrialDone), pipe.sent[-1]
        return [m.logs for m in pipe.sent if isinstance(m, EpochEnded)]

    first, again, other = run(11, "a"), run(11, "b"), run(12, "c")
    assert len(first) == 3 and first == again
    assert first != other
