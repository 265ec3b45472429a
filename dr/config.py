"""``dr.yaml``: pydantic models, the YAML loader that remembers lines, and defaults.

Owns the configuration contract (architecture doc, "Outside contracts"): which
file is read (``--config``, then ``$DR_CONFIG``, then ``./dr.yaml``, then the
embedded defaults), what it may contain, and how problems are reported — one
line per problem, ``FILE:LINE:COL: field.path: reason``, exit 2. The same
loader validates runbooks (``dr.runbook.model``).

YAML field names are camelCase like Kubernetes manifests; unknown fields are
errors (a misspelt ``keepDialy`` must not silently disable retention).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from dr.cron import CronError, parse_cron, parse_duration
from dr.errors import InvalidInput

# Schemes the storage and key-provider registries implement. Kept here (the
# bottom layer) so the config can be checked without importing clients; a test
# asserts that the registries agree.
REPOSITORY_SCHEMES = ("file", "s3", "gs")
KEY_PROVIDER_SCHEMES = ("local", "vault", "awskms", "gcpkms")


# --------------------------------------------------------------------------- YAML with line numbers

Path_ = tuple[str | int, ...]


@dataclass
class LineMap:
    """Where each value of a YAML document came from: path -> (line, column), 1-based."""

    filename: str
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Path_) -> tuple[int, int]:
        # The deepest prefix of the path that exists in the document: a missing
        # field is reported at the mapping that should have held it.
        for n in range(len(path), -1, -1):
            if path[:n] in self.marks:
                return self.marks[path[:n]]
        return (1, 1)


class _Duplicate(Exception):
    def __init__(self, key: str, line: int, col: int) -> None:
        self.key, self.line, self.col = key, line, col


def _construct(node: yaml.Node, path: Path_, lm: LineMap, loader: yaml.SafeLoader) -> Any:
    lm.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            if key in out:
                raise _Duplicate(str(key), knode.start_mark.line + 1, knode.start_mark.column + 1)
            sub = (*path, key)
            out[key] = _construct(vnode, sub, lm, loader)
            # Point the field at its key: "line of the field" is where its name is.
            lm.marks[sub] = (knode.start_mark.line + 1, knode.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, (*path, i), lm, loader) for i, v in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def load_yaml(text: str, filename: str) -> tuple[Any, LineMap]:
    """Parse one YAML document, returning the data and where each value came from."""
    lm = LineMap(filename)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, lm
        return _construct(node, (), lm, loader), lm
    except _Duplicate as e:
        raise InvalidInput(f"{filename}:{e.line}:{e.col}: duplicate key {e.key!r}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise InvalidInput(f"{where}: invalid YAML: {e.problem or e.context}") from None
    finally:
        loader.dispose()


M = TypeVar("M", bound=BaseModel)


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(document)"


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "missing":
        return "required field is missing"
    # pydantic prefixes errors raised in validators with "Value error, ".
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


def validate_document(model: type[M], data: Any, lm: LineMap) -> M:
    """Validate ``data`` against ``model``; on failure raise one problem line per error."""
    located: list[tuple[tuple[Any, ...], str]] = []
    try:
        obj = model.model_validate(data)
    except ValidationError as e:
        seen: set[tuple[Any, ...]] = set()
        for err in e.errors():
            # Unions report once per member: keep the first error for a location.
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            if loc not in seen:
                seen.add(loc)
                located.append((loc, _message(err)))
    else:
        # Models may check what spans fields (names that refer to each other).
        check = getattr(obj, "reference_problems", None)
        located = check() if check else []
        if not located:
            return obj
    placed = sorted((lm.locate(loc), loc, msg) for loc, msg in located)
    problems = [f"{lm.filename}:{line}:{col}: {_field_path(loc)}: {msg}" for (line, col), loc, msg in placed]
    n = len(problems)
    raise InvalidInput(f"{lm.filename}: {n} problem{'s' if n != 1 else ''}", problems=problems)


def load_model(model: type[M], path: Path) -> M:
    """Read, parse and validate a YAML file into ``model`` (errors name file:line:col)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInput(f"{path}: cannot read: {e}") from None
    data, lm = load_yaml(text, str(path))
    return validate_document(model, data, lm)


