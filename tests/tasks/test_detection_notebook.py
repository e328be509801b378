"""notebooks/detection.ipynb runs top to bottom on a tiny synthetic set and shows its figures."""

from __future__ import annotations

from .notebook_runner import run_notebook

TINY = {"DETECTION_NB_SIZE": "96", "DETECTION_NB_EPOCHS": "1", "DETECTION_NB_TRAIN": "4", "DETECTION_NB_VAL": "2",
        "OMP_NUM_THREADS": "1"}  # fmt: skip


def test_detection_notebook_executes(tmp_path, monkeypatch):
    run = run_notebook("detection.ipynb", tmp_path, monkeypatch, TINY)
    assert not run.errors
    text = run.text
    assert "student YOLOX" in text and "teacher YOLOX" in text and "mAP50 (11-point)" in text and "| standing |" in text
    assert run.figures == 3  # masks, boxes, PR curves
    assert (tmp_path / "runs" / "detection_notebook" / "teacher.pt").is_file()  # files land in the working dir
    assert (tmp_path / "data" / "synthetic" / "VOCdevkit_notebook" / "VOC2007").is_dir()
