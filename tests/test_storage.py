"""Both storage backends through one interface: local folder and S3 over HTTP (moto server)."""

from __future__ import annotations

import hashlib
import os
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from exporter.errors import InvalidRequest
from exporter.storage import ObjectNotFound, open_storage
from exporter.storage.s3 import PART


@pytest.fixture(params=["local", "s3"])
def storage(request, make_settings):
    if request.param == "local":
        return open_storage(make_settings())
    return open_storage(request.getfixturevalue("s3_settings"))


def chunks(n: int, size: int):
    for i in range(n):
        yield bytes([i % 251]) * size


def test_write_stream_computes_size_and_hashes(storage):
    data = b"".join(chunks(5, 1000))
    info = storage.write("a/b/data.bin", chunks(5, 1000))
    assert (info.size, info.md5, info.sha256) == (len(data), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())
    assert storage.read_bytes("a/b/data.bin") == data
    assert storage.stat("a/b/data.bin").size == len(data)
    assert storage.stat("a/b/missing") is None


def test_open_write_publishes_only_on_success(storage):
    with storage.open_write("x/ok.txt") as fh:
        fh.write(b"hello ")
        fh.write(b"world")
    assert fh.info.size == 11 and fh.info.sha256 == hashlib.sha256(b"hello world").hexdigest()
    with pytest.raises(RuntimeError):
        with storage.open_write("x/broken.txt") as fh:
            fh.write(b"half")
            raise RuntimeError("writer died")
    assert storage.stat("x/broken.txt") is None
    assert [o.key for o in storage.list("x/")] == ["x/ok.txt"]


def test_list_delete_move(storage):
    for key in ("p/2.txt", "p/1.txt", "q/3.txt"):
        storage.write(key, key.encode())
    assert [o.key for o in storage.list("p/")] == ["p/1.txt", "p/2.txt"]
    assert storage.move("p/1.txt", "r/1.txt").size == len(b"p/1.txt")
    assert storage.stat("p/1.txt") is None and storage.read_bytes("r/1.txt") == b"p/1.txt"
    assert storage.delete("r/1.txt") is True
    assert storage.delete("r/1.txt") is False
    with pytest.raises(ObjectNotFound):
        storage.open("r/1.txt")
    with pytest.raises(ObjectNotFound):
        storage.move("nope", "r/2")


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/../b", ".tmp/x", ""])
def test_keys_cannot_escape(storage, key):
    with pytest.raises(InvalidRequest):
        storage.write(key, b"x")


def test_reader_never_sees_a_partial_object(make_settings):
    storage = open_storage(make_settings())
    storage.write("r/obj", b"a" * 100_000)
    seen: set[int] = set()
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                seen.add(len(storage.read_bytes("r/obj")))
            except ObjectNotFound:
                seen.add(-1)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(30):
        storage.write("r/obj", chunks(100, 1000 + (i % 2) * 1000))
    stop.set()
    t.join()
    assert seen <= {100_000, 200_000}


UPLOAD_SCRIPT = """
import json, sys, tracemalloc
from exporter.config import load_settings
from exporter.storage import open_storage
storage = open_storage(load_settings())
total = int(sys.argv[1])
def chunks():
    sent = 0
    while sent < total:
        n = min(65536, total - sent)
        yield bytes([sent % 251]) * n
        sent += n
tracemalloc.start()
info = storage.write("big/blob.bin", chunks())
print(json.dumps({"size": info.size, "peak": tracemalloc.get_traced_memory()[1]}))
"""


