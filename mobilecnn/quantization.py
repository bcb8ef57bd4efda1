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


def annotate(model):
    """Return a copy of `model` with every layer annotated for QAT.

    Custom layers get their paired config; all other layers are left to
    TF-MOT's default registry by `quantize_annotate_model`.
    """
    tfq = _tfq()

    def clone(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        config = config_for(layer)
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
