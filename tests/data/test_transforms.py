"""Flips swap left/right (masks and joints), heatmaps, letterbox and affine crops map coordinates exactly."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from kd_suite.data.errors import BadSamples
from kd_suite.data.lip import LIPDataset
from kd_suite.data.pose import PoseInstance, TopDownDataset
from kd_suite.data.schema import LIP_FLIP_PAIRS, MPII_FLIP_PAIRS, MPII_JOINTS
from kd_suite.data.transforms import (
    affine_matrix,
    flip_joints,
    gaussian_heatmaps,
    hflip_parsing,
    invert_affine,
    letterbox,
    swap_lut,
    warp_points,
)


def test_hflip_parsing_swaps_left_and_right_classes() -> None:
    mask = np.zeros((4, 6), np.uint8)
    mask[:, 0], mask[:, 1], mask[:, 2], mask[0, 3], mask[1, 3], mask[2, 3], mask[3, 5] = 14, 16, 18, 5, 255, 15, 19
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    img2, mask2 = hflip_parsing(image, mask, swap_lut(20, LIP_FLIP_PAIRS))
    swap = {14: 15, 15: 14, 16: 17, 17: 16, 18: 19, 19: 18}
    for y in range(4):
        for x in range(6):
            assert mask2[y, x] == swap.get(int(mask[y, 5 - x]), int(mask[y, 5 - x]))
            assert (img2[y, x] == image[y, 5 - x]).all()


def test_lip_dataset_flip_equals_mirrored_mask_with_swapped_classes(tmp_path: Path) -> None:
    h, w = 40, 30
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[5:20, 2:8], mask[5:20, 20:26], mask[25:38, 3:10], mask[36:, 20:28] = 14, 15, 16, 19
    cv2.imwrite(str(tmp_path / "a.jpg"), image)
    cv2.imwrite(str(tmp_path / "a.png"), mask)
    records = [("a", tmp_path / "a.jpg", tmp_path / "a.png")]
    plain = LIPDataset(records, (h, w), BadSamples(False, "t"))  # input size = image size: resize is the identity
    flipping = LIPDataset(records, (h, w), BadSamples(False, "t"), flip=True)
    m0 = plain[0]["mask"]
    seen = set()
    for seed in range(20):
        flipping.reseed(seed)
        sample = flipping[0]
        m1, meta = sample["mask"], sample["meta"]
        np.testing.assert_array_equal(sample["orig_mask"].numpy(), mask)  # the GT at the original size is not flipped
        seen.add(bool(meta.get("flipped")))
        want = m0.numpy()[:, ::-1] if meta.get("flipped") else m0.numpy()
        if meta.get("flipped"):
            want = swap_lut(20, LIP_FLIP_PAIRS)[want.astype(np.uint8)]
        np.testing.assert_array_equal(m1.numpy(), want)
    assert seen == {True, False}
    assert (m0.numpy()[5:20, 2:8] == 14).all()


def test_flip_joints_mirrors_and_swaps_pairs() -> None:
    joints = np.arange(32, dtype=float).reshape(16, 2)
    vis = np.arange(16, dtype=float)
    out, v = flip_joints(joints, vis, 100, MPII_FLIP_PAIRS)
    partner = {a: b for a, b in MPII_FLIP_PAIRS} | {b: a for a, b in MPII_FLIP_PAIRS}
    for k in range(16):
        src = partner.get(k, k)
        assert out[k, 0] == 99 - joints[src, 0] and out[k, 1] == joints[src, 1] and v[k] == vis[src]
    names = MPII_JOINTS
    assert all(names[a].replace("r_", "l_") == names[b] for a, b in MPII_FLIP_PAIRS)


def test_gaussian_heatmaps_match_a_loop_implementation() -> None:
    joints = np.array([[10.3, 20.9], [-30.0, 5.0], [63.0, 0.0]])
    vis = np.array([1.0, 1.0, 0.0])
    maps, weight = gaussian_heatmaps(joints, vis, (16, 12), stride=4, sigma=2.0)
    assert maps.shape == (3, 12, 16) and weight.tolist() == [1.0, 0.0, 0.0]
    u, v = 10.3 / 4, 20.9 / 4
    for y in range(12):
        for x in range(16):
            assert maps[0, y, x] == pytest.approx(math.exp(-((x - u) ** 2 + (y - v) ** 2) / 8), abs=1e-6)
    assert not maps[1:].any()


def test_affine_crop_maps_points_and_inverts() -> None:
    m = affine_matrix((50.0, 80.0), (40.0, 40.0), 30.0, (64, 64))
    assert np.allclose(warp_points(np.array([[50.0, 80.0]]), m), [[31.5, 31.5]])  # centre → crop centre
    pts = np.random.default_rng(0).uniform(0, 100, (10, 2))
    back = warp_points(warp_points(pts, m), invert_affine(m))
    np.testing.assert_allclose(back, pts, atol=1e-9)
    # content rotated counter-clockwise: a point right of the centre moves up in the crop
    right = warp_points(np.array([[60.0, 80.0]]), m)[0]
    assert right[0] > 31.5 and right[1] < 31.5


def test_pose_flip_mirrors_the_crop_and_swaps_joints(tmp_path: Path) -> None:
    image = np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "p.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    joints = np.random.default_rng(2).uniform(30, 80, (16, 2))
    inst = PoseInstance(tmp_path / "p.png", np.array([60.0, 45.0]), np.array([80.0, 80.0]), joints, np.ones(16))
    bad = BadSamples(False, "t")
    plain = TopDownDataset([inst], (64, 64), MPII_FLIP_PAIRS, bad)[0]
    flipper = TopDownDataset([inst], (64, 64), MPII_FLIP_PAIRS, bad, flip=True)
    found = False
    for seed in range(10):
        flipper.reseed(seed)
        out = flipper[0]
        if not out["meta"]["flipped"]:
            continue
        found = True
        partner = dict(MPII_FLIP_PAIRS) | {b: a for a, b in MPII_FLIP_PAIRS}
        for k in range(16):
            src = partner.get(k, k)
            assert float(out["keypoints"][k, 0]) == pytest.approx(63 - float(plain["keypoints"][src, 0]), abs=1e-4)
            assert float(out["keypoints"][k, 1]) == pytest.approx(float(plain["keypoints"][src, 1]), abs=1e-4)
        assert (out["image"] - plain["image"].flip(-1)).abs().max() < 0.05  # same crop, mirrored
        # inv_affine still maps to the original pixels of the (swapped) joints
        a = out["inv_affine"].numpy()
        back = out["keypoints"].numpy() @ a[:, :2].T + a[:, 2]
        np.testing.assert_allclose(back, joints[[partner.get(k, k) for k in range(16)]], atol=1e-3)
    assert found


def test_letterbox_maps_boxes_back() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    out, r, (px, py) = letterbox(image, (128, 128))
    assert out.shape == (128, 128, 3) and r == pytest.approx(0.64) and (px, py) == (0.0, 32.0)
    assert (out[:32] == 114).all() and (out[32:96] == 0).all()
    box = np.array([20.0, 10.0, 150.0, 90.0])
    mapped = box * r + [px, py, px, py]
    np.testing.assert_allclose((mapped - [px, py, px, py]) / r, box)
