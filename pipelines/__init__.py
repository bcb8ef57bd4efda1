"""mobilecnn pipelines: image-folder data, training, QAT, pruning and clustering for zoo models.

Modules: data (image folders to tf.data), synthetic (embedded demo dataset),
train (fit with checkpoints/resume/TensorBoard/history), qat, prune, cluster,
recipes (CIFAR-10 benchmark recipes), runs (run folders) and commands (CLI).
Importing the package is cheap; TensorFlow loads with the modules that need it.
"""
