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


def write_part(ctx: Context, job: Job, seq: int, attempts: Sequence[Attempt]) -> WarcFile | None:
    """The WARC file (and its CDXJ index) of one part's fetches; None when there is nothing to
    record or WARC writing is off. Run after the part's outcomes are committed."""
    if not ctx.settings.archiver_warc:
        return None
    wanted = [a for a in attempts if a.result is not None and (a.result.stored is not None or a.result.http_status == 304 or a.duplicate)]
    if not wanted:
        return None
    now = utcnow()
    started = time.perf_counter()
    name = f"{job.created_at.strftime('%Y%m%dT%H%M%SZ')}-{seq:05d}-{secrets.token_hex(3)}.warc.gz"
    key = f"warc/{_label(job)}/{name}"
    agent = ctx.settings.archiver_user_agent
    with tempfile.TemporaryFile() as out:
        writer = WARCWriter(out, gzip=True, warc_version="1.1")
        writer.write_record(writer.create_warcinfo_record(name, {"software": "Exporter archiver", "format": "WARC File Format 1.1", "job": job.id, "part": str(seq)}))
        records = 0
        lines: list[str] = []
        for a in wanted:
            records += _write(ctx, writer, a, agent, now, out, name, lines)
        out.flush()
        out.seek(0)
        info = ctx.storage.write(key, out, "application/warc")
    index = "".join(sorted(lines)).encode()
    index_key = key.removesuffix(".warc.gz") + ".cdxj"
    ctx.storage.write(index_key, index, "application/x-ndjson")
    with ctx.db.session() as s:
        row = WarcFile(job_id=job.id, key=key, index_key=index_key, records=records, size=info.size, sha256=info.sha256, created_at=now)
        s.add(row)
    log.info("job %s: part %d: %d WARC record(s) in %s (%.2fs)", job.id, seq, records, key, time.perf_counter() - started)
    return row


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
