"""Real files for the collections tests (FITS made with astropy, a 16-bit TIFF, a ~5 MB PNG, text),
a local SMTP server (aiosmtpd) that keeps what it receives, and the web app on a real HTTP port."""

from __future__ import annotations

import threading
import time
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path

import numpy as np
import requests
from astropy.io import fits
from PIL import Image
from werkzeug.serving import make_server

from exporter import runner
from web import create_app

from .conftest import free_port


def make_fits(path: Path, obj: str = "NGC 1300", shape=(300, 400), seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    data = rng.normal(1000.0, 20.0, shape).astype(np.float32)
    data[100:105, 200:205] += 8000.0
    data[10, 10] = np.nan
    header = fits.Header()
    header["OBJECT"] = obj
    header["RA"] = 49.95
    header["DEC"] = -19.41
    header["DATE-OBS"] = "2025-01-02T03:04:05"
    header["FILTER"] = "r"
    fits.HDUList([fits.PrimaryHDU(header=header), fits.ImageHDU(data=data, name="SCI")]).writeto(path)
    return path


def make_tiff16(path: Path, shape=(256, 320)) -> Path:
    ramp = (np.add.outer(np.arange(shape[0]), np.arange(shape[1])) * 97 % 65535).astype(np.uint16)
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I;16")
    return path


def make_big_png(path: Path, megabytes: float = 5.0, seed: int = 2) -> Path:
    """A PNG of noise, about `megabytes` MB (noise does not compress)."""
    side = int((megabytes * 1_000_000 / 3) ** 0.5) + 1
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path, compress_level=1)
    assert path.stat().st_size > megabytes * 0.9 * 1_000_000
    return path


def make_small_png(path: Path, seed: int) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


class SmtpServer:
    """aiosmtpd on 127.0.0.1: every message it accepts, parsed."""

    def __init__(self, port: int | None = None):
        from aiosmtpd.controller import Controller

        self.messages: list[Message] = []
        self.port = port or free_port()
        self.got = threading.Condition()
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
                with outer.got:
                    outer.messages.append(message_from_bytes(envelope.content, policy=policy.default))
                    outer.got.notify_all()
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def wait_for(self, n: int, timeout: float = 30) -> list[Message]:
        deadline = time.monotonic() + timeout
        with self.got:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.messages)} e-mail(s) arrived, waited for {n}: {[m['Subject'] for m in self.messages]}")
                self.got.wait(left)
            return list(self.messages)

    def subjects(self) -> list[str]:
        return [m["Subject"] for m in self.messages]


class LiveApp:
    """The web app on a werkzeug server thread (its PUBLIC_URL is this server)."""

    def __init__(self, ctx):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ctx = ctx
        self.server = None

    def start(self) -> LiveApp:
        self.server = make_server("127.0.0.1", self.port, create_app(self.ctx), threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kw)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()


def run_sent(ctx, kinds: tuple[str, ...] | None = None) -> list[str]:
    """Run, in this process, every job message the context collected (ctx.sent) and those they send; returns the statuses.
    E-mail messages are delivered through exporter.collections.notify.send_email, webhooks through exporter.webhooks.deliver."""
    from exporter import webhooks
    from exporter.collections import notify

    statuses = []
    while ctx.sent:
        task, arg, _queue = ctx.sent.pop(0)
        if task == notify.TASK:
            statuses.append(notify.send_email(ctx, int(arg)).state)
        elif task == webhooks.TASK:
            statuses.append(webhooks.deliver(ctx, int(arg)).state)
        else:
            statuses.append(runner.run_job(ctx, arg))
    return statuses
