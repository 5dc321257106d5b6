"""`unlearn methods`: the registered methods, or one method's parameters with defaults and help."""

from __future__ import annotations

import json

import typer

from unlearnkit.cli.app import app


@app.command("methods")
def methods_cmd(
    name: str | None = typer.Argument(None, help="A method (or alias): show its parameters."),
) -> None:
    """List the unlearning methods (built-in and plugins), or one method's parameters and training
    defaults: set them with method.params.KEY=VALUE and train.KEY=VALUE on `unlearn run`."""
    from rich.console import Console
    from rich.table import Table

    from unlearnkit.methods import REGISTRY, get_method, load_plugins
    from unlearnkit.methods.params import param_table

    load_plugins()
    console = Console()
    if name is None:
        table = Table("method", "aliases", "what it does", box=None)
        for key, method in REGISTRY.items():
            table.add_row(key, ", ".join(method.aliases), method.description)
        console.print(table)
        return
    method = get_method(name)
    console.print(f"[bold]{method.name}[/]: {method.description}", highlight=False)
    table = Table("method.params", "default", "meaning", box=None)
    for key, default, text in param_table(method.params_cls):
        table.add_row(key, json.dumps(default), text)
    console.print(table)
    train = ", ".join(f"train.{k}={json.dumps(v)}" for k, v in method.train.items())
    console.print(f"training defaults: {train} (any transformers.TrainingArguments field is settable)",
                  highlight=False)
