"""Keras Tuner's tuners on hpsearch: the same constructor arguments, ``search()`` and result methods, backed by
a study in hpsearch's database, its algorithms and its worker processes.

>>> tuner = RandomSearch(build_model, objective="val_accuracy", max_trials=10, directory="runs",
...                      project_name="mlp", workers=2)  # doctest: +SKIP
>>> tuner.search(x, y, epochs=5, validation_split=0.2)  # doctest: +SKIP
>>> best_hp = tuner.get_best_hyperparameters(1)[0]  # doctest: +SKIP
>>> model = tuner.get_best_models(1)[0]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import keras_tuner as kt

from hpsearch import api
from hpsearch.errors import HpsearchError, UsageError
from hpsearch.keras_tuner.hypermodel import BEST_WEIGHTS, SearchHyperModel
from hpsearch.keras_tuner.oracle import Oracle, Progress, kt_objective, objectives_of
from hpsearch.keras_tuner.project import fit_arguments, split_arrays, write_arrays, write_hypermodel

_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def visible_gpus() -> int:
    """How many GPUs this process may use (CUDA_VISIBLE_DEVICES, else ``nvidia-smi -L``), without importing
    a framework.

    >>> visible_gpus() >= 0
    True
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))


class Tuner:
    """The base of the tuners (Keras Tuner's ``Tuner`` arguments; ``db=`` and ``workers=`` are hpsearch's).

    ``directory/project_name/`` holds the SQLite database (unless ``db=`` or HPSEARCH_DB names another) and
    the artifacts. ``overwrite=False`` continues the stored search; ``overwrite=True`` starts afresh.
    ``workers``: local worker processes (default: one per visible GPU, else 1); 0 with a shared ``db=``:
    this process coordinates while ``hpsearch worker`` processes elsewhere train.

    >>> tuner = TPE(build_model, objective="val_loss", max_trials=20,
    ...             db="postgresql://db/hp", workers=0)  # doctest: +SKIP
    """

    algorithm: ClassVar[str] = "random"
    # Whether max_trials is an optional cap (the algorithm sizes itself) and its default.
    default_max_trials: ClassVar[int | None] = 10

    def __init__(
        self,
        hypermodel: Any = None,
        objective: Any = None,
        max_trials: int | None = None,
        executions_per_trial: int = 1,
        max_retries_per_trial: int = 0,
        max_consecutive_failed_trials: int = 3,
        directory: str | os.PathLike[str] | None = None,
        project_name: str | None = None,
        overwrite: bool = False,
        seed: int | None = None,
        hyperparameters: Any = None,
        tune_new_entries: bool = True,
        allow_new_entries: bool = True,
        max_model_size: int | None = None,
        *,
        db: str | None = None,
        workers: int | None = None,
        oracle: Any = None,
        distribution_strategy: Any = None,
        **options: Any,
    ) -> None:
        self._refuse(oracle, distribution_strategy, options)
        if hypermodel is None:
            raise UsageError(f"{type(self).__name__}", "needs a hypermodel (a build(hp) function or a HyperModel)")
        if (not tune_new_entries or not allow_new_entries) and not hyperparameters:
            raise UsageError(
                f"{type(self).__name__}", "tune_new_entries=False / allow_new_entries=False need hyperparameters="
            )
        if executions_per_trial < 1:
            raise UsageError(
                f"{type(self).__name__}", f"executions_per_trial must be >= 1 (got {executions_per_trial})"
            )
        self.hypermodel = hypermodel if isinstance(hypermodel, kt.HyperModel) else _function_hypermodel(hypermodel)
        self.executions_per_trial = executions_per_trial
        self.max_retries_per_trial = max_retries_per_trial
        self.max_consecutive_failed_trials = max_consecutive_failed_trials
        self.seed = 0 if seed is None else int(seed)  # a stored study is reproducible: None means 0 here
        self.hyperparameters = hyperparameters
        self.tune_new_entries = tune_new_entries
        self.allow_new_entries = allow_new_entries
        self.max_model_size = max_model_size
        self.options = options
        self.workers = workers
        self.project_name = project_name or "untitled_project"
        self.study_name = _NAME.sub("_", self.project_name)[:100] or "untitled_project"
        self.directory = Path(directory if directory is not None else ".").resolve()
        self.project_dir = str(self.directory / self.project_name)
        external = db or os.environ.get("HPSEARCH_DB")
        if overwrite and not external:
            shutil.rmtree(self.project_dir, ignore_errors=True)
        self.db = external or f"sqlite:///{Path(self.project_dir) / 'hpsearch.db'}"
        self._study: api.Study | None = None
        objective = kt_objective(objective)
        cap = self.default_max_trials if max_trials is None else max_trials
        self.oracle = Oracle(self._existing, objective, cap)
        if overwrite and external:
            self._delete_study()

    def _refuse(self, oracle: Any, distribution_strategy: Any, options: dict[str, Any]) -> None:
        name = type(self).__name__
        if oracle is not None:
            raise UsageError(
                f"{name}(oracle=...)",
                "is not supported; use the tuner class of that algorithm (RandomSearch, TPE, ...)",
            )
        if distribution_strategy is not None:
            raise UsageError(
                f"{name}(distribution_strategy=...)",
                "is not supported: each hpsearch worker trains one trial on one device; use workers=N (one per GPU)",
            )
        if type(self).run_trial is not Tuner.run_trial:
            raise UsageError(
                f"{name}.run_trial", "overriding run_trial is not supported; put custom training in HyperModel.fit"
            )
        unknown = set(options) - set(self._options({}))
        unknown -= {
            "logger",
            "tuner_id",
            "max_epochs",
            "factor",
            "hyperband_iterations",
            "num_initial_points",
            "alpha",
            "beta",
        }
        if unknown:
            raise UsageError(f"{name}", f"unknown arguments {sorted(unknown)}")

    def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> Any:
        """Not used: hpsearch's workers run trials (put custom training in ``HyperModel.fit``)."""
        raise UsageError(
            f"{type(self).__name__}.run_trial", "hpsearch's workers run trials; put custom training in HyperModel.fit"
        )

    # --- the study --------------------------------------------------------------------------------------------

    def _existing(self) -> api.Study | None:
        """The stored study of this project, if there is one."""
        if self._study is not None:
            return self._study
        if self.db.startswith("sqlite:///") and not Path(self.db.removeprefix("sqlite:///")).exists():
            return None
        try:
            self._study = api.load_study(self.study_name, db=self.db)
        except HpsearchError:  # no such study, or a database without hpsearch's tables yet: no search so far
            return None
        return self._study

    def _delete_study(self) -> None:
        study = self._existing()
        if study is None:
            return
        study.delete(artifacts=True)
        self._study = None

    def _options(self, search: dict[str, Any]) -> dict[str, Any]:
        """The algorithm's ``[search]`` options from the constructor's (subclasses map theirs)."""
        return {}

    def _max_epochs(self, epochs: int | None) -> int:
        return int(epochs or 1)  # model.fit's default

    def _spec(self, epochs: int | None) -> dict[str, Any]:
        objectives = [{"name": n, "direction": d} for n, d in objectives_of(self.oracle.objective)]
        search: dict[str, Any] = {
            "algorithm": self.algorithm,
            "max_epochs": self._max_epochs(epochs),
            "max_retries": self.max_retries_per_trial,
            "max_consecutive_failures": self.max_consecutive_failed_trials,
            **self._options(self.options),
        }
        if self.oracle.max_trials is not None:
            search["max_trials"] = self.oracle.max_trials
        objective: Any = objectives[0] if len(objectives) == 1 else objectives
        return {"study": {"name": self.study_name, "objective": objective, "seed": self.seed}, "search": search}

    # --- search -----------------------------------------------------------------------------------------------

    def search(self, *fit_args: Any, **fit_kwargs: Any) -> None:
        """Run the search: what is passed goes to ``HyperModel.fit`` / ``model.fit`` as in Keras Tuner (numpy
        arrays only: x, y, validation_data or validation_split, epochs, batch_size, callbacks, class_weight,
        sample_weight, shuffle; ``verbose`` sets what this prints). Finished trials never run again.

        >>> tuner.search(x_train, y_train, epochs=3, validation_data=(x_val, y_val))  # doctest: +SKIP
        """
        fit = fit_arguments(fit_args, fit_kwargs)
        verbose = int(fit.pop("verbose", 1) or 0)
        if fit.pop("initial_epoch", 0):
            raise UsageError("search(initial_epoch=...)", "is not supported; hpsearch resumes trials itself")
        project = Path(self.project_dir)
        splits = split_arrays(fit)
        epochs = fit.pop("epochs", None)
        objectives = objectives_of(self.oracle.objective)
        wrapped = SearchHyperModel(
            self.hypermodel,
            fit,
            executions=self.executions_per_trial,
            objective=objectives[0],
            hyperparameters=self.hyperparameters.get_config() if self.hyperparameters else None,
            tune_new_entries=self.tune_new_entries,
            allow_new_entries=self.allow_new_entries,
            max_model_size=self.max_model_size,
        )
        write_arrays(splits, project / "data")
        hypermodel_ref, data_ref = write_hypermodel(wrapped, project)
        try:
            study = api.create_study(
                self._spec(epochs), db=self.db, artifacts=project, hypermodel=hypermodel_ref, data=data_ref
            )
        except UsageError as exc:
            if "exists with a different" in exc.what:
                raise UsageError(
                    f"project {self.project_name}",
                    "was searched with other settings (objective, max_trials, epochs, ...); "
                    "pass overwrite=True, or another project_name",
                ) from None
            raise
        self._study = study
        workers = self.workers if self.workers is not None else max(visible_gpus(), 1)
        progress = Progress(study, self.oracle.objective, verbose)
        try:
            study.run(workers, on_tick=progress.tick)
        except KeyboardInterrupt:
            # Stopped, not failed: a later search() with overwrite=False continues it.
            study.stop("interrupted (Ctrl-C)")
            raise
        finally:
            progress.tick(force=True)

    # --- results ----------------------------------------------------------------------------------------------

    def get_best_hyperparameters(self, num_trials: int = 1) -> list[Any]:
        """The HyperParameters of the best trials, best first."""
        return [t.hyperparameters for t in self.oracle.get_best_trials(num_trials)]

    def get_best_models(self, num_trials: int = 1) -> list[Any]:
        """The best trials' models, built and loaded with the best epoch's weights (saved beside the trial's
        checkpoint; a trial without them gets its last checkpoint, the latest epoch it trained)."""
        return [self.load_model(trial) for trial in self.oracle.get_best_trials(num_trials)]

    def load_model(self, trial: Any) -> Any:
        """One trial's model with its weights (see :meth:`get_best_models`)."""
        study = self._existing()
        if study is None:
            raise UsageError(f"project {self.project_name}", "has no search yet; call search() first")
        model = SearchHyperModel(
            self.hypermodel,
            hyperparameters=self.hyperparameters.get_config() if self.hyperparameters else None,
            tune_new_entries=self.tune_new_entries,
            allow_new_entries=self.allow_new_entries,
        ).build(trial.hyperparameters.copy())
        record = study.record
        number = int(trial.trial_id)
        row = study.trial(number)
        # The best-epoch file of the attempt that completed the trial (a stale attempt's is never read).
        attempts = study.store.attempts(row.id)
        last = attempts[-1].attempt if attempts else 1
        best = Path(record.artifact_root) / record.name / "trials" / str(number) / BEST_WEIGHTS.format(attempt=last)
        path: str | None = str(best) if best.is_file() else None
        if path is None:
            path = next((a.uri for a in study.store.checkpoints(record.id) if a.trial_id == row.id), None)
        if path is None:
            raise UsageError(f"trial {number}", "has no saved weights (its checkpoint was collected or never written)")
        if getattr(model, "optimizer", None) is not None:
            model.optimizer.build(model.trainable_variables)  # so its saved state loads instead of being skipped
        model.load_weights(path)
        return model

    def results_summary(self, num_trials: int = 10) -> None:
        """Print the best trials as Keras Tuner does."""
        print("Results summary")
        print(f"Results in {self.project_dir}")
        print(f"Showing {num_trials} best trials")
        print(f"{self.oracle.objective}")
        for trial in self.oracle.get_best_trials(num_trials):
            print()
            trial.summary()

    def search_space_summary(self, extended: bool = False) -> None:
        """Print the search space (the stored study's, else one build of the hypermodel's declarations)."""
        print("Search space summary")
        hp = self.oracle.get_space()
        if not hp.space:
            hp = kt.HyperParameters()
            SearchHyperModel(
                self.hypermodel,
                hyperparameters=self.hyperparameters.get_config() if self.hyperparameters else None,
                tune_new_entries=self.tune_new_entries,
                allow_new_entries=self.allow_new_entries,
            ).build(hp)
        print(f"Default search space size: {len(hp.space)}")
        for p in hp.space:
            config = p.get_config()
            name = config.pop("name")
            print(f"{name} ({p.__class__.__name__})")
            print(config)

    @property
    def study(self) -> api.Study | None:
        """The hpsearch study behind this tuner (``hpsearch status`` / ``report`` / ``promote`` see it too)."""
        return self._existing()

    @property
    def remaining_trials(self) -> int | None:
        """Trials still to run (None before the first search)."""
        study = self._existing()
        if study is None:
            return self.oracle.max_trials
        counts = study.counts()
        return max(study.record.max_trials - sum(counts.get(s, 0) for s in ("COMPLETED", "PRUNED", "FAILED")), 0)


def _function_hypermodel(build: Any) -> Any:
    from keras_tuner.src.engine.hypermodel import DefaultHyperModel

    if not callable(build):
        raise UsageError("hypermodel", f"is a {type(build).__name__}, not a build(hp) function or a HyperModel")
    return DefaultHyperModel(build)
