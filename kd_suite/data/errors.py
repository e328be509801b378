"""Dataset errors that name the offending file and the fix, and the skip-or-raise policy for bad samples."""

from __future__ import annotations

import warnings
from pathlib import Path


class DatasetError(ValueError):
    """A dataset file or folder is missing, unreadable or holds invalid annotations.

    The message always names the file (and the entry inside it when there is one) and says how to fix it.

    Args:
        path: the file or folder at fault; alone, a complete message (how pickling and DataLoader workers rebuild
            the error in another process).
        problem: what is wrong.
        fix: what the user should do about it.
    """

    def __init__(self, path: str | Path, problem: str | None = None, fix: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(str(path) if problem is None else f"{path}: {problem}. Fix: {fix}")


class BadSamples:
    """Raise on a bad sample, or (``skip=True``) count it and warn.

    Args:
        skip: skip bad samples with a counted warning instead of raising.
        where: dataset name used in warnings (e.g. ``"LIP val"``).
    """

    def __init__(self, skip: bool, where: str) -> None:
        self.skip = skip
        self.where = where
        self.count = 0

    def handle(self, error: DatasetError) -> None:
        """Raise ``error`` unless skipping; otherwise count it and warn."""
        if not self.skip:
            raise error
        self.count += 1
        warnings.warn(f"{self.where}: skipped bad sample #{self.count}: {error}", stacklevel=3)


def missing(path: str | Path, what: str, fix: str) -> DatasetError:
    """Error for a missing file or folder."""
    return DatasetError(path, f"{what} not found", fix)


def require(path: Path, what: str, fix: str) -> Path:
    """Return ``path`` if it exists, else raise a :class:`DatasetError`."""
    if not path.exists():
        raise missing(path, what, fix)
    return path
