"""MobileNetV3 Small/Large (Howard et al. 2019), as keras.applications.MobileNetV3*.

Hard-swish and hard-sigmoid are built from single-op layers (see blocks.py);
`minimalistic` drops SE, hard-swish and 5x5 kernels, as in Keras.
"""
from .. import base, blocks
from ..compat import keras
from .mbconv import MBConvSpec, Stage, build_features, make_divisible

# (expansion, channels, kernel, stride, se, activation); "K" marks the
# 5x5 kernel and "A" the hard-swish that `minimalistic` replaces.
SMALL = (
    (1, 16, 3, 2, True, "relu"),
    (72 / 16, 24, 3, 2, False, "relu"),
    (88 / 24, 24, 3, 1, False, "relu"),
    (4, 40, "K", 2, True, "A"),
    (6, 40, "K", 1, True, "A"),
    (6, 40, "K", 1, True, "A"),
    (3, 48, "K", 1, True, "A"),
    (3, 48, "K", 1, True, "A"),
    (6, 96, "K", 2, True, "A"),
    (6, 96, "K", 1, True, "A"),
    (6, 96, "K", 1, True, "A"),
)
LARGE = (
    (1, 16, 3, 1, False, "relu"),
    (4, 24, 3, 2, False, "relu"),
    (3, 24, 3, 1, False, "relu"),
    (3, 40, "K", 2, True, "relu"),
    (3, 40, "K", 1, True, "relu"),
    (3, 40, "K", 1, True, "relu"),
    (6, 80, 3, 2, False, "A"),
    (2.5, 80, 3, 1, False, "A"),
    (2.3, 80, 3, 1, False, "A"),
    (2.3, 80, 3, 1, False, "A"),
    (6, 112, 3, 1, True, "A"),
    (6, 112, 3, 1, True, "A"),
    (6, 160, "K", 2, True, "A"),
    (6, 160, "K", 1, True, "A"),
    (6, 160, "K", 1, True, "A"),
)
LAST_POINT = {"small": 1024, "large": 1280}


def spec(size, alpha=1.0, minimalistic=False):
    kernel, act, se = (3, "relu", 0.0) if minimalistic else (5, "hard_swish", 0.25)
    stages = tuple(
        Stage(
            out=make_divisible(c * alpha),
            kernel=kernel if k == "K" else k,
            stride=s,
            expand=t,
            se=se if use_se else 0.0,
            act=act if a == "A" else a,
        )
        for t, c, k, s, use_se, a in (SMALL if size == "small" else LARGE)
    )
    last = stages[-1].out
    return MBConvSpec(
        stem=16,
        stages=stages,
        head=make_divisible(last * 6),
        act=act,
        round_expanded=True,
        se_from_expanded=True,
        se_round=True,
        se_act="relu",
        se_gate="hard_sigmoid",
    )


def _top(size, alpha, act):
    last_point = make_divisible(LAST_POINT[size] * alpha) if alpha > 1.0 else LAST_POINT[size]

    def head(x, classes, classifier_activation):
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
        x = keras.layers.Dense(last_point, name="head_fc")(x)
        x = blocks.activation(x, act, "head_fc_act")
        x = keras.layers.Dropout(0.2, name="head_dropout")(x)
        x = keras.layers.Dense(classes, name="logits")(x)
        return base.classifier(x, classifier_activation)

    return head


def _mobilenet_v3(size, input_shape, alpha, minimalistic, include_top, weights, input_tensor, pooling, classes,
                  classifier_activation, name, padding, bn_epsilon):
    base.check_range("alpha", alpha, 0.1, 2.0)
    cfg = base.build_config(weights, padding, bn_epsilon, bn_momentum=0.999)
    model_spec = spec(size, alpha, minimalistic)
    suffix = "minimalistic" if minimalistic else alpha
    return base.build(
        lambda x: build_features(x, model_spec, cfg),
        default_size=224,
        model_name=f"mobilenet_v3_{size}_{suffix}",
        input_shape=input_shape,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        head=_top(size, alpha, model_spec.act),
    )


def MobileNetV3Small(input_shape=None, alpha=1.0, minimalistic=False, include_top=True, weights=None,
                     input_tensor=None, classes=1000, pooling=None, classifier_activation="softmax", name=None,
                     padding=None, bn_epsilon=None):
    return _mobilenet_v3("small", input_shape, alpha, minimalistic, include_top, weights, input_tensor, pooling,
                         classes, classifier_activation, name, padding, bn_epsilon)


def MobileNetV3Large(input_shape=None, alpha=1.0, minimalistic=False, include_top=True, weights=None,
                     input_tensor=None, classes=1000, pooling=None, classifier_activation="softmax", name=None,
                     padding=None, bn_epsilon=None):
    return _mobilenet_v3("large", input_shape, alpha, minimalistic, include_top, weights, input_tensor, pooling,
                         classes, classifier_activation, name, padding, bn_epsilon)
