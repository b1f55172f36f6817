"""Reading ``.npy`` arrays from untrusted files: the header is checked against the bytes that
are really there before anything is allocated, and pickled objects are never loaded.

``np.load`` trusts the header's shape: a 100-byte file claiming a billion images makes it try to
allocate them. Model files (``.npz`` members) and the arrays ``numlp predict`` reads go through
here instead.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


class NpyError(ValueError):
    """The bytes are not a plain ``.npy`` array whose header tells the truth."""


def read_npy_header(stream) -> tuple[tuple[int, ...], bool, np.dtype]:
    """``(shape, fortran_order, dtype)`` from the header at the stream's position; the stream is
    left at the first data byte. Object dtypes (pickles) are refused."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise NpyError(f".npy format version {version} is not supported (1.0 and 2.0 are)")
    if dtype.hasobject:
        raise NpyError("holds pickled Python objects, which numlp never loads (they can run code)")
    return shape, fortran, dtype


def read_npy(path) -> np.ndarray:
    """The array in the ``.npy`` file ``path``; NpyError (naming the file) if its header claims
    more or fewer bytes than the file holds, or anything else is wrong with it."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            shape, fortran, dtype = read_npy_header(f)
        except NpyError as err:
            raise NpyError(f"{path}: {err}") from None
        except ValueError as err:
            raise NpyError(f"{path}: not a .npy array ({err})") from None
        declared = math.prod(shape) * dtype.itemsize
        available = path.stat().st_size - f.tell()
        if declared != available:
            raise NpyError(
                f"{path}: its header claims shape {shape} ({declared:,} bytes) but the file "
                f"holds {available:,} bytes of data; it is damaged or not what it says"
            )
        data = f.read(declared)
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return array.copy()
