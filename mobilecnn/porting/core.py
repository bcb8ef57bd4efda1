"""Layout conversion, the exactly-once check and loading.

A source module (torchvision, timm, lukemelas) describes each model it can
port as a `Recipe`: how to build the Keras model (padding policy and
BatchNorm epsilon of the framework the checkpoint was trained in) and an
`assign(model)` function that maps every Keras layer holding weights to the
PyTorch module prefix that holds them. What a layer needs from that prefix
follows from the layer's type:

* Conv2D              <- weight (O, I/groups, kh, kw) as (kh, kw, I/groups, O) [+ bias]
* DepthwiseConv2D     <- weight (C*m, 1, kh, kw) as (kh, kw, C, m) [+ bias]
* Dense               <- weight (out, in) as (in, out) + bias
* BatchNormalization  <- weight, bias, running_mean, running_var

Every tensor of the checkpoint must be used exactly once and every Keras
weight must receive one; otherwise nothing is loaded and the error lists
each missing, unexpected or mis-shaped tensor by name.
"""
from dataclasses import dataclass, field
import re

import numpy as np

from ..compat import keras
from .errors import PortError

# Bookkeeping entries of a state dict that carry no weights.
IGNORED_SUFFIXES = (".num_batches_tracked",)
MAX_LISTED = 20

BLOCK = re.compile(r"^(stage(\d+)_block(\d+))_")

# MBConv parts in block order, with the Keras layers each one holds.
MBCONV_LAYERS = {
    "expand": ("_expand_conv", "_expand_bn"),
    "dw": ("_dwconv", "_dwbn"),
    "se": ("_se_reduce_conv", "_se_expand_conv"),
    "project": ("_project_conv", "_project_bn"),
}


@dataclass(frozen=True)
class Recipe:
    """How to port one registry model from one source layout."""

    model: str  # registry name
    classifier: str  # state-dict key whose first dimension is the number of classes
    assign: object  # callable(keras model) -> {keras layer name: torch module prefix}
    build: dict = field(default_factory=dict)  # constructor kwargs (padding, bn_epsilon)


# -- per-layer tensors --------------------------------------------------------
def _conv_kernel(shape):
    kh, kw, cin, cout = shape
    return (cout, cin, kh, kw), lambda a: a.transpose(2, 3, 1, 0)


def _depthwise_kernel(shape):
    kh, kw, channels, multiplier = shape
    return (channels * multiplier, 1, kh, kw), lambda a: a.reshape(channels, multiplier, kh, kw).transpose(2, 3, 0, 1)


def _dense_kernel(shape):
    cin, cout = shape
    return (cout, cin), lambda a: a.T


def _same(shape):
    return tuple(shape), lambda a: a


def layer_tensors(layer, prefix):
    """[(torch key, expected torch shape, to_keras)] in the order of `layer.weights`."""
    shapes = [tuple(int(d) for d in w.shape) for w in layer.weights]
    if isinstance(layer, keras.layers.BatchNormalization):
        if not (layer.scale and layer.center):
            raise PortError(f"Keras layer '{layer.name}': BatchNormalization without scale/center cannot be ported")
        suffixes = ("weight", "bias", "running_mean", "running_var")
        return [(f"{prefix}.{s}", *_same(shape)) for s, shape in zip(suffixes, shapes)]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = _depthwise_kernel
    elif isinstance(layer, keras.layers.Conv2D):
        kernel = _conv_kernel
    elif isinstance(layer, keras.layers.Dense):
        kernel = _dense_kernel
    else:
        raise PortError(f"Keras layer '{layer.name}' ({type(layer).__name__}) has weights but no PyTorch layout rule")
    tensors = [(f"{prefix}.weight", *kernel(shapes[0]))]
    if len(shapes) > 1:
        tensors.append((f"{prefix}.bias", *_same(shapes[1])))
    return tensors


