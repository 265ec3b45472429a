"""URLs in messages and logs.

A URL the user gave may carry a secret (``user:password@`` in its host part, or
``user:password`` with its ``@`` forgotten; a token in its query), and it is
most likely to be quoted precisely when it is refused for that. Messages quote
``redact_url(url)`` instead. Kept at the bottom layer (no imports from dr) so
the config checks can use it too.

Also the bucket naming rules (``bucket_problem``): the s3:// and gs:// stores
check a URL's bucket with them when they open it, and ``dr config validate``
checks the configured URLs with the same function, without a store or network.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# scheme: and // at the start of a URL (both optional: redact_url takes anything).
_URL_HEAD = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?(//)?")


_SETTING_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")

# A host part that is a host and, after a ':', at most a port; a bracketed IPv6
# address is taken out first (its ':' are its own).
_HOST_PORT = re.compile(r"[^:]*(?::[0-9]{0,5})?")
_BRACKETED = re.compile(r"\[[^\]]*\]?")


def credential_shaped(authority: str) -> bool:
    """Whether a URL's host part (between ``//`` and the first ``/``, without an
    ``@``) holds a ':' that is not before a port: ``KEY:SECRET`` pasted without
    its ``@``. A port has at most 5 digits, so a longer run of digits counts too."""
    return _HOST_PORT.fullmatch(_BRACKETED.sub("", authority)) is None


def showable_key(key: str) -> bool:
    """Whether a query key may be quoted as given: only if it looks like a setting's
    name (a secret pasted in without '=' is a key too)."""
    return _SETTING_NAME.fullmatch(key) is not None


def _key(key: str) -> str:
    """A query key as shown: itself if ``showable_key``, else ``***``."""
    return key if showable_key(key) else "***"


def redact_url(url: str) -> str:
    """``url`` as it may appear in a message or log: user info replaced by ``***``,
    every query value and any fragment by ``***``. Never raises, so it can
    describe a URL that does not parse (that is when it is needed most).

    User info that lacks its ``@`` (``s3://KEY:SECRET/prefix``, see
    ``credential_shaped``) hides the host part and the path too: a secret may
    hold a "/", and without the ``@`` nothing says where it ends."""
    head = _URL_HEAD.match(url)
    assert head is not None  # every part of the pattern is optional
    out, rest = url[: head.end()], url[head.end() :]
    rest, hashed, fragment = rest.partition("#")
    rest, asked, query = rest.partition("?")
    if head.group(1) and "@" in rest:
        # User info ends at the last "@" before the query, not at the first "/":
        # a password may hold a "/" (AWS secret keys often do), which would
        # otherwise leave its second half in what reads as the path.
        rest = "***@" + rest.rpartition("@")[2]
    elif head.group(1) and credential_shaped(rest.partition("/")[0]):
        rest = "***"
    out += rest
    if asked:
        out += "?" + "&".join(
            f"{_key(key)}=***" if eq else _key(key)
            for key, eq, _ in (p.partition("=") for p in query.split("&"))
        )
    if hashed:
        out += "#***" if fragment else "#"
    return out


# Bucket naming rules. S3: the current rules are 3-63 lower-case letters, digits,
# '.' and '-'; buckets made in us-east-1 before 2018 may also hold capitals and
# '_' and be up to 255 long, and S3-compatible servers follow those looser
# rules, so they are what is checked (botocore's own check, minus its regular
# expression in the message) and a name's case is kept. A name shaped like an
# IPv4 address is refused by AWS and by the compatible servers alike. What is
# not checked: the prefixes AWS alone reserves (xn--, sthree-, amzn-s3-demo-),
# which a compatible server's bucket may carry, and the suffixes -s3alias and
# --ol-s3, which are access point aliases: they stand wherever a bucket name
# does for the object operations dr uses. A name AWS has no bucket for is then
# "bucket does not exist" when the store is used, not a repository dr cannot
# open. GCS (https://cloud.google.com/storage/docs/buckets#naming): lower case
# only, no IPv4-shaped names, none starting with "goog" and none containing
# "google" or a close misspelling, for which digits standing for the letters
# they look like (g00gle, goog1e, googl3) are what is recognised.
_S3_BUCKET = re.compile(r"[A-Za-z0-9._-]{3,255}")
_GCS_BUCKET = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")
_IPV4_SHAPED = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_LOOKALIKE_DIGITS = str.maketrans("013", "ole")


def bucket_problem(scheme: str, bucket: str) -> str | None:
    """Why ``bucket`` cannot name a bucket of ``scheme`` (``s3``, ``gs``); None if it can."""
    if scheme == "gs":
        if bucket.lower() != bucket:
            return "GCS bucket names are lower case"
        if not _GCS_BUCKET.fullmatch(bucket):
            return (
                "GCS bucket names hold only lower-case letters, digits, '-', '_' and '.', "
                "and start and end with a letter or digit"
            )
        longest = 222 if "." in bucket else 63
        if not 3 <= len(bucket) <= longest or any(len(part) > 63 for part in bucket.split(".")):
            return "GCS bucket names are 3-63 characters long (up to 222 with dots, 63 between two dots)"
        if _IPV4_SHAPED.fullmatch(bucket):
            return "GCS bucket names cannot be IP addresses (192.168.5.4)"
        if "google" in bucket.translate(_LOOKALIKE_DIGITS):
            return "GCS bucket names cannot contain 'google' or a close misspelling of it (such as 'g00gle')"
        if bucket.startswith("goog"):
            return "GCS bucket names cannot start with 'goog'"
        return None
    if not _S3_BUCKET.fullmatch(bucket):
        return (
            "S3 bucket names are 3-63 lower-case letters, digits, '.' and '-' "
            "(older buckets may also hold capitals and '_', up to 255 characters)"
        )
    if _IPV4_SHAPED.fullmatch(bucket):
        return "S3 bucket names cannot be IP addresses (192.168.5.4)"
    return None


def has_query_or_fragment(url: str) -> bool:
    """Whether ``url`` carries a query or a fragment, an empty one too (``x?``, ``x#``):
    what a URL that reads neither must refuse rather than drop in silence."""
    parts = urlsplit(url)
    return bool(parts.query or parts.fragment) or url.endswith(("?", "#"))


def is_http_url(url: str) -> bool:
    """An http(s) URL with a host (and a valid port, if any): what a service address
    (Vault, a KMS endpoint) must be before a client library is given it."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        return False
    # urlsplit takes any text for a host; a space in it fails the client's parser later.
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not any(c.isspace() for c in parts.netloc)
    )
