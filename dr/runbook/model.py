"""Runbook YAML: one application's scope, objectives, drill settings, checks and incident procedure.

Owns the runbook contract (``apiVersion: dr.dev/v1``, ``kind: Runbook``): the
pydantic models, their load-time checks and the JSON Schema exported to
``runbooks/schema.json``. Everything a drill or a person could trip over later
is checked when the file is loaded — regular expressions compile, JSON paths
parse, label selectors parse, step names are unique, steps name namespaces of
the scope — so ``dr runbook validate`` finds it, not the drill at 3 a.m.

Problems come out as ``FILE:LINE:COL: field.path: reason`` through
``dr.yaml_models.load_model``. Verification steps are a union on ``type``; the
union is dispatched by hand (``_dispatch_step``) rather than by pydantic's
tagged union because a tagged union puts the tag into error locations
(``verification[0].http.url``), which would not name a field of the file,
and an unknown ``type`` should be reported at the ``type`` key itself.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from dr.backup.namespace_globs import is_glob, namespace_pattern_problem
from dr.config import (
    NAME_PATTERN,
    QUANTITY,
    Resources,
    Scope,
    check_time_zone,
    is_dns_label,
    is_dns_subdomain,
    load_yaml,
)
from dr.yaml_models import Cron, Duration, Model, Name, load_model, validate_document

API_VERSION = "dr.dev/v1"

# Top-level ``dr`` commands a procedure step may name; a test keeps this in
# step with the CLI (this module sits below the CLI and must not import it).
DR_COMMANDS = (
    "backup",
    "backups",
    "config",
    "deploy",
    "drill",
    "forget",
    "key",
    "mover",
    "prune",
    "repo",
    "report",
    "restore",
    "runbook",
    "status",
    "verify",
)

# --------------------------------------------------------------------------- field checks

_LABEL_KEY = r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_LABEL_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SELECTOR_TERMS = (
    re.compile(rf"^!?\s*{_LABEL_KEY}$"),
    re.compile(rf"^{_LABEL_KEY}\s*(=|==|!=)\s*{_LABEL_VALUE}$"),
    re.compile(rf"^{_LABEL_KEY}\s+(in|notin)\s+\(\s*{_LABEL_VALUE}(\s*,\s*{_LABEL_VALUE})*\s*\)$"),
)
_JSON_PATH_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def check_regex(v: str) -> str:
    try:
        re.compile(v)
    except re.error as e:
        raise ValueError(f"invalid regular expression {v!r}: {e}") from None
    return v


def split_selector_terms(selector: str) -> list[str]:
    """Split a label selector at the commas that are not inside ``in (…)`` lists."""
    terms, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur.strip())
            cur = ""
        else:
            cur += ch
    terms.append(cur.strip())
    return terms


def check_selector(v: str) -> str:
    """A Kubernetes label selector (equality- and set-based), checked before the API server sees it."""
    for term in split_selector_terms(v):
        if not term:
            raise ValueError(f"invalid label selector {v!r}: empty term")
        if not any(p.match(term) for p in _SELECTOR_TERMS):
            raise ValueError(f"invalid label selector {v!r}: cannot parse {term!r}")
    return v


def parse_json_path(path: str) -> list[str | int]:
    """``status.db`` -> ["status", "db"]; ``items[0].name`` -> ["items", 0, "name"] (``$.`` allowed)."""
    text = path[2:] if path.startswith("$.") else path
    if not text:
        raise ValueError(f"invalid JSON path {path!r}: empty")
    out: list[str | int] = []
    for part in text.split("."):
        m = _JSON_PATH_SEGMENT.fullmatch(part)
        if m is None:
            raise ValueError(
                f"invalid JSON path {path!r}: cannot parse {part!r} (use dotted names and [N] indexes)"
            )
        out.append(m.group(1))
        out.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return out


def _check_json_path(v: str) -> str:
    parse_json_path(v)
    return v


def _check_quantity(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise ValueError("expected a quantity such as 2, 500m, 4Gi")
    text = str(v)
    if not QUANTITY.match(text):
        raise ValueError(f"invalid quantity {text!r} (examples: 2, 500m, 4Gi)")
    return text


def _not_bool(what: str) -> Any:
    """A before-check refusing true/false where a number is meant: bool is an int in
    Python, and pydantic takes ``port: true`` for port 1, ``exitCode: false`` for 0
    (dr.yaml's validator refuses them the same way)."""

    def check(v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError(f"expected {what}, not true or false")
        return v

    return BeforeValidator(check)


Int = Annotated[int, _not_bool("an integer")]
# Not ``Int | None``: the bound of the field would then not reach the number's schema.
OptionalInt = Annotated[int | None, _not_bool("an integer")]


# IANA_SVC_NAME, what Kubernetes allows as a port's name (the length and "--" are checked apart).
_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def _check_dns_label(v: str) -> str:
    if not is_dns_label(v):
        raise ValueError(f"{v!r} is not a DNS label (lower-case letters, digits and '-', at most 63)")
    return v


def _check_dns_subdomain(v: str) -> str:
    # What Kubernetes allows as a StorageClass's name: DNS labels joined by ".".
    if not is_dns_subdomain(v):
        raise ValueError(
            f"{v!r} is not a storage class name (lower-case letters, digits, '-' and '.', at most 253)"
        )
    return v


def _check_resource_name(v: str) -> str:
    # A ResourceQuota's spec.hard keys: qualified names (requests.cpu, count/deployments.apps,
    # requests.nvidia.com/gpu). Anything else the API server refuses when the drill makes the quota.
    if not (len(v) <= 253 and re.fullmatch(_LABEL_KEY, v)):
        raise ValueError(f"{v!r} is not a resource name (such as pods, requests.cpu, count/deployments.apps)")
    return v


def _check_positive(v: timedelta) -> timedelta:
    if v <= timedelta(0):
        raise ValueError("must be longer than zero")
    return v


Regex = Annotated[str, AfterValidator(check_regex), WithJsonSchema({"type": "string", "format": "regex"})]
Selector = Annotated[
    str,
    AfterValidator(check_selector),
    WithJsonSchema({"type": "string", "examples": ["app=web", "tier in (db,cache),!canary"]}),
]
JsonPath = Annotated[
    str, AfterValidator(_check_json_path), WithJsonSchema({"type": "string", "examples": ["status.db"]})
]
Quantity = Annotated[
    str,
    BeforeValidator(_check_quantity),
    WithJsonSchema({"type": ["string", "integer", "number"], "examples": ["4", "500m", "8Gi"]}),
]
DnsLabel = Annotated[str, AfterValidator(_check_dns_label)]
StorageClassName = Annotated[str, _not_bool("a storage class name"), AfterValidator(_check_dns_subdomain)]
StepName = Annotated[str, Field(pattern=NAME_PATTERN, max_length=40)]
PositiveDuration = Annotated[Duration, AfterValidator(_check_positive)]
ResourceName = Annotated[str, AfterValidator(_check_resource_name)]


# --------------------------------------------------------------------------- header and people


class Metadata(Model):
    name: Name = Field(description="The application's name; reports and drills are keyed by it.")
    labels: dict[str, str] = Field(default_factory=dict)


class Contact(Model):
    name: str = Field(min_length=1)
    role: str | None = Field(default=None, description="e.g. service owner, on-call, DBA")
    email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    phone: str | None = None
    pager: str | None = Field(default=None, description="pager handle or escalation policy")

    @model_validator(mode="after")
    def _reachable(self) -> Contact:
        if not (self.email or self.phone or self.pager):
            raise ValueError(f"contact {self.name!r} needs at least one of email, phone or pager")
        return self


class Objectives(Model):
    rpo: PositiveDuration = Field(description="Recovery point objective: the most data you may lose.")
    rto: PositiveDuration = Field(description="Recovery time objective: restore + data + ready.")


class DrillSettings(Model):
    schedule: Cron | None = Field(default=None, description="cron, as in a Kubernetes CronJob")
    # As dr.yaml's policies check theirs: the drill CronJob's spec.timeZone.
    time_zone: Annotated[str, AfterValidator(check_time_zone)] | None = None
    namespace_prefix: DnsLabel = Field(default="drill", max_length=20)
    timeout: PositiveDuration = Field(default=timedelta(hours=1), description="whole drill")
    ttl: PositiveDuration = Field(
        default=timedelta(hours=24), description="scratch namespaces older than this are deleted by gc"
    )
    quota: dict[ResourceName, Quantity] = Field(
        default_factory=dict, description="ResourceQuota spec.hard of the scratch namespace"
    )
    # A backup made in another cluster: its claims' classes may not exist here (as `dr restore
    # --storage-class-mapping`; `dr drill run --storage-class-mapping` adds to / overrides it).
    storage_class_mapping: dict[StorageClassName, StorageClassName] = Field(
        default_factory=dict,
        description="storage class OLD of the backup's claims -> class NEW for the drill's restore",
    )

    @model_validator(mode="after")
    def _ttl_outlives_the_drill(self) -> DrillSettings:
        # `dr drill gc` deletes scratch namespaces older than the ttl: one no longer than
        # the drill's timeout could delete the namespace of a drill still running.
        if self.ttl <= self.timeout:
            raise ValueError(
                f"ttl ({self.ttl}) must be longer than the drill's timeout ({self.timeout}): "
                "gc would delete a running drill's scratch namespace"
            )
        return self


# --------------------------------------------------------------------------- verification steps


class _StepBase(Model):
    name: StepName
    description: str | None = Field(default=None, description="human wording for the checklist")
    namespace: str | None = Field(
        default=None, description="source namespace (of the scope) to check; default: the first"
    )


class ResourceExpectation(Model):
    kind: str = Field(
        min_length=1, description="Kind (Deployment), plural (deployments) or plural.group (deployments.apps)"
    )
    min_count: Int = Field(default=1, ge=0)
    selector: Selector | None = None
    names: list[str] = Field(default_factory=list, description="objects that must exist by name")


class ResourcesStep(_StepBase):
    type: Literal["resources"]
    timeout: PositiveDuration = timedelta(seconds=30)
    expect: list[ResourceExpectation] = Field(min_length=1)


WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet", "Job"]
WORKLOAD_KINDS: tuple[WorkloadKind, ...] = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def _all_workload_kinds() -> list[WorkloadKind]:
    return list(WORKLOAD_KINDS)


class ReadyStep(_StepBase):
    type: Literal["ready"]
    timeout: PositiveDuration = timedelta(minutes=10)
    kinds: list[WorkloadKind] = Field(default_factory=_all_workload_kinds)
    names: list[str] = Field(default_factory=list, description="only these workloads (default: all)")
    selector: Selector | None = None


class JsonCheck(Model):
    path: JsonPath
    equals: Any = Field(description="expected JSON value at path")


class HttpExpect(Model):
    status: Int = Field(default=200, ge=100, le=599)
    body_regex: Regex | None = None
    json_: list[JsonCheck] = Field(default_factory=list, alias="json")


# RFC 9110: a header's name is a token; its value may not hold control characters but a tab.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE_BAD = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


class HttpStep(_StepBase):
    type: Literal["http"]
    timeout: PositiveDuration = timedelta(minutes=2)
    service: DnsLabel
    port: Annotated[int | str, _not_bool("a port number or name")] = Field(
        description="service port number or name"
    )
    scheme: Literal["http", "https"] = "http"
    path: str = Field(default="/", pattern=r"^/")
    method: Literal["GET", "HEAD", "POST", "PUT"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    expect: HttpExpect = Field(default_factory=HttpExpect)

    def content_type(self) -> str:
        given = next((v for k, v in self.headers.items() if k.lower() == "content-type"), None)
        return given or "application/json"

    @model_validator(mode="after")
    def _json_body(self) -> HttpStep:
        # The client sends bodies of JSON content types re-encoded from the
        # parsed value, so they must parse; other types are sent as written.
        if self.body is not None and "json" in self.content_type().lower():
            try:
                json.loads(self.body)
            except ValueError as e:
                raise ValueError(
                    f"body is not valid JSON ({e}); set a Content-Type header for other bodies"
                ) from None
        return self

    @field_validator("headers")
    @classmethod
    def _sendable_headers(cls, v: dict[str, str]) -> dict[str, str]:
        # What the HTTP client refuses to send, found here rather than as the step's "internal
        # error" at the drill, which quoted the value (an API key) into the report. The value is
        # never quoted here either.
        problems = []
        for name, value in v.items():
            if not _HEADER_NAME.fullmatch(name):
                problems.append(f"{name!r} is not a header name (letters, digits and !#$%&'*+-.^_`|~)")
            elif _HEADER_VALUE_BAD.search(value):
                problems.append(
                    f"{name}: its value holds a line break or another control character "
                    "(a YAML '|' block keeps its last line break: write the value on one line)"
                )
            elif not value.isascii() and not _latin1(value):
                # The client sends a value as Latin-1 (http.client): anything else fails the step
                # at every drill, quoting a character of the value.
                problems.append(
                    f"{name}: its value holds a character outside Latin-1, which an HTTP header "
                    "cannot carry (percent-encode it, as the app expects)"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @field_validator("port")
    @classmethod
    def _port(cls, v: int | str) -> int | str:
        if isinstance(v, str) and v.isascii() and v.isdigit():
            v = int(v)  # `port: "80"`: the service proxy takes it as the number, so check it as one
        if isinstance(v, int) and not 1 <= v <= 65535:
            raise ValueError(f"port {v} out of range 1-65535")
        if isinstance(v, str) and not (_PORT_NAME.match(v) and "--" not in v and len(v) <= 15):
            # A Service's port names are IANA service names; anything else never matches one.
            raise ValueError(
                f"{v!r} is not a port name (at most 15 lower-case letters, digits and '-', "
                "at least one letter, no '--', not starting or ending with '-')"
            )
        return v


class ExecExpect(Model):
    exit_code: Int = Field(default=0, ge=0, le=255)
    stdout_regex: Regex | None = None


class ExecStep(_StepBase):
    type: Literal["exec"]
    timeout: PositiveDuration = timedelta(minutes=1)
    workload: str | None = Field(
        default=None, description="Kind/name (statefulset/postgres) or a name searched among workloads"
    )
    selector: Selector | None = Field(default=None, description="pick a running pod by label")
    container: str | None = None
    command: list[str] = Field(min_length=1)
    stdin: str | None = None
    expect: ExecExpect = Field(default_factory=ExecExpect)

    @model_validator(mode="after")
    def _one_target(self) -> ExecStep:
        if (self.workload is None) == (self.selector is None):
            raise ValueError("give exactly one of workload or selector")
        if self.workload is not None:
            kind, _, name = self.workload.rpartition("/")
            if kind and kind.lower() not in _WORKLOAD_KIND_NAMES:
                raise ValueError(
                    f"workload kind {kind!r} is not one of deployment, statefulset, daemonset, job"
                )
            _check_dns_label(name)
        return self


_WORKLOAD_KIND_NAMES = {
    "deployment": "Deployment",
    "deployments": "Deployment",
    "deploy": "Deployment",
    "statefulset": "StatefulSet",
    "statefulsets": "StatefulSet",
    "sts": "StatefulSet",
    "daemonset": "DaemonSet",
    "daemonsets": "DaemonSet",
    "ds": "DaemonSet",
    "job": "Job",
    "jobs": "Job",
}


def workload_ref(ref: str) -> tuple[str | None, str]:
    """``statefulset/postgres`` -> ("StatefulSet", "postgres"); ``postgres`` -> (None, "postgres")."""
    kind, _, name = ref.rpartition("/")
    return (_WORKLOAD_KIND_NAMES[kind.lower()] if kind else None), name


class DataCheck(Model):
    path: str = Field(min_length=1, description="relative to the volume's root")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    count: OptionalInt = Field(default=None, ge=0, description="exact number of files under path")
    min_count: OptionalInt = Field(default=None, ge=0, description="at least this many files under path")

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        parts = [p for p in v.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"path {v!r} must stay inside the volume (no '..')")
        return "/".join(parts) or "."

    @model_validator(mode="after")
    def _one_expectation(self) -> DataCheck:
        given = [n for n in ("sha256", "count", "min_count") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of sha256, count or minCount")
        return self


class DataStep(_StepBase):
    type: Literal["data"]
    timeout: PositiveDuration = timedelta(minutes=10)
    pvc: DnsLabel
    checks: list[DataCheck] = Field(min_length=1)


class SecretKeyRef(Model):
    name: DnsLabel
    key: str = Field(min_length=1)


class EnvVar(Model):
    name: str = Field(pattern=_ENV_NAME.pattern)
    value: str | None = None
    secret_key_ref: SecretKeyRef | None = Field(
        default=None, description="read from a Secret restored into the scratch namespace"
    )

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        if (self.value is None) == (self.secret_key_ref is None):
            raise ValueError(f"env {self.name}: give exactly one of value or secretKeyRef")
        return self


class JobStep(_StepBase):
    type: Literal["job"]
    timeout: PositiveDuration = timedelta(minutes=10)
    image: str = Field(min_length=1)
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    env: list[EnvVar] = Field(default_factory=list)
    backoff_limit: Int = Field(default=0, ge=0, le=10)
    service_account_name: str | None = None
    resources: Resources = Field(default_factory=Resources)


VerificationStep = ResourcesStep | ReadyStep | HttpStep | ExecStep | DataStep | JobStep
STEP_TYPES: dict[str, type[VerificationStep]] = {
    "resources": ResourcesStep,
    "ready": ReadyStep,
    "http": HttpStep,
    "exec": ExecStep,
    "data": DataStep,
    "job": JobStep,
}


def _step_error(kind: str, message: str, value: Any) -> ValidationError:
    return ValidationError.from_exception_data(
        "VerificationStep",
        [InitErrorDetails(type=PydanticCustomError(kind, message), loc=("type",), input=value)],
    )


def _dispatch_step(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    if isinstance(value, tuple(STEP_TYPES.values())):
        return value
    if not isinstance(value, Mapping):
        raise ValueError("a verification step is a mapping with a type")
    known = ", ".join(STEP_TYPES)
    if "type" not in value:
        raise _step_error("missing_step_type", f"required field is missing (one of: {known})", value)
    kind = value["type"]
    cls = STEP_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise _step_error("unknown_step_type", f"unknown step type {kind!r} (known: {known})", value)
    # Errors of the chosen model keep their own locations, prefixed by pydantic
    # with this item's position: ``spec.verification[2].expect.bodyRegex``.
    return cls.model_validate(value)


Step = Annotated[VerificationStep, Field(discriminator="type"), WrapValidator(_dispatch_step)]


# --------------------------------------------------------------------------- procedure


def _dr_argv(v: Any) -> list[str] | None:
    """A ``dr`` command as a list of arguments after ``dr`` (a string is split like a shell does)."""
    if v is None:
        return None
    if isinstance(v, str):
        try:
            argv = shlex.split(v)
        except ValueError as e:
            raise ValueError(f"cannot split command {v!r}: {e}") from None
    elif isinstance(v, list) and all(isinstance(a, str | int | float) for a in v):
        argv = [str(a) for a in v]
    else:
        raise ValueError("expected a command line or a list of arguments")
    if argv and argv[0] == "dr":
        argv = argv[1:]
    # Skip global options to find the command (``dr --repo URL restore …``).
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        takes_value = argv[i] in ("--config", "--repo", "--kubeconfig", "--context")
        i += 2 if takes_value else 1
    if i >= len(argv):
        raise ValueError("the dr command is empty")
    if argv[i] not in DR_COMMANDS:
        raise ValueError(f"{argv[i]!r} is not a dr command (known: {', '.join(DR_COMMANDS)})")
    return argv


DrCommand = Annotated[
    list[str] | None,
    BeforeValidator(_dr_argv),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}],
            "examples": ["dr backups list --namespace shop"],
        }
    ),
]


class ProcedureStep(Model):
    title: str = Field(min_length=1)
    text: str = Field(min_length=1)
    dr: DrCommand = Field(default=None, description="a dr command line, or its arguments as a list")
    expect: str | None = Field(default=None, description="what you should see when the step worked")

    def command_line(self) -> str | None:
        return shlex.join(["dr", *self.dr]) if self.dr else None


# --------------------------------------------------------------------------- the runbook


class RunbookSpec(Model):
    description: str = Field(min_length=1)
    contacts: list[Contact] = Field(min_length=1)
    scope: Scope
    backup_policy: Name | None = Field(default=None, description="name of the backup policy in dr.yaml")
    objectives: Objectives
    drill: DrillSettings = Field(default_factory=DrillSettings)
    verification: list[Step] = Field(min_length=1)
    procedure: list[ProcedureStep] = Field(min_length=1)


# A drill's run id, ``YYYYMMDD-HHMMSS-xxxx`` (time of the run and random hex, ``dr.drill.run.run_id``):
# the part of a scratch namespace's name that makes it this run's.
RUN_ID_LENGTH = len("20261129-154139-a1b2")


class Runbook(Model):
    api_version: Literal["dr.dev/v1"]
    kind: Literal["Runbook"]
    metadata: Metadata
    spec: RunbookSpec

    @property
    def name(self) -> str:
        return self.metadata.name

    def concrete_namespaces(self) -> list[str]:
        """The scope's namespaces that are names, not globs."""
        return [n for n in self.spec.scope.namespaces if not is_glob(n)]

    def step_namespace(self, step: VerificationStep) -> str | None:
        """The source namespace a step checks (the step's own, else the scope's first name)."""
        if step.namespace:
            return step.namespace
        names = self.concrete_namespaces()
        return names[0] if names else None

    def scratch_namespaces(self, run_id: str) -> dict[str, str]:
        """Source namespace -> scratch namespace for a drill run (``drill-shop-x1y2z3``).

        One namespace keeps the app's name for readability; several get the
        source namespace's name (cut to fit the 63-character limit).
        """
        prefix = self.spec.drill.namespace_prefix
        sources = self.concrete_namespaces()
        # The run id is never cut: it is what makes the name this run's (a cut one made every
        # drill of an app with a long name use the same namespace).
        if len(sources) == 1:
            return {sources[0]: _fit(f"{prefix}-", self.name, f"-{run_id}")}
        out: dict[str, str] = {}
        for i, src in enumerate(sources):
            name = _fit(f"{prefix}-{run_id}-", src)
            if name in out.values():
                name = _fit(f"{prefix}-{run_id}-{i}-", src)
            out[src] = name
        return out

    def reference_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Checks across fields: (field path, reason) for each problem."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        scope = self.spec.scope
        if not scope.namespaces:
            problems.append((("spec", "scope", "namespaces"), "a runbook needs at least one namespace"))
        elif not self.concrete_namespaces():
            problems.append(
                (
                    ("spec", "scope", "namespaces"),
                    "at least one namespace must be a name, not a glob (drills restore named namespaces)",
                )
            )
        for i, ns in enumerate(scope.namespaces):
            # Names and globs as dr config validate checks a policy's (a name matched whole,
            # at most 63 characters).
            if why := namespace_pattern_problem(ns):
                problems.append((("spec", "scope", "namespaces", i), why))
        if scope.selector:
            try:
                check_selector(scope.selector)
            except ValueError as e:
                problems.append((("spec", "scope", "selector"), str(e)))
        # <prefix>-<app>-<run id>: the name a drill of one namespace uses.
        longest = len(self.spec.drill.namespace_prefix) + len(self.name) + 2 + RUN_ID_LENGTH
        if longest > 63:
            problems.append(
                (
                    ("spec", "drill", "namespacePrefix"),
                    f"prefix and app name make scratch namespace names of {longest} characters (limit 63)",
                )
            )
        seen: dict[str, int] = {}
        concrete = set(self.concrete_namespaces())
        for i, step in enumerate(self.spec.verification):
            if step.name in seen:
                problems.append(
                    (
                        ("spec", "verification", i, "name"),
                        f"duplicate step name {step.name!r} (also step {seen[step.name] + 1})",
                    )
                )
            seen.setdefault(step.name, i)
            if step.namespace is not None and step.namespace not in concrete:
                problems.append(
                    (
                        ("spec", "verification", i, "namespace"),
                        f"namespace {step.namespace!r} is not a named namespace of spec.scope",
                    )
                )
        return problems


def _fit(head: str, cut: str, tail: str = "") -> str:
    """``head + cut + tail`` within 63 characters: only ``cut`` is shortened."""
    room = max(0, 63 - len(head) - len(tail))
    middle = cut[:room].strip("-")
    if not middle:
        return head.rstrip("-") + tail
    return head + middle + tail


def runbook_candidates(path: str | Path, config_dir: Path | None) -> list[Path]:
    """Where a drill policy's runbook ``path`` is looked for, in order: relative to the
    config's directory ``config_dir`` first, then to the current one."""
    path = Path(path)
    return [path] if path.is_absolute() or config_dir is None else [config_dir / path, path]


def find_runbook(path: str | Path, config_dir: Path | None) -> Path | None:
    """The file of a drill policy's runbook ``path`` (``runbook_candidates``); None when none is a file."""
    return next((p for p in runbook_candidates(path, config_dir) if p.is_file()), None)


def load_runbook(path: Path) -> Runbook:
    """Read and validate a runbook; problems raise ``InvalidInput`` with one line each."""
    return load_model(Runbook, path)


def parse_runbook(text: str, filename: str) -> Runbook:
    """Validate a runbook already read as ``text`` (problems name ``filename``)."""
    return validate_document(Runbook, *load_yaml(text, filename))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of runbooks, as committed in ``runbooks/schema.json``."""
    schema = Runbook.model_json_schema(by_alias=True)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://dr.dev/schemas/runbook-v1.json",
        "title": "dr Runbook (dr.dev/v1)",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m dr.runbook.model > runbooks/schema.json
    print(json_schema_text(), end="")
