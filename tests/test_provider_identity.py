"""Which key-provider URIs name the same key (dr.crypto.provider_identity), and which slot is\na configured provider's last (dr.cli.required_slots): pure logic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dr.cli.required_slots import RequiredSlots
from dr.config import KeyProvider as KeyProviderConfig
from dr.crypto.keyring import KeySlot
from dr.crypto.provider_identity import canonical, may_be_same_key, same_key
from dr.crypto.providers.base import Wrapped

ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("local:///keys/dr.key", "local:///keys//dr.key"),
        ("local:///keys/dr.key", "local:///keys/./dr.key"),
        ("local:///keys/dr/", "local:///keys/dr"),
        ("vault://transit/keys/dr", "vault:///transit/keys/dr"),
        ("vault://transit/keys/dr", "vault://transit//keys/dr"),
        ("vault://ns/transit/keys/dr", "vault://ns/transit/keys/dr"),
    ],
)
def test_spellings_of_one_key_are_the_same_key(a: str, b: str) -> None:
    assert same_key(a, b) and may_be_same_key(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # Paths and Vault names are case-sensitive; '..' may cross a symlink.
        ("local:///keys/dr.key", "local:///Keys/dr.key"),
        ("local:///keys/dr.key", "local:///keys/x/../dr.key"),
        ("vault://transit/keys/dr", "vault://transit/keys/DR"),
        ("vault://transit/keys/dr", "vault://Transit/keys/dr"),
        ("vault://transit/keys/dr", "vault://other/keys/dr"),
        ("local:///transit/keys/dr", "vault://transit/keys/dr"),
        (
            "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/a",
            "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/b",
        ),
        ("awskms://1234abcd-12ab-34cd-56ef-1234567890ab", "awskms://0000abcd-12ab-34cd-56ef-1234567890ab"),
    ],
)
def test_other_keys_are_not(a: str, b: str) -> None:
    assert not same_key(a, b) and not may_be_same_key(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # An alias may point at the other key; a key ARN and its bare id name one key in one account.
        ("awskms://alias/dr", f"awskms://{ARN}"),
        ("awskms://alias/dr", "awskms://alias/dr-old"),
        (
            "awskms://arn:aws:kms:eu-west-1:111122223333:alias/dr",
            "awskms://1234abcd-12ab-34cd-56ef-1234567890ab",
        ),
        (f"awskms://{ARN}", "awskms://1234abcd-12ab-34cd-56ef-1234567890ab"),
    ],
)
def test_kms_references_that_may_name_one_key(a: str, b: str) -> None:
    assert may_be_same_key(a, b) and not same_key(a, b)


@pytest.mark.parametrize(
    "uri", ["vault://transit/keys/a/b", "http://[::1", "local:relative", "vault://x y/keys/z", ""]
)
def test_a_uri_no_provider_takes_is_compared_as_written(uri: str) -> None:
    assert canonical(uri) == uri


def _slot(slot_id: str, uri: str, repository: str = "repo") -> KeySlot:
    return KeySlot(slot_id, repository, uri, Wrapped(b""), datetime(2026, 1, 1, tzinfo=UTC))


def test_the_slot_removed_may_be_the_providers_and_the_slots_kept_must_be() -> None:
    alias = KeyProviderConfig(name="cluster", uri="awskms://alias/dr")
    required = RequiredSlots("main", "dr.yaml", [alias])
    by_arn = _slot("a", f"awskms://{ARN}")
    # The alias may point at the ARN's key: with no slot surely the alias's left, refused.
    assert required.last_slot_of(by_arn, [by_arn, _slot("b", "awskms://alias/dr-old")], "repo") == alias
    assert required.last_slot_of(by_arn, [by_arn, _slot("b", "awskms://alias/dr")], "repo") is None
    # A slot of another repository is no slot of this one's provider, kept or removed.
    theirs = _slot("c", "awskms://alias/dr", repository="other")
    assert required.last_slot_of(by_arn, [by_arn, theirs], "repo") == alias
    assert required.last_slot_of(theirs, [theirs], "repo") is None
    # A key the alias cannot be is not its slot.
    assert required.last_slot_of(_slot("d", "vault://transit/keys/dr"), [], "repo") is None
