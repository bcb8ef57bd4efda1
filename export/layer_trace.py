"""Where a quantized file departs from the Keras model it came from.

`trace_layers` runs the file with TFLite's reference kernels, keeps every
intermediate tensor, and compares each Keras layer's output with the tensor
the converter named after that layer, in quantization steps of that tensor.
The first layer whose deviation jumps is where to look: a range the file did
not take over, an op TFLite computes differently, a float island.

Tensors are matched by name: the converter names a tensor after the ops that
produced it, joined by ";" when it fused several (conv + batch norm + relu),
the last op first. A layer matches the tensors whose name's first op is
inside that layer and whose shape is the layer's output shape; layers fused
into a later one (a conv whose relu follows) have no tensor of their own and
are not listed.

`trace_sub_models` measures the kernels a file ships with instead: XNNPACK
keeps no intermediate tensors, so the model up to each chosen layer is
converted and run on its own (one conversion per layer). `first_divergence`
does the same for one image up to the first layer whose int8 output differs,
and says how far the Keras model's unrounded values there lie from a rounding
midpoint: near zero, the two only rounded a value on a midpoint differently.
"""
import re
from dataclasses import dataclass

import numpy as np

from .loading import inner_layer
from .runner import Runner


@dataclass
class LayerDeviation:
    layer: str
    tensor: str
    shape: tuple
    scale: float
    mean_steps: float
    p99_steps: float
    max_steps: float

    def __str__(self):
        return (f"{self.layer:32s} {str(self.shape):20s} mean {self.mean_steps:6.3f}  p99 {self.p99_steps:6.2f}  "
                f"max {self.max_steps:6.2f} steps")


def _layer_name(layer):
    """The name the converter sees: a QAT wrapper's inner layer's name."""
    return inner_layer(layer).name


def _first_scope(tensor_name):
    """The scopes of the op that produced a tensor: 'model/quant_b_conv/Conv2D;...' -> {'model', 'quant_b_conv', ...}."""
    return set(tensor_name.split(";")[0].split("/"))


def _match(layer_name, shape, tensors):
    """The quantized tensor of the file that holds this layer's output, or None."""
    names = {layer_name, f"quant_{layer_name}"}
    found = [t for t in tensors
             if t["shape"] == shape and t["quantization"][0] > 0 and names & _first_scope(t["name"])]
    return found[-1] if found else None


def _traced_layers(model):
    from mobilecnn.compat import keras

    return [layer for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer) and not isinstance(layer.output, (list, tuple))]


def trace_layers(model, tflite, samples):
    """[LayerDeviation] in graph order for every layer of `model` whose output the quantized file `tflite`
    (bytes or path, batch 1) keeps as a tensor of its own, over `samples` (float, normalized like the model's
    input)."""
    from mobilecnn.compat import keras

    runner = Runner(tflite, backend="reference", keep_tensors=True)
    layers = _traced_layers(model)
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    tensors = runner.tensors()
    tensor_of = {}
    for layer in layers:
        tensor = _match(_layer_name(layer), (1, *layer.output.shape[1:]), tensors)
        if tensor is not None:
            tensor_of[id(layer)] = tensor
    offs = {key: [] for key in tensor_of}
    for x in np.asarray(samples, np.float32):
        runner.run(x[None])
        for layer, keras_out in zip(layers, probe(x[None], training=False)):
            tensor = tensor_of.get(id(layer))
            if tensor is not None:
                off = np.abs(runner.read_tensor(tensor) - keras_out.numpy()) / tensor["quantization"][0]
                offs[id(layer)].append(off.ravel())
    runner.close()
    return [_deviation(layer, tensor_of[id(layer)], np.concatenate(offs[id(layer)]))
            for layer in layers if id(layer) in tensor_of]


def _deviation(layer, tensor, off):
    return LayerDeviation(layer=_layer_name(layer), tensor=tensor["name"], shape=tensor["shape"],
                          scale=tensor["quantization"][0], mean_steps=float(off.mean()),
                          p99_steps=float(np.percentile(off, 99)), max_steps=float(off.max()))


def dequantized_output(runner):
    """The int8 tensor that the file's output is dequantized from, or None where the output is computed in float."""
    output = runner.output_details[0]["index"]
    for op in runner.ops():
        if op["name"] == "DEQUANTIZE" and op["outputs"] == [output]:
            return next(t for t in runner.tensors() if t["index"] == op["inputs"][0])
    return None


def matching_layers(model, pattern):
    """The single-output layers of `model` whose name (a QAT wrapper's inner layer's) matches `pattern`."""
    return [layer for layer in _traced_layers(model) if re.search(pattern, _layer_name(layer))]


def sub_model_file(model, layer, backend="xnnpack"):
    """(the Keras model up to `layer`, a Runner of it converted to int8 on its own with float input and output)."""
    from mobilecnn.compat import keras

    from .convert import convert

    sub_model = keras.Model(model.inputs, layer.output)
    # keep_activation: a sub-model ending at a sigmoid must not have it dropped as a classifier's activation
    return sub_model, Runner(convert(sub_model, "int8", io="float", keep_activation=True).tflite, backend=backend)


