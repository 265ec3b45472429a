"""``awskms://<key-id | alias/name | key or alias ARN>``: wrap the master key with an AWS KMS key.

``wrap`` is KMS Encrypt, ``unwrap`` is Decrypt and ``rewrap`` is ReEncrypt, so
a rotation never brings the master key to dr. The key-slot context is sent as
KMS EncryptionContext: KMS binds it to the ciphertext (and logs it in
CloudTrail), so a slot copied to another repository fails with "cannot
decrypt: wrong key or encryption context". The slot records the ARN of the
key that wrapped it (``meta["key_arn"]``); KMS does not expose backing-key
versions, so ``key_version`` stays empty (KMS key rotation keeps old backing
keys and decrypts old slots transparently).

Unwrap names the configured key (``KeyId``) so KMS never decrypts with a key
the user did not choose. Rewrap re-encrypts *from* the key recorded in the
slot *to* the configured key: after retargeting an alias to a new key,
``dr key rotate`` moves every slot to the new key inside KMS. Until it has,
the alias names a key that did not wrap the slots, and KMS refuses them
(IncorrectKeyException): unwrap then tries the key the slot records, but only
a key of the configured key's account and region — slots are not
authenticated, and a planted one must not choose the key (for an alias or
key id, the account is the caller's, from STS GetCallerIdentity, which needs
no permission). Rewrap uses the recorded key as its source on the same terms.

Credentials: boto3's standard chain (environment, shared config/SSO profile,
web identity / IRSA, ECS and instance roles). Region: ``awskms.region``, else
the region in a key ARN, else boto3's chain (``AWS_REGION`` …). Endpoint:
``awskms.endpoint``, else ``AWS_ENDPOINT_URL_KMS`` (read by boto3 itself).
IAM: ``kms:Encrypt``, ``kms:Decrypt`` and, for ``dr key rotate``,
``kms:ReEncryptFrom`` + ``kms:ReEncryptTo`` on the key.

Errors become ``KeyProviderError`` reasons (``describe_error``): disabled
key, access denied, not found, pending deletion, wrong key or context,
unreachable endpoint, no credentials; never key material.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from dr.config import AWSKMSOptions
from dr.crypto.providers import payload_logs
from dr.crypto.providers.base import KeyProviderError, KeyProviderMisconfigured, Wrapped
from dr.errors import InvalidInput
from dr.urls import is_http_url, redact_url

log = logging.getLogger(__name__)

PREFIX = "awskms://"
# Where boto3 finds a KMS endpoint in the environment, first match wins.
_ENDPOINT_VARS = ("AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL")


def parse_uri(uri: str) -> str:
    """``awskms://<key>`` -> the key id, alias (``alias/…``) or ARN."""
    key = uri[len(PREFIX) :] if uri.startswith(PREFIX) else ""
    if not key or any(c.isspace() for c in key) or key.endswith("/"):
        raise InvalidInput(f"key provider {uri!r}: use awskms://<key id | alias/name | key ARN | alias ARN>")
    if key.startswith("arn:") and (len(key.split(":")) < 6 or key.split(":")[2] != "kms"):
        raise InvalidInput(f"key provider {uri!r}: not a KMS ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)")
    return key


class _CallFailed(KeyProviderError):
    """A KMS call the service refused, with its error code."""

    def __init__(self, uri: str, reason: str, code: str) -> None:
        super().__init__(uri, reason)
        self.code = code


# Only asked on the way to an error or during an alias move: kept short, so a network
# without a route to STS delays the error little.
_STS_CONFIG = botocore.config.Config(
    connect_timeout=5, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 2}
)

# Decrypt's answers when KeyId is not the key that wrapped the ciphertext: IncorrectKeyException
# (AWS), AccessDeniedException (AWS for a key it will not name, and moto).
_OTHER_KEY = ("IncorrectKeyException", "AccessDeniedException")


def region_of(key: str) -> str | None:
    """The region named in a KMS key or alias ARN, else None."""
    parts = key.split(":")
    return (parts[3] or None) if key.startswith("arn:") and len(parts) >= 6 else None


