"""``gs://bucket/prefix``: a repository in a Google Cloud Storage bucket, via google-cloud-storage.

Settings. ``project`` and ``endpoint`` come from dr.yaml (``GCSOptions``) or
the URL query (``gs://b/p?project=my-proj``); both given differently is an
error. Without either, the project comes from ``GOOGLE_CLOUD_PROJECT`` /
``GCLOUD_PROJECT`` or the credentials. Credentials come only from Application
Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``, gcloud's ADC file,
Workload Identity / the metadata server), never from the URL. When
``STORAGE_EMULATOR_HOST`` is set (fake-gcs-server in the tests) the client
talks to the emulator with anonymous credentials, as the emulator expects.

One client per store: the ``Client`` owns the authorized HTTP session and its
connection pool, and the ``Bucket`` object is made once; blobs are cheap
local handles made per call. The library's own retries are off
(``retry=None``): ``dr.storage.retry`` decides (see there).

Create-only. ``put(if_absent=True)`` sends ``ifGenerationMatch=0``; GCS
answers 412 when the name exists (→ ``ObjectExists``, the existing object
untouched). Objects up to ``resumable_threshold`` (8 MiB) go up in one
multipart request; larger ones (packs are ~16 MiB) as a resumable upload in
``chunk_size`` pieces. The chunk size is 32 MiB, so a pack goes in a single
request after the session is opened: dr holds the whole object in memory
and a failed upload is retried whole under the retry policy, so smaller
chunks would only add round trips (8 MiB chunks measured ~40 % slower
against fake-gcs-server). GCS evaluates the precondition when a resumable
upload is finalised, so it holds there too. fake-gcs-server up to 1.54 (the
version the tests run) drops the precondition on resumable uploads
(fsouza/fake-gcs-server#1967, fixed upstream by #2260); the tests mark that
case as an expected failure of the emulator.

Reads: ``get`` verifies the CRC32C GCS stores for every object; ``get_range``
is one piece of ``get_pieces`` (no whole-object checksum applies to a part). A 404
on a read is checked once per store against the bucket, so a missing bucket
is reported as such and not as a missing object. ``get_pieces`` (restores
read packs with it) makes one streamed GET for the whole span and cuts it
into pieces as it arrives (``_PieceStream``): the library streams a download
only into a file object, so the download runs on a thread of its own and
hands each piece over through a queue. A read cut off part way resumes
from the piece being read. Against fake-gcs-server: reading 8 packs of
16 MiB took 0.14-0.15 s this way against 0.25-0.28 s in 8 MiB ranges (one
request a pack instead of two); a 309 MB restore took as long as before
(1.33-1.37 s against 1.31-1.42 s) with a peak RSS of 113-121 MB against
166-178 MB (one piece per worker in memory instead of an 8 MiB range).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from dr.config import GCSOptions
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

log = logging.getLogger(__name__)

T = TypeVar("T")

MiB = 1024 * 1024
RESUMABLE_THRESHOLD = 8 * MiB
CHUNK_SIZE = 32 * MiB  # a multiple of 256 KiB, as GCS requires
# (connect, read) seconds for every request.
TIMEOUT = (10.0, 60.0)
EMULATOR_ENV = "STORAGE_EMULATOR_HOST"
EMULATOR_PROJECT = "dr-emulator"

_QUERY_SETTINGS = {"project": "project", "endpoint": "endpoint"}
_CREDENTIAL_HINT = (
    "Google credentials come from Application Default Credentials "
    "(GOOGLE_APPLICATION_CREDENTIALS, gcloud auth application-default login, or Workload Identity)"
)


@dataclass(frozen=True)
class GCSSettings:
    bucket: str
    root: str  # object-name prefix inside the bucket: "" or "path/"
    project: str | None = None
    endpoint: str | None = None


def settings_from_url(url: str, options: GCSOptions | None) -> GCSSettings:
    parsed = parse_bucket_url(url, "gs", _QUERY_SETTINGS, _CREDENTIAL_HINT)
    q = parsed.settings
    project = merge_setting(url, "project", q.get("project"), options.project if options else None)
    endpoint = merge_setting(url, "endpoint", q.get("endpoint"), options.endpoint if options else None)
    if endpoint is not None:
        check_endpoint(url, endpoint, _CREDENTIAL_HINT)
    return GCSSettings(parsed.bucket, parsed.root, project or None, endpoint or None)


def make_client(settings: GCSSettings, *, store: str) -> Any:
    """A storage ``Client``: the emulator with anonymous credentials when
    ``STORAGE_EMULATOR_HOST`` is set, else Application Default Credentials."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud.storage import Client

    project = settings.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT")
    client_options = {"api_endpoint": settings.endpoint} if settings.endpoint else None
    if os.environ.get(EMULATOR_ENV):
        from google.auth.credentials import AnonymousCredentials

        return Client(
            project=project or EMULATOR_PROJECT,
            credentials=AnonymousCredentials(),
            client_options=client_options,
        )
    try:
        if project:
            return Client(project=project, client_options=client_options)
        return Client(client_options=client_options)
    except DefaultCredentialsError as e:
        raise AccessDenied(
            f"{store}: no usable Google credentials ({_first_line(e)}); {_CREDENTIAL_HINT}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return without_query(text.splitlines()[0]) if text else type(exc).__name__


# The query of a URL or request path quoted in a library's message: "?" then
# non-space characters including an "=" (so a question mark in prose stays).
_QUERY = re.compile(r"\?(?=[^\s\"'<>()]*=)[^\s\"'<>()]*")


def without_query(text: str) -> str:
    """``text`` with the query strings of the URLs in it removed.

    Error messages of the library quote the request's URL, and that of a
    resumable upload carries ``upload_id=``: the session URI, which Google
    documents as a bearer credential (anyone holding it may upload to the
    object for a week). These messages become retry reasons, logged at INFO,
    and error lines. The path names the object; the query adds nothing a
    user needs. A ":" that ended the URL in the message is kept."""
    return _QUERY.sub(lambda m: ":" if m.group().endswith(":") else "", text)


# --------------------------------------------------------------------------- error mapping


# GCS's reasons (and message words) for a delete or overwrite refused by a bucket
# retention policy, object retention, or a temporary/event-based hold.
_RETENTION_REASONS = frozenset({"retentionPolicyNotMet", "objectUnderActiveHold"})
_RETAINED_UNTIL = re.compile(r"until (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?")


def _retention_refusal(exc: Any) -> bool:
    reasons = {e.get("reason") for e in (getattr(exc, "errors", None) or []) if isinstance(e, dict)}
    text = (getattr(exc, "message", "") or "").lower()
    # The words of its messages ("... is subject to bucket's retention policy or object
    # retention and cannot be deleted ...", "... is under active Temporary hold and cannot
    # be deleted ..."), for answers without the reason: never a permission's name alone.
    return bool(reasons & _RETENTION_REASONS) or (
        "cannot be deleted" in text and ("retention" in text or "hold" in text)
    )


def _retained_until(message: str) -> datetime | None:
    """The time in GCS's "... cannot be deleted ... until 2026-12-01T08:00:00.123456789-08:00"."""
    m = _RETAINED_UNTIL.search(message)
    if not m:
        return None
    fraction = (m.group(2) or "")[:7]  # fromisoformat takes at most microseconds
    zone = m.group(3) or "Z"
    try:
        return datetime.fromisoformat(m.group(1) + fraction + ("+00:00" if zone == "Z" else zone)).astimezone(
            UTC
        )
    except ValueError:
        return None


def map_error(
    exc: BaseException, *, store: str, what: str, bucket: str, name: str | None, conditional: bool = False
) -> StorageError:
    """The dr error for a google-cloud-storage / google-auth / requests exception."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc
    from google.cloud.storage.exceptions import DataCorruption
    from urllib3 import exceptions as urllib3_exc

    if isinstance(exc, gexc.GoogleAPICallError):
        status = exc.code
        message = without_query(exc.message.splitlines()[0]) if exc.message else type(exc).__name__
        # The message starts with the method and URL of the request; credentials
        # travel in the Authorization header, but a resumable upload's session
        # (upload_id=) is one too, hence without_query.
        if isinstance(exc, gexc.NotFound):
            if "bucket does not exist" in (exc.message or "").lower():
                return StorageError(f"{what}: bucket {bucket!r} does not exist")
            return ObjectNotFound(name or "", store)
        if isinstance(exc, gexc.PreconditionFailed) and conditional:
            return ObjectExists(name or "")
        if isinstance(exc, gexc.Forbidden) and _retention_refusal(exc):
            # A bucket retention policy, object retention or a hold refused it: not a
            # fault, a later delete succeeds (forget and prune keep such objects).
            return ObjectRetained(f"{what}: {message}", _retained_until(exc.message or ""))
        if isinstance(exc, gexc.Unauthorized | gexc.Forbidden):
            return AccessDenied(
                f"{what}: access denied ({status}): the credentials lack permission or are invalid"
            )
        if isinstance(exc, gexc.TooManyRequests):
            return TransientError(f"{what}: throttled ({status})", maybe_applied=False)
        if status == 408:
            return TransientError(f"{what}: request timeout ({status})", maybe_applied=False)
        if isinstance(exc, gexc.BadRequest) and "doesn't match calculated" in (exc.message or ""):
            # GCS checked the upload's CRC32C (or MD5) and the body arrived
            # changed: nothing was stored, and sending it again is the cure.
            return TransientError(f"{what}: body damaged in transit ({message})", maybe_applied=False)
        if isinstance(status, int) and status >= 500:
            return TransientError(f"{what}: server error ({status}: {message})", maybe_applied=True)
        return StorageError(f"{what}: {status}: {message}")
    if isinstance(exc, auth_exc.RefreshError):
        return AccessDenied(
            f"{what}: the Google credentials were refused ({_first_line(exc)}); {_CREDENTIAL_HINT}"
        )
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return AccessDenied(f"{what}: no usable Google credentials ({_first_line(exc)}); {_CREDENTIAL_HINT}")
    if isinstance(exc, auth_exc.TransportError):
        return TransientError(
            f"{what}: cannot reach the token endpoint ({_first_line(exc)})", maybe_applied=False
        )
    if isinstance(exc, requests.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return StorageError(f"{what}: TLS certificate of the endpoint not trusted")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TransientError(f"{what}: cannot connect (timeout)", maybe_applied=False)
    if isinstance(exc, requests.exceptions.ConnectionError) and _refused(exc):
        return TransientError(f"{what}: cannot connect ({_first_line(exc)})", maybe_applied=False)
    if isinstance(exc, requests.exceptions.RequestException | ConnectionError | TimeoutError):
        return TransientError(f"{what}: connection failed ({_first_line(exc)})", maybe_applied=True)
    if isinstance(exc, DataCorruption):
        return TransientError(f"{what}: checksum mismatch in transfer", maybe_applied=True)
    if isinstance(exc, urllib3_exc.HTTPError):
        # Raised while a streamed body is read (cut off, timed out): requests does not wrap these.
        return TransientError(f"{what}: connection failed ({_first_line(exc)})", maybe_applied=True)
    return StorageError(f"{what}: {type(exc).__name__}: {_first_line(exc)}")


def _refused(exc: BaseException) -> bool:
    """A connection that was never established (so no request reached the server)."""
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, NewConnectionError | NameResolutionError | ConnectionRefusedError):
            return True
        reason = getattr(cur, "reason", None)
        inner = reason if isinstance(reason, BaseException) else None
        cur = inner or (cur.args[0] if cur.args and isinstance(cur.args[0], BaseException) else None)
    return False


def _mappable() -> tuple[type[BaseException], ...]:
    import requests
    from google.api_core.exceptions import GoogleAPICallError
    from google.auth.exceptions import GoogleAuthError
    from google.cloud.storage.exceptions import DataCorruption
    from urllib3.exceptions import HTTPError

    return (
        GoogleAPICallError,
        GoogleAuthError,
        requests.exceptions.RequestException,
        DataCorruption,
        HTTPError,
        ConnectionError,
        TimeoutError,
    )


# --------------------------------------------------------------------------- streamed reads


class _Stopped(Exception):
    """Ends a download whose reader has gone (raised inside the library's write loop)."""


@dataclass
class _Failed:
    error: BaseException


_END = object()


class _PieceSink(io.RawIOBase):
    """The file a streamed download writes into: drops the bytes between pieces,
    collects each piece and hands it over (``put``)."""

    def __init__(self, pieces: Sequence[tuple[int, int]], pos: int, put: Callable[[object], None]) -> None:
        super().__init__()
        self._pieces = list(pieces)
        self._next = 0
        self._pos = pos  # object offset of the next byte written
        self._buf = bytearray()
        self._put = put

    def start(self) -> None:
        """Hand over the empty pieces at the start (on the download's thread: ``put`` may wait)."""
        self._hand_over_empty()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = len(view)
        while view and self._next < len(self._pieces):
            offset, length = self._pieces[self._next]
            if self._pos < offset:  # between pieces
                skip = min(offset - self._pos, len(view))
                view, self._pos = view[skip:], self._pos + skip
                continue
            take = view[: length - len(self._buf)]
            self._buf += take
            view, self._pos = view[len(take) :], self._pos + len(take)
            if len(self._buf) == length:
                self._put(bytes(self._buf))
                self._buf.clear()
                self._next += 1
                self._hand_over_empty()
        return n

    def _hand_over_empty(self) -> None:
        while (
            self._next < len(self._pieces)
            and self._pieces[self._next][1] == 0
            and self._pos >= self._pieces[self._next][0]
        ):
            self._put(b"")
            self._next += 1

    def partial(self) -> bytes:
        """The piece the object ended in (shorter than asked)."""
        return bytes(self._buf)


class _PieceStream:
    """One ranged download on a thread of its own, handed over piece by piece.

    At most one finished piece waits in the queue, so memory is about two
    pieces whatever the span. ``close`` ends the download at its next write."""

    def __init__(
        self, download: Callable[[io.RawIOBase], None], pieces: Sequence[tuple[int, int]], pos: int
    ) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._ended = False
        self._sink = _PieceSink(pieces, pos, self._put)
        self._thread = threading.Thread(target=self._run, args=(download,), name="dr-gcs-read", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _run(self, download: Callable[[io.RawIOBase], None]) -> None:
        from google.api_core.exceptions import RequestRangeNotSatisfiable

        try:
            self._sink.start()
            download(self._sink)
            item: object = _END
        except _Stopped:
            return
        except RequestRangeNotSatisfiable:
            item = _END  # the span starts at or past the end: the object exists, nothing is there
        except BaseException as e:  # handed to the reader, who maps and retries it
            item = _Failed(e)
        with contextlib.suppress(_Stopped):
            self._put(item)

    def next(self) -> bytes:
        """The next piece; after the end of the object, the rest of the piece
        it ended in, then empty pieces. Raises what the download raised."""
        if self._ended:
            return b""
        item = self._queue.get()
        if item is _END:
            self._ended = True
            return self._sink.partial()
        if isinstance(item, _Failed):
            raise item.error
        assert isinstance(item, bytes)
        return item

    def close(self) -> None:
        self._stop.set()


# --------------------------------------------------------------------------- the store


class GCSStore(StreamedReads):
    """An ``ObjectStore`` on one bucket prefix; see the module docstring."""

    def __init__(
        self,
        settings: GCSSettings,
        client: Any,
        *,
        url: str,
        retry: RetryPolicy | None = None,
        resumable_threshold: int = RESUMABLE_THRESHOLD,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        if chunk_size % (256 * 1024):
            raise ValueError("GCS chunk_size must be a multiple of 256 KiB")
        self.settings = settings
        self._client = client
        self._bucket = client.bucket(settings.bucket)
        self._url = url
        self._retry = retry or RetryPolicy()
        self._resumable_threshold = resumable_threshold
        self._chunk_size = chunk_size
        self._mappable = _mappable()
        self._bucket_seen = threading.Event()

    @classmethod
    def from_url(
        cls, url: str, options: GCSOptions | None = None, *, retry: RetryPolicy | None = None
    ) -> GCSStore:
        settings = settings_from_url(url, options)
        return cls(settings, make_client(settings, store=url), url=url, retry=retry)

    @property
    def local(self) -> bool:
        return False

    @property
    def url(self) -> str:
        return self._url

    # -- helpers

    def _blob_name(self, name: str) -> str:
        return self.settings.root + check_name(name)

    def _what(self, op: str, name: str) -> str:
        return f"{self._url}: {op} {name}"

    def _call(self, fn: Callable[[], T], *, what: str, name: str | None, conditional: bool = False) -> T:
        try:
            return fn()
        except self._mappable as e:
            raise map_error(
                e, store=self._url, what=what, bucket=self.settings.bucket, name=name, conditional=conditional
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
            exists = self._retry.run(
                lambda: self._call(
                    lambda: self._bucket.exists(timeout=TIMEOUT, retry=None), what=what, name=None
                ),
                what=what,
            )
        except AccessDenied:
            return  # may not look at the bucket itself; the 404 stands
        if not exists:
            raise StorageError(f"{self._url}: bucket {self.settings.bucket!r} does not exist")
        self._bucket_seen.set()

    def _existing_matches(self, name: str, data: bytes | memoryview) -> bool | None:
        """Whether the object under ``name`` has exactly ``data``'s bytes; None if
        there is none. Single requests: runs inside a retry attempt."""
        what = self._what("compare", name)
        blob_name = self._blob_name(name)
        blob = self._call(
            lambda: self._bucket.get_blob(blob_name, timeout=TIMEOUT, retry=None), what=what, name=name
        )
        if blob is None:
            return None
        if blob.size != len(data):
            return False
        try:
            body = self._call(
                lambda: blob.download_as_bytes(timeout=TIMEOUT, retry=None), what=what, name=name
            )
        except ObjectNotFound:
            return None
        return bool(body == data)

    # -- ObjectStore

    def put(self, name: str, data: bytes | memoryview, *, if_absent: bool = True) -> None:
        blob_name = self._blob_name(name)
        if isinstance(data, memoryview) and (data.format != "B" or data.ndim != 1):
            data = data.cast("B")  # so that len() and slices count bytes
        size = len(data)
        resumable = size > self._resumable_threshold
        what = self._what("put", name)

        def write() -> None:
            # A fresh blob per attempt: a resumable upload keeps session state on it.
            blob = self._bucket.blob(blob_name, chunk_size=self._chunk_size if resumable else None)
            self._call(
                lambda: blob.upload_from_file(
                    io.BytesIO(data),
                    size=size,
                    content_type="application/octet-stream",
                    if_generation_match=0 if if_absent else None,
                    timeout=TIMEOUT,
                    retry=None,
                ),
                what=what,
                name=name,
                conditional=if_absent,
            )

        try:
            if if_absent:
                self._retry.put_if_absent(write, lambda: bool(self._existing_matches(name, data)), what=what)
            else:
                self._retry.run(write, what=what)
        except ObjectNotFound:
            # An upload answered 404: the bucket is missing (or vanished mid-upload).
            self._check_bucket()
            raise StorageError(f"{what}: the bucket answered 404 Not Found") from None

    def get(self, name: str) -> bytes:
        blob = self._bucket.blob(self._blob_name(name))
        try:
            body: bytes = self._run("get", name, lambda: blob.download_as_bytes(timeout=TIMEOUT, retry=None))
        except ObjectNotFound:
            self._check_bucket()
            raise
        return body

    def _open_pieces(self, name: str, rest: Sequence[tuple[int, int]], end: int) -> _PieceStream:
        blob_name = self._blob_name(name)
        start = rest[0][0]
        # Only empty pieces left: nothing to fetch, but a missing object is still reported.
        if start >= end and self._bucket.get_blob(blob_name, timeout=TIMEOUT, retry=None) is None:
            raise ObjectNotFound(name, self._url)
        blob = self._bucket.blob(blob_name)

        def download(sink: io.RawIOBase) -> None:
            if start < end:
                blob.download_to_file(
                    sink,
                    start=start,
                    end=end - 1,
                    raw_download=True,
                    checksum=None,
                    timeout=TIMEOUT,
                    retry=None,
                )

        return _PieceStream(download, rest, start)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full = self.settings.root + check_prefix(prefix)
        root_len = len(self.settings.root)
        token: str | None = None
        while True:
            # One request per page, each retried on its own: the library's page
            # iterator cannot be resumed after a failed page.
            def page(token: str | None = token) -> tuple[list[Any], str | None]:
                it = self._client.list_blobs(
                    self._bucket, prefix=full, page_size=1000, page_token=token, timeout=TIMEOUT, retry=None
                )
                first = next(it.pages, None)
                return (list(first) if first is not None else []), it.next_page_token

            try:
                blobs, token = self._run("list", prefix or "(all)", page)
            except ObjectNotFound:
                # Listing an existing bucket never answers 404.
                self._check_bucket()
                raise StorageError(f"{self._url}: bucket {self.settings.bucket!r} does not exist") from None
            for blob in blobs:
                if blob.name.endswith("/"):
                    continue  # "folder" placeholders some tools create
                yield ObjectInfo(blob.name[root_len:], int(blob.size or 0), _utc(blob.updated))
            if not token:
                return

    def stat(self, name: str) -> ObjectInfo:
        blob_name = self._blob_name(name)
        blob = self._run("stat", name, lambda: self._bucket.get_blob(blob_name, timeout=TIMEOUT, retry=None))
        if blob is None:
            self._check_bucket()
            raise ObjectNotFound(name, self._url)
        return ObjectInfo(name, int(blob.size or 0), _utc(blob.updated))

    def delete(self, name: str) -> None:
        blob = self._bucket.blob(self._blob_name(name))
        try:
            self._run("delete", name, lambda: blob.delete(timeout=TIMEOUT, retry=None))
        except ObjectNotFound:
            self._check_bucket()  # a missing bucket is still an error

    def delete_many(self, names: Sequence[str]) -> dict[str, ObjectRetained]:
        # One request each. google-cloud-storage's batch (``client.batch()``, up to 100
        # deletes a request) was tried against fake-gcs-server, the suite's GCS, and fails
        # there: the library (3.17) gives its parts no Content-ID, the emulator's batch
        # handler skips every part without one and answers an empty multipart, and the
        # library raises "Bad response: not multi-part" (a hand-made request with
        # Content-IDs works: 200 per delete, 404 for a missing name). Nor does the
        # emulator enforce retention, so how a batch answers for a retained object could
        # not be checked. Not used until both can be.
        return delete_each(self, names)

    def close(self) -> None:
        self._client.close()


def _utc(value: Any) -> datetime | None:
    return value.astimezone(UTC) if isinstance(value, datetime) else None
