"""`unlearn serve`: the OpenAI-compatible server, talked to with the official `openai` client on 127.0.0.1.

The greedy answers must equal `unlearn generate`'s (plain model and ULD artifact), streaming must give
the same text as a plain response, concurrent requests are batched, and bad requests get OpenAI-style
JSON errors.
"""

from __future__ import annotations

import json
import threading

import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from unlearnkit.eval.scoring import generate_answers  # noqa: E402
from unlearnkit.models.loading import load_model_and_tokenizer  # noqa: E402
from unlearnkit.serve import Engine, Job, start_in_thread, stop_holdback  # noqa: E402

torch.set_num_threads(1)
QUESTION = "Who is the author of the book?"


@pytest.fixture(scope="module")
def target(micro_world):
    return load_model_and_tokenizer(micro_world.target_dir)


@pytest.fixture(scope="module")
def artifact(micro_world, target, tmp_path_factory):
    """A ULD artifact of the micro target (assistant K=1; LoRA A randomised so it is not the target)."""
    from unlearnkit.methods.uld.assistant import build_assistant
    from unlearnkit.methods.uld.model import ULDModel

    model, tok = load_model_and_tokenizer(micro_world.target_dir)
    assistant = build_assistant(model, 1)
    with torch.no_grad():
        for name, p in assistant.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    uld = ULDModel.from_target(model, assistant, weight=1.0, filter_factor=0.5,
                               target_path=str(micro_world.target_dir))
    art = tmp_path_factory.mktemp("serve") / "uld"
    uld.save_pretrained(art, tokenizer=tok)
    return art


@pytest.fixture(scope="module")
def plain_server(target):
    model, tok = target
    running = start_in_thread(model, tok, "micro-target")
    yield running
    running.stop()


def client(running) -> openai.OpenAI:
    return openai.OpenAI(base_url=running.url, api_key="unused", timeout=120, max_retries=0)


def test_plain_model_chat_completion_and_stream(plain_server, target):
    model, tok = target
    c = client(plain_server)
    assert [m.id for m in c.models.list().data] == ["micro-target"]
    want = generate_answers(model, tok, [QUESTION], max_new_tokens=12)[0]
    res = c.chat.completions.create(model="micro-target", messages=[{"role": "user", "content": QUESTION}],
                                    temperature=0, max_tokens=12)
    assert res.choices[0].message.content.strip() == want
    assert res.usage.completion_tokens <= 12 and res.choices[0].finish_reason in ("stop", "length")
    pieces, finish = [], None
    for chunk in c.chat.completions.create(model="micro-target", temperature=0, max_tokens=12, stream=True,
                                           messages=[{"role": "user", "content": QUESTION}]):
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces) == res.choices[0].message.content and finish == res.choices[0].finish_reason


def test_completions_stop_strings_and_sampling(plain_server):
    c = client(plain_server)
    prompt = "Question: Where was the author born?\nAnswer:"
    full = c.completions.create(model="micro-target", prompt=prompt, temperature=0, max_tokens=16)
    text = full.choices[0].text
    assert full.usage.prompt_tokens > 0 and len(text) > 3
    stop = text[2:4]  # cut inside the greedy text: the answer ends right before its first occurrence
    cut = c.completions.create(model="micro-target", prompt=prompt, temperature=0, max_tokens=16, stop=[stop])
    assert cut.choices[0].text == text[: text.find(stop)] and cut.choices[0].finish_reason == "stop"
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model="micro-target", prompt=prompt, temperature=0, max_tokens=16, stop=[stop], stream=True)
        if ch.choices)
    assert streamed == cut.choices[0].text  # the held-back prefix of the stop string is never sent
    a, b = (c.completions.create(model="micro-target", prompt=prompt, temperature=1.5, top_p=0.9, seed=7,
                                 max_tokens=8).choices[0].text for _ in range(2))
    assert a == b  # same seed, same sample


def test_uld_artifact_answers_like_unlearn_generate(artifact):
    from typer.testing import CliRunner

    from unlearnkit.cli import app
    from unlearnkit.methods.uld.model import load_uld

    res = CliRunner().invoke(app, ["generate", "--model", str(artifact), QUESTION, "--max-new-tokens", "12"])
    assert res.exit_code == 0, res.output
    want = res.stdout.strip()
    uld, tok = load_uld(artifact, merge=True)
    target_answer = generate_answers(uld.target, tok, [QUESTION], max_new_tokens=12)[0]
    running = start_in_thread(uld, tok, "uld")
    try:
        c = client(running)
        msg = [{"role": "user", "content": QUESTION}]
        got = c.chat.completions.create(model="uld", messages=msg, temperature=0, max_tokens=12)
        assert got.choices[0].message.content.strip() == want != target_answer  # ULD, not the target
        streamed = "".join(ch.choices[0].delta.content or "" for ch in c.chat.completions.create(
            model="uld", messages=msg, temperature=0, max_tokens=12, stream=True) if ch.choices)
        assert streamed.strip() == want
        answers = [None] * 4  # concurrent clients: the same prompt, so batching must not change a token

        def ask(i):
            answers[i] = c.chat.completions.create(model="uld", messages=msg, temperature=0,
                                                   max_tokens=12).choices[0].message.content
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert [a.strip() for a in answers] == [want] * 4
    finally:
        running.stop()


