"""`mobilecnn export`: the click command (registered into the CLI group by mobilecnn/cli.py)."""
import click

from .convert import IO_TYPES, RANGE_METHODS
from .errors import ExportError


def _input_size(ctx, param, value):
    if value is None:
        return None
    try:
        parts = [int(p) for p in value.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or any(p < 1 for p in parts):
        raise click.BadParameter(f"expected SIZE or HxW (e.g. 224 or 192x256), got {value!r}")
    return parts[0] if len(parts) == 1 else tuple(parts)


@click.command("export")
@click.argument("model")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False), help="Output .tflite file.")
@click.option("--fp32", "mode", flag_value="fp32", default=True, help="Float32 model (default).")
@click.option("--fp16", "mode", flag_value="fp16", help="Float16 weights, float compute.")
@click.option("--dynamic", "mode", flag_value="dynamic", help="Dynamic-range: int8 weights, float activations.")
@click.option("--int8", "mode", flag_value="int8", help="Full integer int8 (calibrated, or a QAT model).")
@click.option("--int16x8", "mode", flag_value="int16x8", help="int16 activations, int8 weights (debugging; not accelerated).")
@click.option("--io", type=click.Choice(IO_TYPES), default="float", show_default=True, help="Input/output type (--int8 only).")
@click.option("--sparse", is_flag=True, help="Encode pruned weights sparsely (--fp32/--fp16 only).")
@click.option("--batch", "batch_size", type=int, default=1, show_default=True, help="Fixed batch size of the model.")
@click.option("--model", "model_name", help="Registry architecture for a weights file MODEL.")
@click.option("--qat", is_flag=True, help="MODEL is a weights file of the QAT version of --model NAME.")
@click.option("--input-size", callback=_input_size, help="SIZE or HxW when building from the registry (default: card size).")
@click.option("--classes", type=int, help="Number of classes when building from the registry.")
@click.option("--rep-data", type=click.Path(), help="Image folder for int8/int16x8 calibration.")
@click.option("--rep-samples", type=int, default=200, show_default=True, help="Calibration images to use.")
@click.option("--calibration-ranges", type=click.Choice(RANGE_METHODS), default="minmax", show_default=True,
              help="int8 ranges: minmax (extremes over all images) or mean (mean of per-batch extremes).")
@click.option("--normalization", help="Input normalization key (tf, torch, lite) when MODEL has no card.")
@click.option("--mean", type=float, multiple=True, help="Input mean in pixel units (1 or 3 values; with --std).")
@click.option("--std", type=float, multiple=True, help="Input std in pixel units (1 or 3 values; with --mean).")
@click.option("--labels", type=click.Path(), help="Text file with one class label per line (embedded in the model).")
@click.option("--keep-activation", is_flag=True, help="Keep a trailing softmax/sigmoid layer (default: export logits).")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Verify the converted model before writing.")
@click.option("--verify-samples", type=int, default=16, show_default=True, help="Inputs used for the parity check.")
@click.option("--allow-float-ops", is_flag=True, help="Accept float compute ops in an integer model.")
@click.option("--allow-partial-delegation", is_flag=True, help="Accept more than one XNNPACK partition.")
@click.option("--eval-data", type=click.Path(), help="Labelled image folder (DIR/<class>/<image>) for top-1/top-5.")
@click.option("--eval-limit", type=int, help="Evaluate on at most this many images of --eval-data.")
@click.option("--force", is_flag=True, help="Overwrite OUT and its manifest if they exist.")
def export_command(model, out, mean, std, **options):
    """Convert MODEL to a verified TFLite file OUT.

    MODEL is a saved model (.keras, .h5, SavedModel directory), a weights file
    with --model NAME, or a registry name (random weights, for benchmarking).
    Nothing is written unless verification passes.
    """
    from .pipeline import export_model
    from .summary import format_summary

    try:
        result = export_model(model, out, mean=list(mean) or None, std=list(std) or None, **options)
    except ExportError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_summary(result))
