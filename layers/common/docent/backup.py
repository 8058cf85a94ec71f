"""Snapshots of the embedded store: one `.tar.gz` holding the shard's folder and a manifest.

`archive` runs while the caller keeps writes out (the store's write lock, after a flush), so the
copy is one consistent state. `unpack` checks an archive before it replaces anything: only plain
files and folders under `shard/`, a manifest of this format, and a shard that opens and holds the
number of points the manifest says; the swap is then two renames.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import time
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from docent.errors import BadRequest

FORMAT = 1
MANIFEST = "docent-snapshot.json"
ROOT = "shard"


def archive(shard: str, destination: str, points: int) -> dict[str, Any]:
    """Write the shard at `shard` to `destination` (via a `.partial` file, renamed when whole)."""
    target = Path(destination)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    manifest = {"format": FORMAT, "points": points, "created_at": int(time.time())}
    raw = json.dumps(manifest).encode()
    try:
        # Level 1: WAL segments are mostly zeros, and a snapshot should not take long.
        with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mtime = len(raw), manifest["created_at"]
            tar.addfile(info, io.BytesIO(raw))
            tar.add(shard, arcname=ROOT)
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return {"path": str(target), "bytes": target.stat().st_size, "points": points}


def read_manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    """The archive's manifest, after checking every member is a plain file or folder of ours."""
    manifest: dict[str, Any] | None = None
    for member in tar.getmembers():
        name = PurePosixPath(member.name)
        if name.is_absolute() or ".." in name.parts:
            raise BadRequest(f"The snapshot holds an unsafe path: {member.name!r}.")
        if member.name == MANIFEST and member.isfile():
            handle = tar.extractfile(member)
            manifest = json.loads(handle.read()) if handle else None
        elif not (name.parts[:1] == (ROOT,) and (member.isfile() or member.isdir())):
            raise BadRequest(f"The snapshot holds something other than a shard: {member.name!r}.")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadRequest("Not a Docent snapshot (no manifest of a known format).")
    return manifest


def unpack(source: str, shard: str) -> dict[str, Any]:
    """Replace the shard at `shard` with the one in the archive `source`, checked first."""
    import qdrant_edge as qe

    target = Path(shard)
    staging = target.with_name(target.name + ".restoring")
    previous = target.with_name(target.name + ".previous")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tarfile.open(source, "r:*") as tar:
            manifest = read_manifest(tar)
            tar.extractall(staging, filter="data")
        restored = staging / ROOT
        try:
            loaded = qe.EdgeShard.load(str(restored))
            try:
                points = loaded.count(qe.CountRequest(exact=True))
            finally:
                loaded.close()
        except Exception as exc:
            raise BadRequest("The snapshot's shard does not open: it is damaged.") from exc
        if points != manifest.get("points"):
            raise BadRequest(
                f"The snapshot is damaged: it holds {points} points, its manifest says "
                f"{manifest.get('points')}."
            )
        shutil.rmtree(previous, ignore_errors=True)
        if target.exists():
            os.replace(target, previous)
        try:
            os.replace(restored, target)
        except OSError:
            if previous.exists():
                os.replace(previous, target)
            raise
        shutil.rmtree(previous, ignore_errors=True)
    except (tarfile.TarError, OSError, EOFError, zlib.error, json.JSONDecodeError) as exc:
        raise BadRequest(f"The snapshot could not be read: {type(exc).__name__}.") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"points": points}
