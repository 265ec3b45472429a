"""From global options and dr.yaml to an open repository.

Which repository: ``--repo URL`` (or ``$DR_REPO``), else the repository of
the backup policy a command was given (``--policy``), else the config's
default repository, else the embedded default. Its settings (S3 endpoint,
Object Lock, …) come from the config entry with that URL or name. Which
keys: when opening, the slots of the config's key providers are tried first,
in slot order, then every other slot's provider (with default options) — so
a new cluster needs only the URL and access to one key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from dr.cli import startup_gc
from dr.cli.context import AppContext
from dr.config import BackupPolicy, default_config
from dr.config import KeyProvider as KeyProviderConfig
from dr.config import Repository as RepositoryConfig
from dr.crypto.provider_identity import same_key
from dr.crypto.providers.base import KeyProvider
from dr.crypto.providers.registry import open_provider
from dr.errors import InvalidInput
from dr.repo.repository import Repository
from dr.storage.base import ObjectStore
from dr.storage.registry import open_store

log = logging.getLogger(__name__)


def repository_config(app: AppContext, name: str | None = None) -> RepositoryConfig:
    cfg = app.loaded.config
    if app.repo_url:
        match = next((r for r in cfg.repositories if r.url == app.repo_url), None)
        return match or RepositoryConfig(name="cli", url=app.repo_url)
    repo = cfg.repository(name)
    if repo is None:
        if name:
            raise InvalidInput(f"no repository named {name!r} in {app.loaded.source}")
        repo = default_config().repository()
        assert repo is not None
    return repo


def backup_policy(app: AppContext, name: str) -> BackupPolicy | None:
    """The config's backup policy ``name``, if it has one."""
    return app.loaded.config.backup_policy(name)


def required_backup_policy(app: AppContext, name: str) -> BackupPolicy:
    """The config's backup policy ``name``; ``InvalidInput`` naming the ones it knows if it has none."""
    pol = backup_policy(app, name)
    if pol is None:
        raise InvalidInput(
            f"no backup policy {name!r} in {app.loaded.source} (known: {known_backup_policies(app)})"
        )
    return pol


def policy_repository(app: AppContext, policy: str | None) -> str | None:
    """The repository (name) the config's backup policy ``policy`` backs up into, if it names one.

    ``dr backup --policy P`` writes into P's repository, so the commands that pick
    P's backups (``restore``, ``backups list``, ``forget`` with ``--policy P``) must
    read that one, not the default. A policy the config does not know (a
    restore on a new cluster with only ``--repo``) leaves the default.
    """
    return app.loaded.config.backup_repository(policy)


def known_backup_policies(app: AppContext) -> str:
    """The config's backup policies' names, for a message about one it does not have."""
    return ", ".join(p.name for p in app.loaded.config.backup_policies) or "none"


def searched(app: AppContext, repo: Repository, policy: str | None) -> str:
    """Where a command looked for backups, for a message that found none: the repository's URL
    (redacted) and the configuration, which may not be the one that has them (a runbook's
    line in a shell with another $DR_CONFIG, or none); and if it does not know ``policy``."""
    from dr.urls import redact_url

    config = app.loaded.source
    if policy and backup_policy(app, policy) is None:
        config += f"; it names no backup policy {policy!r}, known: {known_backup_policies(app)}"
    return f"{redact_url(repo.store.url)} (configuration: {config})"


def store_for(app: AppContext, name: str | None = None) -> ObjectStore:
    rc = repository_config(app, name)
    store: ObjectStore = app.cached(f"store:{rc.url}", lambda: open_store(rc.url, rc))
    return store


def provider_options(app: AppContext, uri: str) -> KeyProviderConfig | None:
    """The config's key provider for ``uri``'s key, however either spells it (``same_key``):
    a slot written as ``vault:///transit/keys/dr`` is opened with the settings (address,
    Kubernetes auth) of the configured ``vault://transit/keys/dr``, not with none. A
    provider spelled exactly as ``uri`` comes first: the address is not in a Vault URI,
    so two spellings may be two Vaults, each slot opened with its own provider's settings."""
    providers = app.loaded.config.key_providers
    exact = next((k for k in providers if k.uri == uri), None)
    return exact or next((k for k in providers if same_key(k.uri, uri)), None)


def provider_lookup(app: AppContext) -> Callable[[str], KeyProvider | None]:
    def lookup(uri: str) -> KeyProvider | None:
        return open_provider(uri, provider_options(app, uri))

    return lookup


def configured_provider(app: AppContext) -> Callable[[str], bool]:
    """Whether a slot's provider URI names one of the config's key providers' keys (tried first)."""
    return lambda uri: provider_options(app, uri) is not None


def default_key_uri(app: AppContext, rc: RepositoryConfig) -> str:
    cfg = app.loaded.config
    for name in rc.keys:
        kp = cfg.key_provider(name)
        if kp is not None:
            return kp.uri
    if cfg.key_providers:
        return cfg.key_providers[0].uri
    return default_config().key_providers[0].uri


def open_repository(app: AppContext, name: str | None = None) -> Repository:
    def make() -> Repository:
        repo = Repository.open(store_for(app, name), provider_lookup(app), preferred=configured_provider(app))
        for note in repo.unlock_notes:
            log.info("key %s", note)
        startup_gc.release()  # start-up is over: its objects live on
        return repo

    return app.cached(f"repo:{name}", make)  # type: ignore[no-any-return]


def init_repository(app: AppContext, key_uri: str | None) -> tuple[Repository, KeyProvider]:
    """The new repository and the provider that wrapped its first slot."""
    rc = repository_config(app)
    uri = key_uri or default_key_uri(app, rc)
    provider = open_provider(uri, provider_options(app, uri), create=True)
    return Repository.init(store_for(app), provider), provider
