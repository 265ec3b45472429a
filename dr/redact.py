"""Secret-looking values in free text, masked: ``redact(text)`` (and ``redact_argv(argv)``
for a command as an argument list).

Used where text dr did not write goes out: log lines and tracebacks (the
log handler's last line of defence, ``dr.cli.logs``) and a hook's stderr,
which a failing ``pg_dump``, ``mysql`` or script may fill with a password or
a token and which is quoted in errors, records and Kubernetes Events. Kept at
the bottom layer (no imports from dr) so every layer can use it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# How much of a long text is redacted to find what its quoted head or tail holds: far
# more than a tail and a PEM private key (an 8192-bit RSA key is about 6.5 KB) before
# it, and bounded, for the time the patterns take (once quadratic on crafted input:
# ~60 s for 1 MiB; linear since, tests/test_redact.py).
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
    # A private key up to its END line, or, cut short (a hook's stderr tail), up to the next
    # BEGIN or the end of the text. Not past the next BEGIN: from every one of many BEGINs
    # without an END the search ran to the end of the text (200 KB of them: 7 s).
    re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:(?!-----BEGIN )[\s\S])*?"
        r"(?:-----END [A-Z ]*PRIVATE KEY-----|(?=-----BEGIN )|\Z)"
    ),
    # user:password@ in a URL (the password may hold a "/": it ends at the last "@").
    # The scheme's length is bounded: unbounded, a long run of "a.a.a…" took
    # time quadratic in its length (a try from every word start to its end). So is the
    # password's, by the next "://": from each URL of a run of "a://a://…" without an "@"
    # it ran to the end of the run (200 KB: 48 s).
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]{0,31}://)[^\s/@?#]*:(?:(?!://)[^\s@?#])*(?=@)"),
]


# The MySQL and MariaDB clients take a password glued to -p (``mysqldump -u root -pSECRET``).
# Only theirs: elsewhere -p is a port (ssh, pg_dump), "parents" (mkdir) or "preserve" (cp), and
# ``-p`` alone (the client asks) or ``-P`` (its port) holds no password.
MYSQL_CLIENTS = frozenset(
    {"mysql", "mysqldump", "mysqladmin", "mysqlpump", "mysqlimport", "mysqlshow", "mysqlcheck",
     "mysqlbinlog", "mysqlslap", "mysqlsh", "mysql_upgrade", "mariadb", "mariadb-dump", "mariadb-admin",
     "mariadb-import", "mariadb-show", "mariadb-check", "mariadb-binlog", "mariadb-slap", "mariadb-upgrade",
     "mariadb-backup", "mariabackup"}
)  # fmt: skip
_CLIENT_NAMES = "|".join(sorted(map(re.escape, MYSQL_CLIENTS), key=len, reverse=True))
# One such client's command in a command line or a text quoting it (``sh -x`` on stderr): its
# name as a word (bare or in a bin/ folder, not /var/lib/mysql nor a pod mysql-0), up to the end
# of the shell command (;, &, |, a line break), quoted parts included. The bin/ folder's path
# holds none of the characters a name may follow: a path through one ("a,/usr/bin/mysql")
# starts after it, and from each of a long run of them ("((((…") the path is not looked
# for up to the run's end (time quadratic in its length: 17 s for 100 KB).
_MYSQL_COMMAND = re.compile(
    rf"(?:^|(?<=[\s'\"\[,(;&|`]))(?:[^\s'\"\[,(;&|`]*bin/)?(?:{_CLIENT_NAMES})(?=$|[\s'\"\],;&|)`])"
    r"""(?:'[^'\n]*'|"[^"\n]*"|[^;&|\n])*"""
)
# Within it, -pVALUE as a word of its own (not in --port, -P3306 or -p alone); the value quoted,
# unquoted or both glued, but not in the quote the word itself is in ('-p', 'db' in a list).
_MYSQL_GLUED_PASSWORD = re.compile(r"""(?<=([\s'"]))-p(?:(?!\1)'[^'\n]*'|(?!\1)"[^"\n]*"|[^\s'";&|])+""")
# --password VALUE, --db-password VALUE, --token VALUE, --client-secret VALUE (the value as the
# next word, of any program; "--password=" is one of _SECRET_PATTERNS). Not --no-password,
# --password-file, nor a flag followed by another option (mysql --password --user root).
_LONG_OPTION = r"--(?!no-)[\w-]*(?:password|passwd|pwd|token|secret)"
_SEPARATE_VALUE = re.compile(
    rf"""(?i)((?<![\w-]){_LONG_OPTION}(?:\s+|["']\s*,\s*["']))(?!-|\[REDACTED\])(?:'[^'\n]*'|"[^"\n]*"|[^\s'",;&|)\]]+)"""
)
_LONG_OPTION_ARG = re.compile(_LONG_OPTION, re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every value matching a pattern above replaced by ``[REDACTED]``
    (the name before it kept, so the text still says what was there)."""
    for pat in _SECRET_PATTERNS:
        if pat.groups:
            text = pat.sub(lambda m: (m.group(1) if m.lastindex else "") + "[REDACTED]", text)
        else:
            text = pat.sub("[REDACTED]", text)
    text = _SEPARATE_VALUE.sub(lambda m: m.group(1) + "[REDACTED]", text)
    return _MYSQL_COMMAND.sub(lambda m: _MYSQL_GLUED_PASSWORD.sub("-p[REDACTED]", m.group()), text)


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command as an argument list, masked as ``redact`` masks a command line: each
    argument (a shell script of ``sh -c`` included), an argument after a MySQL/MariaDB
    client's name that is ``-p`` with a value glued to it, and the argument after a
    ``--…password`` option (unless it is another option)."""
    out = [redact(arg) for arg in argv]
    client = False
    for i, arg in enumerate(argv):
        if client and arg.startswith("-p") and len(arg) > 2:
            out[i] = "-p[REDACTED]"
        elif _LONG_OPTION_ARG.fullmatch(arg) and i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            out[i + 1] = "[REDACTED]"
        folder, _, name = arg.rpartition("/")
        client = client or (name in MYSQL_CLIENTS and (not folder or folder.endswith("bin")))
    return out


def redacted_head(text: str, n: int) -> str:
    """The first ``n`` characters of ``text``, masked before the cut (a secret whose
    name falls just before it is masked too)."""
    return redact(text[:WINDOW])[:n]


def redacted_tail(text: str, n: int) -> str:
    """The last ``n`` characters of ``text``, masked before the cut."""
    return redact(text[-WINDOW:])[-n:] if n else ""
