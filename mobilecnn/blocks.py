"""Building blocks shared by the zoo.

Rules every block follows (see docs/toolchain-notes in ../shared): the
activation is its own layer, BatchNormalization comes only right after a
conv, hard-swish/hard-sigmoid are built from single-op layers, and stride-2
layers honour the model's padding policy:

* ``"symmetric"``: ``ZeroPadding2D(k // 2)`` then a ``"valid"`` conv, as
  PyTorch pads; XNNPACK's sparse path and PyTorch checkpoints need it.
* ``"same"``: TensorFlow ``"same"`` (extra row/column at the bottom/right),
  for checkpoints trained in TensorFlow.

Layer names are ``{prefix}_{part}`` and are stable: weight ports use them.
"""
from dataclasses import dataclass

from .compat import keras
from .layers import AddConst, ChannelShuffle, ChannelSplit, GateMultiply, MulConst

L = keras.layers

PADDINGS = ("symmetric", "same")
ACTIVATIONS = ("relu", "relu6", "swish", "sigmoid", "hard_swish", "hard_sigmoid", None)


@dataclass(frozen=True)
class BuildConfig:
    """Per-model settings that every block needs."""

    padding: str = "symmetric"
    bn_epsilon: float = 1e-3
    bn_momentum: float = 0.99

    def __post_init__(self):
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")


def activation(x, kind, name):
    """Apply activation `kind` as separate single-op layers named `name*`."""
    if kind is None:
        return x
    if kind == "relu":
        return L.ReLU(name=name)(x)
    if kind == "relu6":
        return L.ReLU(6.0, name=name)(x)
    if kind == "sigmoid":
        return L.Activation("sigmoid", name=name)(x)
    if kind == "swish":
        return swish(x, name)
    if kind == "hard_sigmoid":
        return hard_sigmoid(x, name)
    if kind == "hard_swish":
        return hard_swish(x, name)
    raise ValueError(f"unknown activation {kind!r}; expected one of {ACTIVATIONS}")


def swish(x, name):
    """x * sigmoid(x) as two layers. The int8 file computes it as LOGISTIC + MUL, the LOGISTIC on its fixed
    1/256 grid; QAT models that grid only on a sigmoid layer of its own (quantization.LogisticQuantizeConfig)."""
    gate = L.Activation("sigmoid", name=f"{name}_sigmoid")(x)
    return GateMultiply(name=name)([x, gate])


def hard_sigmoid(x, name):
    """relu6(x + 3) / 6, the MobileNetV3/PyTorch definition (not tf_keras's 0.2x + 0.5)."""
    x = AddConst(3.0, name=f"{name}_add3")(x)
    x = L.ReLU(6.0, name=f"{name}_relu6")(x)
    return MulConst(1.0 / 6.0, name=f"{name}_div6")(x)


def hard_swish(x, name):
    """(x * 1/6) * relu6(x + 3): this form escapes the converter's HARD_SWISH
    fusion, which XNNPACK does not run in int8."""
    scaled = MulConst(1.0 / 6.0, name=f"{name}_div6")(x)
    gate = AddConst(3.0, name=f"{name}_add3")(x)
    gate = L.ReLU(6.0, name=f"{name}_relu6")(gate)
    return GateMultiply(name=name)([scaled, gate])


def pad_for(x, kernel_size, strides, cfg, name):
    """Return (tensor, keras padding) for a conv of `kernel_size`/`strides` under `cfg`."""
    if strides == 1 or cfg.padding == "same":
        return x, "same"
    return L.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(x), "valid"


def batch_norm(x, cfg, name):
    return L.BatchNormalization(epsilon=cfg.bn_epsilon, momentum=cfg.bn_momentum, name=name)(x)


def conv_bn_act(x, filters, kernel_size, strides=1, *, cfg, name, act="relu", groups=1, bn=True, use_bias=None):
    """Conv2D (+ BatchNorm) (+ activation). Bias only when there is no BN, unless forced."""
    x, padding = pad_for(x, kernel_size, strides, cfg, name)
    x = L.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        groups=groups,
        use_bias=(not bn) if use_bias is None else use_bias,
        name=f"{name}_conv",
    )(x)
    if bn:
        x = batch_norm(x, cfg, f"{name}_bn")
    return activation(x, act, f"{name}_act")


