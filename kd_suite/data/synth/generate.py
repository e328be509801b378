"""``synthesize``: render scenes in parallel and write them as LIP, MPII, CrowdPose, VOC2007 and COCO datasets.

Every scene has its own random stream (seeded from ``(seed, scene index)``), so the output is byte-identical for a
seed whatever the number of workers. Annotation files are assembled in scene order in the main process.
"""

from __future__ import annotations

import io
import json
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import savemat
from tqdm import tqdm

from ..schema import CROWDPOSE_JOINTS, CROWDPOSE_SKELETON, FALL_CLASSES, MPII_MAT_NAMES
from .scene import Scene, make_scene
from .writers import (
    FORMAT_DIRS,
    FORMATS,
    check_class_names,
    coco_records,
    crowd_index,
    crowdpose_records,
    encode_jpeg,
    mpii_records,
    voc_objects,
    voc_xml,
    write_lip,
)


@dataclass(frozen=True)
class _Job:
    out: Path
    index: int  # global scene index (train scenes first)
    split: str  # "train" | "val"
    local: int  # index within the split
    seed: int
    size: tuple[int, int]
    formats: tuple[str, ...]
    class_names: tuple[str, ...]
    empty: bool
    easy: bool = False


def _names(index: int) -> dict[str, str]:
    return {
        "mpii": f"{index + 1:09d}.jpg",
        "crowdpose": f"{100000 + index}.jpg",
        "voc": f"{index + 1:06d}",
        "coco": f"{index + 1:012d}.jpg",
    }


