"""Download a dataset's files from its mirrors: streamed, resumable, retried, verified, atomic.

Each file is streamed into ``.<file>.part`` beside its destination; a dropped connection is
retried with an HTTP Range request from where it stopped; the finished file must match the
official size and SHA-256 and decompress to valid IDX before it is renamed into place. A file
that fails everywhere leaves nothing behind, and the error lists what each mirror did.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from numlp.atomic import open_in_place
from numlp.data.catalog import (
    DataError,
    FileInfo,
    dataset_info,
    expected_content_hash,
    find_file,
    read_verified,
    record_hash,
)
from numlp.data.idx import IDXError, read_idx

Progress = Callable[[str, int, int], None]
CHUNK = 1 << 16


def mirrors_for(name: str) -> list[str]:
    """``$NUMLP_MIRRORS`` (comma-separated base URLs) if set, else the dataset's own mirrors."""
    override = os.environ.get("NUMLP_MIRRORS")
    if override:
        return [m.strip() for m in override.split(",") if m.strip()]
    return list(dataset_info(name).mirrors)


def fetch(
    name: str,
    folder,
    mirrors: list[str] | None = None,
    progress: Progress | None = None,
    retries: int = 3,
    timeout: float = 30.0,
) -> Path:
    """Make sure ``folder`` holds the verified files of dataset ``name``; download what is missing.

    Returns the folder. Raises :class:`DataError` if a file cannot be had from any mirror.
    """
    info = dataset_info(name)
    folder = Path(folder)
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DataError(f"cannot create {folder}: {err.strerror or err}") from None
    mirrors = mirrors or mirrors_for(name)
    try:
        for file in info.files.values():
            present = find_file(folder, file)
            if present is not None:
                try:
                    read_verified(present, file, folder)
                    continue
                except DataError:
                    pass  # a bad local copy is replaced by a verified download
            _fetch_file(file, folder, mirrors, progress, retries, timeout)
    except BaseException:
        _remove_if_empty(created)  # a failed first download leaves no empty cache folder
        raise
    return folder


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders this fetch created (innermost first) where nothing was kept."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (a file was verified and kept), or not ours to remove


def _fetch_file(file: FileInfo, folder: Path, mirrors, progress, retries, timeout) -> None:
    target = folder / f"{file.name}.gz"
    part = folder / f".{file.name}.gz.part"
    failures = []
    try:
        for mirror in mirrors:
            url = mirror.rstrip("/") + f"/{file.name}.gz"
            error = _download_with_retries(url, part, file, progress, retries, timeout)
            if error is None:
                error = _verify_download(part, file, folder)
            if error is None:
                os.replace(part, target)
                return
            failures.append(f"{url}: {error}")
            part.unlink(missing_ok=True)
    except KeyboardInterrupt:
        raise  # keep the .part: the next fetch resumes from it
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    part.unlink(missing_ok=True)
    raise DataError(
        f"could not download {file.name}.gz from any mirror ({'; '.join(failures)}). "
        "Nothing was saved. If this machine is offline, copy the files into a folder and point "
        "`data_dir` or NUMLP_DATA at it."
    )


def _download_with_retries(
    url, part: Path, file: FileInfo, progress, retries, timeout
) -> str | None:
    """Download ``url`` into ``part``, resuming after dropped connections. None on success,
    else the last error in words."""
    error = None
    for attempt in range(retries):
        try:
            _stream(url, part, file, progress, timeout)
            return None
        except urllib.error.HTTPError as err:
            if err.code == 416:  # our partial file is not a prefix of theirs: start over
                part.unlink(missing_ok=True)
                error = "HTTP 416 on resume"
                continue
            if 400 <= err.code < 500:
                return f"HTTP {err.code} {err.reason}"  # retrying will not help
            error = f"HTTP {err.code} {err.reason}"
        except http.client.IncompleteRead as err:
            error = f"connection closed early with {err.expected:,} bytes still to come"
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            reason = getattr(err, "reason", None) or err
            error = f"{type(err).__name__}: {reason}"
        time.sleep(min(0.2 * 2**attempt, 2.0))
    return f"{error} (after {retries} attempts)"


def _stream(url: str, part: Path, file: FileInfo, progress, timeout: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "numlp"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if have and response.status != 206:
            have = 0  # the server ignored the range: take the whole file again
        length = response.headers.get("Content-Length")
        expected = have + int(length) if length is not None else None
        with open_in_place(part, "ab" if have else "wb") as out:
            done = have
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(f"{file.name}.gz", done, expected or file.gz_bytes)
            out.flush()
            os.fsync(out.fileno())
    if expected is not None and done != expected:
        raise http.client.IncompleteRead(b"", expected - done)


def _verify_download(part: Path, file: FileInfo, folder: Path) -> str | None:
    """None if ``part`` is the official .gz, or (where the content hash is known) any gzip
    whose decompressed content is the official file; else what is wrong."""
    digest = hashlib.sha256()
    with open(part, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    official_gz = digest.hexdigest() == file.gz_sha256
    expected = expected_content_hash(file, folder)
    if not official_gz and expected is None:
        return f"wrong bytes: SHA-256 {digest.hexdigest()}, expected {file.gz_sha256}"
    try:
        _, content = read_idx(part, with_sha256=True)
    except IDXError as err:
        return f"wrong bytes: not a valid gzip IDX file ({err})"
    if expected is None:
        record_hash(folder, file.name, content)
    elif content != expected:
        return f"wrong bytes: decompressed content has SHA-256 {content}, expected {expected}"
    return None
