"""LIP metric: confusion matrix vs an independent numpy computation, DDP sum reduction, evaluate_files, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from kd_suite.cli import main
from kd_suite.metrics.parsing import LIP_CLASSES, ParsingMetric, evaluate_files


def numpy_scores(preds: list[np.ndarray], gts: list[np.ndarray], k: int, ignore: int = 255) -> dict:
    """Official-protocol scores computed class by class with boolean masks over all pooled pixels."""
    p = np.concatenate([a.ravel() for a in preds]).astype(np.int64)
    g = np.concatenate([a.ravel() for a in gts]).astype(np.int64)
    keep = g != ignore
    p, g = p[keep], g[keep]
    ious, accs = [], []
    for c in range(k):
        tp = np.sum((p == c) & (g == c))
        fp = np.sum((p == c) & (g != c))
        fn = np.sum((p != c) & (g == c))
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else 0.0)
        accs.append(tp / (tp + fn) if tp + fn else 0.0)
    return {"mIoU": np.mean(ious), "pixel_acc": np.mean(p == g), "mean_acc": np.mean(accs), "iou": ious}


def random_pairs(seed: int, n: int = 5, k: int = 20, absent: tuple[int, ...] = (3, 11)) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    present = [c for c in range(k) if c not in absent]
    preds, gts = [], []
    for _ in range(n):
        h, w = rng.integers(5, 30, size=2)
        g = rng.choice(present, size=(h, w)).astype(np.uint8)
        g[rng.random((h, w)) < 0.15] = 255  # ignored pixels
        p = np.where(rng.random((h, w)) < 0.6, g, rng.choice(present, size=(h, w))).astype(np.uint8)
        p[p == 255] = 0
        preds.append(p)
        gts.append(g)
    return preds, gts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metric_matches_numpy_over_images_of_different_sizes(seed):
    preds, gts = random_pairs(seed)
    metric = ParsingMetric(20)
    for p, g in zip(preds, gts):
        metric.update(torch.from_numpy(p), torch.from_numpy(g))
    got, want = metric.compute(), numpy_scores(preds, gts, 20)
    for key in ("mIoU", "pixel_acc", "mean_acc"):
        assert float(got[key]) == pytest.approx(want[key], abs=1e-12), key
    np.testing.assert_allclose(got["per_class_iou"].numpy(), want["iou"], atol=1e-12)
    assert got["per_class_iou"][3] == 0 and got["per_class_iou"][11] == 0  # absent classes count as 0, not NaN
    assert list(metric.per_class_table()) == list(LIP_CLASSES)


def test_absent_classes_lower_the_mean():
    metric = ParsingMetric(4)
    metric.update(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 1]))  # perfect on classes 0, 1; 2 and 3 absent
    assert float(metric.compute()["mIoU"]) == pytest.approx(0.5)
    assert float(metric.compute()["pixel_acc"]) == 1.0


def test_ignore_index_pixels_do_not_count():
    metric = ParsingMetric(3)
    metric.update(torch.tensor([0, 2, 2]), torch.tensor([0, 255, 255]))
    assert metric.confmat.sum() == 1 and metric.confmat[0, 0] == 1


def test_out_of_range_ids_are_an_error():
    with pytest.raises(ValueError, match=r"prediction has class ids \[7\]"):
        ParsingMetric(3).update(torch.tensor([7]), torch.tensor([0]))
    with pytest.raises(ValueError, match="sizes differ"):
        ParsingMetric(3).update(torch.zeros(2, 2), torch.zeros(2, 3))


def test_states_merge_by_sum_as_under_ddp():
    preds, gts = random_pairs(3, n=4)
    ranks = [ParsingMetric(20), ParsingMetric(20)]
    for i, (p, g) in enumerate(zip(preds, gts)):
        ranks[i % 2].update(torch.from_numpy(p), torch.from_numpy(g))
    assert ranks[0]._reductions["confmat"].__name__ == "dim_zero_sum"
    ranks[0].merge_state(ranks[1])
    assert float(ranks[0].compute()["mIoU"]) == pytest.approx(numpy_scores(preds, gts, 20)["mIoU"], abs=1e-12)


def _write_pngs(folder, arrays, stems):
    folder.mkdir(parents=True, exist_ok=True)
    for a, s in zip(arrays, stems):
        Image.fromarray(a, mode="L").save(folder / f"{s}.png")


def test_evaluate_files_equals_the_metric_and_accepts_a_lip_root(tmp_path):
    preds, gts = random_pairs(4)
    stems = [f"10{i}_{i}" for i in range(len(preds))]
    gt_dir = tmp_path / "LIP" / "TrainVal_parsing_annotations" / "val_segmentations"
    _write_pngs(gt_dir, gts, stems)
    _write_pngs(tmp_path / "pred", preds, stems)
    want = numpy_scores(preds, gts, 20)
    for gt in (gt_dir, tmp_path / "LIP"):
        result = evaluate_files(gt, tmp_path / "pred")
        assert result["num_images"] == len(stems)
        assert result["mIoU"] == pytest.approx(want["mIoU"], abs=1e-12)
        assert result["pixel_acc"] == pytest.approx(want["pixel_acc"], abs=1e-12)
        assert result["mean_acc"] == pytest.approx(want["mean_acc"], abs=1e-12)
        assert list(result["per_class_iou"].values()) == pytest.approx(want["iou"], abs=1e-12)
    json.dumps(result)  # JSON-able


def test_evaluate_files_errors_name_the_files(tmp_path):
    preds, gts = random_pairs(5, n=3)
    _write_pngs(tmp_path / "gt", gts, ["a", "b", "c"])
    _write_pngs(tmp_path / "missing", preds[:2], ["a", "b"])
    with pytest.raises(ValueError, match=r"1 of 3 GT images .* no prediction .*'c.png'"):
        evaluate_files(tmp_path / "gt", tmp_path / "missing")
    _write_pngs(tmp_path / "extra", [*preds, preds[0]], ["a", "b", "c", "zz"])
    with pytest.raises(ValueError, match=r"no GT .*'zz.png'"):
        evaluate_files(tmp_path / "gt", tmp_path / "extra")
    _write_pngs(tmp_path / "size", [preds[0], preds[1], np.zeros((3, 3), np.uint8)], ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"c.png: prediction is 3x3"):
        evaluate_files(tmp_path / "gt", tmp_path / "size")
    rgb = tmp_path / "rgb"
    _write_pngs(rgb, preds, ["a", "b", "c"])
    Image.fromarray(np.zeros((*gts[2].shape, 3), np.uint8)).save(rgb / "c.png")
    with pytest.raises(ValueError, match="mode 'RGB'"):
        evaluate_files(tmp_path / "gt", rgb)
    with pytest.raises(FileNotFoundError, match="no label PNGs"):
        evaluate_files(tmp_path / "pred_nowhere", rgb)


def test_kd_suite_evaluate_command(tmp_path, capsys):
    preds, gts = random_pairs(6, n=2)
    _write_pngs(tmp_path / "gt", gts, ["a", "b"])
    _write_pngs(tmp_path / "pred", preds, ["a", "b"])
    out = tmp_path / "scores.json"
    argv = ["evaluate", "--format", "lip", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")]
    assert main([*argv, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["mIoU"] == pytest.approx(numpy_scores(preds, gts, 20)["mIoU"])
    _write_pngs(tmp_path / "pred", [preds[0]], ["zz"])
    assert main(argv) == 2
    assert "zz.png" in capsys.readouterr().err
