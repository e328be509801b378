"""COCO bbox, COCO keypoint and CrowdPose AP on ``--images`` synthetic images: pycocotools vs the project's engines.

GT and results are random but COCO-like (several objects per image, jittered true positives, spurious detections,
some crowd GT). Each protocol is scored, end to end from the GT (dict or json file) and the results list, by
pycocotools (bbox and COCO keypoints; it has no CrowdPose protocol), and through the project's functions
(:func:`kd_suite.metrics.detection.coco_evaluate`, :func:`kd_suite.metrics.keypoints.evaluate_keypoint_results`)
on faster-coco-eval and on hotcoco / xthotcoco when installed. Prints seconds (best of ``--repeat``), speed-ups over
pycocotools (CrowdPose: over faster-coco-eval) and the largest difference of the summary stats.

    python benchmarks/coco_eval.py [--images 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from kd_suite.data.schema import CROWDPOSE_SIGMAS
from kd_suite.metrics.coco_backend import BACKEND_ENV
from kd_suite.metrics.detection import COCO_STATS, coco_evaluate
from kd_suite.metrics.keypoints import COCO_SIGMAS, evaluate_keypoint_results


def bbox_data(n: int, rng: np.random.Generator) -> tuple[dict, list[dict]]:
    images, anns, res = [], [], []
    for i in range(1, n + 1):
        images.append({"id": i, "width": 640, "height": 480})
        for _ in range(int(rng.integers(0, 12))):
            x, y, w, h = *rng.uniform(0, 560, 1), *rng.uniform(0, 400, 1), *rng.uniform(4, 200, 2)
            c = int(rng.integers(1, 81))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": c, "bbox": [x, y, w, h], "area": w * h,
                         "iscrowd": int(rng.uniform() < 0.02)})  # fmt: skip
            j = rng.normal(0, 0.08 * min(w, h), 4)
            res.append({"image_id": i, "category_id": c, "bbox": [x + j[0], y + j[1], w + j[2], h + j[3]],
                        "score": float(rng.uniform())})  # fmt: skip
        for _ in range(int(rng.integers(5, 20))):
            box = [*rng.uniform(0, 500, 2), *rng.uniform(4, 200, 2)]
            res.append({"image_id": i, "category_id": int(rng.integers(1, 81)), "bbox": box,
                        "score": float(rng.uniform(0, 0.6))})  # fmt: skip
    cats = [{"id": c, "name": f"c{c}", "supercategory": "x"} for c in range(1, 81)]
    return {"info": {}, "images": images, "annotations": anns, "categories": cats}, res


def keypoint_data(n: int, joints: int, crowd: bool, rng: np.random.Generator) -> tuple[dict, list[dict]]:
    images, anns, res = [], [], []
    for i in range(1, n + 1):
        images.append({"id": i, "width": 640, "height": 480} | ({"crowdIndex": float(rng.uniform())} if crowd else {}))
        for _ in range(int(rng.integers(0, 6))):
            x0, y0, w, h = *rng.uniform(0, 400, 2), *rng.uniform(30, 200, 1), *rng.uniform(60, 300, 1)
            k = np.concatenate([rng.uniform([x0, y0], [x0 + w, y0 + h], (joints, 2)), np.full((joints, 1), 2.0)], 1)
            k[rng.random(joints) < 0.2] = 0.0
            ann = {"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": [x0, y0, w, h], "iscrowd": 0,
                   "num_keypoints": int((k[:, 2] > 0).sum()), "keypoints": k.reshape(-1).tolist()}  # fmt: skip
            anns.append(ann if crowd else ann | {"area": 0.7 * w * h})
            k[:, :2] += rng.normal(0, rng.uniform(2, 20), (joints, 2))
            k[:, 2] = rng.uniform(0, 1, joints)
            res.append({"image_id": i, "category_id": 1, "keypoints": k.reshape(-1).tolist(),
                        "score": float(rng.uniform())})  # fmt: skip
    cats = [{"id": 1, "name": "person", "keypoints": [str(j) for j in range(joints)], "skeleton": []}]
    return {"info": {}, "images": images, "annotations": anns, "categories": cats}, res


def pycocotools(gt: dict, results: list[dict], iou_type: str, sigmas: Any = None) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), iou_type)
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def best(fn: Any, data: tuple[Any, ...], repeat: int) -> tuple[float, Any]:
    """Best wall time of ``fn(*deep copy of data)`` (copies made outside the timed region) and its last output."""
    times, out = [], None
    for _ in range(repeat):
        copies = copy.deepcopy(data)
        start = time.perf_counter()
        out = fn(*copies)
        times.append(time.perf_counter() - start)
    return min(times), out


def engines() -> list[str]:
    return ["faster-coco-eval"] + (["hotcoco"] if importlib.util.find_spec("hotcoco") else [])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    gt, res = bbox_data(args.images, rng)
    t, ref = best(lambda g, r: pycocotools(g, r, "bbox"), (gt, res), args.repeat)
    rows.append(("bbox", "pycocotools", t, ref))
    for engine in engines():
        os.environ[BACKEND_ENV] = engine
        t, out = best(coco_evaluate, (gt, res), args.repeat)
        rows.append(("bbox", engine, t, np.asarray([out[k] for k in COCO_STATS])))
    with tempfile.TemporaryDirectory() as tmp:
        for protocol, joints, sigmas in (("coco", 17, COCO_SIGMAS), ("crowdpose", 14, CROWDPOSE_SIGMAS)):
            gt, res = keypoint_data(args.images, joints, protocol == "crowdpose", rng)
            path = Path(tmp) / f"{protocol}.json"
            path.write_text(json.dumps(gt))
            if protocol == "coco":
                t, ref = best(lambda g, r, s=sigmas: pycocotools(g, r, "keypoints", s), (gt, res), args.repeat)
                rows.append((protocol, "pycocotools", t, ref))
            for engine in engines():
                os.environ[BACKEND_ENV] = engine
                t, out = best(lambda r, f=path, k=protocol: evaluate_keypoint_results(f, r, k), (res,), args.repeat)
                rows.append((protocol, engine, t, np.asarray(list(out.values()))))
    os.environ.pop(BACKEND_ENV, None)
    print(f"{args.images} images, best of {args.repeat}")
    print(f"{'protocol':<10} {'engine':<17} {'seconds':>8} {'speed-up':>9} {'AP':>8} {'max |Δ stats|':>14}")
    for protocol in ("bbox", "coco", "crowdpose"):
        group = [r for r in rows if r[0] == protocol]
        base_t, base_stats = group[0][2], group[0][3]
        for _, engine, t, stats in group:
            diff = float(np.abs(stats - base_stats).max())
            print(f"{protocol:<10} {engine:<17} {t:>8.3f} {base_t / t:>8.1f}x {stats[0]:>8.5f} {diff:>14.1e}")


if __name__ == "__main__":
    main()
