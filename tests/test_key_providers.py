"""Key providers against real servers: Vault transit (OpenBao), AWS KMS (moto), Cloud KMS (gRPC fake).

Every provider is driven through wrap / unwrap / rewrap on its server; the
repository context must bind (another context fails); every error the
providers map gets a test, with the server producing it where the server can
(sealed, 403, missing key, wrong context, disabled version, unreachable) and
with the exact error objects real AWS KMS / Cloud KMS return where the local
server cannot (moto ignores disabled keys; the fake has no IAM). At DEBUG, no
token, secret_id, JWT or plaintext key reaches any log record or log line.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import os
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dr.config import (
    AWSKMSOptions,
    GCPKMSOptions,
    VaultAuth,
    VaultOptions,
)
from dr.config import KeyProvider as KeyProviderConfig
from dr.crypto.providers import payload_logs
from dr.crypto.providers.awskms import AWSKMSKeyProvider, describe_error, region_of
from dr.crypto.providers.base import KeyProvider, KeyProviderError, KeyProviderMisconfigured, Wrapped
from dr.crypto.providers.context import LABEL, context_bytes
from dr.crypto.providers.gcpkms import GCPKMSKeyProvider, plaintext_target
from dr.crypto.providers.gcpkms import describe_error as gcp_describe_error
from dr.crypto.providers.registry import open_provider
from dr.crypto.providers.vault import VaultKeyProvider
from dr.errors import InvalidInput
from tests import servers
from tests.gcpkms_fake import FakeKMS, admin_client
from tests.log_capture import DebugLogs, debug_logging

CTX = {"dr-repository": "a1" * 16}
OTHER_CTX = {"dr-repository": "b2" * 16}


def secret_forms(key: bytes) -> list[str]:
    """How a key could show up in text: hex, base64 (both alphabets), Python bytes repr."""
    return [
        key.hex(),
        base64.b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode(),
        repr(key)[2:-1],
    ]


def assert_not_in_ciphertext(wrapped: Wrapped, key: bytes) -> None:
    ct = wrapped.ciphertext
    assert key not in ct
    for form in secret_forms(key):
        assert form.encode() not in ct


# --------------------------------------------------------------------------- logs at DEBUG


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[DebugLogs]:
    """``dr -vvv`` logging (libraries at DEBUG, JSON lines), caplog, and raw record snapshots."""
    with debug_logging(caplog) as logs:
        yield logs


# --------------------------------------------------------------------------- context encoding


@given(
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)
def test_context_bytes_is_injective(a: dict[str, str], b: dict[str, str]) -> None:
    assert (context_bytes(a) == context_bytes(b)) == (a == b)
    assert context_bytes(a).startswith(LABEL)


def test_context_bytes_ignores_order_and_rejects_non_strings() -> None:
    assert context_bytes({"a": "1", "b": "2"}) == context_bytes({"b": "2", "a": "1"})
    # The ambiguity a k=v join would have: these must differ.
    assert context_bytes({"a": "b=c"}) != context_bytes({"a=b": "c"})
    with pytest.raises(TypeError):
        context_bytes({"a": 1})  # type: ignore[dict-item]


def test_registry_opens_every_provider_scheme(tmp_path: Path) -> None:
    cases: list[tuple[str, KeyProviderConfig, type]] = [
        (
            "vault://transit/keys/dr",
            KeyProviderConfig(
                name="v", uri="vault://transit/keys/dr", vault=VaultOptions(address="http://x")
            ),
            VaultKeyProvider,
        ),
        ("awskms://alias/dr", KeyProviderConfig(name="a", uri="awskms://alias/dr"), AWSKMSKeyProvider),
        (
            "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k",
            KeyProviderConfig(
                name="g",
                uri="gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k",
                gcpkms=GCPKMSOptions(endpoint="127.0.0.1:1"),
            ),
            GCPKMSKeyProvider,
        ),
    ]
    for uri, cfg, cls in cases:
        p = open_provider(uri, cfg)
        assert isinstance(p, cls)
        assert isinstance(p, KeyProvider)
        assert p.uri == uri
        assert isinstance(open_provider(uri), cls)  # options are optional


def test_a_stored_slot_uri_opens_as_it_is_a_new_one_is_checked(tmp_path: Path) -> None:
    # A slot already in a repository keeps the URI it was made with; one made before
    # new slots were checked (local:///k.key?x was accepted then) must still unlock it.
    key = tmp_path / "k.key"
    made = open_provider(f"local://{key}", create=True)
    wrapped = made.wrap(b"m" * 64, {"dr-repository": "r"})
    stored = open_provider(f"local://{key}?x")
    assert stored.unwrap(wrapped, {"dr-repository": "r"}) == b"m" * 64
    for uri in (f"local://{key}?x", f"local://{key}#f", "vault://user:pw@transit/keys/dr"):
        with pytest.raises(InvalidInput, match=r"credentials|takes no"):
            open_provider(uri, create=True)


# =========================================================================== Vault (OpenBao)


@dataclass
class Transit:
    root: Any  # hvac.Client with the root token
    address: str
    mount: str

    def create_key(self, name: str, *, derived: bool = True) -> str:
        self.root.secrets.transit.create_key(name=name, derived=derived, mount_point=self.mount)
        return f"vault://{self.mount}/keys/{name}"

    def policy(self, name: str, paths: dict[str, list[str]]) -> str:
        hcl = "\n".join(f'path "{p}" {{ capabilities = {json.dumps(c)} }}' for p, c in paths.items())
        self.root.sys.create_or_update_policy(name=name, policy=hcl)
        return name

    def token(self, policies: list[str]) -> str:
        return str(self.root.auth.token.create(policies=policies, ttl="10m")["auth"]["client_token"])


def _hvac(address: str, token: str | None = None, **kw: Any) -> Any:
    import hvac

    return hvac.Client(url=address, token=token, **kw)


@pytest.fixture
def transit(vault_env: dict[str, str], unique: str) -> Transit:
    root = _hvac(vault_env["address"], vault_env["token"])
    mount = f"transit-{unique}"
    root.sys.enable_secrets_engine("transit", path=mount)
    return Transit(root, vault_env["address"], mount)


def _reason(exc: pytest.ExceptionInfo[KeyProviderError]) -> str:
    return exc.value.reason


def test_vault_token_roundtrip_binds_the_repository(transit: Transit, unique: str) -> None:
    uri = transit.create_key(f"dr-{unique}")
    p = VaultKeyProvider.from_uri(uri, None)  # VAULT_ADDR / VAULT_TOKEN from the environment
    key = os.urandom(32)
    w = p.wrap(key, CTX)
    assert w.ciphertext.startswith(b"vault:v1:")
    assert w.key_version == "v1"
    assert_not_in_ciphertext(w, key)
    assert p.unwrap(w, CTX) == key
    with pytest.raises(KeyProviderError) as e:
        p.unwrap(w, OTHER_CTX)
    assert _reason(e) == "cannot decrypt: wrong key or context"
    assert str(e.value) == f"{uri}: cannot decrypt: wrong key or context"
    with pytest.raises(KeyProviderError) as e:
        p.rewrap(w, OTHER_CTX)
    assert _reason(e) == "cannot decrypt: wrong key or context"


def test_vault_wrong_key_and_foreign_ciphertext(transit: Transit, unique: str) -> None:
    p1 = VaultKeyProvider.from_uri(transit.create_key(f"one-{unique}"), None)
    p2 = VaultKeyProvider.from_uri(transit.create_key(f"two-{unique}"), None)
    w = p1.wrap(os.urandom(32), CTX)
    with pytest.raises(KeyProviderError) as e:
        p2.unwrap(w, CTX)
    assert _reason(e) == "cannot decrypt: wrong key or context"
    for junk in (b"not a vault ciphertext", b"\xff\xfe", b"vault:v1:"):
        with pytest.raises(KeyProviderError) as e:
            p1.unwrap(Wrapped(junk), CTX)
        assert _reason(e).startswith("cannot decrypt: wrong key or context")


def test_vault_refuses_a_key_that_is_not_derived(transit: Transit, unique: str) -> None:
    # Transit ignores `context` on such a key: slots would not be bound to their repository.
    uri = transit.create_key(f"plain-{unique}", derived=False)
    with pytest.raises(KeyProviderError) as e:
        VaultKeyProvider.from_uri(uri, None).wrap(os.urandom(32), CTX)
    assert "is not a derived key" in _reason(e)
    assert f"vault write -f {transit.mount}/keys/<name> derived=true" in _reason(e)


def test_vault_wrap_creates_a_missing_key_as_derived(transit: Transit, unique: str) -> None:
    # With create permission (root here), transit's upsert makes the key on the first encrypt;
    # the context in that request makes it derived, so the binding check passes.
    name = f"new-{unique}"
    p = VaultKeyProvider.from_uri(f"vault://{transit.mount}/keys/{name}", None)
    key = os.urandom(32)
    w = p.wrap(key, CTX)
    assert transit.root.secrets.transit.read_key(name=name, mount_point=transit.mount)["data"]["derived"]
    assert p.unwrap(w, CTX) == key


def test_vault_rotation_rewrap_and_min_decryption_version(transit: Transit, unique: str) -> None:
    name = f"rot-{unique}"
    uri = transit.create_key(name)
    p = VaultKeyProvider.from_uri(uri, None)
    key = os.urandom(32)
    old = p.wrap(key, CTX)
    transit.root.secrets.transit.rotate_key(name=name, mount_point=transit.mount)
    transit.root.secrets.transit.rotate_key(name=name, mount_point=transit.mount)
    assert p.unwrap(old, CTX) == key  # old versions still decrypt
    assert p.wrap(key, CTX).key_version == "v3"  # new slots use the newest version
    new = p.rewrap(old, CTX)
    assert new.key_version == "v3"
    assert new.ciphertext.startswith(b"vault:v3:")
    assert new.ciphertext != old.ciphertext
    assert_not_in_ciphertext(new, key)
    assert p.unwrap(new, CTX) == key

    transit.root.secrets.transit.update_key_configuration(
        name=name, min_decryption_version=3, mount_point=transit.mount
    )
    assert p.unwrap(new, CTX) == key
    for op in (p.unwrap, p.rewrap):
        with pytest.raises(KeyProviderError) as e:
            op(old, CTX)
        reason = _reason(e)
        assert "wrapped with transit key version v1" in reason
        assert "min_decryption_version" in reason
        assert "run `dr key rotate`" in reason
        assert "lower min_decryption_version to 1" in reason


def test_vault_approle_with_a_least_privilege_policy(
    transit: Transit, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, debug_logs: DebugLogs
) -> None:
    name = f"app-{unique}"
    uri = transit.create_key(name)
    other_uri = transit.create_key(f"other-{unique}")
    policy = transit.policy(
        f"dr-{unique}",
        {f"{transit.mount}/{op}/{name}": ["update"] for op in ("encrypt", "decrypt", "rewrap")},
    )
    approle = f"approle-{unique}"
    transit.root.sys.enable_auth_method("approle", path=approle)
    transit.root.auth.approle.create_or_update_approle(
        role_name="dr", token_policies=[policy], token_ttl="10m", mount_point=approle
    )
    role_id = transit.root.auth.approle.read_role_id("dr", mount_point=approle)["data"]["role_id"]
    secret_id = transit.root.auth.approle.generate_secret_id("dr", mount_point=approle)["data"]["secret_id"]
    (tmp_path / "role_id").write_text(role_id + "\n")
    (tmp_path / "secret_id").write_text(secret_id + "\n")
    monkeypatch.delenv("VAULT_TOKEN")  # only the AppRole files may authenticate
    auth = VaultAuth(
        method="approle",
        role_id_file=str(tmp_path / "role_id"),
        secret_id_file=str(tmp_path / "secret_id"),
        mount=approle,
    )
    p = VaultKeyProvider.from_uri(uri, VaultOptions(auth=auth))
    key = os.urandom(32)
    w = p.wrap(key, CTX)
    assert p.unwrap(w, CTX) == key
    transit.root.secrets.transit.rotate_key(name=name, mount_point=transit.mount)
    w2 = p.rewrap(w, CTX)
    assert w2.key_version == "v2"
    assert p.unwrap(w2, CTX) == key

    # The policy names one key: any other is denied, with the path in the reason.
    with pytest.raises(KeyProviderError) as e:
        VaultKeyProvider.from_uri(other_uri, VaultOptions(auth=auth)).wrap(key, CTX)
    assert _reason(e).startswith(f"permission denied on {transit.mount}/encrypt/other-{unique}")

    # A wrong secret_id: login fails, and the reason names neither id.
    (tmp_path / "bad_secret_id").write_text("0" * 36)
    bad = dataclasses.replace(auth, secret_id_file=str(tmp_path / "bad_secret_id"))
    with pytest.raises(KeyProviderError) as e:
        VaultKeyProvider.from_uri(uri, VaultOptions(auth=bad)).unwrap(w2, CTX)
    assert _reason(e).startswith(f"AppRole login at auth/{approle} failed:")
    assert secret_id not in str(e.value) and role_id not in str(e.value) and "0" * 36 not in str(e.value)

    missing = dataclasses.replace(auth, secret_id_file=str(tmp_path / "nope"))
    with pytest.raises(KeyProviderError) as e:
        VaultKeyProvider.from_uri(uri, VaultOptions(auth=missing)).unwrap(w2, CTX)
    assert _reason(e) == f"AppRole secret_id file {tmp_path / 'nope'} does not exist"

    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    for unreadable, kind in ((tmp_path, "IsADirectoryError"), (tmp_path / "binary", "UnicodeDecodeError")):
        broken = dataclasses.replace(auth, secret_id_file=str(unreadable))
        with pytest.raises(KeyProviderError) as e:
            VaultKeyProvider.from_uri(uri, VaultOptions(auth=broken)).unwrap(w2, CTX)
        assert _reason(e) == f"cannot read the AppRole secret_id file {unreadable}: {kind}"

    (tmp_path / "empty").write_text("\n")
    empty = dataclasses.replace(auth, role_id_file=str(tmp_path / "empty"))
    with pytest.raises(KeyProviderError) as e:
        VaultKeyProvider.from_uri(uri, VaultOptions(auth=empty)).unwrap(w2, CTX)
    assert _reason(e) == f"AppRole role_id file {tmp_path / 'empty'} is empty"

    assert "urllib3.connectionpool" in debug_logs.loggers()  # the capture saw library DEBUG records
    debug_logs.assert_clean([secret_id, role_id, *secret_forms(key)])


def test_vault_permission_denied_without_decrypt(
    transit: Transit, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"enc-{unique}"
    uri = transit.create_key(name)
    policy = transit.policy(f"enc-only-{unique}", {f"{transit.mount}/encrypt/{name}": ["update"]})
    monkeypatch.setenv("VAULT_TOKEN", transit.token([policy]))
    p = VaultKeyProvider.from_uri(uri, None)
    w = p.wrap(os.urandom(32), CTX)  # encrypt-only (an escrow slot) can wrap
    with pytest.raises(KeyProviderError) as e:
        p.unwrap(w, CTX)
    assert _reason(e).startswith(f"permission denied on {transit.mount}/decrypt/{name}:")
    with pytest.raises(KeyProviderError) as e:
        p.rewrap(w, CTX)
    assert _reason(e).startswith(f"permission denied on {transit.mount}/rewrap/{name}:")


def test_vault_bad_token_is_permission_denied(
    transit: Transit, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = transit.create_key(f"k-{unique}")
    monkeypatch.setenv("VAULT_TOKEN", "hvs.not-a-real-token-at-all-0000000000")
    with pytest.raises(KeyProviderError) as e:
        VaultKeyProvider.from_uri(uri, None).wrap(os.urandom(32), CTX)
    assert "permission denied" in _reason(e) and "expired" in _reason(e)
    assert "hvs.not-a-real-token" not in str(e.value)


def test_vault_missing_key_and_missing_mount(transit: Transit, unique: str) -> None:
    p = VaultKeyProvider.from_uri(transit.create_key(f"k-{unique}"), None)
    w = p.wrap(os.urandom(32), CTX)
    with pytest.raises(KeyProviderError) as e:
        VaultKeyProvider.from_uri(f"vault://{transit.mount}/keys/absent-{unique}", None).unwrap(w, CTX)
    assert _reason(e) == f"transit key 'absent-{unique}' not found on mount {transit.mount}/"
    with pytest.raises(KeyProviderError) as e:
        VaultKeyProvider.from_uri(f"vault://nomount-{unique}/keys/k", None).unwrap(w, CTX)
    assert _reason(e).startswith(f"no transit secrets engine at nomount-{unique}/")
    # A wrong namespace looks the same to Vault: the message names the one dr used.
    with pytest.raises(KeyProviderError) as e:
        VaultKeyProvider.from_uri(p.uri, VaultOptions(namespace=f"ns-{unique}")).unwrap(w, CTX)
    assert _reason(e) == (
        f"no transit secrets engine at {transit.mount}/ in Vault namespace 'ns-{unique}' "
        f"({transit.mount}/decrypt/k-{unique}: path not found)"
    )


def test_vault_token_sources(
    transit: Transit,
    unique: str,
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    vault_env: dict[str, str],
) -> None:
    uri = transit.create_key(f"tok-{unique}")
    monkeypatch.delenv("VAULT_TOKEN")
    with pytest.raises(KeyProviderError) as e:
        VaultKeyProvider.from_uri(uri, None).wrap(os.urandom(32), CTX)
    assert _reason(e).startswith("no Vault token (set VAULT_TOKEN")
    # `vault login` writes ~/.vault-token
    home = isolated_home / "home"
    home.mkdir(exist_ok=True)
    (home / ".vault-token").write_text(vault_env["token"])
    key = os.urandom(32)
    w = VaultKeyProvider.from_uri(uri, None).wrap(key, CTX)
    # An explicit tokenPath (a Vault Agent sink) wins over the environment.
    sink = isolated_home / "agent-token"
    sink.write_text(transit.token(["default"]) + "\n")
    monkeypatch.setenv("VAULT_TOKEN", vault_env["token"])
    p = VaultKeyProvider.from_uri(uri, VaultOptions(auth=VaultAuth(token_path=str(sink))))
    with pytest.raises(KeyProviderError) as e:
        p.unwrap(w, CTX)  # the sink token has only the default policy
    assert _reason(e).startswith("permission denied on")
    sink.write_text(vault_env["token"])
    assert (
        VaultKeyProvider.from_uri(uri, VaultOptions(auth=VaultAuth(token_path=str(sink)))).unwrap(w, CTX)
        == key
    )


def test_vault_configuration_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for bad in (
        "vault://transit/dr",
        "vault://keys/dr",
        "vault://transit/keys/",
        "vault://transit/keys/a/b",
        "vault:/x",
    ):
        with pytest.raises(InvalidInput, match="use vault://<transit mount>/keys/<key name>"):
            VaultKeyProvider.from_uri(bad, None)
    p = VaultKeyProvider.from_uri("vault://team/a/transit/keys/dr", None)
    assert (p.mount, p.key) == ("team/a/transit", "dr")
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    with pytest.raises(KeyProviderError) as e:
        VaultKeyProvider.from_uri("vault://transit/keys/dr", None).wrap(os.urandom(32), CTX)
    assert _reason(e).startswith("no Vault address: set vault.address")
    opts = VaultOptions(address="https://127.0.0.1:1", ca_cert=str(tmp_path / "ca.pem"))
    with pytest.raises(KeyProviderError) as e:
        VaultKeyProvider.from_uri("vault://transit/keys/dr", opts).wrap(os.urandom(32), CTX)
    assert _reason(e) == f"Vault CA certificate file {tmp_path / 'ca.pem'} does not exist"


def test_vault_with_a_client_passed_in_and_incomplete_auth(
    transit: Transit, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = transit.create_key(f"cl-{unique}")
    monkeypatch.delenv("VAULT_TOKEN")  # the passed-in client is already authenticated
    p = VaultKeyProvider(uri, address=None, client=_hvac(transit.address, "root"))
    key = os.urandom(32)
    assert p.unwrap(p.wrap(key, CTX), CTX) == key
    # Auth settings the config model rejects, reaching the provider anyway (e.g. built in code).
    for auth, reason in (
        (VaultAuth(method="approle"), "approle auth needs roleIdFile and secretIdFile"),
        (VaultAuth(method="kubernetes", role=None), "kubernetes auth needs role"),
    ):
        with pytest.raises(KeyProviderError) as e:
            VaultKeyProvider(uri, address=transit.address, auth=auth).wrap(key, CTX)
        assert _reason(e) == reason


def test_vault_unreachable_and_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "x")
    closed = servers.free_port()

    def wrap_failure(address: str) -> str:
        p = VaultKeyProvider.from_uri("vault://transit/keys/dr", VaultOptions(address=address))
        with pytest.raises(KeyProviderError) as e:
            p.wrap(os.urandom(32), CTX)
        return _reason(e)

    assert wrap_failure(f"http://127.0.0.1:{closed}") == (
        f"cannot reach Vault at http://127.0.0.1:{closed} during transit/encrypt/dr (connection failed)"
    )
    # An address carrying credentials is quoted redacted (the message reaches logs and Events).
    assert wrap_failure(f"http://admin:hunter2@127.0.0.1:{closed}") == (
        f"cannot reach Vault at http://***@127.0.0.1:{closed} during transit/encrypt/dr (connection failed)"
    )
    # A server that accepts the connection and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        addr = f"http://127.0.0.1:{silent.getsockname()[1]}"
        p = VaultKeyProvider.from_uri("vault://transit/keys/dr", VaultOptions(address=addr), timeout=0.3)
        with pytest.raises(KeyProviderError) as e:
            p.unwrap(Wrapped(b"vault:v1:AAAA"), CTX)
    assert _reason(e) == f"Vault at {addr} did not answer within 0.3s during transit/decrypt/dr"


def test_vault_error_mapping_for_rarer_answers() -> None:
    # Answers the dev server does not give on demand, as the hvac exceptions they arrive as.
    import hvac.exceptions
    import requests

    p = VaultKeyProvider.from_uri("vault://transit/keys/dr", VaultOptions(address="https://vault:8200"))
    what = "transit/decrypt/dr"
    cases: list[tuple[Exception, str]] = [
        (
            hvac.exceptions.VaultDown(errors=["Vault is in standby mode"]),
            "Vault is unavailable during transit/decrypt/dr: Vault is in standby mode",
        ),
        (
            hvac.exceptions.InternalServerError(errors=["1 error occurred:\n\t* storage unavailable\n\n"]),
            "Vault error during transit/decrypt/dr (InternalServerError): storage unavailable",
        ),
        (
            hvac.exceptions.RateLimitExceeded(
                errors=["request path transit/decrypt/dr: rate limit quota exceeded"]
            ),
            "Vault rate-limited transit/decrypt/dr (rate limit quota exceeded) and kept refusing it "
            "after 5 attempts; retry later or raise the quota",
        ),
        (
            hvac.exceptions.InvalidRequest(errors=["something new"]),
            "Vault refused transit/decrypt/dr: something new",
        ),
        (
            requests.exceptions.TooManyRedirects(),
            "request to Vault at https://vault:8200 failed during transit/decrypt/dr: TooManyRedirects",
        ),
        (
            hvac.exceptions.InvalidRequest(
                errors=["ciphertext or signature version is disallowed by policy (too old)"]
            ),
            "the slot was wrapped with transit key version (unknown), below the key's min_decryption_version: "
            "lower min_decryption_version to (unknown), run `dr key rotate` to rewrap every slot with the "
            "newest version, and only then raise it",
        ),
    ]
    for exc, expected in cases:
        assert p.describe_error(exc, what) == expected


class OddVault:
    """An HTTP server answering every Vault request with 200 and a fixed JSON body."""

    def __init__(self, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_PUT = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_vault_answers_that_break_the_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULT_TOKEN", "x")
    odd = OddVault({"data": {"ciphertext": "not-a-vault-ciphertext", "plaintext": "%%%"}})
    try:
        p = VaultKeyProvider.from_uri("vault://transit/keys/dr", VaultOptions(address=odd.address))
        with pytest.raises(KeyProviderError) as e:
            p.rewrap(Wrapped(b"vault:v1:AAAA"), CTX)
        assert _reason(e) == "Vault returned an unexpected ciphertext from transit/rewrap/dr"
        with pytest.raises(KeyProviderError) as e:
            p.unwrap(Wrapped(b"vault:v1:AAAA"), CTX)
        assert _reason(e) == "Vault returned no plaintext from transit/decrypt/dr"
    finally:
        odd.close()


def test_vault_sealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = servers.openbao(tmp_path / "bao").start()  # its own server: sealing is for good
    try:
        root = _hvac(server.info["address"], server.info["token"])
        root.sys.enable_secrets_engine("transit")
        root.secrets.transit.create_key(name="dr", derived=True)
        p = VaultKeyProvider.from_uri("vault://transit/keys/dr", VaultOptions(address=server.info["address"]))
        monkeypatch.setenv("VAULT_TOKEN", server.info["token"])
        w = p.wrap(os.urandom(32), CTX)
        root.sys.seal()
        with pytest.raises(KeyProviderError) as e:
            p.unwrap(w, CTX)
        assert _reason(e) == "Vault is sealed (transit/decrypt/dr refused); unseal it and retry"
        # Login on a sealed Vault says so too.
        (tmp_path / "r").write_text("role")
        (tmp_path / "s").write_text("secret")
        auth = VaultAuth(
            method="approle", role_id_file=str(tmp_path / "r"), secret_id_file=str(tmp_path / "s")
        )
        with pytest.raises(KeyProviderError) as e:
            VaultKeyProvider.from_uri(
                "vault://transit/keys/dr", VaultOptions(address=server.info["address"], auth=auth)
            ).unwrap(w, CTX)
        assert _reason(e) == "Vault is sealed (AppRole login at auth/approle refused); unseal it and retry"
    finally:
        server.stop()
        servers.remove_tree(tmp_path / "bao")


def _openbao_tls(workdir: Path) -> servers.Server:
    """A dev OpenBao serving TLS with a CA it generates (vault-ca.pem) into ``workdir/certs``."""
    addr = f"127.0.0.1:{servers.free_port()}"
    certs = workdir / "certs"
    certs.mkdir(parents=True, exist_ok=True)  # bao writes into it but does not create it
    ca = certs / "vault-ca.pem"
    argv = [
        str(servers.BIN / "bao"), "server", "-dev", "-dev-tls", f"-dev-tls-cert-dir={certs}",
        "-dev-root-token-id=root", f"-dev-listen-address={addr}",
    ]  # fmt: skip

    def ready() -> bool:
        if not ca.is_file():
            return False
        try:
            ctx = ssl.create_default_context(cafile=str(ca))
            with urllib.request.urlopen(f"https://{addr}/v1/sys/health", context=ctx, timeout=2) as r:
                return bool(r.status == 200)
        except (OSError, ssl.SSLError):
            return False

    env = {
        "HOME": str(workdir),
        "BAO_ADDR": f"https://{addr}",
        "VAULT_ADDR": f"https://{addr}",
        "BAO_CACERT": str(ca),
    }
    server = servers.Server("openbao-tls", argv, ready, workdir, env)
    server.info = {"address": f"https://{addr}", "token": "root", "ca": str(ca)}
    return server


@pytest.fixture(scope="module")
def vault_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    workdir = tmp_path_factory.mktemp("openbao-tls")
    server = _openbao_tls(workdir).start()
    try:
        yield server
    finally:
        server.stop()
        servers.remove_tree(workdir)


def test_vault_tls_with_custom_ca_and_namespace(
    vault_tls: servers.Server, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    address, ca = vault_tls.info["address"], vault_tls.info["ca"]
    ns = f"team-{unique}"
    root = _hvac(address, "root", verify=ca)
    root.sys.create_namespace(path=ns)
    in_ns = _hvac(address, "root", verify=ca, namespace=ns)
    in_ns.sys.enable_secrets_engine("transit")
    in_ns.secrets.transit.create_key(name="dr", derived=True)
    monkeypatch.setenv("VAULT_TOKEN", "root")
    monkeypatch.delenv("VAULT_CACERT", raising=False)
    monkeypatch.delenv("VAULT_NAMESPACE", raising=False)

    p = VaultKeyProvider.from_uri(
        "vault://transit/keys/dr", VaultOptions(address=address, ca_cert=ca, namespace=ns)
    )
    key = os.urandom(32)
    w = p.wrap(key, CTX)
    assert p.unwrap(w, CTX) == key
    # The key lives only in the namespace.
    with pytest.raises(KeyProviderError) as e:
        VaultKeyProvider.from_uri(
            "vault://transit/keys/dr", VaultOptions(address=address, ca_cert=ca)
        ).unwrap(w, CTX)
    assert _reason(e).startswith("no transit secrets engine at transit/")
    # Without the CA, TLS verification fails with a hint.
    with pytest.raises(KeyProviderError) as e:
        VaultKeyProvider.from_uri(
            "vault://transit/keys/dr", VaultOptions(address=address, namespace=ns)
        ).unwrap(w, CTX)
    assert _reason(e).startswith(f"TLS verification of Vault at {address} failed during transit/decrypt/dr")
    assert "vault.caCert" in _reason(e)
    # VAULT_CACERT and VAULT_NAMESPACE are honoured like the Vault CLI does.
    monkeypatch.setenv("VAULT_CACERT", ca)
    monkeypatch.setenv("VAULT_NAMESPACE", ns)
    assert (
        VaultKeyProvider.from_uri("vault://transit/keys/dr", VaultOptions(address=address)).unwrap(w, CTX)
        == key
    )


# --------------------------------------------------------------------------- Vault Kubernetes auth


class TokenReviewer:
    """Stands in for the Kubernetes API's TokenReview endpoint, which the test cluster does not serve.

    Vault's real Kubernetes auth plugin posts the pod's JWT here; this answers
    "authenticated" for exactly one token, as the service account
    ``system:serviceaccount:<ns>:<name>``, and records what it was sent. What it
    does not do is what a real API server adds: verify the JWT's signature and
    that the service account exists.
    """

    def __init__(self, accepted_jwt: str, namespace: str, name: str, uid: str) -> None:
        self.accepted_jwt, self.namespace, self.name, self.uid = accepted_jwt, namespace, name, uid
        self.reviewed: list[str] = []
        reviewer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                token = body["spec"]["token"]
                reviewer.reviewed.append(token)
                status: dict[str, Any] = {"authenticated": False, "error": "invalid bearer token"}
                if (
                    self.path == "/apis/authentication.k8s.io/v1/tokenreviews"
                    and token == reviewer.accepted_jwt
                ):
                    status = {
                        "authenticated": True,
                        "user": {
                            "username": f"system:serviceaccount:{reviewer.namespace}:{reviewer.name}",
                            "uid": reviewer.uid,
                            "groups": [
                                "system:serviceaccounts",
                                f"system:serviceaccounts:{reviewer.namespace}",
                            ],
                        },
                        "audiences": body["spec"].get("audiences") or [],
                    }
                out = json.dumps(
                    {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}
                ).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TokenReviewer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _service_account_jwt(namespace: str, name: str, uid: str) -> str:
    """A JWT shaped like a projected service-account token (the reviewer vouches for it)."""

    def part(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    claims = {
        "iss": "https://kubernetes.default.svc",
        "sub": f"system:serviceaccount:{namespace}:{name}",
        "aud": ["https://kubernetes.default.svc"],
        "exp": 4102444800,
        "iat": 1700000000,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
    }
    sig = base64.urlsafe_b64encode(os.urandom(64)).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256', 'kid': 'test'})}.{part(claims)}.{sig}"


def _ca_pem() -> str:
    """Any CA certificate: Vault's Kubernetes auth config requires one (the reviewer speaks HTTP)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    k = ec.generate_private_key(ec.SECP256R1())
    n = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dr-test-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(n)
        .issuer_name(n)
        .public_key(k.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(k, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_vault_kubernetes_auth(
    transit: Transit, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, debug_logs: DebugLogs
) -> None:
    name = f"k8s-{unique}"
    uri = transit.create_key(name)
    policy = transit.policy(
        f"k8s-{unique}",
        {f"{transit.mount}/{op}/{name}": ["update"] for op in ("encrypt", "decrypt", "rewrap")},
    )
    jwt = _service_account_jwt("dr-system", "dr", f"uid-{unique}")
    token_file = tmp_path / "token"
    token_file.write_text(jwt)
    mount = f"kubernetes-{unique}"
    monkeypatch.delenv("VAULT_TOKEN")
    with TokenReviewer(jwt, "dr-system", "dr", f"uid-{unique}") as reviewer:
        transit.root.sys.enable_auth_method("kubernetes", path=mount)
        transit.root.write_data(
            f"auth/{mount}/config",
            data={
                "kubernetes_host": reviewer.url,
                "kubernetes_ca_cert": _ca_pem(),
                "disable_local_ca_jwt": True,
            },
        )
        transit.root.write_data(
            f"auth/{mount}/role/dr",
            data={
                "bound_service_account_names": "dr",
                "bound_service_account_namespaces": "dr-system",
                "token_policies": policy,
                "token_ttl": "10m",
            },
        )
        auth = VaultAuth(method="kubernetes", role="dr", token_path=str(token_file), mount=mount)
        p = VaultKeyProvider.from_uri(uri, VaultOptions(auth=auth))
        key = os.urandom(32)
        w = p.wrap(key, CTX)
        assert p.unwrap(w, CTX) == key
        # The JWT from tokenPath, reviewed for role "dr": once per operation, since the
        # token of each login is revoked when its operation is over.
        assert reviewer.reviewed == [jwt, jwt]

        # A token the API server does not vouch for.
        other = _service_account_jwt("dr-system", "dr", f"uid-{unique}")
        (tmp_path / "other").write_text(other)
        with pytest.raises(KeyProviderError) as e:
            VaultKeyProvider.from_uri(
                uri, VaultOptions(auth=dataclasses.replace(auth, token_path=str(tmp_path / "other")))
            ).unwrap(w, CTX)
        assert _reason(e) == (
            f"Kubernetes login at auth/{mount} as role 'dr' was denied: Vault did not accept the credentials "
            "(or no such auth method is enabled there)"
        )
        # A role that does not exist.
        with pytest.raises(KeyProviderError) as e:
            VaultKeyProvider.from_uri(uri, VaultOptions(auth=dataclasses.replace(auth, role="nope"))).unwrap(
                w, CTX
            )
        assert _reason(e).startswith(f"Kubernetes login at auth/{mount} as role 'nope' failed: ")
        assert "nope" in _reason(e).split("failed: ")[1]
        # Not in a pod: no token file.
        with pytest.raises(KeyProviderError) as e:
            VaultKeyProvider.from_uri(
                uri, VaultOptions(auth=dataclasses.replace(auth, token_path=str(tmp_path / "absent")))
            ).unwrap(w, CTX)
        assert _reason(e) == f"Kubernetes service-account token file {tmp_path / 'absent'} does not exist"
        # An auth mount that does not exist.
        with pytest.raises(KeyProviderError) as e:
            VaultKeyProvider.from_uri(
                uri, VaultOptions(auth=dataclasses.replace(auth, mount=f"absent-{unique}"))
            ).unwrap(w, CTX)
        assert _reason(e).startswith(f"Kubernetes login at auth/absent-{unique} as role 'dr' was denied")
    debug_logs.assert_clean([jwt, other, *secret_forms(key)])


def test_vault_logs_hold_no_token_or_key(
    transit: Transit, unique: str, monkeypatch: pytest.MonkeyPatch, debug_logs: DebugLogs
) -> None:
    name = f"log-{unique}"
    uri = transit.create_key(name)
    token = transit.token(
        [
            transit.policy(
                f"log-{unique}",
                {f"{transit.mount}/{op}/{name}": ["update"] for op in ("encrypt", "decrypt", "rewrap")},
            )
        ]
    )
    monkeypatch.setenv("VAULT_TOKEN", token)
    p = VaultKeyProvider.from_uri(uri, None)
    key = os.urandom(32)
    w = p.wrap(key, CTX)
    transit.root.secrets.transit.rotate_key(name=name, mount_point=transit.mount)
    assert p.unwrap(p.rewrap(w, CTX), CTX) == key
    with pytest.raises(KeyProviderError) as e:
        p.unwrap(w, OTHER_CTX)
    assert e.value.reason == "cannot decrypt: wrong key or context"  # the failure's answer is logged too
    assert "dr.crypto.providers.vault" in debug_logs.loggers()
    assert "urllib3.connectionpool" in debug_logs.loggers()
    debug_logs.assert_clean([token, *secret_forms(key)])


# =========================================================================== AWS KMS (moto)


@pytest.fixture
def kms(kms_env: dict[str, str]) -> Any:
    import boto3

    return boto3.session.Session().client(
        "kms", endpoint_url=kms_env["endpoint"], region_name=kms_env["region"]
    )


def test_awskms_roundtrip_with_id_alias_and_arn(kms: Any, unique: str) -> None:
    meta = kms.create_key(Description=f"dr {unique}")["KeyMetadata"]
    kms.create_alias(AliasName=f"alias/dr-{unique}", TargetKeyId=meta["KeyId"])
    key = os.urandom(32)
    for ref in (meta["KeyId"], f"alias/dr-{unique}", meta["Arn"]):
        p = AWSKMSKeyProvider.from_uri(f"awskms://{ref}", None)  # endpoint: AWS_ENDPOINT_URL_KMS
        w = p.wrap(key, CTX)
        assert w.meta == {"key_arn": meta["Arn"]}
        assert w.key_version is None
        assert_not_in_ciphertext(w, key)
        assert p.unwrap(w, CTX) == key
        with pytest.raises(KeyProviderError) as e:
            p.unwrap(w, OTHER_CTX)
        assert e.value.reason == "cannot decrypt: wrong key or encryption context"
        with pytest.raises(KeyProviderError) as e:
            p.rewrap(w, OTHER_CTX)
        assert e.value.reason == "cannot decrypt: wrong key or encryption context"


def test_awskms_rewrap_moves_slots_to_the_aliased_key(
    kms: Any, unique: str, kms_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = kms.create_key()["KeyMetadata"]
    new = kms.create_key()["KeyMetadata"]
    alias = f"alias/rot-{unique}"
    kms.create_alias(AliasName=alias, TargetKeyId=old["KeyId"])
    # The endpoint from the options, not the environment.
    monkeypatch.delenv("AWS_ENDPOINT_URL_KMS")
    p = AWSKMSKeyProvider.from_uri(f"awskms://{alias}", AWSKMSOptions(endpoint=kms_env["endpoint"]))
    key = os.urandom(32)
    w = p.wrap(key, CTX)
    assert w.meta["key_arn"] == old["Arn"]
    kms.update_alias(AliasName=alias, TargetKeyId=new["KeyId"])  # manual rotation: retarget the alias
    w2 = p.rewrap(w, CTX)  # ReEncrypt inside KMS, from the recorded key to the alias's key
    assert w2.meta["key_arn"] == new["Arn"]
    assert w2.ciphertext != w.ciphertext
    assert_not_in_ciphertext(w2, key)
    assert p.unwrap(w2, CTX) == key


def test_awskms_with_a_client_passed_in(kms: Any) -> None:
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    p = AWSKMSKeyProvider(f"awskms://{key_id}", client=kms)
    key = os.urandom(32)
    assert p.unwrap(p.rewrap(p.wrap(key, CTX), CTX), CTX) == key


def test_awskms_key_not_found(kms_env: dict[str, str], unique: str) -> None:
    p = AWSKMSKeyProvider.from_uri(f"awskms://alias/absent-{unique}", None)
    with pytest.raises(KeyProviderError) as e:
        p.wrap(os.urandom(32), CTX)
    assert (
        e.value.reason
        == f"KMS key alias/absent-{unique} not found (check the key id or alias and the region)"
    )


def test_awskms_unreachable_endpoint(kms_env: dict[str, str]) -> None:
    endpoint = f"http://127.0.0.1:{servers.free_port()}"
    p = AWSKMSKeyProvider("awskms://alias/dr", region="us-east-1", endpoint=endpoint, max_attempts=1)
    with pytest.raises(KeyProviderError) as e:
        p.wrap(os.urandom(32), CTX)
    assert e.value.reason == f"cannot reach AWS KMS at {endpoint} (kms:Encrypt)"


def test_awskms_a_silent_endpoint_fails_in_max_attempts_tries(kms_env: dict[str, str]) -> None:
    """``max_attempts`` counts every try: botocore's ``retries.max_attempts`` counts only the
    retries, so 3 made 4 tries and a KMS that never answered took 2 minutes to say so."""
    accepted: list[socket.socket] = []
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent.settimeout(0.05)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                try:
                    accepted.append(silent.accept()[0])
                except TimeoutError:
                    continue

        t = threading.Thread(target=accept)
        t.start()
        try:
            p = AWSKMSKeyProvider(
                "awskms://alias/dr", region="us-east-1", endpoint=endpoint, read_timeout=0.3
            )
            with pytest.raises(KeyProviderError) as e:
                p.unwrap(Wrapped(os.urandom(64)), CTX)
        finally:
            stop.set()
            t.join()
            for c in accepted:
                c.close()
    assert e.value.reason == f"AWS KMS at {endpoint} did not answer in time (kms:Decrypt)"
    assert len(accepted) == 3


def test_awskms_no_credentials_and_no_region(
    monkeypatch: pytest.MonkeyPatch, isolated_home: Path, kms_env: dict[str, str]
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(isolated_home / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(isolated_home / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(KeyProviderError) as e:
        AWSKMSKeyProvider.from_uri("awskms://alias/dr", None).wrap(os.urandom(32), CTX)
    assert e.value.reason.startswith("no AWS credentials found")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(KeyProviderError) as e:
        AWSKMSKeyProvider.from_uri("awskms://alias/dr", None).wrap(os.urandom(32), CTX)
    assert e.value.reason == "no AWS region: set awskms.region, AWS_REGION, or use a key ARN"


def test_awskms_credentials_that_cannot_be_had_say_what_to_do(
    monkeypatch: pytest.MonkeyPatch, isolated_home: Path, kms_env: dict[str, str]
) -> None:
    # "AWS KMS client setup failed: ProfileNotFound" named neither the profile nor the fix.
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    config = isolated_home / "aws-config"
    config.write_text(
        "[profile broken]\n"
        'credential_process = /bin/sh -c "echo hunter2-in-stderr >&2; exit 3"\n'
        "[profile sso]\nsso_session = s\nsso_account_id = 123456789012\nsso_role_name = r\n"
        "[sso-session s]\nsso_start_url = https://example.awsapps.com/start\nsso_region = us-east-1\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(isolated_home / "no-credentials"))

    def reason(profile: str) -> KeyProviderError:
        monkeypatch.setenv("AWS_PROFILE", profile)
        with pytest.raises(KeyProviderError) as e:
            AWSKMSKeyProvider.from_uri("awskms://alias/dr", None).unwrap(Wrapped(b"x" * 64), CTX)
        return e.value

    absent = reason("absent")
    assert isinstance(absent, KeyProviderMisconfigured)
    assert absent.reason == "AWS profile 'absent' not found in the AWS config files (check AWS_PROFILE)"
    broken = reason("broken").reason
    assert "hunter2" not in broken, "a credential_process's stderr may hold secrets"
    assert broken == (
        "AWS credentials could not be obtained from custom-process (client setup); "
        "check that credential source or refresh it"
    )
    assert reason("sso").reason == (
        "the AWS SSO session is missing or expired (kms:Decrypt): run `aws sso login --profile sso`"
    )


def test_awskms_uri_and_region_rules() -> None:
    arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert region_of(arn) == "eu-west-1"
    assert region_of("alias/dr") is None
    assert AWSKMSKeyProvider.from_uri(f"awskms://{arn}", None).region == "eu-west-1"
    assert (
        AWSKMSKeyProvider.from_uri("awskms://alias/dr", AWSKMSOptions(region="us-west-2")).region
        == "us-west-2"
    )
    with pytest.raises(InvalidInput, match="differs from the region 'eu-west-1'"):
        AWSKMSKeyProvider.from_uri(f"awskms://{arn}", AWSKMSOptions(region="us-east-1"))
    for bad in ("awskms://", "awskms://alias/", "awskms://a b", "awskms:alias/x"):
        with pytest.raises(InvalidInput, match="use awskms://"):
            AWSKMSKeyProvider.from_uri(bad, None)
    with pytest.raises(InvalidInput, match="not a KMS ARN"):
        AWSKMSKeyProvider.from_uri("awskms://arn:aws:s3:::bucket", None)


KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _client_error(code: str, message: str, op: str = "Decrypt", status: int = 400) -> Exception:
    from botocore.exceptions import ClientError

    err: Exception = ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, op
    )
    return err


# The codes and messages real AWS KMS returns (moto does not produce most of them:
# it decrypts with disabled keys and encrypts with keys pending deletion).
@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (
            "DisabledException",
            f"{KEY_ARN} is disabled.",
            "KMS key is disabled (kms:Decrypt refused); enable it or use another key slot",
        ),
        (
            "AccessDeniedException",
            "User: arn:aws:sts::111122223333:assumed-role/dr/i-0 is not authorized to perform: kms:Decrypt "
            f"on resource: {KEY_ARN} because no identity-based policy allows the kms:Decrypt action",
            "access denied: kms:Decrypt on alias/dr is not allowed by the IAM or key policy",
        ),
        (
            "NotFoundException",
            f"Key '{KEY_ARN}' does not exist",
            "KMS key alias/dr not found (check the key id or alias and the region)",
        ),
        (
            "KMSInvalidStateException",
            f"{KEY_ARN} is pending deletion.",
            "KMS key is pending deletion; cancel the deletion (kms:CancelKeyDeletion) and enable it to use this slot",
        ),
        (
            "KMSInvalidStateException",
            f"{KEY_ARN} is pending import.",
            f"KMS key is not usable in its current state (kms:Decrypt): {KEY_ARN} is pending import.",
        ),
        ("InvalidCiphertextException", "", "cannot decrypt: wrong key or encryption context"),
        (
            "IncorrectKeyException",
            "The key ID in the request does not identify a CMK that can perform this operation.",
            "cannot decrypt: the slot was wrapped by another KMS key than alias/dr",
        ),
        (
            "KeyUnavailableException",
            f"{KEY_ARN} is unavailable.",
            "KMS key is temporarily unavailable; retry later",
        ),
        ("KMSInternalException", "", "AWS KMS failed internally (KMSInternalException); retry later"),
        (
            "ThrottlingException",
            "Rate exceeded",
            "AWS KMS throttled kms:Decrypt (ThrottlingException); retry later",
        ),
        (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            "AWS credentials were rejected by KMS (UnrecognizedClientException): check or refresh them",
        ),
        (
            "ExpiredTokenException",
            "The security token included in the request is expired",
            "AWS credentials were rejected by KMS (ExpiredTokenException): check or refresh them",
        ),
        (
            "ValidationException",
            "1 validation error detected",
            "AWS KMS refused kms:Decrypt (ValidationException): 1 validation error detected",
        ),
    ],
)
def test_awskms_error_mapping(code: str, message: str, expected: str) -> None:
    assert describe_error(_client_error(code, message), "kms:Decrypt", "alias/dr") == expected


def test_awskms_transport_error_mapping() -> None:
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ParamValidationError,
        ReadTimeoutError,
        SSLError,
    )

    ep = "https://kms.us-east-1.amazonaws.com"
    assert describe_error(EndpointConnectionError(endpoint_url=ep), "kms:Encrypt", "k", ep) == (
        f"cannot reach AWS KMS at {ep} (kms:Encrypt)"
    )
    assert describe_error(ConnectTimeoutError(endpoint_url=ep), "kms:Encrypt", "k", ep) == (
        f"AWS KMS at {ep} did not answer in time (kms:Encrypt)"
    )
    assert "did not answer in time" in describe_error(ReadTimeoutError(endpoint_url=ep), "kms:Encrypt", "k")
    assert describe_error(NoCredentialsError(), "kms:Encrypt", "k").startswith("no AWS credentials found")
    assert describe_error(NoRegionError(), "kms:Encrypt", "k").startswith("no AWS region")
    assert describe_error(ConnectionClosedError(endpoint_url=ep), "kms:Decrypt", "k", ep) == (
        f"cannot reach AWS KMS at {ep} (kms:Decrypt)"
    )
    assert describe_error(SSLError(endpoint_url=ep, error="bad cert"), "kms:Decrypt", "k", ep) == (
        f"TLS verification of AWS KMS at {ep} failed (kms:Decrypt)"
    )
    assert describe_error(ParamValidationError(report="bad"), "kms:Decrypt", "k") == (
        "AWS KMS kms:Decrypt failed: ParamValidationError"
    )
    assert describe_error(ValueError("x"), "kms:Decrypt", "k") == "AWS KMS kms:Decrypt failed: ValueError"


def test_awskms_logs_hold_no_key(kms: Any, debug_logs: DebugLogs) -> None:
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    p = AWSKMSKeyProvider.from_uri(f"awskms://{key_id}", None)
    key = os.urandom(32)
    w = p.wrap(key, CTX)
    assert p.unwrap(p.rewrap(w, CTX), CTX) == key
    with pytest.raises(KeyProviderError) as e:
        p.unwrap(w, OTHER_CTX)
    assert e.value.reason == "cannot decrypt: wrong key or encryption context"
    # botocore logged its request and response bodies, with the key material withheld.
    assert {"botocore.endpoint", "botocore.parsers"} <= debug_logs.loggers()
    assert any(payload_logs.WITHHELD in d for d in debug_logs.dumps())
    debug_logs.assert_clean(secret_forms(key))


# =========================================================================== Cloud KMS (gRPC fake)


@pytest.fixture(scope="module")
def fake_kms() -> Iterator[FakeKMS]:
    fake = FakeKMS()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@dataclass
class GCPKey:
    fake: FakeKMS
    admin: Any  # KeyManagementServiceClient
    name: str
    uri: str
    versions: list[str] = field(default_factory=list)

    def provider(self, **kw: Any) -> GCPKMSKeyProvider:
        return GCPKMSKeyProvider.from_uri(self.uri, GCPKMSOptions(endpoint=self.fake.endpoint), **kw)

    def new_primary(self) -> str:
        v = self.admin.create_crypto_key_version(request={"parent": self.name, "crypto_key_version": {}})
        self.admin.update_crypto_key_primary_version(
            request={"name": self.name, "crypto_key_version_id": v.name.rsplit("/", 1)[1]}
        )
        return str(v.name)

    def set_state(self, version: str, state: str) -> None:
        from google.cloud import kms_v1
        from google.protobuf import field_mask_pb2

        self.admin.update_crypto_key_version(
            request={
                "crypto_key_version": {
                    "name": version,
                    "state": getattr(kms_v1.CryptoKeyVersion.CryptoKeyVersionState, state),
                },
                "update_mask": field_mask_pb2.FieldMask(paths=["state"]),
            }
        )


@pytest.fixture
def gcp_key(fake_kms: FakeKMS, unique: str) -> Iterator[GCPKey]:
    from google.cloud import kms_v1

    admin = admin_client(fake_kms.endpoint)
    parent = "projects/dr-test/locations/global"
    ring = admin.create_key_ring(request={"parent": parent, "key_ring_id": f"r-{unique}", "key_ring": {}})
    key = admin.create_crypto_key(
        request={
            "parent": ring.name,
            "crypto_key_id": "dr",
            "crypto_key": {"purpose": kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT},
        }
    )
    yield GCPKey(fake_kms, admin, key.name, f"gcpkms://{key.name}", [key.primary.name])
    admin.transport.close()


def test_gcpkms_roundtrip_binds_the_repository(gcp_key: GCPKey) -> None:
    p = gcp_key.provider()
    key = os.urandom(32)
    w = p.wrap(key, CTX)
    assert w.key_version == f"{gcp_key.name}/cryptoKeyVersions/1"
    assert_not_in_ciphertext(w, key)
    assert p.unwrap(w, CTX) == key
    with pytest.raises(KeyProviderError) as e:
        p.unwrap(w, OTHER_CTX)
    assert e.value.reason == "cannot decrypt: wrong key or context"
    with pytest.raises(KeyProviderError) as e:
        p.rewrap(w, OTHER_CTX)
    assert e.value.reason == "cannot decrypt: wrong key or context"
    with pytest.raises(KeyProviderError) as e:
        p.unwrap(Wrapped(b"garbage" * 8), CTX)
    assert e.value.reason == "cannot decrypt: wrong key or context"


def test_gcpkms_rotation_rewraps_with_the_primary_version(gcp_key: GCPKey) -> None:
    p = gcp_key.provider()
    key = os.urandom(32)
    old = p.wrap(key, CTX)
    v2 = gcp_key.new_primary()
    assert p.unwrap(old, CTX) == key  # older versions keep decrypting
    new = p.rewrap(old, CTX)
    assert new.key_version == v2
    assert new.ciphertext != old.ciphertext
    assert p.unwrap(new, CTX) == key
    # Disable the old version: slots still on it fail clearly, rewrapped ones work.
    gcp_key.set_state(gcp_key.versions[0], "DISABLED")
    with pytest.raises(KeyProviderError) as e:
        p.unwrap(old, CTX)
    assert e.value.reason == "KMS key version 1 is disabled; enable it or use another key slot"
    assert p.unwrap(new, CTX) == key
    # A disabled primary refuses to wrap.
    gcp_key.set_state(v2, "DISABLED")
    with pytest.raises(KeyProviderError) as e:
        p.wrap(key, CTX)
    assert e.value.reason == "KMS key version 2 is disabled; enable it or use another key slot"
    gcp_key.set_state(v2, "ENABLED")
    assert p.unwrap(p.wrap(key, CTX), CTX) == key


def test_gcpkms_with_a_client_passed_in(gcp_key: GCPKey) -> None:
    p = GCPKMSKeyProvider(gcp_key.uri, client=gcp_key.admin)
    key = os.urandom(32)
    assert p.unwrap(p.wrap(key, CTX), CTX) == key


def test_gcpkms_wrong_key(gcp_key: GCPKey, fake_kms: FakeKMS, unique: str) -> None:
    from google.cloud import kms_v1

    other = gcp_key.admin.create_crypto_key(
        request={
            "parent": gcp_key.name.rsplit("/cryptoKeys/", 1)[0],
            "crypto_key_id": "other",
            "crypto_key": {"purpose": kms_v1.CryptoKey.CryptoKeyPurpose.ENCRYPT_DECRYPT},
        }
    )
    w = gcp_key.provider().wrap(os.urandom(32), CTX)
    p2 = GCPKMSKeyProvider.from_uri(f"gcpkms://{other.name}", GCPKMSOptions(endpoint=fake_kms.endpoint))
    with pytest.raises(KeyProviderError) as e:
        p2.unwrap(w, CTX)
    assert e.value.reason == "cannot decrypt: wrong key or context"
    absent = f"projects/dr-test/locations/global/keyRings/r-{unique}/cryptoKeys/absent"
    with pytest.raises(KeyProviderError) as e:
        GCPKMSKeyProvider.from_uri(f"gcpkms://{absent}", GCPKMSOptions(endpoint=fake_kms.endpoint)).wrap(
            os.urandom(32), CTX
        )
    assert e.value.reason == f"CryptoKey {absent} not found"


def test_gcpkms_detects_corruption_in_transit(gcp_key: GCPKey) -> None:
    p = gcp_key.provider()
    key = os.urandom(32)
    w = p.wrap(key, CTX)
    gcp_key.fake.corrupt_next_response = True
    with pytest.raises(KeyProviderError) as e:
        p.unwrap(w, CTX)
    assert e.value.reason == "Cloud KMS decrypt response failed its CRC32C integrity check; retry"
    gcp_key.fake.corrupt_next_response = True
    with pytest.raises(KeyProviderError) as e:
        p.wrap(key, CTX)
    assert e.value.reason == "Cloud KMS encrypt response failed its CRC32C integrity check; retry"
    assert p.unwrap(w, CTX) == key


def test_gcpkms_a_down_endpoint_is_reported_in_seconds() -> None:
    # UNAVAILABLE (nothing listens) was retried until the 30 s call timeout: with a Cloud
    # KMS slot tried first, every open waited ~27 s before the next slot (Vault and AWS
    # KMS say "cannot reach" in a fraction of a second).
    endpoint = f"127.0.0.1:{servers.free_port()}"
    p = GCPKMSKeyProvider.from_uri("gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k",
                                   GCPKMSOptions(endpoint=endpoint))  # fmt: skip
    start = time.monotonic()
    with pytest.raises(KeyProviderError) as e:
        p.unwrap(Wrapped(os.urandom(64)), CTX)
    assert e.value.reason == f"cannot reach Cloud KMS at {endpoint} (decrypt)"
    assert time.monotonic() - start < 10


def test_gcpkms_unreachable_and_no_credentials(monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> None:
    endpoint = f"127.0.0.1:{servers.free_port()}"
    uri = "gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k"
    p = GCPKMSKeyProvider.from_uri(uri, GCPKMSOptions(endpoint=endpoint), timeout=0.5)
    with pytest.raises(KeyProviderError) as e:
        p.wrap(os.urandom(32), CTX)
    assert e.value.reason == f"cannot reach Cloud KMS at {endpoint} (encrypt)"
    # Without an endpoint the client needs Application Default Credentials.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(isolated_home / "absent.json"))
    with pytest.raises(KeyProviderError) as e:
        GCPKMSKeyProvider.from_uri(uri, None).wrap(os.urandom(32), CTX)
    assert e.value.reason.startswith("no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS")
    # A TLS endpoint (regional, Private Service Connect) also uses ADC.
    regional = GCPKMSKeyProvider.from_uri(
        uri, GCPKMSOptions(endpoint="https://europe-west1-cloudkms.googleapis.com")
    )
    with pytest.raises(KeyProviderError) as e:
        regional.wrap(os.urandom(32), CTX)
    assert e.value.reason.startswith("no Google credentials")


def test_gcpkms_uri_and_endpoint_rules() -> None:
    name = "projects/p/locations/europe-west1/keyRings/r/cryptoKeys/k"
    assert GCPKMSKeyProvider.from_uri(f"gcpkms://{name}", None).key_name == name
    with pytest.raises(InvalidInput, match="name the CryptoKey, not a version"):
        GCPKMSKeyProvider.from_uri(f"gcpkms://{name}/cryptoKeyVersions/3", None)
    for bad in ("gcpkms://", "gcpkms://projects/p/keyRings/r/cryptoKeys/k", f"gcpkms://{name}/", "gcpkms:/x"):
        with pytest.raises(InvalidInput, match="use gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K"):
            GCPKMSKeyProvider.from_uri(bad, None)
    assert plaintext_target("127.0.0.1:9000") == "127.0.0.1:9000"
    assert plaintext_target("localhost:9000") == "localhost:9000"
    assert plaintext_target("[::1]:9000") == "[::1]:9000"
    assert plaintext_target("http://10.0.0.5:9000/") == "10.0.0.5:9000"
    assert plaintext_target("cloudkms.googleapis.com") is None
    assert plaintext_target("europe-west1-cloudkms.googleapis.com:443") is None
    assert plaintext_target("https://127.0.0.1:9000") is None


@pytest.mark.parametrize(
    ("exc", "message", "expected"),
    [
        (
            "PermissionDenied",
            "Permission 'cloudkms.cryptoKeyVersions.useToDecrypt' denied on resource "
            "'projects/p/locations/l/keyRings/r/cryptoKeys/k' (or it may not exist).",
            "permission denied: decrypt on K (grant roles/cloudkms.cryptoKeyEncrypterDecrypter to dr's identity; "
            "KMS also says this when the key does not exist)",
        ),
        (
            "Unauthenticated",
            "Request had invalid authentication credentials.",
            "Google credentials were rejected by Cloud KMS (invalid or expired)",
        ),
        (
            "FailedPrecondition",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/4 is not enabled, current state is: "
            "DESTROY_SCHEDULED.",
            "KMS key version 4 is destroyed or scheduled for destruction",
        ),
        (
            "FailedPrecondition",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/2 is not enabled, current state is: "
            "DISABLED.",
            "KMS key version 2 is disabled; enable it or use another key slot",
        ),
        (
            "InvalidArgument",
            "Decryption failed: verify that 'name' refers to the correct CryptoKey.",
            "cannot decrypt: wrong key or context",
        ),
        ("ResourceExhausted", "Quota exceeded", "Cloud KMS quota exhausted (decrypt); retry later"),
        (
            "DeadlineExceeded",
            "Deadline Exceeded",
            "Cloud KMS at cloudkms.googleapis.com did not answer in time (decrypt)",
        ),
        (
            "InternalServerError",
            "Internal error.",
            "Cloud KMS refused decrypt (InternalServerError): Internal error.",
        ),
        (
            "ServiceUnavailable",
            "The service is currently unavailable.",
            "cannot reach Cloud KMS at cloudkms.googleapis.com (decrypt)",
        ),
        (
            "FailedPrecondition",
            "The request cannot be fulfilled: key is being imported",
            "KMS key is not usable for decrypt: The request cannot be fulfilled: key is being imported",
        ),
    ],
)
def test_gcpkms_error_mapping(exc: str, message: str, expected: str) -> None:
    # The exception classes google-api-core raises for the status codes real Cloud KMS returns.
    from google.api_core import exceptions as gexc

    assert gcp_describe_error(getattr(gexc, exc)(message), "decrypt", "K") == expected


def test_gcpkms_retry_auth_and_other_error_mapping() -> None:
    import google.auth.exceptions
    from google.api_core import exceptions as gexc

    assert gcp_describe_error(google.auth.exceptions.RefreshError("x"), "encrypt", "K") == (
        "Google credentials could not be refreshed (expired or revoked?)"
    )
    late = gexc.RetryError("Timeout of 30.0s exceeded", cause=gexc.DeadlineExceeded("slow"))
    assert gcp_describe_error(late, "encrypt", "K", "kms.example:443") == (
        "Cloud KMS at kms.example:443 did not answer in time (encrypt)"
    )
    down = gexc.RetryError("Timeout of 30.0s exceeded", cause=gexc.ServiceUnavailable("down"))
    assert (
        gcp_describe_error(down, "encrypt", "K")
        == "cannot reach Cloud KMS at cloudkms.googleapis.com (encrypt)"
    )
    # InvalidArgument outside decrypt is not a wrong-context verdict.
    assert gcp_describe_error(gexc.InvalidArgument("bad name"), "encrypt", "K") == (
        "Cloud KMS refused encrypt (InvalidArgument): bad name"
    )
    assert gcp_describe_error(ValueError("x"), "encrypt", "K") == "Cloud KMS encrypt failed: ValueError"


def test_gcpkms_logs_hold_no_key(gcp_key: GCPKey, debug_logs: DebugLogs) -> None:
    p = gcp_key.provider()
    key = os.urandom(32)
    w = p.wrap(key, CTX)
    gcp_key.new_primary()
    assert p.unwrap(p.rewrap(w, CTX), CTX) == key
    with pytest.raises(KeyProviderError) as e:
        p.unwrap(w, OTHER_CTX)
    assert e.value.reason == "cannot decrypt: wrong key or context"
    # The gRPC transport logged request and response payloads, with the key material withheld.
    assert any(n.startswith("google.cloud.kms_v1") for n in debug_logs.loggers())
    assert any(payload_logs.WITHHELD in d for d in debug_logs.dumps())
    debug_logs.assert_clean(secret_forms(key))


def test_awskms_a_slot_opened_in_another_region_says_which(kms_env: dict[str, str], unique: str) -> None:
    # Disaster recovery into another region: the new cluster's AWS_REGION is not the
    # key's. The slot records the ARN of the key that wrapped it: say where that is.
    import boto3

    east = boto3.session.Session().client("kms", region_name="us-east-1", endpoint_url=kms_env["endpoint"])
    key_id = east.create_key()["KeyMetadata"]["KeyId"]
    east.create_alias(AliasName=f"alias/dr-{unique}", TargetKeyId=key_id)
    for uri in (f"awskms://{key_id}", f"awskms://alias/dr-{unique}"):
        key = os.urandom(32)
        w = AWSKMSKeyProvider(uri, region="us-east-1").wrap(key, CTX)
        with pytest.raises(KeyProviderError) as e:
            AWSKMSKeyProvider(uri, region="eu-west-1").unwrap(w, CTX)
        assert e.value.reason == (
            f"KMS key {uri.removeprefix('awskms://')} not found in eu-west-1; the slot was wrapped by "
            f"{w.meta['key_arn']}: set awskms.region to us-east-1 for this key provider"
        )
        assert AWSKMSKeyProvider(uri, region="us-east-1").unwrap(w, CTX) == key


def test_vault_wrapping_with_a_key_that_does_not_exist_says_it_may_not(
    transit: Transit, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `dr key add vault://transit/keys/<typo>` with a token that may use every key but not
    # create one: Vault answers 403 (encrypting with a missing key is a create), which
    # alone reads as a policy or token problem.
    policy = transit.policy(f"any-key-{unique}", {f"{transit.mount}/encrypt/*": ["update"]})
    monkeypatch.setenv("VAULT_TOKEN", transit.token([policy]))
    with pytest.raises(KeyProviderError) as e:
        VaultKeyProvider.from_uri(f"vault://{transit.mount}/keys/typo-{unique}", None).wrap(
            os.urandom(32), CTX
        )
    assert _reason(e) == (
        f"permission denied on {transit.mount}/encrypt/typo-{unique}: the token's policies do not allow it "
        f"(or the token expired or was revoked, or transit key 'typo-{unique}' does not exist and the "
        "token may not create it)"
    )
    # An existing key: encrypting is allowed.
    uri = transit.create_key(f"exists-{unique}")
    assert VaultKeyProvider.from_uri(uri, None).wrap(os.urandom(32), CTX).key_version == "v1"


def test_vault_rate_limiting_is_retried_a_bounded_number_of_times(
    transit: Transit, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A backup starts one mover per volume, and each opens the repository: dozens of
    # decrypts in the same second can meet a Vault rate-limit quota (429). Like the AWS
    # SDK's throttling retries, a refused request is tried again after a backoff: a
    # 429 is refused before it is processed, so a retry repeats nothing.
    uri = transit.create_key(f"rl-{unique}")
    quota = f"sys/quotas/rate-limit/dr-{unique}"
    transit.root.write_data(quota, data={"rate": 2, "interval": "1s", "path": f"{transit.mount}/"})
    try:
        key = os.urandom(32)
        w = VaultKeyProvider.from_uri(uri, None).wrap(key, CTX)  # encrypt + the derived-key probe
        for _ in range(4):
            assert VaultKeyProvider.from_uri(uri, None).unwrap(w, CTX) == key

        # A quota nothing gets through: the retries end, with one line saying why.
        transit.root.write_data(quota, data={"rate": 1, "interval": "1h", "path": f"{transit.mount}/"})
        monkeypatch.setattr("dr.crypto.providers.vault.RATE_LIMIT_FIRST_WAIT", 0.01)
        with pytest.raises(KeyProviderError) as e:  # the first may spend the one request of the hour
            VaultKeyProvider.from_uri(uri, None).unwrap(w, CTX)
            VaultKeyProvider.from_uri(uri, None).unwrap(w, CTX)
        assert _reason(e) == (
            f"Vault rate-limited {transit.mount}/decrypt/rl-{unique} (rate limit quota exceeded) "
            "and kept refusing it after 5 attempts; retry later or raise the quota"
        )
    finally:
        transit.root.delete(quota)


def _refusals_of_address(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> list[tuple[str, KeyProviderMisconfigured]]:
    """How opening a Vault key fails with ``address`` given as vault.address, then as VAULT_ADDR
    (set in both cases): (where the address came from, the error)."""
    monkeypatch.setenv("VAULT_ADDR", address)
    found: list[tuple[str, KeyProviderMisconfigured]] = []
    for opts, source in ((VaultOptions(address=address), "vault.address"), (None, "VAULT_ADDR")):
        with pytest.raises(KeyProviderMisconfigured) as e:
            VaultKeyProvider.from_uri("vault://transit/keys/dr", opts).unwrap(Wrapped(b"vault:v1:AAAA"), CTX)
        found.append((source, e.value))
    return found


def test_vault_an_address_that_is_not_a_url_is_a_configuration_mistake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # VAULT_ADDR=vault.example.com:8200 (no scheme) is an easy mistake; requests called it
    # "InvalidSchema", exit 1, as if Vault had failed.
    monkeypatch.setenv("VAULT_TOKEN", "x")
    for address in (
        "vault.example.com:8200",
        "127.0.0.1:8200",
        "ftp://vault:8200",
        "https://",
        "http://[::1",
    ):
        for source, e in _refusals_of_address(monkeypatch, address):
            assert (
                e.reason == f"Vault address {address!r} (from {source}) is not a URL: use https://HOST:PORT"
            )
            assert e.exit_code == 2


def test_vault_an_address_ending_in_the_api_path_is_a_configuration_mistake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # hvac adds /v1 to every request: an address copied from the API docs sent them to
    # /v1/v1/… (tests/test_cli_key_providers.py has it against OpenBao).
    monkeypatch.setenv("VAULT_TOKEN", "x")
    # (address, as the message shows it: its credentials masked, the address to use instead)
    for address, shown, fixed in (
        (
            "https://vault.example.com:8200/v1",
            "https://vault.example.com:8200/v1",
            "https://vault.example.com:8200",
        ),
        ("https://vault.example.com/v1/", "https://vault.example.com/v1/", "https://vault.example.com"),
        ("https://user:hunter2@example.com/v1", "https://***@example.com/v1", "https://***@example.com"),
    ):
        for source, e in _refusals_of_address(monkeypatch, address):
            assert e.reason == (
                f"Vault address {shown!r} (from {source}) ends in /v1, the API's path, "
                f"which dr adds itself: use {fixed}"
            )
            assert "hunter2" not in e.reason and e.exit_code == 2


def test_vault_an_address_under_a_path_ending_in_v1_is_taken_as_it_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Behind a gateway, Vault may be served under any path, one ending in /v1 too
    # (https://gateway/vault/v1 -> Vault's root): the vault CLI and hvac join the address's
    # path and /v1/…, so that address works for them, and dr refused it with no way around.
    # Only the bare /v1 of the API docs is surely the mistake.
    monkeypatch.setenv("VAULT_TOKEN", "x")
    for address in ("http://127.0.0.1:9/vault/v1", "http://127.0.0.1:9/gw/v1/"):
        with pytest.raises(KeyProviderError) as e:
            VaultKeyProvider.from_uri("vault://transit/keys/dr", VaultOptions(address=address)).unwrap(
                Wrapped(b"vault:v1:AAAA"), CTX
            )
        assert not isinstance(e.value, KeyProviderMisconfigured), _reason(e)
        assert _reason(e).startswith(f"cannot reach Vault at {address}"), _reason(e)


def test_gcpkms_an_endpoint_that_is_not_host_and_port_is_a_configuration_mistake() -> None:
    # A port that is not a number made every open retry "cannot reach Cloud KMS" for the
    # whole 30 s timeout; "http://" made gRPC print C-core errors; ftp:// went on to ADC.
    name = "gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k"
    for endpoint in ("localhost:notaport", "http://", "https://", "ftp://kms.local", "http://[::1", "a b:1"):
        p = GCPKMSKeyProvider.from_uri(name, GCPKMSOptions(endpoint=endpoint))
        with pytest.raises(KeyProviderMisconfigured) as e:
            p.wrap(os.urandom(32), CTX)
        assert e.value.reason == (
            f"Cloud KMS endpoint {endpoint!r} (gcpkms.endpoint) is not HOST[:PORT], "
            "http://HOST:PORT or https://HOST[:PORT]"
        )
        assert e.value.exit_code == 2


def test_awskms_a_slot_naming_a_key_of_another_account_is_not_decrypted_with_it(
    kms_env: dict[str, str], unique: str
) -> None:
    # A slot records the ARN of the key that wrapped it, and unwrap falls back to that key
    # when the configured alias has moved on. Slots are not authenticated: a planted slot
    # naming a key of another account must not make dr decrypt with that key.
    import boto3

    foreign = boto3.session.Session().client("kms", endpoint_url=kms_env["endpoint"])
    foreign.meta.events.register(
        "before-sign.kms.*",
        lambda request, **kw: request.headers.__setitem__("x-moto-account-id", "999999999999"),
    )
    theirs = foreign.create_key()["KeyMetadata"]
    assert ":999999999999:" in theirs["Arn"]
    blob = foreign.encrypt(KeyId=theirs["KeyId"], Plaintext=os.urandom(64), EncryptionContext=CTX)
    ours = boto3.session.Session().client("kms", endpoint_url=kms_env["endpoint"])
    mine = ours.create_key()["KeyMetadata"]
    ours.create_alias(AliasName=f"alias/mine-{unique}", TargetKeyId=mine["KeyId"])
    decrypted_with: list[str] = []
    ours.meta.events.register(
        "provide-client-params.kms.Decrypt", lambda params, **kw: decrypted_with.append(params.get("KeyId"))
    )
    p = AWSKMSKeyProvider(f"awskms://alias/mine-{unique}", client=ours)
    planted = Wrapped(blob["CiphertextBlob"], None, {"key_arn": theirs["Arn"]})
    with pytest.raises(KeyProviderError):
        p.unwrap(planted, CTX)
    assert decrypted_with == [f"alias/mine-{unique}"]
    # The same slot naming a key of this account (the alias's earlier target) is tried with it.
    earlier = ours.create_key()["KeyMetadata"]
    key = os.urandom(64)
    blob = ours.encrypt(KeyId=earlier["KeyId"], Plaintext=key, EncryptionContext=CTX)
    assert p.unwrap(Wrapped(blob["CiphertextBlob"], None, {"key_arn": earlier["Arn"]}), CTX) == key
    assert decrypted_with[1:] == [f"alias/mine-{unique}", earlier["Arn"]]


def test_vault_revokes_its_login_after_an_earlier_operation_could_not_reach_vault(
    transit: Transit, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An operation that could not reach Vault skips revoking (it would only wait for the
    # timeout again); the next operation of the same provider, with Vault back, must not.
    uri = transit.create_key(f"rv-{unique}")
    approle = f"approle-rv-{unique}"
    transit.root.sys.enable_auth_method("approle", path=approle)
    policy = transit.policy(f"dr-rv-{unique}", {f"{transit.mount}/*": ["update"]})
    transit.root.auth.approle.create_or_update_approle(
        role_name="dr", token_policies=[policy], token_ttl="10m", mount_point=approle
    )
    role_id = transit.root.auth.approle.read_role_id("dr", mount_point=approle)["data"]["role_id"]
    secret_id = transit.root.auth.approle.generate_secret_id("dr", mount_point=approle)["data"]["secret_id"]
    (tmp_path / "role_id").write_text(role_id)
    (tmp_path / "secret_id").write_text(secret_id)
    monkeypatch.delenv("VAULT_TOKEN")
    auth = VaultAuth(
        method="approle",
        role_id_file=str(tmp_path / "role_id"),
        secret_id_file=str(tmp_path / "secret_id"),
        mount=approle,
    )
    closed = servers.free_port()
    p = VaultKeyProvider.from_uri(uri, VaultOptions(address=f"http://127.0.0.1:{closed}", auth=auth))
    with pytest.raises(KeyProviderError) as e:
        p.wrap(os.urandom(32), CTX)
    assert _reason(e).startswith("cannot reach Vault")

    def tokens() -> int:
        return len(transit.root.list("auth/token/accessors")["data"]["keys"])

    p.address = transit.address  # Vault reachable again
    before = tokens()
    p.wrap(os.urandom(32), CTX)
    assert tokens() == before, "the login's token is revoked when the operation is over"
