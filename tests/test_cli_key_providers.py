"""The key commands with real providers: Vault transit on OpenBao and AWS KMS on moto.

`dr repo init --key vault://…`, `dr key add awskms://…`, rotation after the
transit key rotated (slots move to the newest version, data untouched), the
KMS slot alone opening the repository, and the reasons printed when every
provider fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import run_dr


@pytest.fixture
def transit_key(vault_env: dict[str, str], unique: str) -> tuple[object, str, str]:
    import hvac

    root = hvac.Client(url=vault_env["address"], token=vault_env["token"])
    mount = f"transit-cli-{unique}"
    root.sys.enable_secrets_engine("transit", path=mount)
    root.secrets.transit.create_key(name="dr", derived=True, mount_point=mount)
    return root, mount, f"vault://{mount}/keys/dr"


def test_vault_and_kms_slots_rotate_and_open(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    transit_key: tuple[object, str, str],
    kms_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    vault_env: dict[str, str],
) -> None:
    import boto3

    root, mount, vault_uri = transit_key
    kms_key = (
        boto3.session.Session()
        .client("kms", endpoint_url=kms_env["endpoint"])
        .create_key()["KeyMetadata"]["KeyId"]
    )
    kms_uri = f"awskms://{kms_key}"

    r = run_dr(capsys, "repo", "init", "--key", vault_uri, "-o", "json")
    assert r.code == 0, r.err
    r = run_dr(capsys, "key", "add", kms_uri)
    assert r.code == 0, r.err
    src = isolated_home / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(1 << 20))
    assert run_dr(capsys, "mover", "backup", str(src)).code == 0
    data_before = sorted(
        p.name for p in (isolated_home / "data" / "dr" / "repo" / "data").rglob("*") if p.is_file()
    )

    slots = run_dr(capsys, "key", "list", "-o", "json").json()
    assert [(s["provider"], s["keyVersion"]) for s in slots] == [(vault_uri, "v1"), (kms_uri, None)]

    # The transit key rotates; `dr key rotate` rewraps inside Vault (and re-encrypts in KMS).
    root.secrets.transit.rotate_key(name="dr", mount_point=mount)  # type: ignore[attr-defined]
    r = run_dr(capsys, "key", "rotate", "-o", "json")
    assert r.code == 0, r.err
    rotated = {x["provider"]: x for x in r.json()["rotated"]}
    assert rotated[vault_uri]["fromVersion"] == "v1" and rotated[vault_uri]["toVersion"] == "v2"
    # Only the old versions' use is now refused: raising min_decryption_version is safe.
    root.secrets.transit.update_key_configuration(  # type: ignore[attr-defined]
        name="dr", min_decryption_version=2, mount_point=mount
    )
    out = isolated_home / "out"
    r = run_dr(capsys, "mover", "restore", "latest", str(out))
    assert r.code == 0, r.err
    assert (out / "data.bin").read_bytes() == (src / "data.bin").read_bytes()
    data_after = sorted(
        p.name for p in (isolated_home / "data" / "dr" / "repo" / "data").rglob("*") if p.is_file()
    )
    assert data_after == data_before, "rotation must not touch the data"

    # Without Vault (no token), the KMS slot alone opens the repository; Vault's failure is listed.
    monkeypatch.setenv("VAULT_TOKEN", "not-a-token")
    r = run_dr(capsys, "key", "list", "-o", "json")
    assert r.code == 0, r.err
    assert [s["usedToOpen"] for s in r.json()] == [False, True]

    # Neither provider: one line per slot, with the provider and why.
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", "http://127.0.0.1:1")
    r = run_dr(capsys, "repo", "info")
    assert r.code == 1 and "Traceback" not in r.err
    lines = [ln.strip() for ln in r.err.splitlines()]
    assert lines[0] == "error: cannot open repository: none of 2 key slot(s) could be unwrapped"
    assert any(vault_uri in ln for ln in lines[1:]) and any(kms_uri in ln for ln in lines[1:])
    assert "not-a-token" not in r.err and vault_env["token"] not in r.err.replace(vault_uri, "")


def test_a_key_provider_configuration_mistake_exits_2(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    transit_key: tuple[object, str, str],
    kms_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    vault_env: dict[str, str],
) -> None:
    _, _, vault_uri = transit_key
    assert run_dr(capsys, "repo", "init", "--key", vault_uri).code == 0
    # No Vault address anywhere: the only slot fails for a configuration mistake.
    monkeypatch.delenv("VAULT_ADDR")
    r = run_dr(capsys, "repo", "info")
    assert r.code == 2, r.err
    assert r.err.splitlines()[0] == "error: cannot open repository: none of 1 key slot(s) could be unwrapped"
    assert "no Vault address: set vault.address" in r.err and "Traceback" not in r.err
    monkeypatch.setenv("VAULT_ADDR", vault_env["address"])
    (isolated_home / "dr.yaml").write_text(
        f"keyProviders:\n- name: vault\n  uri: {vault_uri}\n  vault:\n    caCert: /nonexistent/ca.pem\n"
    )
    r = run_dr(capsys, "repo", "info")
    assert r.code == 2 and "Vault CA certificate file /nonexistent/ca.pem does not exist" in r.err, r.err
    # A failure that is not a configuration mistake: exit 1.
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:1")
    (isolated_home / "dr.yaml").unlink()
    r = run_dr(capsys, "repo", "info")
    assert r.code == 1 and "cannot reach Vault at http://127.0.0.1:1" in r.err, r.err

    # AWS KMS without a region is a configuration mistake too, for `repo init` and `key add`.
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    r = run_dr(
        capsys, "--repo", f"file://{isolated_home}/other", "repo", "init", "--key", "awskms://alias/dr"
    )
    assert r.code == 2, r.err
    assert r.err.strip() == (
        "error: awskms://alias/dr: no AWS region: set awskms.region, AWS_REGION, or use a key ARN"
    )


def test_a_vault_address_ending_in_v1_is_named_as_the_mistake(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    transit_key: tuple[object, str, str],
    monkeypatch: pytest.MonkeyPatch,
    vault_env: dict[str, str],
) -> None:
    # The address copied from Vault's API docs (http://HOST:8200/v1): hvac adds /v1 itself,
    # every call went to /v1/v1/…, and the error read as a key or permission problem.
    _, mount, vault_uri = transit_key
    address = vault_env["address"]
    for given in (f"{address}/v1", f"{address}/v1/"):
        monkeypatch.setenv("VAULT_ADDR", given)
        r = run_dr(capsys, "repo", "init", "--key", vault_uri)
        assert (r.code, r.out) == (2, ""), r.err
        assert r.err == (
            f"error: {vault_uri}: Vault address {given!r} (from VAULT_ADDR) ends in /v1, the API's path, "
            f"which dr adds itself: use {address}\n"
        )
    # The same from the config's vault.address, once the repository exists.
    monkeypatch.setenv("VAULT_ADDR", address)
    assert run_dr(capsys, "repo", "init", "--key", vault_uri).code == 0
    (isolated_home / "dr.yaml").write_text(
        f"keyProviders:\n- name: vault\n  uri: {vault_uri}\n  vault:\n    address: {address}/v1\n"
    )
    r = run_dr(capsys, "repo", "info")
    assert r.code == 2, r.err
    assert f"Vault address '{address}/v1' (from vault.address) ends in /v1" in r.err, r.err
    assert f"use {address}" in r.err and f"{mount}/encrypt" not in r.err and "Traceback" not in r.err


def test_the_no_vault_token_hint_reaches_the_user_unredacted(
    isolated_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every error line passes dr.redact, whose "token: VALUE" pattern took the hint's
    # "set" for a token: "no Vault token: [REDACTED] VAULT_TOKEN, run …".
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:1")  # not contacted: the token is looked for first
    assert run_dr(capsys, "repo", "init").code == 0
    r = run_dr(capsys, "key", "add", "vault://transit/keys/dr")
    assert r.code == 1, r.err
    assert r.err == (
        "error: vault://transit/keys/dr: no Vault token (set VAULT_TOKEN, run `vault login`, which writes "
        "~/.vault-token, or configure approle or kubernetes auth)\n"
    )


def test_vault_logins_do_not_leave_tokens_behind(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    transit_key: tuple[object, str, str],
    monkeypatch: pytest.MonkeyPatch,
    unique: str,
) -> None:
    # Every dr run logs in (AppRole here, Kubernetes auth in a CronJob alike). A token
    # left to expire lives for the role's TTL (32 days by default): a backup every
    # hour would keep ~770 live tokens, and their leases, in Vault per cluster.
    import hvac

    root, mount, vault_uri = transit_key
    assert isinstance(root, hvac.Client)
    approle = f"approle-{unique}"
    root.sys.enable_auth_method("approle", path=approle)
    root.sys.create_or_update_policy(
        name=f"dr-{unique}", policy=f'path "{mount}/*" {{ capabilities = ["update"] }}'
    )
    root.auth.approle.create_or_update_approle(
        role_name="dr", token_policies=[f"dr-{unique}"], mount_point=approle
    )
    role_id = root.auth.approle.read_role_id("dr", mount_point=approle)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("dr", mount_point=approle)["data"]["secret_id"]
    (isolated_home / "role_id").write_text(role_id)
    (isolated_home / "secret_id").write_text(secret_id)
    (isolated_home / "dr.yaml").write_text(
        f"keyProviders:\n- name: vault\n  uri: {vault_uri}\n  vault:\n    auth:\n      method: approle\n"
        f"      mount: {approle}\n      roleIdFile: {isolated_home}/role_id\n"
        f"      secretIdFile: {isolated_home}/secret_id\n"
    )
    user_token = root.auth.token.create(policies=[f"dr-{unique}"], ttl="1h")["auth"]["client_token"]
    monkeypatch.setenv("VAULT_TOKEN", user_token)  # the approle config wins for its URI

    def tokens() -> int:
        return len(root.list("auth/token/accessors")["data"]["keys"])

    before = tokens()
    assert run_dr(capsys, "repo", "init", "--key", vault_uri).code == 0
    assert run_dr(capsys, "key", "add", f"local://{isolated_home}/glass.key").code == 0
    root.secrets.transit.rotate_key(name="dr", mount_point=mount)
    r = run_dr(capsys, "key", "rotate")
    assert r.code == 0, r.err
    assert run_dr(capsys, "repo", "info").code == 0
    assert tokens() == before, "every token dr logged in for is revoked when it is done"

    # A role whose tokens may not revoke themselves (no default policy): dr still works.
    root.auth.approle.create_or_update_approle(
        role_name="dr", token_policies=[f"dr-{unique}"], token_no_default_policy=True, mount_point=approle
    )
    r = run_dr(capsys, "repo", "info")
    assert r.code == 0 and r.err == "", r.err

    # A token the user gave (VAULT_TOKEN, a token file) is the user's: never revoked.
    (isolated_home / "dr.yaml").unlink()
    assert run_dr(capsys, "repo", "info").code == 0
    assert root.auth.token.lookup(user_token)["data"]["policies"] == ["default", f"dr-{unique}"]


def test_an_aws_kms_endpoint_that_is_not_a_url_is_a_configuration_mistake(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    kms_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # botocore raised a bare ValueError ("Invalid endpoint: …"): "error: ValueError: …", exit 1.
    for endpoint in ("kms.local:4566", "http://[::1", "ftp://kms.local"):
        (isolated_home / "dr.yaml").write_text(
            f"keyProviders:\n- name: kms\n  uri: awskms://alias/dr\n  awskms:\n    endpoint: '{endpoint}'\n"
        )
        r = run_dr(capsys, "repo", "init", "--key", "awskms://alias/dr")
        assert r.code == 2, r.err
        assert r.err.strip() == (
            f"error: awskms://alias/dr: AWS KMS endpoint {endpoint!r} (from awskms.endpoint) is not a URL: "
            "use https://HOST[:PORT]"
        )
    # One with credentials in it (ftp://, so not a URL dr takes) is quoted redacted.
    (isolated_home / "dr.yaml").write_text(
        "keyProviders:\n- name: kms\n  uri: awskms://alias/dr\n  awskms:\n    endpoint: 'ftp://u:hunter2@kms'\n"
    )
    r = run_dr(capsys, "repo", "init", "--key", "awskms://alias/dr")
    assert r.code == 2 and "AWS KMS endpoint 'ftp://***@kms' (from awskms.endpoint)" in r.err, r.err
    assert "hunter2" not in r.err
    (isolated_home / "dr.yaml").unlink()
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", "kms.local:4566")
    r = run_dr(capsys, "repo", "init", "--key", "awskms://alias/dr")
    assert r.code == 2, r.err
    assert r.err.strip() == (
        "error: awskms://alias/dr: AWS KMS endpoint 'kms.local:4566' (from AWS_ENDPOINT_URL_KMS) is not a URL: "
        "use https://HOST[:PORT]"
    )


def test_rotate_exits_1_when_no_slot_could_be_rotated(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    transit_key: tuple[object, str, str],
    monkeypatch: pytest.MonkeyPatch,
    unique: str,
) -> None:
    import hvac

    root, mount, vault_uri = transit_key
    assert isinstance(root, hvac.Client)
    assert run_dr(capsys, "repo", "init", "--key", vault_uri).code == 0
    # A token that may open the repository but not rewrap.
    root.sys.create_or_update_policy(
        name=f"no-rewrap-{unique}", policy=f'path "{mount}/decrypt/dr" {{ capabilities = ["update"] }}'
    )
    token = root.auth.token.create(policies=[f"no-rewrap-{unique}"], ttl="10m")["auth"]["client_token"]
    monkeypatch.setenv("VAULT_TOKEN", token)
    r = run_dr(capsys, "key", "rotate")
    assert r.code == 1, "nothing was rotated: failed, not partially failed"
    lines = r.err.splitlines()
    assert lines[0] == "error: none of 1 key slot(s) could be rotated"
    assert f"{vault_uri}: permission denied on {mount}/rewrap/dr" in lines[1]
    # With a slot that does rotate, the same failure is a partial one.
    assert run_dr(capsys, "key", "add", f"local://{isolated_home}/glass.key").code == 0
    r = run_dr(capsys, "key", "rotate")
    assert r.code == 3 and r.err.splitlines()[0] == "error: 1 key slot(s) could not be rotated", r.err


def test_kms_slots_open_between_retargeting_the_alias_and_rotating(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    kms_env: dict[str, str],
    unique: str,
) -> None:
    # README, after a suspected leak: create a new key, point the alias at it, `dr key
    # rotate`. Unwrap named the alias, which now means the new key, so KMS refused every
    # slot: no backup could open the repository, nor could `dr key rotate` itself.
    import json

    import boto3

    kms = boto3.session.Session().client("kms", endpoint_url=kms_env["endpoint"])
    old = kms.create_key()["KeyMetadata"]
    new = kms.create_key()["KeyMetadata"]
    alias = f"alias/leak-{unique}"
    kms.create_alias(AliasName=alias, TargetKeyId=old["KeyId"])
    assert run_dr(capsys, "repo", "init", "--key", f"awskms://{alias}").code == 0
    keys = isolated_home / "data" / "dr" / "repo" / "keys"

    def slot_keys() -> list[str]:
        return [json.loads(p.read_text())["meta"]["key_arn"] for p in keys.iterdir()]

    assert slot_keys() == [old["Arn"]]
    kms.update_alias(AliasName=alias, TargetKeyId=new["KeyId"])
    r = run_dr(capsys, "repo", "info")  # a backup between the two steps
    assert r.code == 0, r.err
    r = run_dr(capsys, "key", "rotate")
    assert r.code == 0, r.err
    assert slot_keys() == [new["Arn"]]
    assert run_dr(capsys, "repo", "info").code == 0


def test_min_decryption_version_raised_too_early_says_in_full_what_to_do(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    transit_key: tuple[object, str, str],
) -> None:
    # The advice was cut at 200 characters ("…, and only …"): the step that matters,
    # raising min_decryption_version again only after `dr key rotate`, was lost.
    import hvac

    root, mount, vault_uri = transit_key
    assert isinstance(root, hvac.Client)
    assert run_dr(capsys, "repo", "init", "--key", vault_uri).code == 0
    root.secrets.transit.rotate_key(name="dr", mount_point=mount)
    root.secrets.transit.update_key_configuration(name="dr", min_decryption_version=2, mount_point=mount)
    r = run_dr(capsys, "repo", "info")
    assert r.code == 1, r.err
    advice = (
        f"{vault_uri}: the slot was wrapped with transit key version v1, below the key's "
        "min_decryption_version: lower min_decryption_version to 1, run `dr key rotate` to rewrap every "
        "slot with the newest version, and only then raise it"
    )
    assert r.err.splitlines()[1].strip().endswith(advice), r.err
    # Following it opens the repository again.
    root.secrets.transit.update_key_configuration(name="dr", min_decryption_version=1, mount_point=mount)
    assert run_dr(capsys, "key", "rotate").code == 0
    root.secrets.transit.update_key_configuration(name="dr", min_decryption_version=2, mount_point=mount)
    r = run_dr(capsys, "repo", "info")
    assert r.code == 0, r.err


def test_a_slot_this_identity_cannot_unwrap_is_reported_when_written(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    transit_key: tuple[object, str, str],
    monkeypatch: pytest.MonkeyPatch,
    vault_env: dict[str, str],
    unique: str,
) -> None:
    # A token that may encrypt but not decrypt: `repo init` said "created" and exit 0, and
    # the next command with the same credentials could not open the repository.
    import hvac

    root, mount, vault_uri = transit_key
    assert isinstance(root, hvac.Client)
    root.sys.create_or_update_policy(
        name=f"enc-only-{unique}", policy=f'path "{mount}/encrypt/dr" {{ capabilities = ["update"] }}'
    )
    token = root.auth.token.create(policies=[f"enc-only-{unique}"], ttl="10m")["auth"]["client_token"]
    monkeypatch.setenv("VAULT_TOKEN", token)
    r = run_dr(capsys, "repo", "init", "--key", vault_uri, "-o", "json")
    assert r.code == 0, r.err  # the repository exists and a token with decrypt opens it
    slot = r.json()["keySlot"]
    warning = (
        f"warning: key slot {slot[:8]} ({vault_uri}) was written, but these credentials cannot unwrap it: "
        f"permission denied on {mount}/decrypt/dr"
    )
    line = next((ln for ln in r.err.splitlines() if ln.startswith("warning:")), "")
    assert line.startswith(warning), r.err
    assert line.endswith("backups and restores need the decrypt permission too"), line
    assert token not in r.err
    # `key add` too (a break-glass slot for another identity is fine, but say so).
    monkeypatch.setenv("VAULT_TOKEN", vault_env["token"])
    root.secrets.transit.create_key(name="glass", derived=True, mount_point=mount)
    root.sys.create_or_update_policy(
        name=f"enc-only-{unique}", policy=f'path "{mount}/encrypt/glass" {{ capabilities = ["update"] }}'
    )
    (isolated_home / "dr.yaml").write_text(
        f"keyProviders:\n- name: glass\n  uri: vault://{mount}/keys/glass\n  vault:\n"
        f"    auth:\n      method: token\n      tokenPath: {isolated_home}/glass-token\n"
    )
    (isolated_home / "glass-token").write_text(token)
    r = run_dr(capsys, "key", "add", f"vault://{mount}/keys/glass")
    assert r.code == 0, r.err
    assert f"these credentials cannot unwrap it: permission denied on {mount}/decrypt/glass" in r.err
    # A slot that unwraps says nothing more.
    r = run_dr(capsys, "key", "add", f"local://{isolated_home}/glass.key")
    assert r.code == 0 and "warning:" not in r.err, r.err


def _config(home: Path, providers: str, keys: str = "") -> None:
    """dr.yaml with the embedded default's repository and ``providers`` (YAML list items)."""
    (home / "dr.yaml").write_text(
        f"repositories:\n- name: main\n  url: file://{home}/data/dr/repo\n  keys: [{keys}]\n"
        f"keyProviders:\n{providers}"
    )


