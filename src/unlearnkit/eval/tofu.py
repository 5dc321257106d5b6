"""The TOFU metric suite, with open-unlearning's metric names, log layout and aggregation.

An eval log is open-unlearning's TOFU_EVAL.json: `{metric: {"agg_value": x, "value_by_index": {"0": {...}}}}`.
Per-sample entries: probabilities `{"prob", "avg_loss"}` (lists for perturbed answers), truth ratio and
normalised probability `{"score"}` / `{"prob"}`, ROUGE `{"rouge1_recall", "rougeL_f1", "rougeL_recall",
"input", "ground_truth", "generation"}`; memorization `{"score"}` (extraction_strength, exact_memorization)
on the forget split; MIA `{"forget": {...}, "holdout": {...}, "auc", "agg_value"}` with per-sample
`{"score"}` on forget and the matching holdout split (higher = less likely a training member), the AUC
telling holdout from forget; privleak `{"agg_value"}` from mia_min_k's AUC. Model passes only fill the
per-sample base metrics; every aggregate and derived metric is then computed by `aggregate`, the same
code `recompute` runs on a saved log, so a log re-read from disk reproduces its summary exactly.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.stats import hmean, ks_2samp

from unlearnkit.data.formatting import rouge_strings
from unlearnkit.data.jsonl import jsonl_text, parse_json, read_utf8
from unlearnkit.data.tofu import (
    check_perturbed_rows,
    holdout_split_for,
    list_splits,
    load_split,
    perturbed_split_for,
)
from unlearnkit.errors import UnlearnError
from unlearnkit.eval.scoring import (
    answer_nll,
    answer_nll_multi,
    answer_nll_shared,
    answer_token_stats,
    generate_answers,
)
from unlearnkit.outputs import write_text

EVAL_FILE = "TOFU_EVAL.json"
SUMMARY_FILE = "TOFU_SUMMARY.json"
SUMMARY_MD = "TOFU_SUMMARY.md"
GENERATIONS_FILE = "TOFU_GENERATIONS.jsonl"
META_FILE = "eval_meta.json"

# The nine components of model utility, in open-unlearning's model_utility.yaml order.
UTILITY_KEYS = (
    "retain_Q_A_Prob", "retain_Q_A_ROUGE", "retain_Truth_Ratio",
    "ra_Q_A_Prob_normalised", "ra_Q_A_ROUGE", "ra_Truth_Ratio",
    "wf_Q_A_Prob_normalised", "wf_Q_A_ROUGE", "wf_Truth_Ratio",
)
# open-unlearning's privacy and memorization metrics (MIA: forget vs the matching holdout split).
MIA_KEYS = ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus")
PRIVACY_KEYS = ("privleak", "extraction_strength", "exact_memorization", *MIA_KEYS)
SUMMARY_KEYS = (
    "forget_quality", "model_utility", "forget_Q_A_Prob", "forget_Q_A_ROUGE", "forget_truth_ratio",
    *UTILITY_KEYS, *PRIVACY_KEYS,
)
TR_EPS = 1e-10  # open-unlearning's epsilon in truth ratio, its aggregators and normalised probability
MIN_K = 0.4  # open-unlearning's k for mia_min_k and mia_min_k_plus_plus (tofu_metrics/*.yaml)
PRIVLEAK_REF = 0.5  # its privleak ref_value: the retain model's AUC when no reference log is given

ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass(frozen=True)
class SplitSpec:
    """One evaluated split: metric prefix, data split, and how its truth ratio is formed."""

    prefix: str  # forget | retain | ra | wf
    paraphrased: bool  # truth ratio's correct answer: paraphrased_answer (else the answer itself)
    tr_name: str  # open-unlearning's key for the truth ratio metric
    tr_aggregator: str  # closer_to_1_better | true_better


SPECS = (
    SplitSpec("forget", True, "forget_truth_ratio", "closer_to_1_better"),
    SplitSpec("retain", True, "retain_Truth_Ratio", "true_better"),
    SplitSpec("ra", False, "ra_Truth_Ratio", "true_better"),
    SplitSpec("wf", False, "wf_Truth_Ratio", "true_better"),
)


def split_names(forget: str) -> dict[str, str]:
    """Metric prefix -> data split (open-unlearning's TOFU_QA_* datasets)."""
    return {"forget": perturbed_split_for(forget), "retain": "retain_perturbed",
            "ra": "real_authors_perturbed", "wf": "world_facts_perturbed"}


# ---------------------------------------------------------------------------------------------------
# Aggregation (pure numpy/scipy on per-sample values; shared by evaluation and recompute)


def _row_means(values: list) -> np.ndarray:
    """open-unlearning's aggregate_to_1D: a per-sample list (perturbed answers) becomes its mean."""
    return np.array([np.mean(v) for v in values], dtype=np.float64)


def _valid(vbi: dict, field: str) -> list[str]:
    return [k for k, v in vbi.items() if v is not None and v.get(field) is not None]


def mean_of(vbi: dict, field: str) -> float:
    """Mean of one per-sample field (None entries skipped), as open-unlearning's probability/rouge do."""
    keys = _valid(vbi, field)
    if not keys:
        raise UnlearnError(f"no per-sample {field!r} values to aggregate: the eval log is empty or corrupt")
    return float(np.mean(_row_means([vbi[k][field] for k in keys])))


def truth_ratio_by_index(correct: dict, wrong: dict) -> dict:
    """R = exp(-mean_j avg_loss(perturbed_j)) / (exp(-avg_loss(correct)) + 1e-10), per index."""
    keys = [k for k in _valid(correct, "avg_loss") if k in wrong and wrong[k] is not None]
    c = _row_means([correct[k]["avg_loss"] for k in keys])
    w = _row_means([wrong[k]["avg_loss"] for k in keys])
    ratios = np.exp(-w) / (np.exp(-c) + TR_EPS)
    return {k: {"score": float(r)} for k, r in zip(keys, ratios, strict=True)}


def aggregate_truth_ratio(scores: np.ndarray, aggregator: str) -> float:
    """Forget: closer to 1 is better, mean(min(R, 1/R)); others: true better, mean(max(0, 1 - R))."""
    if aggregator == "closer_to_1_better":
        return float(np.mean(np.minimum(scores, 1 / (scores + TR_EPS))))
    if aggregator == "true_better":
        return float(np.mean(np.maximum(0, 1 - scores)))
    raise ValueError(f"unknown truth ratio aggregator {aggregator!r}")


def normalised_prob_by_index(correct: dict, wrong: dict) -> dict:
    """p(answer) / (p(answer) + sum_j p(perturbed_j) + 1e-10), per index."""
    keys = [k for k in _valid(correct, "prob") if k in wrong and wrong[k] is not None]
    c = np.array([correct[k]["prob"] for k in keys], dtype=np.float64)
    w = np.array([np.sum(np.asarray(wrong[k]["prob"], dtype=np.float64)) for k in keys])
    probs = c / (c + w + TR_EPS)
    return {k: {"prob": float(p)} for k, p in zip(keys, probs, strict=True)}


def tr_scores(log: dict, name: str = "forget_truth_ratio") -> np.ndarray:
    vbi = log.get(name, {}).get("value_by_index")
    if not vbi:
        raise UnlearnError(f"the eval log has no per-sample {name!r}: it is not a TOFU_EVAL.json")
    scores = np.array([v["score"] for v in vbi.values() if v is not None and v.get("score") is not None],
                      dtype=np.float64)
    if not len(scores) or not np.isfinite(scores).all():
        raise UnlearnError(f"the eval log's {name!r} holds {'no' if not len(scores) else 'non-finite'} "
                           "per-sample scores: re-run `unlearn eval` to rebuild the log")
    return scores


def forget_quality(log: dict, reference: dict) -> float:
    """KS-test p-value between our and the retain model's raw per-sample forget truth ratios."""
    return float(ks_2samp(tr_scores(log), tr_scores(reference)).pvalue)


def min_k_score(values: list[float], k: float = MIN_K) -> float:
    """Min-k% attack score: minus the mean of the lowest max(1, int(n*k)) values (0 when empty)."""
    if len(values) == 0:
        return 0.0
    n = max(1, int(len(values) * k))
    return float(-np.mean(np.sort(np.asarray(values, dtype=np.float64))[:n]))


def zlib_score(avg_loss: float, text: str) -> float:
    """Zlib attack score: the average loss over the zlib-compressed length (bytes) of the answer text."""
    import zlib

    return avg_loss / len(zlib.compress(text.encode("utf-8")))


def exact_memorization_score(matches: list[bool]) -> float | None:
    """Share of answer tokens whose argmax prediction is the label (None without tokens)."""
    return float(np.mean(matches)) if len(matches) else None


def extraction_strength_score(matches: list[bool]) -> float:
    """1 - k/n for the smallest k whose suffix of predictions all equal the labels, as open-unlearning
    computes it: its loop stops at k = n-1, so a row with no matching suffix still scores 1/n."""
    n = len(matches)
    if n == 0:
        return 0.0
    k = 0
    for k in range(n):
        if all(matches[k:]):
            break
    return 1 - k / n


def mia_auc(forget_scores: list[float], holdout_scores: list[float]) -> float:
    """ROC AUC of telling holdout (label 1) from forget (label 0) by score: the Mann-Whitney statistic
    with average ranks for ties, which equals sklearn's roc_auc_score that open-unlearning uses."""
    from scipy.stats import rankdata

    n0, n1 = len(forget_scores), len(holdout_scores)
    if not n0 or not n1:
        raise UnlearnError("MIA AUC needs forget and holdout scores: the eval log lacks one of them")
    ranks = rankdata(np.concatenate([np.asarray(forget_scores, float), np.asarray(holdout_scores, float)]))
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def privleak(auc: float, ref_auc: float = PRIVLEAK_REF) -> float:
    """open-unlearning's privleak: relative difference of (1 - AUC) to the retain model's, in percent."""
    score, ref = 1 - auc, 1 - ref_auc
    return (score - ref) / (ref + TR_EPS) * 100


def _scores(vbi: dict) -> list[float]:
    return [v["score"] for v in vbi.values() if v is not None and v.get("score") is not None]


def aggregate_privacy(log: dict, reference: dict | None = None) -> None:
    """AUCs, means and privleak of the MIA/memorization entries of a log, from per-sample scores."""
    for key in ("extraction_strength", "exact_memorization"):
        if log.get(key, {}).get("value_by_index"):
            log[key]["agg_value"] = float(np.mean(_scores(log[key]["value_by_index"])))
    for key in MIA_KEYS:
        entry = log.get(key)
        if not entry or "forget" not in entry or "holdout" not in entry:
            continue
        for part in ("forget", "holdout"):
            entry[part]["agg_value"] = float(np.mean(_scores(entry[part]["value_by_index"])))
        auc = mia_auc(_scores(entry["forget"]["value_by_index"]), _scores(entry["holdout"]["value_by_index"]))
        entry["auc"] = entry["agg_value"] = auc
    if log.get("mia_min_k", {}).get("agg_value") is not None:
        ref = (reference or {}).get("mia_min_k", {}).get("agg_value")
        log["privleak"] = {"agg_value": privleak(log["mia_min_k"]["agg_value"],
                                                 PRIVLEAK_REF if ref is None else ref),
                           "ref_value": PRIVLEAK_REF if ref is None else ref}


def aggregate(log: dict, reference: dict | None = None) -> dict:
    """Fill every aggregate and derived metric of a log from its per-sample base values (in place)."""
    aggregate_privacy(log, reference)
    for spec in SPECS:
        p = spec.prefix
        for key in (f"{p}_Q_A_Prob", f"{p}_Q_A_PARA_Prob", f"{p}_Q_A_PERT_Prob"):
            if key in log and log[key].get("value_by_index"):
                log[key]["agg_value"] = mean_of(log[key]["value_by_index"], "prob")
        rouge_key = f"{p}_Q_A_ROUGE"
        if rouge_key in log and log[rouge_key].get("value_by_index"):
            log[rouge_key]["agg_value"] = mean_of(log[rouge_key]["value_by_index"], "rougeL_recall")
        correct_key = f"{p}_Q_A_PARA_Prob" if spec.paraphrased else f"{p}_Q_A_Prob"
        wrong_key = f"{p}_Q_A_PERT_Prob"
        if correct_key in log and wrong_key in log:
            vbi = truth_ratio_by_index(log[correct_key]["value_by_index"], log[wrong_key]["value_by_index"])
            log[spec.tr_name] = {"agg_value": None, "value_by_index": vbi}
        if spec.tr_name in log:
            scores = tr_scores(log, spec.tr_name)
            log[spec.tr_name]["agg_value"] = aggregate_truth_ratio(scores, spec.tr_aggregator)
        if not spec.paraphrased and correct_key in log and wrong_key in log:
            vbi = normalised_prob_by_index(log[correct_key]["value_by_index"],
                                           log[wrong_key]["value_by_index"])
            log[f"{p}_Q_A_Prob_normalised"] = {"agg_value": mean_of(vbi, "prob"), "value_by_index": vbi}
    fq = forget_quality(log, reference) if reference is not None and "forget_truth_ratio" in log else None
    log["forget_quality"] = {"agg_value": fq}
    parts = [log.get(k, {}).get("agg_value") for k in UTILITY_KEYS]
    mu = float(hmean(parts)) if all(v is not None for v in parts) else None
    log["model_utility"] = {"agg_value": mu}
    return log


def summarize(log: dict) -> dict:
    """Headline aggregates (None values left out, as open-unlearning's summary does); a NaN is an error,
    never a reported number."""
    out = {}
    for key in SUMMARY_KEYS:
        value = log.get(key, {}).get("agg_value")
        if value is not None:
            if not np.isfinite(value):
                raise UnlearnError(f"{key} came out {value}: the per-sample values behind it are not finite "
                                   "(a diverged model or a corrupt log); nothing was reported")
            out[key] = value
    return out


NUMERIC_FIELDS = ("prob", "avg_loss", "score", "rouge1_recall", "rougeL_f1", "rougeL_recall")


def _numbers(value) -> bool:
    items = value if isinstance(value, list) else [value]
    return bool(items) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in items)