def dw_bn_act(x, kernel_size, strides=1, *, cfg, name, act="relu", bn=True, depth_multiplier=1):
    """DepthwiseConv2D (+ BatchNorm) (+ activation)."""
    x, padding = pad_for(x, kernel_size, strides, cfg, name)
    x = L.DepthwiseConv2D(kernel_size, strides=strides, padding=padding, depth_multiplier=depth_multiplier,
                          use_bias=not bn, name=f"{name}_dwconv")(x)
    if bn:
        x = batch_norm(x, cfg, f"{name}_dwbn")
    return activation(x, act, f"{name}_dwact")


def depthwise_separable(x, filters, strides=1, *, cfg, name, act="relu6", kernel_size=3, depth_multiplier=1):
    """MobileNet V1 block: depthwise conv-BN-act, pointwise conv-BN-act."""
    x = dw_bn_act(x, kernel_size, strides, cfg=cfg, name=name, act=act, depth_multiplier=depth_multiplier)
    return conv_bn_act(x, filters, 1, cfg=cfg, name=f"{name}_pw", act=act)


def squeeze_excite(x, reduced, *, cfg, name, act="relu", gate="sigmoid"):
    """SE: global pool (kept 4-D), 1x1 reduce + act, 1x1 expand + gate, multiply."""
    channels = x.shape[-1]
    s = L.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = L.Conv2D(reduced, 1, use_bias=True, name=f"{name}_reduce_conv")(s)
    s = activation(s, act, f"{name}_reduce_act")
    s = L.Conv2D(channels, 1, use_bias=True, name=f"{name}_expand_conv")(s)
    s = activation(s, gate, f"{name}_gate")
    return GateMultiply(name=f"{name}_excite")([x, s])


def inverted_residual(
    x,
    filters,
    *,
    expanded,
    kernel_size=3,
    strides=1,
    se_reduced=0,
    act="relu6",
    se_act="relu",
    se_gate="sigmoid",
    skip=True,
    drop_rate=0.0,
    cfg,
    name,
):
    """MBConv: [1x1 expand] -> depthwise -> [SE] -> 1x1 project (linear) [+ residual].

    `expanded` is the absolute expanded width; no expand conv when it equals
    the input width. `se_reduced` > 0 adds an SE block of that width.
    """
    inputs = x
    in_channels = x.shape[-1]
    if expanded != in_channels:
        x = conv_bn_act(x, expanded, 1, cfg=cfg, name=f"{name}_expand", act=act)
    x = dw_bn_act(x, kernel_size, strides, cfg=cfg, name=name, act=act)
    if se_reduced:
        x = squeeze_excite(x, se_reduced, cfg=cfg, name=f"{name}_se", act=se_act, gate=se_gate)
    x = conv_bn_act(x, filters, 1, cfg=cfg, name=f"{name}_project", act=None)
    return _residual(inputs, x, strides, skip, drop_rate, name)


def fused_mbconv(x, filters, *, expanded, kernel_size=3, strides=1, se_reduced=0, act="swish", skip=True,
                 drop_rate=0.0, cfg, name):
    """Fused-MBConv (EfficientNetV2): k x k expand conv -> [SE] -> 1x1 project.

    With no expansion the single k x k conv does the projection and keeps
    its activation (as keras.applications' EfficientNetV2 does).
    """
    inputs = x
    if expanded != x.shape[-1]:
        x = conv_bn_act(x, expanded, kernel_size, strides, cfg=cfg, name=f"{name}_expand", act=act)
        if se_reduced:
            x = squeeze_excite(x, se_reduced, cfg=cfg, name=f"{name}_se", act=act)
        x = conv_bn_act(x, filters, 1, cfg=cfg, name=f"{name}_project", act=None)
    else:
        if se_reduced:
            x = squeeze_excite(x, se_reduced, cfg=cfg, name=f"{name}_se", act=act)
        x = conv_bn_act(x, filters, kernel_size, strides, cfg=cfg, name=f"{name}_project", act=act)
    return _residual(inputs, x, strides, skip, drop_rate, name)


def _residual(inputs, x, strides, skip, drop_rate, name):
    if not (skip and strides == 1 and inputs.shape[-1] == x.shape[-1]):
        return x
    if drop_rate > 0:
        # Stochastic depth: drop the whole residual branch per example.
        x = L.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
    return L.Add(name=f"{name}_add")([x, inputs])