# --------------------------------------------------------------------------- field types


def _check_cron(v: str) -> str:
    try:
        parse_cron(v)
    except CronError as e:
        raise ValueError(f"invalid cron expression {v!r}: {e}") from None
    return v


def _check_duration(v: Any) -> timedelta:
    if isinstance(v, timedelta):
        return v
    if not isinstance(v, str | int | float) or isinstance(v, bool):
        raise ValueError("expected a duration such as 90s, 15m, 24h or 7d")
    return parse_duration(v)


def _scheme_checker(kind: str, schemes: tuple[str, ...]) -> Callable[[str], str]:
    def check(v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in schemes:
            known = ", ".join(f"{s}://" for s in schemes)
            got = f"scheme {parts.scheme + '://'!r}" if parts.scheme else "no scheme"
            raise ValueError(f"unsupported {kind} URL {v!r}: {got} (supported: {known})")
        if parts.password or parts.username:
            # Credentials come from the standard chains, never from URLs
            # (URLs end up in logs, snapshots and process listings).
            raise ValueError(f"{kind} URL must not contain credentials")
        if parts.scheme in ("file", "local") and not parts.path.startswith("/"):
            raise ValueError(f"{kind} URL {v!r} needs an absolute path ({parts.scheme}:///abs/path)")
        if parts.scheme in ("s3", "gs") and not parts.netloc:
            raise ValueError(f"{kind} URL {v!r} names no bucket ({parts.scheme}://bucket/prefix)")
        return v

    return check


Cron = Annotated[str, AfterValidator(_check_cron)]
Duration = Annotated[
    timedelta,
    BeforeValidator(_check_duration),
    WithJsonSchema({"type": "string", "examples": ["90s", "15m", "24h", "7d"]}),
]
RepositoryURL = Annotated[str, AfterValidator(_scheme_checker("repository", REPOSITORY_SCHEMES))]
KeyProviderURI = Annotated[str, AfterValidator(_scheme_checker("key provider", KEY_PROVIDER_SCHEMES))]
Name = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=52)]


