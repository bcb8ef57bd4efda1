"""EfficientNetV2 B0-B3 and S/M/L (Tan & Le 2021), as keras.applications.EfficientNetV2*."""
from .. import base
from .compound_scaling import EFFICIENTNET_V2 as VARIANTS
from .mbconv import MBConvSpec, Stage, build_features, round_repeats

# (block, kernel, repeats, in channels, out channels, expansion, stride, se)
_B = (
    ("fused", 3, 1, 32, 16, 1, 1, 0),
    ("fused", 3, 2, 16, 32, 4, 2, 0),
    ("fused", 3, 2, 32, 48, 4, 2, 0),
    ("ir", 3, 3, 48, 96, 4, 2, 0.25),
    ("ir", 3, 5, 96, 112, 6, 1, 0.25),
    ("ir", 3, 8, 112, 192, 6, 2, 0.25),
)
TABLES = {
    "b": _B,
    "s": (
        ("fused", 3, 2, 24, 24, 1, 1, 0),
        ("fused", 3, 4, 24, 48, 4, 2, 0),
        ("fused", 3, 4, 48, 64, 4, 2, 0),
        ("ir", 3, 6, 64, 128, 4, 2, 0.25),
        ("ir", 3, 9, 128, 160, 6, 1, 0.25),
        ("ir", 3, 15, 160, 256, 6, 2, 0.25),
    ),
    "m": (
        ("fused", 3, 3, 24, 24, 1, 1, 0),
        ("fused", 3, 5, 24, 48, 4, 2, 0),
        ("fused", 3, 5, 48, 80, 4, 2, 0),
        ("ir", 3, 7, 80, 160, 4, 2, 0.25),
        ("ir", 3, 14, 160, 176, 6, 1, 0.25),
        ("ir", 3, 18, 176, 304, 6, 2, 0.25),
        ("ir", 3, 5, 304, 512, 6, 1, 0.25),
    ),
    "l": (
        ("fused", 3, 4, 32, 32, 1, 1, 0),
        ("fused", 3, 7, 32, 64, 4, 2, 0),
        ("fused", 3, 7, 64, 96, 4, 2, 0),
        ("ir", 3, 10, 96, 192, 4, 2, 0.25),
        ("ir", 3, 19, 192, 224, 6, 1, 0.25),
        ("ir", 3, 25, 224, 384, 6, 2, 0.25),
        ("ir", 3, 7, 384, 640, 6, 1, 0.25),
    ),
}


def round_filters(filters, width, divisor=8):
    """EfficientNetV2 rounding: nearest multiple of 8, without V1's 10 % guard."""
    filters *= width
    return int(max(divisor, int(filters + divisor / 2) // divisor * divisor))


def spec(variant):
    width, depth, _, _ = VARIANTS[variant]
    table = TABLES[variant[0] if variant.startswith("b") else variant]
    stages = tuple(
        Stage(out=round_filters(c_out, width), repeats=round_repeats(n, depth), kernel=k, stride=s, expand=e,
              se=se, block=block)
        for block, k, n, _, c_out, e, s, se in table
    )
    return MBConvSpec(
        stem=round_filters(table[0][3], width),
        stages=stages,
        head=round_filters(1280, width),
        act="swish",
        drop_connect=0.2,
    )


def _constructor(variant):
    def constructor(include_top=True, weights=None, input_tensor=None, input_shape=None, pooling=None,
                    classes=1000, classifier_activation="softmax", name=None, padding=None,
                    bn_epsilon=None):
        _, _, size, dropout = VARIANTS[variant]
        cfg = base.build_config(weights, padding, bn_epsilon, bn_momentum=0.9)
        return base.build(
            lambda x: build_features(x, spec(variant), cfg),
            default_size=size,
            model_name=f"efficientnet_v2_{variant}",
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

    constructor.__name__ = "EfficientNetV2" + variant.upper()
    constructor.__doc__ = f"EfficientNetV2-{variant.upper()} with keras.applications arguments."
    return constructor


EfficientNetV2B0 = _constructor("b0")
EfficientNetV2B1 = _constructor("b1")
EfficientNetV2B2 = _constructor("b2")
EfficientNetV2B3 = _constructor("b3")
EfficientNetV2S = _constructor("s")
EfficientNetV2M = _constructor("m")
EfficientNetV2L = _constructor("l")
