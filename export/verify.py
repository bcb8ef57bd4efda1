"""Checks run on the converted bytes before anything is written.

* parity: Keras (the graph that was converted) against the TFLite model on
  the same inputs: max abs error, relative error (max abs diff / max |keras|)
  and top-1 agreement, against per-mode thresholds;
* op report: every op with its dtypes; float compute ops in an integer model fail;
* delegation: XNNPACK partitions (Interpreter) and full acceleration
  (CompiledModel); anything but exactly one partition fails;
* sparsity: zero fraction of conv/FC weights and sparse-encoded tensors;
* accuracy: top-1/top-5 of Keras and TFLite on a labelled image folder.
"""
from dataclasses import asdict, dataclass, field

import numpy as np

from .report import float_compute_ops, op_counts, sparsity
from .runner import Runner

# Parity limits per mode: rel_error = max |tflite - keras| / max |keras|,
# rel_l2 = ||tflite - keras|| / ||keras|| (upper limits), top1_agreement
# (lower limit).
# TRAINED applies to models with trained (or QAT) weights. The max error is
# an extreme value (worst logit of the worst sample), so lossy gates are
# coarse: they catch broken conversions (wrong scale, saturated or zero
# outputs); the top-1 gate and accuracy on --eval-data measure the rest.
TRAINED = {
    "fp32": {"rel_error": 1e-4, "top1_agreement": 1.0},
    "fp16": {"rel_error": 2e-2, "top1_agreement": 0.9},
    "dynamic": {"rel_error": 0.2, "top1_agreement": 0.8},
    "int8": {"rel_error": 0.2, "top1_agreement": 0.8},
    "int16x8": {"rel_error": 0.1, "top1_agreement": 0.9},
}
# PERTURBATION applies to random-weight models: a deep random net amplifies
# quantization noise (random MobileNetV2 int8 at 224 px: relative L2 0.21,
# toolchain notes section 4; 0.35-0.8 for zoo models at 32-64 px) and its
# argmax is noise. So a lossy mode is only checked to perturb the output
# rather than replace it: rel_l2 < 1 means closer to Keras than an all-zero
# output (exactly 1) or an unrelated one of the same scale (about 1.4).
# fp32 stays exact.
PERTURBATION = {
    "fp32": {"rel_error": 1e-4},
    "fp16": {"rel_l2": 0.05},
    "dynamic": {"rel_l2": 1.0},
    "int8": {"rel_l2": 1.0},
    "int16x8": {"rel_l2": 0.5},
}
INTEGER_MODES = ("int8", "int16x8")


@dataclass
class Verification:
    mode: str
    parity: dict = None
    op_counts: dict = None
    float_ops: list = field(default_factory=list)
    delegation: dict = None
    sparsity: dict = None
    accuracy: dict = None
    failures: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.failures

    def as_dict(self):
        return asdict(self)


