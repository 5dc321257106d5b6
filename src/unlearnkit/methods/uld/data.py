"""ULD's training data: D'f (forget + paraphrases) and D'r (a retain sample + wrong answers), the
augmentation file a run reads, and the held-out validation rows that pick an epoch.

The augmentation and validation files never come from the evaluated split (see data.augment); strings
equal to an evaluated paraphrased/perturbed answer are dropped unless data.allow_eval_overlap.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from unlearnkit.data.augment import augmentation_parts, drop_evaluated, evaluated_strings, read_augmentation
from unlearnkit.data.tofu import load_perturbed_file, perturbed_split_for
from unlearnkit.errors import UnlearnError


def retain_sample(retain: list[dict], n_forget: int, seed: int = 0,
                  retain_size: int | str | None = None) -> list[dict]:
    """ULD's retain pairs: a seeded sample of `retain`.

    `retain_size` None takes |Df| retain pairs (the official code), "all" the whole retain set, an int
    that many: the assistant is only pushed to uniform on the retain questions it sees, so a larger
    sample keeps more of the retain set untouched by the subtraction (same cost per epoch).
    """
    if retain_size is None:
        size = n_forget
    elif retain_size == "all":
        size = len(retain)
    elif isinstance(retain_size, int) and not isinstance(retain_size, bool) and retain_size >= 0:
        size = retain_size
    else:
        raise UnlearnError(f"ULD retain_size={retain_size!r} is not valid: use null (|Df|, the official "
                           "choice), \"all\" or a number of retain examples >= 0")
    order = list(range(len(retain)))
    random.Random(seed).shuffle(order)
    return [{"question": retain[i]["question"], "answer": retain[i]["answer"]} for i in order[:size]]


def uld_parts(forget: list[dict], retain: list[dict], augmentation: list[dict] | None = None,
              seed: int = 0, retain_size: int | str | None = None, use_questions: bool = True,
              paraphrases: int | None = None, wrong: int | None = None) -> dict[str, list[dict]]:
    """ULD's training data by part (docs/design.md §4): D'f = forget + augment_forget, D'r = retain +
    augment_retain. The augmentation (see data.augment) comes from a file of its own, never from the
    evaluated split's paraphrased/perturbed answers; without one, D'f is the forget set alone."""
    parts = {"forget": [{"question": r["question"], "answer": r["answer"]} for r in forget],
             "retain": retain_sample(retain, len(forget), seed, retain_size),
             "augment_forget": [], "augment_retain": []}
    if augmentation:
        parts |= augmentation_parts(augmentation, forget, use_questions, paraphrases, wrong)
    if not parts["retain"] and not parts["augment_retain"]:
        raise UnlearnError("ULD's retain set D'r is empty: give retain examples or an augmentation file "
                           "with wrong answers")
    return parts


def load_augmentation(path: str | None, forget: str, perturbed: list[dict], allow_overlap: bool,
                      say: Callable[[str], None]) -> tuple[list[dict] | None, dict]:
    """The augmentation of method.params.augment_file (or None: unaugmented, said in one line).

    Answers equal to a paraphrased/perturbed answer of the evaluated split (`perturbed`) are dropped
    while reading (kept only with `allow_overlap`, for ablations); returns (records, run.json entry).
    """
    if not path:
        say("ULD: no augmentation file (method.params.augment_file / --augment-file): training unaugmented, "
            "D'f = the forget set")
        return None, {"file": None}
    rows = read_augmentation(path, forget)
    dropped = None
    if not allow_overlap:
        rows, dropped = drop_evaluated(rows, evaluated_strings(perturbed))
    n_para = sum(len(r["paraphrased_answers"]) for r in rows)
    n_wrong = sum(len(r["perturbed_answers"]) for r in rows)
    first = f" (first: {dropped.first!r})" if dropped and dropped.first else ""
    gone = f"; dropped {dropped.count} answers equal to evaluated strings{first}" if dropped else \
        "; evaluated strings kept (data.allow_eval_overlap)"
    say(f"ULD augmentation {path}: {len(rows)} questions, {n_para} paraphrased and {n_wrong} wrong answers"
        f"{gone}")
    return rows, {"file": str(path), "questions": len(rows), "paraphrased_answers": n_para,
                  "wrong_answers": n_wrong, "dropped_evaluated": dropped.count if dropped else None}


def load_validation(path: str, forget: str, perturbed: list[dict]) -> list[dict]:
    """The best-epoch validation rows of `path`, checked disjoint from the reported split (`perturbed`,
    the forget split's perturbed rows): the epoch is chosen on held-out questions."""
    rows = load_perturbed_file(path)
    questions = {r["question"] for r in perturbed}
    evaluated = evaluated_strings(perturbed) | {r["answer"] for r in perturbed}
    shared = [r for r in rows if r["question"] in questions
              or ({r["paraphrased_answer"], *r["perturbed_answer"]} & evaluated)]
    if shared:
        raise UnlearnError(f"validation file {path} shares {len(shared)} rows with the reported split "
                           f"{perturbed_split_for(forget)} (first: {shared[0]['question']!r}): "
                           "the epoch must be chosen on held-out questions")
    return rows
