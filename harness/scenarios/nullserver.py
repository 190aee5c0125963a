"""A null OpenAI-compatible endpoint for calibrating the client: it streams the requested
number of one-word chunks at once, without any model. What the client achieves against it is
the client's own limit (the null server shares the client's event loop and CPU, so the limit
is conservative: a real server runs elsewhere)."""

from __future__ import annotations

import json

from aiohttp import web


async def _models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "null", "owned_by": "null"}]})


async def _complete(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    count = int(body.get("max_tokens") or 1)
    chat = request.path.endswith("chat/completions")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    parts = []
    for i in range(count):
        finish = "length" if i == count - 1 else None
        choice = (
            {"index": 0, "delta": {"content": " x"}, "finish_reason": finish}
            if chat
            else {"index": 0, "text": " x", "finish_reason": finish}
        )
        parts.append(f"data: {json.dumps({'choices': [choice]})}\n\n")
    usage = {"prompt_tokens": 1, "completion_tokens": count, "total_tokens": count + 1}
    parts.append(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n")
    await response.write("".join(parts).encode())
    await response.write_eof()
    return response


async def start_null_server() -> tuple[web.AppRunner, str]:
    """Start the null server on 127.0.0.1 (a free port) in the running loop; returns its
    runner (call `cleanup()` to stop it) and its OpenAI base URL."""
    app = web.Application()
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/completions", _complete)
    app.router.add_post("/v1/chat/completions", _complete)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/v1"
