"""WARC/1.1 files of what the archiver fetched, so web-archiving tools can read and replay it.

One WARC file per archiving part (a batch of a sweep or URL list), at
`warc/<portal>/<UTC timestamp of the job>-<part n>.warc.gz`, with a CDXJ index beside it
(`.cdxj`, the lines webrecorder's cdxj-indexer writes, made while the records are written). Each stored copy gives a `request` and a
`response` record (the response's headers as the server sent them, its body the stored
copy); a 304 gives a `revisit` record (profile server-not-modified), and a body downloaded
again but identical gives one with profile identical-payload-digest. Payload digests are
`sha256:<base32>` of the stored copy's sha256, so a record is checked against the database.
ARCHIVER_WARC=false switches it off.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from http import HTTPStatus
from io import BytesIO
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlsplit

import surt
from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from ..context import Context
from ..db import utcnow
from ..models import Job
from .models import WarcFile

if TYPE_CHECKING:
    from .archive import Attempt

log = logging.getLogger(__name__)

SERVER_NOT_MODIFIED = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"
IDENTICAL_PAYLOAD = "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
# Hop-by-hop headers, and what no longer describes the body as stored (read identity, whole).
DROPPED = {"transfer-encoding", "connection", "keep-alive", "content-encoding", "content-length"}


def payload_digest(sha256_hex: str) -> str:
    return "sha256:" + base64.b32encode(bytes.fromhex(sha256_hex)).decode()


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _request_headers(url: str, user_agent: str, attempt: Attempt) -> StatusAndHeaders:
    parts = urlsplit(attempt.result.final_url or url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = [("Host", parts.netloc), ("User-Agent", user_agent), ("Accept", "*/*"), ("Accept-Encoding", "identity")]
    if attempt.etag:
        headers.append(("If-None-Match", attempt.etag))
    if attempt.last_modified:
        headers.append(("If-Modified-Since", attempt.last_modified))
    return StatusAndHeaders(f"GET {target} HTTP/1.1", headers, is_http_request=True)


def _response_headers(attempt: Attempt, length: int | None) -> StatusAndHeaders:
    status = attempt.result.http_status or 200
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    headers = [(k.title(), v) for k, v in attempt.result.headers.items() if k not in DROPPED]
    if length is not None:
        headers.append(("Content-Length", str(length)))
    return StatusAndHeaders(f"{status} {phrase}".strip(), headers, protocol="HTTP/1.1")


def _label(job: Job) -> str:
    portal = (job.params or {}).get("portal")
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in portal) if portal else "urls"


class PartWarc:
    """The WARC file (and CDXJ index) of one part, written as the part's outcomes are committed:
    `add` each committed chunk of attempts, then `close` to store it (None when there was
    nothing to record). A failure is logged and only costs the part its WARC file: the copies
    and their records stand. `discard` drops an unfinished file."""

    def __init__(self, ctx: Context, job: Job, seq: int):
        self.ctx, self.job, self.seq = ctx, job, seq
        self.now = utcnow()
        self.name = f"{job.created_at.strftime('%Y%m%dT%H%M%SZ')}-{seq:05d}-{secrets.token_hex(3)}.warc.gz"
        self.key = f"warc/{_label(job)}/{self.name}"
        self.records = 0
        self.lines: list[str] = []
        self.spent = 0.0
        self.failed = False
        self._out: BinaryIO | None = None
        self._writer: WARCWriter | None = None

    def add(self, attempts: Sequence[Attempt]) -> None:
        wanted = [a for a in attempts if a.result is not None and (a.result.stored is not None or a.result.http_status == 304 or a.duplicate)]
        if self.failed or not wanted:
            return
        started = time.perf_counter()
        try:
            if self._writer is None:
                self._out = tempfile.TemporaryFile()
                self._writer = WARCWriter(self._out, gzip=True, warc_version="1.1")
                info = {"software": "Exporter archiver", "format": "WARC File Format 1.1", "job": self.job.id, "part": str(self.seq)}
                self._writer.write_record(self._writer.create_warcinfo_record(self.name, info))
            agent = self.ctx.settings.archiver_user_agent
            for a in wanted:
                self.records += _write(self.ctx, self._writer, a, agent, self.now, self._out, self.name, self.lines)
        except Exception:
            log.exception("job %s: part %d: writing the WARC file failed", self.job.id, self.seq)
            self.failed = True
            self.discard()
        self.spent += time.perf_counter() - started

    def close(self) -> WarcFile | None:
        if self.failed or self._out is None:
            self.discard()
            return None
        started = time.perf_counter()
        try:
            out = self._out
            out.flush()
            out.seek(0)
            info = self.ctx.storage.write(self.key, out, "application/warc")
            index_key = self.key.removesuffix(".warc.gz") + ".cdxj"
            self.ctx.storage.write(index_key, "".join(sorted(self.lines)).encode(), "application/x-ndjson")
            with self.ctx.db.session() as s:
                row = WarcFile(job_id=self.job.id, key=self.key, index_key=index_key, records=self.records, size=info.size, sha256=info.sha256, created_at=self.now)
                s.add(row)
        except Exception:
            log.exception("job %s: part %d: storing the WARC file failed", self.job.id, self.seq)
            return None
        finally:
            self.discard()
        self.spent += time.perf_counter() - started
        log.info("job %s: part %d: %d WARC record(s) in %s (%.2fs)", self.job.id, self.seq, self.records, self.key, self.spent)
        return row

    def discard(self) -> None:
        if self._out is not None:
            self._out.close()
        self._out = self._writer = None


def _write(ctx: Context, writer: WARCWriter, a: Attempt, agent: str, now: datetime, out: BinaryIO, filename: str, index: list[str]) -> int:
    """Write the attempt's records; the line of each response or revisit goes to `index`."""
    url = a.result.final_url or a.url
    result = a.result
    if result.stored is not None and not a.duplicate:
        request = writer.create_warc_record(url, "request", payload=BytesIO(b""), length=0, http_headers=_request_headers(a.url, agent, a))
        with ctx.storage.open(result.stored.key) as body:
            response = writer.create_warc_record(
                url, "response", payload=body, length=result.stored.size, http_headers=_response_headers(a, result.stored.size),
                warc_headers_dict={"WARC-Payload-Digest": payload_digest(result.stored.sha256), "WARC-Date": _iso(now)},
            )
            offset = out.tell()
            writer.write_record(response)
            index.append(cdxj_line(response, now, offset, out.tell() - offset, filename))
        request.rec_headers.replace_header("WARC-Concurrent-To", response.rec_headers.get_header("WARC-Record-ID"))
        writer.write_record(request)
        return 2
    if not a.previous_sha:
        return 0
    profile = SERVER_NOT_MODIFIED if result.http_status == 304 else IDENTICAL_PAYLOAD
    revisit = writer.create_revisit_record(
        url, payload_digest(a.previous_sha), a.url, _iso(now),
        http_headers=_response_headers(a, None),
        warc_headers_dict={"WARC-Profile": profile, "WARC-Date": _iso(now)},
    )
    offset = out.tell()
    writer.write_record(revisit)
    index.append(cdxj_line(revisit, now, offset, out.tell() - offset, filename))
    return 1


