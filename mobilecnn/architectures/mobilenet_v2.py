"""MobileNetV2 (Sandler et al. 2018), as keras.applications.MobileNetV2."""
from .. import base
from .mbconv import MBConvSpec, Stage, build_features, make_divisible

# (expansion, channels, repeats, stride)
TABLE = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


def spec(alpha=1.0):
    stages = tuple(
        Stage(out=make_divisible(int(c * alpha)), repeats=n, stride=s, expand=t) for t, c, n, s in TABLE
    )
    head = make_divisible(1280 * alpha) if alpha > 1.0 else 1280
    return MBConvSpec(stem=make_divisible(32 * alpha), stages=stages, head=head, act="relu6")


def MobileNetV2(
    input_shape=None,
    alpha=1.0,
    include_top=True,
    weights=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    name=None,
    padding=None,
    bn_epsilon=None,
):
    base.check_range("alpha", alpha, 0.1, 2.0)
    cfg = base.build_config(weights, padding, bn_epsilon, bn_momentum=0.999)
    return base.build(
        lambda x: build_features(x, spec(alpha), cfg),
        default_size=224,
        model_name=f"mobilenet_v2_{alpha}",
        input_shape=input_shape,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )
