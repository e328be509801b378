"""Detection metrics: VOC07 AP on hand-made cases, COCO mAP against pycocotools, the evaluate-file entry points."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import shutil

import numpy as np
import pytest

from kd_suite.metrics.detection import (
    COCO_STATS,
    DetectionEvaluator,
    ImageRecord,
    ap_table,
    coco_evaluate,
    evaluate_coco_files,
    evaluate_voc_files,
    voc_ap,
    voc_evaluate,
)
from kd_suite.tools.evaluate import main as evaluate_main


def record(key, gt, dets=(), difficult=None, size=(100, 100)) -> ImageRecord:
    """gt: [(x1, y1, x2, y2, label)], dets: [(x1, y1, x2, y2, score, label)]."""
    gt, dets = np.asarray(gt, float).reshape(-1, 5), np.asarray(dets, float).reshape(-1, 6)
    return ImageRecord(
        key, size, boxes=dets[:, :4], scores=dets[:, 4], labels=dets[:, 5].astype(np.int64), gt_boxes=gt[:, :4],
        gt_labels=gt[:, 4].astype(np.int64),
        gt_difficult=np.zeros(len(gt), bool) if difficult is None else np.asarray(difficult, bool),
    )  # fmt: skip


def test_voc_ap_by_hand():
    # recall/precision after each of TP, FP, TP with 3 GT: (1/3, 1), (1/3, 1/2), (2/3, 2/3)
    rec, prec = np.array([1 / 3, 1 / 3, 2 / 3]), np.array([1.0, 0.5, 2 / 3])
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx((4 * 1.0 + 3 * 2 / 3) / 11)  # t ≤ 0.3 and 0.4–0.6
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(1 / 3 * 1.0 + 1 / 3 * 2 / 3)


def test_voc_evaluate_tp_fp_order_and_duplicates():
    gts = [(0, 0, 9, 9, 0), (20, 20, 29, 29, 0), (40, 40, 49, 49, 0)]
    dets = [(0, 0, 9, 9, 0.9, 0), (60, 60, 69, 69, 0.8, 0), (20, 20, 29, 29, 0.7, 0), (0, 0, 9, 9, 0.6, 0)]
    res = voc_evaluate([record("a", gts, dets)], ["thing"])
    # TP, FP, TP, FP (duplicate): 11-point AP = (4·1 + 3·2/3) / 11
    assert res["mAP50"] == pytest.approx(6 / 11)
    assert res["per_class"]["thing"]["num_gt"] == 3


def test_voc_iou_threshold_is_strict_with_the_plus_one_convention():
    gt = [(0, 0, 9, 9, 0)]  # 10 × 10 pixels under the +1 convention
    half = voc_evaluate([record("a", gt, [(0, 0, 9, 4, 0.9, 0)])], ["c"])  # 10 × 5: IoU exactly 0.5 → FP
    above = voc_evaluate([record("a", gt, [(0, 0, 9, 5, 0.9, 0)])], ["c"])  # 10 × 6: IoU 0.6 → TP
    assert half["mAP50"] == 0.0 and above["mAP50"] == pytest.approx(1.0)


def test_voc_difficult_objects_are_neither_counted_nor_penalised():
    gts = [(0, 0, 9, 9, 0), (30, 30, 39, 39, 0)]
    dets = [(30, 30, 39, 39, 0.95, 0), (0, 0, 9, 9, 0.9, 0)]
    res = voc_evaluate([record("a", gts, dets, difficult=[False, True])], ["c"])
    assert res["per_class"]["c"]["num_gt"] == 1 and res["mAP50"] == pytest.approx(1.0)  # the difficult hit is ignored
    plain = voc_evaluate([record("a", gts, dets)], ["c"])
    assert plain["per_class"]["c"]["num_gt"] == 2 and plain["mAP50"] == pytest.approx(1.0)


def test_voc_classes_without_gt_are_left_out_of_the_mean():
    recs = [record("a", [(0, 0, 9, 9, 0)], [(0, 0, 9, 9, 0.9, 0), (50, 50, 60, 60, 0.8, 1)])]
    res = voc_evaluate(recs, ["a", "b", "c"])
    assert res["mAP50"] == pytest.approx(1.0) and math.isnan(res["per_class"]["b"]["AP50"])
    table = ap_table(res["per_class"])
    assert "| a | 100.00 | 1 |" in table and "| b | n/a | 0 |" in table


def random_coco(seed: int) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    images = [{"id": i, "width": 320, "height": 240, "file_name": f"{i}.jpg"} for i in range(1, 9)]
    anns, res = [], []
    for im in images[:-1]:  # the last image has no annotation
        for _ in range(int(rng.integers(0, 6))):
            x, y = rng.uniform(0, 250), rng.uniform(0, 180)
            w, h = rng.uniform(4, 120), rng.uniform(4, 100)
            c = int(rng.integers(1, 4))
            crowd = int(rng.uniform() < 0.1)
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": c, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": crowd})  # fmt: skip
            jitter = rng.normal(0, 4, 4)
            res.append({"image_id": im["id"], "category_id": c, "bbox": [x + jitter[0], y + jitter[1], w, h],
                        "score": float(rng.uniform())})  # fmt: skip
    for im in images:
        for _ in range(4):
            box = [*rng.uniform(0, 200, 2), *rng.uniform(4, 100, 2)]
            res.append({"image_id": im["id"], "category_id": int(rng.integers(1, 4)),
                        "bbox": box, "score": float(rng.uniform())})  # fmt: skip
    cats = [{"id": i, "name": f"c{i}", "supercategory": "x"} for i in (1, 2, 3)]
    return {"info": {}, "licenses": [], "images": images, "annotations": anns, "categories": cats}, res


@pytest.mark.parametrize("seed", [0, 1])
def test_coco_map_equals_pycocotools(seed):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, res = random_coco(seed)
    ours = coco_evaluate(copy.deepcopy(gt), copy.deepcopy(res))
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(res)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert [ours[k] for k in COCO_STATS] == pytest.approx(list(ev.stats), abs=1e-9)
    assert 0 < ours["AP"] < 1
    prec = ev.eval["precision"][:, :, 0, 0, -1]
    assert ours["per_class"]["c1"] == pytest.approx(prec[prec > -1].mean())


def test_coco_empty_results_and_image_subset():
    gt, res = random_coco(2)
    empty = coco_evaluate(copy.deepcopy(gt), [])
    assert all(empty[k] == 0.0 for k in COCO_STATS)
    first = [r for r in res if r["image_id"] == 1]
    sub = coco_evaluate(copy.deepcopy(gt), first, image_ids=[1])
    alone = copy.deepcopy(gt)
    alone["images"] = alone["images"][:1]
    alone["annotations"] = [a for a in alone["annotations"] if a["image_id"] == 1]
    assert sub["AP"] == pytest.approx(coco_evaluate(alone, first)["AP"])
    with pytest.raises(ValueError, match="image ids"):
        coco_evaluate(copy.deepcopy(gt), [{**res[0], "image_id": 999}])


def test_in_memory_coco_matches_a_gt_file(tmp_path):
    records = [record(1, [(10, 10, 50, 60, 0), (70, 20, 90, 40, 1)], [(12, 10, 50, 58, 0.9, 0), (0, 0, 5, 5, 0.3, 1)]),
               record(2, [(5, 5, 40, 40, 1)], [(5, 6, 40, 41, 0.8, 1)])]  # fmt: skip
    gt = {"info": {}, "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
          "annotations": [], "categories": [{"id": 7, "name": "a"}, {"id": 9, "name": "b"}]}  # fmt: skip
    for r in records:
        for box, label in zip(r.gt_boxes, r.gt_labels):
            w, h = box[2] - box[0], box[3] - box[1]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": r.key, "iscrowd": 0, "area": w * h,
                                      "category_id": [7, 9][label], "bbox": [box[0], box[1], w, h]})  # fmt: skip
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    from_file, in_memory = DetectionEvaluator("coco", ["a", "b"], path), DetectionEvaluator("coco", ["a", "b"])
    for r in records:
        from_file.add(r)
        in_memory.add(r)
    a, b = from_file.compute(), in_memory.compute()
    assert a["AP"] == pytest.approx(b["AP"]) and 0 < a["AP"] < 1
    assert a["per_class"].keys() == {"a", "b"}


VOC_XML = """<annotation><folder>VOC2007</folder><filename>{id}.jpg</filename>
<size><width>200</width><height>100</height><depth>3</depth></size>{objects}</annotation>"""
VOC_OBJ = """<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{d}</difficult>
<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"""


def write_voc(root, objects: dict[str, list[tuple]]) -> None:
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(objects) + "\n")
    for i, objs in objects.items():
        body = "".join(VOC_OBJ.format(name=n, d=d, x1=a, y1=b, x2=c, y2=e) for n, d, a, b, c, e in objs)
        (root / "Annotations" / f"{i}.xml").write_text(VOC_XML.format(id=i, objects=body))


def test_evaluate_voc_files_on_a_written_devkit(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2007"
    write_voc(root, {"000001": [("dog", 0, 11, 21, 50, 60), ("cat", 1, 100, 10, 150, 90)],
                     "000007": [("cat", 0, 5, 5, 40, 40)]})  # fmt: skip
    # XML is 1-based: the loader's boxes (and our predictions) are 0-based, i.e. xmin - 1
    preds = [
        {"image_id": "000001", "category_id": "dog", "bbox": [10, 20, 39, 39], "score": 0.9},
        {"image_id": 7, "category_id": 7, "bbox": [4, 4, 35, 35], "score": 0.8},  # int id, class index of "cat"
        {"image_id": "000001", "category_id": "cat", "bbox": [99, 9, 50, 80], "score": 0.7},  # hits a difficult GT
        {"image_id": "000007", "category_id": "dog", "bbox": [0, 0, 10, 10], "score": 0.5},  # FP
    ]
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(preds))
    res = evaluate_voc_files(tmp_path / "VOCdevkit", pred)  # VOCdevkit → its VOC2007
    assert res["num_images"] == 2
    assert res["per_class"]["dog"]["AP50"] == pytest.approx(1.0)  # TP ranked above the FP
    assert res["per_class"]["cat"]["AP50"] == pytest.approx(1.0) and res["per_class"]["cat"]["num_gt"] == 1
    assert math.isnan(res["per_class"]["car"]["AP50"]) and res["mAP50"] == pytest.approx(1.0)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{**preds[0], "image_id": "000099"}]))
    with pytest.raises(KeyError, match="000099"):
        evaluate_voc_files(root, bad)
    assert evaluate_main(["--format", "voc", "--gt", str(root), "--pred", str(pred), "--split", "test"]) == 0
    assert evaluate_main(["--format", "voc", "--gt", str(root), "--pred", str(bad)]) == 2


def test_evaluate_voc_files_on_the_real_voc2007_annotation(tmp_path, real_fixtures):
    root = tmp_path / "VOC2007"
    shutil.copytree(real_fixtures / "voc" / "VOCdevkit" / "VOC2007", root)
    pred = tmp_path / "pred.json"  # the real GT: train at (139, 200)-(207, 301), 1-based inclusive
    pred.write_text(json.dumps([{"image_id": "000002", "category_id": 18, "bbox": [138, 199, 68, 101], "score": 1}]))
    res = evaluate_voc_files(root, pred)
    assert res["per_class"]["train"]["AP50"] == pytest.approx(1.0) and res["mAP50"] == pytest.approx(1.0)


def test_evaluate_coco_files_and_cli(tmp_path, capsys):
    gt, res = random_coco(3)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(res))
    out = evaluate_coco_files(tmp_path / "gt.json", tmp_path / "res.json")
    assert out["AP"] == pytest.approx(coco_evaluate(copy.deepcopy(gt), copy.deepcopy(res))["AP"])
    capsys.readouterr()
    assert evaluate_main(["--format", "coco-bbox", "--gt", str(tmp_path / "gt.json"),
                          "--pred", str(tmp_path / "res.json")]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["AP"] == pytest.approx(out["AP"])
    (tmp_path / "empty.json").write_text("[]")
    assert evaluate_coco_files(tmp_path / "gt.json", tmp_path / "empty.json")["AP"] == 0.0
