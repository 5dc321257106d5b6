"""CPU time of the two expensive TOFU eval passes, old way vs new way, in one process on SmolLM2-135M:
answer scoring flat vs on a shared prompt KV cache, and greedy generation at two batch sizes.

    python benchmarks/eval_passes.py [--questions 2] [--gen-questions 32] [--gen-tokens 24]

CPU time (time.process_time) rather than wall time, so a shared machine's load matters less; both
sides run with the same thread count, data and model, and the outputs are checked equal.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from unlearnkit.data.tofu import load_split
from unlearnkit.eval.scoring import answer_nll, answer_nll_shared, generate_answers
from unlearnkit.models.loading import load_model_and_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/tofu")
    parser.add_argument("--questions", type=int, default=2, help="retain questions scored (7 answers each)")
    parser.add_argument("--gen-questions", type=int, default=32)
    parser.add_argument("--gen-tokens", type=int, default=24)
    parser.add_argument("--gen-batches", default="8,32")
    parser.add_argument("--threads", type=int, default=1)
    ns = parser.parse_args()
    torch.set_num_threads(ns.threads)
    model, tok = load_model_and_tokenizer("smollm2-135m")
    rows = load_split(ns.data, "retain_perturbed", max(ns.questions, ns.gen_questions))
    qs = [r["question"] for r in rows[: ns.questions]]
    lists = [[r["answer"], r["paraphrased_answer"], *r["perturbed_answer"]] for r in rows[: ns.questions]]
    pairs = [(q, a) for q, answers in zip(qs, lists, strict=True) for a in answers]
    answer_nll(model, tok, pairs[:2], 16)  # warm-up
    c0 = time.process_time()
    flat = answer_nll(model, tok, pairs, 16)
    c1 = time.process_time()
    shared = [v for vs in answer_nll_shared(model, tok, qs, lists, 16) for v in vs]
    c2 = time.process_time()
    out = {"scoring": {"answers": len(pairs), "flat_cpu_s": round(c1 - c0, 2),
                       "shared_cpu_s": round(c2 - c1, 2),
                       "max_abs_diff": max(abs(a - b) for a, b in zip(flat, shared, strict=True))}}
    gq = [r["question"] for r in rows[: ns.gen_questions]]
    gens = {}
    for bs in (int(b) for b in ns.gen_batches.split(",")):
        c0 = time.process_time()
        gens[bs] = generate_answers(model, tok, gq, bs, ns.gen_tokens)
        cpu = time.process_time() - c0
        out[f"generate_batch_{bs}"] = {"cpu_s": round(cpu, 2),
                                       "tokens_per_cpu_s": round(len(gq) * ns.gen_tokens / cpu, 1)}
    out["same_generations"] = len({tuple(g) for g in gens.values()}) == 1
    out["threads"] = ns.threads
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
