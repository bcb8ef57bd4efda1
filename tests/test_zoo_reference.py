"""Independent checks of the reference counts that have no keras.applications twin."""
import numpy as np
import pytest

from mobilecnn.architectures.shufflenet import v1_widths
from mobilecnn.registry import create_model, get_card
from zoo_helpers import trainable_count

# Megvii ShuffleNet-Series, ShuffleNetV1/network.py: stage_out_channels per (group, model_size).
MEGVII_V1 = {
    (3, 0.5): [12, 120, 240, 480], (3, 1.0): [24, 240, 480, 960], (3, 1.5): [24, 360, 720, 1440],
    (3, 2.0): [48, 480, 960, 1920], (8, 0.5): [16, 192, 384, 768], (8, 1.0): [24, 384, 768, 1536],
    (8, 1.5): [24, 576, 1152, 2304], (8, 2.0): [48, 768, 1536, 3072],
}


def megvii_v1_params(groups, stem, widths, classes=1000):
    """Trainable parameters of Megvii's ShuffleNetV1 definition, counted by hand."""
    def conv(cin, cout, k, g=1):
        return cin // g * cout * k * k

    total = conv(3, stem, 3) + 2 * stem
    inp = stem
    for stage, (width, repeats) in enumerate(zip(widths, (4, 8, 4))):
        for i in range(repeats):
            out = width - inp if i == 0 else width
            mid = width // 4
            total += conv(inp, mid, 1, 1 if stage == 0 and i == 0 else groups) + 2 * mid
            total += conv(mid, mid, 3, mid) + 2 * mid
            total += conv(mid, out, 1, groups) + 2 * out
            inp = width
    return total + inp * classes  # classifier without bias


@pytest.mark.parametrize("key", sorted(MEGVII_V1))
def test_shufflenet_v1_widths_follow_megvii(key):
    groups, scale = key
    stem, widths = v1_widths(groups, scale)
    assert [stem, *widths] == MEGVII_V1[key]


@pytest.mark.parametrize("groups,scale", [(1, 1.0), (2, 1.0), (3, 1.0), (4, 1.0), (8, 1.0), (3, 0.5), (3, 1.5),
                                          (3, 2.0), (8, 0.5), (8, 1.5), (8, 2.0)])
def test_shufflenet_v1_count_equals_hand_count(groups, scale):
    name = f"shufflenet_v1_g{groups}_{scale}"
    expected = megvii_v1_params(groups, *v1_widths(groups, scale))
    card = get_card(name)
    assert abs(expected - card.reference_params) <= card.reference_precision
    assert trainable_count(create_model(name)) == expected


def test_efficientnet_lite0_count_equals_checkpoint(shared_dir):
    path = shared_dir / "weights" / "efficientnet_lite0_imagenet.npz"
    if not path.exists():
        pytest.skip(f"{path} not found")
    with np.load(path) as ckpt:
        params = sum(ckpt[k].size for k in ckpt.files if not k.endswith(("running_mean", "running_var",
                                                                          "num_batches_tracked")))
    assert params == get_card("efficientnet_lite0").reference_params
    assert trainable_count(create_model("efficientnet_lite0")) == params
