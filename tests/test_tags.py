"""dr.tags: the rule of a tag (``--tag K=V``, a backup policy's ``tags``)."""

from __future__ import annotations

import pytest

from dr.backup.volumes import BACKUP_TAG, MOVER_JOB_TAG, NAMESPACE_TAG, PVC_TAG
from dr.tags import tag_problem


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("app", "web"),
        ("team", "platform ops"),  # a value is any one line of text, not a label value
        ("app.kubernetes.io/part-of", "shop"),
        ("A_b.c-9", "x"),
        ("x" * 63, "v"),
        (f"{'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 61}/n", "v"),  # a prefix of 253 characters
        ("note", "café/数据 = ok, too"),
        # The tags dr gives the volume snapshots of its mover Jobs: a PVC name may be 253 long.
        (PVC_TAG, "data-" + "p" * 248),
        (NAMESPACE_TAG, "shop"),
        (BACKUP_TAG, "4f2a9c1e0b7d"),
        (MOVER_JOB_TAG, "dr-backup-data-0-8c1f2"),
    ],
)
def test_tags(key: str, value: str) -> None:
    assert tag_problem(key, value) is None


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("", "v", "empty key"),
        ("bad key!", "v", "key 'bad key!' is not a label key"),
        ("-app", "v", "is not a label key"),
        ("app.", "v", "is not a label key"),
        ("x" * 64, "v", "is not a label key"),
        ("/app", "v", "PREFIX a DNS name"),
        # '$' also matches before a last newline: a key ending in one passed re.match(^…$).
        ("app\n", "v", "key 'app\\x0a' is not a label key"),
        ("example.com\n/app", "v", "PREFIX a DNS name"),
        ("Example.com/app", "v", "PREFIX a DNS name"),
        ("a/b/c", "v", "PREFIX a DNS name"),
        (f"{'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 62}/n", "v", "PREFIX a DNS name"),  # 254
        ("app/", "v", "is not a label key"),
        ("new\nline", "v", "key 'new\\x0aline' is not a label key"),
        ("app", "", "key 'app': empty value"),
        ("app", "a\x1b[2Jb", "key 'app': a control character in the value 'a\\x1b[2Jb'"),
        ("app", "evil\u202etxt", "a control character in the value 'evil\\u202etxt'"),
    ],
)
def test_not_tags(key: str, value: str, problem: str) -> None:
    assert problem in (tag_problem(key, value) or "")
