"""One builder for every inverted-residual family (MobileNetV2/V3,
EfficientNet, EfficientNet-Lite, EfficientNetV2, MnasNet).

A family describes itself as a `MBConvSpec`: stem width, a table of stages
(widths already rounded by the family's own rule, repeats already scaled),
head width and a few switches for where the families differ (how expanded
and SE widths are rounded, SE activations, stochastic depth).
"""
from dataclasses import dataclass
import math

from .. import blocks


def make_divisible(value, divisor=8, min_value=None):
    """Round to the nearest multiple of `divisor`, never more than 10 % down
    (the rule of keras.applications' `_make_divisible` / torchvision / MnasNet)."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats, depth_multiplier):
    return int(math.ceil(depth_multiplier * repeats))


@dataclass(frozen=True)
class Stage:
    """`repeats` blocks of one kind; the first one carries the stride."""

    out: int
    repeats: int = 1
    kernel: int = 3
    stride: int = 1
    expand: float = 1.0
    se: float = 0.0
    act: str = None  # None: the family's activation
    block: str = "ir"  # "ir" (MBConv) or "fused" (Fused-MBConv)


@dataclass(frozen=True)
class MBConvSpec:
    stem: int
    stages: tuple
    head: int  # width of the final 1x1 conv; 0 for none
    act: str
    stem_act: str = None  # None: `act`
    head_act: str = None  # None: `act`
    round_expanded: bool = False  # MobileNetV3 rounds expanded widths to a multiple of 8
    se_from_expanded: bool = False  # SE width from the expanded (V3) or the block input width (EfficientNet)
    se_round: bool = False  # make_divisible (V3) or int() (EfficientNet)
    se_act: str = None  # None: the block's activation
    se_gate: str = "sigmoid"
    drop_connect: float = 0.0  # stochastic depth rate at the last block, linear in block index


def expanded_width(in_channels, ratio, spec):
    if spec.round_expanded:
        return make_divisible(in_channels * ratio)
    return int(in_channels * ratio)


def se_width(in_channels, expanded, ratio, spec):
    if not ratio:
        return 0
    base = (expanded if spec.se_from_expanded else in_channels) * ratio
    return make_divisible(base) if spec.se_round else max(1, int(base))


def build_features(x, spec, cfg):
    """Stem, stages and head conv of an MBConv-family network."""
    x = blocks.conv_bn_act(x, spec.stem, 3, 2, cfg=cfg, name="stem", act=spec.stem_act or spec.act)
    total = sum(stage.repeats for stage in spec.stages)
    index = 0
    for s, stage in enumerate(spec.stages, start=1):
        act = stage.act or spec.act
        block = blocks.fused_mbconv if stage.block == "fused" else blocks.inverted_residual
        for b in range(1, stage.repeats + 1):
            in_channels = x.shape[-1]
            expanded = expanded_width(in_channels, stage.expand, spec)
            kwargs = dict(
                expanded=expanded,
                kernel_size=stage.kernel,
                strides=stage.stride if b == 1 else 1,
                se_reduced=se_width(in_channels, expanded, stage.se, spec),
                act=act,
                drop_rate=spec.drop_connect * index / total,
                cfg=cfg,
                name=f"stage{s}_block{b}",
            )
            if stage.block != "fused":
                kwargs.update(se_act=spec.se_act or act, se_gate=spec.se_gate)
            x = block(x, stage.out, **kwargs)
            index += 1
    if spec.head:
        x = blocks.conv_bn_act(x, spec.head, 1, cfg=cfg, name="head", act=spec.head_act or spec.act)
    return x
