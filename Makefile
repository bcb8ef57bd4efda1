# Every target runs inside .venv (created on first use); `make test` is what CI runs.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-slow demo bench clean

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# --durations lists the slowest tests, which is what to move under -m slow when the run outgrows ~15 minutes.
test: $(STAMP)
	$(PY) -m pytest -q --durations=20

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

demo: $(STAMP)
	$(VENV)/bin/mobilecnn list
	$(VENV)/bin/mobilecnn info mobilenet_v2_1.0

# Heavy: each script prints its table and the docs/ record it feeds (see docs/*.md for recorded runs).
bench: $(STAMP)
	mkdir -p bench-results
	$(PY) -m benchmarks.export_vs_keras_apps --out bench-results/export.md --json bench-results/export.json
	$(PY) -m benchmarks.host_zoo --out bench-results/host_zoo.json --workdir bench-results/host_zoo_models
	$(PY) -m benchmarks.imagenet_lite0 --out bench-results/imagenet_lite0.json
	@echo "CIFAR-10 recipes (about 45 min of training each): $(PY) -m benchmarks.cifar10_recipes --recipe NAME --out DIR"

clean:
	rm -rf $(VENV) build *.egg-info
