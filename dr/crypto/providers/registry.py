"""Open a key provider by URI scheme: the one place that maps schemes to providers."""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from dr.config import KeyProvider as KeyProviderConfig
from dr.crypto.providers.base import KeyProvider
from dr.errors import InvalidInput
from dr.urls import has_query_or_fragment, redact_url

SCHEMES = ("local", "vault", "awskms", "gcpkms")


def open_provider(uri: str, options: KeyProviderConfig | None = None, *, create: bool = False) -> KeyProvider:
    """The provider for ``uri``. ``create``: for a new slot; a local provider may create its key
    file, and the URI is checked for what a stored one must not carry (``_check_new_slot_uri``)."""
    parts = urlsplit(uri)
    if create:
        _check_new_slot_uri(uri, parts)
    if parts.scheme == "local":
        from dr.crypto.providers.local import LocalKeyProvider

        if not parts.path.startswith("/") or parts.netloc:
            raise InvalidInput(f"key provider {uri!r}: use local:///absolute/path/to/keyfile")
        return LocalKeyProvider(parts.path, create=create)
    if parts.scheme == "vault":
        from dr.crypto.providers.vault import VaultKeyProvider

        return VaultKeyProvider.from_uri(uri, options.vault if options else None)
    if parts.scheme == "awskms":
        from dr.crypto.providers.awskms import AWSKMSKeyProvider

        return AWSKMSKeyProvider.from_uri(uri, options.awskms if options else None)
    if parts.scheme == "gcpkms":
        from dr.crypto.providers.gcpkms import GCPKMSKeyProvider

        return GCPKMSKeyProvider.from_uri(uri, options.gcpkms if options else None)
    raise InvalidInput(f"key provider {uri!r}: unsupported scheme (local://, vault://, awskms://, gcpkms://)")


def _check_new_slot_uri(uri: str, parts: SplitResult) -> None:
    """Refuse a URI for a new slot that carries credentials, a query or a fragment.

    Checked before anything quotes the URI. A slot keeps its provider's URI in the
    repository unencrypted (it says which key unwraps the slot), so credentials in it
    would be at rest in plaintext; and no provider reads a query or a fragment, which
    would otherwise be dropped in silence (local:///k.key?x is the file /k.key). Only
    for URIs given to make a slot (``create``): a slot already in a repository is
    opened as it is, so that one written before this check still unlocks it.
    """
    if "@" in parts.netloc:
        raise InvalidInput(
            "key provider URI must not contain credentials (they come from the provider's own "
            "configuration: VAULT_TOKEN, AWS or Google credentials)"
        )
    if has_query_or_fragment(uri):
        raise InvalidInput(
            f"key provider {redact_url(uri)!r} takes no '?' or '#' (local:///path, vault://mount/keys/name, "
            "awskms://key, gcpkms://projects/…/cryptoKeys/key)"
        )