def check_eval_log(log: dict, where: str | Path) -> None:
    """The shape a TOFU_EVAL.json must have before anything is aggregated from it, with the bad spot named."""
    for key, metric in log.items():
        if not isinstance(metric, dict):
            raise UnlearnError(f"{where}: metric {key!r} is {type(metric).__name__}, not an object: "
                               "not a TOFU_EVAL.json")
        vbi = metric.get("value_by_index")
        if vbi is None:
            continue
        if not isinstance(vbi, dict):
            raise UnlearnError(f"{where}: {key}.value_by_index is {type(vbi).__name__}, not an object "
                               "of per-sample entries: not a TOFU_EVAL.json")
        for idx, entry in vbi.items():
            if entry is None:
                continue
            if not isinstance(entry, dict):
                raise UnlearnError(f"{where}: {key}[{idx}] is {type(entry).__name__}, not an object")
            for field_name in NUMERIC_FIELDS:
                if field_name in entry and entry[field_name] is not None and not _numbers(entry[field_name]):
                    raise UnlearnError(f"{where}: {key}[{idx}].{field_name} is {entry[field_name]!r:.40}, "
                                       "not a number: the log is corrupt; re-run `unlearn eval`")


def log_notes(log: dict) -> list[str]:
    """What a recomputed summary silently lacks or rests on less of: missing metrics, missing samples."""
    notes = []
    missing = [k for k in UTILITY_KEYS if log.get(k, {}).get("agg_value") is None]
    if missing:
        notes.append(f"model_utility not computed: the log lacks {', '.join(missing)}")
    for spec in SPECS:
        keys = [k for k in (f"{spec.prefix}_Q_A_Prob", f"{spec.prefix}_Q_A_PARA_Prob",
                            f"{spec.prefix}_Q_A_PERT_Prob", f"{spec.prefix}_Q_A_ROUGE") if k in log]
        sets = {k: {i for i, e in (log[k].get("value_by_index") or {}).items() if e is not None}
                for k in keys}
        union = set().union(*sets.values()) if sets else set()
        short = {k: len(union) - len(v) for k, v in sets.items() if len(v) < len(union)}
        if short:
            notes.append(f"{spec.prefix}: per-sample entries missing ("
                         + ", ".join(f"{k} lacks {n} of {len(union)}" for k, n in short.items())
                         + "); its aggregates cover fewer samples")
    return notes


