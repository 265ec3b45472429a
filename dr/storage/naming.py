"""Bucket URLs and object names shared by the bucket backends (s3, gs).

Owns two small rules so both backends apply them the same way:

- ``scheme://bucket/prefix?key=value`` is split into bucket, key prefix and
  settings. Credentials are never accepted in a URL (user info or query
  parameters that look like keys): URLs end up in logs, snapshots and process
  listings, so credentials come only from the provider's standard chain.
  Unknown query parameters are errors, because a misspelt ``endpiont=`` must
  not silently send backups to the default endpoint. The bucket is checked
  against the provider's naming rules here (``dr.urls.bucket_problem``, which
  the config check shares), so a bad name is one line and not the client
  library's regular expression.
- Messages about a URL show ``redact_url(url)``: a URL that is refused may be
  refused precisely because it carries a secret, so no message echoes one as
  given (user info and query values are masked).
- Object names are ``/``-separated relative paths; a name with an empty,
  ``.`` or ``..`` segment is refused here as it is by ``FileStore``, so a name
  means the same object on every backend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qsl, urlsplit

from dr.errors import InvalidInput
from dr.storage.base import StorageError
from dr.urls import bucket_problem, credential_shaped, redact_url, showable_key

# Query parameters that would carry credentials are refused with a pointed
# message. Matched on the key lower-cased without separators, so that every
# spelling (secret_key, secretAccessKey, X-Amz-Security-Token, X-Amz-Credential)
# is caught; no accepted setting contains one of these words.
_CREDENTIAL_WORDS = (
    "secret",
    "token",
    "credential",
    "signature",
    "password",
    "passwd",
    "accesskey",
    "privatekey",
    "apikey",
    "auth",
)
_CREDENTIAL_KEYS = frozenset({"key", "sig", "pass", "pwd"})


def looks_like_credential(key: str) -> bool:
    """Whether a query parameter named ``key`` would carry a credential."""
    norm = re.sub(r"[^a-z0-9]", "", key.lower())
    return norm in _CREDENTIAL_KEYS or any(w in norm for w in _CREDENTIAL_WORDS)


def has_user_info(parts: SplitResult) -> bool:
    """Whether a split URL has ``user[:password]@`` before its host. A password
    with a "/" in it ends ``urlsplit``'s netloc early (``s3://KEY:SE/CRET@bkt/p``
    has the netloc ``KEY:SE``), so an "@" in the path after a netloc with a ":"
    counts too."""
    return "@" in parts.netloc or (":" in parts.netloc and "@" in parts.path)


def split_url(url: str, what: str = "repository URL") -> SplitResult:
    """``urlsplit(url)``; a URL it cannot take (an unpaired ``[``, a netloc that changes
    under NFKC normalisation) is ``InvalidInput`` naming the redacted URL, not a
    bare ``ValueError`` (whose text may quote the URL as given)."""
    try:
        return urlsplit(url)
    except ValueError as e:
        reason = "'[' or ']' without its pair" if "IPv6" in str(e) else "characters a host name cannot hold"
        raise InvalidInput(f"{what} {redact_url(url)!r} is malformed: {reason}") from None


@dataclass(frozen=True)
class BucketURL:
    scheme: str
    bucket: str
    # Key prefix of the store inside the bucket: "" or "some/path/" (always ends with "/").
    root: str
    settings: dict[str, str]
    # The URL as given (it carries no credentials: those are refused).
    url: str


def _shown_key(key: str) -> str:
    """A query key as a message may quote it (``showable_key``): a secret pasted in
    without '=' (``?wJalrXUtnFEMI/K7MDENG…``) is a key too."""
    return repr(key) if showable_key(key) else "(not shown)"


def parse_bucket_url(url: str, scheme: str, allowed: dict[str, str], credential_hint: str) -> BucketURL:
    """Split ``scheme://bucket/prefix?k=v``; ``allowed`` maps accepted query keys
    (including aliases such as ``addressingStyle``) to the canonical setting name."""
    shown = redact_url(url)
    parts = split_url(url)
    if parts.scheme != scheme:
        raise InvalidInput(f"repository URL {shown!r}: expected {scheme}://bucket/prefix")
    if has_user_info(parts):
        raise InvalidInput(f"repository URL must not contain credentials; {credential_hint}")
    # From the netloc as written: ``hostname`` would lower-case it, and an S3
    # bucket named with capitals is another bucket than its lower-case name.
    bucket = parts.netloc
    if not bucket:
        raise InvalidInput(f"repository URL {shown!r}: names no bucket ({scheme}://bucket/prefix)")
    if credential_shaped(bucket):
        # No bucket name holds a ':'; this is KEY:SECRET without its '@', so
        # neither the name nor the URL (redact_url hides it too) is quoted.
        raise InvalidInput(
            f"repository URL {shown!r}: invalid bucket name (contains ':', looks like credentials; "
            f"not shown); {credential_hint}"
        )
    if re.fullmatch(r"[^:\[\]]+:[0-9]*", bucket):
        raise InvalidInput(
            f"repository URL {shown!r}: {bucket!r} is not a bucket name (a port belongs in the endpoint setting)"
        )
    problem = bucket_problem(scheme, bucket)
    if problem:
        raise InvalidInput(f"repository URL {shown!r}: invalid bucket name {bucket!r}: {problem}")
    if parts.fragment or url.endswith("#"):
        # Not silently dropped: `s3://bkt/backups#2` would otherwise be the prefix `backups`,
        # another repository than the one meant (no object name of a repository has a '#').
        raise InvalidInput(f"repository URL {shown!r}: '#' has no place in it (prefixes never contain one)")
    path = parts.path.strip("/")
    if path:
        segments = path.split("/")
        if any(s in ("", ".", "..") for s in segments):
            raise InvalidInput(f"repository URL {shown!r}: invalid prefix {path!r}")
    settings: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if looks_like_credential(key):
            raise InvalidInput(
                f"repository URL must not contain credentials (query parameter {_shown_key(key)}); "
                f"{credential_hint}"
            )
        canonical = allowed.get(key)
        if canonical is None:
            known = ", ".join(sorted(set(allowed.values())))
            raise InvalidInput(
                f"repository URL {shown!r}: unknown query parameter {_shown_key(key)} (known: {known})"
            )
        if canonical in settings and settings[canonical] != value:
            raise InvalidInput(f"repository URL {shown!r}: query parameter {key!r} given twice")
        settings[canonical] = value
    return BucketURL(scheme, bucket, f"{path}/" if path else "", settings, url)


def merge_setting(url: str, name: str, from_url: str | None, from_config: str | None) -> str | None:
    """One setting from the URL query or dr.yaml; both given and different is an error."""
    if from_url is not None and from_config is not None and from_url != from_config:
        # Quoted redacted: the endpoint is a URL, and this runs before it is checked for credentials.
        raise InvalidInput(
            f"repository URL {redact_url(url)!r}: {name}={redact_url(from_url)!r} in the URL "
            f"contradicts {name}={redact_url(from_config)!r} in the config"
        )
    return from_url if from_url is not None else from_config


def check_endpoint(url: str, endpoint: str, credential_hint: str) -> None:
    """``InvalidInput`` unless ``endpoint`` is ``http(s)://host[:port][/path]``, without
    credentials or a query (the store's URL, which quotes it, must be safe to log)."""
    shown, where = redact_url(url), redact_url(endpoint)
    form = "must be http(s)://host[:port]"
    ep = split_url(endpoint, f"repository URL {shown!r}: endpoint")
    if "@" in ep.netloc or "@" in ep.path:
        raise InvalidInput(
            f"repository URL {shown!r}: endpoint must not contain credentials; {credential_hint}"
        )
    try:
        ep.port  # noqa: B018 (reading it checks it)
    except ValueError:
        raise InvalidInput(f"repository URL {shown!r}: endpoint {where!r} has an invalid port") from None
    if ep.scheme not in ("http", "https") or not ep.hostname:
        raise InvalidInput(f"repository URL {shown!r}: endpoint {where!r} {form}")
    if ep.query or ep.fragment:
        raise InvalidInput(f"repository URL {shown!r}: endpoint {where!r} {form}, without a query")


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
