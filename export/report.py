"""What a converted model contains: ops with dtypes, float compute ops, sparsity.

A "float compute op" is any op other than QUANTIZE/DEQUANTIZE with a float
output (toolchain notes, section 4): in a full-integer model it is an island
XNNPACK runs in float, or not at all.
"""
import numpy as np

FLOAT_DTYPES = ("float32", "float16")
CONVERSION_OPS = ("QUANTIZE", "DEQUANTIZE")
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def float_compute_ops(ops):
    return [op for op in ops if op["name"] not in CONVERSION_OPS and any(d in FLOAT_DTYPES for d in op["output_dtypes"])]


def op_counts(ops):
    """{"CONV_2D int8": 12, ...}: op name with its output dtype, counted."""
    counts = {}
    for op in ops:
        key = f"{op['name']} {'/'.join(d for d in op['output_dtypes'] if d)}"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def sparsity(tflite):
    """Zero fraction over conv/FC weights, and how many tensors carry TFLite sparsity encoding.

    A sparse tensor stores only its kept values; the elements it leaves out
    are zeros too, so zeros = total - stored + zeros among stored.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(tflite, 0)
    codes = [_op_name(schema, model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
    total = zeros = 0
    sparse_tensors = densify_ops = 0
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        producers = {}
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            for out in op.OutputsAsNumpy():
                producers[int(out)] = op
        sparse_tensors += sum(graph.Tensors(t).Sparsity() is not None for t in range(graph.TensorsLength()))
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            name = codes[op.OpcodeIndex()]
            densify_ops += name == "DENSIFY"
            if name not in WEIGHT_OPS or op.InputsLength() < 2:
                continue
            tensor_index = _constant_source(schema, codes, producers, int(op.Inputs(1)))
            n_total, n_zero = _zeros(model, graph.Tensors(tensor_index))
            total += n_total
            zeros += n_zero
    return {
        "zero_fraction": zeros / total if total else 0.0,
        "weights": total,
        "sparse_tensors": int(sparse_tensors),
        "densify_ops": int(densify_ops),
    }


def _op_name(schema, code):
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(builtin, str(builtin))


def _constant_source(schema, codes, producers, tensor_index):
    """Follow DENSIFY/DEQUANTIZE back to the stored constant a weight comes from."""
    while tensor_index in producers and codes[producers[tensor_index].OpcodeIndex()] in ("DENSIFY", "DEQUANTIZE"):
        tensor_index = int(producers[tensor_index].Inputs(0))
    return tensor_index


_NUMPY = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 9: np.int8, 7: np.int16}


def _zeros(model, tensor):
    """(elements, zero elements) of a constant tensor; (0, 0) if it has no data."""
    data = model.Buffers(tensor.Buffer()).DataAsNumpy()
    dtype = _NUMPY.get(tensor.Type())
    if isinstance(data, int) or dtype is None:
        return 0, 0
    values = data.view(dtype)
    quant = tensor.Quantization()
    zero_point = 0
    if quant is not None and quant.ZeroPointLength() == 1:
        zero_point = int(quant.ZeroPoint(0))
    elements = int(np.prod(tensor.ShapeAsNumpy())) if tensor.ShapeLength() else values.size
    return elements, elements - values.size + int(np.count_nonzero(values == zero_point))
