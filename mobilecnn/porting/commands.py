"""`mobilecnn port`: a PyTorch checkpoint to a zoo .weights.h5 file."""
import os

import click

from . import SOURCES


@click.command("port")
@click.option("--from", "source", type=click.Choice(SOURCES), required=True,
              help="Layout of the checkpoint's names (the library it was saved from).")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--model", "model_name", required=True,
              help="Zoo model name (e.g. mobilenet_v2_1.0) or the source's own (e.g. shufflenet_v2_x1_0).")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output OUT.weights.h5.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def port_command(source, checkpoint, model_name, out, force):
    """Port a PyTorch CHECKPOINT (.npz, .safetensors, or .pth with torch installed) into zoo weights.

    Every tensor must be used exactly once; otherwise nothing is written and
    the missing, unexpected or mis-shaped tensors are listed.
    """
    from . import PortError, get_recipe, port, save_weights

    try:
        recipe = get_recipe(source, model_name)
        if os.path.exists(out) and not force:
            raise PortError(f"output {out} exists; pass --force to replace it")
        model = port(source, checkpoint, recipe.model)
        classes = int(model.outputs[0].shape[-1])
        provenance = {"source": source, "checkpoint": os.path.basename(checkpoint), "model": recipe.model,
                      "classes": classes, "build": recipe.build}
        save_weights(model, out, force=force, provenance=provenance)
    except PortError as exc:
        raise click.ClickException(str(exc)) from None
    kwargs = "".join(f", {k}={v!r}" for k, v in {"classes": classes, **recipe.build}.items())
    click.echo(f"ported {checkpoint} ({source}) -> {out}: {recipe.model}, {classes} classes, "
               f"{model.count_params():,} parameters")
    click.echo(f"load with: create_model({recipe.model!r}, weights={out!r}{kwargs})")
