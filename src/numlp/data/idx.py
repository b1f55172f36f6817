"""Read and write the IDX format of MNIST and its siblings, plain or gzip-compressed.

An IDX file is a big-endian header: two zero bytes, a type code, the number of dimensions,
then one 32-bit size per dimension, then the values in C order. The sizes are checked against
the file's real length before anything is allocated, so a corrupt or hostile header that
claims terabytes is refused at once.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from numlp.atomic import atomic_write_bytes

# type code -> big-endian dtype
IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_TYPES.items()}

# deflate cannot expand data more than about 1032:1, so a .gz of n bytes holds at most this much.
MAX_DEFLATE_RATIO = 1100


class IDXError(ValueError):
    """The file is not a valid IDX file (the message names the file and what is wrong)."""


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _gzip_isize(path: Path) -> int:
    """Uncompressed size modulo 2**32, from the gzip trailer."""
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return struct.unpack("<I", f.read(4))[0]


def read_idx(path, *, with_sha256: bool = False):
    """Read an IDX file (``.gz`` or not) into an array with its native dtype and shape.

    Returns the array, or ``(array, sha256_hex_of_the_decompressed_bytes)`` if ``with_sha256``.
    Raises :class:`IDXError` for anything malformed, truncated or too large for the file.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        compressed = _is_gzip(path)
        if compressed and size < 18:
            raise IDXError(f"{path}: gzip file of {size} bytes is truncated")
        opener = gzip.open if compressed else open
        digest = hashlib.sha256()
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4:
                raise IDXError(f"{path}: only {len(head)} bytes, too short for an IDX header")
            zero1, zero2, code, ndim = head
            if zero1 or zero2:
                raise IDXError(f"{path}: bad magic number {head.hex()} (IDX files start with 0000)")
            if code not in IDX_TYPES:
                raise IDXError(f"{path}: unknown IDX type code 0x{code:02x}")
            if ndim == 0:
                raise IDXError(f"{path}: IDX header declares zero dimensions")
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise IDXError(f"{path}: header truncated inside its {ndim} dimension sizes")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            dtype = IDX_TYPES[code]
            if math.prod(d for d in dims if d) * dtype.itemsize > 2**62:  # beyond any intp
                raise IDXError(f"{path}: header declares an impossible shape {dims}")
            header = 4 + 4 * ndim
            payload = math.prod(dims) * dtype.itemsize
            _check_claimed_size(path, dims, header + payload, size, compressed)
            digest.update(head)
            digest.update(raw_dims)
            data = f.read(payload)
            if len(data) < payload:
                raise IDXError(
                    f"{path}: truncated: the header promises {payload:,} bytes of data for shape "
                    f"{dims}, the file holds {len(data):,}"
                )
            if f.read(1):
                raise IDXError(f"{path}: has bytes after the {payload:,} its header declares")
            digest.update(data)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise IDXError(f"{path}: damaged gzip stream ({err})") from None
    array = np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))
    return (array, digest.hexdigest()) if with_sha256 else array


def _check_claimed_size(path: Path, dims, total: int, size: int, compressed: bool) -> None:
    if not compressed:
        if total != size:
            raise IDXError(
                f"{path}: header declares shape {tuple(dims)} ({total:,} bytes with the header) "
                f"but the file has {size:,} bytes"
            )
        return
    if total > size * MAX_DEFLATE_RATIO:
        raise IDXError(
            f"{path}: header declares shape {tuple(dims)} ({total:,} bytes), more than a "
            f"{size:,}-byte gzip file can hold"
        )
    if _gzip_isize(path) != total % 2**32:
        raise IDXError(
            f"{path}: header declares {total:,} bytes but the gzip trailer records "
            f"{_gzip_isize(path):,} (the file is truncated or not what it claims)"
        )


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding (header and big-endian data) of ``array``."""
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise ValueError(
            f"IDX cannot store dtype {array.dtype}; use uint8, int8, int16, int32, "
            "float32 or float64"
        )
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX stores 1 to 255 dimensions, got {array.ndim}")
    code = _CODES[native]
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, code, array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()


def write_idx(path, array: np.ndarray) -> None:
    """Write ``array`` as IDX, gzip-compressed if ``path`` ends in ``.gz``. Atomic: the file
    appears complete or not at all."""
    path = Path(path)
    payload = idx_bytes(array)
    if path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    atomic_write_bytes(path, payload)