def recompute(eval_log: dict, reference: dict | None = None) -> dict:
    """The summary recomputed from per-sample values only (ours or open-unlearning's TOFU_EVAL.json)."""
    if not isinstance(eval_log, dict) or "forget_truth_ratio" not in eval_log and not any(
        k.startswith("forget_Q_A") for k in eval_log
    ):
        raise UnlearnError("not a TOFU eval log: no forget metrics found (expected a TOFU_EVAL.json)")
    return recompute_with_notes(eval_log, reference)[0]


def recompute_with_notes(eval_log: dict, reference: dict | None = None) -> tuple[dict, list[str]]:
    """recompute(), plus what the summary lacks (log_notes), for the CLI to say out loud."""
    log = aggregate(copy.deepcopy(eval_log), reference)
    return summarize(log), log_notes(log)


# ---------------------------------------------------------------------------------------------------
# Model passes


def _vbi(values: list) -> dict:
    return {str(i): v for i, v in enumerate(values)}


def _prob_entries(nlls: list[float]) -> list[dict]:
    """{"prob", "avg_loss"} per sample; prob = exp(-avg_loss) in float32, as open-unlearning computes it."""
    probs = torch.exp(-torch.tensor(nlls, dtype=torch.float32)).tolist()
    return [{"prob": p, "avg_loss": a} for p, a in zip(probs, nlls, strict=True)]


