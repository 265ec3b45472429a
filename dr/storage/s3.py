"""``s3://bucket/prefix``: a repository in an S3 (or S3-compatible) bucket, via boto3.

Settings. ``endpoint`` (S3-compatible servers: MinIO, SeaweedFS, Ceph …),
``region``, ``addressing_style`` (auto/virtual/path), ``storage_class`` and
``sign_payload`` come from dr.yaml (``S3Options``) or the URL query
(``s3://b/p?endpoint=https://minio:9000&region=eu-1&addressingStyle=path``);
the same setting given differently in both is an error; so does Object Lock
(``objectLock`` in dr.yaml, ``objectLockDays=30&objectLockMode=COMPLIANCE`` in
the query). Credentials come only from boto3's standard chain
(environment, shared config/credentials files and profiles, web identity /
IRSA, container and instance roles), never from the URL: URLs end up in
logs, snapshots and process listings.

One client per store. boto3 clients are thread-safe and hold the connection
pool, so the store creates exactly one (from its own ``Session``: sessions
are not thread-safe) and every call reuses it; ``max_pool_connections`` is
sized for the repository's ~4 parallel workers plus a reader. The client is
made through botocore's session, the one boto3's wraps: the client object is
the same, and importing boto3 would also import s3transfer (managed
transfers, which dr does not use) — ~0.1 s of every mover Job's start-up
(0.43-0.48 s with boto3, 0.32-0.38 s without, for the import and the client). botocore's
own retries are off (``total_max_attempts=1``): ``dr.storage.retry`` decides,
so that attempts do not multiply and create-only puts are retried safely.

Create-only. ``put(if_absent=True)`` sends ``If-None-Match: *``; S3 answers 412
``PreconditionFailed`` when the key exists (→ ``ObjectExists``, the existing
object untouched). Objects up to ``multipart_threshold`` (32 MiB) go up in
one PutObject: a pack (~16 MiB) is one request, and the backup's uploader
threads keep several packs in flight, each on its own connection. Larger
objects (packs of a repository made with a bigger pack size) go up as a
multipart upload in equal parts of at most 8 MiB, sent in parallel (a
store-wide pool of ``parallel_parts`` threads): one connection to S3 rarely
carries more than ~50–100 MB/s. The condition is sent with
``CompleteMultipartUpload``, which is where S3 (and SeaweedFS, checked by the
tests) evaluates it, so a multipart upload can never replace an object
either. A failed or refused multipart upload is aborted so its parts do not
linger (an ``AbortIncompleteMultipartUpload`` lifecycle rule is still wise,
for processes killed mid-upload and for the empty upload a lost
``CreateMultipartUpload`` answer leaves behind).

Streamed reads. ``get_pieces`` (restores) sends one ranged GET for a pack's
whole range and reads the body blob by blob as it arrives: one request per
pack instead of one per 8 MiB, and one blob in memory per reader instead of
the range. A body cut off part way (reset, timeout, short body) is not
started over: the retry policy runs per blob, and its next attempt sends a
new GET from the blob it was reading.

Integrity of uploads. Every object and part carries a CRC32 checksum
(``x-amz-checksum-crc32``, a signed header), which S3 verifies on arrival.
dr computes it (``crc32_header``) and a pack's view goes to urllib3 whole
(``send_views_whole``), so the body is neither read for the checksum nor
sent 16 KiB at a time.
The body itself is not hashed into the SigV4 signature
(``UNSIGNED-PAYLOAD``): botocore already leaves it out over HTTPS, and over
plain HTTP — common for in-cluster MinIO, Ceph RGW or SeaweedFS — it would
SHA-256 every byte a second time, to protect data that is sealed with
AES-256-GCM anyway (a changed body fails authentication on every read and in
``verify``). Measured on the 1 GiB benchmark set into SeaweedFS over HTTP:
CPU 9.0-9.3 s -> 7.8-8.6 s, wall 10.1-10.3 s -> 9.1-9.8 s. A server that
refuses unsigned payloads over plain HTTP (SeaweedFS and MinIO accept them;
over HTTPS every S3 does) gets the hash back with ``signPayload: true``.

Object Lock. With ``object_lock`` set, every object except those under
``locks/`` (which must stay deletable) is written with ``ObjectLockMode`` and
``ObjectLockRetainUntilDate`` = now + days. An Object Lock bucket is
versioned, and a plain DELETE there only adds a delete marker, hiding the
object while its bytes stay. So with ``object_lock`` set, ``delete`` removes
every version of the name instead (needs ``s3:ListBucketVersions`` and
``s3:DeleteObjectVersion``): the object is gone, or — while retained — the
delete fails with ``AccessDenied`` saying until when, and nothing changes.

Errors. 403s become ``AccessDenied`` with what to check (wrong secret key,
unknown key id, expired token, missing permission; note that S3 answers 403
rather than 404 for a missing key when the credentials lack
``s3:ListBucket``). ``NoSuchBucket`` becomes a ``StorageError`` naming the
bucket and endpoint; a 404 on a read is checked once per store against the
bucket, because HEAD answers a bare 404 for both. Messages are built from
error codes and S3's messages, never from credentials or signed requests.

Listing uses ``ListObjectsV2`` with continuation tokens in a plain loop, not
boto3's paginator: the paginator is a generator that ends for good when a
page request raises, so a page could not be retried on its own.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import dataclasses
import functools
import io
import logging
import os
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from dr.config import ObjectLock, S3Options
from dr.errors import InvalidInput
from dr.storage.base import (
    AccessDenied,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    ObjectRetained,
    StorageError,
    delete_each,
)
from dr.storage.naming import (
    check_endpoint,
    check_name,
    check_prefix,
    merge_setting,
    parse_bucket_url,
)
from dr.storage.retry import RetryPolicy, TransientError
from dr.storage.streamed_reads import StreamedReads
from dr.urls import redact_url

log = logging.getLogger(__name__)

# Keys a DeleteObjects request takes at most (S3's limit).
DELETE_BATCH = 1000
# What an S3-compatible store answers to a DeleteObjects request it does not take as sent:
# without Content-MD5 (MissingContentMD5, InvalidDigest, BadDigest: older MinIO and Ceph
# against botocore's CRC32), or not at all (NotImplemented).
BATCH_DELETE_REFUSED = frozenset({"MissingContentMD5", "InvalidDigest", "BadDigest", "NotImplemented"})

T = TypeVar("T")

MiB = 1024 * 1024


class ViewReader(io.RawIOBase):
    """A seekable, read-only file over a memoryview: botocore takes it as a body
    (it refuses a memoryview) without a copy of the 16 MiB pack first. It is not
    read to send it: ``send_views_whole`` hands urllib3 the view itself."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._pos = 0

    @property
    def rest(self) -> memoryview:
        """What a read from here on would return, as a view of the same memory."""
        return self._view[self._pos :]

    def __len__(self) -> int:
        return len(self._view)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, min(len(self._view), base + offset))
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), len(self._view) - self._pos)
        memoryview(buffer).cast("B")[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else min(len(self._view), self._pos + size)
        out = bytes(self._view[self._pos : end])
        self._pos = end
        return out


# A pack (~16 MiB) goes up in one PUT: as 3 parts it costs 5 requests (create,
# parts, complete) instead of 1, and the extra requests cost both ends CPU.
# Measured with the 1 GiB benchmark set into SeaweedFS on 2 cores, alternating:
# full backup 5.85-6.11 s (dr 4.6 CPU s, SeaweedFS 6.1-6.4) with single PUTs
# against 6.57-6.61 s (dr 5.1-5.2, SeaweedFS 6.8-7.0) with multipart. Packs
# still go up side by side, one per uploader thread.
MULTIPART_THRESHOLD = 32 * MiB
PART_SIZE = 8 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's lower bound for every part but the last
# Part uploads in flight per store, across all its puts (objects above the
# threshold: packs of a repository made with a larger pack size).
PARALLEL_PARTS = 8
# Parallel parts plus ~4 workers' reads and puts in flight, plus headroom.
MAX_POOL_CONNECTIONS = 24
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
# Names under this prefix are never retained: locks must stay deletable.
UNRETAINED_PREFIX = "locks/"

_QUERY_SETTINGS = {
    "endpoint": "endpoint",
    "region": "region",
    "addressing_style": "addressing_style",
    "addressingStyle": "addressing_style",
    "storage_class": "storage_class",
    "storageClass": "storage_class",
    "sign_payload": "sign_payload",
    "signPayload": "sign_payload",
    "object_lock_days": "object_lock_days",
    "objectLockDays": "object_lock_days",
    "object_lock_mode": "object_lock_mode",
    "objectLockMode": "object_lock_mode",
}
_LOCK_MODES = ("GOVERNANCE", "COMPLIANCE")
_ADDRESSING_STYLES = ("auto", "virtual", "path")
_CREDENTIAL_HINT = (
    "AWS credentials come from the standard chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
    "AWS_PROFILE and ~/.aws files, or a web-identity role such as IRSA)"
)

_THROTTLING_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "Busy",
    }
)
_ACCESS_HINTS = {
    "SignatureDoesNotMatch": "the secret access key does not match the access key id; check the credentials",
    "InvalidAccessKeyId": "the access key id is not known to this endpoint; check the credentials",
    "ExpiredToken": "the session token has expired; refresh the credentials",
    "TokenRefreshRequired": "the session token has expired; refresh the credentials",
    "InvalidToken": "the session token is invalid; check the credentials",
    "AccessDenied": "the credentials lack permission for this (or S3 Object Lock forbids it)",
    "AllAccessDisabled": "all access to this bucket is disabled",
    "AccountProblem": "the AWS account has a problem that prevents this",
    "403": "forbidden: wrong credentials or missing permission "
    "(S3 also answers 403 for a missing object when the credentials lack s3:ListBucket)",
}


