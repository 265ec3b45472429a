"""Keep KMS request and response bodies out of client libraries' DEBUG logs.

At DEBUG (``dr -vvv`` turns client libraries up to DEBUG) botocore logs every
request body ("Making request for … with params") and response body
("Response body: …"), and google-cloud-kms's gRPC transport logs request and
response payloads in its records' ``request`` / ``response`` extras. For KMS
those bodies are the plaintext master key. dr's log handler redacts what looks
like a secret, but that is a last line of defence and does not cover records
that other handlers (pytest's, a user's) see first.

So the cloud providers call ``install()`` before using their client: it adds,
once per process, a filter to exactly those library loggers that withholds
the payloads and keeps the records (the call trace stays useful). Logger
filters are process-wide by nature; the filter is idempotent and only ever
removes payloads of KMS calls.
"""

from __future__ import annotations

import logging
from typing import Any

WITHHELD = "<withheld by dr: KMS payload>"

# botocore module loggers that carry request / response bodies.
BOTOCORE_ENDPOINT = "botocore.endpoint"
BOTOCORE_PARSERS = "botocore.parsers"
# google-cloud-kms gRPC transport and client loggers (payloads in record extras).
GOOGLE_KMS_LOGGERS = (
    "google.cloud.kms_v1.services.key_management_service.transports.grpc",
    "google.cloud.kms_v1.services.key_management_service.transports.rest",
    "google.cloud.kms_v1.services.key_management_service.client",
)

# JSON field names of AWS KMS bodies that hold key material.
_AWS_SECRET_FIELDS = (b'"Plaintext"',)


def _is_kms_operation(model: Any) -> bool:
    service = getattr(getattr(model, "service_model", None), "service_name", None)
    return service == "kms"


class _BotocoreRequestFilter(logging.Filter):
    """'Making request for %s with params: %s': drop the body of KMS requests."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            args = record.args
            if isinstance(args, tuple) and len(args) == 2 and _is_kms_operation(args[0]):
                params = args[1]
                if isinstance(params, dict) and "body" in params:
                    record.args = (args[0], {**params, "body": WITHHELD})
        except Exception:  # a logging filter must never break the call it logs
            record.msg, record.args = "(botocore request log withheld by dr)", None
        return True


class _BotocoreResponseFilter(logging.Filter):
    """'Response body: %r' carries no operation name: withhold bodies with key fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            args = record.args
            if isinstance(args, tuple) and args:
                body = args[0]
                if isinstance(body, bytes | bytearray) and any(f in body for f in _AWS_SECRET_FIELDS):
                    record.args = (WITHHELD,)
        except Exception:
            record.msg, record.args = "(botocore response log withheld by dr)", None
        return True


class _GoogleKMSPayloadFilter(logging.Filter):
    """Replace the payload in the ``request`` / ``response`` extras of KMS call records."""

    def filter(self, record: logging.LogRecord) -> bool:
        for attr in ("request", "response", "httpRequest", "httpResponse"):
            value = record.__dict__.get(attr)
            if isinstance(value, dict) and "payload" in value:
                record.__dict__[attr] = {**value, "payload": WITHHELD}
            elif value is not None and not isinstance(value, dict):
                record.__dict__[attr] = WITHHELD
        return True


def _add_once(logger_name: str, flt: logging.Filter) -> None:
    logger = logging.getLogger(logger_name)
    if not any(type(f) is type(flt) for f in logger.filters):
        logger.addFilter(flt)


def install() -> None:
    """Add the payload filters to the library loggers (idempotent)."""
    _add_once(BOTOCORE_ENDPOINT, _BotocoreRequestFilter())
    _add_once(BOTOCORE_PARSERS, _BotocoreResponseFilter())
    for name in GOOGLE_KMS_LOGGERS:
        _add_once(name, _GoogleKMSPayloadFilter())