def _multi_prob_entries(nll_lists: list[list[float]]) -> list[dict]:
    out = []
    for nlls in nll_lists:
        entries = _prob_entries(nlls)
        out.append({"prob": [e["prob"] for e in entries], "avg_loss": [e["avg_loss"] for e in entries]})
    return out


def rouge_entries(tokenizer, questions: list[str], answers: list[str], generations: list[str]) -> list[dict]:
    """rouge1/rougeL (stemmed) of generation vs answer, as open-unlearning's eval_text_similarity."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    out = []
    for q, a, g in zip(questions, answers, generations, strict=True):
        input_text, reference = rouge_strings(tokenizer, q, a)
        s = scorer.score(reference, g)
        out.append({
            "rouge1_recall": s["rouge1"].recall,
            "rougeL_f1": s["rougeL"].fmeasure,
            "rougeL_recall": s["rougeL"].recall,
            "input": input_text,
            "ground_truth": reference,
            "generation": g,
            "question": q,
        })
    return out


def mia_entries(tokenizer, stats: list[dict]) -> dict[str, list[dict]]:
    """Per-sample attack scores (higher = less likely a member) from `answer_token_stats` rows."""
    out: dict[str, list[dict]] = {k: [] for k in MIA_KEYS}
    for st in stats:
        text = tokenizer.decode(st["label_ids"], skip_special_tokens=True)
        out["mia_loss"].append({"score": st["avg_loss"]})
        out["mia_zlib"].append({"score": zlib_score(st["avg_loss"], text)})
        out["mia_min_k"].append({"score": min_k_score(st["token_logp"])})
        out["mia_min_k_plus_plus"].append({"score": min_k_score(st["token_z"])})
    return out


def memorization_entries(stats: list[dict]) -> dict[str, list[dict]]:
    """Per-sample exact memorization and extraction strength from `answer_token_stats` rows."""
    return {"exact_memorization": [{"score": exact_memorization_score(st["argmax_match"])} for st in stats],
            "extraction_strength": [{"score": extraction_strength_score(st["argmax_match"])} for st in stats]}


def _noop(_: int) -> None:
    return None


GEN_BATCH_SIZE = 64  # open-unlearning's ROUGE batch; on CPU 2.1x the tokens/CPU-s of batch 8 (docs)


def score_split(model, tokenizer, rows: list[dict], spec: SplitSpec, batch_size: int = 16,
                max_new_tokens: int = 200, progress: ProgressFactory | None = None,
                gen_batch_size: int | None = GEN_BATCH_SIZE) -> dict:
    """Per-sample base metrics of one split (probabilities and generations); no aggregates yet.
    Generation runs in batches of `gen_batch_size` (None: `batch_size`): greedy decoding is bound by
    per-step overhead, so larger batches are cheaper per token; outputs do not depend on it (tested)."""
    def bar(name: str) -> Callable[[int], None]:
        return progress(f"{spec.prefix} {name}", len(rows)) if progress else _noop

    p = spec.prefix
    qs = [r["question"] for r in rows]
    answers = [r["answer"] for r in rows]
    log = {}
    pairs = list(zip(qs, answers, strict=True))
    if p == "forget":  # one forward gives Q_A_Prob, memorization and the forget side of every MIA
        stats = answer_token_stats(model, tokenizer, pairs, batch_size, callback=bar("Q_A_Prob+MIA"))
        nll = [st["avg_loss"] for st in stats]
        for key, entries in memorization_entries(stats).items():
            log[key] = {"agg_value": None, "value_by_index": _vbi(entries)}
        for key, entries in mia_entries(tokenizer, stats).items():
            log[key] = {"forget": {"agg_value": None, "value_by_index": _vbi(entries)}}
    # The other answers of each question (answer, paraphrase, perturbed) share its prompt's KV cache.
    own = [[] if p == "forget" else [a] for a in answers]
    para = [[r["paraphrased_answer"]] if spec.paraphrased else [] for r in rows]
    pert = [list(r["perturbed_answer"]) for r in rows]
    lists = [o + q + w for o, q, w in zip(own, para, pert, strict=True)]
    nlls = answer_nll_shared(model, tokenizer, qs, lists, batch_size, callback=bar("Q_A_PARA/PERT_Prob"))
    if p != "forget":
        nll = [v[0] for v in nlls]
    log[f"{p}_Q_A_Prob"] = {"agg_value": None, "value_by_index": _vbi(_prob_entries(nll))}
    if spec.paraphrased:
        para_nll = [v[len(o)] for v, o in zip(nlls, own, strict=True)]
        log[f"{p}_Q_A_PARA_Prob"] = {"agg_value": None, "value_by_index": _vbi(_prob_entries(para_nll))}
    pert_nll = [v[len(o) + len(q):] for v, o, q in zip(nlls, own, para, strict=True)]
    log[f"{p}_Q_A_PERT_Prob"] = {"agg_value": None, "value_by_index": _vbi(_multi_prob_entries(pert_nll))}
    gens = generate_answers(model, tokenizer, qs, gen_batch_size or batch_size, max_new_tokens,
                            callback=bar("Q_A_ROUGE"))
    rouge = rouge_entries(tokenizer, qs, answers, gens)
    log[f"{p}_Q_A_ROUGE"] = {"agg_value": None, "value_by_index": _vbi(rouge)}
    return log


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialised torch.distributed group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous block [lo, hi) of n rows for `rank`: gathering blocks in rank order restores the order."""
    return n * rank // world, n * (rank + 1) // world


