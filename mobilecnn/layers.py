"""Custom single-op layers.

Each layer lowers to exactly one TFLite op, so that quantization-aware
training can place a fake-quant on its output and nothing inside it stays
float. Raw `tf.*` calls on Keras tensors would become TFOpLambda layers,
which TF-MOT cannot quantize; these layers replace them. Every class here is
paired with a QuantizeConfig in `mobilecnn.quantization`.
"""
from .compat import keras, tf

_PACKAGE = "mobilecnn"


@keras.utils.register_keras_serializable(_PACKAGE)
class AddConst(keras.layers.Layer):
    """`x + c` for a Python scalar `c` (one ADD op)."""

    def __init__(self, value, **kwargs):
        super().__init__(**kwargs)
        self.value = float(value)

    def call(self, inputs):
        return inputs + self.value

    def get_config(self):
        return {**super().get_config(), "value": self.value}


@keras.utils.register_keras_serializable(_PACKAGE)
class MulConst(keras.layers.Layer):
    """`x * c` for a Python scalar `c` (one MUL op)."""

    def __init__(self, value, **kwargs):
        super().__init__(**kwargs)
        self.value = float(value)

    def call(self, inputs):
        return inputs * self.value

    def get_config(self):
        return {**super().get_config(), "value": self.value}


@keras.utils.register_keras_serializable(_PACKAGE)
class GateMultiply(keras.layers.Multiply):
    """Elementwise product of two tensors (SE gate, hard-swish product).

    A subclass rather than plain `Multiply` so that the pairing with an
    output quantizer is explicit and survives serialization.
    """


@keras.utils.register_keras_serializable(_PACKAGE)
class ChannelShuffle(keras.layers.Layer):
    """ShuffleNet channel shuffle on NHWC tensors: RESHAPE, TRANSPOSE, RESHAPE.

    Matches PyTorch's `view(b, g, c/g, h, w).transpose(1, 2)` on NCHW, so
    ported weights see the same channel order.
    """

    def __init__(self, groups, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % self.groups:
            raise ValueError(
                f"ChannelShuffle '{self.name}': {channels} channels are not divisible by groups={self.groups}"
            )
        super().build(input_shape)

    def call(self, inputs):
        _, h, w, c = inputs.shape
        x = tf.reshape(inputs, [-1, h, w, self.groups, c // self.groups])
        x = tf.transpose(x, [0, 1, 2, 4, 3])
        return tf.reshape(x, [-1, h, w, c])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


@keras.utils.register_keras_serializable(_PACKAGE)
class ChannelSplit(keras.layers.Layer):
    """Split the channel axis into `num_splits` equal parts (one SPLIT op)."""

    def __init__(self, num_splits=2, **kwargs):
        super().__init__(**kwargs)
        self.num_splits = int(num_splits)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % self.num_splits:
            raise ValueError(
                f"ChannelSplit '{self.name}': {channels} channels are not divisible into {self.num_splits} parts"
            )
        super().build(input_shape)

    def call(self, inputs):
        return tf.split(inputs, self.num_splits, axis=-1)

    def compute_output_shape(self, input_shape):
        part = list(input_shape)
        part[-1] = input_shape[-1] // self.num_splits
        return [tuple(part)] * self.num_splits

    def get_config(self):
        return {**super().get_config(), "num_splits": self.num_splits}


CUSTOM_LAYERS = {cls.__name__: cls for cls in (AddConst, MulConst, GateMultiply, ChannelShuffle, ChannelSplit)}