def verify(model, tflite, *, mode, samples, perturbation=False, allow_float_ops=False,
           allow_partial_delegation=False, eval_batches=None):
    """Verify `tflite` (bytes) against `model` (the Keras graph that was converted).

    `samples`: float32 (N, H, W, C) normalized inputs for parity.
    `perturbation`: use the random-weight thresholds (PERTURBATION).
    `eval_batches`: iterable of (images, labels) for the accuracy check.
    """
    result = Verification(mode)
    runner = Runner(tflite, backend="xnnpack")
    batch = runner.input_details[0]["shape"][0]
    result.parity = parity(model, runner, samples, batch)
    limits = (PERTURBATION if perturbation else TRAINED)[mode]
    result.parity.update(limits=limits, table="perturbation" if perturbation else "trained")
    for metric, limit in limits.items():
        value = result.parity[metric]
        if metric == "top1_agreement" and value < limit:
            result.failures.append(
                f"parity: top-1 agrees with Keras on {value:.0%} of samples; the {mode} limit is {limit:.0%}"
            )
        elif metric != "top1_agreement" and not value <= limit:  # `not <=` also catches NaN
            result.failures.append(
                f"parity: {mode} output differs from Keras by {metric} {value:.3g} "
                f"(max abs {result.parity['max_abs_error']:.3g}); the {mode} limit is {limit:g}"
            )

    ops = runner.ops()
    result.op_counts = op_counts(ops)
    if mode in INTEGER_MODES:
        result.float_ops = [f"{op['name']}#{op['index']}" for op in float_compute_ops(ops)]
        if result.float_ops and not allow_float_ops:
            result.failures.append(
                f"op report: {len(result.float_ops)} float compute op(s) in the {mode} model "
                f"({', '.join(result.float_ops[:5])}{', ...' if len(result.float_ops) > 5 else ''}); "
                "pass --allow-float-ops to accept them"
            )

    result.delegation = delegation(runner, tflite)
    partitions, full = result.delegation["partitions"], result.delegation["fully_accelerated"]
    if partitions != 1 and not allow_partial_delegation:
        what = "no XNNPACK partition: nothing is accelerated" if partitions == 0 else (
            f"{partitions} XNNPACK partitions: ops between them fall back to built-in kernels")
        result.failures.append(f"delegation: {what}; pass --allow-partial-delegation to accept it")
    elif partitions == 1 and not full:
        # One island, but some op at its edge stays outside (e.g. the
        # uint8<->int8 QUANTIZE of --io uint8): slower, not fragmented.
        result.notes.append("one XNNPACK partition, but CompiledModel reports ops outside it (not fully accelerated)")

    result.sparsity = sparsity(tflite)
    if eval_batches is not None:
        result.accuracy = accuracy(model, runner, eval_batches, batch)
    return result


def _usable(x, batch):
    """Drop the tail that does not fill the fixed TFLite batch."""
    return x[: len(x) - len(x) % batch]


def parity(model, runner, samples, batch):
    x = _usable(np.asarray(samples, np.float32), batch)
    if not len(x):
        raise ValueError(f"parity needs at least {batch} sample(s) (the model's fixed batch)")
    want = np.asarray(model(x, training=False), np.float32)
    got = runner.run_all(x)
    diff = np.abs(want - got)
    scale = float(np.max(np.abs(want)))
    max_abs = float(diff.max())
    norm = float(np.linalg.norm(want))
    rel, rel_l2 = (max_abs / scale, float(np.linalg.norm(want - got)) / norm) if scale > 0 else (
        # an all-zero Keras output: only an all-zero TFLite output matches it
        (0.0, 0.0) if max_abs == 0 else (float("inf"), float("inf")))
    flat_want, flat_got = want.reshape(len(x), -1), got.reshape(len(x), -1)
    return {
        "samples": int(len(x)),
        "max_abs_error": max_abs,
        "rel_error": rel,
        "rel_l2": rel_l2,
        "keras_max_abs": scale,
        "top1_agreement": float(np.mean(flat_want.argmax(1) == flat_got.argmax(1))),
    }


def delegation(runner, tflite):
    compiled = Runner(tflite, backend="compiled")
    fully_accelerated = compiled.fully_accelerated
    compiled.close()
    return {
        "partitions": runner.partitions,
        "fully_accelerated": fully_accelerated,
        "runtime": f"{runner.runtime} {runner.runtime_version}",
    }


def accuracy(model, runner, batches, batch):
    hits = {"keras_top1": 0, "keras_top5": 0, "tflite_top1": 0, "tflite_top5": 0}
    count = 0
    for images, labels in batches:
        images, labels = _usable(images, batch), _usable(labels, batch)
        if not len(images):
            continue
        for prefix, logits in (
            ("keras", np.asarray(model(images, training=False))),
            ("tflite", runner.run_all(images)),
        ):
            logits = logits.reshape(len(images), -1)
            k = min(5, logits.shape[1])
            top = np.argsort(-logits, axis=1)[:, :k]
            hits[f"{prefix}_top1"] += int(np.sum(top[:, 0] == labels))
            hits[f"{prefix}_top5"] += int(np.sum(np.any(top == labels[:, None], axis=1)))
        count += len(images)
    return {"images": count, **{k: (v / count if count else 0.0) for k, v in hits.items()}}
