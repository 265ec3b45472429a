"""When two key-provider URIs name the same key: the one place that decides it.

A slot keeps its provider's URI as it was typed (``dr repo init --key``, ``dr key
add``), and dr.yaml's ``keyProviders`` may spell the same key another way. What
counts is the key the provider would use, so a URI is reduced to what its
provider actually sends or opens (``canonical``):

  local   the path as the provider opens it (``pathlib.Path``): ``local:///a//b/``
          and ``local:///a/./b`` are ``local:///a/b``. Case is kept (paths are
          case-sensitive) and ``..`` is kept (``a/x/..`` is not ``a`` when ``x``
          is a symlink).
  vault   ``vault://<mount>/keys/<name>`` with the mount's outer slashes dropped, as
          ``vault.parse_uri`` does: ``vault:///transit/keys/dr`` and
          ``vault://transit//keys/dr`` address the same transit key. Case is kept:
          mount paths and transit key names are case-sensitive (checked on OpenBao:
          ``transit/decrypt/DR`` is "encryption key not found" for key ``dr``, and
          ``TRANSIT/…`` has no route). The Vault address is not in the URI: the same
          URI is taken for the same Vault, as opening a slot does.
  awskms, gcpkms  the URI as written: the key reference goes to the service as it
          is, and differently spelled references to one key (an alias, a key id, a
          key ARN) can only be told apart by asking the service.

``same_key`` is that equality. ``may_be_same_key`` also holds when an AWS KMS
reference is an alias (it may point at the other key, and aliases move) or when
the two share a key id: it is for the question "might removing this slot take away
that provider's key?", where answering no wrongly is the costly mistake, while
``same_key`` is for "is this slot surely that provider's?". A URI its provider
would refuse (a damaged slot's) is compared as written.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlsplit

from dr.errors import InvalidInput


def canonical(uri: str) -> str:
    """``uri`` spelled as its provider resolves it (see the module docstring)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.scheme == "local" and not parts.netloc and parts.path.startswith("/"):
        return f"local://{PurePosixPath(parts.path)}"
    if parts.scheme == "vault":
        from dr.crypto.providers.vault import parse_uri

        try:
            mount, name = parse_uri(uri)
        except InvalidInput:
            return uri
        return f"vault://{mount}/keys/{name}"
    return uri


def same_key(a: str, b: str) -> bool:
    """Whether provider URIs ``a`` and ``b`` surely name the same key."""
    return canonical(a) == canonical(b)


def may_be_same_key(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` might name the same key: ``same_key``, or two AWS KMS references
    that an alias could join or that share a key id (``key/ID`` in an ARN, or the bare id)."""
    if same_key(a, b):
        return True
    prefix = "awskms://"
    if not (a.startswith(prefix) and b.startswith(prefix)):
        return False
    ka, kb = a[len(prefix) :], b[len(prefix) :]
    if _is_alias(ka) or _is_alias(kb):
        return True
    return _key_id(ka) == _key_id(kb)


def _is_alias(key: str) -> bool:
    return key.startswith("alias/") or ":alias/" in key


def _key_id(key: str) -> str:
    """The key id of a key ARN (``arn:…:key/ID``), or ``key`` itself (a bare id)."""
    return key.rsplit(":key/", 1)[-1] if key.startswith("arn:") else key
