"""PCKh against an independent loop, CrowdPose golden scores, COCO keypoint AP and the evaluate command."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from scipy.io import savemat

from kd_suite.cli import main
from kd_suite.data.batch import MissingTargetError, PoseBatch
from kd_suite.metrics.keypoints import (
    COCO_SIGMAS,
    evaluate_coco_files,
    evaluate_crowdpose_files,
    evaluate_keypoint_results,
    keypoint_results,
)
from kd_suite.metrics.pckh import evaluate_files, pckh_table
from kd_suite.tasks.pose.scores import PoseScores

GOLDEN = {
    "AP": 0.7877215935879303,
    "AP50": 0.9881188118811886,
    "AP75": 0.7314356435643564,
    "AR": 0.8222222222222223,
    "AR50": 1.0,
    "AR75": 0.7777777777777778,
    "AP(E)": 1.0,
    "AP(M)": 0.9802,
    "AP(H)": 0.4116,
}
NAMES = ["rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck", "head", "rwri", "relb", "rsho", "lsho"]
NAMES += ["lelb", "lwri"]


def loop_pckh(pred, gt, vis, head, thr):
    """HRNet's table written as plain loops: per-joint ratio, columns = mean of L/R, Mean pooled without 6 and 7."""
    n, k = vis.shape
    hit, cnt = [0] * k, [0] * k
    for i in range(n):
        for j in range(k):
            if vis[i, j]:
                cnt[j] += 1
                d = math.hypot(pred[i, j, 0] - gt[i, j, 0], pred[i, j, 1] - gt[i, j, 1])
                hit[j] += d / head[i] <= thr
    pck = [100.0 * h / c for h, c in zip(hit, cnt)]
    cols = {"Head": [9], "Shoulder": [12, 13], "Elbow": [11, 14], "Wrist": [10, 15], "Hip": [2, 3], "Knee": [1, 4]}
    cols["Ankle"] = [0, 5]
    table = {name: sum(pck[j] for j in js) / len(js) for name, js in cols.items()}
    rest = [j for j in range(k) if j not in (6, 7)]
    table["Mean"] = 100.0 * sum(hit[j] for j in rest) / sum(cnt[j] for j in rest)
    return table


def random_mpii(n: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(50, 400, (n, 16, 2))
    head = rng.uniform(20, 60, n)
    vis = (rng.random((n, 16)) > 0.2).astype(float)
    pred = gt + rng.normal(0, 1, (n, 16, 2)) * head[:, None, None] * rng.uniform(0, 0.6, (n, 16, 1))
    return pred, gt, vis, head


def test_pckh_equals_a_loop_implementation():
    pred, gt, vis, head = random_mpii()
    table = pckh_table(pred, gt, vis, head)
    ref = loop_pckh(pred, gt, vis, head, 0.5)
    for key, value in ref.items():
        assert table[key] == pytest.approx(value, abs=1e-9), key
    assert table["Mean@0.1"] == pytest.approx(loop_pckh(pred, gt, vis, head, 0.1)["Mean"], abs=1e-9)
    assert 0 < table["Mean@0.1"] < table["Mean"] < 100


def test_pckh_threshold_is_inclusive():
    gt = np.zeros((1, 16, 2))
    pred = gt.copy()
    pred[0, :, 0] = 5.0  # exactly 0.5 head sizes away
    assert pckh_table(pred, gt, np.ones((1, 16)), np.array([10.0]))["Mean"] == 100.0


def write_gt_valid(path, gt1, vis, head_boxes):
    names = np.empty((1, 16), dtype=object)
    names[0, :] = NAMES
    savemat(
        path,
        {
            "dataset_joints": names,
            "jnt_missing": (1 - vis).T,
            "pos_gt_src": np.transpose(gt1, (1, 2, 0)),
            "headboxes_src": np.transpose(head_boxes, (1, 2, 0)),
        },
    )


def test_mpii_evaluate_files_and_cli(tmp_path, capsys):
    pred, gt, vis, head = random_mpii(12, seed=3)
    corner = np.stack([gt[:, 9] - 5, gt[:, 9] - 5 + head[:, None] / 0.6 / math.sqrt(2)], axis=1)  # (N, 2, 2)
    write_gt_valid(tmp_path / "gt_valid.mat", gt, vis, corner)
    (tmp_path / "perfect.json").write_text(json.dumps((gt - 1).tolist()))  # 0-based predictions of the 1-based GT
    perfect = evaluate_files(tmp_path / "gt_valid.mat", tmp_path / "perfect.json")
    assert all(v == 100.0 for v in perfect.values())
    (tmp_path / "pred.json").write_text(json.dumps([{"joints": p.tolist()} for p in pred - 1]))
    scores = evaluate_files(tmp_path / "gt_valid.mat", tmp_path / "pred.json")
    ref = loop_pckh(pred, gt, vis, head, 0.5)
    assert scores["Mean"] == pytest.approx(ref["Mean"], abs=1e-9) and scores["Wrist"] == pytest.approx(ref["Wrist"])
    assert (
        main(
            [
                "evaluate",
                "--format",
                "mpii",
                "--gt",
                str(tmp_path / "gt_valid.mat"),
                "--pred",
                str(tmp_path / "pred.json"),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out) == {"unit": "percent (PCKh tables, as the MPII toolkit)", **scores}
    (tmp_path / "short.json").write_text(json.dumps((gt[:3] - 1).tolist()))
    with pytest.raises(ValueError, match="3 predictions for 12"):
        evaluate_files(tmp_path / "gt_valid.mat", tmp_path / "short.json")


def test_crowdpose_golden_scores_are_exact(real_fixtures, capsys):
    folder = real_fixtures / "crowdpose_golden"
    gt, pred = folder / "example_crowdpose_val.json", folder / "example_crowdpose_preds.json"
    assert evaluate_crowdpose_files(gt, pred) == GOLDEN
    assert main(["evaluate", "--format", "crowdpose", "--gt", str(gt), "--pred", str(pred)]) == 0
    assert json.loads(capsys.readouterr().out) == {"unit": "fraction in [0, 1]", **GOLDEN}


def coco_gt(tmp_path, rng):
    images, anns = [], []
    for i in range(4):
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "height": 480, "width": 640})
        for _ in range(2):
            x0, y0 = rng.uniform(0, 300, 2)
            kpts = np.concatenate([rng.uniform([x0, y0], [x0 + 150, y0 + 300], (17, 2)), np.full((17, 1), 2.0)], 1)
            kpts[rng.random(17) < 0.2] = 0.0
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "bbox": [x0, y0, 150.0, 300.0],
                    "area": 150.0 * 300.0 * 0.8,
                    "iscrowd": 0,
                    "num_keypoints": int((kpts[:, 2] > 0).sum()),
                    "keypoints": kpts.reshape(-1).tolist(),
                }
            )
    data = {"info": {}, "licenses": [], "images": images, "annotations": anns}
    data["categories"] = [{"id": 1, "name": "person", "keypoints": [str(k) for k in range(17)], "skeleton": []}]
    path = tmp_path / "coco_kpts.json"
    path.write_text(json.dumps(data))
    return path, anns