class _UploadGone(StorageError):
    """``NoSuchUpload``: the multipart upload was completed or aborted already."""


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    root: str  # key prefix inside the bucket: "" or "path/"
    endpoint: str | None = None
    region: str | None = None
    addressing_style: str = "auto"
    storage_class: str | None = None
    object_lock: ObjectLock | None = None
    sign_payload: bool = False

    @property
    def where(self) -> str:
        """Where the bucket lives, for messages."""
        return f"at {self.endpoint}" if self.endpoint else f"in AWS S3 region {self.region or '(default)'}"


def settings_from_url(url: str, options: S3Options | None) -> S3Settings:
    """Merge the URL query and dr.yaml options; ``InvalidInput`` for anything wrong."""
    parsed = parse_bucket_url(url, "s3", _QUERY_SETTINGS, _CREDENTIAL_HINT)
    q = parsed.settings
    endpoint = merge_setting(url, "endpoint", q.get("endpoint"), options.endpoint if options else None)
    region = merge_setting(url, "region", q.get("region"), options.region if options else None)
    style = merge_setting(
        url,
        "addressing_style",
        q.get("addressing_style"),
        options.addressing_style if options and options.addressing_style != "auto" else None,
    )
    storage_class = merge_setting(
        url, "storage_class", q.get("storage_class"), options.storage_class if options else None
    )
    if endpoint is not None:
        check_endpoint(url, endpoint, _CREDENTIAL_HINT)
    sign = merge_setting(
        url,
        "sign_payload",
        q.get("sign_payload"),
        "true" if options and options.sign_payload else None,
    )
    if sign is not None and sign not in ("true", "false"):
        raise InvalidInput(f"repository URL {redact_url(url)!r}: signPayload={sign!r} is not true or false")
    if style is not None and style not in _ADDRESSING_STYLES:
        raise InvalidInput(
            f"repository URL {redact_url(url)!r}: addressing style {style!r} is not one of {', '.join(_ADDRESSING_STYLES)}"
        )
    return S3Settings(
        bucket=parsed.bucket,
        root=parsed.root,
        endpoint=endpoint or None,
        region=region or None,
        addressing_style=style or "auto",
        storage_class=storage_class or None,
        object_lock=_object_lock(url, q, options.object_lock if options else None),
        sign_payload=sign == "true",
    )


