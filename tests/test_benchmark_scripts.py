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


@pytest.mark.parametrize("phases, error", [
    (["float", "ptq", "qat", "prune", "throughput"], None),
    (["throughput"], None),
    (["ptq", "spam"], "unknown phase"),
    (["qat"], "float/model.keras does not exist; add the float phase"),
])
def test_cifar10_recipes_checks_the_phase_list(tmp_path, phases, error):
    from benchmarks.cifar10_recipes import check_phases

    if error is None:
        check_phases(phases, tmp_path)
    else:
        with pytest.raises(ValueError, match=error):
            check_phases(phases, tmp_path)


def test_cifar10_recipes_reuses_a_float_model_from_an_earlier_run(tmp_path):
    from benchmarks.cifar10_recipes import check_phases

    (tmp_path / "float").mkdir()
    (tmp_path / "float" / "model.keras").write_bytes(b"")
    check_phases(["ptq", "qat"], tmp_path)
