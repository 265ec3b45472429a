"""``vault://<mount>/keys/<name>``: wrap the master key with a Vault (or OpenBao) transit key.

The transit key never leaves Vault: ``wrap`` is transit encrypt, ``unwrap`` is
decrypt and ``rewrap`` is transit rewrap, which re-encrypts under the newest
key version inside Vault, so the master key does not pass through dr when
keys are rotated. The slot keeps Vault's ciphertext (``vault:vN:…``) and
records ``vN`` as its key version.

Binding to the repository — derived keys, not associated data. The key-slot
context (``{"dr-repository": …}``, encoded by ``context.context_bytes``) is
sent as transit's ``context``, so the transit key must be created with
``derived=true``: Vault then encrypts every slot under a key derived
(HKDF) from the transit key and that context, and a slot copied to another
repository fails to decrypt ("cannot decrypt: wrong key or context").
Transit's ``associated_data`` (AAD, aes256-gcm96) would bind the same way on
encrypt and decrypt, but transit *rewrap* takes no associated data (checked on
OpenBao 2.7: rewrapping an AAD-bound ciphertext fails authentication), so AAD
would force rotation to decrypt into dr and encrypt again. With derived keys,
rewrap takes the context and the key stays inside Vault.
Because transit silently ignores ``context`` on a key that is *not* derived
(which would leave slots unbound), ``wrap`` proves the key is derived: an
encrypt without context must be refused with Vault's "missing 'context' for
key derivation". That probe needs only the encrypt permission dr has anyway.
If the key does not exist and the token may create it, the first encrypt
(with context) creates it — derived, because a context was given.

Authentication (``vault.auth.method`` in dr.yaml):
  token       ``vault.auth.tokenPath`` if set explicitly (e.g. a Vault Agent
              sink file), else ``$VAULT_TOKEN``, else ``~/.vault-token``.
  approle     role_id and secret_id read from the files named by
              ``roleIdFile`` / ``secretIdFile`` (mounted Secrets), login at
              ``auth/<mount>`` (default ``approle``).
  kubernetes  the pod's service-account JWT read from ``tokenPath``, login
              as ``role`` at ``auth/<mount>`` (default ``kubernetes``).
The token of an AppRole or Kubernetes login is revoked (``revoke-self``) as
soon as the operation it was for is over; a token the user supplied is not.
Address: ``vault.address`` or ``$VAULT_ADDR``, the server's (an address whose path
is the API's ``/v1`` is refused, naming the fix); namespace: ``vault.namespace``
or ``$VAULT_NAMESPACE``; TLS CA bundle: ``vault.caCert`` or ``$VAULT_CACERT``.

A request refused with 429 (a rate-limit quota: a backup's movers all open the
repository at once) is tried again, a bounded number of times with backoff;
nothing else is retried.

Errors become ``KeyProviderError`` with one line naming what to fix (sealed,
permission denied on a path, key not found, cannot reach, wrong key or
context, version below ``min_decryption_version``); they never carry the
token, the AppRole secret_id, the JWT or key material.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import hvac
import hvac.exceptions
import requests

from dr.config import DEFAULT_TOKEN_PATH, VaultAuth, VaultOptions
from dr.crypto.providers.base import KeyProviderError, KeyProviderMisconfigured, Wrapped
from dr.crypto.providers.context import context_bytes
from dr.errors import InvalidInput
from dr.urls import is_http_url, redact_url

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
# A request Vault refuses with 429 (a rate-limit quota) is tried this many times in
# all, waiting RATE_LIMIT_FIRST_WAIT seconds, then twice as long each time (with
# jitter): 7.5 s at most, past Vault's usual one-second quota interval.
RATE_LIMIT_ATTEMPTS = 5
RATE_LIMIT_FIRST_WAIT = 0.5
_VERSION = re.compile(r"^vault:v(\d+):")
# Plaintext of the derived-key probe: any fixed, non-secret bytes.
_PROBE = base64.b64encode(b"dr: is this transit key derived?").decode()


def parse_uri(uri: str) -> tuple[str, str]:
    """``vault://<mount>/keys/<name>`` -> (mount, name); the mount may contain slashes."""
    prefix = "vault://"
    rest = uri[len(prefix) :] if uri.startswith(prefix) else ""
    mount, sep, name = rest.rpartition("/keys/")
    mount = mount.strip("/")
    if not sep or not mount or not name or "/" in name or any(c.isspace() for c in rest):
        raise InvalidInput(f"key provider {uri!r}: use vault://<transit mount>/keys/<key name>")
    return mount, name


