"""notebooks/parsing.ipynb runs top to bottom on a tiny synthetic set and shows its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "parsing.ipynb"
TINY = {
    "PARSING_NB_SIZE": "64",
    "PARSING_NB_EPOCHS": "1",
    "PARSING_NB_TRAIN": "2",
    "PARSING_NB_VAL": "1",
    "PARSING_NB_TEACHER": "test_resnet",
    "PARSING_NB_STUDENT": "test_resnet",
}


def test_parsing_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for key, value in TINY.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "student ParsingNet" in text and "teacher PSPParsingNet" in text and "mIoU" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # masks, per-class IoU bars, failures
    assert (tmp_path / "runs" / "parsing_notebook" / "teacher.pt").is_file()  # files land in the working dir
