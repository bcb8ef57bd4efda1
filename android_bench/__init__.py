"""Benchmarks for exported models: host (LiteRT), desktop GPU (Keras/TensorFlow), Android over adb, and reports.

Modules: `parser` (benchmark_model output), `stats` and `timing` (measurement rules), `runtimes` (runtime
selection around export.runner.Runner), `host`, `gpu`, `adb` and `android` (targets), `machine` (host
description), `report` (Markdown, CSV, PNG), `commands` (the `mobilecnn bench` / `mobilecnn report` CLI).
Importing the package loads neither TensorFlow nor LiteRT.
"""