class Model(BaseModel):
    """Base: camelCase aliases, unknown fields rejected, snake_case also accepted in code."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=False, defer_build=True
    )


# --------------------------------------------------------------------------- repositories


class ObjectLock(Model):
    mode: Literal["GOVERNANCE", "COMPLIANCE"] = "COMPLIANCE"
    days: int = Field(ge=1, le=36500)


class S3Options(Model):
    endpoint: str | None = None
    region: str | None = None
    addressing_style: Literal["auto", "virtual", "path"] = "auto"
    object_lock: ObjectLock | None = None
    # S3 storage class for every object dr writes (e.g. STANDARD_IA); default: the bucket's.
    storage_class: str | None = None
    # Hash every upload into its SigV4 signature over plain HTTP too, for servers
    # that refuse UNSIGNED-PAYLOAD there. Default: a signed CRC32 header only.
    sign_payload: bool = False


class GCSOptions(Model):
    project: str | None = None
    endpoint: str | None = None


class Repository(Model):
    name: Name
    url: RepositoryURL
    s3: S3Options | None = None
    gcs: GCSOptions | None = None
    # Names of key providers whose slots should exist (the first is used to init).
    keys: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _options_match_scheme(self) -> Repository:
        scheme = urlsplit(self.url).scheme
        if self.s3 is not None and scheme != "s3":
            raise ValueError(f"s3 options given for a {scheme}:// repository")
        if self.gcs is not None and scheme != "gs":
            raise ValueError(f"gcs options given for a {scheme}:// repository")
        return self


# --------------------------------------------------------------------------- key providers


class VaultAuth(Model):
    method: Literal["token", "approle", "kubernetes"] = "token"
    # approle: file paths (mounted Secrets), never inline secrets.
    role_id_file: str | None = None
    secret_id_file: str | None = None
    mount: str | None = None
    # kubernetes: Vault role; the pod's service-account token is read from tokenPath.
    # token: when tokenPath is set explicitly, the Vault token is read from it
    # (e.g. a Vault Agent sink); otherwise VAULT_TOKEN, then ~/.vault-token.
    role: str | None = None
    token_path: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"

    @model_validator(mode="after")
    def _complete(self) -> VaultAuth:
        if self.method == "approle" and not (self.role_id_file and self.secret_id_file):
            raise ValueError("approle auth needs roleIdFile and secretIdFile")
        if self.method == "kubernetes" and not self.role:
            raise ValueError("kubernetes auth needs role")
        return self


class VaultOptions(Model):
    address: str | None = None  # default: $VAULT_ADDR
    namespace: str | None = None
    ca_cert: str | None = None
    auth: VaultAuth = Field(default_factory=VaultAuth)


class AWSKMSOptions(Model):
    region: str | None = None
    endpoint: str | None = None


class GCPKMSOptions(Model):
    endpoint: str | None = None


class KeyProvider(Model):
    name: Name
    uri: KeyProviderURI
    vault: VaultOptions | None = None
    awskms: AWSKMSOptions | None = None
    gcpkms: GCPKMSOptions | None = None

    @model_validator(mode="after")
    def _options_match_scheme(self) -> KeyProvider:
        scheme = urlsplit(self.uri).scheme
        for opt in ("vault", "awskms", "gcpkms"):
            if getattr(self, opt) is not None and scheme != opt:
                raise ValueError(f"{opt} options given for a {scheme}:// key provider")
        return self


# --------------------------------------------------------------------------- policies


class Scope(Model):
    namespaces: list[str] = Field(default_factory=list, description="names or globs")
    selector: str | None = None
    include_resources: list[str] = Field(default_factory=list)
    exclude_resources: list[str] = Field(default_factory=list)
    include_cluster_resources: Literal["auto", "true", "false"] = "auto"

    @field_validator("include_cluster_resources", mode="before")
    @classmethod
    def _bool_as_text(cls, v: Any) -> Any:
        return str(v).lower() if isinstance(v, bool) else v


class Retention(Model):
    keep_last: int | None = Field(default=None, ge=0)
    keep_hourly: int | None = Field(default=None, ge=0)
    keep_daily: int | None = Field(default=None, ge=0)
    keep_weekly: int | None = Field(default=None, ge=0)
    keep_monthly: int | None = Field(default=None, ge=0)
    keep_yearly: int | None = Field(default=None, ge=0)


class Hook(Model):
    name: str | None = None
    container: str | None = None
    command: list[str] = Field(min_length=1)
    timeout: Duration = timedelta(seconds=30)
    on_error: Literal["fail", "continue"] = "fail"


class PodHooks(Model):
    """Hooks for the pods that ``selector`` picks in the backed-up namespaces."""

    selector: str | None = None
    pre: list[Hook] = Field(default_factory=list)
    post: list[Hook] = Field(default_factory=list)


class VolumeOptions(Model):
    mode: Literal["auto", "snapshot", "filesystem", "none"] = "auto"
    snapshot_class: str | None = None
    snapshot_timeout: Duration = timedelta(minutes=10)


class BackupPolicy(Model):
    name: Name
    repository: str | None = None
    schedule: Cron
    time_zone: str | None = None
    scope: Scope = Field(default_factory=Scope)
    volumes: VolumeOptions = Field(default_factory=VolumeOptions)
    hooks: list[PodHooks] = Field(default_factory=list)
    retention: Retention = Field(default_factory=Retention)
    rpo: Duration | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class DrillPolicy(Model):
    name: Name
    runbook: str
    schedule: Cron
    time_zone: str | None = None
    repository: str | None = None
    backup_policy: str | None = None


class Resources(Model):
    requests: dict[str, str] = Field(default_factory=lambda: {"cpu": "250m", "memory": "256Mi"})
    limits: dict[str, str] = Field(default_factory=lambda: {"memory": "1Gi"})


class MoverOptions(Model):
    image: str = "ghcr.io/dr-project/dr:latest"
    namespace: str = "dr-system"
    parallelism: int = Field(default=2, ge=1, le=64)
    deadline: Duration = timedelta(hours=6)
    resources: Resources = Field(default_factory=Resources)
    # Secret holding the repository credentials, mounted/env'd into mover pods.
    credentials_secret: str | None = None


class Metrics(Model):
    pushgateway: str | None = None
    textfile: str | None = None


class Config(Model):
    api_version: Literal["dr.dev/v1"] = "dr.dev/v1"
    kind: Literal["Config"] = "Config"
    default_repository: str | None = None
    repositories: list[Repository] = Field(default_factory=list)
    key_providers: list[KeyProvider] = Field(default_factory=list)
    backup_policies: list[BackupPolicy] = Field(default_factory=list)
    drill_policies: list[DrillPolicy] = Field(default_factory=list)
    mover: MoverOptions = Field(default_factory=MoverOptions)
    metrics: Metrics = Field(default_factory=Metrics)
    kube_context: str | None = None

    def reference_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-references pydantic cannot see: (field path, reason) for each problem."""
        problems: list[tuple[tuple[str | int, ...], str]] = []

        def unique(items: list[Any], section: str) -> set[str]:
            names: set[str] = set()
            for i, it in enumerate(items):
                if it.name in names:
                    problems.append(((section, i, "name"), f"duplicate name {it.name!r}"))
                names.add(it.name)
            return names

        repos = unique(self.repositories, "repositories")
        keys = unique(self.key_providers, "keyProviders")
        backups = unique(self.backup_policies, "backupPolicies")
        unique(self.drill_policies, "drillPolicies")
        if self.default_repository and self.default_repository not in repos:
            problems.append((("defaultRepository",), f"{self.default_repository!r} is not a repository name"))
        for i, r in enumerate(self.repositories):
            for j, k in enumerate(r.keys):
                if k not in keys:
                    problems.append((("repositories", i, "keys", j), f"key provider {k!r} is not defined"))
        for i, p in enumerate(self.backup_policies):
            if p.repository and p.repository not in repos:
                problems.append(
                    (("backupPolicies", i, "repository"), f"repository {p.repository!r} is not defined")
                )
        for i, d in enumerate(self.drill_policies):
            if d.repository and d.repository not in repos:
                problems.append(
                    (("drillPolicies", i, "repository"), f"repository {d.repository!r} is not defined")
                )
            if d.backup_policy and d.backup_policy not in backups:
                problems.append(
                    (
                        ("drillPolicies", i, "backupPolicy"),
                        f"backup policy {d.backup_policy!r} is not defined",
                    )
                )
        return problems

    # -- lookups used by the commands

    def repository(self, name: str | None = None) -> Repository | None:
        want = name or self.default_repository
        if want is None:
            return self.repositories[0] if self.repositories else None
        return next((r for r in self.repositories if r.name == want), None)

    def key_provider(self, name: str) -> KeyProvider | None:
        return next((k for k in self.key_providers if k.name == name), None)

    def key_provider_for_uri(self, uri: str) -> KeyProvider:
        return next((k for k in self.key_providers if k.uri == uri), KeyProvider(name="adhoc", uri=uri))


# --------------------------------------------------------------------------- defaults and resolution


def xdg_data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def xdg_config_home() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def default_config() -> Config:
    """Embedded defaults: a file repository and a local key under the XDG directories."""
    repo_dir = xdg_data_home() / "dr" / "repo"
    key_file = xdg_config_home() / "dr" / "repo.key"
    return Config(
        default_repository="default",
        repositories=[Repository(name="default", url=f"file://{repo_dir}", keys=["local"])],
        key_providers=[KeyProvider(name="local", uri=f"local://{key_file}")],
    )


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    source: str  # a path, or "built-in defaults"


def resolve_config_path(explicit: str | None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get("DR_CONFIG")
    if env:
        return Path(env)
    local = Path("dr.yaml")
    return local if local.exists() else None


def load_config(explicit: str | None = None) -> LoadedConfig:
    path = resolve_config_path(explicit)
    if path is None:
        return LoadedConfig(default_config(), "built-in defaults")
    return LoadedConfig(load_model(Config, path), str(path))