def _vault_text(exc: Exception) -> str:
    """Vault's error text on one line, without hvac's ', on post URL' suffix."""
    errors = getattr(exc, "errors", None)
    parts = [str(p) for p in errors] if isinstance(errors, list) and errors else [str(exc).split(", on ")[0]]
    text = " ".join(" ".join(p.split()) for p in parts)
    text = re.sub(r"^\d+ errors? occurred:\s*\*\s*", "", text)
    return text[:200] or type(exc).__name__


def _api_path_suffix(address: str) -> str | None:
    """``address`` without its path when that is the API's ``/v1`` (which hvac adds to every
    request: ``http://HOST:8200/v1`` sent them to /v1/v1/…), or None when it is not. Only the
    bare ``/v1``: under a gateway Vault may be served at any path, ``/vault/v1`` too, and the
    vault CLI and hvac join the address's path and ``/v1/…``, so such an address works."""
    parts = urlsplit(address)
    if parts.path.rstrip("/") != "/v1":
        return None
    return urlunsplit(parts._replace(path=""))


class VaultKeyProvider:
    """Wraps with one transit key. Logs in lazily, on the first operation, and revokes
    the token of an AppRole or Kubernetes login when the operation is over."""

    def __init__(
        self,
        uri: str,
        *,
        address: str | None,
        auth: VaultAuth | None = None,
        namespace: str | None = None,
        ca_cert: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        client: Any = None,
        address_source: str = "vault.address",
    ) -> None:
        self._uri = uri
        self.mount, self.key = parse_uri(uri)
        self.address = address
        # Where the address came from, for the error that says it is not a URL.
        self.address_source = address_source
        self.auth = auth or VaultAuth()
        self.namespace = namespace
        self.ca_cert = ca_cert
        self.timeout = timeout
        # An hvac.Client that is already authenticated, if the caller has one.
        self._client_obj: Any = client
        # The token came from an AppRole or Kubernetes login of ours: revoked when done.
        self._logged_in = False
        # A request of this operation could not reach Vault: revoking would only wait for the timeout again.
        self._unreachable = False
        self._derived_checked = False

    @classmethod
    def from_uri(
        cls, uri: str, options: VaultOptions | None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> VaultKeyProvider:
        opts = options or VaultOptions()
        return cls(
            uri,
            address=opts.address or os.environ.get("VAULT_ADDR") or None,
            address_source="vault.address" if opts.address else "VAULT_ADDR",
            auth=opts.auth,
            namespace=opts.namespace or os.environ.get("VAULT_NAMESPACE") or None,
            ca_cert=opts.ca_cert or os.environ.get("VAULT_CACERT") or None,
            timeout=timeout,
        )

    @property
    def uri(self) -> str:
        return self._uri

    # ------------------------------------------------------------------ client and login

    def _fail(self, reason: str) -> KeyProviderError:
        return KeyProviderError(self._uri, reason)

    def _misconfigured(self, reason: str) -> KeyProviderError:
        return KeyProviderMisconfigured(self._uri, reason)

    def _client(self) -> Any:
        if self._client_obj is not None:
            return self._client_obj
        if not self.address:
            raise self._misconfigured(
                "no Vault address: set vault.address in the key provider's config or VAULT_ADDR"
            )
        if not is_http_url(self.address):
            # requests would call it "InvalidSchema" and it would read as Vault failing.
            raise self._misconfigured(
                f"Vault address {redact_url(self.address)!r} (from {self.address_source}) is not a URL: "
                "use https://HOST:PORT"
            )
        api_path = _api_path_suffix(self.address)
        if api_path:
            # Refused, not stripped: the same VAULT_ADDR feeds the vault CLI and other hvac tools,
            # which do not strip it either; fixed once, it is right for all of them.
            raise self._misconfigured(
                f"Vault address {redact_url(self.address)!r} (from {self.address_source}) ends in /v1, "
                f"the API's path, which dr adds itself: use {redact_url(api_path)}"
            )
        verify: bool | str = True
        if self.ca_cert:
            if not Path(self.ca_cert).is_file():
                raise self._misconfigured(f"Vault CA certificate file {self.ca_cert} does not exist")
            verify = self.ca_cert
        # token="" (not None): hvac would otherwise pick up $VAULT_TOKEN and send it with AppRole
        # and Kubernetes logins too; _login sets the token the configured method yields.
        client = hvac.Client(
            url=self.address, token="", verify=verify, timeout=self.timeout, namespace=self.namespace
        )
        self._login(client)
        self._client_obj = client
        self._logged_in = self.auth.method != "token"
        return client

    def _done(self) -> None:
        """Revoke the token of our own login once an operation is over.

        Every dr run logs in anew (a CronJob's pod, a restore), and a token left
        to expire lives for the role's TTL — 32 days by default — with its lease:
        hourly backups would keep hundreds of live tokens in Vault per cluster,
        each able to decrypt with the transit key until it expires. A token the
        user supplied (VAULT_TOKEN, a token file, a client passed in) is theirs
        and is never revoked. Failing to revoke (a policy without the default
        policy's ``auth/token/revoke-self``) does not fail the operation."""
        client, logged_in, unreachable = self._client_obj, self._logged_in, self._unreachable
        # Reset for the next operation, which may reach Vault again.
        self._unreachable = False
        if client is None or not logged_in:
            return
        self._client_obj, self._logged_in = None, False
        if unreachable:
            return
        try:
            client.auth.token.revoke_self()
            log.debug("vault: revoked the token of the %s login", self.auth.method)
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as e:
            log.debug(
                "vault: revoking the token of the %s login failed: %s", self.auth.method, type(e).__name__
            )

    def _login(self, client: Any) -> None:
        method = self.auth.method
        if method == "token":
            client.token = self._token()
        elif method == "approle":
            if not (self.auth.role_id_file and self.auth.secret_id_file):
                raise self._misconfigured("approle auth needs roleIdFile and secretIdFile")
            role_id = self._read(self.auth.role_id_file, "AppRole role_id")
            secret_id = self._read(self.auth.secret_id_file, "AppRole secret_id")
            mount = self.auth.mount or "approle"
            self._vault_call(
                f"AppRole login at auth/{mount}",
                lambda: client.auth.approle.login(role_id, secret_id, mount_point=mount),
                login=True,
            )
        else:
            if not self.auth.role:
                raise self._misconfigured("kubernetes auth needs role")
            role = self.auth.role
            jwt = self._read(self.auth.token_path or DEFAULT_TOKEN_PATH, "Kubernetes service-account token")
            mount = self.auth.mount or "kubernetes"
            self._vault_call(
                f"Kubernetes login at auth/{mount} as role {role!r}",
                lambda: client.auth.kubernetes.login(role, jwt, mount_point=mount),
                login=True,
            )
        log.debug("vault: authenticated to %s with %s auth", self.address, method)

    def _read(self, path: str, what: str) -> str:
        """The stripped content of a credential file; errors name the file, never the content."""
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise self._fail(f"{what} file {path} does not exist") from None
        except PermissionError:
            raise self._fail(f"permission denied reading the {what} file {path}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise self._fail(f"cannot read the {what} file {path}: {type(e).__name__}") from None
        if not text:
            raise self._fail(f"{what} file {path} is empty")
        return text

    def _token(self) -> str:
        # An explicitly configured tokenPath (e.g. a Vault Agent sink) wins over the environment.
        if self.auth.token_path is not None:
            return self._read(self.auth.token_path, "Vault token")
        token = os.environ.get("VAULT_TOKEN", "").strip()
        if token:
            return token
        helper = Path.home() / ".vault-token"
        if helper.is_file():
            return self._read(str(helper), "Vault token")
        # Not "token: set …": dr.redact masks what follows "token:" in every error line.
        raise self._fail(
            "no Vault token (set VAULT_TOKEN, run `vault login`, which writes ~/.vault-token, "
            "or configure approle or kubernetes auth)"
        )

    def _rate_limited(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn()``, tried again while Vault answers 429: a rate-limit quota refuses a
        request before it is processed, so trying again repeats nothing (not even a
        login). Other errors and the last 429 are raised."""
        wait = RATE_LIMIT_FIRST_WAIT
        for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
            try:
                return fn()
            except hvac.exceptions.RateLimitExceeded:
                if attempt == RATE_LIMIT_ATTEMPTS:
                    raise
                log.debug("vault: %s rate-limited (429), attempt %d: retrying", what, attempt)
                time.sleep(wait * random.uniform(0.5, 1.0))
                wait *= 2
        raise AssertionError("unreachable")

    def _vault_call(
        self, what: str, fn: Callable[[], Any], *, slot_version: str | None = None, login: bool = False
    ) -> Any:
        """Run one Vault request; turn every failure into a one-line KeyProviderError."""
        try:
            return self._rate_limited(what, fn)
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as e:
            log.debug("vault: %s failed: %s", what, type(e).__name__)
            raise self._request_failed(e, what, slot_version, login=login) from None

    def _request_failed(
        self, exc: Exception, what: str, slot_version: str | None = None, *, login: bool = False
    ) -> KeyProviderError:
        """The one-line error for a failed request, noting whether Vault was out of reach
        (``_done`` then does not try to revoke)."""
        self._unreachable = isinstance(exc, requests.exceptions.RequestException)
        return self._fail(self.describe_error(exc, what, slot_version, login=login))

    def describe_error(
        self, exc: Exception, what: str, slot_version: str | None = None, *, login: bool = False
    ) -> str:
        """One safe line for a failed Vault request (``what``: the path or login it was)."""
        at = redact_url(self.address or "")  # an address may carry user:password@ or a token
        if isinstance(exc, requests.exceptions.SSLError):
            return (
                f"TLS verification of Vault at {at} failed during {what} "
                "(set vault.caCert to the CA bundle that signed Vault's certificate)"
            )
        if isinstance(exc, requests.exceptions.Timeout):
            return f"Vault at {at} did not answer within {self.timeout:g}s during {what}"
        if isinstance(exc, requests.exceptions.ConnectionError):
            return f"cannot reach Vault at {at} during {what} (connection failed)"
        if isinstance(exc, requests.exceptions.RequestException):
            return f"request to Vault at {at} failed during {what}: {type(exc).__name__}"
        text = _vault_text(exc)
        low = text.lower()
        if isinstance(exc, hvac.exceptions.RateLimitExceeded):
            said = "rate limit quota exceeded" if "rate limit quota exceeded" in low else "429"
            return (
                f"Vault rate-limited {what} ({said}) and kept refusing it after {RATE_LIMIT_ATTEMPTS} "
                "attempts; retry later or raise the quota"
            )
        if isinstance(exc, hvac.exceptions.VaultDown):
            if "sealed" in low:
                return f"Vault is sealed ({what} refused); unseal it and retry"
            return f"Vault is unavailable during {what}: {text}"
        if isinstance(exc, hvac.exceptions.Forbidden | hvac.exceptions.InvalidPath) and login:
            # Vault answers 403 to an unauthenticated login at a mount that does not exist, too.
            return (
                f"{what} was denied: Vault did not accept the credentials "
                "(or no such auth method is enabled there)"
            )
        if isinstance(exc, hvac.exceptions.Forbidden):
            # Encrypting with a key that does not exist is a create (it makes the key):
            # a token that may only update gets 403 for a mistyped key name too.
            missing = (
                f", or transit key {self.key!r} does not exist and the token may not create it"
                if what == self._path("encrypt")
                else ""
            )
            return (
                f"permission denied on {what}: the token's policies do not allow it "
                f"(or the token expired or was revoked{missing})"
            )
        if isinstance(exc, hvac.exceptions.InvalidPath):
            # A mount in another namespace, or a namespace that does not exist, answers the same.
            where = f" in Vault namespace {self.namespace!r}" if self.namespace else ""
            return f"no transit secrets engine at {self.mount}/{where} ({what}: path not found)"
        if isinstance(exc, hvac.exceptions.InvalidRequest):
            if login:
                return f"{what} failed: {text}"
            if "encryption key not found" in low or "key not found" in low:
                return f"transit key {self.key!r} not found on mount {self.mount}/"
            if "disallowed by policy" in low:
                v = slot_version or "(unknown)"
                n = v[1:] if v.startswith("v") else v
                return (
                    f"the slot was wrapped with transit key version {v}, below the key's "
                    f"min_decryption_version: lower min_decryption_version to {n}, run `dr key rotate` "
                    "to rewrap every slot with the newest version, and only then raise it"
                )
            if any(
                s in low
                for s in (
                    "message authentication failed",
                    "invalid ciphertext",
                    "illegal base64",
                    "version is too new",
                    "unable to decrypt",
                )
            ):
                return "cannot decrypt: wrong key or context"
            return f"Vault refused {what}: {text}"
        return f"Vault error during {what} ({type(exc).__name__}): {text}"

    # ------------------------------------------------------------------ transit

    def _path(self, op: str) -> str:
        return f"{self.mount}/{op}/{self.key}"

    def _context(self, context: dict[str, str]) -> str:
        return base64.b64encode(context_bytes(context)).decode()

    def _ciphertext(self, wrapped: Wrapped) -> tuple[str, str]:
        try:
            ct = wrapped.ciphertext.decode("ascii")
        except UnicodeDecodeError:
            ct = ""
        m = _VERSION.match(ct)
        if not m:
            raise self._fail(
                "cannot decrypt: wrong key or context (the slot holds no Vault transit ciphertext)"
            )
        return ct, f"v{m.group(1)}"

    def _wrapped(self, response: Any, op: str) -> Wrapped:
        ct = str(response["data"]["ciphertext"])
        m = _VERSION.match(ct)
        if not m:
            raise self._fail(f"Vault returned an unexpected ciphertext from {self._path(op)}")
        version = f"v{m.group(1)}"
        log.debug("vault: %s with %s (key version %s)", op, self._path(op), version)
        return Wrapped(ct.encode("ascii"), key_version=version)

    def _check_derived(self, client: Any) -> None:
        """Refuse a transit key that is not derived: it would ignore the context (see module doc)."""
        if self._derived_checked:
            return
        what = self._path("encrypt")
        try:
            self._rate_limited(
                what,
                lambda: client.secrets.transit.encrypt_data(
                    name=self.key, plaintext=_PROBE, mount_point=self.mount
                ),
            )
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException) as e:
            # A derived key refuses the probe for its missing context: what is hoped for.
            if isinstance(e, hvac.exceptions.InvalidRequest) and "context" in _vault_text(e).lower():
                self._derived_checked = True
                return
            raise self._request_failed(e, what) from None
        raise self._fail(
            f"transit key {self.key!r} is not a derived key, so it cannot bind the slot to the repository; "
            f"create one with: vault write -f {self.mount}/keys/<name> derived=true"
        )

    def wrap(self, key: bytes, context: dict[str, str]) -> Wrapped:
        try:
            return self._wrap(key, context)
        finally:
            self._done()

    def unwrap(self, wrapped: Wrapped, context: dict[str, str]) -> bytes:
        try:
            return self._unwrap(wrapped, context)
        finally:
            self._done()

    def rewrap(self, wrapped: Wrapped, context: dict[str, str]) -> Wrapped:
        try:
            return self._rewrap(wrapped, context)
        finally:
            self._done()

    def _wrap(self, key: bytes, context: dict[str, str]) -> Wrapped:
        client = self._client()
        ctx = self._context(context)
        plaintext = base64.b64encode(key).decode()
        resp = self._vault_call(
            self._path("encrypt"),
            lambda: client.secrets.transit.encrypt_data(
                name=self.key, plaintext=plaintext, context=ctx, mount_point=self.mount
            ),
        )
        self._check_derived(client)
        return self._wrapped(resp, "encrypt")

    def _unwrap(self, wrapped: Wrapped, context: dict[str, str]) -> bytes:
        ct, version = self._ciphertext(wrapped)
        client = self._client()
        ctx = self._context(context)
        resp = self._vault_call(
            self._path("decrypt"),
            lambda: client.secrets.transit.decrypt_data(
                name=self.key, ciphertext=ct, context=ctx, mount_point=self.mount
            ),
            slot_version=version,
        )
        try:
            key = base64.b64decode(resp["data"]["plaintext"], validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise self._fail(f"Vault returned no plaintext from {self._path('decrypt')}") from None
        log.debug("vault: unwrapped a slot of key version %s with %s", version, self._path("decrypt"))
        return key

    def _rewrap(self, wrapped: Wrapped, context: dict[str, str]) -> Wrapped:
        ct, version = self._ciphertext(wrapped)
        client = self._client()
        ctx = self._context(context)
        resp = self._vault_call(
            self._path("rewrap"),
            lambda: client.secrets.transit.rewrap_data(
                name=self.key, ciphertext=ct, context=ctx, mount_point=self.mount
            ),
            slot_version=version,
        )
        return self._wrapped(resp, "rewrap")
