"""The worker's fork server imports this first: keras once, quietly (see :mod:`hpsearch.execution.quiet`),
before the modules every trial child shares."""

from hpsearch.execution.quiet import import_keras_quietly

import_keras_quietly()
