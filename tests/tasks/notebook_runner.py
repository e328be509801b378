"""Runs a notebook of ``notebooks/`` top to bottom in a fresh kernel and returns what it printed and drew."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@dataclass
class NotebookRun:
    text: str  # everything the cells printed
    figures: int  # PNG outputs
    errors: list


def run_notebook(name: str, workdir: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> NotebookRun:
    """Execute ``notebooks/<name>`` with ``workdir`` as its working directory and ``env`` in its environment."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    return NotebookRun(
        text="".join(o.get("text", "") for o in outputs if o.output_type == "stream"),
        figures=sum("image/png" in o.get("data", {}) for o in outputs),
        errors=[o for o in outputs if o.output_type == "error"],
    )
