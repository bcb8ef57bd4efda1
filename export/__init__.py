"""mobilecnn export: verified TFLite conversion in every mode, and the project's LiteRT runner.

    from export import convert, verify, export_model, Runner, read_metadata

`export_model` is what `mobilecnn export` runs; `convert` and `verify` are its
two halves for use from Python. Importing this package does not import
TensorFlow; conversion does.
"""
from .bias_alignment import BiasShift, align_biases
from .convert import IO_TYPES, MODES, Conversion, calibrate_batchnorm, convert, graph_for_export
from .errors import ExportError
from .layer_trace import LayerDeviation, trace_layers
from .loading import LoadedModel, is_qat_model, load
from .metadata import embed as embed_metadata
from .metadata import read_metadata
from .pipeline import ExportResult, export_model
from .report import float_compute_ops, op_counts, sparsity
from .runner import BACKENDS, Runner
from .verify import PERTURBATION, TRAINED, Verification, verify

__all__ = [
    "BACKENDS",
    "BiasShift",
    "IO_TYPES",
    "MODES",
    "PERTURBATION",
    "TRAINED",
    "Conversion",
    "ExportError",
    "LayerDeviation",
    "ExportResult",
    "LoadedModel",
    "Runner",
    "Verification",
    "align_biases",
    "calibrate_batchnorm",
    "convert",
    "embed_metadata",
    "export_model",
    "float_compute_ops",
    "graph_for_export",
    "is_qat_model",
    "load",
    "op_counts",
    "read_metadata",
    "sparsity",
    "trace_layers",
    "verify",
]
