"""Magnitude pruning (TF-MOT): schedules, m-by-n sparsity, the XNNPACK policy, strip, reports, PQAT.

Facts this module is built around (toolchain notes, section 3):

* masks are applied only while training with `UpdatePruningStep`, and only
  at steps where `step % frequency == 0`; `schedule_for` fits the frequency
  and end step into the run so the target is reached before training ends;
* DepthwiseConv2D has no prunable weight, so only Conv2D (grouped too),
  Dense and SeparableConv2D (pointwise kernel) are pruned;
* 2:4 sparsity on a conv with 3 input channels silently gives an invalid
  pattern, so m-by-n skips layers whose input channels are not a multiple of n;
* plain QAT after pruning refills the zeros: use `pqat_model` (TF-MOT's
  prune-preserving quantize scheme).
"""
from dataclasses import asdict, dataclass

import numpy as np

from mobilecnn.compat import keras
from mobilecnn.quantization import custom_objects

from .qat import quantize_model
from .wrapping import WEIGHT_LAYERS, effective_kernel, kernel_name, wrap_layers

SCHEDULES = ("constant", "polynomial")
POLICIES = (None, "xnnpack")


class SparsityError(ValueError):
    """Pruned layers below the target; the message lists them."""


def _sparsity():
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras


@dataclass(frozen=True)
class PruneConfig:
    """target: fraction of zeros (ignored with m_by_n, which fixes it at m/n).
    begin/end: fractions of the training steps where the schedule starts/reaches the target.
    min_weights: layers with fewer kernel weights are left dense (the stem, tiny heads).
    """

    target: float = 0.75
    schedule: str = "polynomial"
    begin: float = 0.0
    end: float = 0.6
    frequency: int = 100
    m_by_n: tuple = None
    policy: str = None
    min_weights: int = 1024
    skip: tuple = ()

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if not 0 < self.target < 1:
            raise ValueError(f"target sparsity must be between 0 and 1, got {self.target}")
        if not 0 <= self.begin < self.end <= 1:
            raise ValueError(f"need 0 <= begin < end <= 1, got begin={self.begin}, end={self.end}")
        if self.m_by_n is not None:
            m, n = self.m_by_n
            if not 0 < m < n:
                raise ValueError(f"m_by_n must be (m, n) with 0 < m < n, got {self.m_by_n}")
            if self.policy is not None:
                raise ValueError("m_by_n and the xnnpack policy cannot be combined")

    @property
    def effective_target(self):
        return self.m_by_n[0] / self.m_by_n[1] if self.m_by_n else self.target

    def to_dict(self):
        return asdict(self)


def parse_m_by_n(text):
    """'2:4' -> (2, 4)."""
    try:
        m, n = (int(part) for part in text.split(":"))
    except ValueError as exc:
        raise ValueError(f"m-by-n must look like 2:4, got {text!r}") from exc
    return m, n