_MIME_END = re.compile(r"[;\s]")


def cdxj_line(record: ArcWarcRecord, when: datetime, offset: int, length: int, filename: str) -> str:
    """The CDXJ line of a response or revisit record just written at `offset` (`length` bytes,
    its gzip member): what webrecorder's cdxj-indexer writes for it, without reading the file
    back (tests compare the two)."""
    url = record.rec_headers.get_header("WARC-Target-URI")
    try:
        key = surt.surt(url)
    except Exception:  # as cdxj-indexer: the URL itself when it has no SURT form
        key = url
    entry: dict[str, str] = {"url": url}
    if record.rec_type == "revisit":
        entry["mime"] = "warc/revisit"
    else:
        mime = record.http_headers.get_header("Content-Type")
        if mime is not None:
            entry["mime"] = _MIME_END.split(mime, 1)[0].strip() if mime else mime
    status = record.http_headers.get_statuscode() if record.http_headers else None
    if status is not None:
        entry["status"] = status
    digest = record.rec_headers.get_header("WARC-Payload-Digest")
    if digest is not None:
        entry["digest"] = digest
    entry.update(length=str(length), offset=str(offset), filename=filename)
    return f"{key} {when.strftime('%Y%m%d%H%M%S')} {json.dumps(entry)}\n"
