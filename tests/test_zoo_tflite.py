"""Float TFLite (batch 1) matches Keras within 1e-4 relative, every registered
model under -m slow. The default run takes one model of each family whose fp32
parity test_export_zoo does not already check with the same measure and bound
(export.verify, on its one model per family)."""
import numpy as np
import pytest

import export
from ai_edge_litert.interpreter import Interpreter
from mobilecnn import list_models
from mobilecnn.registry import get_card
from export import calibrate_batchnorm
from test_export_zoo import REPRESENTATIVE
from zoo_helpers import small_model

NAMES = list_models()
ONE_PER_FAMILY = sorted({get_card(n).family: n for n in reversed(NAMES)}.values())
CHECKED_IN_EXPORT = {get_card(n).family for n in REPRESENTATIVE}
DEFAULT_RUN = [n for n in ONE_PER_FAMILY if get_card(n).family not in CHECKED_IN_EXPORT]


def fp32_relative_error(name):
    model = small_model(name)
    x = np.random.default_rng(0).normal(size=(8, 64, 64, 3)).astype("float32")
    calibrate_batchnorm(model, x)
    interpreter = Interpreter(model_content=export.convert(model, "fp32").tflite)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], x[:1])
    interpreter.invoke()
    expected = model(x[:1], training=False).numpy()
    return np.abs(interpreter.get_tensor(out["index"]) - expected).max() / np.abs(expected).max()


@pytest.mark.parametrize("name", DEFAULT_RUN)
def test_fp32_tflite_matches_keras(name):
    assert fp32_relative_error(name) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if n not in DEFAULT_RUN])
def test_fp32_tflite_matches_keras_all(name):
    assert fp32_relative_error(name) <= 1e-4
