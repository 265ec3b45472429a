"""pydantic models read from YAML files (runbooks): base class, field types, line-accurate errors.

The runbook is validated by pydantic (its JSON schema is published for editors);
``dr.yaml`` is not (``dr.config`` says why). Both report problems the same way,
``FILE:LINE:COL: field.path: reason``, from the same YAML loader.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)

from dr.config import (
    NAME_MAX,
    NAME_PATTERN,
    LineMap,
    Problem,
    camel,
    check_cron,
    check_duration,
    checked_references,
    problems_error,
    read_yaml_file,
)

Cron = Annotated[str, AfterValidator(check_cron)]
Duration = Annotated[
    timedelta,
    BeforeValidator(check_duration),
    WithJsonSchema({"type": "string", "examples": ["90s", "15m", "24h", "7d"]}),
]
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=NAME_MAX)]


class Model(BaseModel):
    """Base: camelCase aliases, unknown fields rejected, snake_case also accepted in code."""

    model_config = ConfigDict(
        alias_generator=camel, populate_by_name=True, extra="forbid", frozen=False, defer_build=True
    )


M = TypeVar("M", bound=BaseModel)


def _message(err: Any) -> str:
    msg = str(err["msg"])
    # Unknown fields of models, and of the dr.yaml dataclasses they embed (scope).
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
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
    try:
        obj = model.model_validate(data)
    except ValidationError as e:
        located: list[Problem] = []
        seen: set[tuple[Any, ...]] = set()
        for err in e.errors():
            # Unions report once per member: keep the first error for a location. A mapping's
            # bad key is named by the key itself (pydantic appends "[key]").
            loc = tuple(
                p
                for p in err["loc"]
                if not (isinstance(p, str) and (p.startswith("function-") or p == "[key]"))
            )
            if loc not in seen:
                seen.add(loc)
                located.append((loc, _message(err)))
        raise problems_error(lm, located) from None
    return checked_references(obj, lm)


def load_model(model: type[M], path: Path) -> M:
    """Read, parse and validate a YAML file into ``model`` (errors name file:line:col)."""
    data, lm = read_yaml_file(path)
    return validate_document(model, data, lm)
