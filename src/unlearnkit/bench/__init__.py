"""`unlearn bench`: methods side by side — time per epoch, tokens/s, peak memory, size, TOFU scores, decoding.

One module per concern: run.py orchestrates (BenchConfig, bench()), worker.py runs each measurement in
its own subprocess, measure.py holds the probes, analysis.py the ratios and targets. Definitions
(docs/benchmarks.md):

- time/epoch: median wall time of the epochs after the first (the first one warms up allocators,
  tokenises lazily and builds caches); with a single epoch, that epoch.
- training tokens/s: median over the same epochs of (tokens the epoch fed to the trained model / its wall
  time), where tokens = prompt + answer tokens (padding excluded) of every sequence of every item
  (forget, retain and refusal parts). A reference model's forwards on the same tokens are not counted
  again: they are part of what makes a method slower per token.
- peak memory: the worker's peak resident set size (VmHWM of /proc/self/status, per process image;
  `ru_maxrss` elsewhere). `train_peak_rss` is the peak at the end of training (load + train, before
  evaluation); `train_rss_increase` subtracts the RSS after imports, i.e. what model, optimiser,
  reference copy and activations added.
- decoding tokens/s: greedy generation of exactly `decode_tokens` new tokens per prompt (EOS suppressed
  by min_new_tokens, so both models produce the same count), prefill included; median of `rounds`
  rounds, target and ULD measured alternately so shared-machine noise hits both.
"""

from unlearnkit.bench.run import BENCH_JSON, BENCH_MD, DEFAULT_METHODS, BenchConfig, Target, bench

__all__ = ["BENCH_JSON", "BENCH_MD", "DEFAULT_METHODS", "BenchConfig", "Target", "bench"]