# -- loading with the exactly-once check ------------------------------------
def load_state_dict(model, state, assignment, *, source="checkpoint"):
    """Set `model`'s weights from `state` (PyTorch layout) following `assignment`.

    All-or-nothing: every problem is collected first and reported together.
    """
    unknown = sorted(set(assignment) - {layer.name for layer in model.layers})
    if unknown:
        raise PortError(f"{source} mapping names layers that {model.name} does not have: {', '.join(unknown)}")
    missing, shape_errors, twice, unmapped = [], [], [], []
    used = {}
    updates = []
    for layer in model.layers:
        if not layer.weights:
            continue
        prefix = assignment.get(layer.name)
        if prefix is None:
            unmapped.append(layer.name)
            continue
        arrays = []
        for key, torch_shape, to_keras in layer_tensors(layer, prefix):
            if key in used:
                twice.append(f"{key} (by {used[key]} and {layer.name})")
                continue
            if key not in state:
                missing.append(f"{key} {torch_shape} for {layer.name}")
                continue
            used[key] = layer.name
            value = np.asarray(state[key])
            if tuple(value.shape) != torch_shape:
                shape_errors.append(f"{key} has shape {tuple(value.shape)}, {layer.name} needs {torch_shape}")
                continue
            arrays.append(np.ascontiguousarray(to_keras(value.astype(np.float32))))
        updates.append((layer, arrays))
    unexpected = [f"{key} {tuple(np.shape(state[key]))}" for key in state
                  if key not in used and not key.endswith(IGNORED_SUFFIXES)]
    problems = [
        ("missing", missing),
        ("unexpected (not used by any layer)", unexpected),
        ("mis-shaped", shape_errors),
        ("used twice", twice),
        ("Keras layers without a source tensor", unmapped),
    ]
    if any(items for _, items in problems):
        raise PortError(_report(source, model.name, problems))
    for layer, arrays in updates:
        layer.set_weights(arrays)
    return len(used)


def _report(source, model_name, problems):
    counts = ", ".join(f"{len(items)} {what.split(' ')[0]}" for what, items in problems if items)
    lines = [f"{source} does not match {model_name} ({counts}):"]
    for what, items in problems:
        if not items:
            continue
        lines.append(f"  {what}:")
        lines += [f"    {item}" for item in items[:MAX_LISTED]]
        if len(items) > MAX_LISTED:
            lines.append(f"    ... and {len(items) - MAX_LISTED} more")
    return "\n".join(lines)


# -- Keras-side structure helpers used by the source mappings ---------------
def keras_blocks(model):
    """Block prefixes "stage{s}_block{b}" of a zoo model, in (stage, block) order."""
    found = {}
    for layer in model.layers:
        match = BLOCK.match(layer.name)
        if match:
            found[match.group(1)] = (int(match.group(2)), int(match.group(3)))
    return sorted(found, key=found.get), found


def mbconv_parts(model_layers, block):
    """The MBConv parts ("expand", "dw", "se", "project") that `block` has, in order."""
    parts = []
    for part, (first, _) in MBCONV_LAYERS.items():
        if part in ("dw", "project") or f"{block}{first}" in model_layers:
            parts.append(part)
    return parts


def assign_mbconv(model, torch_block, torch_parts):
    """Map every MBConv block of `model`.

    `torch_block(index, stage, block)` gives the PyTorch prefix of the
    index-th block; `torch_parts(prefix, parts)` gives one (first, second)
    module-prefix pair per part (conv and BN, or the SE reduce and expand).
    """
    names = {layer.name for layer in model.layers}
    blocks, positions = keras_blocks(model)
    assignment = {}
    for index, block in enumerate(blocks):
        stage, number = positions[block]
        parts = mbconv_parts(names, block)
        pairs = torch_parts(torch_block(index, stage, number), parts)
        for part, torch_pair in zip(parts, pairs):
            for suffix, torch_prefix in zip(MBCONV_LAYERS[part], torch_pair):
                assignment[f"{block}{suffix}"] = torch_prefix
    return assignment


def conv_bn(keras_prefix, torch_conv, torch_bn):
    """{prefix_conv: torch_conv, prefix_bn: torch_bn} for a conv_bn_act layer pair."""
    return {f"{keras_prefix}_conv": torch_conv, f"{keras_prefix}_bn": torch_bn}
