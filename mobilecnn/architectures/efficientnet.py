"""EfficientNet B0-B7 (Tan & Le 2019), as keras.applications.EfficientNetB*,
and EfficientNet-Lite0-4 (TensorFlow's efficientnet_lite_builder: no SE,
ReLU6, stem and head not scaled, first and last stage repeats not scaled)."""
from .. import base
from .compound_scaling import EFFICIENTNET as VARIANTS
from .mbconv import MBConvSpec, Stage, build_features, make_divisible, round_repeats

# (kernel, repeats, channels, expansion, stride, se)
TABLE = (
    (3, 1, 16, 1, 1, 0.25),
    (3, 2, 24, 6, 2, 0.25),
    (5, 2, 40, 6, 2, 0.25),
    (3, 3, 80, 6, 2, 0.25),
    (5, 3, 112, 6, 1, 0.25),
    (5, 4, 192, 6, 2, 0.25),
    (3, 1, 320, 6, 1, 0.25),
)


def spec(variant):
    width, depth, _, _ = VARIANTS[variant]
    lite = variant.startswith("lite")
    last = len(TABLE) - 1
    stages = tuple(
        Stage(
            out=make_divisible(c * width),
            repeats=n if lite and i in (0, last) else round_repeats(n, depth),
            kernel=k,
            stride=s,
            expand=e,
            se=0.0 if lite else se,
        )
        for i, (k, n, c, e, s, se) in enumerate(TABLE)
    )
    return MBConvSpec(
        stem=32 if lite else make_divisible(32 * width),
        stages=stages,
        head=1280 if lite else make_divisible(1280 * width),
        act="relu6" if lite else "swish",
        drop_connect=0.2,
    )


def _efficientnet(variant, input_shape, include_top, weights, input_tensor, pooling, classes,
                  classifier_activation, name, padding, bn_epsilon, default_padding):
    _, _, size, dropout = VARIANTS[variant]
    cfg = base.build_config(weights, padding, bn_epsilon, default_padding=default_padding)
    kind = "efficientnet_" + variant
    return base.build(
        lambda x: build_features(x, spec(variant), cfg),
        default_size=size,
        model_name=kind,
        input_shape=input_shape,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        dropout=dropout,
    )


def _constructor(variant, default_padding):
    def constructor(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                    classes=1000, classifier_activation="softmax", name=None, padding=None,
                    bn_epsilon=None):
        return _efficientnet(variant, input_shape, include_top, weights, input_tensor, pooling, classes,
                             classifier_activation, name, padding, bn_epsilon, default_padding)

    constructor.__name__ = "EfficientNet" + variant.capitalize().replace("Lite", "Lite")
    constructor.__doc__ = f"EfficientNet-{variant.upper()} with keras.applications arguments."
    return constructor


EfficientNetB0 = _constructor("b0", "symmetric")
EfficientNetB1 = _constructor("b1", "symmetric")
EfficientNetB2 = _constructor("b2", "symmetric")
EfficientNetB3 = _constructor("b3", "symmetric")
EfficientNetB4 = _constructor("b4", "symmetric")
EfficientNetB5 = _constructor("b5", "symmetric")
EfficientNetB6 = _constructor("b6", "symmetric")
EfficientNetB7 = _constructor("b7", "symmetric")
# The only EfficientNet-Lite checkpoints were trained in TensorFlow with "same" padding.
EfficientNetLite0 = _constructor("lite0", "same")
EfficientNetLite1 = _constructor("lite1", "same")
EfficientNetLite2 = _constructor("lite2", "same")
EfficientNetLite3 = _constructor("lite3", "same")
EfficientNetLite4 = _constructor("lite4", "same")
