"""STAND-IN: a fast OpenAI-compatible server for tests and benchmarks, not an engine.

It answers what the fleet's tooling asks a real engine (vLLM, SGLang): ``/health``,
``/v1/models``, ``/v1/chat/completions`` and ``/v1/completions`` (plain JSON, or a
server-sent-event stream when ``stream`` is true) and ``/metrics`` with the two
vLLM gauges the router drain reads (``vllm:num_requests_running``,
``vllm:num_requests_waiting``) and a request counter.  It generates nothing: the
reply is a fixed text, after ``--delay`` seconds if asked.

Why it exists: to measure what sits *in front of* an engine (the router's own
overhead, a drain, a load generator) without measuring vLLM on CPU instead, and
to give the lab a server that starts in a second.  aiohttp's C-accelerated
HTTP parser keeps it cheap enough that, on a 2-core machine, the thing under
test is what gets measured.

    python3 -m llmfleet.lab.stubengine --port 18001 [--host 127.0.0.1]
        [--served-name NAME] [--delay 0.0] [--api-key-env VLLM_API_KEY]

It also takes vLLM's ``--served-model-name`` and ``--model`` (ignored), so a lab
recipe (``lab-cpu-stub``) can run it through the serve deploy like an engine; the
lab's wheelhouse carries it as a wheel (:mod:`llmfleet.lab.stubwheel`).

With ``--api-key-env NAME`` the ``/v1/*`` routes want ``Authorization: Bearer
$NAME``, as vLLM does with ``VLLM_API_KEY``; the key is read from the
environment, never from argv.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

REPLY = "stub"
DEFAULT_NAME = "stub-model"


@dataclass
class Counters:
    """What ``/metrics`` reports: requests in flight now, and finished so far."""

    running: int = 0
    finished: int = 0


def metrics_text(counters: Counters, name: str) -> str:
    """The Prometheus text a vLLM server would give for the same state."""
    label = f'{{model_name="{name}"}}'
    return (
        "# TYPE vllm:num_requests_running gauge\n"
        f"vllm:num_requests_running{label} {counters.running}\n"
        "# TYPE vllm:num_requests_waiting gauge\n"
        f"vllm:num_requests_waiting{label} 0\n"
        "# TYPE vllm:request_success_total counter\n"
        f"vllm:request_success_total{label} {counters.finished}\n"
    )


def completion(kind: str, name: str) -> dict:
    """One OpenAI-shaped reply: ``chat.completion`` or ``text_completion``."""
    choice: dict = {"index": 0, "finish_reason": "length", "logprobs": None}
    if kind == "chat.completion":
        choice["message"] = {"role": "assistant", "content": REPLY}
    else:
        choice["text"] = REPLY
    return {
        "id": f"stub-{uuid.uuid4().hex[:16]}",
        "object": kind,
        "created": int(time.time()),
        "model": name,
        "choices": [choice],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(name: str = DEFAULT_NAME, delay: float = 0.0, api_key: str | None = None):
    """The aiohttp application; ``api_key`` guards the ``/v1/*`` routes."""
    counters = Counters()

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        wanted = f"Bearer {api_key}"
        if (
            api_key
            and request.path.startswith("/v1/")
            and request.headers.get("Authorization") != wanted
        ):
            return web.json_response({"error": "Unauthorized"}, status=401)
        return await handler(request)

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=200)

    async def models(_: web.Request) -> web.Response:
        entry = {"id": name, "object": "model", "owned_by": "llmfleet-stub", "max_model_len": 4096}
        return web.json_response({"object": "list", "data": [entry]})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=metrics_text(counters, name), content_type="text/plain")

    def generate(kind: str) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                body = await request.json()
            except json.JSONDecodeError:
                return web.json_response({"error": "body is not JSON"}, status=400)
            counters.running += 1
            try:
                if delay:
                    await asyncio.sleep(delay)
                reply = completion(kind, name)
                if not body.get("stream"):
                    return web.json_response(reply)
                return await _stream(request, reply)
            finally:
                counters.running -= 1
                counters.finished += 1

        return handler

    app = web.Application(middlewares=[auth])
    app.add_routes(
        [
            web.get("/health", health),
            web.get("/v1/models", models),
            web.get("/metrics", metrics),
            web.post("/v1/chat/completions", generate("chat.completion")),
            web.post("/v1/completions", generate("text_completion")),
        ]
    )
    return app


async def _stream(request: web.Request, reply: dict) -> web.StreamResponse:
    """The reply as one SSE chunk and ``[DONE]``, as OpenAI streams end."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    chunk = {**reply, "object": reply["object"] + ".chunk"}
    for choice in chunk["choices"]:
        if "message" in choice:
            choice["delta"] = choice.pop("message")
    await resp.write(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())
    await resp.write_eof()
    return resp


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python3 -m llmfleet.lab.stubengine",
        description="STAND-IN OpenAI-compatible server (health, models, chat, metrics) for "
        "tests and benchmarks: it answers a fixed text, it is not an engine.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, required=True, help="port to listen on")
    p.add_argument(
        "--served-name", "--served-model-name", default=DEFAULT_NAME, help="model id it reports"
    )
    # what the deploy passes a vLLM-flavoured recipe (files/recipes/lab-cpu-stub.yaml):
    # the model path is accepted and ignored, the stub loads nothing
    p.add_argument("--model", help="ignored: the stub loads no model")
    p.add_argument("--delay", type=float, default=0.0, help="seconds each completion takes")
    p.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="environment variable holding the key /v1/* routes want (never argv)",
    )
    a = p.parse_args(argv)
    key = os.environ.get(a.api_key_env) if a.api_key_env else None
    if a.api_key_env and not key:
        p.error(f"--api-key-env {a.api_key_env}: that variable is not set")
    web.run_app(
        make_app(a.served_name, a.delay, key),
        host=a.host,
        port=a.port,
        access_log=None,
        print=None,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