def test_s3_large_write_is_multipart_and_streams(s3_settings, tmp_path):
    import json
    import os
    import subprocess
    import sys

    total = 16 * PART + 12345
    env = {**os.environ, "EXPORTER_VAR_DIR": str(s3_settings.var_dir), "EXPORTER_SECRET_KEY": s3_settings.secret_key,
           "EXPORTER_STORAGE_URL": s3_settings.storage_url, "EXPORTER_S3_ENDPOINT_URL": s3_settings.s3_endpoint_url}
    out = subprocess.run([sys.executable, "-c", UPLOAD_SCRIPT, str(total)], env=env, capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    storage = open_storage(s3_settings)
    head = storage.client.head_object(Bucket=storage.bucket, Key=storage._full("big/blob.bin"))
    assert head["ETag"].strip('"').endswith("-17")  # seventeen parts: a multipart upload
    assert result["size"] == head["ContentLength"] == total
    # The uploader holds a bounded number of parts (4 in flight, the one being read and its join
    # copy: measured 4.4 to 6.3 parts), never a share of the object that grows with its size.
    assert result["peak"] < 8 * PART < total / 2


def test_s3_presigned_url_downloads_with_filename_and_expires(s3_settings):
    storage = open_storage(s3_settings)
    storage.write("dl/data.zip", b"zipzip")
    url = storage.download_url("dl/data.zip", 60, filename="raids.zip")
    r = requests.get(url, timeout=10)
    assert r.status_code == 200 and r.content == b"zipzip"
    assert 'filename="raids.zip"' in r.headers["Content-Disposition"]
    # moto's server does not enforce expiry (real S3 and MinIO do): check what we sign.
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == ["60"] and query["X-Amz-Signature"][0]


def test_local_download_url_expires_and_refuses_tampering(make_settings):
    from exporter.context import Context
    from web import create_app

    ctx = Context(make_settings())
    ctx.enqueue = lambda *a: None
    ctx.storage.write("dl/data.zip", b"zipzip")
    client = create_app(ctx).test_client()
    url = ctx.storage.download_url("dl/data.zip", 60, filename="raids.zip").removeprefix(ctx.settings.public_url)
    r = client.get(url)
    assert r.status_code == 200 and r.data == b"zipzip" and "raids.zip" in r.headers["Content-Disposition"]
    assert client.get(url.replace("dl/data.zip", "dl/other.zip")).status_code == 403
    assert client.get(url.replace("filename=raids.zip", "filename=evil.exe")).status_code == 403
    assert client.get(url.split("signature=")[0] + "signature=%C3%A9").status_code == 403  # non-ASCII: refused, not a 500
    expired = ctx.storage.download_url("dl/data.zip", -1, filename="raids.zip").removeprefix(ctx.settings.public_url)
    r = client.get(expired)
    assert r.status_code == 410 and "expired" in r.json["error"]


def test_local_download_link_is_bound_to_its_key_secret_purpose_and_lifetime(make_settings):
    import itsdangerous

    from exporter.context import Context
    from exporter.storage import signing
    from web import create_app

    ctx = Context(make_settings())
    ctx.enqueue = lambda *a: None
    for key in ("dl/a.zip", "dl/b.zip"):
        ctx.storage.write(key, key.encode())
    client = create_app(ctx).test_client()

    def query(url: str) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}

    a = query(ctx.storage.download_url("dl/a.zip", 60, filename="a.zip"))
    b_path = urlsplit(ctx.storage.download_url("dl/b.zip", 60, filename="a.zip")).path
    assert client.get(b_path, query_string=a).status_code == 403  # a's link does not open b, even with b's file name
    assert client.get("/files/dl/a.zip", query_string=a).data == b"dl/a.zip"
    token = a["signature"]
    # Flip a character inside the signature: the last base64 character can carry padding bits
    # only, so changing it may decode to the same bytes and prove nothing.
    i = len(token) - 6
    flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
    assert client.get("/files/dl/a.zip", query_string={**a, "signature": flipped}).status_code == 403
    claims = {"key": "dl/b.zip", "filename": "a.zip", "expires": 2**40}
    for forged in (
        itsdangerous.URLSafeSerializer(ctx.settings.secret_key, salt="another purpose").dumps(claims),  # our secret, another salt
        itsdangerous.URLSafeSerializer("not-our-secret", salt=signing.SALT).dumps(claims),
        itsdangerous.URLSafeSerializer(ctx.settings.secret_key).dumps(claims),  # unsalted
    ):
        assert client.get("/files/dl/b.zip", query_string={"filename": "a.zip", "signature": forged}).status_code == 403
    assert client.get("/files/dl/a.zip", query_string={"filename": "a.zip"}).status_code == 403  # no signature

    url = signing.sign("", ctx.settings.secret_key, "dl/a.zip", 60, "a.zip", now=1000)
    q = query(url)
    signing.verify(ctx.settings.secret_key, "dl/a.zip", "a.zip", q["signature"], now=1060)  # valid to the second
    with pytest.raises(signing.Expired):
        signing.verify(ctx.settings.secret_key, "dl/a.zip", "a.zip", q["signature"], now=1061)
    with pytest.raises(signing.BadSignature):  # tampered beats expired: a changed link is refused as such
        signing.verify(ctx.settings.secret_key, "dl/b.zip", "a.zip", q["signature"], now=1061)


def test_cleanup_removes_leftovers_of_killed_writes(make_settings, s3_settings):
    local = open_storage(make_settings())
    (local.root / ".tmp" / "leftover").write_bytes(b"x")
    assert local.cleanup_temporary(0) == 1
    s3 = open_storage(s3_settings)
    s3.client.create_multipart_upload(Bucket=s3.bucket, Key=s3._full("half/obj"))
    assert s3.cleanup_temporary(-60) == 1


