"""SqueezeNet 1.0 and 1.1 (Iandola et al. 2016), as torchvision.models.squeezenet*.

The stem conv has no padding and the max pools use PyTorch's ceil_mode, as
the reference; the classifier is a 1x1 conv + ReLU before the global pool.
"""
from .. import base, blocks
from ..compat import keras

# Per version: stem (channels, kernel), then the feature sequence:
# "pool" or a Fire module (squeeze, expand1x1, expand3x3).
LAYOUTS = {
    "1.0": ((96, 7), ("pool", (16, 64, 64), (16, 64, 64), (32, 128, 128), "pool", (32, 128, 128), (48, 192, 192),
                      (48, 192, 192), (64, 256, 256), "pool", (64, 256, 256))),
    "1.1": ((64, 3), ("pool", (16, 64, 64), (16, 64, 64), "pool", (32, 128, 128), (32, 128, 128), "pool",
                      (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256))),
}


def features(x, version, cfg):
    (channels, kernel), layout = LAYOUTS[version]
    padding = "same" if cfg.padding == "same" else "valid"
    x = keras.layers.Conv2D(channels, kernel, strides=2, padding=padding, name="stem_conv")(x)
    x = blocks.activation(x, "relu", "stem_act")
    pools = fires = 0
    for item in layout:
        if item == "pool":
            pools += 1
            x = blocks.max_pool(x, 3, 2, cfg=cfg, name=f"pool{pools}", ceil_mode=True)
        else:
            fires += 1
            x = blocks.fire(x, *item, cfg=cfg, name=f"fire{fires + 1}")
    return x


def _head(x, classes, classifier_activation):
    x = keras.layers.Dropout(0.5, name="head_dropout")(x)
    x = keras.layers.Conv2D(classes, 1, name="logits_conv")(x)
    x = blocks.activation(x, "relu", "logits_act")
    x = keras.layers.GlobalAveragePooling2D(name="logits")(x)
    return base.classifier(x, classifier_activation)


def SqueezeNet(input_shape=None, version="1.1", include_top=True, weights=None, input_tensor=None, pooling=None,
               classes=1000, classifier_activation="softmax", name=None, padding=None):
    if version not in LAYOUTS:
        raise ValueError(f"version must be one of {sorted(LAYOUTS)}, got {version!r}")
    cfg = base.build_config(weights, padding)
    return base.build(
        lambda x: features(x, version, cfg),
        default_size=224,
        model_name=f"squeezenet_{version}",
        input_shape=input_shape,
        include_top=include_top,
        weights=weights,
        input_tensor=input_tensor,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        head=_head,
    )