def merge_shards(parts: list[dict]) -> dict:
    """Per-split logs of consecutive row blocks -> one log, value_by_index renumbered 0..n-1 in order."""
    merged: dict = {}
    for part in parts:
        _merge_into(merged, part)
    return merged


def _merge_into(merged: dict, part: dict) -> None:
    for key, metric in part.items():
        if "value_by_index" not in metric:  # an MIA entry: {"forget": {...}, "holdout": {...}}
            _merge_into(merged.setdefault(key, {}), metric)
            continue
        values = merged.setdefault(key, {"agg_value": None, "value_by_index": {}})["value_by_index"]
        offset = len(values)
        for i in range(len(metric["value_by_index"])):
            values[str(offset + i)] = metric["value_by_index"][str(i)]


def evaluate_tofu(
    model,
    tokenizer,
    data: str | Path,
    forget: str = "forget10",
    reference: dict | None = None,
    max_samples: int | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 200,
    progress: ProgressFactory | None = None,
    gen_batch_size: int | None = GEN_BATCH_SIZE,
) -> tuple[dict, dict]:
    """Run the TOFU suite: (summary, eval_log) in open-unlearning's TOFU_SUMMARY/TOFU_EVAL layout.

    `reference` is the retain model's eval log (TOFU_EVAL.json dict) for forget_quality; without it
    forget_quality is None and left out of the summary. `progress(name, total)` returns an advance(n)
    callback, one per metric pass. Under several processes (torch.distributed initialised), each rank
    scores a contiguous block of every split; the blocks are gathered in rank order and aggregated
    once, so the log equals one process's up to float noise.
    """
    if reference is not None:
        tr_scores(reference)  # fail before the model passes, not after
    names = split_names(forget)
    if Path(data).is_dir() and forget in list_splits(data):  # eval-only layouts hold just *_perturbed
        check_perturbed_rows(load_split(data, forget, max_samples),
                             load_split(data, names["forget"], max_samples), forget, data)
    rank, world = rank_and_world()
    log: dict = {}
    for spec in SPECS:
        rows = load_split(data, names[spec.prefix], max_samples)
        lo, hi = shard_bounds(len(rows), rank, world)
        part = score_split(model, tokenizer, rows[lo:hi], spec, batch_size, max_new_tokens,
                           progress if rank == 0 else None, gen_batch_size) if hi > lo else {}
        if world > 1:
            import torch.distributed as dist

            parts: list = [None] * world
            dist.all_gather_object(parts, part)
            part = merge_shards(parts)
        log.update(part)
    holdout = score_holdout(model, tokenizer, data, forget, max_samples, batch_size, progress, rank, world)
    for key, entry in holdout.items():
        if key in log:
            log[key]["holdout"] = entry
    aggregate(log, reference)
    return summarize(log), dict(sorted(log.items()))