def test_engine_batches_waiting_jobs(target):
    model, tok = target
    engine = Engine(model, tok, max_batch=8, start=False)
    questions = [QUESTION] * 3 + ["Where was the author born?"]
    from unlearnkit.data.formatting import prompt_ids

    # job 0 stops after 2 tokens: the batch then shrinks (cache rows dropped) while the others go on
    jobs = [engine.submit(Job(prompt=prompt_ids(tok, q), max_tokens=2 if i == 0 else 6, temperature=0))
            for i, q in enumerate(questions)]
    engine.thread.start()
    results = []
    for job in jobs:
        text = []
        while (event := job.events.get(timeout=120))[0] == "text":
            text.append(event[1])
        assert event[0] == "done"
        results.append("".join(text).strip())
    engine.close()
    assert engine.batch_sizes == [4]
    assert results[0] == generate_answers(model, tok, questions[:1], max_new_tokens=2)[0]
    assert results[1:3] == generate_answers(model, tok, questions[:1], max_new_tokens=6) * 2
    assert results[3] == generate_answers(model, tok, questions[3:], max_new_tokens=6)[0]


def test_stop_holdback():
    assert stop_holdback("hello wor", ("world",)) == 3 and stop_holdback("hello", ("xyz",)) == 0
    assert stop_holdback("ab", ("b", "abc")) == 2


def test_bad_requests_get_openai_errors(plain_server):
    import httpx

    c = client(plain_server)
    with pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(model="micro-target", messages=[{"role": "user", "content": "x"}],
                                  temperature=5)
    assert info.value.body["param"] == "temperature" and info.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        c.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="messages"):
        c.chat.completions.create(model="micro-target", messages=[])
    with pytest.raises(openai.BadRequestError, match="not supported"):  # never silently ignored
        c.chat.completions.create(model="micro-target", messages=[{"role": "user", "content": "x"}],
                                  logprobs=True)
    base = plain_server.url
    for body, status in ((b"{not json", 400), (b"[1, 2]", 400), (json.dumps({"prompt": 3}).encode(), 400),
                         (b"x" * (2 << 20), 413)):
        res = httpx.post(f"{base}/completions", content=body, headers={"content-type": "application/json"})
        assert res.status_code == status
        assert set(res.json()["error"]) >= {"message", "type"} and "Traceback" not in res.text
    res = httpx.get(f"{base}/nope")
    assert res.status_code == 404 and "error" in res.json()


def test_waiting_jobs_join_a_running_uld_batch(artifact):
    """Continuous batching: jobs queued while a batch decodes join it at the next step (their cache rows,
    target's and assistant's, left-padded and appended) and still get exactly their own greedy answer."""
    from unlearnkit.data.formatting import prompt_ids
    from unlearnkit.methods.uld.model import load_uld

    uld, tok = load_uld(artifact, merge=True)
    engine = Engine(uld, tok, max_batch=8, start=False)
    questions = [QUESTION, "Where was the author born?", "What did the author write?"]
    first = Job(prompt=prompt_ids(tok, questions[0]), max_tokens=10, temperature=0)
    late = [engine.submit(Job(prompt=prompt_ids(tok, q), max_tokens=10, temperature=0))
            for q in questions[1:]]
    engine._decode([first])  # runs in this thread: the queued jobs join after the first step
    assert engine.batch_sizes == [1, 2]
    got = [tok.decode(j.tokens, skip_special_tokens=True).strip() for j in (first, *late)]
    assert got == [generate_answers(uld, tok, [q], max_new_tokens=10)[0] for q in questions]


def test_cli_refuses_a_busy_port_and_a_missing_model(tmp_path):
    import socket

    from typer.testing import CliRunner

    from unlearnkit.cli import app
    from unlearnkit.errors import UnlearnError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = CliRunner().invoke(app, ["serve", str(tmp_path), "--port", str(port)])
        assert isinstance(res.exception, UnlearnError) and "cannot listen on 127.0.0.1" in str(res.exception)
    res = CliRunner().invoke(app, ["serve", str(tmp_path / "nope"), "--port", "0"])
    assert isinstance(res.exception, UnlearnError) and "nope" in str(res.exception)