def describe_error(exc: Exception, action: str, key: str, endpoint: str | None = None) -> str:
    """One safe line for a failed KMS call (``action`` like ``kms:Decrypt``)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = " ".join(str(err.get("Message", "")).split())[:200]
        if code == "DisabledException":
            return f"KMS key is disabled ({action} refused); enable it or use another key slot"
        if code == "AccessDeniedException":
            return f"access denied: {action} on {key} is not allowed by the IAM or key policy"
        if code == "NotFoundException":
            return f"KMS key {key} not found (check the key id or alias and the region)"
        if code == "KMSInvalidStateException":
            if "pending deletion" in message.lower() or "pendingdeletion" in message.lower():
                return (
                    "KMS key is pending deletion; cancel the deletion (kms:CancelKeyDeletion) "
                    "and enable it to use this slot"
                )
            return f"KMS key is not usable in its current state ({action}): {message or code}"
        if code == "InvalidCiphertextException":
            return "cannot decrypt: wrong key or encryption context"
        if code == "IncorrectKeyException":
            return f"cannot decrypt: the slot was wrapped by another KMS key than {key}"
        if code == "KeyUnavailableException":
            return "KMS key is temporarily unavailable; retry later"
        if code in ("KMSInternalException", "DependencyTimeoutException", "InternalFailure"):
            return f"AWS KMS failed internally ({code}); retry later"
        if code in ("ThrottlingException", "LimitExceededException", "TooManyRequestsException"):
            return f"AWS KMS throttled {action} ({code}); retry later"
        if code in (
            "UnrecognizedClientException",
            "InvalidClientTokenId",
            "InvalidSignatureException",
            "SignatureDoesNotMatch",
            "ExpiredTokenException",
            "ExpiredToken",
        ):
            return f"AWS credentials were rejected by KMS ({code}): check or refresh them"
        return f"AWS KMS refused {action} ({code}){': ' + message if message else ''}"
    where = redact_url(endpoint) if endpoint else "the AWS KMS endpoint"
    if isinstance(exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
        return (
            "no AWS credentials found (environment, shared config or SSO profile, "
            "web identity / IRSA, or instance role)"
        )
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return "no AWS region: set awskms.region, AWS_REGION, or use a key ARN"
    if isinstance(exc, botocore.exceptions.ProfileNotFound):
        profile = exc.kwargs.get("profile", "")
        return f"AWS profile {str(profile)!r} not found in the AWS config files (check AWS_PROFILE)"
    if isinstance(exc, botocore.exceptions.SSOError):  # SSOTokenLoadError, UnauthorizedSSOTokenError
        profile = os.environ.get("AWS_PROFILE")
        login = f"aws sso login --profile {profile}" if profile else "aws sso login"
        return f"the AWS SSO session is missing or expired ({action}): run `{login}`"
    if isinstance(
        exc, botocore.exceptions.CredentialRetrievalError | botocore.exceptions.TokenRetrievalError
    ):
        # Not the error text: a credential_process's stderr may hold anything, secrets too.
        source = exc.kwargs.get("provider", "the configured source")
        return (
            f"AWS credentials could not be obtained from {source} ({action}); "
            "check that credential source or refresh it"
        )
    if isinstance(exc, botocore.exceptions.ConnectTimeoutError | botocore.exceptions.ReadTimeoutError):
        return f"AWS KMS at {where} did not answer in time ({action})"
    if isinstance(
        exc, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectionClosedError
    ):
        return f"cannot reach AWS KMS at {where} ({action})"
    if isinstance(exc, botocore.exceptions.SSLError):
        return f"TLS verification of AWS KMS at {where} failed ({action})"
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return f"AWS KMS {action} failed: {type(exc).__name__}"
    return f"AWS KMS {action} failed: {type(exc).__name__}"


class AWSKMSKeyProvider:
    """Wraps with one KMS key. The boto3 client is made on first use unless one is passed in."""

    def __init__(
        self,
        uri: str,
        *,
        region: str | None = None,
        endpoint: str | None = None,
        client: Any = None,
        connect_timeout: float = 10.0,
        # KMS answers Encrypt/Decrypt in milliseconds: 3 tries of 10 s bound a KMS that
        # never answers to about 30 s, as for Vault and Cloud KMS.
        read_timeout: float = 10.0,
        max_attempts: int = 3,
    ) -> None:
        self._uri = uri
        self.key_id = parse_uri(uri)
        arn_region = region_of(self.key_id)
        if region and arn_region and region != arn_region:
            raise InvalidInput(
                f"key provider {uri!r}: awskms.region {region!r} differs from the region {arn_region!r} "
                "in the key ARN"
            )
        self.region = region or arn_region
        self.endpoint = endpoint
        self._client_obj: Any = client
        self._location: tuple[str, str] | None = None  # (region, account) of the configured key
        # total_max_attempts counts every try; botocore's "max_attempts" counts only the
        # retries (3 made 4 tries: a KMS that never answered took 2 minutes to report).
        self._config = botocore.config.Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
        )

    @classmethod
    def from_uri(cls, uri: str, options: AWSKMSOptions | None) -> AWSKMSKeyProvider:
        opts = options or AWSKMSOptions()
        return cls(uri, region=opts.region, endpoint=opts.endpoint)

    @property
    def uri(self) -> str:
        return self._uri

    def _client(self) -> Any:
        if self._client_obj is None:
            payload_logs.install()
            if self.endpoint and not is_http_url(self.endpoint):
                raise self._bad_endpoint(self.endpoint, "awskms.endpoint")
            try:
                # endpoint_url=None lets boto3 apply AWS_ENDPOINT_URL_KMS / AWS_ENDPOINT_URL itself.
                self._client_obj = boto3.session.Session().client(
                    "kms", region_name=self.region, endpoint_url=self.endpoint, config=self._config
                )
            except botocore.exceptions.BotoCoreError as e:
                raise self._fail(e, "client setup") from None
            except ValueError:
                # botocore's "Invalid endpoint: …" for an endpoint from the environment or
                # the AWS config file (awskms.endpoint was checked above).
                raise self._bad_endpoint(None, None) from None
            endpoint = getattr(self._client_obj.meta, "endpoint_url", None)
            if endpoint and not is_http_url(endpoint):  # one botocore took (ftp://…): fails later, unclearly
                self._client_obj = None
                raise self._bad_endpoint(endpoint, None)
        return self._client_obj

    def _bad_endpoint(self, endpoint: str | None, source: str | None) -> KeyProviderError:
        """``source`` None: the endpoint came from the environment or the AWS config file."""
        if source is None:
            var = next((v for v in _ENDPOINT_VARS if os.environ.get(v)), None)
            source = var or "the AWS config file"
            endpoint = os.environ[var] if var else endpoint
        # Quoted redacted: an endpoint may carry user:password@ or a token in its query.
        shown = f" {redact_url(endpoint)!r}" if endpoint is not None else ""
        return KeyProviderMisconfigured(
            self._uri, f"AWS KMS endpoint{shown} (from {source}) is not a URL: use https://HOST[:PORT]"
        )

    def _fail(self, exc: Exception, action: str, endpoint: str | None = None) -> KeyProviderError:
        reason = describe_error(exc, action, self.key_id, endpoint)
        if isinstance(exc, botocore.exceptions.NoRegionError | botocore.exceptions.ProfileNotFound):
            return KeyProviderMisconfigured(self._uri, reason)
        return KeyProviderError(self._uri, reason)

    def _call(self, action: str, fn_name: str, *, slot_arn: str | None = None, **params: Any) -> Any:
        client = self._client()
        try:
            return getattr(client, fn_name)(**params)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            log.debug("awskms: %s on %s failed: %s", action, self.key_id, type(e).__name__)
            endpoint = self.endpoint or getattr(getattr(client, "meta", None), "endpoint_url", None)
            moved = self._other_region(e, client, slot_arn)
            if moved is not None:
                raise KeyProviderError(self._uri, moved) from None
            failed = self._fail(e, action, endpoint)
            if isinstance(e, botocore.exceptions.ClientError):  # the service answered (never misconfigured)
                code = str(e.response.get("Error", {}).get("Code", ""))
                raise _CallFailed(self._uri, failed.reason, code) from None
            raise failed from None

    def _other_region(self, exc: Exception, client: Any, slot_arn: str | None) -> str | None:
        """Why a key is not found when the slot's key lives in another region (opening
        a repository in a disaster-recovery region): key ids and aliases are regional."""
        if not isinstance(exc, botocore.exceptions.ClientError) or not slot_arn:
            return None
        if exc.response.get("Error", {}).get("Code") != "NotFoundException":
            return None
        here = getattr(getattr(client, "meta", None), "region_name", None)
        there = region_of(slot_arn)
        if not here or not there or here == there:
            return None
        return (
            f"KMS key {self.key_id} not found in {here}; the slot was wrapped by {slot_arn}: "
            f"set awskms.region to {there} for this key provider"
        )

    def wrap(self, key: bytes, context: dict[str, str]) -> Wrapped:
        resp = self._call(
            "kms:Encrypt", "encrypt", KeyId=self.key_id, Plaintext=key, EncryptionContext=context
        )
        arn = str(resp["KeyId"])
        log.debug("awskms: wrapped with %s", arn)
        return Wrapped(bytes(resp["CiphertextBlob"]), key_version=None, meta={"key_arn": arn})

    def _decrypt(self, wrapped: Wrapped, context: dict[str, str], key_id: str) -> Any:
        return self._call(
            "kms:Decrypt",
            "decrypt",
            slot_arn=wrapped.meta.get("key_arn"),
            CiphertextBlob=wrapped.ciphertext,
            EncryptionContext=context,
            KeyId=key_id,
        )

    def unwrap(self, wrapped: Wrapped, context: dict[str, str]) -> bytes:
        try:
            resp = self._decrypt(wrapped, context, self.key_id)
        except _CallFailed as e:
            # An alias moved to a new key before `dr key rotate` (module doc): the key
            # that wrapped the slot, if it is one of this account and region.
            if e.code not in _OTHER_KEY:
                raise
            source = self._slot_key(wrapped)
            if source is None:
                raise
            try:
                resp = self._decrypt(wrapped, context, source)
            except _CallFailed as again:
                raise (e if again.code in _OTHER_KEY else again) from None
            log.info(
                "awskms: %s no longer names the key that wrapped this slot (%s): run `dr key rotate`",
                self.key_id,
                source,
            )
        log.debug("awskms: unwrapped with %s", resp.get("KeyId"))
        return bytes(resp["Plaintext"])

    def _slot_key(self, wrapped: Wrapped) -> str | None:
        """The key ARN the slot records, if it is a key of the configured key's account and
        region (else None: a planted slot must not choose the key dr decrypts with)."""
        arn = wrapped.meta.get("key_arn") or ""
        parts = arn.split(":")
        if len(parts) != 6 or parts[0] != "arn" or parts[2] != "kms" or not parts[5].startswith("key/"):
            return None
        if arn == self.key_id or parts[5] == f"key/{self.key_id}":
            return None  # the configured key itself: nothing else to try
        try:
            region, account = self._configured_location()
        except KeyProviderError as e:
            log.debug("awskms: cannot tell the account of %s: %s", self.key_id, e.reason)
            return None
        if (parts[3], parts[4]) != (region, account):
            log.info("awskms: a slot names %s, not a key of account %s in %s: not used", arn, account, region)
            return None
        return arn

    def _configured_location(self) -> tuple[str, str]:
        """(region, account) of the configured key: from its ARN, else the client's region
        and the caller's account (a key id or alias always names a key of the caller's)."""
        if self._location is None:
            parts = self.key_id.split(":")
            if self.key_id.startswith("arn:") and len(parts) >= 6:
                self._location = (parts[3], parts[4])
            else:
                region = str(self._client().meta.region_name)
                try:
                    sts = boto3.session.Session().client("sts", region_name=region, config=_STS_CONFIG)
                    account = str(sts.get_caller_identity()["Account"])
                except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, ValueError) as e:
                    reason = describe_error(e, "sts:GetCallerIdentity", self.key_id)
                    raise KeyProviderError(self._uri, reason) from None
                self._location = (region, account)
        return self._location

    def rewrap(self, wrapped: Wrapped, context: dict[str, str]) -> Wrapped:
        source = self._slot_key(wrapped) or self.key_id
        resp = self._call(
            "kms:ReEncrypt",
            "re_encrypt",
            slot_arn=wrapped.meta.get("key_arn"),
            CiphertextBlob=wrapped.ciphertext,
            SourceEncryptionContext=context,
            SourceKeyId=source,
            DestinationKeyId=self.key_id,
            DestinationEncryptionContext=context,
        )
        arn = str(resp["KeyId"])
        log.debug("awskms: rewrapped from %s to %s", resp.get("SourceKeyId"), arn)
        return Wrapped(bytes(resp["CiphertextBlob"]), key_version=None, meta={"key_arn": arn})