def score_holdout(model, tokenizer, data: str | Path, forget: str, max_samples: int | None,
                  batch_size: int, progress: ProgressFactory | None, rank: int = 0, world: int = 1) -> dict:
    """The holdout side of every MIA ({key: {"value_by_index"}}); {} when the data has no holdout split."""
    name = holdout_split_for(forget)
    try:
        rows = load_split(data, name, max_samples)
    except UnlearnError as err:
        warnings.warn(f"no MIA metrics or privleak: {err}", stacklevel=2)
        return {}
    lo, hi = shard_bounds(len(rows), rank, world)
    rows = rows[lo:hi]
    bar = progress("holdout MIA", len(rows)) if progress and rank == 0 else _noop
    stats = answer_token_stats(model, tokenizer, [(r["question"], r["answer"]) for r in rows], batch_size,
                               callback=bar)
    part = {key: {"agg_value": None, "value_by_index": _vbi(v)}
            for key, v in mia_entries(tokenizer, stats).items()} if rows else {}
    if world > 1:
        import torch.distributed as dist

        parts: list = [None] * world
        dist.all_gather_object(parts, part)
        part = merge_shards(parts)
    return part


def forget_truth_ratios(model, tokenizer, rows: list[dict], batch_size: int = 16) -> list[float]:
    """Per-row forget truth-ratio scores min(R, 1/R) of perturbed-schema rows (no generation)."""
    questions = [r["question"] for r in rows]
    para = answer_nll(model, tokenizer, [(r["question"], r["paraphrased_answer"]) for r in rows], batch_size)
    pert = answer_nll_multi(model, tokenizer, questions, [r["perturbed_answer"] for r in rows], batch_size)
    ratios = truth_ratio_by_index(_vbi(_prob_entries(para)), _vbi(_multi_prob_entries(pert)))
    return [v["score"] for v in ratios.values()]


