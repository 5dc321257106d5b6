"""TOFU splits: load from a local directory (JSON lines, a JSON array or parquet) or a `datasets` hub
name, and validate every record so that a bad file fails here, with file, line and field, not deep
inside training.

Field names are TOFU's own: `question`, `answer`; perturbed splits add `paraphrased_answer` and
`perturbed_answer` (a list of wrong answers). real_authors/world_facts_perturbed have no paraphrase:
their truth ratio uses `answer` as the correct one.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from unlearnkit.data.jsonl import parse_json, parse_jsonl, read_utf8
from unlearnkit.errors import UnlearnError
from unlearnkit.hub import hub_error

FORGET_SPLITS = ("forget01", "forget05", "forget10")
SPLIT_NAMES = (
    "full",
    *FORGET_SPLITS,
    "retain90",
    "retain95",
    "retain99",
    *(f"{s}_perturbed" for s in FORGET_SPLITS),
    "retain_perturbed",
    "real_authors",
    "real_authors_perturbed",
    "world_facts",
    "world_facts_perturbed",
    "holdout01",
    "holdout05",
    "holdout10",
)
EXTENSIONS = (".jsonl", ".json", ".parquet")

# Required fields per split kind: "str" = non-empty string, "list" = non-empty list of non-empty strings.
REQUIRED_FIELDS = {
    "qa": {"question": "str", "answer": "str"},
    "perturbed": {
        "question": "str",
        "answer": "str",
        "paraphrased_answer": "str",
        "perturbed_answer": "list",
    },
    "perturbed_no_paraphrase": {"question": "str", "answer": "str", "perturbed_answer": "list"},
}
_SPLIT_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_FORGET_RE = re.compile(r"^forget(\d\d)$")


def split_kind(split: str) -> str:
    """Which row of REQUIRED_FIELDS a split must satisfy (unknown names are checked as plain QA)."""
    if not split.endswith("_perturbed"):
        return "qa"
    if split.startswith(("real_authors", "world_facts")):
        return "perturbed_no_paraphrase"
    return "perturbed"


def _forget_percent(forget: str) -> int:
    match = _FORGET_RE.match(forget)
    if not match or not 0 < int(match.group(1)) < 100:
        raise UnlearnError(
            f"{forget!r} is not a forget split name: use forgetXX, e.g. forget01, forget05, forget10"
        )
    return int(match.group(1))


def retain_split_for(forget: str) -> str:
    """forget10 -> retain90: the rest of `full`, what the retain model is fine-tuned on."""
    return f"retain{100 - _forget_percent(forget):02d}"


def perturbed_split_for(forget: str) -> str:
    """forget10 -> forget10_perturbed: the same questions with paraphrased and perturbed answers."""
    _forget_percent(forget)
    return f"{forget}_perturbed"


def holdout_split_for(forget: str) -> str:
    """forget10 -> holdout10: same-size set of authors never seen in `full`."""
    return f"holdout{_forget_percent(forget):02d}"


# ---------------------------------------------------------------------------------------------------
# Locating and reading files


def _is_local_path(source: str | Path) -> bool:
    """A Path, or a string that looks like a path rather than a hub name ('org/name' or 'name')."""
    if isinstance(source, Path):
        return True
    s = str(source)
    return s.startswith(("/", ".", "~")) or s.count("/") > 1 or "\\" in s


def list_splits(source: str | Path) -> list[str]:
    """Split names available in a local TOFU directory (file stems of *.jsonl / *.json), sorted."""
    root = Path(source).expanduser()
    if not root.is_dir():
        raise UnlearnError(f"TOFU directory {root} does not exist or is not a directory")
    return sorted({p.stem for p in root.iterdir() if p.suffix in EXTENSIONS and p.is_file()})


def _split_file(root: Path, split: str) -> Path:
    """The file holding `split` (.jsonl, then .json, then .parquet), or an error naming the closest split."""
    if not _SPLIT_NAME_RE.fullmatch(split):
        raise UnlearnError(f"invalid split name {split!r}: use a name such as forget10 or retain90")
    for ext in EXTENSIONS:
        path = root / f"{split}{ext}"
        if path.is_file():
            return path
    available = list_splits(root)
    if not available:
        raise UnlearnError(f"TOFU directory {root} holds no split files (<split>.jsonl, .json or .parquet)")
    padded = re.sub(r"(?<=\D)(\d)(?=$|_)", r"0\1", split)  # forget1 -> forget01, TOFU's spelling
    close = [padded] if padded in available else difflib.get_close_matches(split, available, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise UnlearnError(
        f"no split {split!r} in {root} (no {split}.jsonl or {split}.json): {hint}"
        f"available: {', '.join(available)}"
    )


def read_parquet(path: Path) -> list[dict]:
    """The rows of a parquet file (what `datasets` writes and the hub serves)."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow raises ArrowInvalid / OSError subclasses for corrupt files
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UnlearnError(f"{path}: not a readable parquet file ({reason})") from None


