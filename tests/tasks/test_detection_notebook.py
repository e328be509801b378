"""notebooks/detection.ipynb runs top to bottom on a tiny synthetic set and shows its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "detection.ipynb"
TINY = {"DETECTION_NB_SIZE": "96", "DETECTION_NB_EPOCHS": "1", "DETECTION_NB_TRAIN": "4", "DETECTION_NB_VAL": "2",
        "OMP_NUM_THREADS": "1"}  # fmt: skip


def test_detection_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
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
    assert "student YOLOX" in text and "teacher YOLOX" in text and "mAP50 (11-point)" in text and "| standing |" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 3  # masks, boxes, PR curves
    assert (tmp_path / "runs" / "detection_notebook" / "teacher.pt").is_file()  # files land in the working dir
    assert (tmp_path / "data" / "synthetic" / "VOCdevkit_notebook" / "VOC2007").is_dir()