def _object_lock(url: str, q: dict[str, str], configured: ObjectLock | None) -> ObjectLock | None:
    """Object Lock from the URL query (``objectLockDays=30&objectLockMode=COMPLIANCE``, the
    mode defaulting as in dr.yaml) or dr.yaml; both given and different is an error."""
    days_text, mode = q.get("object_lock_days"), q.get("object_lock_mode")
    if days_text is None and mode is None:
        return configured
    shown = redact_url(url)
    if days_text is None:
        raise InvalidInput(f"repository URL {shown!r}: objectLockMode needs objectLockDays (1 to 36500)")
    if not (days_text.isascii() and days_text.isdigit() and 1 <= int(days_text) <= 36500):
        raise InvalidInput(
            f"repository URL {shown!r}: objectLockDays={days_text!r} is not a number of days from 1 to 36500"
        )
    if mode is not None and mode not in _LOCK_MODES:
        raise InvalidInput(
            f"repository URL {shown!r}: objectLockMode={mode!r} is not one of {', '.join(_LOCK_MODES)}"
        )
    lock = ObjectLock(days=int(days_text), mode=mode or "COMPLIANCE")  # type: ignore[arg-type]
    if configured is not None and configured != lock:
        raise InvalidInput(
            f"repository URL {shown!r}: Object Lock {lock.mode} {lock.days} days in the URL contradicts "
            f"{configured.mode} {configured.days} days in the config"
        )
    return lock


def botocore_session() -> Any:
    """A botocore session whose data loader checks a service name by that service's directory.

    botocore's loader makes sure a service exists before loading its model by
    listing every service's data directory (~400 of them, ~2,700 ``stat``
    calls): 0.15-0.2 s of every S3 command's start-up from a cold disk
    (measured: client 0.26-0.30 s -> 0.08-0.13 s). The membership test here
    looks at the one directory; the full list is built only if iterated
    (botocore's "unknown service" message). Other services (STS for web
    identity, SSO) load as before. ``AWS_DATA_PATH`` is honoured like
    ``botocore.loaders.create_loader`` does.

    Its data files are parsed into plain dicts, not botocore's OrderedDicts:
    dicts keep the same order and nothing in botocore needs OrderedDict's extra
    methods, and parsing is 2-2.6x faster. Every client parses the 1.2 MB
    ``endpoints.json`` (53 -> 20 ms warm) and S3's service model (23 -> 13 ms).
    """
    import gzip
    import json

    import botocore.loaders
    import botocore.session

    class PlainJSONFileLoader(botocore.loaders.JSONFileLoader):  # type: ignore[misc]
        # The same files in the same order as botocore's loader: NAME.json, then NAME.json.gz.
        def load_file(self, file_path: str) -> Any:
            for ext, opener in ((".json", builtins.open), (".json.gz", gzip.open)):
                full_path = file_path + ext
                if os.path.isfile(full_path):
                    with opener(full_path, "rb") as fp:
                        return json.loads(fp.read().decode("utf-8"))
            return None

    class ServiceNames(list[str]):
        def __init__(self, loader: botocore.loaders.Loader, type_name: str) -> None:
            super().__init__()
            self._loader, self._type, self._filled = loader, type_name, False

        def __contains__(self, name: object) -> bool:
            if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
                return False
            for base in self._loader.search_paths:
                service_dir = os.path.join(base, name)
                if not os.path.isdir(service_dir):
                    continue
                for version in os.listdir(service_dir):
                    if self._loader.file_loader.exists(os.path.join(service_dir, version, self._type)):
                        return True
            return False

        def _fill(self) -> None:
            if not self._filled:
                self._filled = True
                self.extend(botocore.loaders.Loader.list_available_services(self._loader, self._type))

        def __iter__(self) -> Iterator[str]:
            self._fill()
            return super().__iter__()

        def __len__(self) -> int:
            self._fill()
            return super().__len__()

    class DirectLoader(botocore.loaders.Loader):  # type: ignore[misc]
        def list_available_services(self, type_name: str) -> list[str]:
            return ServiceNames(self, type_name)

    session = botocore.session.Session()
    data_path = session.get_config_variable("data_path")
    paths = (
        [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)]
        if data_path
        else None
    )
    session.register_component(
        "data_loader", DirectLoader(extra_search_paths=paths, file_loader=PlainJSONFileLoader())
    )
    session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
    return session


