"""A small Cloud KMS server for tests: the real gRPC API, AES-256-GCM inside.

No Cloud KMS emulator exists, so this serves the ``google.cloud.kms.v1.
KeyManagementService`` gRPC methods dr and its tests use, built on
google-cloud-kms's own message classes (their ``serialize``/``deserialize``
are the wire format), so the real ``KeyManagementServiceClient`` talks to it
unchanged. google-cloud-kms ships no ``*_pb2_grpc`` servicer, hence generic
method handlers.

What it models, as Cloud KMS documents it:
  - key rings, symmetric ENCRYPT_DECRYPT CryptoKeys with versions; a new key
    gets version 1 as primary; new versions are not primary until
    UpdateCryptoKeyPrimaryVersion; UpdateCryptoKeyVersion changes the state
    (ENABLED / DISABLED);
  - Encrypt with the primary version (or a named version), Decrypt with the
    version the ciphertext names, additional authenticated data bound by
    AES-GCM, CRC32C request checks (INVALID_ARGUMENT on mismatch) and response
    checksums / ``verified_*`` flags;
  - status codes: NOT_FOUND for unknown resources, FAILED_PRECONDITION for a
    version that is not ENABLED, INVALID_ARGUMENT "Decryption failed" for a
    ciphertext that does not authenticate (wrong key or AAD).
``corrupt_next_response`` flips one bit of the next Encrypt/Decrypt response
(checksums left as computed) to stand for corruption in transit.
Not modelled: IAM, asymmetric keys, import jobs, rotation schedules, HSM/EKM.
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
import grpc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.cloud.kms_v1.types import resources, service

SERVICE = "google.cloud.kms.v1.KeyManagementService"
MAGIC = b"FKMS"  # ciphertext: MAGIC || u32 version || nonce(12) || AES-GCM(ciphertext || tag)
State = resources.CryptoKeyVersion.CryptoKeyVersionState


def _crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code, self.message = code, message


@dataclass
class _Version:
    number: int
    key: bytes
    state: Any = State.ENABLED


@dataclass
class _CryptoKey:
    name: str
    versions: dict[int, _Version] = field(default_factory=dict)
    primary: int = 1


class FakeKMS:
    """In-memory Cloud KMS state plus the gRPC handlers serving it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.key_rings: set[str] = set()
        self.keys: dict[str, _CryptoKey] = {}
        self.corrupt_next_response = False
        self.calls: list[str] = []  # method names, in order
        self._server: grpc.Server | None = None
        self.endpoint = ""

    # ------------------------------------------------------------------ resources

    def _key(self, name: str) -> _CryptoKey:
        key = self.keys.get(name)
        if key is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"CryptoKey {name} not found.")
        return key

    def _version_pb(self, key: _CryptoKey, v: _Version) -> resources.CryptoKeyVersion:
        return resources.CryptoKeyVersion(
            name=f"{key.name}/cryptoKeyVersions/{v.number}",
            state=v.state,
            algorithm=resources.CryptoKeyVersion.CryptoKeyVersionAlgorithm.GOOGLE_SYMMETRIC_ENCRYPTION,
            protection_level=resources.ProtectionLevel.SOFTWARE,
        )

    def _key_pb(self, key: _CryptoKey) -> resources.CryptoKey:
        return resources.CryptoKey(
            name=key.name,
            purpose=resources.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT,
            primary=self._version_pb(key, key.versions[key.primary]),
        )

    def _new_version(self, key: _CryptoKey) -> _Version:
        n = max(key.versions, default=0) + 1
        key.versions[n] = _Version(n, os.urandom(32))
        return key.versions[n]

    def create_key_ring(self, req: service.CreateKeyRingRequest) -> resources.KeyRing:
        name = f"{req.parent}/keyRings/{req.key_ring_id}"
        if name in self.key_rings:
            raise _Abort(grpc.StatusCode.ALREADY_EXISTS, f"KeyRing {name} already exists.")
        self.key_rings.add(name)
        return resources.KeyRing(name=name)

    def create_crypto_key(self, req: service.CreateCryptoKeyRequest) -> resources.CryptoKey:
        if req.parent not in self.key_rings:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"KeyRing {req.parent} not found.")
        name = f"{req.parent}/cryptoKeys/{req.crypto_key_id}"
        if name in self.keys:
            raise _Abort(grpc.StatusCode.ALREADY_EXISTS, f"CryptoKey {name} already exists.")
        if req.crypto_key.purpose != resources.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "this fake serves ENCRYPT_DECRYPT keys only")
        key = _CryptoKey(name)
        self._new_version(key)
        self.keys[name] = key
        return self._key_pb(key)

    def get_crypto_key(self, req: service.GetCryptoKeyRequest) -> resources.CryptoKey:
        return self._key_pb(self._key(req.name))

    def create_crypto_key_version(
        self, req: service.CreateCryptoKeyVersionRequest
    ) -> resources.CryptoKeyVersion:
        key = self._key(req.parent)
        return self._version_pb(key, self._new_version(key))

    def _split_version(self, name: str) -> tuple[_CryptoKey, _Version]:
        key_name, sep, number = name.rpartition("/cryptoKeyVersions/")
        key = self._key(key_name)
        v = key.versions.get(int(number)) if sep and number.isdigit() else None
        if v is None:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"CryptoKeyVersion {name} not found.")
        return key, v

    def update_crypto_key_version(
        self, req: service.UpdateCryptoKeyVersionRequest
    ) -> resources.CryptoKeyVersion:
        key, v = self._split_version(req.crypto_key_version.name)
        if list(req.update_mask.paths) != ["state"]:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "this fake updates only 'state'")
        if req.crypto_key_version.state not in (State.ENABLED, State.DISABLED):
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "state must be ENABLED or DISABLED")
        v.state = req.crypto_key_version.state
        return self._version_pb(key, v)

    def update_crypto_key_primary_version(
        self, req: service.UpdateCryptoKeyPrimaryVersionRequest
    ) -> resources.CryptoKey:
        key, v = self._split_version(f"{req.name}/cryptoKeyVersions/{req.crypto_key_version_id}")
        if v.state != State.ENABLED:
            raise _Abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"{req.name} version {v.number} is not enabled."
            )
        key.primary = v.number
        return self._key_pb(key)

    # ------------------------------------------------------------------ crypto

    def _usable(self, key: _CryptoKey, v: _Version) -> None:
        if v.state != State.ENABLED:
            raise _Abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{key.name}/cryptoKeyVersions/{v.number} is not enabled, current state is: {v.state.name}.",
            )

    def _check_crc(self, field_name: str, data: bytes, given: int | None) -> None:
        if given is not None and given != _crc(data):
            raise _Abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"The checksum in field {field_name} did not match."
            )

    def _maybe_corrupt(self, data: bytes) -> bytes:
        if self.corrupt_next_response and data:
            self.corrupt_next_response = False
            return bytes([data[0] ^ 1]) + data[1:]
        return data

    def encrypt(self, req: service.EncryptRequest) -> service.EncryptResponse:
        if "/cryptoKeyVersions/" in req.name:
            key, v = self._split_version(req.name)
        else:
            key = self._key(req.name)
            v = key.versions[key.primary]
        self._usable(key, v)
        self._check_crc("plaintext_crc32c", req.plaintext, req.plaintext_crc32c)
        aad = req.additional_authenticated_data
        self._check_crc("additional_authenticated_data_crc32c", aad, req.additional_authenticated_data_crc32c)
        nonce = os.urandom(12)
        ct = MAGIC + struct.pack(">I", v.number) + nonce + AESGCM(v.key).encrypt(nonce, req.plaintext, aad)
        return service.EncryptResponse(
            name=f"{key.name}/cryptoKeyVersions/{v.number}",
            ciphertext=self._maybe_corrupt(ct),
            ciphertext_crc32c=_crc(ct),
            verified_plaintext_crc32c=req.plaintext_crc32c is not None,
            verified_additional_authenticated_data_crc32c=req.additional_authenticated_data_crc32c
            is not None,
            protection_level=resources.ProtectionLevel.SOFTWARE,
        )

    def decrypt(self, req: service.DecryptRequest) -> service.DecryptResponse:
        key = self._key(req.name)
        ct, aad = req.ciphertext, req.additional_authenticated_data
        self._check_crc("ciphertext_crc32c", ct, req.ciphertext_crc32c)
        self._check_crc("additional_authenticated_data_crc32c", aad, req.additional_authenticated_data_crc32c)
        bad = _Abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            "Decryption failed: verify that 'name' refers to the correct CryptoKey.",
        )
        if len(ct) < 8 + 12 + 16 or not ct.startswith(MAGIC):
            raise bad
        v = key.versions.get(struct.unpack(">I", ct[4:8])[0])
        if v is None:
            raise bad
        self._usable(key, v)
        try:
            plaintext = AESGCM(v.key).decrypt(ct[8:20], ct[20:], aad)
        except InvalidTag:
            raise bad from None
        return service.DecryptResponse(
            plaintext=self._maybe_corrupt(plaintext),
            plaintext_crc32c=_crc(plaintext),
            used_primary=v.number == key.primary,
            protection_level=resources.ProtectionLevel.SOFTWARE,
        )

    # ------------------------------------------------------------------ gRPC plumbing

    def _handler(self, method: str, fn: Callable[[Any], Any], req_cls: Any, resp_cls: Any) -> Any:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                self.calls.append(method)
                try:
                    return fn(request)
                except _Abort as e:
                    context.abort(e.code, e.message)

        return grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=req_cls.deserialize, response_serializer=resp_cls.serialize
        )

    def handlers(self) -> grpc.GenericRpcHandler:
        table = {
            "CreateKeyRing": (self.create_key_ring, service.CreateKeyRingRequest, resources.KeyRing),
            "CreateCryptoKey": (self.create_crypto_key, service.CreateCryptoKeyRequest, resources.CryptoKey),
            "GetCryptoKey": (self.get_crypto_key, service.GetCryptoKeyRequest, resources.CryptoKey),
            "CreateCryptoKeyVersion": (
                self.create_crypto_key_version,
                service.CreateCryptoKeyVersionRequest,
                resources.CryptoKeyVersion,
            ),
            "UpdateCryptoKeyVersion": (
                self.update_crypto_key_version,
                service.UpdateCryptoKeyVersionRequest,
                resources.CryptoKeyVersion,
            ),
            "UpdateCryptoKeyPrimaryVersion": (
                self.update_crypto_key_primary_version,
                service.UpdateCryptoKeyPrimaryVersionRequest,
                resources.CryptoKey,
            ),
            "Encrypt": (self.encrypt, service.EncryptRequest, service.EncryptResponse),
            "Decrypt": (self.decrypt, service.DecryptRequest, service.DecryptResponse),
        }
        return grpc.method_handlers_generic_handler(
            SERVICE, {m: self._handler(m, fn, rq, rs) for m, (fn, rq, rs) in table.items()}
        )

    def start(self) -> str:
        """Serve on a free loopback port; returns ``127.0.0.1:PORT``."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((self.handlers(),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        self.endpoint = f"127.0.0.1:{port}"
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait(10)
            self._server = None


@contextmanager
def serve() -> Iterator[FakeKMS]:
    """A running fake (``.endpoint`` is ``127.0.0.1:PORT``), stopped on exit."""
    fake = FakeKMS()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


def admin_client(endpoint: str) -> Any:
    """The real KeyManagementServiceClient on a plaintext channel to ``endpoint``."""
    from google.cloud import kms_v1
    from google.cloud.kms_v1.services.key_management_service.transports.grpc import (
        KeyManagementServiceGrpcTransport,
    )

    return kms_v1.KeyManagementServiceClient(
        transport=KeyManagementServiceGrpcTransport(channel=grpc.insecure_channel(endpoint))
    )