def _sub_model_outputs(model, layers, samples, backend):
    """(layer, the file's int8 output tensor, the file's outputs, the Keras outputs) over `samples`, in order, for
    each of `layers` whose output the file quantizes: the model up to it converted on its own and run with
    `backend` (one conversion per layer, made only when the caller asks for the next)."""
    samples = np.asarray(samples, np.float32)
    for layer in layers:
        sub_model, runner = sub_model_file(model, layer, backend)
        try:
            output = dequantized_output(runner)
            got = None if output is None else runner.run_all(samples)
        finally:
            runner.close()
        if output is not None:
            yield layer, output, got, sub_model(samples, training=False).numpy()


def trace_sub_models(model, samples, pattern="", backend="xnnpack"):
    """[LayerDeviation] in graph order for every layer of the QAT `model` whose name matches `pattern` (a regular
    expression) and whose output the file quantizes: the model up to that layer converted to int8 on its own,
    run with `backend` over `samples`, against the layer's Keras output, in steps of the output's scale."""
    return [_deviation(layer, output, np.abs(got - expected).ravel() / output["quantization"][0])
            for layer, output, got, expected in _sub_model_outputs(model, matching_layers(model, pattern), samples,
                                                                   backend)]


@dataclass
class Divergence:
    """Where a file first departs from its QAT Keras model on one image: the first layer (in graph order) whose int8
    output differs, and for each element that lands on another level, (index, where the Keras model's value before
    rounding lies on the output's grid in levels, the level Keras chose, the level the file chose)."""
    layer: str
    elements: list

    @property
    def tie_distance(self):
        """The largest distance, in steps, of a differing element's unrounded value from the midpoint between two
        levels: near 0 when float32 rounding alone decided between them, up to 0.5 for a real difference."""
        return max(abs(position - np.floor(position) - 0.5) for _, position, _, _ in self.elements)

    def __str__(self):
        shown = "; ".join(f"{index}: Keras value at level {position:.7f}, Keras level {keras_level:.0f}, file level "
                          f"{file_level:.0f}" for index, position, keras_level, file_level in self.elements[:4])
        more = f"; and {len(self.elements) - 4} more" if len(self.elements) > 4 else ""
        return (f"{self.layer}: {len(self.elements)} element(s) on another level, at most {self.tie_distance:.2e} "
                f"steps from a rounding midpoint ({shown}{more})")


def _identity_quantizer(inputs, training, weights=None, **kwargs):
    return inputs


def _activation_and_output_quantizers(layer):
    """(object, attribute, value) for every quantizer that rounds `layer`'s activations or output (not its
    weights): a QuantizeWrapper's output quantizers and quantize-aware activations, a QuantizeLayer's quantizer."""
    found = []
    if getattr(layer, "_output_quantizers", None):
        found.append((layer, "_output_quantizers", layer._output_quantizers))
    for activation in getattr(layer, "_quantize_activations", []):
        found.append((activation, "quantizer", activation.quantizer))
    if type(layer).__name__ == "QuantizeLayer" and layer.quantizer:
        found.append((layer, "quantizer", layer.quantizer))
    return found


def unrounded_output(model, layer, x):
    """`layer`'s output for `x` in the QAT `model` with its weights fake-quantized but its activations and output
    not rounded: where the Keras model's value lies before it picks a level."""
    from mobilecnn.compat import keras

    quantizers = _activation_and_output_quantizers(layer)
    if not quantizers:
        raise ValueError(f"{_layer_name(layer)} rounds no activation or output of its own")
    inputs = keras.Model(model.inputs, layer.input)(x, training=False)
    try:
        for owner, attribute, value in quantizers:
            identity = [_identity_quantizer] * len(value) if isinstance(value, list) else _identity_quantizer
            setattr(owner, attribute, identity)
        return layer(inputs, training=False).numpy()
    finally:
        for owner, attribute, value in quantizers:
            setattr(owner, attribute, value)


def first_divergence(model, sample, backend="xnnpack"):
    """The Divergence of the QAT `model`'s int8 file from the model on one `sample` (float, normalized like the
    input), or None where no quantized layer's output differs: the model up to each layer in graph order converted
    on its own and run with `backend` until one differs by a level (one conversion per layer up to it)."""
    x = np.asarray(sample, np.float32)[None]
    for layer, output, got, expected in _sub_model_outputs(model, _traced_layers(model), x, backend):
        scale, zero_point = output["quantization"]
        differing = np.argwhere(np.abs(got - expected) > scale / 2)
        if len(differing):
            position = unrounded_output(model, layer, x) / scale + zero_point
            elements = [(tuple(int(i) for i in index[1:]), float(position[tuple(index)]),
                         float(np.round(expected[tuple(index)] / scale + zero_point)),
                         float(np.round(got[tuple(index)] / scale + zero_point))) for index in differing]
            return Divergence(layer=_layer_name(layer), elements=elements)
    return None
