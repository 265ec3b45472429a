"""The SeaweedFS the tests start takes as many buckets as the suite makes, whatever the free disk."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any


def test_seaweedfs_takes_many_buckets(s3_env: dict[str, str], s3_client: Any) -> None:
    # By default SeaweedFS allows free disk / volume size volumes, one per bucket:
    # on a machine with 34 GB free the 34th bucket could not store anything.
    with urllib.request.urlopen(s3_env["master"] + "/dir/status", timeout=10) as answer:
        assert json.load(answer)["Topology"]["Max"] >= 1000  # not derived from the free disk
    base = uuid.uuid4().hex[:8]
    for i in range(40):
        bucket = f"many-{base}-{i:02}"
        s3_client.create_bucket(Bucket=bucket)
        s3_client.put_object(Bucket=bucket, Key="k", Body=b"x")
        assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
