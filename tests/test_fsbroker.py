"""The filesystem broker of `exporter up`: a worker reading the queue folder while others write to
it never meets a half-written message (kombu's own transport hands it an empty file and the worker
dies with `Unrecoverable error: JSONDecodeError`)."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import struct
import subprocess
import sys

from kombu import Connection

IN_CREATE, IN_MOVED_TO = 0x100, 0x80
WRITERS = 2
MESSAGES = 30  # per writer
ITEMS = 300_000  # a message that takes a while to serialize: kombu's own _put does it with the file already in the queue folder


def _options(folder) -> dict:
    return {"data_folder_in": str(folder), "data_folder_out": str(folder), "processed_folder": str(folder / "done"), "control_folder": str(folder / "control"), "store_processed": False}


def _write(folder, transport: str, n: int) -> None:
    with Connection("filesystem://", transport=transport, transport_options=_options(folder)) as conn:
        q = conn.SimpleQueue("q")
        for i in range(n):
            q.put({"i": i, "items": list(range(ITEMS))})
        q.close()


def _drain(folder, transport: str, expected: int) -> tuple[int, list[str]]:
    """Read while the writers write: (messages read, errors met)."""
    got, errors = 0, []
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_write, args=(folder, transport, MESSAGES)) for _ in range(WRITERS)]
    with Connection("filesystem://", transport=transport, transport_options=_options(folder)) as conn:
        q = conn.SimpleQueue("q")
        for w in writers:
            w.start()
        try:
            while got < expected and len(errors) < 5:
                try:
                    msg = q.get(timeout=20)
                except q.Empty:
                    break
                except ValueError as exc:  # JSONDecodeError: a message file read before it was written
                    errors.append(repr(exc))
                    continue
                msg.ack()
                got += 1
        finally:
            for w in writers:
                w.join(60)
            q.close()
    return got, errors


def _inotify_events(folder, action) -> list[tuple[int, str]]:
    """(mask, name) of each inotify event in `folder` while `action` runs (Linux inotify(7), through ctypes)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    try:
        assert libc.inotify_add_watch(fd, str(folder).encode(), IN_CREATE | IN_MOVED_TO) >= 0
        action()
        data = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            data += chunk
    finally:
        os.close(fd)
    events, i = [], 0
    while i < len(data):
        _, mask, _, length = struct.unpack_from("iIII", data, i)
        name = data[i + 16:i + 16 + length].rstrip(b"\0").decode()
        events.append((mask, name))
        i += 16 + length
    return events


def test_a_message_file_appears_in_the_queue_folder_whole(tmp_path):
    """The .msg name is never created empty and then written (what kombu's own _put does): it appears by a rename of the written file."""
    def put():
        with Connection("filesystem://", transport="workers.fsbroker:Transport", transport_options=_options(tmp_path)) as conn:
            q = conn.SimpleQueue("q")
            for i in range(5):
                q.put({"i": i})
            q.close()

    events = _inotify_events(tmp_path, put)
    msgs = [(mask, name) for mask, name in events if name.endswith(".q.msg")]
    assert len(msgs) == 5
    assert all(mask & IN_MOVED_TO and not mask & IN_CREATE for mask, _ in msgs)
    stock = _inotify_events(tmp_path, lambda: _write(tmp_path, "filesystem", 1))
    assert any(mask & IN_CREATE and name.endswith(".q.msg") for mask, name in stock)  # the test tells kombu's way from ours


def test_a_reader_never_meets_a_half_written_message(tmp_path):
    (tmp_path / "done").mkdir()
    got, errors = _drain(tmp_path, "workers.fsbroker:Transport", WRITERS * MESSAGES)
    assert errors == []
    assert got == WRITERS * MESSAGES
    assert [p.name for p in tmp_path.iterdir() if p.name not in ("done", "control")] == []  # no .part file left behind


def test_the_embedded_broker_uses_the_whole_message_transport(tmp_path):
    env = {**os.environ, "EXPORTER_VAR_DIR": str(tmp_path), "EXPORTER_BROKER_URL": "filesystem://", "EXPORTER_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite"}
    code = "from workers.app import celery_app; c = celery_app.connection_for_write(); print(c.transport_cls, type(c.transport).__module__)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert out == ["workers.fsbroker:Transport", "workers.fsbroker"]