def forget_quality_only(model, tokenizer, data: str | Path, forget: str, reference: dict,
                        max_samples: int | None = None, batch_size: int = 16) -> float:
    """Forget quality from the forget truth ratios alone (no generation): cheap enough for every epoch."""
    rows = load_split(data, perturbed_split_for(forget), max_samples)
    scores = forget_truth_ratios(model, tokenizer, rows, batch_size)
    return float(ks_2samp(scores, tr_scores(reference)).pvalue)


# ---------------------------------------------------------------------------------------------------
# Files


def load_eval_log(path: str | Path) -> dict:
    """A TOFU_EVAL.json, given as the file or as a directory that holds one."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / EVAL_FILE
    if not path.is_file():
        raise UnlearnError(f"{path} not found: pass a TOFU_EVAL.json or the eval directory holding it")
    log = parse_json(read_utf8(path), path)
    if not isinstance(log, dict):
        raise UnlearnError(f"{path} is not a TOFU eval log (expected a JSON object of metrics)")
    check_eval_log(log, path)
    return log


def load_reference(path: str | Path) -> dict:
    """A retain model's eval log, checked to hold per-sample forget truth ratios."""
    log = load_eval_log(path)
    if not log.get("forget_truth_ratio", {}).get("value_by_index"):
        raise UnlearnError(
            f"{path} has no per-sample forget_truth_ratio: pass the retain model's TOFU_EVAL.json"
        )
    tr_scores(log)  # finite scores, or an error now rather than a nan forget quality later
    return log


