"""``gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K``: wrap the master key with Cloud KMS.

``wrap`` is Encrypt with the CryptoKey's primary version and records the
version name KMS returns (``…/cryptoKeyVersions/N``) as the slot's key version;
``unwrap`` is Decrypt (the ciphertext names its version, so slots wrapped by
older versions keep working while those versions are enabled). Cloud KMS has
no re-encrypt call, so ``rewrap`` is Decrypt then Encrypt with the current
primary version: during a rotation the master key passes through dr's memory
(never to disk or logs).

The key-slot context, encoded by ``context.context_bytes``, is sent as
``additional_authenticated_data``: KMS authenticates it with the ciphertext,
so a slot copied to another repository fails with "cannot decrypt: wrong key
or context". Every request carries CRC32C checksums of what it sends and every
response is checked against them (Google's end-to-end integrity scheme), so
corruption between dr and KMS is detected instead of stored.

Credentials: Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS,
``gcloud auth application-default login``, GKE Workload Identity, metadata
server); dr's identity needs ``roles/cloudkms.cryptoKeyEncrypterDecrypter`` on
the key. ``gcpkms.endpoint`` overrides the API endpoint: ``http://HOST:PORT``
or a loopback ``HOST:PORT`` is spoken to in plaintext gRPC without credentials
(local fakes, tests); any other ``HOST[:PORT]`` (or ``https://…``, e.g. a
regional or Private Service Connect endpoint) uses TLS and ADC.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any
from urllib.parse import urlsplit

import google.auth.exceptions
import google_crc32c
import grpc
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.api_core.client_options import ClientOptions
from google.cloud import kms_v1
from google.cloud.kms_v1.services.key_management_service.transports.grpc import (
    KeyManagementServiceGrpcTransport,
)

from dr.config import GCPKMSOptions
from dr.crypto.providers import payload_logs
from dr.crypto.providers.base import KeyProviderError, KeyProviderMisconfigured, Wrapped
from dr.crypto.providers.context import context_bytes
from dr.errors import InvalidInput

log = logging.getLogger(__name__)

PREFIX = "gcpkms://"
DEFAULT_TIMEOUT = 30.0
# Seconds in which an UNAVAILABLE or DEADLINE_EXCEEDED answer is tried again.
RETRY_WINDOW = 5.0
_KEY_NAME = re.compile(r"^projects/[^/\s]+/locations/[^/\s]+/keyRings/[^/\s]+/cryptoKeys/[^/\s]+$")
_VERSION_NUMBER = re.compile(r"/cryptoKeyVersions/(\d+)")


def parse_uri(uri: str) -> str:
    """``gcpkms://projects/…/cryptoKeys/K`` -> the CryptoKey resource name."""
    name = uri[len(PREFIX) :] if uri.startswith(PREFIX) else ""
    if "/cryptoKeyVersions/" in name:
        raise InvalidInput(
            f"key provider {uri!r}: name the CryptoKey, not a version (Encrypt uses the primary version)"
        )
    if not _KEY_NAME.match(name):
        raise InvalidInput(
            f"key provider {uri!r}: use gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K"
        )
    return name


def plaintext_target(endpoint: str) -> str | None:
    """``HOST:PORT`` to speak plaintext gRPC to, or None when the endpoint needs TLS."""
    if endpoint.startswith("http://"):
        return endpoint[len("http://") :].rstrip("/")
    if endpoint.startswith("https://"):
        return None
    host = endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 or endpoint.startswith("[") else endpoint
    host = host.strip("[]")
    if host == "localhost":
        return endpoint
    try:
        return endpoint if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


def valid_endpoint(endpoint: str) -> bool:
    """``HOST[:PORT]``, ``http://HOST:PORT`` or ``https://HOST[:PORT]`` (a trailing ``/`` allowed)."""
    if any(c.isspace() for c in endpoint):
        return False
    try:
        parts = urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("", "http", "https") and bool(parts.hostname) and parts.path in ("", "/")


