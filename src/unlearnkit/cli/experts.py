"""`unlearn experts`: which routed expert of an MoE model is most tied to the forget data (UOE step 1)."""

from __future__ import annotations

from pathlib import Path

import typer

from unlearnkit.cli.app import app, console


def resolve_data(data: Path, split: str = "forget") -> Path:
    """A JSON/JSONL file, or a directory holding <split>.jsonl (or data/<split>.jsonl, as prepare writes)."""
    from unlearnkit.errors import UnlearnError

    if data.is_dir():
        for candidate in (data / f"{split}.jsonl", data / "data" / f"{split}.jsonl"):
            if candidate.is_file():
                return candidate
        raise UnlearnError(f"{data} holds no {split}.jsonl: pass the {split} data file itself")
    if not data.is_file():
        raise UnlearnError(f"data file {data} does not exist")
    return data


@app.command("experts")
def experts_cmd(
    model: str = typer.Option(..., "--model", help="MoE model: a local save_pretrained directory."),
    data: Path = typer.Option(..., "--data", help="Forget data (JSON/JSONL of question/answer or text), "
                                                  "or a prepared world directory."),
    out: Path = typer.Option(None, "--out", help="Write affinity.json and affinity.png here."),
    retain: Path = typer.Option(None, "--retain", help="Retain data (file or world directory): adds the "
                                "retain affinity column; needed by --selection contrast."),
    selection: str = typer.Option("affinity", "--selection", help="Rank by 'affinity' (the paper: forget "
                                  "affinity) or 'contrast' (forget minus retain affinity)."),
    top: int = typer.Option(10, "--top", help="Rows of the ranked table."),
    batch_size: int = typer.Option(16, "--batch-size"),
    max_length: int = typer.Option(256, "--max-length"),
) -> None:
    """Rank routed experts by affinity s(l, e) on forget tokens (shared experts excluded).

    With --selection contrast the rank is by forget minus retain affinity: an expert every domain uses
    (high affinity on both) is a poor one to unlearn. --retain defaults to the world directory's
    retain.jsonl when --data is a directory.
    """
    from rich.table import Table

    from unlearnkit.data.jsonl import read_records
    from unlearnkit.errors import UnlearnError
    from unlearnkit.eval.moe import affinity_report, make_batches, plot_affinity
    from unlearnkit.models.loading import load_model_and_tokenizer
    from unlearnkit.models.moe import SELECTIONS, set_eager_experts

    if selection not in SELECTIONS:
        raise UnlearnError(f"--selection {selection!r} is not valid: use one of {', '.join(SELECTIONS)}")
    if out is not None:
        from unlearnkit.outputs import check_out_dir

        check_out_dir(out, False, {"--model": model, "--data": data, "--retain": retain},
                      reusable=("affinity.json", "affinity.png"))
    path = resolve_data(data)
    if retain is None and data.is_dir() and selection == "contrast":
        retain = data
    retain_path = resolve_data(retain, "retain") if retain is not None else None
    records = read_records(path)
    lm, tok = load_model_and_tokenizer(model)
    set_eager_experts(lm)
    retain_batches = (make_batches(tok, read_records(retain_path), batch_size, max_length)
                      if retain_path is not None else None)
    report = affinity_report(lm, make_batches(tok, records, batch_size, max_length), top, retain_batches,
                             selection)
    table = Table(title=f"expert affinity on {len(records)} forget records ({path.name}), "
                        f"ranked by {selection}")
    cols = ["rank", "layer", "expert", "affinity"] + (["retain affinity", "score"] if retain_path else [])
    for col in cols:
        table.add_column(col, justify="right")
    for i, r in enumerate(report["ranking"], 1):
        extra = [f"{r['retain_affinity']:.4f}", f"{r['score']:.4f}"] if retain_path else []
        table.add_row(str(i), str(r["layer"]), str(r["expert"]), f"{r['affinity']:.4f}", *extra)
    console.print(table)
    sel = report["selected"]
    console.print(f"selected: layer {sel['layer']}, expert {sel['expert']}", highlight=False)
    if out is not None:
        from unlearnkit.outputs import write_json

        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "affinity.json", {"model": model, "data": str(path),
                                           "retain": str(retain_path) if retain_path else None, **report})
        png = plot_affinity(report["affinity"], report["layers"], out / "affinity.png",
                            highlight=(sel["layer"], sel["expert"]))
        console.print(f"wrote {out / 'affinity.json'} and {png}", highlight=False)
