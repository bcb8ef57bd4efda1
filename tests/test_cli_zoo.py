"""`mobilecnn list` and `mobilecnn info`."""
import subprocess
import sys

from click.testing import CliRunner

from mobilecnn.cli import main


def test_list_shows_the_zoo():
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0, result.output
    assert "mobilenet_v2_1.0" in result.output and "efficientnet_lite0" in result.output
    filtered = CliRunner().invoke(main, ["list", "shufflenet_v2_*"])
    assert filtered.output.count("shufflenet_v2_") == 4


def test_info_prints_summary_and_stage_table():
    result = CliRunner().invoke(main, ["info", "mobilenet_v2_1.0", "--input-size", "96", "--classes", "10"])
    assert result.exit_code == 0, result.output
    assert "input 96x96x3, 10 classes" in result.output
    assert "MACs" in result.output and "peak activations" in result.output
    assert "stage7" in result.output and "head" in result.output


def test_info_unknown_name_exits_non_zero_with_suggestions():
    result = subprocess.run([sys.executable, "-m", "mobilecnn.cli", "info", "mobilenet_v3_larg"],
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert "unknown model 'mobilenet_v3_larg'; did you mean mobilenet_v3_large" in result.stderr


def test_info_too_small_input_is_a_clear_error():
    result = CliRunner().invoke(main, ["info", "mobilenet_v2_1.0", "--input-size", "16"])
    assert result.exit_code != 0
    assert "too small" in result.output
