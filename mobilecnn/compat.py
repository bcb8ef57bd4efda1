"""The one place that picks the Keras flavour.

TF-MOT only accepts tf_keras (Keras 2) models, and `tf.keras` resolves to
Keras 3 unless TF_USE_LEGACY_KERAS is set before TensorFlow is first
imported. Every module in the project imports `keras` and `tf` from here.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["tf", "keras"]
