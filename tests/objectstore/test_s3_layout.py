"""What the S3 backend leaves in the bucket: hidden chunks, cleaned up when replaced."""

from __future__ import annotations

from collections.abc import Callable

import boto3
import pytest

from otto.objectstore import S3Store

from .conftest import CREDENTIALS


@pytest.fixture
def s3(moto_endpoint: str, make_bucket: Callable[[], str]) -> S3Store:
    return S3Store(make_bucket(), endpoint_url=moto_endpoint, prefix="pre", **CREDENTIALS)


def bucket_keys(store: S3Store) -> list[str]:
    r = store.client.list_objects_v2(Bucket=store.bucket)
    return sorted(obj["Key"] for obj in r.get("Contents", []))


def test_chunks_are_hidden_and_compaction_removes_them(s3: S3Store) -> None:
    for i in range(3):
        s3.append("run/a.log", i * 2, b"ab")
    keys = bucket_keys(s3)
    assert keys[0] == "pre/run/a.log" and len(keys) == 4
    assert all(k.startswith("pre/run/a.log/.otto-chunks/") for k in keys[1:])
    assert [i.key for i in s3.list()] == ["run/a.log"]
    s3.compact("run/a.log")
    assert bucket_keys(s3) == ["pre/run/a.log"]
    assert s3.get("run/a.log") == b"ababab"
    s3.append("run/a.log", 6, b"!")
    s3.put("run/a.log", b"replaced")
    assert bucket_keys(s3) == ["pre/run/a.log"]
    s3.append("run/a.log", 8, b"?")
    s3.delete("run/a.log")
    assert bucket_keys(s3) == []


def test_objects_written_by_other_tools(s3: S3Store, moto_endpoint: str) -> None:
    other = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name=CREDENTIALS["region"],
        aws_access_key_id=CREDENTIALS["access_key"],
        aws_secret_access_key=CREDENTIALS["secret_key"],
    )
    other.put_object(Bucket=s3.bucket, Key="pre/foreign.txt", Body=b"made elsewhere")
    other.put_object(Bucket=s3.bucket, Key="outside-the-prefix", Body=b"x")
    other.put_object(Bucket=s3.bucket, Key="pre/bad/../key", Body=b"x")
    head = s3.head("foreign.txt")
    assert (head.size, head.sha256) == (14, None)
    assert s3.append("foreign.txt", 14, b", appended") == 24
    assert s3.get("foreign.txt") == b"made elsewhere, appended"
    assert [i.key for i in s3.list()] == ["foreign.txt"]  # invalid keys are not objects
