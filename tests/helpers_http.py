"""A fake OpenAI-compatible chat server on 127.0.0.1 for tests of the LLM clients (judge, anchors)."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class FakeServer:
    """Answers POST /v1/chat/completions with queued (status, content) replies, recording requests.
    `content` may be a function of the request body; status "sleep" waits `content` seconds first;
    content "SSE:text" is streamed as server-sent events, "RAW:text" sent as it is.
    `serial_delay` > 0: like a local server on a CPU, it works on one request at a time, taking
    that many seconds for each (the others wait in its queue, and it finishes a request whose
    client gave up)."""

    def __init__(self, replies, default: str = "GRADE: 0", serial_delay: float = 0.0):
        self.replies, self.requests, self.lock, self.default = list(replies), [], threading.Lock(), default
        self.serial_delay, self.busy = serial_delay, threading.Lock()
        self.stream_delay, self.dropped = 0.0, 0  # seconds between streamed words; replies the client did not wait for
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status, content = outer.replies.pop(0) if outer.replies else (200, outer.default)
                if callable(content):  # computed from the request body
                    content = content(body)
                if outer.serial_delay:
                    with outer.busy:
                        time.sleep(outer.serial_delay)
                if status == "sleep":  # a server that does not answer in time
                    time.sleep(float(content))
                    status, content = 200, outer.default
                try:
                    if status == 200 and content.startswith("SSE:"):
                        self.stream(content.removeprefix("SSE:"))
                        return
                    if status == 200 and not content.startswith("RAW:"):
                        payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]})
                    else:
                        payload = content.removeprefix("RAW:")
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(payload.encode())
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    outer.dropped += 1

            def stream(self, content: str):
                """Server-sent events: a role event, then the content a word at a time, `stream_delay`
                seconds apart ("SSE:ERROR:message" sends an error event instead of the content)."""
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                events = [{"choices": [{"delta": {"role": "assistant"}}]}]
                if content.startswith("ERROR:"):
                    events.append({"error": content.removeprefix("ERROR:")})
                else:
                    events += [{"choices": [{"delta": {"content": w}}]} for w in re.findall(r"\s*\S+\s*", content)]
                for number, event in enumerate(events):
                    if number:
                        time.sleep(outer.stream_delay)
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server_factory():
    servers = []

    def make(replies, default: str = "GRADE: 0", serial_delay: float = 0.0):
        servers.append(FakeServer(replies, default, serial_delay))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