def render_scene(seed: int, index: int, size: tuple[int, int], empty: bool = False, difficulty: str = "full") -> Scene:
    """Scene ``index`` of the dataset generated with ``seed`` and ``difficulty`` (what :func:`synthesize` writes)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    counts = [0.6, 0.4, 0.0, 0.0] if difficulty == "easy" else [0.3, 0.3, 0.2, 0.2]
    n = 0 if empty else int(rng.choice([1, 2, 3, 4], p=counts))
    return make_scene(rng, size, n, easy=difficulty == "easy")


def _render(job: _Job) -> dict:
    """Render one scene, write its image files and return its annotation records per format."""
    scene = render_scene(job.seed, job.index, job.size, job.empty, "easy" if job.easy else "full")
    h, w = job.size
    names, jpeg, rec = _names(job.index), None, {}
    for fmt in job.formats:
        root = job.out / FORMAT_DIRS[fmt]
        if fmt == "lip":
            rec["lip"] = write_lip(root, scene, job.split, job.index, np.random.default_rng([job.seed, job.index, 1]))
            continue
        if fmt == "mpii":
            rec[fmt] = mpii_records(scene, names["mpii"])
            path = root / "images" / names["mpii"]
        elif fmt == "crowdpose":
            anns = crowdpose_records(scene)
            image = {
                "file_name": names["crowdpose"],
                "id": 100000 + job.index,
                "height": h,
                "width": w,
                "crowdIndex": crowd_index(anns),
            }
            rec[fmt] = {"image": image, "annotations": anns} if anns else None
            path = root / "images" / names["crowdpose"]
        elif fmt == "voc":
            objs = voc_objects(scene, job.class_names)
            rec[fmt] = {"id": names["voc"], "objects": objs} if objs else None
            path = root / "VOC2007" / "JPEGImages" / f"{names['voc']}.jpg"
            if objs:
                xml = voc_xml(f"{names['voc']}.jpg", w, h, objs)
                (root / "VOC2007" / "Annotations" / f"{names['voc']}.xml").write_text(xml)
        else:
            anns, crowd = coco_records(scene, job.class_names)
            image = {"id": job.index + 1, "width": w, "height": h, "file_name": names["coco"], "license": 1}
            rec[fmt] = {"image": image, "annotations": anns, "crowd": crowd}
            path = root / job.split / names["coco"]
        if rec[fmt]:
            jpeg = jpeg or encode_jpeg(scene.image)
            path.write_bytes(jpeg)
    return {"split": job.split, "local": job.local, **rec}


def synthesize(
    out: str | Path,
    num_train: int = 100,
    num_val: int = 20,
    size: tuple[int, int] = (256, 256),
    seed: int = 0,
    formats: Sequence[str] = FORMATS,
    class_names: Sequence[str] = FALL_CLASSES,
    workers: int = 2,
    progress: bool = True,
    difficulty: str = "full",
) -> dict[str, Path]:
    """Render ``num_train + num_val`` scenes of articulated people and write them in the requested formats.

    Args:
        out: output folder; each format gets its own sub-folder (``LIP``, ``mpii``, ``crowdpose``, ``VOCdevkit``,
            ``coco``).
        num_train: scenes of the train split (VOC: ``trainval``).
        num_val: scenes of the val split (VOC: ``test``); the last one has nobody in it (COCO keeps it as an
            image without annotations).
        size: scene size (h, w) in pixels.
        seed: random seed; the same seed gives byte-identical files.
        formats: subset of ``lip, mpii, crowdpose, voc, coco``.
        class_names: detection classes for VOC/COCO: ``standing``/``fallen`` by body orientation, or any list with
            ``person``.
        workers: processes used to render (0 = in this process).
        progress: show a tqdm progress bar.
        difficulty: ``full`` (0–4 people in any pose, textured clothes, clutter, occluders) or ``easy`` (1–2 upright
            people in plain clothes on clutter-free backgrounds, no occluders: learnable within minutes on a CPU).

    Returns:
        format → root folder of that dataset.
    """
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMAT_DIRS]
    if unknown or not formats:
        raise ValueError(f"unknown format(s) {unknown}; choose from {', '.join(FORMATS)}")
    if num_train < 0 or num_val < 0 or num_train + num_val == 0:
        raise ValueError(f"need at least one scene, got num_train={num_train}, num_val={num_val}")
    check_class_names(class_names)
    if difficulty not in ("full", "easy"):
        raise ValueError(f"difficulty must be 'full' or 'easy', got {difficulty!r}")
    out = Path(out)
    _make_dirs(out, formats)
    empty = num_train + num_val - 1 if num_val >= 2 else (num_train - 1 if num_train >= 2 else -1)
    jobs = [
        _Job(
            out,
            i,
            "train" if i < num_train else "val",
            i if i < num_train else i - num_train,
            seed,
            (int(size[0]), int(size[1])),
            formats,
            tuple(class_names),
            i == empty,
            difficulty == "easy",
        )
        for i in range(num_train + num_val)
    ]
    bar = tqdm(total=len(jobs), desc="synthesising scenes", unit="img", disable=not progress)
    if workers > 0:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = []
            for r in pool.imap(_render, jobs, chunksize=4):
                results.append(r)
                bar.update()
    else:
        results = []
        for job in jobs:
            results.append(_render(job))
            bar.update()
    bar.close()
    by_split = {s: [r for r in results if r["split"] == s] for s in ("train", "val")}
    writers = {
        "lip": _finish_lip,
        "mpii": _finish_mpii,
        "crowdpose": _finish_crowdpose,
        "voc": _finish_voc,
        "coco": _finish_coco,
    }
    for fmt in formats:
        writers[fmt](out / FORMAT_DIRS[fmt], by_split, tuple(class_names))
    return {fmt: out / FORMAT_DIRS[fmt] for fmt in formats}


def _make_dirs(out: Path, formats: tuple[str, ...]) -> None:
    dirs = {
        "lip": [
            "TrainVal_images/train_images",
            "TrainVal_images/val_images",
            "TrainVal_parsing_annotations/train_segmentations",
            "TrainVal_parsing_annotations/val_segmentations",
            "TrainVal_parsing_annotations/train_segmentations_reversed",
        ],
        "mpii": ["images", "annot"],
        "crowdpose": ["images", "json"],
        "voc": ["VOC2007/Annotations", "VOC2007/JPEGImages", "VOC2007/ImageSets/Main"],
        "coco": ["annotations", "train", "val"],
    }
    for fmt in formats:
        for d in dirs[fmt]:
            (out / FORMAT_DIRS[fmt] / d).mkdir(parents=True, exist_ok=True)


def _dump(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":")) + "\n")


def _finish_lip(root: Path, by_split: dict, class_names: tuple[str, ...]) -> None:
    for split, results in by_split.items():
        ids = [i for r in results for i in r["lip"]]
        (root / "TrainVal_images" / f"{split}_id.txt").write_text("".join(f"{i}\n" for i in ids))


def _finish_mpii(root: Path, by_split: dict, class_names: tuple[str, ...]) -> None:
    names = {"train": "train.json", "val": "valid.json"}
    instances = {}
    for split, results in by_split.items():
        instances[split] = [inst for r in results for inst in r["mpii"]]
        _dump(
            root / "annot" / names[split], [{k: v for k, v in i.items() if k != "head_box"} for i in instances[split]]
        )
    _dump(
        root / "annot" / "trainval.json",
        [{k: v for k, v in i.items() if k != "head_box"} for s in ("train", "val") for i in instances[s]],
    )
    write_gt_mat(root / "annot" / "gt_valid.mat", instances["val"])


def write_gt_mat(path: Path, instances: list[dict]) -> None:
    """MPII ``gt_valid.mat`` (HRNet/mmpose PCKh ground truth) for json instances carrying a 1-based ``head_box``."""
    n = len(instances)
    names = np.empty((1, 16), dtype=object)
    names[0, :] = list(MPII_MAT_NAMES)
    vis = np.array([i["joints_vis"] for i in instances], np.float64).reshape(n, 16)
    pos = np.array([i["joints"] for i in instances], np.float64).reshape(n, 16, 2)
    head = np.array([i["head_box"] for i in instances], np.float64).reshape(n, 4)
    buffer = io.BytesIO()
    savemat(
        buffer,
        {
            "dataset_joints": names,
            "jnt_missing": (vis == 0).astype(np.float64).T,  # (16, N)
            "pos_gt_src": pos.transpose(1, 2, 0),  # (16, 2, N)
            "headboxes_src": np.stack([head[:, :2].T, head[:, 2:].T]),  # (2 corners, 2 xy, N)
        },
    )
    data = bytearray(buffer.getvalue())
    header = b"MATLAB 5.0 MAT-file, written by kd-suite data synth"
    data[:116] = header.ljust(116, b" ")  # the default header holds the creation time; keep files reproducible
    path.write_bytes(bytes(data))


def _finish_crowdpose(root: Path, by_split: dict, class_names: tuple[str, ...]) -> None:
    category = {
        "supercategory": "person",
        "id": 1,
        "name": "person",
        "keypoints": list(CROWDPOSE_JOINTS),
        "skeleton": [[a + 1, b + 1] for a, b in CROWDPOSE_SKELETON],
    }
    ann_id = 1
    for split, results in by_split.items():
        images, anns = [], []
        for r in results:
            if not r["crowdpose"]:
                continue
            images.append(r["crowdpose"]["image"])
            for a in r["crowdpose"]["annotations"]:
                anns.append({**a, "image_id": r["crowdpose"]["image"]["id"], "id": ann_id})
                ann_id += 1
        _dump(
            root / "json" / f"crowdpose_{split}.json", {"categories": [category], "images": images, "annotations": anns}
        )


def _finish_voc(root: Path, by_split: dict, class_names: tuple[str, ...]) -> None:
    sets: dict[str, list[dict]] = {"train": [], "val": [], "trainval": [], "test": []}
    for r in by_split["train"]:
        if r["voc"]:
            sets["trainval"].append(r["voc"])
            sets["train" if r["local"] % 2 == 0 else "val"].append(r["voc"])
    sets["test"] = [r["voc"] for r in by_split["val"] if r["voc"]]
    main = root / "VOC2007" / "ImageSets" / "Main"
    for name, recs in sets.items():
        (main / f"{name}.txt").write_text("".join(f"{r['id']}\n" for r in recs))
        for cls in class_names:
            lines = []
            for r in recs:
                flags = [o["difficult"] for o in r["objects"] if o["name"] == cls]
                lines.append(f"{r['id']} {-1 if not flags else 1 if 0 in flags else 0:>2}\n")
            (main / f"{cls}_{name}.txt").write_text("".join(lines))


def _finish_coco(root: Path, by_split: dict, class_names: tuple[str, ...]) -> None:
    categories = [{"id": i + 1, "name": n, "supercategory": "person"} for i, n in enumerate(class_names)]
    info = {
        "description": "kd-suite synthetic people",
        "version": "1.0",
        "year": 2024,
        "contributor": "kd-suite",
        "date_created": "2024-01-01",
    }
    licenses = [{"id": 1, "name": "CC0 1.0 (synthetic)", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}]
    ann_id = 1
    for split, results in by_split.items():
        images, anns, crowd_done = [], [], False
        for r in results:
            images.append(r["coco"]["image"])
            extra = []
            if r["coco"]["crowd"] and not crowd_done:  # one crowd region per split
                extra, crowd_done = [r["coco"]["crowd"]], True
            for a in r["coco"]["annotations"] + extra:
                anns.append({"id": ann_id, "image_id": r["coco"]["image"]["id"], **a})
                ann_id += 1
        _dump(
            root / "annotations" / f"instances_{split}.json",
            {"info": info, "licenses": licenses, "images": images, "annotations": anns, "categories": categories},
        )
