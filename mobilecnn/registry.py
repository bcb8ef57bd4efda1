"""The model registry: names, model cards, `create_model` and `list_models`.

Each card records the reference parameter count the zoo must reproduce and
where it comes from. "total" counts are Keras counts (BatchNorm moving
statistics included) of the keras.applications model, minus the weights of
its preprocessing layers; "trainable" counts equal PyTorch's
`sum(p.numel() for p in model.parameters())`, which excludes BN statistics.
"""
from dataclasses import dataclass, field
import difflib
import fnmatch

from . import reference_counts
from .architectures import compound_scaling


@dataclass(frozen=True)
class ModelCard:
    name: str
    family: str
    constructor: str  # attribute of mobilecnn.applications
    kwargs: dict = field(default_factory=dict)
    default_size: int = 224
    normalization: str = "torch"  # key of mobilecnn.base.NORMALIZATIONS
    padding: str = "symmetric"
    reference_params: int = 0
    reference_kind: str = "total"  # "total" (Keras count) or "trainable" (PyTorch count)
    reference_source: str = ""
    reference_precision: int = 0  # 0: exact; else the published figure is rounded to this
    keras_application: tuple = None  # (tf_keras.applications constructor, kwargs) when Keras has the model

    @property
    def mean_std(self):
        from .base import NORMALIZATIONS

        return NORMALIZATIONS[self.normalization]


def _cards():
    cards = []

    def add(name, family, constructor, kwargs, **extra):
        count, kind, source, precision = reference_counts.REFERENCE[name]
        cards.append(ModelCard(name, family, constructor, kwargs, reference_params=count, reference_kind=kind,
                               reference_source=source, reference_precision=precision, **extra))

    for alpha in (0.25, 0.5, 0.75, 1.0):
        add(f"mobilenet_v1_{alpha}", "mobilenet_v1", "MobileNet", {"alpha": alpha},
            keras_application=("MobileNet", {"alpha": alpha}))
    for alpha in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
        add(f"mobilenet_v2_{alpha}", "mobilenet_v2", "MobileNetV2", {"alpha": alpha},
            keras_application=("MobileNetV2", {"alpha": alpha}))
    for size in ("small", "large"):
        ctor = f"MobileNetV3{size.capitalize()}"
        for alpha in (0.75, 1.0):
            add(f"mobilenet_v3_{size}_{alpha}", "mobilenet_v3", ctor, {"alpha": alpha},
                keras_application=(ctor, {"alpha": alpha, "include_preprocessing": False}))
        add(f"mobilenet_v3_{size}_minimalistic", "mobilenet_v3", ctor, {"minimalistic": True},
            keras_application=(ctor, {"minimalistic": True, "include_preprocessing": False}))
    for groups in (1, 2, 3, 4, 8):
        add(f"shufflenet_v1_g{groups}_1.0", "shufflenet_v1", "ShuffleNetV1", {"groups": groups, "scale": 1.0})
    for groups in (3, 8):
        for scale in (0.5, 1.5, 2.0):
            add(f"shufflenet_v1_g{groups}_{scale}", "shufflenet_v1", "ShuffleNetV1",
                {"groups": groups, "scale": scale})
    for scale in (0.5, 1.0, 1.5, 2.0):
        add(f"shufflenet_v2_{scale}", "shufflenet_v2", "ShuffleNetV2", {"scale": scale})
    for version in ("1.0", "1.1"):
        add(f"squeezenet_{version}", "squeezenet", "SqueezeNet", {"version": version})
    for variant, (_, _, size, _) in compound_scaling.EFFICIENTNET.items():
        ctor = "EfficientNet" + variant.capitalize()
        if variant.startswith("lite"):
            add(f"efficientnet_{variant}", "efficientnet_lite", ctor, {}, default_size=size, normalization="lite",
                padding="same")
        else:
            add(f"efficientnet_{variant}", "efficientnet", ctor, {}, default_size=size,
                keras_application=("EfficientNet" + variant.upper(), {}))
    for variant, (_, _, size, _) in compound_scaling.EFFICIENTNET_V2.items():
        ctor = "EfficientNetV2" + variant.upper()
        add(f"efficientnet_v2_{variant}", "efficientnet_v2", ctor, {}, default_size=size,
            normalization="torch" if variant.startswith("b") else "tf",
            keras_application=(ctor, {"include_preprocessing": False}))
    for alpha in (0.5, 0.75, 1.0, 1.3):
        add(f"mnasnet_{alpha}", "mnasnet", "MnasNet", {"alpha": alpha})
    for variant in ("a1", "small"):
        add(f"mnasnet_{variant}", "mnasnet", "MnasNet", {"variant": variant})
    return {card.name: card for card in cards}


_REGISTRY = None


def registry():
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _cards()
    return _REGISTRY


class UnknownModelError(KeyError):
    def __str__(self):
        return self.args[0]


def did_you_mean(name):
    """The tail of an unknown-name error: the closest registered names, or where to look."""
    close = difflib.get_close_matches(str(name), registry(), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else "; run `mobilecnn list` for the zoo"


def get_card(name):
    cards = registry()
    if name not in cards:
        raise UnknownModelError(f"unknown model {name!r}{did_you_mean(name)}")
    return cards[name]


def list_models(pattern=None):
    """Registered names, sorted; `pattern` is a shell-style wildcard (e.g. "mobilenet_v3_*")."""
    names = sorted(registry())
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern if any(c in pattern for c in "*?[") else f"*{pattern}*")]
    return names


def create_model(name, **kwargs):
    """Build a registered model; `kwargs` are the constructor's (input_shape, classes, weights, ...)."""
    from . import applications

    card = get_card(name)
    constructor = getattr(applications, card.constructor)
    fixed = set(card.kwargs) & set(kwargs)
    if fixed:
        raise TypeError(f"{name} fixes {sorted(fixed)}; pick another registry name or call {card.constructor}()")
    kwargs.setdefault("name", name)
    return constructor(**card.kwargs, **kwargs)
