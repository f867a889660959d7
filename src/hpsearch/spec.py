"""Study files: TOML validated with pydantic. Never imports keras.

A study file names its hypermodel and data loader, the objective, the search algorithm and its budget,
the arguments of ``fit`` and how many local workers ``hpsearch run`` starts. An optional ``[space]``
table overrides or narrows parameters the hypermodel declares (Keras Tuner's ``hyperparameters=``).
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from hpsearch.errors import SpecError
from hpsearch.limits import NAME_MAX, SEED_MAX
from hpsearch.spec_errors import spec_error  # every error of a file, each on its line, with hints
from hpsearch.strategies.options import SearchOptions
from hpsearch.strategies.registry import algorithm as registered_algorithm
from hpsearch.strategies.registry import algorithms as registered_algorithms

Direction = Literal["min", "max"]
# The algorithms, the options each takes, their defaults and which decide their own trial count live in the
# algorithm registry (hpsearch.strategies.registry); [search] is validated against it.

_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_MAXIMIZED = ("acc", "auc", "precision", "recall", "f1", "iou", "r2", "top_k", "ndcg", "map")
_MINIMIZED = ("loss", "error", "mae", "mse", "mape", "msle", "crossentropy", "hinge", "rmse", "poisson")


def infer_direction(metric: str) -> Direction | None:
    """Guess whether a Keras metric is maximised, as Keras Tuner does for common names."""
    name = metric.removeprefix("val_").lower()
    if any(token in name for token in _MINIMIZED):
        return "min"
    if any(token in name for token in _MAXIMIZED):
        return "max"
    return None


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> Any:
    """``90``, ``90.5``, ``"90s"``, ``"15m"``, ``"2h"``, ``"1d"`` -> seconds."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
        if match is None:
            raise ValueError("must be seconds or a duration such as '90s', '15m', '2h'")
        return float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Objective(_Strict):
    name: str = Field(min_length=1, max_length=NAME_MAX)  # the database's name columns
    direction: Direction

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = {"name": value}
        if isinstance(value, dict) and "direction" not in value and isinstance(value.get("name"), str):
            direction = infer_direction(value["name"])
            if direction is None:
                raise ValueError(
                    f"cannot infer whether {value['name']!r} is minimised or maximised; "
                    'write objective = { name = "...", direction = "min" | "max" }'
                )
            value = {**value, "direction": direction}
        return value


def _check_reference(ref: str | None) -> str | None:
    if ref is None:
        return ref
    target, sep, attribute = ref.rpartition(":")
    if not sep or not target or not attribute.isidentifier():
        raise ValueError("must be 'file.py:function' or 'module:function'")
    return ref


