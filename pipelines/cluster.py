"""Weight clustering (TF-MOT) and cluster-preserving QAT.

Clustering replaces each kernel's values by `clusters` shared centroids
(k-means++ initialised from the trained weights), which compresses well and
survives int8 conversion when followed by cluster-preserving QAT (CQAT).
With `preserve_sparsity=True` on a pruned model the zeros stay zeros
(sparsity- and cluster-preserving QAT, PCQAT).
"""
import numpy as np

from mobilecnn.compat import keras
from mobilecnn.quantization import custom_objects

from .qat import quantize_model
from .wrapping import WEIGHT_LAYERS, effective_kernel, kernel_name, wrap_layers


def _clustering():
    import tensorflow_model_optimization as tfmot

    return tfmot.clustering.keras


def clusterable_layers(model, min_weights=1024, skip=()):
    names = []
    for layer in model.layers:
        if isinstance(layer, WEIGHT_LAYERS) and layer.name not in skip:
            if int(np.prod(getattr(layer, kernel_name(layer)).shape)) >= min_weights:
                names.append(layer.name)
    return names


def cluster_model(model, clusters=16, preserve_sparsity=False, names=None):
    """A clustering-wrapped copy of `model` (fine-tune it with any fit, then `strip`)."""
    if not isinstance(clusters, int) or clusters < 2:
        raise ValueError(f"clusters must be an integer >= 2, got {clusters!r}")
    clustering = _clustering()
    names = clusterable_layers(model) if names is None else list(names)
    if not names:
        raise ValueError(f"model {model.name} has no layer to cluster")
    init = clustering.CentroidInitialization.KMEANS_PLUS_PLUS
    return wrap_layers(model, names, lambda layer: clustering.cluster_weights(
        layer, number_of_clusters=clusters, cluster_centroids_init=init, preserve_sparsity=preserve_sparsity))


def clustered_layer_names(model):
    from tensorflow_model_optimization.python.core.clustering.keras.cluster_wrapper import ClusterWeights as wrapper

    return [layer.layer.name for layer in model.layers if isinstance(layer, wrapper)]


def strip(model):
    with keras.utils.custom_object_scope(custom_objects()):
        return _clustering().strip_clustering(model)


def cluster_report(model, names):
    """{layer: {"unique_values": n, "zeros": fraction}} for plain (stripped) or QAT-wrapped models."""
    report = {}
    for name in names:
        kernel = effective_kernel(model, name)
        report[name] = {"unique_values": int(np.unique(kernel).size), "zeros": float((kernel == 0).mean())}
    return report


def cqat_model(stripped, preserve_sparsity=False, calibration=None):
    """Cluster-preserving QAT copy of a stripped clustered model (PCQAT with preserve_sparsity).

    `calibration`: images to start the fake-quant ranges from (see `quantize_model`).
    """
    import tensorflow_model_optimization as tfmot

    scheme = tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=preserve_sparsity)
    return quantize_model(stripped, scheme=scheme, calibration=calibration)