def _crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


def describe_error(exc: Exception, action: str, key: str, endpoint: str | None = None) -> str:
    """One safe line for a failed Cloud KMS call (``action`` like ``decrypt``)."""
    where = endpoint or "cloudkms.googleapis.com"
    if isinstance(exc, gexc.RetryError):
        cause = exc.cause
        if isinstance(cause, gexc.DeadlineExceeded):
            return f"Cloud KMS at {where} did not answer in time ({action})"
        return f"cannot reach Cloud KMS at {where} ({action})"
    if isinstance(exc, google.auth.exceptions.DefaultCredentialsError):
        return (
            "no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS, run "
            "`gcloud auth application-default login`, or use Workload Identity"
        )
    if isinstance(exc, google.auth.exceptions.RefreshError):
        return "Google credentials could not be refreshed (expired or revoked?)"
    if not isinstance(exc, gexc.GoogleAPICallError):
        return f"Cloud KMS {action} failed: {type(exc).__name__}"
    message = " ".join(str(exc.message or "").split())[:200]
    low = message.lower()
    if isinstance(exc, gexc.NotFound):
        return f"CryptoKey {key} not found"
    if isinstance(exc, gexc.PermissionDenied):
        return (
            f"permission denied: {action} on {key} (grant roles/cloudkms.cryptoKeyEncrypterDecrypter "
            "to dr's identity; KMS also says this when the key does not exist)"
        )
    if isinstance(exc, gexc.Unauthenticated):
        return "Google credentials were rejected by Cloud KMS (invalid or expired)"
    if isinstance(exc, gexc.FailedPrecondition):
        m = _VERSION_NUMBER.search(message)
        version = f"key version {m.group(1)}" if m else "the key version"
        if "destroy" in low:
            return f"KMS {version} is destroyed or scheduled for destruction"
        if "disabled" in low:
            return f"KMS {version} is disabled; enable it or use another key slot"
        return f"KMS key is not usable for {action}: {message}"
    if (
        isinstance(exc, gexc.InvalidArgument)
        and action == "decrypt"
        and ("decrypt" in low or "ciphertext" in low)
    ):
        return "cannot decrypt: wrong key or context"
    if isinstance(exc, gexc.ServiceUnavailable):
        return f"cannot reach Cloud KMS at {where} ({action})"
    if isinstance(exc, gexc.DeadlineExceeded):
        return f"Cloud KMS at {where} did not answer in time ({action})"
    if isinstance(exc, gexc.ResourceExhausted):
        return f"Cloud KMS quota exhausted ({action}); retry later"
    return f"Cloud KMS refused {action} ({type(exc).__name__}){': ' + message if message else ''}"


