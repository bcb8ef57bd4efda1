"""Helpers shared by the zoo tests."""
import numpy as np

from mobilecnn.compat import keras, tf
from mobilecnn.registry import create_model

SMALL = 64


def small_model(name, size=SMALL, classes=10):
    """A registry model at a small size with seeded random weights (runs are reproducible)."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    return create_model(name, input_shape=(size, size, 3), classes=classes, classifier_activation=None)


def train_step(model, x, y, lr=0.05):
    """One plain SGD step; returns the trainable variables' values before the step."""
    before = [v.numpy().copy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    for var, grad in zip(model.trainable_variables, grads):
        if grad is not None:
            var.assign_sub(lr * tf.convert_to_tensor(grad))
    return before


def trainable_count(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))
