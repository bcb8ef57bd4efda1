"""MnasNet-B1 0.5/0.75/1.0/1.3 (Tan et al. 2019), as torchvision.models.mnasnet*.

torchvision's stem depthwise-separable conv (no activation after its
pointwise conv) is an inverted residual with expansion 1, so the whole
network is one stage table.
"""
from .. import base
from ..blocks import BuildConfig
from .mbconv import MBConvSpec, Stage, build_features, make_divisible

# (channels, repeats, kernel, stride, expansion); stem is 32 channels.
TABLE = ((16, 1, 3, 1, 1), (24, 3, 3, 2, 3), (40, 3, 5, 2, 3), (80, 3, 5, 2, 6), (96, 2, 3, 1, 6),
         (192, 4, 5, 2, 6), (320, 1, 3, 1, 6))
ALPHAS = (0.5, 0.75, 1.0, 1.3)


def spec(alpha=1.0):
    stages = tuple(
        Stage(out=make_divisible(c * alpha), repeats=n, kernel=k, stride=s, expand=e) for c, n, k, s, e in TABLE
    )
    return MBConvSpec(stem=make_divisible(32 * alpha), stages=stages, head=1280, act="relu")


def MnasNet(input_shape=None, alpha=1.0, include_top=True, weights=None, input_tensor=None, pooling=None,
            classes=1000, classifier_activation="softmax", name=None, padding="symmetric", bn_epsilon=1e-5):
    base.check_range("alpha", alpha, 0.1, 2.0)
    cfg = BuildConfig(padding=padding, bn_epsilon=bn_epsilon, bn_momentum=0.9997)
    return base.build(
        lambda x: build_features(x, spec(alpha), cfg),
        default_size=224,
        model_name=f"mnasnet_{alpha}",
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
