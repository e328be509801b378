"""notebooks/pose.ipynb runs end to end on synthetic data and shows its tables and figures."""

from __future__ import annotations

from .notebook_runner import run_notebook


def test_pose_notebook_executes(tmp_path, monkeypatch):
    run = run_notebook("pose.ipynb", tmp_path, monkeypatch, {})
    assert not run.errors
    assert "teacher PCKh" in run.text and "Ankle" in run.text
    assert run.figures >= 4  # skeletons, per-joint bars, heatmaps vs coordinates, worst cases
    assert (tmp_path / "data" / "synthetic" / "mpii" / "annot" / "gt_valid.mat").is_file()
