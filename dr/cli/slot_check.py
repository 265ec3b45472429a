"""Whether the credentials that just wrote a key slot can also unwrap it.

An identity may be allowed to encrypt with a key but not to decrypt (a Vault
policy with only ``transit/encrypt``, a KMS key policy or IAM role with only
Encrypt, ``roles/cloudkms.cryptoKeyEncrypter``). Wrapping then succeeds, and
``dr repo init`` reported a repository these credentials could not open.
After a slot is written it is unwrapped once with the same provider: a failure
is a warning, not an error, because the slot is valid — another identity may
hold the decrypt right (a break-glass key is often meant for one).
"""

from __future__ import annotations

import hmac

import click

from dr.crypto.keyring import KeySlot, MasterKey, shown, unwrap_slot
from dr.crypto.providers.base import KeyProvider

# unwrap_problem's answer for a slot that unwraps, but to another master key than the repository's.
ANOTHER_KEY = "it unwraps to another key"


def unwrap_problem(slot: KeySlot, provider: KeyProvider, master: MasterKey) -> str | None:
    """Why ``provider`` cannot unwrap ``slot`` to ``master`` here, or None when it can."""
    got = unwrap_slot(slot, lambda uri: provider)
    if isinstance(got, str):
        return got
    if not hmac.compare_digest(got.raw, master.raw):
        return ANOTHER_KEY
    return None


def warn_if_not_unwrappable(slot: KeySlot, provider: KeyProvider, master: MasterKey) -> None:
    """One warning line on stderr when these credentials cannot unwrap the slot just written."""
    problem = unwrap_problem(slot, provider, master)
    if problem is None:
        return
    click.echo(
        f"warning: key slot {slot.id[:8]} ({shown(slot.provider)}) was written, but these credentials "
        f"cannot unwrap it: {problem}; backups and restores need the decrypt permission too",
        err=True,
    )
