"""Storage in any S3-compatible bucket through boto3: multipart uploads, pre-signed URLs."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from .base import (
    CHUNK,
    Data,
    HashingReader,
    ObjectInfo,
    ObjectNotFound,
    PreconditionFailed,
    Storage,
    WriteHandle,
    check_key,
    filename_of,
    guess_type,
)

PART = 8 * 1024 * 1024
# What S3 (and moto) answer when a conditional write loses: 412, or 409 for a race in flight.
LOST_CONDITION = {"PreconditionFailed", "ConditionalRequestConflict"}


def _content_disposition(filename: str) -> str:
    safe = filename.replace('"', "").replace("\\", "")
    return f'attachment; filename="{safe}"'


class S3Storage(Storage):
    scheme = "s3"

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, region: str = "us-east-1"):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region,
            config=Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60),
        )
        self.transfer = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=4)
        # s3transfer reads up to 10 parts ahead of slow uploads; bound the memory a stream costs to 4.
        self.transfer.max_in_memory_upload_chunks = 4

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _short(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _upload(self, key: str, fileobj: BinaryIO, content_type: str | None, metadata: dict[str, str]) -> None:
        extra = {"ContentType": content_type or guess_type(key), "Metadata": metadata}
        self.client.upload_fileobj(fileobj, self.bucket, self._full(key), ExtraArgs=extra, Config=self.transfer)

    def write(self, key: str, data: Data, content_type: str | None = None) -> ObjectInfo:
        reader = HashingReader(data)
        self._upload(key, reader, content_type, {})
        h = reader.hasher
        return ObjectInfo(key=key, size=h.size, modified=datetime.now(UTC), content_type=content_type or guess_type(key), md5=h.md5, sha256=h.sha256)

    def put_if(self, key: str, data: Data, etag: str | None, content_type: str | None = None) -> ObjectInfo:
        """One PutObject with If-None-Match: * (create-only) or If-Match: etag (compare-and-set)."""
        with tempfile.TemporaryFile() as spool:
            reader = HashingReader(data)
            while chunk := reader.read(CHUNK):
                spool.write(chunk)
            spool.seek(0)
            h = reader.hasher
            condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
            try:
                res = self.client.put_object(
                    Bucket=self.bucket, Key=self._full(key), Body=spool, ContentType=content_type or guess_type(key), Metadata={"md5": h.md5, "sha256": h.sha256}, **condition
                )
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code in LOST_CONDITION or (etag is not None and code in ("NoSuchKey", "404")):
                    raise PreconditionFailed(f"{key}: " + ("it exists already" if etag is None else "it changed since it was read")) from None
                raise
        return ObjectInfo(key=key, size=h.size, modified=datetime.now(UTC), content_type=content_type or guess_type(key), md5=h.md5, sha256=h.sha256, etag=res["ETag"])

    def read_with_etag(self, key: str) -> tuple[bytes, str] | None:
        try:
            res = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        body = res["Body"]
        try:
            return b"".join(iter(lambda: body.read(CHUNK), b"")), res["ETag"]
        finally:
            body.close()

    @contextmanager
    def open_write(self, key: str, content_type: str | None = None, sync: bool = True) -> Iterator[WriteHandle]:
        check_key(key)
        with tempfile.TemporaryFile() as spool:
            handle = WriteHandle(spool)
            yield handle
            spool.seek(0)
            h = handle.hasher
            self._upload(key, spool, content_type, {"md5": h.md5, "sha256": h.sha256})
        handle.info = ObjectInfo(key=key, size=h.size, modified=datetime.now(UTC), content_type=content_type or guess_type(key), md5=h.md5, sha256=h.sha256)

    def open(self, key: str) -> BinaryIO:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise ObjectNotFound(f"no object {key!r}") from None
            raise

    def read_bytes(self, key: str) -> bytes:
        body = self.open(key)
        try:
            return b"".join(iter(lambda: body.read(CHUNK), b""))
        finally:
            body.close()

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        meta = head.get("Metadata", {})
        return ObjectInfo(
            key=key, size=head["ContentLength"], modified=head["LastModified"], content_type=head.get("ContentType"), md5=meta.get("md5"), sha256=meta.get("sha256"), etag=head.get("ETag")
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full_prefix = f"{self.prefix}/{prefix}" if self.prefix else prefix
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
            for obj in page.get("Contents", []):
                yield ObjectInfo(key=self._short(obj["Key"]), size=obj["Size"], modified=obj["LastModified"])

    def delete(self, key: str) -> bool:
        existed = self.stat(key) is not None
        self.client.delete_object(Bucket=self.bucket, Key=self._full(key))
        return existed

    def move(self, src: str, dst: str) -> ObjectInfo:
        if self.stat(src) is None:
            raise ObjectNotFound(f"no object {src!r}")
        self.client.copy({"Bucket": self.bucket, "Key": self._full(src)}, self.bucket, self._full(dst), Config=self.transfer)
        self.client.delete_object(Bucket=self.bucket, Key=self._full(src))
        return self.stat(dst)

    def download_url(self, key: str, expires_in: int, filename: str | None = None) -> str:
        params = {"Bucket": self.bucket, "Key": self._full(key), "ResponseContentDisposition": _content_disposition(filename or filename_of(key))}
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)

    def usage(self) -> tuple[int | None, int | None]:
        return None, None

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise RuntimeError(f"bucket {self.bucket!r}: {exc.response['Error'].get('Message') or exc}") from None

    def cleanup_temporary(self, older_than_seconds: float) -> int:
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        removed = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < cutoff:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    removed += 1
        return removed
