"""MobileNet V1 (Howard et al. 2017), as keras.applications.MobileNet."""
from .. import base, blocks

# (pointwise channels, stride) of the 13 depthwise-separable blocks.
TABLE = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
         (512, 1), (1024, 2), (1024, 1))


def features(x, alpha, depth_multiplier, cfg):
    x = blocks.conv_bn_act(x, int(32 * alpha), 3, 2, cfg=cfg, name="stem", act="relu6")
    for b, (channels, stride) in enumerate(TABLE, start=1):
        x = blocks.depthwise_separable(x, int(channels * alpha), stride, cfg=cfg, name=f"stage1_block{b}",
                                       depth_multiplier=depth_multiplier)
    return x


def MobileNet(input_shape=None, alpha=1.0, depth_multiplier=1, dropout=1e-3, include_top=True, weights=None,
              input_tensor=None, pooling=None, classes=1000, classifier_activation="softmax", name=None,
              padding=None, bn_epsilon=None):
    base.check_range("alpha", alpha, 0.25, 1.0)
    if not isinstance(depth_multiplier, int) or depth_multiplier < 1:
        raise ValueError(f"depth_multiplier must be a positive integer, got {depth_multiplier!r}")
    cfg = base.build_config(weights, padding, bn_epsilon)
    return base.build(
        lambda x: features(x, alpha, depth_multiplier, cfg),
        default_size=224,
        model_name=f"mobilenet_v1_{alpha}",
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
