"""Import TensorFlow once per process, quietly, with the thread counts from the config.

TensorFlow reads ``TF_CPP_MIN_LOG_LEVEL`` when its C++ library loads, and
absl prints a few lines (oneDNN notice, "All log messages before
absl::InitializeLog()") to fd 2 whatever the level; in an actor those lines
would land in the log as non-JSON noise. So the import runs with fd 2 pointed
at a temporary file, which is printed only if the import fails. Thread pools
can be sized only before the first op runs, hence one function for both.
"""

from __future__ import annotations

import os
import sys
import tempfile
from types import ModuleType
from typing import Any

_configured: tuple[int, int] | None = None


def import_tensorflow(intra_op_threads: int = 1, inter_op_threads: int = 1) -> ModuleType:
    """``tensorflow``, imported quietly; thread pools sized on the first call (0: TensorFlow chooses)."""
    global _configured
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" not in sys.modules:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                import tensorflow  # noqa: F401, PLC0415 - the one place TensorFlow is imported
            except BaseException:
                os.dup2(saved, 2)
                capture.seek(0)
                sys.stderr.write(capture.read().decode(errors="replace"))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)
    import tensorflow as tf  # noqa: PLC0415

    if _configured is None:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
        _configured = (intra_op_threads, inter_op_threads)
    return tf


def keras() -> Any:
    import_tensorflow()
    import keras as k  # noqa: PLC0415

    return k
