"""Open an object store by URL scheme: the one place that maps schemes to backends."""

from __future__ import annotations

import os

from dr.config import Repository
from dr.errors import InvalidInput
from dr.storage.base import ObjectStore
from dr.storage.naming import split_url
from dr.urls import has_query_or_fragment, redact_url


def open_store(url: str, options: Repository | None = None) -> ObjectStore:
    """The backend for ``url``; ``options`` carries per-repository settings from dr.yaml
    (armed to crash on cue in the crash tests only: ``dr.storage.kill_switch``)."""
    store = _backend(url, options)
    if os.environ.get("DR_TEST_KILL_BEFORE"):  # imported only then: not a module every command loads
        from dr.storage import kill_switch

        return kill_switch.armed(store)
    return store


def _backend(url: str, options: Repository | None) -> ObjectStore:
    parts = split_url(url)
    if parts.scheme == "file":
        from dr.storage.file import FileStore

        if not parts.path.startswith("/") or parts.netloc not in ("", "localhost"):
            raise InvalidInput(f"repository URL {redact_url(url)!r}: use file:///absolute/path")
        if has_query_or_fragment(url):
            # Not dropped in silence: file:///srv/dr?x or file:///srv/dr#2 would be /srv/dr.
            raise InvalidInput(
                f"repository URL {redact_url(url)!r}: a file:// URL takes no '?' or '#' (file:///absolute/path)"
            )
        return FileStore(parts.path)
    if parts.scheme == "s3":
        from dr.storage.s3 import S3Store

        return S3Store.from_url(url, options.s3 if options else None)
    if parts.scheme == "gs":
        from dr.storage.gcs import GCSStore

        return GCSStore.from_url(url, options.gcs if options else None)
    raise InvalidInput(f"repository URL {redact_url(url)!r}: unsupported scheme (file://, s3://, gs://)")


SCHEMES = ("file", "s3", "gs")
