"""A notebook-style script written against Keras Tuner's public API. It runs unchanged on Keras Tuner and on
hpsearch: only the import differs (``KT_IMPL=hpsearch`` picks ``import hpsearch.keras_tuner as kt``).

Run: ``KT_IMPL=hpsearch python tests/keras_tuner/kt_script.py /tmp/kt-runs``
"""

import os
import sys

import keras
import numpy as np
from keras import layers

if os.environ.get("KT_IMPL") == "hpsearch":
    import hpsearch.keras_tuner as kt
else:
    import keras_tuner as kt

directory = sys.argv[1] if len(sys.argv) > 1 else "kt-runs"
rng = np.random.default_rng(0)
x = rng.normal(size=(160, 4)).astype("float32")
y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")
x_val = rng.normal(size=(64, 4)).astype("float32")
y_val = (x_val[:, 0] + 0.5 * x_val[:, 1] > 0).astype("float32")


def confident(y_true, y_pred):
    """A custom metric: the share of predictions far from 0.5."""
    return keras.ops.mean(keras.ops.cast(keras.ops.abs(y_pred - 0.5) > 0.25, "float32"))


def build_model(hp):
    model = keras.Sequential(
        [
            keras.Input((4,)),
            layers.Dense(hp.Int("units", 4, 16, step=4), activation="relu"),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(hp.Float("lr", 1e-3, 1e-1, sampling="log")),
        loss="binary_crossentropy",
        metrics=["accuracy", confident],
    )
    return model


class GuideHyperModel(kt.HyperModel):
    """Keras Tuner's "Getting started" guide: fit tunes shuffling and normalisation."""

    def build(self, hp):
        return build_model(hp)

    def fit(self, hp, model, x, y, **kwargs):
        if hp.Boolean("normalize"):
            x = (x - x.mean(axis=0)) / x.std(axis=0)
        return model.fit(x, y, shuffle=hp.Boolean("shuffle"), **kwargs)


# 1. RandomSearch, two executions per trial, a HyperModel whose fit sets shuffle itself.
tuner = kt.RandomSearch(
    GuideHyperModel(),
    objective="val_accuracy",
    max_trials=3,
    executions_per_trial=2,
    directory=directory,
    project_name="random",
    overwrite=True,
    seed=1,
)
tuner.search_space_summary()
tuner.search(x, y, epochs=2, batch_size=32, validation_data=(x_val, y_val))
tuner.results_summary(2)
best_hp = tuner.get_best_hyperparameters(1)[0]
assert set(best_hp.values) >= {"units", "lr", "normalize", "shuffle"}, best_hp.values
best_model = tuner.get_best_models(1)[0]
print("best model evaluates to", best_model.evaluate(x_val, y_val, verbose=0))
best_trial = tuner.oracle.get_best_trials(1)[0]
assert best_trial.score is not None and best_trial.status == "COMPLETED"
assert tuner.oracle.get_trial(best_trial.trial_id).hyperparameters.values == best_hp.values
history = best_trial.metrics.get_history("val_accuracy")
assert len(history) >= 1, history
assert best_trial.metrics.get_best_value("val_accuracy") == best_trial.score
tuner.hypermodel.build(best_hp)

# 2. Reload: overwrite=False continues the finished search; no trial runs again.
finished = len(tuner.oracle.trials)
again = kt.RandomSearch(
    GuideHyperModel(),
    objective="val_accuracy",
    max_trials=3,
    executions_per_trial=2,
    directory=directory,
    project_name="random",
    overwrite=False,
    seed=1,
)
again.search(x, y, epochs=2, batch_size=32, validation_data=(x_val, y_val))
assert len(again.oracle.trials) == finished == 3, (len(again.oracle.trials), finished)
assert again.get_best_hyperparameters(1)[0].values == best_hp.values

# 3. Hyperband with a custom metric as the objective.
hyperband = kt.Hyperband(
    build_model,
    objective=kt.Objective("val_confident", direction="max"),
    max_epochs=3,
    factor=3,
    directory=directory,
    project_name="hyperband",
    overwrite=True,
)
hyperband.search(x, y, validation_split=0.25, verbose=0)
assert hyperband.get_best_models(1)[0] is not None
hyperband.results_summary(1)

# 4. BayesianOptimization in a restricted space: only "units" is tuned, lr stays at its default.
hp = kt.HyperParameters()
hp.Int("units", 4, 8, step=4)
bayesian = kt.BayesianOptimization(
    build_model,
    objective="val_loss",
    max_trials=2,
    hyperparameters=hp,
    tune_new_entries=False,
    directory=directory,
    project_name="bayesian",
    overwrite=True,
)
bayesian.search(x, y, epochs=1, validation_data=(x_val, y_val), verbose=0)
for values in (t.hyperparameters.values for t in bayesian.oracle.get_best_trials(2)):
    assert values["units"] in (4, 8) and values["lr"] == 1e-3, values
print("KT SCRIPT OK")