def test_list_matches_partial_names_and_folders(storage):
    for key in ("ab/1.txt", "abc/2.txt", "abc/d/3.txt", "b/4.txt", "abx.txt", "top.txt"):
        storage.write(key, b"x")
    assert [o.key for o in storage.list("ab")] == ["ab/1.txt", "abc/2.txt", "abc/d/3.txt", "abx.txt"]
    assert [o.key for o in storage.list("abc/")] == ["abc/2.txt", "abc/d/3.txt"]
    assert [o.key for o in storage.list("abc/d")] == ["abc/d/3.txt"]
    assert [o.key for o in storage.list("nothing/")] == []
    assert len(list(storage.list(""))) == 6


def test_local_list_walks_only_the_folder_of_the_prefix(make_settings, monkeypatch):
    from exporter.storage import local

    storage = open_storage(make_settings())
    for i in range(5):
        storage.write(f"other{i}/deep/x.txt", b"x")
    storage.write("exports/a/1.csv", b"1")
    storage.write("exports/b/2.csv", b"2")
    walked = []
    real_walk = os.walk

    def recording_walk(top, *args, **kwargs):
        for entry in real_walk(top, *args, **kwargs):
            walked.append(os.path.relpath(entry[0], storage.root))
            yield entry

    monkeypatch.setattr(local.os, "walk", recording_walk)
    assert [o.key for o in storage.list("exports/a")] == ["exports/a/1.csv"]
    assert sorted(walked) == ["exports", "exports/a"]


def test_local_move_and_delete_remove_emptied_folders(make_settings):
    storage = open_storage(make_settings())
    storage.write("staging/job1/part/a.csv", b"a")
    storage.write("staging/job2/b.csv", b"b")
    storage.move("staging/job1/part/a.csv", "exports/a.csv")
    assert not (storage.root / "staging" / "job1").exists()
    storage.delete("staging/job2/b.csv")
    assert not (storage.root / "staging").exists()
    assert storage.read_bytes("exports/a.csv") == b"a"


def test_create_only_and_compare_and_set(storage):
    """Create-only refuses an existing object; put_if refuses a stale etag; neither writes anything when it loses."""
    from exporter.storage import PreconditionFailed

    first = storage.create("c/LATEST.json", b"one")
    with pytest.raises(PreconditionFailed):
        storage.create("c/LATEST.json", b"two")
    data, etag = storage.read_with_etag("c/LATEST.json")
    assert data == b"one" and etag == first.etag == storage.stat("c/LATEST.json").etag
    second = storage.put_if("c/LATEST.json", b"three", etag)
    assert storage.read_bytes("c/LATEST.json") == b"three" and second.etag != etag
    with pytest.raises(PreconditionFailed):
        storage.put_if("c/LATEST.json", b"stale", etag)
    with pytest.raises(PreconditionFailed):
        storage.put_if("c/missing.json", b"x", etag)
    assert storage.read_bytes("c/LATEST.json") == b"three" and storage.stat("c/missing.json") is None
    assert storage.read_with_etag("c/missing.json") is None


def test_of_two_compare_and_set_writers_one_wins(storage):
    from exporter.storage import PreconditionFailed

    storage.create("race/LATEST.json", b"0")
    _, etag = storage.read_with_etag("race/LATEST.json")
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def writer(n: int) -> None:
        barrier.wait()
        try:
            storage.put_if("race/LATEST.json", str(n).encode(), etag)
            outcomes.append(f"won {n}")
        except PreconditionFailed:
            outcomes.append("lost")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    [won] = [o for o in outcomes if o.startswith("won")]
    assert outcomes.count("lost") == 3 and storage.read_bytes("race/LATEST.json") == won.split()[1].encode()


def test_local_writes_survive_deletes_that_remove_emptied_folders(make_settings):
    """One thread writes and deletes race/a/x (each delete removes race/a, then race, when empty)
    while others write race/b/<n> and create-only race/c/<n>: the folder a writer just made may
    vanish before its file lands, and the write must still succeed."""
    import threading

    storage = open_storage(make_settings())
    errors: list[str] = []
    rounds = 1500

    def churn() -> None:
        for _ in range(rounds):
            storage.write("race/a/x", b"1")
            storage.delete("race/a/x")

    def write(folder: str, create_only: bool) -> None:
        for i in range(rounds):
            key = f"race/{folder}/{i}"
            try:
                storage.put_if(key, b"2", None) if create_only else storage.write(key, b"2")
                storage.delete(key)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(f"{key}: {exc!r}")

    threads = [threading.Thread(target=churn), threading.Thread(target=write, args=("b", False)), threading.Thread(target=write, args=("c", True))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert list(storage.list("race/")) == [] and not (storage.root / "race").exists()
