"""A small, bounds-checked reader for one numeric array of a MATLAB 5 ``.mat`` file (MPII's ``gt_valid.mat``).

``scipy.io.loadmat`` can crash the interpreter (segmentation fault) on a corrupt file, which no ``except`` can turn
into a clear error. This reader parses only what the loaders need, in Python, checking every length against the
bytes that are there, so a truncated or damaged file raises :class:`MatFileError` instead. Format: MathWorks, "MAT-File
Format" (version 5): a 128-byte header, then tagged data elements (``miMATRIX``, possibly inside ``miCOMPRESSED``).
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

_MI_MATRIX, _MI_COMPRESSED = 14, 15
#: storage types of numeric data elements → NumPy dtype codes (MATLAB stores doubles in the smallest exact type)
_NUMERIC = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_NUMERIC_CLASSES = set(range(6, 16))  # mxDOUBLE_CLASS .. mxUINT64_CLASS
_MAX_INFLATED = 256 << 20  # a compressed variable inflating past this is corrupt, not a head-box table


class MatFileError(ValueError):
    """The file is not a MATLAB 5 file, is damaged, or lacks the requested numeric variable."""


def _element(buf: bytes, pos: int, endian: str) -> tuple[int, bytes, int]:
    """(type, payload, position of the next element) of the data element at ``pos``."""
    if pos + 8 > len(buf):
        raise MatFileError(f"truncated data element tag at byte {pos}")
    (first,) = struct.unpack_from(endian + "I", buf, pos)
    if first >> 16:  # small data element: type and size share the first word, payload in the second
        size, kind = first >> 16, first & 0xFFFF
        if size > 4:
            raise MatFileError(f"corrupt small data element at byte {pos}")
        return kind, buf[pos + 4 : pos + 4 + size], pos + 8
    kind, size = struct.unpack_from(endian + "II", buf, pos)
    start, end = pos + 8, pos + 8 + size
    if end > len(buf):
        raise MatFileError(f"data element at byte {pos} claims {size} bytes but the file ends first (truncated?)")
    return kind, buf[start:end], end if kind == _MI_COMPRESSED else start + (size + 7) // 8 * 8


def _matrix(body: bytes, endian: str, name: str) -> np.ndarray | None:
    """The array of an ``miMATRIX`` payload if its variable is ``name``, else None."""
    _, flags, pos = _element(body, 0, endian)
    _, dims_raw, pos = _element(body, pos, endian)
    _, name_raw, pos = _element(body, pos, endian)
    if name_raw.decode("latin-1") != name:
        return None
    if len(flags) < 4 or len(dims_raw) % 4 or not dims_raw:
        raise MatFileError(f"variable {name!r} has a corrupt header")
    (flag_word,) = struct.unpack_from(endian + "I", flags)
    if flag_word & 0xFF not in _NUMERIC_CLASSES or flag_word & 0x800:  # 0x800: complex
        raise MatFileError(f"variable {name!r} is not a real numeric array")
    dims = [int(d) for d in np.frombuffer(dims_raw, endian + "i4")]
    kind, real, _ = _element(body, pos, endian)
    if kind not in _NUMERIC or any(d < 0 for d in dims):
        raise MatFileError(f"variable {name!r} has an unsupported data type {kind} or dimensions {dims}")
    dtype = np.dtype(endian + _NUMERIC[kind])
    if len(real) != math.prod(dims) * dtype.itemsize:
        raise MatFileError(f"variable {name!r} holds {len(real)} bytes for dimensions {dims}")
    return np.frombuffer(real, dtype).reshape(dims, order="F").astype(np.float64)


def read_mat_array(path: str | Path, name: str) -> np.ndarray:
    """The numeric variable ``name`` of a MATLAB 5 file as a float64 array (MATLAB's dimensions and order).

    Raises:
        MatFileError: not a MATLAB 5 file, a damaged file, or no real numeric variable called ``name``.
    """
    data = Path(path).read_bytes()
    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        raise MatFileError("not a MATLAB 5 .mat file (no valid 128-byte header)")
    endian = "<" if data[126:128] == b"IM" else ">"
    pos = 128
    while pos + 8 <= len(data):
        kind, body, pos = _element(data, pos, endian)
        if kind == _MI_COMPRESSED:
            inflate = zlib.decompressobj()
            try:
                body = inflate.decompress(body, _MAX_INFLATED)
            except zlib.error as err:
                raise MatFileError(f"a compressed variable is damaged ({err})") from err
            kind, body, _ = _element(body, 0, endian)
        if kind == _MI_MATRIX:
            array = _matrix(body, endian, name)
            if array is not None:
                return array
    raise MatFileError(f"no variable {name!r}")
