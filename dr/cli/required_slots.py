"""The key slots dr.yaml says a repository keeps: the last slot of a listed provider stays.

A repository entry's ``keys:`` names the key providers whose slots should exist, and
what runs on a schedule opens the repository with them (the CronJobs' Vault login
with Kubernetes auth, a KMS key through the pod's role) — credentials an operator's
laptop rarely has. ``dr key remove`` also checks that another slot unwraps *here*,
which says nothing about those identities: removing the only slot of the cluster's
provider passed that check, and the next backup failed with "none of N key slot(s)
could be unwrapped". So it is refused (exit 2) unless ``--force``.

Which slots are a provider's (``dr.crypto.provider_identity``): the slot to be
removed counts if it *may* name the provider's key (``may_be_same_key``: an AWS alias
might point at it), the slots that remain only if they *surely* do (``same_key``): a
wrong "yes" in the first place or a wrong "no" in the second only refuses, where
``--force`` is the way on; the other way round it would remove the key the cluster
needs. Slots that say they belong to another repository count for nothing.

Only a configuration file lists keys: the built-in defaults' local key file is no
statement that the repository needs it (moving off it is ``key add``, ``key remove``).
"""

from __future__ import annotations

from dataclasses import dataclass

from dr.cli.context import AppContext
from dr.cli.repo_access import repository_config
from dr.config import KeyProvider as KeyProviderConfig
from dr.crypto.keyring import KeySlot, shown
from dr.crypto.provider_identity import may_be_same_key, same_key


@dataclass(frozen=True)
class RequiredSlots:
    """The key providers ``source`` lists for repository ``repository`` (its config entry's name)."""

    repository: str
    source: str
    providers: list[KeyProviderConfig]

    def last_slot_of(self, target: KeySlot, slots: list[KeySlot], repo_id: str) -> KeyProviderConfig | None:
        """The listed provider that would have no slot left without ``target``, if any."""
        if target.repository != repo_id:
            return None
        for p in self.providers:
            if not may_be_same_key(target.provider, p.uri):
                continue
            if not any(
                s.id != target.id and s.repository == repo_id and same_key(s.provider, p.uri) for s in slots
            ):
                return p
        return None

    def refusal(self, target: KeySlot, p: KeyProviderConfig) -> str:
        return (
            f"refusing to remove key slot {shown(target.id)[:8]}: it is the last slot of key provider "
            f"{p.name!r} ({shown(p.uri)}), which {self.source} lists in the keys of repository "
            f"{self.repository!r}; remove {p.name!r} from those keys first, or pass --force"
        )

    def warning(self, target: KeySlot, p: KeyProviderConfig) -> str:
        return (
            f"warning: removed key slot {shown(target.id)[:8]}, the last slot of key provider {p.name!r} "
            f"({shown(p.uri)}), which {self.source} lists in the keys of repository {self.repository!r}: "
            f"what opens the repository with only that provider fails until `dr key add {shown(p.uri)}`"
        )


def required_slots(app: AppContext) -> RequiredSlots | None:
    """The providers the loaded configuration file lists for the repository the key commands use."""
    if app.loaded.config_dir is None:  # built-in defaults
        return None
    rc = repository_config(app)
    cfg = app.loaded.config
    providers = [p for p in (cfg.key_provider(n) for n in rc.keys) if p is not None]
    return RequiredSlots(rc.name, app.loaded.source, providers) if providers else None