def test_a_slot_spelling_the_configured_key_differently_is_opened_with_its_settings(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    transit_key: tuple[object, str, str],
    monkeypatch: pytest.MonkeyPatch,
    vault_env: dict[str, str],
) -> None:
    # The slot names the configured transit key with extra slashes; the configuration's
    # Vault settings (here its address; in a cluster its Kubernetes auth) must apply to it.
    _, mount, vault_uri = transit_key
    r = run_dr(capsys, "repo", "init", "--key", f"vault:///{mount}//keys/dr")
    assert r.code == 0, r.err
    monkeypatch.delenv("VAULT_ADDR")
    _config(
        isolated_home, f"- name: vault\n  uri: {vault_uri}\n  vault:\n    address: {vault_env['address']}\n"
    )
    r = run_dr(capsys, "key", "list", "-o", "json")
    assert r.code == 0, r.err
    assert [(s["provider"], s["usedToOpen"]) for s in r.json()] == [(f"vault:///{mount}//keys/dr", True)]


def test_a_configured_provider_spelled_as_the_slot_is_preferred_to_another_spelling(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    transit_key: tuple[object, str, str],
    monkeypatch: pytest.MonkeyPatch,
    vault_env: dict[str, str],
) -> None:
    # Two providers whose URIs name one transit path on two Vaults (the address is not in the
    # URI): the slot written with the second one's spelling was opened with the first one's
    # settings, which same_key matched first, and so at the wrong Vault.
    _, mount, vault_uri = transit_key
    monkeypatch.delenv("VAULT_ADDR")
    spelled = f"vault:///{mount}/keys/dr"
    _config(
        isolated_home,
        f"- name: other\n  uri: {vault_uri}\n  vault:\n    address: http://127.0.0.1:9\n"
        f"- name: this\n  uri: {spelled}\n  vault:\n    address: {vault_env['address']}\n",
    )
    r = run_dr(capsys, "repo", "init", "--key", spelled)
    assert r.code == 0, r.err
    r = run_dr(capsys, "key", "list", "-o", "json")
    assert r.code == 0, r.err
    assert [(s["provider"], s["usedToOpen"]) for s in r.json()] == [(spelled, True)]


