"""Bucket URLs and object names shared by the bucket backends (s3, gs).

Owns two small rules so both backends apply them the same way:

- ``scheme://bucket/prefix?key=value`` is split into bucket, key prefix and
  settings. Credentials are never accepted in a URL (user info or query
  parameters that look like keys): URLs end up in logs, snapshots and process
  listings, so credentials come only from the provider's standard chain.
  Unknown query parameters are errors, because a misspelt ``endpiont=`` must
  not silently send backups to the default endpoint.
- Object names are ``/``-separated relative paths; a name with an empty,
  ``.`` or ``..`` segment is refused here as it is by ``FileStore``, so a name
  means the same object on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from dr.errors import InvalidInput
from dr.storage.base import StorageError

# Query parameters that would carry credentials: refused with a pointed message.
_CREDENTIAL_PARAMS = frozenset(
    {
        "access_key",
        "accesskey",
        "access_key_id",
        "accesskeyid",
        "aws_access_key_id",
        "secret",
        "secret_key",
        "secretkey",
        "secret_access_key",
        "aws_secret_access_key",
        "session_token",
        "sessiontoken",
        "token",
        "password",
        "credentials",
        "key",
    }
)


@dataclass(frozen=True)
class BucketURL:
    scheme: str
    bucket: str
    # Key prefix of the store inside the bucket: "" or "some/path/" (always ends with "/").
    root: str
    settings: dict[str, str]
    # The URL as given (it carries no credentials: those are refused).
    url: str


def parse_bucket_url(url: str, scheme: str, allowed: dict[str, str], credential_hint: str) -> BucketURL:
    """Split ``scheme://bucket/prefix?k=v``; ``allowed`` maps accepted query keys
    (including aliases such as ``addressingStyle``) to the canonical setting name."""
    parts = urlsplit(url)
    if parts.scheme != scheme:
        raise InvalidInput(f"repository URL {url!r}: expected {scheme}://bucket/prefix")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(f"repository URL must not contain credentials; {credential_hint}")
    bucket = parts.hostname or ""
    if not bucket or parts.port is not None:
        raise InvalidInput(f"repository URL {url!r}: names no bucket ({scheme}://bucket/prefix)")
    path = parts.path.strip("/")
    if path:
        segments = path.split("/")
        if any(s in ("", ".", "..") for s in segments):
            raise InvalidInput(f"repository URL {url!r}: invalid prefix {path!r}")
    settings: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in _CREDENTIAL_PARAMS:
            raise InvalidInput(
                f"repository URL must not contain credentials (query parameter {key!r}); {credential_hint}"
            )
        canonical = allowed.get(key)
        if canonical is None:
            known = ", ".join(sorted(set(allowed.values())))
            raise InvalidInput(f"repository URL {url!r}: unknown query parameter {key!r} (known: {known})")
        if canonical in settings and settings[canonical] != value:
            raise InvalidInput(f"repository URL {url!r}: query parameter {key!r} given twice")
        settings[canonical] = value
    return BucketURL(scheme, bucket, f"{path}/" if path else "", settings, url)


def merge_setting(url: str, name: str, from_url: str | None, from_config: str | None) -> str | None:
    """One setting from the URL query or dr.yaml; both given and different is an error."""
    if from_url is not None and from_config is not None and from_url != from_config:
        raise InvalidInput(
            f"repository URL {url!r}: {name}={from_url!r} in the URL contradicts {name}={from_config!r} in the config"
        )
    return from_url if from_url is not None else from_config


def check_name(name: str) -> str:
    """``name`` if it is a valid object name, else ``StorageError``."""
    if not name or any(p in ("", ".", "..") for p in name.split("/")):
        raise StorageError(f"invalid object name {name!r}")
    return name


def check_prefix(prefix: str) -> str:
    """``prefix`` if it can start a valid name, else ``StorageError``."""
    # Every segment before the last "/" is complete and must be valid; what
    # follows it is the start of a name (".ta" may begin ".tar"), so it is free.
    complete = prefix.split("/")[:-1]
    if any(p in ("", ".", "..") for p in complete):
        raise StorageError(f"invalid list prefix {prefix!r}")
    return prefix
