"""Where the project's files live: local folders for the embedded engine, S3 on AWS.

Only what publishing, clean-up and the ledger need: list folders and files, read and write small
text objects (a write is atomic; ``create_text`` writes only if nothing is there yet), copy a
file, and delete a folder or a file. Every folder delete goes through :func:`delete_inside`, which
resolves the location and refuses anything that is not strictly inside the folder it is allowed
to touch; the Security Lake export checks each file it deletes the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class StorageError(Exception):
    pass


class Storage(Protocol):
    def folders(self, location: str) -> list[str]: ...
    def files(self, location: str) -> list[str]: ...
    def has_files(self, location: str) -> bool: ...
    def read_text(self, location: str) -> str | None: ...
    def write_text(self, location: str, text: str) -> None: ...
    def create_text(self, location: str, text: str) -> bool: ...
    def resolve(self, location: str) -> str: ...
    def delete(self, location: str, root: str) -> int: ...
    def copy_file(self, source: str, target: str) -> None: ...
    def delete_file(self, location: str) -> bool: ...
    def size(self, location: str) -> int | None: ...


def split_s3(location: str) -> tuple[str, str]:
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    return bucket, prefix


class LocalStorage:
    def folders(self, location: str) -> list[str]:
        path = Path(location)
        return sorted(str(p) + "/" for p in path.iterdir() if p.is_dir()) if path.is_dir() else []

    def files(self, location: str) -> list[str]:
        path = Path(location)
        return sorted(str(p) for p in path.rglob("*") if p.is_file()) if path.is_dir() else []

    def has_files(self, location: str) -> bool:
        path = Path(location)
        return path.is_dir() and any(p.is_file() for p in path.rglob("*"))

    def read_text(self, location: str) -> str | None:
        try:
            return Path(location).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def write_text(self, location: str, text: str) -> None:
        os.replace(_written_beside(Path(location), text), location)

    def create_text(self, location: str, text: str) -> bool:
        tmp = _written_beside(Path(location), text)
        try:
            os.link(tmp, location)  # fails if the name exists: whole content or nothing, never two writers
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def resolve(self, location: str) -> str:
        return os.path.realpath(location.removeprefix("file://")) + "/"

    def delete(self, location: str, root: str) -> int:
        path = Path(location)
        if not path.exists():
            return 0
        count = sum(1 for p in path.rglob("*") if p.is_file())
        shutil.rmtree(path)
        # Folders that held only this one (a version's dt=... above cluster_id=...) go too when
        # empty, up to and not including root.
        parent, stop = path.parent, Path(root)
        while stop in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return count


    def copy_file(self, source: str, target: str) -> None:
        """Copy one file; the target appears whole or not at all (a hidden copy, then a rename)."""
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def delete_file(self, location: str) -> bool:
        try:
            os.unlink(location)
        except FileNotFoundError:
            return False
        return True

    def size(self, location: str) -> int | None:
        try:
            return os.path.getsize(location)
        except FileNotFoundError:
            return None


def _written_beside(path: Path, text: str) -> str:
    """``text`` in a hidden temporary file beside ``path``, ready to be moved or linked into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    return tmp


class S3Storage:
    def __init__(self, aws_conn_id: str) -> None:
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        from runtime_events.engines import AWS_CLIENT_CONFIG

        self.hook = S3Hook(aws_conn_id=aws_conn_id, config=AWS_CLIENT_CONFIG)

    def folders(self, location: str) -> list[str]:
        bucket, prefix = split_s3(location)
        return [f"s3://{bucket}/{p}" for p in self.hook.list_prefixes(bucket, prefix, delimiter="/")]

    def files(self, location: str) -> list[str]:
        bucket, prefix = split_s3(location)
        return [f"s3://{bucket}/{key}" for key in self.hook.list_keys(bucket, prefix=prefix)]

    def has_files(self, location: str) -> bool:
        bucket, prefix = split_s3(location)
        response = self.hook.get_conn().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
        return response.get("KeyCount", 0) > 0

    def read_text(self, location: str) -> str | None:
        bucket, key = split_s3(location)
        client = self.hook.get_conn()
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
        except client.exceptions.NoSuchKey:
            return None

    def write_text(self, location: str, text: str) -> None:
        bucket, key = split_s3(location)
        self.hook.get_conn().put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"))

    def create_text(self, location: str, text: str) -> bool:
        bucket, key = split_s3(location)
        client = self.hook.get_conn()
        try:
            client.put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"), IfNoneMatch="*")
            return True
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise

    def resolve(self, location: str) -> str:
        # S3 keys are not paths: a "." or ".." segment or an empty one is a different key, not the
        # folder it seems to name. Such a location is never ours.
        bucket, prefix = split_s3(location)
        segments = prefix.rstrip("/").split("/") if prefix.strip("/") else []
        if any(s in ("", ".", "..") for s in segments):
            raise StorageError(f"{location} is not a plain S3 folder")
        return f"s3://{bucket}/" + "".join(s + "/" for s in segments)

    def delete(self, location: str, root: str) -> int:
        bucket, prefix = split_s3(location)
        keys = self.hook.list_keys(bucket, prefix=prefix)
        for i in range(0, len(keys), 1000):
            self.hook.delete_objects(bucket, keys[i:i + 1000])
        return len(keys)

    def copy_file(self, source: str, target: str) -> None:
        """A server-side copy (multipart for large objects, by boto3's managed transfer)."""
        source_bucket, source_key = split_s3(source)
        bucket, key = split_s3(target)
        self.hook.get_conn().copy({"Bucket": source_bucket, "Key": source_key}, bucket, key)

    def delete_file(self, location: str) -> bool:
        bucket, key = split_s3(location)
        self.hook.get_conn().delete_object(Bucket=bucket, Key=key)
        return True

    def size(self, location: str) -> int | None:
        bucket, key = split_s3(location)
        client = self.hook.get_conn()
        try:
            return client.head_object(Bucket=bucket, Key=key)["ContentLength"]
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise


def is_inside(storage: Storage, location: str, root: str) -> bool:
    """Whether ``location``, resolved, lies strictly inside the resolved folder ``root``."""
    try:
        resolved, base = storage.resolve(location), storage.resolve(root)
    except StorageError:
        return False
    return resolved.startswith(base) and resolved != base


def delete_inside(storage: Storage, location: str, root: str) -> int:
    """Delete the folder ``location`` if, resolved, it lies strictly inside ``root``; else refuse
    and say so. Returns the files deleted."""
    if not is_inside(storage, location, root):
        log.warning("not deleting %s: it is not inside %s", location, root)
        return 0
    return storage.delete(storage.resolve(location), storage.resolve(root))
