"""AutoKeras tasks exposed as hypermodels the same workers run.

A study's ``[automl]`` table names an AutoKeras 3.0.0 task (``image_classifier``, ``text_regressor``, ...) or a
``module:function`` returning an ``autokeras.AutoModel`` built from blocks. Its search space is AutoKeras's own:
the blocks of the task's graph declare their hyperparameters when built, and
:func:`hpsearch.execution.discovery.discover_space` finds them as for any Keras Tuner hypermodel. Our strategies
explore it across our workers; AutoKeras's tuner loop is not used.

Unlike AutoKeras, the model ``build(hp)`` returns holds its preprocessing, fitted on the training split the same
way on every worker (vocabularies computed here, sorted; ``Normalization`` adapted on the same arrays), so the
trained model predicts on raw inputs: images as arrays, text as strings, structured data as a dict of raw columns
(strings for categorical ones). AutoKeras 3.0.0 does text tokenization and categorical encoding in numpy outside
the model; here they are ``TextVectorization`` and ``StringLookup`` layers inside it.

Targets: classification targets are integer class indices ``0..K-1`` (two classes: a sigmoid unit and binary
cross-entropy, more: softmax and sparse categorical cross-entropy); regression targets are numbers.

Where AutoKeras seeds its greedy tuner with known-good configurations (``tuners/task_specific.py``), those that
fit the study's space become the study's first trials (``[search] initial_trials``).
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras_tuner as kt
import numpy as np

from hpsearch.errors import UserCodeError
from hpsearch.execution.loading import Dataset, Split, keras_inputs, load_object

if TYPE_CHECKING:
    from hpsearch.space import SearchSpace, Value
    from hpsearch.spec import AutomlSection

# task -> (input kind, head kind)
TASKS: dict[str, tuple[str, str]] = {
    "image_classifier": ("image", "classification"),
    "image_regressor": ("image", "regression"),
    "text_classifier": ("text", "classification"),
    "text_regressor": ("text", "regression"),
    "structured_data_classifier": ("structured", "classification"),
    "structured_data_regressor": ("structured", "regression"),
}
# As AutoKeras 3.0.0's TextTokenizer: whitespace tokens, the most frequent words, 100 tokens per text. Its
# tokenizer maps 500 words to 1..500 and unknown words to 0; TextVectorization keeps 1 for unknown words, so
# 499 words keep every index below the smallest Embedding AutoKeras builds (max_tokens 500 + 1 rows).
TEXT_MAX_TOKENS = 499
TEXT_SEQUENCE_LENGTH = 100
DEFAULT_BATCH_SIZE = 32


def initial_hps(task: str) -> list[dict[str, Any]]:
    """AutoKeras's known-good first configurations for ``task`` (its greedy tuner's ``initial_hps``)."""
    from autokeras.tuners import task_specific

    seeds = {
        "image_classifier": task_specific.IMAGE_CLASSIFIER,
        "text_classifier": task_specific.TEXT_CLASSIFIER,
        "structured_data_classifier": task_specific.STRUCTURED_DATA_CLASSIFIER,
        "structured_data_regressor": task_specific.STRUCTURED_DATA_REGRESSOR,
    }
    return [dict(s) for s in seeds.get(task, [])]


def fit_initial_trials(seeds: list[dict[str, Any]], space: SearchSpace) -> list[dict[str, Value]]:
    """The seeds the space can run, completed with defaults; a seed naming a parameter the space lacks or a
    value it excludes (e.g. narrowed by the study's ``[space]``) is left out."""
    fitted: list[dict[str, Value]] = []
    names = set(space.names)
    for seed in seeds:
        if not set(seed) <= names:
            continue
        values: dict[str, Value] = {}
        for param in space.params:
            if not param.is_active(values):
                continue
            value = seed.get(param.name, param.default)
            if value is None or not param.allows(value):
                break
            values[param.name] = value
        else:
            if values not in fitted:
                fitted.append(values)
    return fitted


def _fresh_graph(section: AutomlSection, base_dir: str | Path) -> tuple[Any, str]:
    """AutoKeras's graph for the task (as ``AutoModel._assemble`` builds it) or the user's AutoModel."""
    try:
        import autokeras as ak
    except ImportError as exc:
        raise UserCodeError("automl", f"needs autokeras: pip install 'hpsearch[automl]' ({exc})") from exc
    import keras
    from autokeras import graph as graph_module

    if section.task is not None:
        kind, head_kind = TASKS[section.task]
        # AutoKeras clears the session around assembly so block names are image_block_1, ...: the names its
        # known-good configurations use.
        keras.backend.clear_session()
        input_node = {"image": ak.ImageInput, "text": ak.TextInput, "structured": ak.StructuredDataInput}[kind]()
        head = ak.ClassificationHead() if head_kind == "classification" else ak.RegressionHead()
        output = head(input_node.get_block()(input_node))
        graph = graph_module.Graph(inputs=[input_node], outputs=[output])
        keras.backend.clear_session()
        return graph, f"automl.task {section.task}"
    ref = section.automodel
    assert ref is not None
    factory = load_object(ref, base_dir)
    try:
        made = factory()
    except Exception as exc:
        raise UserCodeError(ref, f"raised {type(exc).__name__}: {exc}") from exc
    if isinstance(made, ak.AutoModel):
        return made.tuner.hypermodel, ref
    if isinstance(made, graph_module.Graph):
        return made, ref
    raise UserCodeError(ref, f"returned a {type(made).__name__}, not an autokeras.AutoModel")


def _input_kind(node: Any) -> str:
    import autokeras as ak

    if isinstance(node, ak.TextInput):
        return "text"
    if isinstance(node, ak.StructuredDataInput):
        return "structured"
    return "image" if isinstance(node, ak.ImageInput) else "tensor"


def _node_data(x: Any, nodes: list[Any], where: str) -> list[Any]:
    if len(nodes) == 1:
        return [x]
    if not isinstance(x, dict) or set(x) != {n.name for n in nodes}:
        raise UserCodeError(where, f"x must be a dict keyed by the input names {sorted(n.name for n in nodes)}")
    return [x[n.name] for n in nodes]


def _vocabulary(tokens: Any, limit: int | None = None) -> list[str]:
    """Most frequent first, ties by value: the same list on every worker."""
    counts = collections.Counter(str(t) for t in tokens)
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    return ranked[:limit] if limit is not None else ranked


class AutoKerasHyperModel(kt.HyperModel):
    """A Keras Tuner hypermodel over an AutoKeras graph whose models hold their own preprocessing."""

    def __init__(
        self,
        graph: Any,
        train: Split,
        where: str,
        *,
        max_model_size: int | None = None,
        epochs: int = 1,
        batch_size: int | None = None,
        narrowed: dict[str, list[Value]] | None = None,
    ) -> None:
        super().__init__()
        self.graph = graph
        self.train = train
        self.where = where
        self.max_model_size = max_model_size
        self.narrowed = narrowed or {}
        self.inputs: list[Any] = list(graph.inputs)
        self.heads: list[Any] = [output.in_blocks[0] for output in graph.outputs]
        if len(self.heads) != 1:
            raise UserCodeError(where, f"has {len(self.heads)} heads; hpsearch trains one target")
        self.xs = _node_data(train.x, self.inputs, where)
        self._configure(epochs, batch_size or DEFAULT_BATCH_SIZE)

    def _configure(self, epochs: int, batch_size: int) -> None:
        """Set what AutoKeras's analysers would: input shapes, head size and loss, fit arguments."""
        import keras

        n = len(self.train.y)
        for node, x in zip(self.inputs, self.xs, strict=True):
            kind = _input_kind(node)
            if kind == "structured":
                node.shape = None  # set by the encoding front
            elif kind == "text":
                node.shape = (TEXT_SEQUENCE_LENGTH,)
            else:
                array = np.asarray(x)
                if array.dtype.kind not in "biuf":
                    raise UserCodeError(self.where, f"{node.name}: expects numbers, got dtype {array.dtype}")
                node.shape = tuple(array.shape[1:])
                node.dtype = "float32"
            node.batch_size, node.num_samples = batch_size, n
        head = self.heads[0]
        y = np.asarray(self.train.y)
        import autokeras as ak

        if isinstance(head, ak.ClassificationHead):
            if y.dtype.kind not in "biu" or y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1) or y.min() < 0:
                raise UserCodeError(
                    self.where, f"classification targets must be integer class indices 0..K-1 (got {y.dtype})"
                )
            classes = int(y.max()) + 1
            head.num_classes = head.num_classes or max(classes, 2)
            if head.loss is None or isinstance(head.loss, str | list):
                binary = head.num_classes == 2 or head.multi_label
                head.loss = (
                    keras.losses.BinaryCrossentropy() if binary else keras.losses.SparseCategoricalCrossentropy()
                )
            head.shape = (1,) if isinstance(head.loss, keras.losses.BinaryCrossentropy) else (head.num_classes,)
        else:
            head.shape = (1,) if y.ndim == 1 else tuple(y.shape[1:])
            if head.loss is None:
                head.loss = keras.losses.MeanSquaredError()
        for block in self.graph.blocks:  # the user's blocks may hold numpy integers too (num_units=np.int64(64))
            for attribute, value in vars(block).items():
                setattr(block, attribute, python_scalars(value))
        self.graph.epochs, self.graph.num_samples = epochs, n

    def _front(self, node: Any, x: Any) -> tuple[Any, Any]:
        """The model's raw input(s) for ``node`` and the tensor AutoKeras's blocks start from."""
        import keras

        kind = _input_kind(node)
        if kind == "text":
            raw = keras.Input(shape=(1,), dtype="string", name=node.name)
            vectorize = keras.layers.TextVectorization(
                standardize=None,
                split="whitespace",
                output_sequence_length=TEXT_SEQUENCE_LENGTH,
                vocabulary=_vocabulary(
                    (w for text in np.asarray(x).reshape(-1) for w in str(text).split()), TEXT_MAX_TOKENS
                ),
            )
            return raw, vectorize(raw)
        if kind != "structured":
            # What ImageInput/Input.build do (cast to float32, add a channel axis to (H, W) images) with Keras's
            # own layers, so the saved model loads without importing autokeras.
            raw = keras.Input(shape=node.shape, dtype="float32", name=node.name)
            if kind == "image" and len(node.shape) == 2:
                return raw, keras.layers.Reshape((*node.shape, 1))(raw)
            return raw, raw
        columns = x if isinstance(x, dict) else None
        if columns is None:
            array = np.asarray(x)
            if array.ndim != 2 or array.dtype.kind not in "biuf":
                raise UserCodeError(
                    self.where, "structured data x must be a 2-D numeric array or a dict of columns (name -> array)"
                )
            raw = keras.Input(shape=(array.shape[1],), dtype="float32", name=node.name)
            return raw, raw
        raws: dict[str, Any] = {}
        encoded = []
        for name in sorted(columns):
            column = np.asarray(columns[name])
            if column.dtype.kind in "biuf":
                raws[name] = keras.Input(shape=(1,), dtype="float32", name=name)
                encoded.append(raws[name])
            else:
                raws[name] = keras.Input(shape=(1,), dtype="string", name=name)
                lookup = keras.layers.StringLookup(vocabulary=_vocabulary(column.reshape(-1)), output_mode="one_hot")
                encoded.append(lookup(raws[name]))
        merged = encoded[0] if len(encoded) == 1 else keras.layers.Concatenate()(encoded)
        return raws, merged

    def build(self, hp: Any) -> Any:
        import keras
        import tree

        # As Keras Tuner before every build: AutoKeras names its inner blocks from Keras's name counters
        # (conv_block_1, ...), and parameter names must be the same in every build and on every worker.
        keras.backend.clear_session(free_memory=False)
        # AutoKeras 3.0.0 hands hyperparameter values to keras layers as they are, and keras >= 3.13 refuses a
        # numpy integer as Dense(units=) (isinstance(units, int)): values from numpy (a Keras Tuner oracle, a
        # user's seed) are made Python scalars before any block reads them.
        for name, value in list(hp.values.items()):
            hp.values[name] = python_scalars(value)
        for name, values in self.narrowed.items():
            hp.Choice(name, values)
        self.graph.compile()
        raw_inputs: list[Any] = []
        keras_nodes: dict[int, Any] = {}
        node_id = self.graph._node_to_id
        for node, x in zip(self.inputs, self.xs, strict=True):
            raw, start = self._front(node, x)
            raw_inputs.append(raw)
            keras_nodes[node_id[node]] = start if _input_kind(node) in ("image", "tensor") else node.build(hp, start)
        # As autokeras.graph.Graph.build, from our preprocessed inputs.
        for block in self.graph.blocks:
            try:
                outputs = tree.flatten(block.build(hp, inputs=[keras_nodes[node_id[n]] for n in block.inputs]))
            except Exception as exc:
                if any(name.endswith("/pretrained") and value for name, value in hp.values.items()):
                    # Keras applications download ImageNet weights on first use; offline that fails.
                    raise kt.errors.FailedTrialError(f"pretrained weights unavailable: {exc}") from exc
                raise
            for output_node, tensor in zip(block.outputs, outputs, strict=True):
                keras_nodes[node_id[output_node]] = tensor
        model_inputs = raw_inputs[0] if len(raw_inputs) == 1 else raw_inputs
        model = keras.Model(model_inputs, [keras_nodes[node_id[n]] for n in self.graph.outputs])
        size = model.count_params()
        if self.max_model_size is not None and size > self.max_model_size:
            raise kt.errors.FailedTrialError(
                f"Oversized model: {size} parameters > max_model_size {self.max_model_size}"
            )
        self._adapt(model)
        return self.graph._compile_keras_model(hp, model)

    def _adapt(self, model: Any) -> None:
        """Adapt every preprocessing layer (Normalization) on the training split, in graph order, each on
        the output of the (already adapted) layers before it."""
        import keras

        x = self.train.x
        for layer in model.layers:
            adapt = getattr(layer, "adapt", None)
            if adapt is None or isinstance(layer, keras.layers.StringLookup | keras.layers.TextVectorization):
                continue
            upstream = keras.Model(model.input, layer.input)
            adapt(np.concatenate([keras.ops.convert_to_numpy(upstream(batch)) for batch in _batches(x)]))