def test_the_last_slot_of_a_key_provider_the_configuration_lists_is_kept(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    transit_key: tuple[object, str, str],
    vault_env: dict[str, str],
) -> None:
    # The cluster opens the repository with Vault; the operator's laptop with a key file.
    # Removing the cluster's only slot passed "another slot unwraps here" (the laptop's),
    # and the next scheduled backup found no slot it could open.
    _, mount, vault_uri = transit_key
    laptop = f"local://{isolated_home}/laptop.key"
    _config(
        isolated_home, f"- name: cluster\n  uri: {vault_uri}\n- name: laptop\n  uri: {laptop}\n", "cluster"
    )
    assert run_dr(capsys, "repo", "init", "--key", laptop).code == 0
    spelled = f"vault:///{mount}//keys/dr"  # the cluster's key, written another way
    assert run_dr(capsys, "key", "add", spelled).code == 0
    ids = [s["id"] for s in run_dr(capsys, "key", "list", "-o", "json").json()]
    refusal = (
        "error: refusing to remove key slot {}: it is the last slot of key provider 'cluster' "
        f"({vault_uri}), which dr.yaml lists in the keys of repository 'main'; "
        "remove 'cluster' from those keys first, or pass --force"
    )
    r = run_dr(capsys, "key", "remove", ids[1][:8])
    assert r.code == 2 and r.err.strip() == refusal.format(ids[1][:8]), r.err
    assert [s["id"] for s in run_dr(capsys, "key", "list", "-o", "json").json()] == ids

    # With another slot of that key (a copy), either may go; then the other is the last.
    keys = isolated_home / "data" / "dr" / "repo" / "keys"
    copy = "c0" * 16
    (keys / copy).write_bytes((keys / ids[1]).read_bytes())
    r = run_dr(capsys, "key", "remove", ids[1][:8])
    assert r.code == 0, r.err
    r = run_dr(capsys, "key", "remove", copy[:8])
    assert r.code == 2 and r.err.strip() == refusal.format(copy[:8]), r.err
    # A provider the repository's keys do not list may lose its last slot (with the cluster's left).
    assert run_dr(capsys, "key", "add", f"local://{isolated_home}/spare.key").code == 0
    spare = run_dr(capsys, "key", "list", "-o", "json").json()[-1]["id"]
    assert run_dr(capsys, "key", "remove", spare[:8]).code == 0

    r = run_dr(capsys, "key", "remove", copy[:8], "--force")
    assert r.code == 0, r.err
    assert r.err.strip() == (
        f"warning: removed key slot {copy[:8]}, the last slot of key provider 'cluster' ({vault_uri}), "
        f"which dr.yaml lists in the keys of repository 'main': what opens the repository "
        f"with only that provider fails until `dr key add {vault_uri}`"
    )
    assert [s["id"] for s in run_dr(capsys, "key", "list", "-o", "json").json()] == ids[:1]


def test_a_slot_for_a_key_that_has_one_is_refused_however_spelled(
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
    transit_key: tuple[object, str, str],
    vault_env: dict[str, str],
) -> None:
    _, mount, vault_uri = transit_key
    assert run_dr(capsys, "repo", "init", "--key", vault_uri).code == 0
    (slot,) = [s["id"] for s in run_dr(capsys, "key", "list", "-o", "json").json()]
    r = run_dr(capsys, "key", "add", f"vault:///{mount}//keys/dr")
    assert r.code == 2, r.err
    assert r.err.strip() == (
        f"error: a key slot for vault:///{mount}//keys/dr already exists as {vault_uri} "
        f"({slot[:8]}, see `dr key list`)"
    )
    r = run_dr(capsys, "key", "add", vault_uri)
    assert r.code == 2 and r.err.strip().endswith(
        f"{vault_uri} already exists ({slot[:8]}, see `dr key list`)"
    )
    assert [s["id"] for s in run_dr(capsys, "key", "list", "-o", "json").json()] == [slot]
