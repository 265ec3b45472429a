"""Secret-looking values in free text, masked: ``redact(text)``.

Used where text dr did not write goes out: log lines and tracebacks (the
log handler's last line of defence, ``dr.cli.logs``) and a hook's stderr,
which a failing ``pg_dump``, ``mysql`` or script may fill with a password or
a token and which is quoted in errors, records and Kubernetes Events. Kept at
the bottom layer (no imports from dr) so every layer can use it.
"""

from __future__ import annotations

import re

# How much of a long text is redacted to find what its quoted head or tail holds: far
# more than a tail and a PEM private key (an 8192-bit RSA key is about 6.5 KB) before
# it, and bounded, for the time the patterns take (quadratic on crafted input: ~60 s
# for 1 MiB).
WINDOW = 16 * 1024

# Values that look like credentials: Vault tokens, AWS keys, bearer tokens and other
# Authorization headers, PEM keys, passwords in URLs, GCS upload sessions.
_SECRET_PATTERNS = [
    re.compile(r"\b(hvs|hvb|hvr|s)\.[A-Za-z0-9_-]{20,}"),
    re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/-]+=*"),
    # An Authorization header of any scheme (Basic, Digest, AWS4-HMAC-SHA256, a bare
    # token): curl -v or a script's own tracing prints it on a hook's stderr.
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*(?:b?[\"'])?(?:[A-Za-z0-9-]+\s+)?)[^\s\"',}]+"),
    # AWS session tokens in every form botocore logs at -vvv: a header in a dict
    # (bytes or str), a (name, value) pair, the canonical request's "name:value"
    # line, a presigned URL's query.
    re.compile(r"(?i)(x-amz-security-token[\"']?(?:\s*[:=,]\s*|\s+)(?:b?[\"'])?)[^\s\"',}&)]+"),
    # name: value and name=value, quoted or not; a quoted value may be bytes (b'...').
    # Matched inside longer names too: PGPASSWORD=, MYSQL_PWD=, VAULT_TOKEN=.
    re.compile(
        r"(?i)((?:token|secret|password|passwd|pwd|secret_id|plaintext)[\"']?\s*[:=]\s*(?:b?[\"'])?)"
        r"[^\s\"',}]+"
    ),
    # A GCS resumable upload's session URI is a bearer credential (urllib3 logs
    # the request line at -vvv).
    re.compile(r"(upload_id=)[^\s\"'&]+"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----"),
    # user:password@ in a URL (the password may hold a "/": it ends at the last "@").
    # The scheme's length is bounded: unbounded, a long run of "a.a.a…" took
    # time quadratic in its length (a try from every word start to its end).
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]{0,31}://)[^\s/@?#]*:[^\s@?#]*(?=@)"),
]


def redact(text: str) -> str:
    """``text`` with every value matching a pattern above replaced by ``[REDACTED]``
    (the name before it kept, so the text still says what was there)."""
    for pat in _SECRET_PATTERNS:
        if pat.groups:
            text = pat.sub(lambda m: (m.group(1) if m.lastindex else "") + "[REDACTED]", text)
        else:
            text = pat.sub("[REDACTED]", text)
    return text


def redacted_head(text: str, n: int) -> str:
    """The first ``n`` characters of ``text``, masked before the cut (a secret whose
    name falls just before it is masked too)."""
    return redact(text[:WINDOW])[:n]


def redacted_tail(text: str, n: int) -> str:
    """The last ``n`` characters of ``text``, masked before the cut."""
    return redact(text[-WINDOW:])[-n:] if n else ""
