"""QuantizeConfigs for the layer kit, the quantize scope, and model annotation.

TF-MOT's default registry rejects custom layers and `Multiply`. Two configs
cover them: data movement (shuffle, split) keeps its input's quantization
(NoOp), single-op arithmetic gets a fake-quant on its output (Output).
"""
import functools

from .compat import keras
from .layers import CUSTOM_LAYERS, AddConst, ChannelShuffle, ChannelSplit, GateMultiply, MulConst


@functools.lru_cache(maxsize=None)
def _tfq():
    import tensorflow_model_optimization as tfmot

    return tfmot.quantization.keras


def _config_classes():
    tfq = _tfq()

    class NoOpQuantizeConfig(tfq.QuantizeConfig):
        """Quantize nothing: the layer only moves data."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    class OutputQuantizeConfig(NoOpQuantizeConfig):
        """Fake-quantize the output, as the default registry does for Add."""

        def get_output_quantizers(self, layer):
            return [tfq.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    keras.utils.register_keras_serializable("mobilecnn")(NoOpQuantizeConfig)
    keras.utils.register_keras_serializable("mobilecnn")(OutputQuantizeConfig)
    return NoOpQuantizeConfig, OutputQuantizeConfig


@functools.lru_cache(maxsize=None)
def quantize_configs():
    """{name: class} of the project's QuantizeConfigs (created once, after TF-MOT is imported)."""
    noop, output = _config_classes()
    return {"NoOpQuantizeConfig": noop, "OutputQuantizeConfig": output}


# Which config each custom layer gets.
LAYER_CONFIG = {
    AddConst: "OutputQuantizeConfig",
    MulConst: "OutputQuantizeConfig",
    GateMultiply: "OutputQuantizeConfig",
    ChannelShuffle: "NoOpQuantizeConfig",
    ChannelSplit: "NoOpQuantizeConfig",
}


def custom_objects():
    """Everything needed to deserialize zoo models, QAT models included."""
    return {**CUSTOM_LAYERS, **quantize_configs()}


def quantize_scope():
    """Context manager for `quantize_apply`, and for loading QAT models."""
    return _tfq().quantize_scope(custom_objects())


def config_for(layer):
    """A fresh QuantizeConfig instance for a custom layer, or None for standard layers."""
    name = LAYER_CONFIG.get(type(layer))
    return quantize_configs()[name]() if name else None


def producers(model):
    """{layer name: [names of the layers feeding it]} from the model's own graph config.

    (A layer's `_inbound_nodes` also lists nodes of other models that reuse
    it, e.g. the wrapped copies made for pruning, so the config is used.)
    """
    feeds = {}
    for entry in model.get_config().get("layers", []):
        names = []
        for node in entry.get("inbound_nodes", []):
            names.extend(item[0] for item in (node if isinstance(node, list) else node.get("args", [])))
        feeds[entry["name"]] = names
    return feeds


def consumers(model):
    """{layer name: [names of the layers it feeds]}."""
    fed = {}
    for name, inputs in producers(model).items():
        for producer in inputs:
            fed.setdefault(producer, []).append(name)
    return fed


def _only_feeds(model, layer, kind, fed):
    return bool(fed.get(layer.name)) and all(isinstance(model.get_layer(c), kind) for c in fed[layer.name])


def concat_fed_convs(model, fed=None):
    """Names of the convs with a linear activation whose every consumer is a Concatenate.

    TFLite's int8 CONCATENATION gives such a conv's output the concat's scale,
    so a range of the conv's own would exist only in the QAT model, where it
    clips what the int8 file keeps (7 int8 steps in the ShuffleNet V1
    stride-2 unit's average-pool path, measured). TF-MOT's ConcatTransform
    drops the output quantizers of a concat's inputs but not a conv's
    activation quantizer.
    """
    fed = consumers(model) if fed is None else fed
    convs = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
    return {
        layer.name
        for layer in model.layers
        if isinstance(layer, convs) and keras.activations.serialize(layer.activation) == "linear"
        and _only_feeds(model, layer, keras.layers.Concatenate, fed)
    }


def relu_fed_adds(model, fed=None):
    """Names of the AddConst layers whose every consumer is a ReLU.

    The converter fuses the pair into one ADD with a fused RELU6 at the
    ReLU's scale; a range of the add's own would round a second time in the
    QAT model only (hard-swish's relu6 output was 0.5-0.8 int8 steps off on
    average, measured).
    """
    fed = consumers(model) if fed is None else fed
    return {layer.name for layer in model.layers
            if isinstance(layer, AddConst) and _only_feeds(model, layer, keras.layers.ReLU, fed)}


def _weights_only_config(layer):
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_registry \
        import Default8BitConvQuantizeConfig

    kernel = "depthwise_kernel" if isinstance(layer, keras.layers.DepthwiseConv2D) else "kernel"
    return Default8BitConvQuantizeConfig([kernel], [], False)


def annotate(model):
    """Return a copy of `model` with every layer annotated for QAT.

    Custom layers get their paired config, except that an AddConst feeding
    only ReLUs gets no range (`relu_fed_adds`); convs that feed only concats
    quantize their weights alone (`concat_fed_convs`); all other layers are
    left to TF-MOT's default registry by `quantize_annotate_model`.
    """
    tfq = _tfq()
    fed = consumers(model)
    weights_only, unranged = concat_fed_convs(model, fed), relu_fed_adds(model, fed)

    def clone(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        config = config_for(layer)
        if config is None and layer.name in weights_only:
            config = _weights_only_config(layer)
        if layer.name in unranged:
            config = quantize_configs()["NoOpQuantizeConfig"]()
        return tfq.quantize_annotate_layer(fresh, config) if config is not None else fresh

    with keras.utils.custom_object_scope(custom_objects()):
        annotated = keras.models.clone_model(model, clone_function=clone)
    annotated.set_weights(model.get_weights())
    return tfq.quantize_annotate_model(annotated)


def quantize(model):
    """QAT-ready copy of a zoo model (fake-quant everywhere, weights copied)."""
    annotated = annotate(model)
    with quantize_scope():
        return _tfq().quantize_apply(annotated)
