"""Tokens/s of `unlearn serve` at 1 and N concurrent clients (official `openai` client, 127.0.0.1 only).

    python scripts/serve_throughput.py MODEL --data DATA_DIR [--clients 1,8] [--requests 4] [--max-tokens 64]

Starts `unlearn serve MODEL` on a free loopback port, waits until it answers, then for each concurrency
level runs that many client threads; each sends --requests greedy chat requests (forget-split
questions) one after another. Reports completion tokens (from `usage`) / wall seconds, and stops the
server it started.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="forget10")
    ap.add_argument("--clients", default="1,8")
    ap.add_argument("--requests", type=int, default=4, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    args = ap.parse_args()

    from openai import OpenAI

    from unlearnkit.data.tofu import load_split

    questions = [r["question"] for r in load_split(args.data, args.split)]
    port = free_port()
    cmd = [sys.executable, "-m", "unlearnkit.cli", "serve", args.model, "--host", "127.0.0.1", "--port",
           str(port), "--threads", str(args.threads), "--log-level", "warning"]
    server = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", timeout=600, max_retries=0)
        deadline = time.monotonic() + 300
        while True:
            try:
                name = client.models.list().data[0].id
                break
            except Exception:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.5)
        # warm-up
        client.chat.completions.create(model=name, messages=[{"role": "user", "content": questions[0]}],
                                       temperature=0, max_tokens=4)
        results = {}
        for n in (int(c) for c in args.clients.split(",")):
            tokens = [0] * n

            def worker(i: int, n: int = n, tokens: list = tokens) -> None:
                for r in range(args.requests):
                    q = questions[(i * args.requests + r) % len(questions)]
                    res = client.chat.completions.create(
                        model=name, temperature=0, max_tokens=args.max_tokens,
                        messages=[{"role": "user", "content": q}])
                    tokens[i] += res.usage.completion_tokens

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            secs = time.perf_counter() - start
            results[n] = {"clients": n, "requests": n * args.requests, "completion_tokens": sum(tokens),
                          "seconds": round(secs, 2), "tokens_per_s": round(sum(tokens) / secs, 1)}
            print(json.dumps(results[n]), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