class GCPKMSKeyProvider:
    """Wraps with one CryptoKey. The client is made on first use unless one is passed in."""

    def __init__(
        self,
        uri: str,
        *,
        endpoint: str | None = None,
        client: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._uri = uri
        self.key_name = parse_uri(uri)
        self.endpoint = endpoint
        self.timeout = timeout
        self._client_obj: Any = client
        # Retry what is transient for a few seconds; everything else fails at once. Each
        # try may still take ``timeout``: the window bounds only when a new try starts, so
        # a slow KMS is reported after ~``timeout`` and a down one (UNAVAILABLE at once)
        # after ~RETRY_WINDOW, not after retrying for the whole ``timeout``.
        self._retry = gretry.Retry(
            predicate=gretry.if_exception_type(gexc.ServiceUnavailable, gexc.DeadlineExceeded),
            initial=0.25,
            maximum=2.0,
            multiplier=2.0,
            timeout=min(RETRY_WINDOW, timeout),
        )

    @classmethod
    def from_uri(
        cls, uri: str, options: GCPKMSOptions | None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> GCPKMSKeyProvider:
        return cls(uri, endpoint=(options.endpoint if options else None) or None, timeout=timeout)

    @property
    def uri(self) -> str:
        return self._uri

    def _fail(self, reason: str) -> KeyProviderError:
        return KeyProviderError(self._uri, reason)

    def _client(self) -> Any:
        if self._client_obj is not None:
            return self._client_obj
        if self.endpoint and not valid_endpoint(self.endpoint):
            raise KeyProviderMisconfigured(
                self._uri,
                f"Cloud KMS endpoint {self.endpoint!r} (gcpkms.endpoint) is not HOST[:PORT], "
                "http://HOST:PORT or https://HOST[:PORT]",
            )
        payload_logs.install()
        try:
            target = plaintext_target(self.endpoint) if self.endpoint else None
            if target is not None:
                transport = KeyManagementServiceGrpcTransport(channel=grpc.insecure_channel(target))
                self._client_obj = kms_v1.KeyManagementServiceClient(transport=transport)
            elif self.endpoint:
                api_endpoint = self.endpoint.removeprefix("https://").rstrip("/")
                self._client_obj = kms_v1.KeyManagementServiceClient(
                    client_options=ClientOptions(api_endpoint=api_endpoint)
                )
            else:
                self._client_obj = kms_v1.KeyManagementServiceClient()
        except google.auth.exceptions.GoogleAuthError as e:
            raise self._fail(describe_error(e, "client setup", self.key_name)) from None
        return self._client_obj

    def _call(self, action: str, request: Any) -> Any:
        client = self._client()
        try:
            return getattr(client, action)(request=request, retry=self._retry, timeout=self.timeout)
        except (gexc.GoogleAPICallError, gexc.RetryError, google.auth.exceptions.GoogleAuthError) as e:
            log.debug("gcpkms: %s on %s failed: %s", action, self.key_name, type(e).__name__)
            raise self._fail(describe_error(e, action, self.key_name, self.endpoint)) from None

    def _corrupt(self, action: str) -> KeyProviderError:
        return self._fail(f"Cloud KMS {action} response failed its CRC32C integrity check; retry")

    def wrap(self, key: bytes, context: dict[str, str]) -> Wrapped:
        aad = context_bytes(context)
        request = kms_v1.EncryptRequest(
            name=self.key_name,
            plaintext=key,
            additional_authenticated_data=aad,
            plaintext_crc32c=_crc(key),
            additional_authenticated_data_crc32c=_crc(aad),
        )
        resp = self._call("encrypt", request)
        ciphertext = bytes(resp.ciphertext)
        if (
            not resp.verified_plaintext_crc32c
            or not resp.verified_additional_authenticated_data_crc32c
            or resp.ciphertext_crc32c != _crc(ciphertext)
        ):
            raise self._corrupt("encrypt")
        version = str(resp.name)  # the CryptoKeyVersion that encrypted: the primary
        log.debug("gcpkms: wrapped with %s", version)
        return Wrapped(ciphertext, key_version=version)

    def unwrap(self, wrapped: Wrapped, context: dict[str, str]) -> bytes:
        aad = context_bytes(context)
        request = kms_v1.DecryptRequest(
            name=self.key_name,
            ciphertext=wrapped.ciphertext,
            additional_authenticated_data=aad,
            ciphertext_crc32c=_crc(wrapped.ciphertext),
            additional_authenticated_data_crc32c=_crc(aad),
        )
        resp = self._call("decrypt", request)
        plaintext = bytes(resp.plaintext)
        if resp.plaintext_crc32c != _crc(plaintext):
            raise self._corrupt("decrypt")
        log.debug("gcpkms: unwrapped a slot of %s", wrapped.key_version or self.key_name)
        return plaintext

    def rewrap(self, wrapped: Wrapped, context: dict[str, str]) -> Wrapped:
        # No server-side re-encrypt in Cloud KMS: decrypt, then encrypt with the primary version.
        return self.wrap(self.unwrap(wrapped, context), context)
