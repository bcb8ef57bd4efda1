"""The `mobilecnn` command. The only module that wires zoo, pipelines, export
and benchmarks together; each package's commands are imported on use, and TensorFlow only when a
command builds or runs a model, so that `mobilecnn list`, help and a misspelt name answer in well under a second
(tests/test_cli_zoo.py checks that none of them loads TensorFlow)."""
import importlib

import click

# command name -> "module:attribute" of a click command defined by its package
LAZY_COMMANDS = {
    "export": "export.commands:export_command",
    "bench": "android_bench.commands:bench_command",
    "report": "android_bench.commands:report_command",
    "train": "pipelines.commands:train_command",
    "qat": "pipelines.commands:qat_command",
    "prune": "pipelines.commands:prune_command",
    "port": "mobilecnn.porting.commands:port_command",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS:
            module, attr = LAZY_COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup)
@click.version_option(package_name="mobilecnn")
def main():
    """Mobile CNN zoo, QAT/pruning, verified TFLite export and device benchmarks."""


def _format_count(n):
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def _table(rows, headers):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*headers), line.format(*("-" * w for w in widths))]
    out += [line.format(*(str(c) for c in r)) for r in rows]
    return "\n".join(out)


@main.command("list")
@click.argument("pattern", required=False)
def list_command(pattern):
    """Table of the zoo (optionally filtered by a wildcard PATTERN)."""
    from .registry import get_card, list_models

    names = list_models(pattern)
    if not names:
        raise click.ClickException(f"no model matches {pattern!r}")
    rows = []
    for name in names:
        card = get_card(name)
        rows.append((name, card.family, card.default_size, _format_count(card.reference_params), card.reference_kind,
                     card.normalization, card.padding))
    click.echo(_table(rows, ("name", "family", "size", "params", "counted", "normalization", "padding")))
    click.echo(f"\n{len(rows)} models")


@main.command("info")
@click.argument("name")
@click.option("--input-size", type=click.IntRange(min=1), default=None, help="Square input size (default: the card's).")
@click.option("--classes", type=click.IntRange(min=1), default=1000, show_default=True)
def info_command(name, input_size, classes):
    """Summary and per-stage profile of model NAME."""
    from .registry import UnknownModelError, create_model, get_card

    try:
        card = get_card(name)  # a misspelt name fails here, before TensorFlow loads
        size = input_size or card.default_size
        model = create_model(name, input_shape=(size, size, 3), classes=classes)
    except (UnknownModelError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    from .profiling import profile

    p = profile(model)
    norm = card.mean_std
    click.echo(f"{name}  ({card.family}, input {size}x{size}x3, {classes} classes, padding {card.padding})")
    click.echo(f"  parameters      {p['params']:,} (trainable {p['trainable_params']:,}, "
               f"non-trainable {p['non_trainable_params']:,})")
    click.echo(f"  reference       {card.reference_params:,} {card.reference_kind} ({card.reference_source})")
    click.echo(f"  MACs            {p['macs'] / 1e6:,.1f} M")
    click.echo(f"  peak activations {p['peak_activation_bytes'] / 2**20:,.2f} MiB (float32, batch 1)")
    click.echo(f"  normalization   {card.normalization}: (pixel - {norm['mean']}) / {norm['std']}")
    click.echo("")
    rows = [(s["stage"], s["layers"], "x".join(str(d) for d in s["output_shape"][1:]), f"{s['params']:,}",
             f"{s['macs'] / 1e6:,.2f}") for s in p["stages"]]
    click.echo(_table(rows, ("stage", "layers", "output", "params", "MMACs")))


if __name__ == "__main__":
    main()
