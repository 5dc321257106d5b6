"""An OpenAI-compatible HTTP server for a plain model or a ULD model (`unlearn serve`).

A ULD model is target − w·assistant, computed at every decoding step: no weights file holds it, so
vLLM/TGI/`transformers serve` (which load checkpoints by ID) cannot host it. This server drives any
causal LM of ours, ULDModel included, through its forward pass and KV cache.

One engine thread owns the model and decodes up to `max_batch` requests together (left-padded batch,
one KV cache, per-request temperature/top_p/max_tokens/stop), streaming each row's text as it grows.
Batching is continuous: a request that arrives mid-batch is prefilled and joins at the next step (its
cache rows left-padded and appended; plain dynamic caches, ULD's pair included), and finished rows
leave the batch and the cache at once. The HTTP side is FastAPI +
uvicorn; every error leaves as an OpenAI-style JSON body, never a traceback.
"""


import asyncio
import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field

import torch

from unlearnkit.data.formatting import PLAIN_TEMPLATE, prompt_ids

DEFAULT_MAX_REQUEST_BYTES = 1 << 20
DEFAULT_MAX_BATCH = 8
DEFAULT_MAX_TOKENS = 256


class RequestError(Exception):
    """A bad request: becomes an OpenAI-style JSON error with this HTTP status."""

    def __init__(self, message: str, status: int = 400, param: str | None = None,
                 type_: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.message, self.status, self.param, self.type, self.code = message, status, param, type_, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# ------------------------------------------------------------------------------------------ decoding
@dataclass
class Job:
    """One sequence to generate; the engine posts ("text", delta) then ("done", finish_reason, n_tokens)."""

    prompt: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    loop: asyncio.AbstractEventLoop | None = None  # set: events go to `aqueue` on that loop instead
    aqueue: asyncio.Queue | None = None
    cancelled: bool = False
    # engine-side state
    tokens: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the text already posted
    done: bool = False


    def post(self, event: tuple) -> None:
        """Hand an event to the waiting request (thread-safe: called from the engine thread)."""
        if self.loop is None:
            self.events.put(event)
            return
        try:
            self.loop.call_soon_threadsafe(self.aqueue.put_nowait, event)
        except RuntimeError:  # the server's loop is gone (shutdown): nobody is waiting
            self.cancelled = True


def stop_holdback(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters could still be the start of a stop string (so are not sent yet)."""
    keep = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), keep, -1):
            if text.endswith(s[:n]):
                keep = n
                break
    return keep


def sample_next(logits: torch.Tensor, jobs: list[Job], generators: list[torch.Generator | None]) -> list[int]:
    """Next token per row: argmax at temperature 0, else nucleus sampling at the row's temperature/top_p."""
    logits = logits.float()
    out = logits.argmax(dim=-1).tolist()
    for i, job in enumerate(jobs):
        if job.temperature <= 0 or job.done:
            continue
        probs = (logits[i] / job.temperature).softmax(dim=-1)
        if job.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            # keep the smallest prefix whose mass reaches top_p (always at least the top token)
            drop = sorted_p.cumsum(0) - sorted_p >= job.top_p
            sorted_p[drop] = 0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_p)
        out[i] = int(torch.multinomial(probs.cpu(), 1, generator=generators[i]).item())
    return out


@dataclass
class Rows:
    """The running batch: its jobs, their RNGs, attention mask, last positions, KV cache, next inputs."""

    jobs: list[Job]
    generators: list
    mask: torch.Tensor
    positions: torch.Tensor  # (rows, 1): position of the last token fed
    cache: object
    next_ids: torch.Tensor | None = None


def _cache_parts(cache) -> list:
    """The DynamicCache objects behind a cache (a ULDCache carries the assistant's as well)."""
    parts = [cache]
    if getattr(cache, "assistant_cache", None) is not None:
        parts.append(cache.assistant_cache)
    return parts


def can_join(cache) -> bool:
    """Rows can be appended only to plain dynamic caches (full attention), whose layers we can pad."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer and layer.is_initialized
               for part in _cache_parts(cache) for layer in getattr(part, "layers", [None]))


def _pad_left(t: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    if n == 0:
        return t
    shape = list(t.shape)
    shape[dim] = n
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def merge_rows(a: Rows, b: Rows) -> Rows:
    """One batch from two: the shorter history is left-padded (masked keys/values of zeros)."""
    la, lb = a.mask.shape[1], b.mask.shape[1]
    length = max(la, lb)
    for part_a, part_b in zip(_cache_parts(a.cache), _cache_parts(b.cache), strict=True):
        for layer_a, layer_b in zip(part_a.layers, part_b.layers, strict=True):
            layer_a.keys = torch.cat([_pad_left(layer_a.keys, length - la, 2),
                                      _pad_left(layer_b.keys, length - lb, 2)], dim=0)
            layer_a.values = torch.cat([_pad_left(layer_a.values, length - la, 2),
                                        _pad_left(layer_b.values, length - lb, 2)], dim=0)
    mask = torch.cat([_pad_left(a.mask, length - la, 1), _pad_left(b.mask, length - lb, 1)], dim=0)
    return Rows(a.jobs + b.jobs, a.generators + b.generators, mask,
                torch.cat([a.positions, b.positions], dim=0), a.cache,
                torch.cat([a.next_ids, b.next_ids], dim=0))


class Engine:
    """Owns the model on one thread; decodes queued jobs in one continuously refilled batch."""

    def __init__(self, model, tokenizer, max_batch: int = DEFAULT_MAX_BATCH, start: bool = True):
        from unlearnkit.models.layers import CACHE_KEY

        self.model, self.tokenizer, self.max_batch = model.eval(), tokenizer, max_batch
        self.cache_key = CACHE_KEY
        eos = tokenizer.eos_token_id
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        ids = {eos} if eos is not None else set()
        ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos] if gen_eos is not None else [])
        self.eos_ids = ids
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or 0)
        self.max_length = getattr(model.config.get_text_config(decoder=True) if hasattr(
            model.config, "get_text_config") else model.config, "max_position_embeddings", None)
        if self.max_length is None and hasattr(model, "target"):
            self.max_length = getattr(model.target.config, "max_position_embeddings", None)
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.join = True  # let waiting jobs join a running batch (continuous batching)
        self.batches = 0  # decoded batches, and their sizes (for tests and logs)
        self.batch_sizes: list[int] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="unlearnkit-engine", daemon=True)
        if start:
            self.thread.start()

    def submit(self, job: Job) -> Job:
        self.jobs.put(job)
        return job

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                first = self.jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            batch = [j for j in batch if not j.cancelled]
            if not batch:
                continue
            try:
                self._decode(batch)
            except Exception as err:  # never kill the engine; the requests get a server error
                for job in batch:
                    if not job.done:
                        job.done = True
                        job.post(("error", f"{type(err).__name__}: {err}"))

    def _emit(self, job: Job, final: str | None) -> None:
        """Post the new text of `job` (held back where a stop string may be starting) and maybe finish."""
        text = self.tokenizer.decode(job.tokens, skip_special_tokens=True)
        hit = min((text.find(s) for s in job.stop if s and s in text), default=-1)
        if hit >= 0:
            text, final = text[:hit], "stop"
        elif final is None:
            text = text[: len(text) - stop_holdback(text, job.stop)]
            text = text.rstrip("\ufffd")  # half of a multi-byte character: wait for the rest
        if len(text) > job.sent:
            job.post(("text", text[job.sent:]))
            job.sent = len(text)
        if final is not None:
            job.done = True
            job.post(("done", final, len(job.tokens)))

    def _forward(self, ids, mask, positions, cache):
        kwargs = {self.cache_key: cache} if cache is not None else {}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **kwargs)
        cache = getattr(out, self.cache_key, None)
        if cache is None:  # older output classes name the field past_key_values
            cache = getattr(out, "past_key_values", None)
        return out.logits[:, -1, :], cache

    def _advance(self, rows: Rows, logits: torch.Tensor) -> Rows | None:
        """Sample each row's next token, post its text, drop finished rows; None when all are done."""
        nxt = sample_next(logits, rows.jobs, rows.generators)
        for i, job in enumerate(rows.jobs):
            if job.done:
                continue
            if job.cancelled:
                job.done = True
            elif nxt[i] in self.eos_ids:
                self._emit(job, "stop")
            else:
                job.tokens.append(nxt[i])
                self._emit(job, "length" if len(job.tokens) >= job.max_tokens else None)
        keep = [i for i, j in enumerate(rows.jobs) if not j.done]
        if not keep:
            return None
        if len(keep) < len(rows.jobs):  # finished rows leave the batch and the cache
            idx = torch.tensor(keep, device=rows.mask.device)
            rows.cache.batch_select_indices(idx)
            rows = Rows([rows.jobs[i] for i in keep], [rows.generators[i] for i in keep],
                        rows.mask[idx], rows.positions[idx], rows.cache)
            nxt = [nxt[i] for i in keep]
        rows.next_ids = torch.tensor(nxt, device=rows.mask.device).unsqueeze(1)
        return rows

    def _prefill(self, jobs: list[Job]) -> Rows | None:
        """Run the prompts (left-padded, as generate() does for decoder-only models); first tokens out."""
        self.batches += 1
        self.batch_sizes.append(len(jobs))
        device = self.model.device
        width = max(len(j.prompt) for j in jobs)
        ids = torch.full((len(jobs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.long)
        for i, job in enumerate(jobs):
            ids[i, width - len(job.prompt):] = torch.tensor(job.prompt)
            mask[i, width - len(job.prompt):] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        generators = [torch.Generator().manual_seed(j.seed) if j.temperature > 0 and j.seed is not None
                      else None for j in jobs]
        logits, cache = self._forward(ids, mask, positions, None)
        return self._advance(Rows(list(jobs), generators, mask, positions[:, -1:], cache), logits)

    def _step(self, rows: Rows) -> Rows | None:
        rows.mask = torch.cat([rows.mask, rows.mask.new_ones((len(rows.jobs), 1))], dim=1)
        rows.positions = rows.positions + 1
        logits, rows.cache = self._forward(rows.next_ids, rows.mask, rows.positions, rows.cache)
        return self._advance(rows, logits)

    def _waiting(self, room: int) -> list[Job]:
        jobs = []
        while len(jobs) < room:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if not job.cancelled:
                jobs.append(job)
        return jobs

    def _decode(self, batch: list[Job]) -> None:
        """Decode until every row is done; jobs that arrive meanwhile join at a step boundary (their
        prompts are prefilled on their own, then their cache rows are appended to the running batch)."""
        with torch.inference_mode():
            rows = self._prefill(batch)
            while rows is not None:
                if self.join and len(rows.jobs) < self.max_batch and can_join(rows.cache):
                    new = self._waiting(self.max_batch - len(rows.jobs))
                    if new:
                        batch.extend(new)  # so an engine error reaches them too
                        joined = self._prefill(new)
                        if joined is not None:
                            rows = merge_rows(rows, joined)
                rows = self._step(rows)


# ------------------------------------------------------------------------------------- request parsing
def _number(body: dict, name: str, default, lo: float, hi: float, integer: bool = False):
    value = body.get(name, default)
    if value is None:
        value = default
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not lo <= value <= hi:
        what = "an integer" if integer else "a number"
        raise RequestError(f"'{name}' must be {what} in [{lo}, {hi}], got {value!r}", param=name)
    return value


def _stops(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise RequestError("'stop' must be a non-empty string or a list of up to 4 of them", param="stop")
    return tuple(stop)


def _text(content, where: str) -> str:
    """Message content: a string, or a list of {"type": "text", "text": ...} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise RequestError(f"{where}: content must be a string or a list of text parts", param="messages")


def chat_prompt(tokenizer, messages) -> list[int]:
    """Token ids for a chat: the tokenizer's chat template, else the plain 'Question/Answer' format the
    models here are trained on (one user turn gives exactly the prompt `unlearn generate` uses)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list", param="messages")
    turns = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
            raise RequestError(f"messages[{i}] must be an object with role system, user or assistant",
                               param="messages")
        turns.append({"role": "system" if m["role"] == "developer" else m["role"],
                      "content": _text(m.get("content"), f"messages[{i}]")})
    if turns[-1]["role"] != "user":
        raise RequestError("the last message must come from the user", param="messages")
    if len(turns) == 1:
        return prompt_ids(tokenizer, turns[0]["content"])
    if getattr(tokenizer, "chat_template", None):  # tokenized as prompt_ids does it
        try:
            text = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
        except Exception as err:  # a template may reject e.g. a system turn
            raise RequestError(f"the model's chat template rejected these messages: {err}",
                               param="messages") from None
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    parts, question = [], None
    for t in turns:
        if t["role"] == "system":
            parts.append(t["content"])
        elif t["role"] == "user":
            question = t["content"]
        else:
            parts.append(PLAIN_TEMPLATE.format(question=question or "") + " " + t["content"])
            question = None
    parts.append(PLAIN_TEMPLATE.format(question=turns[-1]["content"]))
    return tokenizer("\n".join(parts))["input_ids"]


# ----------------------------------------------------------------------------------------- the app
def build_app(engine: Engine, model_name: str, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES):
    """The FastAPI app: /v1/models, /v1/chat/completions, /v1/completions (+ /health)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    from unlearnkit.errors import UnlearnError

    if max_request_bytes < 1:
        raise UnlearnError(f"--max-request-bytes must be >= 1, got {max_request_bytes}")

    app = FastAPI(title="unlearnkit", docs_url=None, redoc_url=None, openapi_url=None)
    created = int(time.time())

    def error(err: RequestError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(RequestError)
    async def _request_error(_request, err: RequestError):
        return error(err)

    @app.exception_handler(404)
    async def _not_found(request, _exc):
        return error(RequestError(f"no route {request.method} {request.url.path}: use /v1/models, "
                                  "/v1/chat/completions or /v1/completions", 404, code="not_found"))

    @app.exception_handler(405)
    async def _bad_method(request, _exc):
        return error(RequestError(f"method {request.method} not allowed on {request.url.path}", 405))

    @app.exception_handler(Exception)
    async def _server_error(_request, err: Exception):
        return error(RequestError(f"internal error: {type(err).__name__}", 500, type_="server_error"))

    too_large = RequestError(f"request body larger than the limit of {max_request_bytes} bytes "
                             "(--max-request-bytes)", 413, code="request_too_large")

    def size_limit(inner):
        """ASGI wrapper: refuse a declared Content-Length over the limit before reading the body."""
        async def wrapped(scope, receive, send):
            if scope["type"] == "http":
                length = dict(scope.get("headers") or []).get(b"content-length")
                if length is not None and (not length.isdigit() or int(length) > max_request_bytes):
                    await error(too_large)(scope, receive, send)
                    return
            await inner(scope, receive, send)
        return wrapped

    async def read_body(request: Request) -> dict:
        raw = b""
        async for chunk in request.stream():  # chunked uploads carry no content-length: count here too
            raw += chunk
            if len(raw) > max_request_bytes:
                raise too_large
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise RequestError(f"the request body is not valid JSON ({err})") from None
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        requested = body.get("model")
        if requested is not None and requested != model_name:
            raise RequestError(f"the model `{requested}` does not exist: this server hosts `{model_name}`",
                               404, param="model", code="model_not_found")
        return body

    def make_job(body: dict, prompt: list[int], max_tokens_key: str) -> Job:
        for key in ("logprobs", "top_logprobs", "tools", "functions", "logit_bias", "echo", "suffix",
                    "presence_penalty", "frequency_penalty", "best_of"):
            neutral = (None, False, 0, [], {}) + ((1,) if key == "best_of" else ())  # = not asked for
            if body.get(key) not in neutral:
                raise RequestError(f"'{key}' is not supported by unlearn serve", param=key,
                                   code="unsupported_parameter")
        fmt = body.get("response_format")
        if fmt is not None and fmt != {"type": "text"}:
            raise RequestError("only response_format {'type': 'text'} is supported", param="response_format",
                               code="unsupported_parameter")
        if body.get("n") not in (None, 1):
            raise RequestError("only n=1 is supported: send several requests (they are batched)", param="n")
        limit = (engine.max_length or 10**9) - len(prompt)
        if limit < 1:
            raise RequestError(f"the prompt has {len(prompt)} tokens, more than the model's context of "
                               f"{engine.max_length}", param="messages", code="context_length_exceeded")
        default = min(DEFAULT_MAX_TOKENS, limit)
        key = max_tokens_key if body.get(max_tokens_key) is not None else "max_tokens"
        max_tokens = _number(body, key, default, 1, limit, integer=True)
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise RequestError("'seed' must be an integer", param="seed")
        return Job(prompt=prompt, max_tokens=max_tokens,
                   temperature=float(_number(body, "temperature", 1.0, 0.0, 2.0)),
                   top_p=float(_number(body, "top_p", 1.0, 0.0, 1.0)) or 1e-9, stop=_stops(body), seed=seed,
                   loop=asyncio.get_running_loop(), aqueue=asyncio.Queue())

    async def next_event(job: Job):
        return await job.aqueue.get()

    async def collect(job: Job) -> tuple[str, str, int]:
        text = []
        while True:
            event = await next_event(job)
            if event[0] == "text":
                text.append(event[1])
            elif event[0] == "done":
                return "".join(text), event[1], event[2]
            else:
                raise RequestError(f"generation failed: {event[1]}", 500, type_="server_error")

    def usage(job: Job, n_out: int) -> dict:
        return {"prompt_tokens": len(job.prompt), "completion_tokens": n_out,
                "total_tokens": len(job.prompt) + n_out}

    def stream(job: Job, chunk, include_usage: bool, first: dict | None):
        async def events():
            try:
                if first is not None:
                    yield f"data: {json.dumps(chunk(first, None))}\n\n"
                while True:
                    event = await next_event(job)
                    if event[0] == "text":
                        yield f"data: {json.dumps(chunk({'content': event[1]}, None))}\n\n"
                    elif event[0] == "done":
                        yield f"data: {json.dumps(chunk({}, event[1]))}\n\n"
                        if include_usage:
                            last = chunk({}, None)
                            last["choices"], last["usage"] = [], usage(job, event[2])
                            yield f"data: {json.dumps(last)}\n\n"
                        break
                    else:
                        err = RequestError(f"generation failed: {event[1]}", 500, type_="server_error")
                        yield f"data: {json.dumps(err.body())}\n\n"
                        break
                yield "data: [DONE]\n\n"
            finally:
                job.cancelled = True  # a client that went away frees its batch row
        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    def stream_options(body: dict) -> bool:
        opts = body.get("stream_options") or {}
        if not isinstance(opts, dict):
            raise RequestError("'stream_options' must be an object", param="stream_options")
        return bool(opts.get("include_usage"))

    def wants_stream(body: dict) -> bool:
        value = body.get("stream", False)
        if not isinstance(value, bool) and value is not None:
            raise RequestError("'stream' must be true or false", param="stream")
        return bool(value)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": created,
                                            "owned_by": "unlearnkit"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await read_body(request)
        prompt = chat_prompt(engine.tokenizer, body.get("messages"))
        streaming, include_usage = wants_stream(body), stream_options(body)
        job = engine.submit(make_job(body, prompt, "max_completion_tokens"))
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if streaming:
            def chunk(delta, finish):
                return {"id": rid, "object": "chat.completion.chunk", "created": now, "model": model_name,
                        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
            return stream(job, chunk, include_usage, {"role": "assistant", "content": ""})
        text, finish, n_out = await collect(job)
        return {"id": rid, "object": "chat.completion", "created": now, "model": model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": None, "finish_reason": finish}],
                "usage": usage(job, n_out)}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await read_body(request)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if isinstance(prompt, str) and prompt:
            ids = engine.tokenizer(prompt)["input_ids"]
        elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool)
                                                         and 0 <= t < len(engine.tokenizer) for t in prompt):
            ids = list(prompt)
        else:
            raise RequestError("'prompt' must be a non-empty string or a list of token ids", param="prompt")
        streaming, include_usage = wants_stream(body), stream_options(body)
        job = engine.submit(make_job(body, ids, "max_tokens"))
        rid, now = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if streaming:
            def chunk(delta, finish):
                return {"id": rid, "object": "text_completion", "created": now, "model": model_name,
                        "choices": [{"index": 0, "text": delta.get("content", ""), "logprobs": None,
                                     "finish_reason": finish}]}
            return stream(job, chunk, include_usage, None)
        text, finish, n_out = await collect(job)
        return {"id": rid, "object": "text_completion", "created": now, "model": model_name,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
                "usage": usage(job, n_out)}

    return size_limit(app)


def serve(model, tokenizer, model_name: str, host: str = "127.0.0.1", port: int = 8000,
          max_batch: int = DEFAULT_MAX_BATCH, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
          log_level: str = "info") -> None:
    """Run the server until interrupted."""
    import uvicorn

    engine = Engine(model, tokenizer, max_batch)
    try:
        uvicorn.run(build_app(engine, model_name, max_request_bytes), host=host, port=port,
                    log_level=log_level)
    finally:
        engine.close()


@dataclass
class Running:
    """A server started by `start_in_thread`: its base URL, engine, and a stop()."""

    url: str
    engine: Engine
    server: object
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.engine.close()


def start_in_thread(model, tokenizer, model_name: str, host: str = "127.0.0.1", port: int = 0,
                    max_batch: int = DEFAULT_MAX_BATCH, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                    timeout: float = 60.0) -> Running:
    """Serve in a background thread (port 0: any free port) for notebooks, tests and benchmarks."""
    import uvicorn

    engine = Engine(model, tokenizer, max_batch)
    config = uvicorn.Config(build_app(engine, model_name, max_request_bytes), host=host, port=port,
                            log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="unlearnkit-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            engine.close()
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return Running(f"http://{host}:{bound}/v1", engine, server, thread)
