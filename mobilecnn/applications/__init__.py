"""keras.applications-style constructors for every zoo family.

    from mobilecnn.applications import MobileNetV2
    model = MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, classes=10, weights=None)

`weights` is None or a path to a weights file (see `mobilecnn port`);
preprocessing is not part of the models: see `mobilecnn.registry.get_card(name).mean_std`.
"""
from ..architectures.efficientnet import (
    EfficientNetB0,
    EfficientNetB1,
    EfficientNetB2,
    EfficientNetB3,
    EfficientNetB4,
    EfficientNetB5,
    EfficientNetB6,
    EfficientNetB7,
    EfficientNetLite0,
    EfficientNetLite1,
    EfficientNetLite2,
    EfficientNetLite3,
    EfficientNetLite4,
)
from ..architectures.efficientnet_v2 import (
    EfficientNetV2B0,
    EfficientNetV2B1,
    EfficientNetV2B2,
    EfficientNetV2B3,
    EfficientNetV2L,
    EfficientNetV2M,
    EfficientNetV2S,
)
from ..architectures.mnasnet import MnasNet
from ..architectures.mobilenet_v1 import MobileNet
from ..architectures.mobilenet_v2 import MobileNetV2
from ..architectures.mobilenet_v3 import MobileNetV3Large, MobileNetV3Small
from ..architectures.shufflenet import ShuffleNetV1, ShuffleNetV2
from ..architectures.squeezenet import SqueezeNet

MobileNetV1 = MobileNet


def SqueezeNet1_0(**kwargs):
    return SqueezeNet(version="1.0", **kwargs)


def SqueezeNet1_1(**kwargs):
    return SqueezeNet(version="1.1", **kwargs)


__all__ = [name for name in dir() if name[0].isupper()]