class StudySection(_Strict):
    name: str
    # Left out when the study has an [automl] table instead.
    hypermodel: str | None = Field(default=None, min_length=1)
    data: str = Field(min_length=1)
    # One objective, or several (a Pareto front is searched; the first one drives promotions and stops).
    objective: Objective | list[Objective]
    seed: int = Field(default=0, ge=0, le=SEED_MAX)  # what numpy, Keras and Optuna accept, with room per trial
    description: str = ""

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not _STUDY_NAME.match(name):
            raise ValueError("must be 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return name

    @property
    def objectives(self) -> list[Objective]:
        return self.objective if isinstance(self.objective, list) else [self.objective]

    @field_validator("objective")
    @classmethod
    def _distinct(cls, objective: Objective | list[Objective]) -> Objective | list[Objective]:
        if isinstance(objective, list):
            names = [o.name for o in objective]
            if not names:
                raise ValueError("needs at least one objective")
            if len(set(names)) != len(names):
                raise ValueError(f"names an objective twice: {names}")
        return objective

    @field_validator("hypermodel", "data")
    @classmethod
    def _reference(cls, ref: str | None) -> str | None:
        return _check_reference(ref)


class SearchSection(SearchOptions):
    """``[search]``: the algorithm, its options (fields of :class:`~hpsearch.strategies.options.SearchOptions`,
    checked against the algorithm's registry entry) and the study's budgets.

    >>> SearchSection(algorithm="hyperband", max_epochs=9).factor
    3
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # A name in the algorithm registry (built-in, or added with hpsearch.strategies.register_algorithm).
    algorithm: str = "random"
    max_trials: int | None = Field(default=None, gt=0, le=1_000_000)
    max_epochs: int = Field(gt=0, le=100_000)
    max_retries: int = Field(default=1, ge=0, le=100)
    max_consecutive_failures: int = Field(default=3, gt=0)
    # Study-wide budgets, honoured exactly across all workers; and a limit per trial. Seconds, or "90m", "2h".
    max_wall_time: Duration | None = None
    max_total_epochs: int | None = Field(default=None, gt=0)
    trial_timeout: Duration | None = None
    # K-fold (iterated with reshuffling when cv_repeats > 1) over train + validation, for small data: a trial's
    # metrics are the means over folds (and <name>_std their standard deviations).
    cv_folds: int | None = Field(default=None, ge=2, le=100)
    cv_repeats: int = Field(default=1, ge=1, le=100)

    @field_validator("algorithm")
    @classmethod
    def _registered(cls, name: str) -> str:
        names = registered_algorithms()
        if name not in names:
            # The words pydantic uses for a Literal, as when the algorithms were one.
            quoted = [repr(n) for n in names]
            raise ValueError(f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}")
        return name

    @model_validator(mode="before")
    @classmethod
    def _options_of_algorithm(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("algorithm", "random"), str):
            name = data.get("algorithm", "random")
            if name in registered_algorithms():
                entry = registered_algorithm(name)
                for key, value in data.items():
                    field = SearchOptions.model_fields.get(key)
                    # A stored spec holds every default: only a value set differently is an error.
                    if field is not None and key not in entry.takes and value != field.default:
                        raise ValueError(
                            f"option {key!r} does not apply to algorithm {name!r} "
                            f"(it takes {', '.join(sorted(entry.options)) or 'no options'})"
                        )
                if not entry.self_sized and "max_trials" not in data:
                    raise ValueError(f"max_trials is required for algorithm {name!r}")
        return data

    @model_validator(mode="after")
    def _epochs_fit(self) -> SearchSection:
        if self.min_epochs > self.max_epochs:
            raise ValueError(f"min_epochs {self.min_epochs} > max_epochs {self.max_epochs}")
        if self.algorithm == "auto" and self.max_epochs < self.factor:
            # Both of auto's picks (bohb, asha) are multi-fidelity: with fewer epochs than factor they have no rungs.
            raise ValueError(
                f"auto picks bohb or asha, which need max_epochs >= factor (got max_epochs {self.max_epochs}, "
                f"factor {self.factor}); lower factor or name an algorithm such as tpe"
            )
        if self.cv_repeats > 1 and self.cv_folds is None:
            raise ValueError("cv_repeats needs cv_folds")
        if self.cv_folds is not None and registered_algorithm(self.algorithm).promotes:
            # A promoted trial continues from its parent's checkpoint; K models per trial have none to share.
            raise ValueError(f"cv_folds does not combine with {self.algorithm!r}; use random, grid, tpe or bayesian")
        return self


class CallbackSpec(BaseModel):
    """``{ name = "EarlyStopping", monitor = "val_loss", patience = 2 }``: a ``keras.callbacks`` class
    (or ``module:Class``) and its keyword arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(min_length=1)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _no_files_outside_the_root(self) -> CallbackSpec:
        # Keras' file-writing callbacks would write wherever a worker runs (README: logs, checkpoints and
        # TensorBoard files go only under the artifact root); hpsearch does each of their jobs itself.
        module, _, cls = self.name.rpartition(":")
        if module in ("", "keras.callbacks", "tf.keras.callbacks", "tensorflow.keras.callbacks"):
            instead = _FILE_CALLBACKS.get(cls)
            if instead is not None:
                raise ValueError(f"{cls} writes files outside the artifact root; {instead}")
            paths = sorted(_PATH_ARGUMENTS & set(self.kwargs))
            if paths:
                raise ValueError(f"{cls} argument {paths[0]!r} would write outside the artifact root")
        return self


_FILE_CALLBACKS = {
    "CSVLogger": "every epoch's metrics are in the database (`hpsearch export --metrics`)",
    "TensorBoard": "set [run] tensorboard = true (per-trial logs under the artifact root)",
    "ModelCheckpoint": "hpsearch checkpoints every trial itself (and `hpsearch promote` keeps the best model)",
    "BackupAndRestore": "hpsearch checkpoints every trial itself and resumes it from there",
}
_PATH_ARGUMENTS = {"filename", "filepath", "log_dir", "backup_dir"}  # a future callback of the same kind


class FitSection(_Strict):
    batch_size: int | None = Field(default=None, gt=0)
    callbacks: list[CallbackSpec] = []
    class_weight: dict[str, float] = {}
    shuffle: bool = True
    # Keras' mixed_float16 policy in every trial and final job (float16 compute, float32 variables, the loss
    # scaled): faster on GPUs with tensor cores, often slower on CPUs.
    mixed_precision: bool = False
    # XLA compilation of the train step: model.compile's jit_compile wherever the hypermodel's compile does not
    # set it itself. Unset: Keras' default ("auto").
    jit_compile: bool | None = None

    @field_validator("class_weight")
    @classmethod
    def _class_keys(cls, weights: dict[str, float]) -> dict[str, float]:
        for key, weight in weights.items():
            if not key.lstrip("-").isdigit():
                raise ValueError(f"class {key!r} is not an integer class index")
            if weight < 0:
                raise ValueError(f"weight of class {key} is negative: {weight}")
        return weights


class RunSection(_Strict):
    workers: int = Field(default=2, gt=0, le=256)
    lease_seconds: float = Field(default=60.0, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    # A trial's checkpoint (weights + optimizer state, for resume and promotions): 0 = after every epoch;
    # else at most this often, and always after the last epoch it trains.
    checkpoint_seconds: float = Field(default=0.0, ge=0)
    # Per-trial TensorBoard logs with HParams under <artifacts>/<study>/tensorboard (every backend).
    tensorboard: bool = False
    # The Keras backend every trial must train with: only workers of that backend (KERAS_BACKEND) claim them,
    # so results, checkpoints and exports come from one backend. Unset: any worker.
    backend: Literal["tensorflow", "jax", "torch"] | None = None

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> RunSection:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("heartbeat_seconds must be shorter than lease_seconds")
        return self


class PromoteSection(_Strict):
    """How ``hpsearch promote`` retrains, evaluates and exports the chosen trial (its options override these)."""

    # "train": early-stop on the validation split; "train+validation": retrain on both for the trial's best
    # epoch count (AutoKeras' final_fit), nothing held out but the test split.
    on: Literal["train", "train+validation"] = "train"
    epochs: int | None = Field(default=None, gt=0, le=100_000)  # default: the study's max_epochs
    patience: int = Field(default=5, gt=0)
    # Binary classifiers: metrics at these thresholds, overall and per slice of these test-split features.
    thresholds: list[float] = Field(default=[0.1, 0.5, 0.9], min_length=1)
    slices: list[list[str]] = []
    task: Literal["auto", "binary", "multiclass", "regression"] = "auto"
    formats: list[Literal["keras", "savedmodel", "onnx"]] = ["keras", "savedmodel", "onnx"]

    @field_validator("thresholds")
    @classmethod
    def _probabilities(cls, thresholds: list[float]) -> list[float]:
        for threshold in thresholds:
            if not 0 < threshold < 1:
                raise ValueError(f"threshold {threshold} is not strictly between 0 and 1")
        if len(set(thresholds)) != len(thresholds):
            raise ValueError("thresholds repeat")
        return thresholds

    @field_validator("slices")
    @classmethod
    def _features(cls, slices: list[list[str]]) -> list[list[str]]:
        for features in slices:
            if not features or len(set(features)) != len(features) or not all(features):
                raise ValueError(f"slice {features} must name one or more distinct features")
        return slices


class _Param(_Strict):
    default: Any = None


class IntParam(_Param):
    type: Literal["int"]
    min: int
    max: int
    step: int | None = Field(default=None, gt=0)
    sampling: Literal["linear", "log"] = "linear"

    @model_validator(mode="after")
    def _range(self) -> IntParam:
        _check_range(self.min, self.max, self.sampling, allow_equal=True)
        return self


class FloatParam(_Param):
    type: Literal["float"]
    min: float
    max: float
    step: float | None = Field(default=None, gt=0)
    sampling: Literal["linear", "log"] = "linear"

    @field_validator("min", "max", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _range(self) -> FloatParam:
        if not (math.isfinite(self.min) and math.isfinite(self.max)):
            raise ValueError("min and max must be finite")
        _check_range(self.min, self.max, self.sampling, allow_equal=False)
        return self


class ChoiceParam(_Param):
    type: Literal["choice"]
    values: list[int | float | str | bool] = Field(min_length=1)
    ordered: bool | None = None

    @model_validator(mode="after")
    def _one_type(self) -> ChoiceParam:
        kinds = {type(v) for v in self.values}
        if len(kinds) > 1 and kinds != {int, float}:
            raise ValueError(f"values mix types {sorted(k.__name__ for k in kinds)}")
        if len(set(map(repr, self.values))) != len(self.values):
            raise ValueError("values repeat")
        return self


class BooleanParam(_Param):
    type: Literal["boolean"]


class FixedParam(_Strict):
    type: Literal["fixed"]
    value: int | float | str | bool


ParamSpec = Annotated[IntParam | FloatParam | ChoiceParam | BooleanParam | FixedParam, Field(discriminator="type")]


def _check_range(low: float, high: float, sampling: str, *, allow_equal: bool) -> None:
    if low > high or (low == high and not allow_equal):
        raise ValueError(f"empty or inverted range: min {low} > max {high}" if low > high else "empty range")
    if sampling == "log" and low <= 0:
        raise ValueError(f"log sampling needs min > 0, got {low}")


AutomlTask = Literal[
    "image_classifier",
    "image_regressor",
    "text_classifier",
    "text_regressor",
    "structured_data_classifier",
    "structured_data_regressor",
]


class AutomlSection(_Strict):
    """``[automl]``: an AutoKeras task, or ``automodel = "file.py:function"`` returning an ``autokeras.AutoModel``;
    it takes the place of ``study.hypermodel``."""

    task: AutomlTask | None = None
    automodel: str | None = None
    # Models with more parameters are rejected before training (the trial fails), as AutoKeras does.
    max_model_size: int | None = Field(default=None, gt=0)
    # Start with AutoKeras's known-good configurations for the task (those the study's space allows).
    seed_initial_trials: bool = True

    @field_validator("automodel")
    @classmethod
    def _reference(cls, ref: str | None) -> str | None:
        return _check_reference(ref)

    @model_validator(mode="after")
    def _one_source(self) -> AutomlSection:
        if (self.task is None) == (self.automodel is None):
            raise ValueError("needs exactly one of task or automodel")
        return self


class StudySpec(_Strict):
    study: StudySection
    search: SearchSection
    fit: FitSection = FitSection()
    run: RunSection = RunSection()
    promote: PromoteSection = PromoteSection()
    space: dict[str, ParamSpec] = {}
    automl: AutomlSection | None = None


def validate_spec(data: dict[str, Any], source: str) -> StudySpec:
    """Validate parsed TOML; a failure raises one SpecError naming the field path and its value (its ``also``
    holds the file's other errors, each the same way)."""
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as exc:
        raise spec_error(exc.errors(), data, source, StudySpec) from None
    if spec.automl is not None and spec.study.hypermodel is not None:
        raise SpecError(
            f"{source}: study.hypermodel",
            f"a study with an [automl] table has no hypermodel (got {spec.study.hypermodel!r})",
        )
    if spec.automl is None and spec.study.hypermodel is None:
        raise SpecError(f"{source}: study.hypermodel", "required field is missing (or give an [automl] table)")
    return spec


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(str(path), "no such study file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), f"cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(str(path), f"invalid TOML: {exc}") from None
    return validate_spec(data, str(path))
