"""mobilecnn: a tf_keras zoo of mobile CNNs built to survive QAT, pruning and int8 TFLite export.

Importing this package is cheap; TensorFlow is loaded on first use of the
registry or the applications module.
"""
__version__ = "0.1.0"


def create_model(name, **kwargs):
    from .registry import create_model as _create

    return _create(name, **kwargs)


def list_models(pattern=None):
    from .registry import list_models as _list

    return _list(pattern)


__all__ = ["create_model", "list_models", "__version__"]
