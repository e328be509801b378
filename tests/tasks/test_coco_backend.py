"""The COCO evaluation engines agree: hotcoco / xthotcoco vs faster-coco-eval vs pycocotools to 1e-9."""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json

import numpy as np
import pytest

from kd_suite.data.schema import CROWDPOSE_SIGMAS
from kd_suite.metrics.coco_backend import BACKEND_ENV, bbox_eval, coco_backend, keypoint_eval
from kd_suite.metrics.keypoints import COCO_SIGMAS, evaluate_crowdpose_files

from .test_detection_metrics import random_coco
from .test_pose_metrics import GOLDEN

HAVE_HOTCOCO = importlib.util.find_spec("hotcoco") is not None
HAVE_XTHOTCOCO = HAVE_HOTCOCO and importlib.util.find_spec("xthotcoco") is not None
needs_hotcoco = pytest.mark.skipif(not HAVE_HOTCOCO, reason="hotcoco not installed (pip install kd-suite[fast-eval])")
needs_xthotcoco = pytest.mark.skipif(not HAVE_XTHOTCOCO, reason="xthotcoco not installed (kd-suite[fast-eval])")
TOL = 1e-9


def both(monkeypatch, fn):
    """``fn()`` on hotcoco, then on faster-coco-eval."""
    monkeypatch.setenv(BACKEND_ENV, "hotcoco")
    hot = fn()
    monkeypatch.setenv(BACKEND_ENV, "faster-coco-eval")
    return hot, fn()


def pycocotools_stats(gt: dict, results: list[dict], iou_type: str, sigmas=None, image_ids=None) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), iou_type)
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


@needs_hotcoco
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_bbox_engines_agree_with_pycocotools(monkeypatch, seed):
    gt, res = random_coco(seed)
    subset = [1, 2, 3, 5] if seed == 3 else None
    hot, fce = both(monkeypatch, lambda: bbox_eval(copy.deepcopy(gt), copy.deepcopy(res), subset))
    ref = pycocotools_stats(gt, res, "bbox", image_ids=subset)
    assert np.abs(hot.stats - ref).max() <= TOL and np.abs(fce.stats - ref).max() <= TOL
    assert hot.cat_ids == fce.cat_ids and hot.names == fce.names
    assert np.abs(hot.precision - fce.precision).max() <= TOL  # per-class AP reads it


def random_keypoints(rng, joints: int, crowd: bool) -> tuple[dict, list[dict]]:
    """Keypoint GT (COCO, or CrowdPose with crowdIndex and no area) and noisy, partly spurious results."""
    images, anns, res = [], [], []
    for i in range(12):
        image = {"id": i + 1, "file_name": f"{i}.jpg", "height": 480, "width": 640}
        if crowd:
            image["crowdIndex"] = float(rng.choice([0.05, 0.3, 0.5, 0.9]))
        images.append(image)
        for _ in range(int(rng.integers(0, 4))):
            x0, y0 = rng.uniform(0, 400, 2)
            w, h = rng.uniform(30, 200), rng.uniform(60, 300)
            k = np.concatenate([rng.uniform([x0, y0], [x0 + w, y0 + h], (joints, 2)), np.full((joints, 1), 2.0)], 1)
            k[rng.random(joints) < 0.25] = 0.0
            n = 0 if rng.random() < 0.1 else int((k[:, 2] > 0).sum())
            ann = {"id": len(anns) + 1, "image_id": i + 1, "category_id": 1, "bbox": [x0, y0, w, h],
                   "iscrowd": int(rng.random() < 0.08), "num_keypoints": n,
                   "keypoints": k.reshape(-1).tolist()}  # fmt: skip
            if not crowd:
                ann["area"] = w * h * 0.7
            anns.append(ann)
            noisy = k.copy()
            noisy[:, :2] += rng.normal(0, rng.uniform(2, 25), (joints, 2))
            noisy[:, 2] = rng.uniform(0, 1, joints)
            res.append({"image_id": i + 1, "category_id": 1, "keypoints": noisy.reshape(-1).tolist(),
                        "score": float(rng.uniform())})  # fmt: skip
        for _ in range(int(rng.integers(0, 3))):  # spurious detections
            k = np.concatenate([rng.uniform(0, 400, (joints, 2)), rng.uniform(0, 1, (joints, 1))], 1)
            res.append({"image_id": i + 1, "category_id": 1, "keypoints": k.reshape(-1).tolist(),
                        "score": float(rng.uniform())})  # fmt: skip
    cats = [{"id": 1, "name": "person", "keypoints": [str(j) for j in range(joints)], "skeleton": []}]
    return {"info": {}, "licenses": [], "images": images, "annotations": anns, "categories": cats}, res


@needs_hotcoco
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_coco_keypoint_engines_agree_with_pycocotools(monkeypatch, tmp_path, seed):
    gt, res = random_keypoints(np.random.default_rng(seed), 17, crowd=False)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    hot, fce = both(monkeypatch, lambda: keypoint_eval(path, copy.deepcopy(res), "coco", COCO_SIGMAS))
    ref = pycocotools_stats(gt, res, "keypoints", COCO_SIGMAS)
    assert 0 < ref[0] < 1
    assert np.abs(hot - ref).max() <= TOL and np.abs(fce - ref).max() <= TOL


@needs_xthotcoco
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_crowdpose_engines_agree(monkeypatch, tmp_path, seed):
    gt, res = random_keypoints(np.random.default_rng(10 + seed), 14, crowd=True)
    path = tmp_path / "crowdpose.json"
    path.write_text(json.dumps(gt))
    hot, fce = both(monkeypatch, lambda: keypoint_eval(path, copy.deepcopy(res), "crowdpose", CROWDPOSE_SIGMAS))
    assert 0 < fce[0] < 1 and len(hot) == len(fce) == 9
    assert np.abs(hot - fce).max() <= TOL, (hot, fce)


@needs_xthotcoco
def test_crowdpose_golden_scores_on_both_engines(monkeypatch, real_fixtures):
    folder = real_fixtures / "crowdpose_golden"
    gt, pred = folder / "example_crowdpose_val.json", folder / "example_crowdpose_preds.json"
    hot, fce = both(monkeypatch, lambda: evaluate_crowdpose_files(gt, pred))
    assert hot == GOLDEN and fce == GOLDEN


def test_backend_selection(monkeypatch):
    monkeypatch.setenv(BACKEND_ENV, "faster-coco-eval")
    assert coco_backend("bbox") == coco_backend("crowdpose") == "faster-coco-eval"
    monkeypatch.setenv(BACKEND_ENV, "auto")
    assert coco_backend("bbox") == ("hotcoco" if HAVE_HOTCOCO else "faster-coco-eval")
    assert coco_backend("crowdpose") == ("hotcoco" if HAVE_XTHOTCOCO else "faster-coco-eval")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # as on a machine without the extra
    assert coco_backend("bbox") == "faster-coco-eval"
    monkeypatch.setenv(BACKEND_ENV, "hotcoco")
    with pytest.raises(ImportError, match="fast-eval"):
        coco_backend("bbox")
    monkeypatch.setenv(BACKEND_ENV, "pycocotools")
    with pytest.raises(ValueError, match=BACKEND_ENV):
        coco_backend("bbox")
