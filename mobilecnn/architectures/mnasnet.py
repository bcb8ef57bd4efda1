"""MnasNet (Tan et al. 2019): B1 at 0.5/0.75/1.0/1.3 as torchvision.models.mnasnet*,
and A1 / small as the TensorFlow reference (tensorflow/tpu mnasnet_models,
mirrored by timm's semnasnet_100 and mnasnet_small).

The stem's depthwise-separable conv (no activation after its pointwise conv)
is an inverted residual with expansion 1, so each variant is one stage table.
"""
from .. import base
from .mbconv import MBConvSpec, Stage, build_features, make_divisible

# variant: (stem channels, stages of (channels, repeats, kernel, stride, expansion, se))
TABLES = {
    "b1": (32, ((16, 1, 3, 1, 1, 0), (24, 3, 3, 2, 3, 0), (40, 3, 5, 2, 3, 0), (80, 3, 5, 2, 6, 0),
                (96, 2, 3, 1, 6, 0), (192, 4, 5, 2, 6, 0), (320, 1, 3, 1, 6, 0))),
    "a1": (32, ((16, 1, 3, 1, 1, 0), (24, 2, 3, 2, 6, 0), (40, 3, 5, 2, 3, 0.25), (80, 4, 3, 2, 6, 0),
                (112, 2, 3, 1, 6, 0.25), (160, 3, 5, 2, 6, 0.25), (320, 1, 3, 1, 6, 0))),
    "small": (8, ((8, 1, 3, 1, 1, 0), (16, 1, 3, 2, 3, 0), (16, 2, 3, 2, 6, 0), (32, 4, 5, 2, 6, 0.25),
                  (32, 3, 3, 1, 6, 0.25), (88, 3, 5, 2, 6, 0.25), (144, 1, 3, 1, 6, 0))),
}
ALPHAS = (0.5, 0.75, 1.0, 1.3)


def spec(alpha=1.0, variant="b1"):
    stem, table = TABLES[variant]
    stages = tuple(
        Stage(out=make_divisible(c * alpha), repeats=n, kernel=k, stride=s, expand=e, se=se)
        for c, n, k, s, e, se in table
    )
    # MBConvSpec defaults take the SE width from the block input (int), as the TF reference does
    return MBConvSpec(stem=make_divisible(stem * alpha), stages=stages, head=1280, act="relu")


def MnasNet(input_shape=None, alpha=1.0, include_top=True, weights=None, input_tensor=None, pooling=None,
            classes=1000, classifier_activation="softmax", name=None, padding=None, bn_epsilon=None,
            variant="b1"):
    base.check_range("alpha", alpha, 0.1, 2.0)
    if variant not in TABLES:
        raise ValueError(f"variant must be one of {sorted(TABLES)}, got {variant!r}")
    cfg = base.build_config(weights, padding, bn_epsilon, default_epsilon=1e-5, bn_momentum=0.9997)
    return base.build(
        lambda x: build_features(x, spec(alpha, variant), cfg),
        default_size=224,
        model_name=f"mnasnet_{variant}_{alpha}",
        input_shape=input_shape,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        dropout=0.2,
    )
