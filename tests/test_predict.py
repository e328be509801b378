"""``kd-suite predict`` on plain photos: for each task a tiny run is fitted through the CLI, then its best.ckpt
predicts a flat folder of images; the files must be what ``kd-suite evaluate`` reads and score like validation."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from kd_suite.cli import main
from kd_suite.data.crowdpose import CrowdPoseDataModule
from kd_suite.data.synth import synthesize
from kd_suite.data.transforms import box_to_center_size, sanitize_box
from kd_suite.metrics.detection import evaluate_voc_files
from kd_suite.metrics.keypoints import evaluate_crowdpose_files, keypoint_results
from kd_suite.metrics.parsing import evaluate_files, read_label_png
from kd_suite.standalone import load_standalone

SIZE = 64  # network input of every tiny run
CLASSES = ["standing", "fallen"]
LOADER = {"num_workers": 0, "pin_memory": False, "batch_size": 2}
TRAINER = {"max_epochs": 1, "limit_train_batches": 2, "logger": False, "precision": "32-true", "accelerator": "cpu"}
MODELS = {
    "parsing": {
        "class_path": "kd_suite.tasks.parsing.ParsingDistiller",
        "init_args": {
            "student": {"class_path": "kd_suite.tasks.parsing.ParsingNet", "init_args": {
                "backbone": "test_resnet", "context_channels": 8, "fusion_channels": [8, 8, 8], "head_channels": 8}},
            "flip_test": True,  # the LIP flip pairs come from the data facts the checkpoint records
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}},
        },
    },
    "detection": {
        "class_path": "kd_suite.tasks.detection.DetectionDistiller",
        "init_args": {
            "student": {"class_path": "kd_suite.tasks.detection.YOLOX",
                        "init_args": {"variant": "s", "num_classes": 2, "depth": 0.33, "width": 0.125}},
            "score_thresh": 1e-5,  # an untrained detector scores ~1e-4: keep boxes so that the mAP check has content
            "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.002}},
        },
    },
    "pose": {
        "class_path": "kd_suite.tasks.pose.PoseDistiller",
        "init_args": {
            "student": {"class_path": "kd_suite.tasks.pose.HeatmapNet",
                        "init_args": {"backbone": "test_resnet", "num_joints": 14, "deconv_channels": 8}},
            "metric": "crowdpose",
            "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.001}},
        },
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic LIP, VOC and CrowdPose sets, plus ``boxes.json``: the CrowdPose val persons as detections
    (category 1, score 0.9) and a distractor box of category 2 per image."""
    root = tmp_path_factory.mktemp("predict_data")
    synthesize(root, 6, 4, (80, 96), seed=3, formats=("lip", "voc", "crowdpose"), workers=0, progress=False)
    gt = json.loads((root / "crowdpose" / "json" / "crowdpose_val.json").read_text())
    boxes = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.9} for a in gt["annotations"]]
    boxes += [{"image_id": im["id"], "category_id": 2, "bbox": [0, 0, 20, 20], "score": 1.0} for im in gt["images"]]
    (root / "boxes.json").write_text(json.dumps(boxes))
    return root


def _datamodule(task: str, root: Path) -> dict:
    if task == "parsing":
        args = {"root": str(root / "LIP"), "input_size": [SIZE, SIZE], "augment": False}
        return {"class_path": "kd_suite.data.lip.LIPDataModule", "init_args": args | LOADER}
    if task == "detection":
        args = {"root": str(root / "VOCdevkit"), "class_names": CLASSES, "input_size": [SIZE, SIZE], "augment": False}
        return {"class_path": "kd_suite.data.voc.VOCDataModule", "init_args": args | LOADER}
    args = {"root": str(root / "crowdpose"), "input_size": [SIZE, SIZE], "det_file": str(root / "boxes.json")}
    return {"class_path": "kd_suite.data.crowdpose.CrowdPoseDataModule", "init_args": args | LOADER}


