"""Augmentation data for ULD's assistant, kept apart from the evaluated fields, and the leak guard.

Forget quality scores each forget question's `paraphrased_answer` against its `perturbed_answer` list,
so those strings of the evaluated split must never be trained on. ULD's paraphrases and wrong answers
therefore come from a file of their own, in one of two formats:

* `forgetXX_augment.jsonl` (written by `unlearn prepare` for the embedded worlds), one JSON object per
  forget question:
      {"question": str, "answer": str,
       "paraphrased_questions": [str, ...],   # other phrasings of the question (may be empty)
       "paraphrased_answers": [str, ...],     # the true answer, re-phrased
       "perturbed_answers": [str, ...]}       # plausible but wrong answers
* the ULD authors' CSV release for real TOFU (a directory such as ../shared/uld_aug/): per split
  `forgetXX_perturbed/paraphrase_res.csv` (question, answer, 25 paraphrased questions, 25 paraphrased
  answers; lists as Python literals) and `perturb_res.csv` (question, answer, question, 3 wrong answers).

Both read into the JSONL records above. Any paraphrased/perturbed answer equal to an evaluated string
is dropped while reading (`drop_evaluated`), and `eval_overlap` checks every part of a run's training
data before it starts.
"""

from __future__ import annotations

import ast
import csv
from dataclasses import dataclass
from pathlib import Path

from unlearnkit.data.jsonl import parse_jsonl, read_utf8
from unlearnkit.errors import UnlearnError

AUGMENT_SUFFIX = "_augment"  # forget10 -> forget10_augment.jsonl
VALIDATION_SUFFIX = "_validation"  # forget10 -> forget10_validation.jsonl (held-out, for epoch choice)
LIST_FIELDS = ("paraphrased_questions", "paraphrased_answers", "perturbed_answers")
ULD_PARAPHRASE_CSV = "paraphrase_res.csv"
ULD_PERTURB_CSV = "perturb_res.csv"


def augment_file_for(data_dir: str | Path, forget: str) -> Path:
    """Where a world keeps the augmentation of a forget split: data/forgetXX_augment.jsonl."""
    return Path(data_dir) / f"{forget}{AUGMENT_SUFFIX}.jsonl"


def validation_file_for(data_dir: str | Path, forget: str) -> Path:
    """Where a world keeps held-out validation questions about the forget authors."""
    return Path(data_dir) / f"{forget}{VALIDATION_SUFFIX}.jsonl"


# ---------------------------------------------------------------------------------------------------
# Reading


def _check_record(record: object, where: str) -> dict:
    if not isinstance(record, dict):
        raise UnlearnError(f"{where}: expected a JSON object with question and the lists "
                           f"{', '.join(LIST_FIELDS)}")
    if not isinstance(record.get("question"), str) or not record["question"].strip():
        raise UnlearnError(f"{where}: 'question' must be a non-empty string")
    out = {"question": record["question"], "answer": record.get("answer") or ""}
    for key in LIST_FIELDS:
        value = record.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise UnlearnError(f"{where}: {key!r} must be a list of non-empty strings")
        out[key] = list(value)
    return out


def read_augment_jsonl(path: str | Path) -> list[dict]:
    """Records of a forgetXX_augment.jsonl file (format in this module's docstring), validated."""
    path = Path(path)
    records = [_check_record(record, f"{path} line {n}") for n, record in parse_jsonl(read_utf8(path), path)]
    if not records:
        raise UnlearnError(f"augmentation file {path} holds no records")
    return records


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [row for row in csv.reader(fh) if row]


def _literal_list(text: str, where: str) -> list[str]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise UnlearnError(f"{where}: expected a Python list literal of strings") from None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UnlearnError(f"{where}: expected a list of strings")
    return [v for v in value if v.strip()]


def read_uld_csv(root: str | Path, forget: str) -> list[dict]:
    """The ULD authors' augmentation for `forget` (paraphrase_res.csv + perturb_res.csv) as records.

    Joined by question text; perturb_res.csv is taken from the split's folder if present, else from
    `root` (the release ships one file covering every forget10 question).
    """
    root = Path(root)
    folder = root / f"{forget}_perturbed"
    para_path = folder / ULD_PARAPHRASE_CSV
    if not para_path.is_file():
        raise UnlearnError(f"{para_path} not found: give the ULD augmentation directory holding "
                           f"{forget}_perturbed/{ULD_PARAPHRASE_CSV}")
    pert_path = next((p for p in (folder / ULD_PERTURB_CSV, root / ULD_PERTURB_CSV) if p.is_file()), None)
    wrong: dict[str, list[str]] = {}
    if pert_path is not None:
        for n, row in enumerate(_csv_rows(pert_path), 1):
            if len(row) < 4:
                raise UnlearnError(f"{pert_path} row {n}: expected 4 columns (question, answer, question, "
                                   "wrong answers)")
            wrong[row[0]] = _literal_list(row[3], f"{pert_path} row {n}")
    records = []
    for n, row in enumerate(_csv_rows(para_path), 1):
        if len(row) < 4:
            raise UnlearnError(f"{para_path} row {n}: expected 4 columns (question, answer, paraphrased "
                               "questions, paraphrased answers)")
        records.append({
            "question": row[0], "answer": row[1],
            "paraphrased_questions": _literal_list(row[2], f"{para_path} row {n}"),
            "paraphrased_answers": _literal_list(row[3], f"{para_path} row {n}"),
            "perturbed_answers": wrong.get(row[0], []),
        })
    return records


