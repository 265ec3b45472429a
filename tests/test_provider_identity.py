"""Which key-provider URIs name the same key (dr.crypto.provider_identity): pure logic."""

from __future__ import annotations

import pytest

from dr.crypto.provider_identity import canonical, may_be_same_key, same_key

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
