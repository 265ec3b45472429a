"""URLs in messages and logs.

A URL the user gave may carry a secret (``user:password@`` in its host part, a
token in its query), and it is most likely to be quoted precisely when it is
refused for that. Messages quote ``redact_url(url)`` instead. Kept at the
bottom layer (no imports from dr) so the config checks can use it too.

Also the bucket naming rules (``bucket_problem``): the s3:// and gs:// stores
check a URL's bucket with them when they open it, and ``dr config validate``
checks the configured URLs with the same function, without a store or network.
"""

from __future__ import annotations

import re

# scheme: and // at the start of a URL (both optional: redact_url takes anything).
_URL_HEAD = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?(//)?")


_SETTING_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,31}")


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
    describe a URL that does not parse (that is when it is needed most)."""
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
# expression in the message) and a name's case is kept. GCS: lower case only.
_S3_BUCKET = re.compile(r"[A-Za-z0-9._-]{3,255}")
_GCS_BUCKET = re.compile(r"[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?")


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
        return None
    if not _S3_BUCKET.fullmatch(bucket):
        return (
            "S3 bucket names are 3-63 lower-case letters, digits, '.' and '-' "
            "(older buckets may also hold capitals and '_', up to 255 characters)"
        )
    return None
