"""Wrap chosen layers of a functional model (pruning, clustering) without touching the original."""
import numpy as np

from mobilecnn.compat import keras
from mobilecnn.quantization import custom_objects

WEIGHT_LAYERS = (keras.layers.Conv2D, keras.layers.Dense, keras.layers.SeparableConv2D)


def copy_model(model):
    """An independent copy of `model` with the same weights (custom zoo layers included)."""
    with keras.utils.custom_object_scope(custom_objects()):
        copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def wrap_layers(model, names, wrap):
    """Copy `model`, replacing each layer named in `names` by `wrap(layer)`.

    The wrappers receive the copy's built layers, so they start from the
    trained weights (clustering computes its centroids from them at build).
    """
    names = set(names)
    copy = copy_model(model)
    missing = names - {layer.name for layer in copy.layers}
    if missing:
        raise ValueError(f"model {model.name} has no layers named {sorted(missing)}")
    with keras.utils.custom_object_scope(custom_objects()):
        return keras.models.clone_model(copy, clone_function=lambda layer: wrap(layer) if layer.name in names else layer)


def kernel_name(layer):
    """The attribute that holds the prunable/clusterable weight of a layer."""
    return "pointwise_kernel" if isinstance(layer, keras.layers.SeparableConv2D) else "kernel"


def _weight(layer, short_name):
    for weight in layer.weights:
        if weight.name.split(":")[0].split("/")[-1] == short_name:
            return weight
    return None


def effective_kernel(model, name):
    """The kernel values layer `name` computes with (NumPy), looking inside pruning/cluster/QAT wrappers.

    Cluster-preserving QAT keeps the weights as centroids plus per-weight
    indices (its `kernel` variable is not what the layer uses), so for it the
    kernel is rebuilt as centroids[indices].
    """
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if inner.name != name:
            continue
        centroids, indices = _weight(layer, "cluster_centroids_tf"), _weight(layer, "pulling_indices_tf")
        if centroids is not None and indices is not None:
            return np.take(centroids.numpy(), indices.numpy())
        kernel = _weight(layer, kernel_name(inner))
        if kernel is None:
            raise ValueError(f"layer {name} has no '{kernel_name(inner)}' weight")
        return kernel.numpy()
    raise ValueError(f"model {model.name} has no layer named {name}")
