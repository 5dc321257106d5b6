"""`unlearn generate`: greedy answers from a model or a ULD artifact, optionally next to the target's."""

from __future__ import annotations

import typer

from unlearnkit.cli.app import app
from unlearnkit.errors import UnlearnError
from unlearnkit.models.device import DEVICE_HELP, DTYPE_HELP


def load_for_generation(model: str, target: str | None, weight: float | None,
                        filter_factor: float | None, tokenizer: str | None, placement=None,
                        trust_remote_code: bool = False):
    """(model, tokenizer, reference model or None): a ULD artifact brings its own target as reference.

    Models are placed by `placement` (models.device.Placement; default: the device policy's choice).
    """
    from unlearnkit.methods.uld import check_overrides, is_uld_artifact, load_uld
    from unlearnkit.models.device import Placement
    from unlearnkit.models.loading import load_model_and_tokenizer

    check_overrides(model, weight, filter_factor)
    placement = placement or Placement.resolve()
    if is_uld_artifact(model):
        uld, tok = load_uld(model, target=target, weight=weight, filter_factor=filter_factor, merge=True,
                            trust_remote_code=trust_remote_code)
        uld = placement.apply(uld)
        return uld, tok, uld.target
    kw = dict(tokenizer=tokenizer, dtype=placement.loader_dtype, trust_remote_code=trust_remote_code)
    m, tok = load_model_and_tokenizer(model, **kw)
    reference = placement.apply(load_model_and_tokenizer(target, **kw)[0]) if target else None
    return placement.apply(m), tok, reference


@app.command("generate")
def generate_cmd(
    questions: list[str] = typer.Argument(..., help="One or more questions."),
    model: str = typer.Option(..., "--model", help="Model folder, ULD artifact, preset or hub ID."),
    compare: bool = typer.Option(False, "--compare", help="Show the target's answer next to the model's."),
    max_new_tokens: int = typer.Option(200, "--max-new-tokens", min=1),
    weight: float = typer.Option(None, "--weight", help="ULD only: override the logit-difference weight w."),
    filter_factor: float = typer.Option(None, "--filter-factor", help="ULD only: override the filter f."),
    target: str = typer.Option(None, "--target", help="The target model: for a ULD artifact, overrides "
                               "the recorded path; for a plain model, what --compare uses."),
    tokenizer: str = typer.Option(None, "--tokenizer", help="Tokenizer dir (needed for a preset model)."),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP),
    dtype: str = typer.Option(None, "--dtype", help=DTYPE_HELP),
) -> None:
    """Answer questions greedily (stop at EOS). Answers go to stdout; --compare prints a table."""
    from rich.console import Console
    from rich.table import Table

    from unlearnkit.eval.scoring import generate_answers
    from unlearnkit.models.device import Placement

    placement = Placement.resolve(device, dtype)
    m, tok, reference = load_for_generation(model, target, weight, filter_factor, tokenizer, placement)
    if compare and reference is None:
        raise UnlearnError("--compare needs a target: pass --target, or --model a ULD artifact")
    answers = generate_answers(m, tok, questions, max_new_tokens=max_new_tokens)
    if not compare:
        for answer in answers:
            typer.echo(answer)
        return
    before = generate_answers(reference, tok, questions, max_new_tokens=max_new_tokens)
    table = Table(show_lines=True)
    table.add_column("question", style="bold")
    table.add_column("target")
    table.add_column("unlearned")
    for q, b, a in zip(questions, before, answers, strict=True):
        table.add_row(q, b, a)
    Console().print(table)