def schedule_for(config, total_steps):
    """A TF-MOT pruning schedule that reaches the target within `total_steps` training steps."""
    if total_steps < 2:
        raise ValueError(f"pruning needs at least 2 training steps, got {total_steps}")
    begin = int(config.begin * total_steps)
    end = max(begin + 1, int(config.end * total_steps) - 1)
    frequency = max(1, min(config.frequency, (end - begin) // 4 or 1))
    # The last mask update must land on a pruning turn at or before the final step.
    end = begin + ((end - begin) // frequency) * frequency
    sparsity = _sparsity()
    if config.schedule == "constant":
        return sparsity.ConstantSparsity(config.effective_target, begin_step=begin, frequency=frequency)
    return sparsity.PolynomialDecay(initial_sparsity=0.0, final_sparsity=config.effective_target,
                                    begin_step=begin, end_step=end, frequency=frequency)


def prunable_layers(model, config):
    """Names of the layers `config` prunes, in model order."""
    names = []
    for layer in model.layers:
        if not isinstance(layer, WEIGHT_LAYERS) or layer.name in config.skip:
            continue
        kernel = getattr(layer, kernel_name(layer))
        if int(np.prod(kernel.shape)) < config.min_weights:
            continue
        if config.m_by_n and kernel.shape[-2] % config.m_by_n[1]:
            continue  # the m-by-n blocks run along input channels
        names.append(layer.name)
    return names


def prune_model(model, config, total_steps):
    """A pruning-wrapped copy of `model`; train it with `callbacks()` for `total_steps` steps."""
    sparsity = _sparsity()
    schedule = schedule_for(config, total_steps)
    if config.policy == "xnnpack":
        policy = sparsity.PruneForLatencyOnXNNPack()
        try:
            with keras.utils.custom_object_scope(custom_objects()):
                return sparsity.prune_low_magnitude(model, pruning_schedule=schedule, pruning_policy=policy)
        except ValueError as exc:
            raise ValueError(f"model {model.name} does not fit the XNNPACK sparse-inference policy ({exc}); the "
                             "policy needs a symmetric-padding model (ZeroPadding2D + 'valid' stride-2 convs) "
                             "ending in GlobalAveragePooling2D(keepdims=True)") from exc
    names = prunable_layers(model, config)
    if not names:
        raise ValueError(f"model {model.name} has no layer to prune (min_weights={config.min_weights}, "
                         f"m_by_n={config.m_by_n})")
    extra = {"sparsity_m_by_n": tuple(config.m_by_n)} if config.m_by_n else {}
    return wrap_layers(model, names,
                       lambda layer: sparsity.prune_low_magnitude(layer, pruning_schedule=schedule, **extra))


def callbacks():
    """Callbacks a pruning fit needs (without UpdatePruningStep no mask is ever applied)."""
    return [_sparsity().UpdatePruningStep()]


def pruned_layer_names(model):
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude as wrapper

    return [layer.layer.name for layer in model.layers if isinstance(layer, wrapper)]


def strip(model):
    """The plain model with the masks baked in (what conversion and PQAT take)."""
    with keras.utils.custom_object_scope(custom_objects()):
        return _sparsity().strip_pruning(model)


def _valid_m_by_n(kernel, m, n):
    """Every block of n consecutive input channels has at least m zeros."""
    cin = kernel.shape[-2]
    blocks = np.moveaxis(kernel, -2, -1).reshape(-1, cin // n, n)
    return bool(np.all((blocks == 0).sum(axis=-1) >= m))


def sparsity_report(model, names, m_by_n=None):
    """{layer: {"zeros": fraction, "weights": count[, "m_by_n_valid": bool]}} plus "overall"."""
    report, zeros, total = {}, 0, 0
    for name in names:
        kernel = effective_kernel(model, name)
        count, nz = kernel.size, int((kernel == 0).sum())
        entry = {"zeros": nz / count, "weights": count}
        if m_by_n:
            entry["m_by_n_valid"] = _valid_m_by_n(kernel, *m_by_n)
        report[name] = entry
        zeros, total = zeros + nz, total + count
    report["overall"] = {"zeros": zeros / total if total else 0.0, "weights": total}
    return report


def check_sparsity(report, target, tolerance=0.0):
    """Raise SparsityError naming every layer below target - tolerance (or with a broken m-by-n pattern)."""
    low = [f"{name} {entry['zeros']:.1%}" for name, entry in report.items()
           if name != "overall" and entry["zeros"] < target - tolerance]
    broken = [name for name, entry in report.items() if entry.get("m_by_n_valid") is False]
    if low or broken:
        parts = []
        if low:
            parts.append(f"below the {target:.1%} target (tolerance {tolerance:.1%}): {', '.join(low)}")
        if broken:
            parts.append(f"m-by-n pattern violated in: {', '.join(broken)}")
        raise SparsityError("sparsity check failed: " + "; ".join(parts))
    return report


def pqat_model(stripped, calibration=None):
    """Pruning-preserving QAT copy of a stripped pruned model: fine-tuning keeps its zeros.

    `calibration`: images to start the fake-quant ranges from (see `quantize_model`).
    """
    import tensorflow_model_optimization as tfmot

    scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
    return quantize_model(stripped, scheme=scheme, calibration=calibration)