def _parse_records(path: Path) -> list[tuple[str, object]]:
    """(location, value) pairs; parquet by suffix, a file starting with '[' a JSON array, else JSON lines."""
    if path.suffix == ".parquet":
        return [(f"row {i}", row) for i, row in enumerate(read_parquet(path))]
    text = read_utf8(path)
    if not text.strip():
        raise UnlearnError(f"file {path} is empty: expected one JSON object per line or a JSON array")
    if text.lstrip().startswith("["):
        return [(f"record {i}", item) for i, item in enumerate(parse_json(text, path))]
    return [(f"line {lineno}", value) for lineno, value in parse_jsonl(text, path)]


# ---------------------------------------------------------------------------------------------------
# Validation


def _type_name(value: object) -> str:
    if isinstance(value, str) and not value.strip():
        return "an empty string"
    return {dict: "object", list: "list", str: "str", bool: "bool", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _field_problem(value: object, kind: str) -> str | None:
    """Why `value` is not a valid field of this kind, or None when it is."""
    if kind == "str":
        if isinstance(value, str) and value.strip():
            return None
        return f"must be a non-empty string, got {_type_name(value)}"
    if not isinstance(value, list) or not value:
        got = "an empty list" if value == [] else _type_name(value)
        return f"must be a non-empty list of strings, got {got}"
    for i, item in enumerate(value):
        if not (isinstance(item, str) and item.strip()):
            return f"must be a non-empty list of strings, got {_type_name(item)} at position {i}"
    return None


def validate_records(records: list[tuple[str, object]], split: str, origin: str) -> list[dict]:
    """Check every record against the split's required fields; the first problem raises one line."""
    required = REQUIRED_FIELDS[split_kind(split)]
    if not records:
        raise UnlearnError(f"file {origin} is empty: it holds no records")
    out = []
    for where, record in records:
        if not isinstance(record, dict):
            raise UnlearnError(f"{origin} {where}: expected a JSON object, got {_type_name(record)}")
        for name, kind in required.items():
            if name not in record:
                raise UnlearnError(f"{origin} {where}: field {name!r} is missing (split {split} needs it)")
            problem = _field_problem(record[name], kind)
            if problem:
                raise UnlearnError(f"{origin} {where}: field {name!r} {problem}")
        out.append(record)
    return out


# ---------------------------------------------------------------------------------------------------
# Public loaders


def _load_from_hub(name: str, split: str) -> list[dict]:
    try:
        import datasets

        ds = datasets.load_dataset(name, split, split="train")
        rows = [dict(row) for row in ds]
    except Exception as err:  # offline, unknown repo, unknown config: all mean "use a local directory"
        raise hub_error("dataset", name, err, part=f"split {split}") from err
    return validate_records([(f"record {i}", r) for i, r in enumerate(rows)], split, f"{name}:{split}")


def load_perturbed_file(path: str | Path) -> list[dict]:
    """A file of perturbed-schema records (question, answer, paraphrased_answer, perturbed_answer),
    validated: e.g. a world's forgetXX_validation.jsonl."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UnlearnError(f"{path} does not exist: give a JSON lines file of perturbed-schema records")
    return validate_records(_parse_records(path), "validation_perturbed", str(path))


def load_split(source: str | Path, split: str, max_samples: int | None = None) -> list[dict]:
    """Records of one TOFU split, validated; the first `max_samples` when given.

    `source` is a local directory of <split>.jsonl / <split>.json files, or a `datasets` hub name
    (e.g. "locuslab/TOFU"), tried only when no such directory exists.
    """
    if max_samples is not None and (isinstance(max_samples, bool) or max_samples < 1):
        raise UnlearnError(f"max_samples must be a positive integer or None, got {max_samples!r}")
    root = Path(source).expanduser()
    if root.is_dir():
        path = _split_file(root, split)
        records = validate_records(_parse_records(path), split, str(path))
    elif root.exists():
        raise UnlearnError(f"{root} is a file: pass the directory that holds the TOFU split files")
    elif _is_local_path(source):
        raise UnlearnError(f"TOFU directory {root} does not exist")
    else:
        records = _load_from_hub(str(source), split)
    return records[:max_samples] if max_samples is not None else records


def check_perturbed_rows(forget: list[dict], perturbed: list[dict], name: str, source) -> None:
    """forgetXX_perturbed holds the same questions as forgetXX, row for row: a missing or extra row
    would score a different set without a word."""
    if len(forget) != len(perturbed):
        raise UnlearnError(f"{source}: {name} has {len(forget)} rows but {perturbed_split_for(name)} "
                           f"{len(perturbed)}: they must hold the same questions; rebuild the perturbed "
                           "split")
    for i, (f, p) in enumerate(zip(forget, perturbed, strict=True)):
        if f.get("question") != p.get("question"):
            raise UnlearnError(f"{source}: row {i + 1} of {name} and {perturbed_split_for(name)} ask "
                               f"different questions ({f.get('question', '')[:40]!r} vs "
                               f"{p.get('question', '')[:40]!r}): the perturbed split must follow the forget "
                               "split row for row")


@dataclass(frozen=True)
class ConsistencyReport:
    """How a forget split and its retain split relate to `full` (by (question, answer) pairs)."""

    forget: str
    retain: str
    n_forget: int
    n_retain: int
    n_full: int | None  # None when the source has no `full` split
    missing_from_union: int  # pairs of full found in neither split
    extra_in_union: int  # pairs of forget+retain not in full

    @property
    def union_is_full(self) -> bool:
        return self.n_full is not None and self.missing_from_union == 0 and self.extra_in_union == 0


def check_forget_retain(source: str | Path, forget: str) -> ConsistencyReport:
    """Forget and retain must be disjoint and together make `full` (as multisets of pairs).

    Pairs, not questions: real TOFU's `full` asks "What is the full name of the author?" twice with two
    different answers.
    """
    retain = retain_split_for(forget)

    def pairs(split: str) -> Counter:
        return Counter((r["question"], r["answer"]) for r in load_split(source, split))

    f_pairs, r_pairs = pairs(forget), pairs(retain)
    common = f_pairs & r_pairs
    if common:
        question, answer = next(iter(common))
        raise UnlearnError(
            f"{forget} and {retain} overlap on {sum(common.values())} item(s), first: "
            f"question {question[:80]!r} answer {answer[:80]!r}: retain must exclude forget"
        )
    has_full = not Path(source).expanduser().is_dir() or "full" in list_splits(source)
    full = pairs("full") if has_full else None
    union = f_pairs + r_pairs
    return ConsistencyReport(
        forget=forget,
        retain=retain,
        n_forget=sum(f_pairs.values()),
        n_retain=sum(r_pairs.values()),
        n_full=sum(full.values()) if full is not None else None,
        missing_from_union=sum((full - union).values()) if full is not None else 0,
        extra_in_union=sum((union - full).values()) if full is not None else 0,
    )
