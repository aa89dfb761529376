"""Import Keras 3 on its torch backend, or say exactly what to change."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

FIX = 'set the environment variable KERAS_BACKEND=torch before keras is first imported (os.environ["KERAS_BACKEND"] = "torch")'


def import_keras(feature: str) -> ModuleType:
    """The ``keras`` module, checked to be Keras 3 running on the torch backend.

    Raises:
        ImportError: Keras is not installed (the ``pip install`` line), or it could not
            load its configured backend (the variable to set).
        RuntimeError: Keras runs on another backend (the variable to set).
    """
    if importlib.util.find_spec("keras") is None:
        raise ImportError(f"{feature} needs keras 3: pip install 'graddoctor[keras]'")
    try:
        keras = importlib.import_module("keras")
    except ImportError as err:  # e.g. the default backend, tensorflow, is not installed
        raise ImportError(
            f"{feature}: keras could not load its backend ({err}); graddoctor needs "
            f"Keras' torch backend: {FIX}"
        ) from err
    check_torch_backend(keras, feature)
    return keras


def check_torch_backend(keras: ModuleType, feature: str) -> None:
    """Raise RuntimeError unless ``keras`` is Keras 3 on the torch backend."""
    version = getattr(keras, "__version__", "0")
    if int(version.split(".")[0]) < 3:
        raise RuntimeError(f"{feature} needs Keras 3 (found {version}): pip install 'keras>=3'")
    backend = keras.backend.backend()
    if backend != "torch":
        raise RuntimeError(
            f"{feature} needs Keras' torch backend, but keras runs on {backend!r}: {FIX}"
        )


__all__ = ["FIX", "check_torch_backend", "import_keras"]
