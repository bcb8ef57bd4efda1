"""`mobilecnn list`, `mobilecnn info` and the command line's start-up."""
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mobilecnn.cli import LAZY_COMMANDS, main


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


# Runs the command in a fresh interpreter, then names the heavy runtimes it imported.
_HEAVY_IMPORTS = """
import sys
from mobilecnn.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("imported:", sorted(m for m in ("tensorflow", "tf_keras", "ai_edge_litert") if m in sys.modules))
"""


@pytest.mark.parametrize("args", [["--help"], ["list"], ["info", "mobilenet_v3_larg"],
                                  *([command, "--help"] for command in sorted(LAZY_COMMANDS))], ids=" ".join)
def test_help_listing_and_misspelt_names_answer_without_loading_tensorflow(args):
    """Loading TensorFlow takes seconds; the zoo table, every command's help and a misspelt name need none of it."""
    result = subprocess.run([sys.executable, "-c", _HEAVY_IMPORTS, *args], capture_output=True, text=True)
    assert result.stdout.splitlines()[-1] == "imported: []", (args, result.stdout[-300:], result.stderr[-300:])


def test_info_too_small_input_is_a_clear_error():
    result = CliRunner().invoke(main, ["info", "mobilenet_v2_1.0", "--input-size", "16"])
    assert result.exit_code != 0
    assert "too small" in result.output
