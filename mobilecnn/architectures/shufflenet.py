"""ShuffleNet V1 (Zhang et al. 2018; Megvii's official ShuffleNet-Series
code) and ShuffleNet V2 (Ma et al. 2018; torchvision.models.shufflenet_v2_*).

Both share the stem (3x3/2 conv-BN-ReLU, 3x3/2 max pool), three stages of
[4, 8, 4] units whose first unit has stride 2, and a global-pool head.
"""
from .. import base, blocks
from ..compat import keras

REPEATS = (4, 8, 4)
# ShuffleNet V1 stage widths at 1x for each group count (paper, Table 1).
V1_WIDTHS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536)}
V1_SCALES = (0.5, 1.0, 1.5, 2.0)
# torchvision's stage widths (stem, 3 stages, final 1x1 conv).
V2_WIDTHS = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}


def v1_widths(groups, scale):
    """Stem and stage widths. Megvii's official table for g=3 and g=8; the
    other group counts scale the paper's 1x widths, rounded to a multiple of
    4*groups so that the bottleneck (width/4) splits into groups."""
    stem = {0.5: 12 if groups != 8 else 16, 1.0: 24, 1.5: 24, 2.0: 48}.get(scale, 24)
    unit = 4 * groups
    return stem, tuple(max(unit, int(round(w * scale / unit)) * unit) for w in V1_WIDTHS[groups])


def _stem(x, channels, cfg):
    x = blocks.conv_bn_act(x, channels, 3, 2, cfg=cfg, name="stem", act="relu")
    return blocks.max_pool(x, 3, 2, cfg=cfg, name="stem_pool")


def v1_features(x, groups, scale, cfg):
    stem, widths = v1_widths(groups, scale)
    x = _stem(x, stem, cfg)
    for s, (width, repeats) in enumerate(zip(widths, REPEATS), start=2):
        for b in range(1, repeats + 1):
            x = blocks.shufflenet_v1_unit(x, width, groups=groups, strides=2 if b == 1 else 1,
                                          first_group=(s == 2 and b == 1), cfg=cfg, name=f"stage{s}_block{b}")
    return x


def v2_features(x, scale, cfg, repeats=REPEATS):
    """Stem, the stages' units (`repeats` per stage; fewer stages when shorter) and the 1x1 head conv."""
    widths = V2_WIDTHS[scale]
    x = _stem(x, widths[0], cfg)
    for s, (width, repeats) in enumerate(zip(widths[1:4], repeats), start=2):
        for b in range(1, repeats + 1):
            x = blocks.shufflenet_v2_unit(x, width, strides=2 if b == 1 else 1, cfg=cfg, name=f"stage{s}_block{b}")
    return blocks.conv_bn_act(x, widths[4], 1, cfg=cfg, name="head", act="relu")


def _v1_head(x, classes, classifier_activation):
    # Megvii's classifier has no bias.
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = keras.layers.Dense(classes, use_bias=False, name="logits")(x)
    return base.classifier(x, classifier_activation)


def ShuffleNetV1(input_shape=None, groups=3, scale=1.0, include_top=True, weights=None, input_tensor=None,
                 pooling=None, classes=1000, classifier_activation="softmax", name=None, padding=None,
                 bn_epsilon=None):
    if groups not in V1_WIDTHS:
        raise ValueError(f"groups must be one of {sorted(V1_WIDTHS)}, got {groups!r}")
    base.check_range("scale", scale, 0.25, 2.0)
    cfg = base.build_config(weights, padding, bn_epsilon, default_epsilon=1e-5, bn_momentum=0.9)
    return base.build(
        lambda x: v1_features(x, groups, scale, cfg),
        default_size=224,
        model_name=f"shufflenet_v1_g{groups}_{scale}",
        input_shape=input_shape,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        head=_v1_head,
    )


def ShuffleNetV2(input_shape=None, scale=1.0, include_top=True, weights=None, input_tensor=None, pooling=None,
                 classes=1000, classifier_activation="softmax", name=None, padding=None, bn_epsilon=None):
    if scale not in V2_WIDTHS:
        raise ValueError(f"scale must be one of {sorted(V2_WIDTHS)}, got {scale!r}")
    cfg = base.build_config(weights, padding, bn_epsilon, default_epsilon=1e-5, bn_momentum=0.9)
    return base.build(
        lambda x: v2_features(x, scale, cfg),
        default_size=224,
        model_name=f"shufflenet_v2_{scale}",
        input_shape=input_shape,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
    )