def parse_timestamp(value: Any) -> datetime:
    """botocore's response timestamps, parsed without dateutil where the form is S3's.

    botocore parses every timestamp of a response with dateutil (~95 µs each):
    the ``LastModified`` of each key in a listing, the ``Last-Modified`` header
    of each get. A 1,000-key ``ListObjectsV2`` page took 112 ms of CPU to parse,
    39 ms with this. ISO 8601 (listings) and RFC 1123 (headers) are parsed by
    the standard library; anything else (epoch seconds, a form neither parser
    takes) goes to botocore's own parser. The result is the same instant; a
    time without a zone, which S3 does not send, is taken as UTC (botocore
    would leave it naive, and ``datetime.astimezone`` read it as local time).
    """
    parsed: datetime | None = None
    if isinstance(value, str):
        with contextlib.suppress(ValueError, TypeError):
            if value[:1].isdigit() and "-" in value:
                parsed = datetime.fromisoformat(value)
            elif value[:1].isalpha():
                parsed = parsedate_to_datetime(value)
    if parsed is None:
        from botocore.utils import parse_timestamp as botocore_parse

        return botocore_parse(value)  # type: ignore[no-any-return]
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def crc32_header(data: bytes | memoryview) -> str:
    """The ``x-amz-checksum-crc32`` value of a body (base64 of the big-endian CRC32).
    Given with the request, botocore computes none: it would read the body for it,
    a copy of every byte in 1 MiB pieces."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def send_views_whole(request: Any, **_: Any) -> None:
    """botocore ``before-send`` hook: a ``ViewReader`` body goes to urllib3 as its
    memoryview, which it sends with one ``sendall``. Read as a file, urllib3 sends
    it 16 KiB at a time: ~43,000 reads, copies and system calls for the 1 GiB
    benchmark set (full backups into SeaweedFS, alternating: 4.85-4.99 s against
    4.86-5.99 s). The length was set from the reader, and the checksum is a
    header (``crc32_header``)."""
    if isinstance(request.body, ViewReader):
        request.body = request.body.rest


def make_client(settings: S3Settings) -> Any:
    """One S3 client with dr's connection, timeout and retry settings; credentials
    from boto3's standard chain (botocore's, which boto3 uses)."""
    from botocore.config import Config

    config = Config(
        region_name=settings.region,
        signature_version="s3v4",
        s3={"addressing_style": settings.addressing_style, "payload_signing_enabled": settings.sign_payload},
        retries={"mode": "standard", "total_max_attempts": 1},
        max_pool_connections=MAX_POOL_CONNECTIONS,
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        tcp_keepalive=True,
    )
    client = botocore_session().create_client("s3", endpoint_url=settings.endpoint, config=config)
    client.meta.events.register("before-send.s3", send_views_whole)
    return client


# --------------------------------------------------------------------------- error mapping


def map_error(
    exc: BaseException,
    *,
    store: str,
    what: str,
    settings: S3Settings,
    name: str | None,
    conditional: bool = False,
) -> StorageError:
    """The dr error for a boto3/botocore exception. ``what`` names store, operation
    and object (``s3://b/p: get data/ab/…``); ``conditional`` marks a create-only
    write, where 412 and 409 mean the name is taken."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        CredentialRetrievalError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ProxyConnectionError,
        SSLError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = str(err.get("Message", "")) or code
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        reason = f"{code}: {message}" if code and code != message else message
        if code == "NoSuchBucket":
            return StorageError(f"{what}: bucket {settings.bucket!r} does not exist {settings.where}")
        if code in ("NoSuchKey", "NotFound") or (status == 404 and code in ("404", "")):
            return ObjectNotFound(name or "", store)
        if code == "NoSuchUpload":
            return _UploadGone(f"{what}: {reason}")
        if code in _ACCESS_HINTS or status in (401, 403):
            hint = _ACCESS_HINTS.get(code, "forbidden: wrong credentials or missing permission")
            return AccessDenied(f"{what}: access denied ({code or status}): {hint}")
        if conditional and (code == "PreconditionFailed" or status == 412):
            return ObjectExists(name or "")
        if code == "ConditionalRequestConflict" or (conditional and status == 409):
            # A concurrent conditional write to the same key: retry, and if it
            # persists report the name as taken (see dr.storage.retry).
            return TransientError(
                f"{what}: {reason}",
                maybe_applied=False,
                exhausted=ObjectExists(name or "") if conditional else None,
            )
        if code in _THROTTLING_CODES or status in (429, 503):
            return TransientError(f"{what}: throttled ({reason})", maybe_applied=False)
        if code == "RequestTimeout":
            # The server gave up waiting for our request body: nothing was stored.
            return TransientError(f"{what}: {reason}", maybe_applied=False)
        if code in ("BadDigest", "XAmzContentSHA256Mismatch"):
            # The body arrived changed (its CRC32 or hash did not match): nothing
            # was stored, and sending it again is the cure.
            return TransientError(f"{what}: body damaged in transit ({reason})", maybe_applied=False)
        if code in ("InternalError", "InternalFailure") or (isinstance(status, int) and status >= 500):
            return TransientError(f"{what}: server error ({reason})", maybe_applied=True)
        return StorageError(f"{what}: {reason}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return AccessDenied(f"{what}: no usable AWS credentials ({exc}); {_CREDENTIAL_HINT}")
    if isinstance(exc, SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return StorageError(
            f"{what}: TLS certificate of {settings.endpoint or 'the S3 endpoint'} not trusted"
        )
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ProxyConnectionError):
        # The request never reached the server.
        return TransientError(f"{what}: cannot connect ({exc})", maybe_applied=False)
    if isinstance(exc, BotoConnectionError | ConnectionError | TimeoutError) or _is_http_client_error(exc):
        # Read timeouts, resets, truncated bodies: the server may have acted.
        return TransientError(f"{what}: connection failed ({exc})", maybe_applied=True)
    if isinstance(exc, BotoCoreError):
        return StorageError(f"{what}: {exc}")
    return StorageError(f"{what}: {type(exc).__name__}: {exc}")


def _is_http_client_error(exc: BaseException) -> bool:
    from botocore.exceptions import HTTPClientError, IncompleteReadError
    from urllib3.exceptions import HTTPError as Urllib3Error

    return isinstance(exc, HTTPClientError | IncompleteReadError | Urllib3Error)


def _mappable() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import BotoCoreError, ClientError
    from urllib3.exceptions import HTTPError as Urllib3Error

    return (ClientError, BotoCoreError, Urllib3Error, ConnectionError, TimeoutError)


class _RangeStream:
    """The body of one ranged GET, read forward piece by piece (a ``PieceReader``):
    ``pos`` is the object offset of its next byte. ``body`` None: nothing there
    (the range starts past the end)."""

    SKIP = 1 << 20

    def __init__(self, body: Any, pos: int, pieces: Sequence[tuple[int, int]]) -> None:
        self.body = body
        self.pos = pos
        self._pieces = pieces
        self._next = 0

    def next(self) -> bytes:
        offset, length = self._pieces[self._next]
        self._next += 1
        return self.read_at(offset, length)

    def read_at(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (>= pos; the bytes before it are dropped),
        fewer only at the end of the object. botocore raises ``IncompleteReadError``
        for a body cut short of its Content-Length, so a short read is the real end."""
        while self.pos < offset:
            if not self._read(min(self.SKIP, offset - self.pos)):
                return b""
        return self._read(length)

    def _read(self, n: int) -> bytes:
        if self.body is None or n == 0:
            return b""
        first: bytes = self.body.read(n)
        if len(first) in (0, n):
            self.pos += len(first)
            return first
        parts = [first]
        got = len(first)
        while got < n:
            more = self.body.read(n - got)
            if not more:
                break
            parts.append(more)
            got += len(more)
        self.pos += got
        return b"".join(parts)

    def close(self) -> None:
        if self.body is not None:
            with contextlib.suppress(Exception):
                self.body.close()
            self.body = None


# --------------------------------------------------------------------------- the store


class S3Store(StreamedReads):
    """An ``ObjectStore`` on one bucket prefix; see the module docstring."""

    def __init__(
        self,
        settings: S3Settings,
        client: Any,
        *,
        url: str,
        retry: RetryPolicy | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
        parallel_parts: int = PARALLEL_PARTS,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError("S3 parts must be at least 5 MiB")
        self.settings = settings
        self._client = client
        self._url = url
        self._retry = retry or RetryPolicy()
        self._multipart_threshold = multipart_threshold
        self._part_size = part_size
        # Parts of all puts of this store share these threads (None: one part at a time).
        self._part_pool = (
            ThreadPoolExecutor(parallel_parts, thread_name_prefix="dr-s3-part")
            if parallel_parts > 1
            else None
        )
        self._mappable = _mappable()
        # Set once a HEAD on the bucket succeeded, so a 404 is known to mean the object.
        self._bucket_seen = threading.Event()
        # Cleared once the endpoint refused a DeleteObjects request (``delete_many``).
        self._batch_deletes = True

    @classmethod
    def from_url(
        cls,
        url: str,
        options: S3Options | None = None,
        *,
        retry: RetryPolicy | None = None,
        multipart_threshold: int = MULTIPART_THRESHOLD,
    ) -> S3Store:
        settings = settings_from_url(url, options)
        return cls(
            settings, make_client(settings), url=url, retry=retry, multipart_threshold=multipart_threshold
        )

    @property
    def local(self) -> bool:
        return False

    @property
    def url(self) -> str:
        return self._url

    # -- helpers

    def _key(self, name: str) -> str:
        return self.settings.root + check_name(name)

    def _what(self, op: str, name: str) -> str:
        return f"{self._url}: {op} {name}"

    def _call(self, fn: Callable[[], T], *, what: str, name: str | None, conditional: bool = False) -> T:
        try:
            return fn()
        except self._mappable as e:
            raise map_error(
                e, store=self._url, what=what, settings=self.settings, name=name, conditional=conditional
            ) from e

    def _run(self, op: str, name: str, fn: Callable[[], T]) -> T:
        what = self._what(op, name)
        return self._retry.run(lambda: self._call(fn, what=what, name=name), what=what)

    def _check_bucket(self) -> None:
        """After a 404 on a read: a missing bucket is a configuration error, not a missing object."""
        if self._bucket_seen.is_set():
            return
        what = f"{self._url}: check bucket {self.settings.bucket}"
        try:
            self._retry.run(
                lambda: self._call(
                    lambda: self._client.head_bucket(Bucket=self.settings.bucket), what=what, name=None
                ),
                what=what,
            )
        except ObjectNotFound:
            raise StorageError(
                f"{self._url}: bucket {self.settings.bucket!r} does not exist {self.settings.where}"
            ) from None
        except AccessDenied:
            return  # may not look at the bucket itself; the 404 stands
        self._bucket_seen.set()

    def _lock_args(self, name: str) -> dict[str, Any]:
        lock = self.settings.object_lock
        if lock is None or name.startswith(UNRETAINED_PREFIX):
            return {}
        until = datetime.now(UTC) + timedelta(days=lock.days)
        return {"ObjectLockMode": lock.mode, "ObjectLockRetainUntilDate": until}

    def _write_args(self, name: str) -> dict[str, Any]:
        args: dict[str, Any] = {"Bucket": self.settings.bucket, "Key": self._key(name)}
        if self.settings.storage_class:
            args["StorageClass"] = self.settings.storage_class
        args.update(self._lock_args(name))
        return args

    def _existing_matches(self, name: str, data: bytes | memoryview) -> bool | None:
        """Whether the object stored under ``name`` has exactly ``data``'s bytes;
        None if there is none. Single requests: runs inside a retry attempt."""
        what = self._what("compare", name)
        key = self._key(name)
        try:
            head = self._call(
                lambda: self._client.head_object(Bucket=self.settings.bucket, Key=key), what=what, name=name
            )
            if head["ContentLength"] != len(data):
                return False
            body = self._call(
                lambda: self._client.get_object(Bucket=self.settings.bucket, Key=key)["Body"].read(),
                what=what,
                name=name,
            )
        except ObjectNotFound:
            return None
        return bool(body == data)

    # -- ObjectStore

    def put(self, name: str, data: bytes | memoryview, *, if_absent: bool = True) -> None:
        args = self._write_args(name)
        if isinstance(data, memoryview) and (data.format != "B" or data.ndim != 1):
            data = data.cast("B")  # so that len() and slices count bytes
        try:
            if len(data) > self._multipart_threshold:
                self._put_multipart(name, data, args, if_absent=if_absent)
            else:
                self._put_single(name, data, args, if_absent=if_absent)
        except StorageError as e:
            if type(e) is StorageError and "ObjectLockMode" in args and "InvalidRequest" in str(e):
                # S3 (or a compatible server) refuses retention on a bucket without Object Lock.
                raise StorageError(
                    f"{e} (objectLock is configured for this repository: bucket {self.settings.bucket!r} "
                    "must have Object Lock enabled)"
                ) from e
            raise

    def _put_single(
        self, name: str, data: bytes | memoryview, args: dict[str, Any], *, if_absent: bool
    ) -> None:
        if if_absent:
            args["IfNoneMatch"] = "*"
        what = self._what("put", name)

        args["ChecksumCRC32"] = crc32_header(data)

        def write() -> None:
            # A fresh reader per attempt: a retry must send the object from its start.
            body = ViewReader(data) if isinstance(data, memoryview) else data
            self._call(
                lambda: self._client.put_object(Body=body, **args),
                what=what,
                name=name,
                conditional=if_absent,
            )

        if if_absent:
            self._retry.put_if_absent(write, lambda: bool(self._existing_matches(name, data)), what=what)
        else:
            self._retry.run(write, what=what)

    def _put_multipart(
        self, name: str, data: bytes | memoryview, args: dict[str, Any], *, if_absent: bool
    ) -> None:
        what = self._what("put", name)
        created = self._retry.run(
            lambda: self._call(
                lambda: self._client.create_multipart_upload(ChecksumAlgorithm="CRC32", **args),
                what=what,
                name=name,
            ),
            what=what,
        )
        upload = {"Bucket": args["Bucket"], "Key": args["Key"], "UploadId": created["UploadId"]}
        view = memoryview(data)
        completed = False
        try:
            parts = self._upload_parts(name, what, upload, view)

            complete_args: dict[str, Any] = {**upload, "MultipartUpload": {"Parts": parts}}
            if if_absent:
                complete_args["IfNoneMatch"] = "*"
            attempts = 0

            def complete() -> None:
                nonlocal attempts
                attempts += 1
                try:
                    self._call(
                        lambda: self._client.complete_multipart_upload(**complete_args),
                        what=what,
                        name=name,
                        conditional=if_absent,
                    )
                except _UploadGone:
                    # A retried complete whose first try landed finds the upload gone.
                    state = self._existing_matches(name, data) if attempts > 1 else None
                    if state is True:
                        return
                    if state is False and if_absent:
                        raise ObjectExists(name) from None
                    raise StorageError(f"{what}: the multipart upload vanished before it completed") from None

            if if_absent:
                self._retry.put_if_absent(
                    complete, lambda: bool(self._existing_matches(name, data)), what=what
                )
            else:
                self._retry.run(complete, what=what)
            completed = True
        finally:
            if not completed:
                self._abort(upload, what)

    def _part_starts(self, size: int) -> builtins.list[int]:
        # Equal parts (a 16.5 MiB pack is 3 x 5.5 MiB, not 8 + 8 + 0.5) so that
        # parallel parts finish together; S3 wants at least 5 MiB but the last.
        count = -(-size // self._part_size)
        part = max(MIN_PART_SIZE, -(-size // count))
        return builtins.list(range(0, size, part))

    def _upload_parts(
        self, name: str, what: str, upload: dict[str, Any], view: memoryview
    ) -> builtins.list[dict[str, Any]]:
        starts = self._part_starts(len(view))
        ends = [*starts[1:], len(view)]

        def send(number: int) -> dict[str, Any]:
            chunk = view[starts[number - 1] : ends[number - 1]]
            checksum = crc32_header(chunk)
            part_what = f"{what} (part {number})"
            sent = self._retry.run(
                lambda: self._call(
                    # A fresh reader per attempt: a retry must send the part from its start.
                    lambda: self._client.upload_part(
                        PartNumber=number,
                        Body=ViewReader(chunk),
                        ChecksumAlgorithm="CRC32",
                        ChecksumCRC32=checksum,
                        **upload,
                    ),
                    what=part_what,
                    name=name,
                ),
                what=part_what,
            )
            part = {"PartNumber": number, "ETag": sent["ETag"]}
            if sent.get("ChecksumCRC32"):
                part["ChecksumCRC32"] = sent["ChecksumCRC32"]
            return part

        numbers = range(1, len(starts) + 1)
        if self._part_pool is None:
            return [send(n) for n in numbers]
        futures = [self._part_pool.submit(send, n) for n in numbers]
        try:
            return [f.result() for f in futures]
        finally:
            # On failure: cancel what has not started and let running parts end
            # before the caller aborts the upload.
            for f in futures:
                f.cancel()
            wait(futures)

    def _abort(self, upload: dict[str, Any], what: str) -> None:
        # Best effort and short: the caller is already failing with the real error.
        policy = dataclasses.replace(self._retry, max_attempts=2)
        try:
            policy.run(
                lambda: self._call(
                    lambda: self._client.abort_multipart_upload(**upload), what=f"{what} (abort)", name=None
                ),
                what=f"{what} (abort)",
            )
        except _UploadGone:
            pass
        except StorageError as e:
            log.warning("%s: could not abort the multipart upload: %s", what, e)

    def get(self, name: str) -> bytes:
        key = self._key(name)
        try:
            body: bytes = self._run(
                "get",
                name,
                lambda: self._client.get_object(Bucket=self.settings.bucket, Key=key)["Body"].read(),
            )
        except ObjectNotFound:
            self._check_bucket()
            raise
        return body

    def _open_pieces(self, name: str, pieces: Sequence[tuple[int, int]], end: int) -> _RangeStream:
        key = self._key(name)
        offset = pieces[0][0]
        if offset >= end:
            # Only empty pieces left to read: there is nothing to fetch, but a missing
            # object is still reported.
            self._client.head_object(Bucket=self.settings.bucket, Key=key)
            return _RangeStream(None, offset, pieces)
        try:
            resp = self._client.get_object(
                Bucket=self.settings.bucket, Key=key, Range=f"bytes={offset}-{end - 1}"
            )
        except Exception as e:
            if _is_invalid_range(e):
                return _RangeStream(None, offset, pieces)  # at or past the end: nothing there
            raise
        # A server that ignored the Range header sends the object from its start.
        return _RangeStream(resp["Body"], offset if "ContentRange" in resp else 0, pieces)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full = self.settings.root + check_prefix(prefix)
        root_len = len(self.settings.root)
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.settings.bucket, "Prefix": full, "MaxKeys": 1000}
            if token:
                args["ContinuationToken"] = token

            def fetch(args: dict[str, Any] = args) -> Any:
                return self._client.list_objects_v2(**args)

            page = self._run("list", prefix or "(all)", fetch)
            for obj in page.get("Contents", []):
                key: str = obj["Key"]
                if key.endswith("/"):
                    continue  # "folder" placeholders some consoles create
                yield ObjectInfo(key[root_len:], int(obj["Size"]), _utc(obj.get("LastModified")))
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise StorageError(
                    f"{self._url}: list {prefix!r}: truncated page without a continuation token"
                )

    def stat(self, name: str) -> ObjectInfo:
        key = self._key(name)
        try:
            head = self._run(
                "stat", name, lambda: self._client.head_object(Bucket=self.settings.bucket, Key=key)
            )
        except ObjectNotFound:
            self._check_bucket()
            raise
        return ObjectInfo(name, int(head["ContentLength"]), _utc(head.get("LastModified")))

    def delete(self, name: str) -> None:
        key = self._key(name)
        if self.settings.object_lock is None:
            self._run(
                "delete", name, lambda: self._client.delete_object(Bucket=self.settings.bucket, Key=key)
            )
            return
        # Object Lock bucket (versioned): delete every version, not just hide it.
        for version_id in self._versions(name, key):

            def delete_version(version_id: str = version_id) -> Any:
                return self._client.delete_object(Bucket=self.settings.bucket, Key=key, VersionId=version_id)

            try:
                self._run("delete", name, delete_version)
            except AccessDenied as denied:
                raise self._retained_error(name, key, version_id, denied) from None

    def delete_many(self, names: Sequence[str]) -> dict[str, ObjectRetained]:
        """Up to 1,000 names a ``DeleteObjects`` request: a prune after a year of nightly
        backups deleted 7,779 packs and index files one ``DeleteObject`` each (12.7 s against
        SeaweedFS on the same host; minutes at S3's ~20 ms a request). A key the batch
        reports failed (throttled, an internal error) is deleted again on its own, with
        ``delete``'s retries and error mapping. Under Object Lock, one at a time: every
        version of each, and a refusal says until when (``delete``)."""
        if self.settings.object_lock is not None:
            return delete_each(self, names)
        retained: dict[str, ObjectRetained] = {}
        for start in range(0, len(names), DELETE_BATCH):
            if not self._batch_deletes:
                retained.update(delete_each(self, names[start:]))
                break
            batch = {self._key(n): n for n in names[start : start + DELETE_BATCH]}

            # Called at once, inside this iteration (a partial, not a closure over the loop).
            request = functools.partial(
                self._client.delete_objects,
                Bucket=self.settings.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            first = names[start]
            try:
                answer = self._run(
                    "delete", f"{first} and {len(batch) - 1} more" if len(batch) > 1 else first, request
                )
            except StorageError as e:
                code = _error_code(e.__cause__)
                if code not in BATCH_DELETE_REFUSED:
                    raise
                # An S3-compatible store that does not take DeleteObjects as botocore sends it
                # (older MinIO and Ceph wanted Content-MD5, not the CRC32 botocore sends since
                # 1.36): one request per object, as before batches, for the rest of this store.
                log.warning("%s: the endpoint refuses batch deletes (%s): deleting one object per request",
                            self._url, code)  # fmt: skip
                self._batch_deletes = False
                retained.update(delete_each(self, names[start:]))
                break
            failed = [batch[e["Key"]] for e in answer.get("Errors", []) if e.get("Key") in batch]
            if failed:
                log.debug(
                    "%s: %d keys of a batch delete failed; deleting them one by one", self._url, len(failed)
                )
            retained.update(delete_each(self, failed))
        return retained

    def _versions(self, name: str, key: str) -> builtins.list[str]:
        versions: builtins.list[str] = []
        marker: dict[str, str] = {}
        while True:

            def fetch(marker: dict[str, str] = marker) -> Any:
                return self._client.list_object_versions(Bucket=self.settings.bucket, Prefix=key, **marker)

            page = self._run("list versions of", name, fetch)
            for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                if entry["Key"] == key:
                    versions.append(entry["VersionId"])
            if not page.get("IsTruncated"):
                return versions
            marker = {
                "KeyMarker": page["NextKeyMarker"],
                "VersionIdMarker": page.get("NextVersionIdMarker", ""),
            }

    def _retained_error(self, name: str, key: str, version_id: str, denied: AccessDenied) -> AccessDenied:
        """Say why a version may not be deleted: retention (until when) or legal hold."""
        what = self._what("delete", name)
        try:
            retention = self._call(
                lambda: self._client.get_object_retention(
                    Bucket=self.settings.bucket, Key=key, VersionId=version_id
                ),
                what=what,
                name=name,
            ).get("Retention", {})
        except StorageError:
            retention = {}
        until = retention.get("RetainUntilDate")
        if isinstance(until, datetime) and until > datetime.now(UTC):
            return ObjectRetained(
                f"{what}: the object is under {retention.get('Mode', 'Object Lock')} retention until "
                f"{until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC and cannot be deleted before then",
                until.astimezone(UTC),
            )
        try:
            hold = self._call(
                lambda: self._client.get_object_legal_hold(
                    Bucket=self.settings.bucket, Key=key, VersionId=version_id
                ),
                what=what,
                name=name,
            ).get("LegalHold", {})
        except StorageError:
            hold = {}
        if hold.get("Status") == "ON":
            return ObjectRetained(
                f"{what}: the object is under an Object Lock legal hold and cannot be deleted"
            )
        return denied

    def close(self) -> None:
        if self._part_pool is not None:
            self._part_pool.shutdown(wait=True)
        self._client.close()


def _is_invalid_range(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return bool(exc.response.get("Error", {}).get("Code") == "InvalidRange" or status == 416)


def _utc(value: Any) -> datetime | None:
    return value.astimezone(UTC) if isinstance(value, datetime) else None


def _error_code(cause: BaseException | None) -> str | None:
    """The S3 error code of the botocore ``ClientError`` behind ``cause`` (``MissingContentMD5``),
    else None. Followed down the causes: what the retries gave up on (a 5xx such as
    NotImplemented's 501, BadDigest) comes as the retry's error, caused by the mapped one."""
    while cause is not None:
        response = getattr(cause, "response", None)
        if isinstance(response, dict):
            return str(response.get("Error", {}).get("Code") or "") or None
        cause = cause.__cause__
    return None
