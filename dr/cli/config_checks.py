"""What ``dr config validate`` checks in a dr.yaml beyond its fields: what only the layers above the config know.

``dr.config`` is the bottom layer: it checks a URL's scheme, path and bucket
and a field's type without importing any client. What only a store, a key
provider or the Kubernetes layer knows is checked here, by the functions
those use when they run (no network, no credentials), so that a refused
value names its line in dr.yaml instead of failing the first scheduled run
without one:

- locations: the query settings an s3:// or gs:// URL may carry and how they
  agree with the repository's options, that a file:// URL has no query, the
  shape of a Vault, AWS KMS or GCP KMS key name;
- backup policies: the label selectors of their scope and of their hooks, as
  the backup parses them; the namespaces of their scope, names and globs that
  no namespace can match (``Bad_NS``, an unclosed ``[``) and an empty entry,
  which the backup skips (and, when no entry names a namespace, reads as
  "every namespace");
- drill policies: their runbooks, found and validated as ``dr deploy render``
  finds and reads them (a relative path: in the config's folder, then in the
  current one); an invalid runbook's problems are its own lines, as
  ``dr runbook validate`` prints them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
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


def policy_problems(cfg: Config) -> list[Problem]:
    """(field path, reason) for each backup policy's label selector the backup would refuse,
    and each namespace entry of its scope the backup can never match."""
    from dr.backup.scope import namespace_entry_problems
    from dr.kube.discovery import split_specs
    from dr.kube.selectors import parse_selector

    problems: list[Problem] = []
    for i, policy in enumerate(cfg.backup_policies):
        named = bool(split_specs(policy.scope.namespaces))  # else the backup takes every namespace
        for j, entry in enumerate(policy.scope.namespaces):
            at = ("backupPolicies", i, "scope", "namespaces", j)
            problems += [(at, why) for why in namespace_entry_problems(entry, others_name_some=named)]
        selectors = [(("scope", "selector"), policy.scope.selector)] + [
            (("hooks", j, "selector"), hooks.selector) for j, hooks in enumerate(policy.hooks)
        ]
        for where, selector in selectors:
            try:
                parse_selector(selector)
            except InvalidInput as e:
                problems.append((("backupPolicies", i, *where), e.message))
    return problems


def runbook_problems(cfg: Config, config_dir: Path) -> tuple[list[Problem], list[str]]:
    """(field path, reason) for each drill policy whose runbook is not found or not valid, and
    the invalid runbooks' own problem lines (``FILE:LINE:COL: field: reason``), once a file."""
    from dr.runbook.model import load_runbook, runbook_candidates

    located: list[Problem] = []
    lines: dict[Path, list[str]] = {}
    for i, drill in enumerate(cfg.drill_policies):
        where = ("drillPolicies", i, "runbook")
        candidates = runbook_candidates(drill.runbook, config_dir)
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            looked = ", ".join(str(c) for c in dict.fromkeys(candidates))  # render's words
            located.append((where, f"{drill.runbook}: no such file (looked for {looked})"))
            continue
        if path not in lines:
            try:
                load_runbook(path)
                lines[path] = []
            except InvalidInput as e:
                # A file that cannot be read or parsed at all has only the message.
                lines[path] = list(e.details) or [e.message]
        if n := len(lines[path]):
            located.append(
                (where, f"{drill.runbook}: invalid runbook ({n} problem{'s' if n != 1 else ''} below)")
            )
    return located, [line for found in lines.values() for line in found]
