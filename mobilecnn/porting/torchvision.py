"""torchvision.models state dicts (module names as in torchvision 0.13 and later).

Every torchvision model pads symmetrically ("symmetric"). BatchNorm uses
PyTorch's default epsilon 1e-5, except MobileNetV3 (1e-3).
"""
from .core import Recipe, assign_mbconv, conv_bn, keras_blocks

SYMMETRIC = {"padding": "symmetric"}
EPS_DEFAULT = {"padding": "symmetric", "bn_epsilon": 1e-5}
EPS_V3 = {"padding": "symmetric", "bn_epsilon": 1e-3}


def _sequential_parts(prefix, parts):
    """MobileNetV3 / EfficientNet blocks: `block.i` is the i-th part (Conv2dNormActivation or SE)."""
    pairs = []
    for i, part in enumerate(parts):
        module = f"{prefix}.block.{i}"
        pairs.append((f"{module}.fc1", f"{module}.fc2") if part == "se" else (f"{module}.0", f"{module}.1"))
    return pairs


def _v2_parts(prefix, parts):
    """MobileNetV2 InvertedResidual.conv: [expand], dw (Conv2dNormActivation), then a bare Conv2d and BatchNorm2d."""
    last = len(parts) - 1
    pairs = [(f"{prefix}.conv.{i}.0", f"{prefix}.conv.{i}.1") for i in range(last)]
    pairs.append((f"{prefix}.conv.{last}", f"{prefix}.conv.{last + 1}"))
    return pairs


def _mnasnet_parts(prefix, parts):
    """MnasNet _InvertedResidual.layers: conv, bn, relu, dw, bn, relu, conv, bn."""
    return [(f"{prefix}.layers.{i}", f"{prefix}.layers.{i + 1}") for i in (0, 3, 6)]


def _features_stem_head(model, head_index):
    return {**conv_bn("stem", "features.0.0", "features.0.1"),
            **conv_bn("head", f"features.{head_index}.0", f"features.{head_index}.1")}


def mobilenet_v2(model):
    count = len(keras_blocks(model)[0])
    return {
        **_features_stem_head(model, count + 1),
        **assign_mbconv(model, lambda i, s, b: f"features.{i + 1}", _v2_parts),
        "logits": "classifier.1",
    }


def mobilenet_v3(model):
    count = len(keras_blocks(model)[0])
    return {
        **_features_stem_head(model, count + 1),
        **assign_mbconv(model, lambda i, s, b: f"features.{i + 1}", _sequential_parts),
        "head_fc": "classifier.0",
        "logits": "classifier.3",
    }


def efficientnet(model):
    stages = max(s for s, _ in keras_blocks(model)[1].values())
    return {
        **_features_stem_head(model, stages + 1),
        **assign_mbconv(model, lambda i, s, b: f"features.{s}.{b - 1}", _sequential_parts),
        "logits": "classifier.1",
    }


def mnasnet(model):
    # layers.0-7: stem conv-bn-relu, then a depthwise-separable conv that the zoo
    # builds as stage1_block1 (expansion 1: dw + project); layers.8-13: stages 2-7.
    assignment = {
        **conv_bn("stem", "layers.0", "layers.1"),
        "stage1_block1_dwconv": "layers.3",
        "stage1_block1_dwbn": "layers.4",
        "stage1_block1_project_conv": "layers.6",
        "stage1_block1_project_bn": "layers.7",
        **conv_bn("head", "layers.14", "layers.15"),
        "logits": "classifier.1",
    }
    stacked = assign_mbconv(model, lambda i, s, b: f"layers.{s + 6}.{b - 1}", _mnasnet_parts)
    assignment.update({k: v for k, v in stacked.items() if not k.startswith("stage1_")})
    return assignment


def shufflenet_v2(model):
    assignment = {**conv_bn("stem", "conv1.0", "conv1.1"), **conv_bn("head", "conv5.0", "conv5.1"), "logits": "fc"}
    names = {layer.name for layer in model.layers}
    for block, (stage, number) in keras_blocks(model)[1].items():
        unit = f"stage{stage}.{number - 1}"
        if f"{block}_left_dwconv" in names:  # stride-2 unit: both branches convolve
            assignment.update({
                f"{block}_left_dwconv": f"{unit}.branch1.0",
                f"{block}_left_dwbn": f"{unit}.branch1.1",
                **conv_bn(f"{block}_left_pw", f"{unit}.branch1.2", f"{unit}.branch1.3"),
            })
        assignment.update({
            **conv_bn(f"{block}_right_reduce", f"{unit}.branch2.0", f"{unit}.branch2.1"),
            f"{block}_right_dwconv": f"{unit}.branch2.3",
            f"{block}_right_dwbn": f"{unit}.branch2.4",
            **conv_bn(f"{block}_right_pw", f"{unit}.branch2.5", f"{unit}.branch2.6"),
        })
    return assignment


# torchvision's `features` index of each Fire module, per SqueezeNet version.
FIRE_INDICES = {"1.0": (3, 4, 5, 7, 8, 9, 10, 12), "1.1": (3, 4, 6, 7, 9, 10, 11, 12)}


def squeezenet(version):
    def assign(model):
        assignment = {"stem_conv": "features.0", "logits_conv": "classifier.1"}
        for fire, index in enumerate(FIRE_INDICES[version], start=2):
            for part in ("squeeze", "expand1x1", "expand3x3"):
                assignment[f"fire{fire}_{part}_conv"] = f"features.{index}.{part}"
        return assignment

    return assign


def _recipes():
    recipes = [
        Recipe("mobilenet_v2_1.0", "classifier.1.weight", mobilenet_v2, EPS_DEFAULT),
        Recipe("mobilenet_v3_small_1.0", "classifier.3.weight", mobilenet_v3, EPS_V3),
        Recipe("mobilenet_v3_large_1.0", "classifier.3.weight", mobilenet_v3, EPS_V3),
        Recipe("mnasnet_1.0", "classifier.1.weight", mnasnet, EPS_DEFAULT),
    ]
    recipes += [Recipe(f"shufflenet_v2_{scale}", "fc.weight", shufflenet_v2, EPS_DEFAULT)
                for scale in (0.5, 1.0, 1.5, 2.0)]
    recipes += [Recipe(f"squeezenet_{version}", "classifier.1.weight", squeezenet(version), SYMMETRIC)
                for version in FIRE_INDICES]
    recipes += [Recipe(f"efficientnet_b{i}", "classifier.1.weight", efficientnet, EPS_DEFAULT) for i in range(8)]
    return {recipe.model: recipe for recipe in recipes}


RECIPES = _recipes()
# torchvision's own constructor names.
ALIASES = {
    "mobilenet_v2": "mobilenet_v2_1.0",
    "mobilenet_v3_small": "mobilenet_v3_small_1.0",
    "mobilenet_v3_large": "mobilenet_v3_large_1.0",
    "mnasnet1_0": "mnasnet_1.0",
    "shufflenet_v2_x0_5": "shufflenet_v2_0.5",
    "shufflenet_v2_x1_0": "shufflenet_v2_1.0",
    "shufflenet_v2_x1_5": "shufflenet_v2_1.5",
    "shufflenet_v2_x2_0": "shufflenet_v2_2.0",
    "squeezenet1_0": "squeezenet_1.0",
    "squeezenet1_1": "squeezenet_1.1",
    **{f"efficientnet_b{i}": f"efficientnet_b{i}" for i in range(8)},
}