def recorded_format(path: str | Path) -> dict | None:
    """The prompt format an eval log was produced with, from the eval_meta.json beside it.

    Logs written before formats existed used `chat`; a log with no eval_meta.json (open-unlearning's own
    output directory) records none, and None is returned.
    """
    path = Path(path).expanduser()
    meta_path = (path if path.is_dir() else path.parent) / META_FILE
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        return None
    fmt = meta.get("prompt_format") or {"name": "chat", "system_prompt": None}
    return fmt if isinstance(fmt, dict) else {"name": str(fmt), "system_prompt": meta.get("system_prompt")}


def check_reference_format(path: str | Path, fmt: dict) -> None:
    """Refuse a reference log scored under another prompt format: its truth ratios are not comparable."""
    ref = recorded_format(path)
    if ref is None:
        return
    mine = (fmt.get("name"), fmt.get("system_prompt"))
    theirs = (ref.get("name"), ref.get("system_prompt"))
    if mine != theirs:
        raise UnlearnError(
            f"reference {path} was evaluated with prompt format {theirs[0]!r} (system prompt "
            f"{theirs[1]!r}), this eval uses {mine[0]!r} (system prompt {mine[1]!r}): re-evaluate the "
            "retain model with the same --prompt-format/--system-prompt"
        )


def generations_from_log(eval_log: dict) -> list[dict]:
    """Rows {split, index, question, answer, generation} from every *_Q_A_ROUGE metric of a log."""
    rows = []
    for key in sorted(k for k in eval_log if k.endswith("_Q_A_ROUGE")):
        for idx, e in eval_log[key].get("value_by_index", {}).items():
            rows.append({"split": key[: -len("_Q_A_ROUGE")], "index": int(idx),
                         "question": e.get("question", e.get("input")), "answer": e.get("ground_truth"),
                         "generation": e.get("generation")})
    return rows


def format_value(key: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3e}" if key == "forget_quality" else f"{value:.4f}"


def summary_markdown(summary: dict, title: str | None = None) -> str:
    """A two-column markdown table of the summary, forget_quality in scientific notation."""
    lines = [f"## {title}", ""] if title else []
    lines += ["| metric | value |", "|---|---|"]
    keys = list(SUMMARY_KEYS)
    if "forget_quality" not in summary:
        lines.append("| forget_quality | n/a (no --reference retain-model log) |")
        keys.remove("forget_quality")
    lines += [f"| {k} | {format_value(k, summary[k])} |" for k in keys if k in summary]
    return "\n".join(lines) + "\n"


def write_eval(out_dir: str | Path, summary: dict, eval_log: dict, generations: list[dict] | None = None,
               meta: dict | None = None) -> dict[str, Path]:
    """Write TOFU_SUMMARY.json/.md, TOFU_EVAL.json, TOFU_GENERATIONS.jsonl and eval_meta.json atomically."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    if generations is None:
        generations = generations_from_log(eval_log)
    meta = {"written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **(meta or {})}
    if "forget_quality" not in summary:
        meta.setdefault("forget_quality_note", "omitted: no reference (retain model TOFU_EVAL.json) given")
    files = {
        "eval": (out / EVAL_FILE, json.dumps(dict(sorted(eval_log.items())), indent=4)),
        "summary": (out / SUMMARY_FILE, json.dumps(summary, indent=4)),
        "markdown": (out / SUMMARY_MD, summary_markdown(summary, meta.get("name"))),
        "generations": (out / GENERATIONS_FILE, jsonl_text(generations)),
        "meta": (out / META_FILE, json.dumps(meta, indent=2, default=str)),
    }
    for path, text in files.values():
        write_text(path, text)
    return {k: v[0] for k, v in files.items()}
