"""The repository URLs and key provider URIs of a dr.yaml, read as the stores and key providers read them.

``dr.config`` checks a URL's scheme, path and bucket without importing any
client (it is the bottom layer). What only a store or provider knows — the
query settings an s3:// or gs:// URL may carry and how they agree with the
repository's options, that a file:// URL has no query, the shape of a Vault,
AWS KMS or GCP KMS key name — is checked here, for ``dr config validate``, by
the functions those stores and providers use when they open: no network, no
credentials. A refused location then names its line in dr.yaml, instead of
failing the first scheduled run without one.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from dr.config import Config, Problem, Repository
from dr.errors import InvalidInput


def _check_repository(repo: Repository) -> None:
    """``InvalidInput`` if the store for ``repo.url`` would refuse it (or its options)."""
    scheme = urlsplit(repo.url).scheme
    if scheme == "s3":
        from dr.storage.s3 import settings_from_url as s3_settings

        s3_settings(repo.url, repo.s3)
    elif scheme == "gs":
        from dr.storage.gcs import settings_from_url as gcs_settings

        gcs_settings(repo.url, repo.gcs)
    else:
        from dr.storage.registry import open_store

        open_store(repo.url, repo)  # file://: a FileStore reads nothing when made


def _key_name_parser(scheme: str) -> Callable[[str], object] | None:
    """The function the provider of ``scheme`` reads its URI's key name with
    (``InvalidInput`` for a bad one); None for local://, whose path dr.config checks."""
    if scheme == "vault":
        from dr.crypto.providers import vault

        return vault.parse_uri
    if scheme == "awskms":
        from dr.crypto.providers import awskms

        return awskms.parse_uri
    if scheme == "gcpkms":
        from dr.crypto.providers import gcpkms

        return gcpkms.parse_uri
    return None


def location_problems(cfg: Config) -> list[Problem]:
    """(field path, reason) for each repository URL or key provider URI that would be refused when opened."""
    problems: list[Problem] = []
    for i, repo in enumerate(cfg.repositories):
        try:
            _check_repository(repo)
        except InvalidInput as e:
            problems.append((("repositories", i, "url"), e.message))
    for i, provider in enumerate(cfg.key_providers):
        parse = _key_name_parser(urlsplit(provider.uri).scheme)
        try:
            if parse is not None:
                parse(provider.uri)
        except InvalidInput as e:
            problems.append((("keyProviders", i, "uri"), e.message))
    return problems