def test_coco_keypoint_ap(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path, anns = coco_gt(tmp_path, rng)
    perfect = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0} for a in anns]
    assert evaluate_keypoint_results(path, perfect, "coco")["AP"] == pytest.approx(1.0)
    noisy = []
    for a in anns:
        k = np.asarray(a["keypoints"]).reshape(17, 3)
        k[:, :2] += rng.normal(0, 12, (17, 2))
        noisy.append({**a, "keypoints": k.reshape(-1).tolist(), "score": 0.9})
    (tmp_path / "noisy.json").write_text(json.dumps(noisy))
    scores = evaluate_coco_files(path, tmp_path / "noisy.json")
    assert 0.0 < scores["AP"] < 1.0 and set(scores) >= {"AP", "AP50", "AP75", "AR"}
    assert (
        main(["evaluate", "--format", "coco-keypoints", "--gt", str(path), "--pred", str(tmp_path / "noisy.json")]) == 0
    )
    assert json.loads(capsys.readouterr().out) == {"unit": "fraction in [0, 1]", **scores}
    with pytest.raises(ValueError, match="not in"):
        evaluate_keypoint_results(path, [{**perfect[0], "image_id": 77}], "coco")
    with pytest.raises(ValueError, match="14 joints"):
        evaluate_keypoint_results(path, perfect, "crowdpose")
    assert len(COCO_SIGMAS) == 17


def test_keypoint_results_rescoring():
    kpts = np.zeros((2, 4, 3))
    kpts[0, :, 2] = [0.9, 0.1, 0.5, 0.3]
    kpts[1, :, 2] = [0.1, 0.0, 0.2, 0.15]
    res = keypoint_results(kpts, np.array([5, 6]), vis_threshold=0.2)
    assert res[0]["score"] == pytest.approx((0.9 + 0.5 + 0.3) / 3) and res[1]["score"] == 0.0
    assert res[0]["image_id"] == 5 and len(res[0]["keypoints"]) == 12


def test_pose_scores_read_the_typed_targets_and_name_a_missing_one():
    n, k = 2, 16
    eye = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(n, 2, 3)  # crop = original pixels
    batch = PoseBatch(torch.zeros(n, 3, 8, 8), torch.zeros(n, k, 2), torch.ones(n, k), torch.zeros(n, k, 2, 2), eye)
    pred = torch.zeros(n, k, 3)  # exactly on the GT joints
    with pytest.raises(MissingTargetError, match=r"PoseBatch\.head_size is not set but PoseScores\(metric='pckh'\)"):
        PoseScores("pckh").update(pred, batch)
    with pytest.raises(MissingTargetError, match=r"PoseBatch\.image_id .* CrowdPoseDataModule"):
        PoseScores("crowdpose", "gt.json").update(pred, batch)
    scores = PoseScores("pckh")
    scores.update(pred, dataclasses.replace(batch, head_size=torch.ones(n)))
    result = scores.compute()
    assert result["PCKh"] == 100.0 and result["arrays"]["image_id"].tolist() == [-1.0, -1.0]
    unknown = PoseScores("pckh")
    unknown.update(pred, dataclasses.replace(batch, head_size=torch.tensor([1.0, float("nan")])))
    with pytest.raises(ValueError, match=r"PoseBatch\.head_size .* NaN"):
        unknown.compute()
