"""The benchmark scripts (`make bench`, not run in CI) at least compile under the interpreter that runs the tests."""
import py_compile
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_compiles(script, tmp_path):
    py_compile.compile(str(script), cfile=str(tmp_path / "out.pyc"), doraise=True)


def test_benchmark_scripts_found():
    assert {"export_vs_keras_apps.py", "cifar10_recipes.py", "imagenet_lite0.py"} <= {p.name for p in SCRIPTS}
