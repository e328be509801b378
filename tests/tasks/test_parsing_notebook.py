"""notebooks/parsing.ipynb runs top to bottom on a tiny synthetic set and shows its figures."""

from __future__ import annotations

from .notebook_runner import run_notebook

TINY = {
    "PARSING_NB_SIZE": "64",
    "PARSING_NB_EPOCHS": "1",
    "PARSING_NB_TRAIN": "2",
    "PARSING_NB_VAL": "1",
    "PARSING_NB_TEACHER": "test_resnet",
    "PARSING_NB_STUDENT": "test_resnet",
}


def test_parsing_notebook_executes(tmp_path, monkeypatch):
    run = run_notebook("parsing.ipynb", tmp_path, monkeypatch, TINY)
    assert not run.errors
    assert "student ParsingNet" in run.text and "teacher PSPParsingNet" in run.text and "mIoU" in run.text
    assert run.figures == 3  # masks, per-class IoU bars, failures
    assert (tmp_path / "runs" / "parsing_notebook" / "teacher.pt").is_file()  # files land in the working dir
