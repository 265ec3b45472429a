"""The bytes a key-slot context stands for, for providers that bind bytes, not maps.

A context (``{"dr-repository": "<repo id hex>"}``) binds a wrapped master key
to one repository. AWS KMS takes it as a map (EncryptionContext); Vault transit
(derivation context) and GCP KMS (additional authenticated data) take bytes, so
the map is encoded here once, the same way for both.

The encoding is canonical JSON (sorted keys, no spaces, ASCII) after a
versioned label: it is injective, so two different contexts can never yield
the same bytes (a ``k=v`` join would make ``{"a": "b=c"}`` equal ``{"a=b": "c"}``),
and the label keeps these bytes from meaning anything outside a dr key slot.
"""

from __future__ import annotations

import json

LABEL = b"dr-keyslot-context-v1\n"


def context_bytes(context: dict[str, str]) -> bytes:
    """Canonical, injective encoding of ``context``; raises TypeError on non-string items."""
    for k, v in context.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("key-slot context keys and values must be strings")
    return LABEL + json.dumps(context, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
