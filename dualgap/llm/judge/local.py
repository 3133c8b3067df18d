"""A local OpenAI-compatible chat-completions server on 127.0.0.1, for testing a judge setup
offline (the test suite's scripted judges and ``benchmarks/judge_demo.py`` use it).

``LocalJudgeServer(script)`` answers ``POST /v1/chat/completions`` with
``script(body, n) -> (status, reply text, headers, delay seconds)``, ``n`` being the request's
index; a status other than 200 sends ``{"error": {"message": text}}``.  It binds a free port on
127.0.0.1 only, records every request body and ``Authorization`` header, and stops on leaving
its ``with`` block::

    with LocalJudgeServer(lambda body, n: (200, "7 9\\nreason", {}, 0.0)) as server:
        ...  # dualgap llm judge --base-url server.url --no-api-key ...
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["LocalJudgeServer", "Script"]

#: ``(request body, request index) -> (status, reply text, extra headers, delay seconds)``
Script = Callable[[dict, int], tuple[int, str, dict, float]]


class LocalJudgeServer:
    """A threaded HTTP server on 127.0.0.1 answering chat completions from ``script``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    n = len(server.bodies)
                    server.bodies.append(body)
                    server.auth.append(self.headers.get("Authorization"))
                status, text, headers, delay = server.script(body, n)
                time.sleep(delay)
                payload = json.dumps({"choices": [{"message": {"role": "assistant",
                                                               "content": text}}]}
                                     if status == 200 else {"error": {"message": text}}).encode()
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def log_message(self, *args):  # no request lines on stderr
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The base URL to pass as ``--base-url`` (``.../v1``)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> LocalJudgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