@pytest.fixture(scope="module")
def runs(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run folders of one tiny fit per task (written on first use)."""
    root, done = tmp_path_factory.mktemp("predict_runs"), {}

    def fit(task: str) -> Path:
        if task not in done:
            config = root / f"{task}.yaml"
            doc = {"seed_everything": 0, "trainer": TRAINER, "model": MODELS[task], "data": _datamodule(task, data)}
            config.write_text(yaml.safe_dump(doc))
            extra = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
            assert main(["fit", "--config", str(config), "--run_dir", str(root / task), *extra]) == 0
            done[task] = root / task
        return done[task]

    return fit


def best_scores(run: Path) -> dict[str, float]:
    return json.loads((run / "metrics.json").read_text())["best"]


def read(path: Path) -> object:
    return json.loads(path.read_text())


def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def by_image(results: list[dict]) -> list[dict]:
    """Sorted by image id; stable, so an image's people stay in file order."""
    return sorted(results, key=lambda r: r["image_id"])


def flat_copy(files: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder


def predict(*args: str | Path) -> int:
    return main(["predict", *map(str, args), "--no-progress", "--batch-size", "3"])


# ------------------------------------------------------------------------------------------------------ parsing
def test_parsing_labels_score_like_validation(runs, data, tmp_path, capsys):
    run = runs("parsing")
    photos = flat_copy(sorted((data / "LIP" / "TrainVal_images" / "val_images").glob("*.jpg")), tmp_path / "photos")
    assert predict("--ckpt", run / "checkpoints" / "best.ckpt", "--input", photos, "--out", tmp_path / "out") == 0
    assert f"{len(list(photos.iterdir()))} images (parsing" in capsys.readouterr().out
    for photo in photos.iterdir():
        with Image.open(photo) as im, Image.open(tmp_path / "out" / f"{photo.stem}.png") as label:
            assert label.size == im.size and label.mode == "P"
            assert Image.open(tmp_path / "out" / "overlays" / f"{photo.stem}.jpg").size == im.size
            assert np.asarray(label).max() < 20
    gt = data / "LIP" / "TrainVal_parsing_annotations" / "val_segmentations"
    scores, best = evaluate_files(gt, tmp_path / "out"), best_scores(run)
    assert scores["num_images"] == len(list(photos.iterdir()))
    assert scores["mIoU"] == pytest.approx(best["val/mIoU"] / 100, abs=1e-6)  # validation logs percent
    assert scores["pixel_acc"] == pytest.approx(best["val/pixel_acc"] / 100, abs=1e-6)


# ------------------------------------------------------------------------------------------------------ detection
def inside(bbox: list[float], width: int, height: int) -> bool:
    """A COCO box lies in the image (x + w recomputed in float64 may pass the border by an ulp)."""
    x, y, w, h = bbox
    return 0 <= x <= x + w <= width + 1e-9 and 0 <= y <= y + h <= height + 1e-9


def test_detections_score_like_validation(runs, data, tmp_path):
    run, voc = runs("detection"), data / "VOCdevkit" / "VOC2007"
    ids = (voc / "ImageSets" / "Main" / "test.txt").read_text().split()
    photos = flat_copy([voc / "JPEGImages" / f"{i}.jpg" for i in ids], tmp_path / "photos")
    assert predict("--ckpt", run / "checkpoints" / "best.ckpt", "--input", photos, "--out", tmp_path / "out") == 0
    results, images = read(tmp_path / "out" / "detections.json"), read(tmp_path / "out" / "images.json")
    assert [c["name"] for c in images["categories"]] == CLASSES and [c["id"] for c in images["categories"]] == [0, 1]
    sizes = {im["id"]: (im["width"], im["height"]) for im in images["images"]}
    assert sorted(sizes) == sorted(int(i) for i in ids) and results
    for r in results:
        width, height = sizes[r["image_id"]]
        assert inside(r["bbox"], width, height) and r["category_id"] in (0, 1)
    for i in ids:
        with Image.open(photos / f"{i}.jpg") as im:
            assert Image.open(tmp_path / "out" / "overlays" / f"{i}.jpg").size == im.size
    scores = evaluate_voc_files(voc, tmp_path / "out" / "detections.json", "test", CLASSES)
    assert scores["mAP50"] == pytest.approx(best_scores(run)["val/mAP50"] / 100, abs=1e-6)


# ------------------------------------------------------------------------------------------------------ pose
def crop_window(box: list[float], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) corners in original pixels of the crop of COCO ``box`` (the validation recipe)."""
    center, size = box_to_center_size(sanitize_box(box, width, height), 1.0)
    return center - size / 2 - 1, center + size / 2 + 1


def test_pose_crops_follow_the_boxes_and_score_like_validation(runs, data, tmp_path, capsys):
    run, cp = runs("pose"), data / "crowdpose"
    photos = flat_copy(sorted((cp / "images").glob("*.jpg")), tmp_path / "photos")  # train images have no boxes
    boxes = data / "boxes.json"
    args = ["--boxes", boxes, "--box-category", "1", "--box-threshold", "0", "--out", tmp_path / "out"]
    assert predict("--ckpt", run / "checkpoints" / "best.ckpt", "--input", photos, *args) == 0
    summary = capsys.readouterr().out
    size = {im["id"]: (im["width"], im["height"]) for im in read(cp / "json" / "crowdpose_val.json")["images"]}
    results = read(tmp_path / "out" / "keypoints.json")
    on_val = by_image([r for r in results if r["image_id"] in size])
    persons = by_image([d for d in read(boxes) if d["category_id"] == 1])
    assert len(on_val) == len(persons) and {r["category_id"] for r in results} == {1}
    for r, d in zip(on_val, persons):
        assert r["image_id"] == d["image_id"] and len(r["keypoints"]) == 14 * 3
        low, high = crop_window(d["bbox"], *size[d["image_id"]])
        xy = np.asarray(r["keypoints"]).reshape(14, 3)[:, :2]
        assert (xy >= low).all() and (xy <= high).all(), "joints lie inside the crop of their box"
    without = len(results) - len(on_val)
    assert without == len(list(photos.iterdir())) - len(size) > 0
    assert f"{without} image(s) without a usable box, whole image used" in summary
    scores = evaluate_crowdpose_files(cp / "json" / "crowdpose_val.json", _write(tmp_path / "val.json", on_val))
    assert scores["AP"] == pytest.approx(best_scores(run)["val/AP"] / 100, abs=1e-6)
    # the same people through CrowdPose validation (det_file = the boxes): same joints, same instance scores
    module = load_standalone(run / "checkpoints" / "best.ckpt").module
    dm = CrowdPoseDataModule(str(cp), input_size=(SIZE, SIZE), det_file=str(boxes), **LOADER)
    dm.setup("validate")
    joints, ids, box_scores = [], [], []
    with torch.no_grad():
        for batch in dm.val_dataloader():
            joints.append(module.decode(module.student, batch, module.student(batch.image)))
            ids += batch.image_id.tolist()
            box_scores += batch.box_score.tolist()
    want = keypoint_results(torch.cat(joints).double().numpy(), np.array(ids), module.vis_threshold, box_scores)
    for got, ref in zip(on_val, by_image(want), strict=True):
        assert got["image_id"] == ref["image_id"] and got["score"] == pytest.approx(ref["score"], abs=1e-6)
        np.testing.assert_allclose(got["keypoints"], ref["keypoints"], atol=1e-3)


def test_pose_whole_image_is_one_person_inside_its_crop(runs, data, tmp_path):
    run, cp = runs("pose"), data / "crowdpose"
    photos = flat_copy(sorted((cp / "images").glob("*.jpg"))[:3], tmp_path / "photos")
    assert predict("--ckpt", run / "checkpoints" / "best.ckpt", "--input", photos, "--out", tmp_path / "out") == 0
    results = read(tmp_path / "out" / "keypoints.json")
    images = {im["id"]: im for im in read(tmp_path / "out" / "images.json")["images"]}
    assert sorted(r["image_id"] for r in results) == sorted(images) == sorted(int(p.stem) for p in photos.iterdir())
    for r in results:
        im = images[r["image_id"]]
        low, high = crop_window([0, 0, im["width"], im["height"]], im["width"], im["height"])
        xy = np.asarray(r["keypoints"]).reshape(14, 3)[:, :2]
        assert (xy >= low).all() and (xy <= high).all() and 0 <= r["score"] <= 1
        with Image.open(photos / im["file_name"]) as photo:
            assert Image.open(tmp_path / "out" / "overlays" / f"{Path(im['file_name']).stem}.jpg").size == photo.size
    # the whole image is the box [0, 0, W, H] with score 1
    whole = [{"image_id": i, "category_id": 1, "bbox": [0, 0, im["width"], im["height"]]} for i, im in images.items()]
    args = ["--boxes", _write(tmp_path / "whole.json", whole), "--out", tmp_path / "boxed"]
    assert predict("--ckpt", run / "checkpoints" / "best.ckpt", "--input", photos, *args) == 0
    assert by_image(read(tmp_path / "boxed" / "keypoints.json")) == by_image(results)


# ------------------------------------------------------------------------------------------------------ errors
def test_inputs_and_errors_in_one_line(runs, data, tmp_path, capsys):
    ckpt = runs("parsing") / "checkpoints" / "best.ckpt"
    photos = flat_copy(sorted((data / "LIP" / "TrainVal_images" / "val_images").glob("*.jpg"))[:2], tmp_path / "in")
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    assert predict("--ckpt", ckpt, "--input", photos, "--out", tmp_path / "out", "--no-overlays") == 0
    captured = capsys.readouterr()
    assert "skipping" in captured.err and "broken.jpg" in captured.err
    assert "2 images (parsing" in captured.out and "1 unreadable file(s): broken.jpg" in captured.out
    good = [p for p in photos.iterdir() if p.name != "broken.jpg"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{p.stem}.png" for p in good)
    (tmp_path / "empty").mkdir()
    cases = [
        (["--ckpt", tmp_path / "none.ckpt", "--input", photos], "checkpoint .*none.ckpt.* not found"),
        (["--ckpt", ckpt, "--input", tmp_path / "empty"], "no images .* in the folder"),
        (["--ckpt", ckpt, "--input", photos, "--boxes", data / "boxes.json"], "--boxes is for pose checkpoints"),
        (["--ckpt", ckpt, "--input", photos, "--boxes", tmp_path / "no.json"], "--boxes .*no.json does not exist"),
        (["--ckpt", photos / "broken.jpg", "--input", photos], "broken.jpg is not a checkpoint"),
    ]
    for args, message in cases:
        assert predict(*args, "--out", tmp_path / "x") == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(message, err), err


# ------------------------------------------------------------------------------------------------------ real photos
def test_real_photos(runs, real_fixtures, tmp_path):
    lip, cp = real_fixtures / "lip" / "images", real_fixtures / "crowdpose"
    parser, detector, pose = (runs(task) / "checkpoints" / "best.ckpt" for task in ("parsing", "detection", "pose"))
    assert predict("--ckpt", parser, "--input", lip, "--out", tmp_path / "p") == 0
    for photo in lip.glob("*.jpg"):
        with Image.open(photo) as im:
            assert read_label_png(tmp_path / "p" / f"{photo.stem}.png").shape == (im.height, im.width)
    assert predict("--ckpt", detector, "--input", real_fixtures / "mpii", "--out", tmp_path / "d") == 0
    images = {im["id"]: im for im in read(tmp_path / "d" / "images.json")["images"]}
    assert len(images) == 5 and all(isinstance(i, int) for i in images)
    for r in read(tmp_path / "d" / "detections.json"):
        assert inside(r["bbox"], images[r["image_id"]]["width"], images[r["image_id"]]["height"])
    boxes = cp / "test_crowdpose_det_AP_40.json"  # person detections of the two photos, ids = file stems
    assert predict("--ckpt", pose, "--input", cp, "--out", tmp_path / "k", "--boxes", boxes) == 0
    results, dets = read(tmp_path / "k" / "keypoints.json"), by_image([d for d in read(boxes) if d["score"] >= 0.3])
    assert [r["image_id"] for r in by_image(results)] == [d["image_id"] for d in dets]
    sizes = {im["id"]: (im["width"], im["height"]) for im in read(cp / "test_crowdpose.json")["images"]}
    for r, d in zip(by_image(results), dets, strict=True):
        low, high = crop_window(d["bbox"], *sizes[d["image_id"]])
        xy = np.asarray(r["keypoints"]).reshape(14, 3)[:, :2]
        assert (xy >= low).all() and (xy <= high).all()
