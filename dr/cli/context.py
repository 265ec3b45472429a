"""The state a command receives from the global options (``ctx.obj``).

No module-level globals: the root command builds one ``AppContext`` per
invocation; commands ask it for the config and, lazily, for clients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from dr.config import LoadedConfig


@dataclass
class AppContext:
    config_file: str | None = None
    repo_url: str | None = None
    kubeconfig: str | None = None
    kube_context: str | None = None
    verbose: int = 0
    quiet: bool = False
    _loaded: LoadedConfig | None = field(default=None, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def loaded(self) -> LoadedConfig:
        if self._loaded is None:
            # Imported here: the config models (pydantic) are the largest part of
            # start-up, and `dr --version` or `--help` need none of it.
            from dr.config import load_config

            self._loaded = load_config(self.config_file)
        return self._loaded

    def cached(self, key: str, factory: Any) -> Any:
        """One client per invocation (e.g. the opened repository), made on first use."""
        if key not in self._cache:
            self._cache[key] = factory()
        return self._cache[key]


def app(ctx: click.Context | None = None) -> AppContext:
    ctx = ctx or click.get_current_context()
    obj = ctx.find_object(AppContext)
    if obj is None:  # a command invoked outside the root group (tests)
        obj = ctx.ensure_object(AppContext)
    return obj
