"""timm state dicts (timm 1.0 module names): MobileNet V1 (`mobilenetv1_100`).

timm pads symmetrically by default and uses BatchNorm epsilon 1e-5.
"""
from .core import Recipe, conv_bn, keras_blocks

# Blocks per timm stage of mobilenetv1 (its arch_def: dsa_r1, r2, r2, r6, r2).
V1_REPEATS = (1, 2, 2, 6, 2)


def _v1_block_prefixes():
    return [f"blocks.{stage}.{i}" for stage, repeats in enumerate(V1_REPEATS) for i in range(repeats)]


def mobilenet_v1(model):
    assignment = {**conv_bn("stem", "conv_stem", "bn1"), "logits": "classifier"}
    blocks = keras_blocks(model)[0]
    prefixes = _v1_block_prefixes()
    for block, prefix in zip(blocks, prefixes, strict=True):
        assignment.update({
            f"{block}_dwconv": f"{prefix}.conv_dw",
            f"{block}_dwbn": f"{prefix}.bn1",
            **conv_bn(f"{block}_pw", f"{prefix}.conv_pw", f"{prefix}.bn2"),
        })
    return assignment


RECIPES = {
    "mobilenet_v1_1.0": Recipe("mobilenet_v1_1.0", "classifier.weight", mobilenet_v1,
                               {"padding": "symmetric", "bn_epsilon": 1e-5}),
}
ALIASES = {"mobilenetv1_100": "mobilenet_v1_1.0"}
