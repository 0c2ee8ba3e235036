"""A real HTTP server on 127.0.0.1 that records webhook calls and answers from a plan."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Call:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    calls: list[Call] = field(default_factory=list)
    plan: list[int] = field(default_factory=list)  # status codes to answer, in order; then 200
    got_call: threading.Condition = field(default_factory=threading.Condition)
    body_size: int = 2  # bytes of each answer's body
    sent: list[int] = field(default_factory=list)  # bytes of the body actually sent, per answer

    def wait_for(self, n: int, timeout: float = 30) -> list[Call]:
        with self.got_call:
            if not self.got_call.wait_for(lambda: len(self.calls) >= n, timeout):
                raise AssertionError(f"expected {n} webhook call(s) within {timeout}s, got {len(self.calls)}")
        return list(self.calls)


def start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    receiver: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.got_call:
                code = receiver.plan.pop(0) if receiver.plan else 200
                receiver.calls.append(Call(self.path, dict(self.headers.items()), body))
                receiver.got_call.notify_all()
            self.send_response(code)
            self.send_header("Content-Length", str(receiver.body_size))
            self.end_headers()
            if receiver.body_size == 2:
                self.wfile.write(b"ok")
                return
            sent, chunk = 0, b"x" * 65536
            try:
                while sent < receiver.body_size:
                    self.wfile.write(chunk[: receiver.body_size - sent])
                    sent += min(len(chunk), receiver.body_size - sent)
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                receiver.sent.append(sent)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server