def fire(x, squeeze, expand1x1, expand3x3, *, cfg, name):
    """SqueezeNet Fire module (biases, no BN, as the reference)."""
    s = conv_bn_act(x, squeeze, 1, cfg=cfg, name=f"{name}_squeeze", act="relu", bn=False)
    e1 = conv_bn_act(s, expand1x1, 1, cfg=cfg, name=f"{name}_expand1x1", act="relu", bn=False)
    e3 = conv_bn_act(s, expand3x3, 3, cfg=cfg, name=f"{name}_expand3x3", act="relu", bn=False)
    return L.Concatenate(name=f"{name}_concat")([e1, e3])


def max_pool(x, pool_size, strides, *, cfg, name, ceil_mode=False):
    """Max pooling with PyTorch-compatible padding on post-ReLU inputs.

    Zero padding stands in for PyTorch's -inf padding: inputs are
    non-negative wherever the zoo pools. `ceil_mode` pads the bottom/right
    edge so the last partial window is kept, as PyTorch's ceil_mode does.
    """
    if cfg.padding == "same":
        return L.MaxPooling2D(pool_size, strides, padding="same", name=name)(x)
    pad = pool_size // 2 if not ceil_mode else 0
    extra = [0, 0]
    if ceil_mode:
        for axis in (0, 1):
            size = x.shape[1 + axis]
            if (size - pool_size) % strides:
                extra[axis] = strides - (size - pool_size) % strides
    if pad or any(extra):
        x = L.ZeroPadding2D(((pad, pad + extra[0]), (pad, pad + extra[1])), name=f"{name}_pad")(x)
    return L.MaxPooling2D(pool_size, strides, padding="valid", name=name)(x)


def shufflenet_v1_unit(x, filters, *, groups, strides, first_group, cfg, name):
    """ShuffleNet V1 unit: grouped 1x1 -> shuffle -> depthwise -> grouped 1x1.

    Stride 1 adds the input; stride 2 concatenates a 3x3/2 average of the
    input. That average (count_include_pad, as the reference) is a frozen
    depthwise conv with weights 1/9, because XNNPACK does not run
    AVERAGE_POOL_2D in int8.
    """
    in_channels = x.shape[-1]
    out = filters - in_channels if strides == 2 else filters
    mid = filters // 4
    y = conv_bn_act(x, mid, 1, cfg=cfg, name=f"{name}_reduce", act="relu", groups=1 if first_group else groups)
    if groups > 1:
        y = ChannelShuffle(groups, name=f"{name}_shuffle")(y)
    y = dw_bn_act(y, 3, strides, cfg=cfg, name=name, act=None)
    y = conv_bn_act(y, out, 1, cfg=cfg, name=f"{name}_expand", act=None, groups=groups)
    if strides == 1:
        y = L.Add(name=f"{name}_add")([y, x])
        return activation(y, "relu", f"{name}_out_act")
    y = activation(y, "relu", f"{name}_out_act")
    shortcut, padding = pad_for(x, 3, 2, cfg, f"{name}_avg")
    shortcut = L.DepthwiseConv2D(
        3,
        strides=2,
        padding=padding,
        use_bias=False,
        depthwise_initializer=keras.initializers.Constant(1.0 / 9.0),
        trainable=False,
        name=f"{name}_avg_dwconv",
    )(shortcut)
    return L.Concatenate(name=f"{name}_concat")([shortcut, y])


def shufflenet_v2_unit(x, filters, *, strides, cfg, name):
    """ShuffleNet V2 unit (torchvision's InvertedResidual)."""
    branch = filters // 2
    if strides == 1:
        left, right = ChannelSplit(2, name=f"{name}_split")(x)
    else:
        left = dw_bn_act(x, 3, strides, cfg=cfg, name=f"{name}_left", act=None)
        left = conv_bn_act(left, branch, 1, cfg=cfg, name=f"{name}_left_pw", act="relu")
        right = x
    right = conv_bn_act(right, branch, 1, cfg=cfg, name=f"{name}_right_reduce", act="relu")
    right = dw_bn_act(right, 3, strides, cfg=cfg, name=f"{name}_right", act=None)
    right = conv_bn_act(right, branch, 1, cfg=cfg, name=f"{name}_right_pw", act="relu")
    x = L.Concatenate(name=f"{name}_concat")([left, right])
    return ChannelShuffle(2, name=f"{name}_shuffle")(x)