def python_scalars(value: Any) -> Any:
    """``value`` with numpy scalars (also inside tuples and lists) as Python ones; anything else unchanged.

    >>> python_scalars((np.int64(3), np.float32(0.5), "relu"))
    (3, 0.5, 'relu')
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | list) and any(isinstance(item, np.generic) for item in value):
        return type(value)(python_scalars(item) for item in value)
    return value


def _batches(x: Any, size: int = 4096) -> list[Any]:
    n = len(next(iter(x.values()))) if isinstance(x, dict) else len(x)
    if isinstance(x, dict):
        return [keras_inputs({k: np.asarray(v[i : i + size]) for k, v in x.items()}) for i in range(0, n, size)]
    return [keras_inputs(np.asarray(x[i : i + size])) for i in range(0, n, size)]


def automl_hypermodel(
    section: AutomlSection,
    base_dir: str | Path,
    dataset: Dataset,
    *,
    epochs: int = 1,
    batch_size: int | None = None,
    narrowed: dict[str, list[Value]] | None = None,
) -> AutoKerasHyperModel:
    graph, where = _fresh_graph(section, base_dir)
    return AutoKerasHyperModel(
        graph,
        dataset["train"],
        where,
        max_model_size=section.max_model_size,
        epochs=epochs,
        batch_size=batch_size,
        narrowed=narrowed,
    )