def read_augmentation(path: str | Path, forget: str) -> list[dict]:
    """An augmentation source: a forgetXX_augment.jsonl file, or a directory of the ULD CSV release."""
    path = Path(path).expanduser()
    if path.is_dir():
        return read_uld_csv(path, forget)
    if path.is_file():
        return read_augment_jsonl(path)
    raise UnlearnError(f"augmentation {path} does not exist: give a forgetXX_augment.jsonl file "
                       "(unlearn prepare writes one into the world's data/) or the ULD CSV directory")


# ---------------------------------------------------------------------------------------------------
# Evaluated strings, dropping, the guard


def evaluated_strings(perturbed: list[dict]) -> set[str]:
    """The strings forget quality scores: each row's paraphrased_answer and perturbed_answer list."""
    strings: set[str] = set()
    for row in perturbed:
        if row.get("paraphrased_answer"):
            strings.add(row["paraphrased_answer"])
        wrong = row.get("perturbed_answer") or []
        strings.update([wrong] if isinstance(wrong, str) else wrong)
    return strings


@dataclass
class Dropped:
    """What `drop_evaluated` removed: how many answers and the first one."""

    count: int = 0
    first: str | None = None


def drop_evaluated(records: list[dict], evaluated: set[str]) -> tuple[list[dict], Dropped]:
    """Records with every paraphrased/perturbed answer equal to an evaluated string removed."""
    dropped, clean = Dropped(), []
    for record in records:
        record = dict(record)
        for key in ("paraphrased_answers", "perturbed_answers"):
            kept = [a for a in record[key] if a not in evaluated]
            for a in record[key]:
                if a in evaluated:
                    dropped.count += 1
                    dropped.first = dropped.first or a
            record[key] = kept
        clean.append(record)
    return clean, dropped


def augmentation_parts(augmentation: list[dict], forget: list[dict], use_questions: bool = True,
                       paraphrases: int | None = None, wrong: int | None = None) -> dict[str, list[dict]]:
    """ULD's extra training pairs for the forget questions in `forget`:

    augment_forget: (question, paraphrased answer i), the question being paraphrased question i when
    `use_questions` and the file has them (the official code pairs paraphrased questions with
    paraphrased answers); augment_retain: (question, wrong answer). `paraphrases` / `wrong` cap the
    number used per question (None: all). Rows about questions outside `forget` are skipped.
    """
    for name, cap in (("augment_paraphrases", paraphrases), ("augment_wrong", wrong)):
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 0):
            raise UnlearnError(f"ULD {name}={cap!r} is not valid: use null (all) or a count >= 0")
    questions = {r["question"] for r in forget}
    fwd, back = [], []
    for row in augmentation:
        if row["question"] not in questions:
            continue
        pqs = row["paraphrased_questions"] if use_questions else []
        for i, answer in enumerate(row["paraphrased_answers"][:paraphrases]):
            question = pqs[i % len(pqs)] if pqs else row["question"]
            fwd.append({"question": question, "answer": answer})
        back += [{"question": row["question"], "answer": a} for a in row["perturbed_answers"][:wrong]]
    return {"augment_forget": fwd, "augment_retain": back}


def eval_overlap(parts: dict[str, list[dict]], perturbed: list[dict],
                 data_pairs: set[tuple[str, str]] = frozenset()) -> list[tuple[str, dict]]:
    """Training records (part, record) whose answer is a paraphrased/perturbed answer of the evaluated
    forget split.

    The forget part is not checked (every method trains on the forget answers). A record that is a row
    of the target's fine-tuning data (`data_pairs`: the `full` split, question and answer) is not
    counted either: in a templated world a retain answer such as "She writes poetry." can coincide
    with a forget question's perturbed answer, and the target and retain model were trained on it
    already. Augmentation records never get that exemption.
    """
    evaluated = evaluated_strings(perturbed)
    hits = []
    for part, records in parts.items():
        if part == "forget":
            continue
        for r in records:
            exempt = not part.startswith("augment") and (r["question"], r["answer"]) in data_pairs
            if r["answer"] in evaluated and not exempt:
                hits.append((part, r))
    return hits
