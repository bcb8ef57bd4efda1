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


def test_throughput_runs_alternate_so_a_drift_falls_on_both_alike():
    from benchmarks.cifar10_recipes import THROUGHPUT_ORDER

    assert THROUGHPUT_ORDER == tuple(reversed(THROUGHPUT_ORDER))  # a linear drift cancels
    assert THROUGHPUT_ORDER.count("loop") == THROUGHPUT_ORDER.count("plain") >= 2
    assert THROUGHPUT_ORDER[0] != THROUGHPUT_ORDER[1]


def test_throughput_figures_take_the_median_epoch_of_each():
    from benchmarks.cifar10_recipes import throughput_figures

    # one slow epoch on either side does not decide the ratio
    figures = throughput_figures({"loop": [380.0, 400.0, 410.0, 120.0], "plain": [400.0, 420.0, 30.0, 410.0]})
    assert figures["loop_images_per_second"] == 390.0
    assert figures["plain_fit_images_per_second"] == 405.0
    assert figures["throughput_ratio"] == pytest.approx(390.0 / 405.0)


def test_throughput_phase_times_every_run_but_their_first_epochs(images, tmp_path):
    """The phase end to end on tiny data: 2 timed epochs from each of the 4 runs, the loop's scratch folders gone,
    and OUT/results.json still holding the figures of a phase run earlier."""
    from benchmarks.cifar10_recipes import THROUGHPUT_EPOCHS, THROUGHPUT_ORDER, run
    from pipelines import runs
    from pipelines.recipes import Recipe

    (tmp_path / "float").mkdir()
    runs.write_json(tmp_path / "float" / "results.json", {"float_top1": 0.8})
    recipe = Recipe("tiny", "mobilenet_v2_0.35", image_size=32, batch_size=16, warmup_epochs=0)
    results = run(recipe, images, tmp_path, phases=["throughput"])
    assert runs.read_json(tmp_path / "results.json") == results
    assert results["float_top1"] == 0.8
    rates = results["throughput_epoch_rates"]
    for kind in ("loop", "plain"):
        assert len(rates[kind]) == THROUGHPUT_ORDER.count(kind) * (THROUGHPUT_EPOCHS - 1)
        assert all(rate > 0 for rate in rates[kind])
    assert results["throughput_ratio"] == pytest.approx(
        results["loop_images_per_second"] / results["plain_fit_images_per_second"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["float", "results.json", "throughput"]
    assert [p.name for p in (tmp_path / "throughput").iterdir()] == ["results.json"]
