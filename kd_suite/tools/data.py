"""``kd-suite data synth|show``: write synthetic datasets, or render a grid of loader samples with overlays.

Examples::

    kd-suite data synth --out data/synthetic --num-train 1000 --num-val 200 --size 256 256 --seed 0
    kd-suite data show --format lip --root data/synthetic/LIP --out lip.png --n 16 --split val --augmented
"""

from __future__ import annotations

import argparse
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..data.common import denormalize
from ..data.errors import DatasetError
from ..data.schema import FALL_CLASSES, VOC_CLASSES
from ..data.synth import FORMATS, synthesize
from ..data.voc import voc_ids
from ..viz import draw_boxes, draw_pose, overlay_mask, save_grid


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``kd-suite data``."""
    p = argparse.ArgumentParser(prog="kd-suite data", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("synth", help="write synthetic people in the LIP/MPII/CrowdPose/VOC/COCO layouts")
    s.add_argument("--out", type=Path, required=True, help="output folder (one sub-folder per format)")
    s.add_argument("--num-train", type=int, default=100, help="train scenes (VOC: trainval)")
    s.add_argument("--num-val", type=int, default=20, help="val scenes (VOC: test)")
    s.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"), help="scene size")
    s.add_argument("--seed", type=int, default=0, help="random seed (same seed → same bytes)")
    s.add_argument("--formats", default=",".join(FORMATS), help="comma-separated subset of " + ",".join(FORMATS))
    s.add_argument(
        "--classes", default=",".join(FALL_CLASSES), help="VOC/COCO classes: standing,fallen or a list with person"
    )
    s.add_argument("--workers", type=int, default=2, help="rendering processes (0 = in-process)")
    s.add_argument(
        "--difficulty",
        choices=("full", "easy"),
        default="full",
        help="full: 0-4 people, any pose, textures, clutter, occluders; easy: 1-2 upright people, plain clothes",
    )
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    v = sub.add_parser("show", help="render loader samples with their labels as a PNG grid")
    v.add_argument("--format", required=True, choices=FORMATS)
    v.add_argument("--root", type=Path, required=True, help="dataset folder (e.g. data/synthetic/LIP)")
    v.add_argument("--out", type=Path, required=True, help="PNG to write")
    v.add_argument("--n", type=int, default=16, help="number of samples")
    v.add_argument("--split", default="val", help="split to show (VOC: an ImageSets list such as test)")
    v.add_argument("--augmented", action="store_true", help="apply the training transforms")
    v.add_argument("--input-size", type=int, nargs=2, default=None, metavar=("H", "W"), help="loader input size")
    v.add_argument("--classes", default=None, help="VOC/COCO class names, comma-separated (default: from the files)")
    v.add_argument("--seed", type=int, default=0, help="seed of the augmentations")
    return p


def main(argv: list[str]) -> int:
    """Run ``kd-suite data synth|show``; returns the exit status (2 on a dataset error)."""
    args = build_parser().parse_args(argv)
    try:
        return _synth(args) if args.command == "synth" else _show(args)
    except (DatasetError, ValueError) as err:
        print(f"kd-suite data {args.command}: {err}", file=sys.stderr)
        return 2


def _synth(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    roots = synthesize(
        args.out,
        args.num_train,
        args.num_val,
        tuple(args.size),
        args.seed,
        formats,
        [c.strip() for c in args.classes.split(",")],
        args.workers,
        not args.no_progress,
        args.difficulty,
    )
    n = args.num_train + args.num_val
    print(f"wrote {n} scenes of {args.size[0]}x{args.size[1]} in {time.perf_counter() - start:.1f} s:")
    for fmt, root in roots.items():
        print(f"  {fmt:<10} {root}")
    return 0


def _voc_classes(root: Path, split: str) -> list[str]:
    """The class list the XMLs of ``split`` use: VOC's 20, the fall classes, or the sorted names found."""
    names = set()
    for image_id in voc_ids(root, "2007", split):
        xml = root / "VOC2007" / "Annotations" / f"{image_id}.xml"
        try:
            names |= {o.findtext("name") for o in ET.parse(xml).iter("object")}
        except (OSError, ET.ParseError):
            continue  # the loader reports unreadable annotations with the file name
    for known in (FALL_CLASSES, VOC_CLASSES):
        if names <= set(known):
            return list(known)
    return sorted(names)


def _datamodule(args: argparse.Namespace):  # noqa: ANN202 - one of five DataModule types
    size = tuple(args.input_size) if args.input_size else None
    common = {"root": str(args.root), "batch_size": 1, "num_workers": 0}
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    if args.format == "lip":
        from ..data.lip import LIPDataModule

        return LIPDataModule(**common, input_size=size or (256, 256))
    if args.format == "mpii":
        from ..data.mpii import MPIIDataModule

        return MPIIDataModule(**common, input_size=size or (256, 256))
    if args.format == "crowdpose":
        from ..data.crowdpose import CrowdPoseDataModule

        return CrowdPoseDataModule(**common, input_size=size or (256, 192))
    if args.format == "voc":
        from ..data.voc import VOCDataModule

        classes = classes or _voc_classes(args.root, args.split)
        return VOCDataModule(
            **common, class_names=classes, train_split=args.split, val_split=args.split, input_size=size or (320, 320)
        )
    from ..data.coco import COCODetectionDataModule

    return COCODetectionDataModule(
        **common, class_names=classes, train_split=args.split, val_split=args.split, input_size=size or (320, 320)
    )


def _show(args: argparse.Namespace) -> int:
    import torch

    torch.manual_seed(args.seed)
    dm = _datamodule(args)
    if args.format in ("voc", "coco"):
        dataset = dm.dataset(train=args.augmented)
    else:
        dataset = dm.dataset(args.split, train=args.augmented)
    dataset.reseed(args.seed)
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(args.n, len(dataset))).round().astype(int))
    images, titles = [], []
    for i in picks:
        item = dataset[int(i)]
        if args.format == "lip":
            images.append(overlay_mask(denormalize(item["image"]), item["mask"].numpy().astype(np.uint8)))
            titles.append(f"{item['id']}" + (" (flipped)" if item["meta"].get("flipped") else ""))
        elif args.format in ("mpii", "crowdpose"):
            images.append(
                draw_pose(denormalize(item["image"]), item["keypoints"].numpy(), item["visible"].numpy(), args.format)
            )
            titles.append(f"{item['meta']['image']}" + (" (flipped)" if item["meta"]["flipped"] else ""))
        else:
            images.append(
                draw_boxes(denormalize(item["image"]), item["boxes"].numpy(), item["labels"].tolist(), dm.class_names)
            )
            titles.append(f"{item['image_id']}" + (" (flipped)" if item["meta"].get("flipped") else ""))
    legend = {"lip": "LIP palette", "mpii": "left blue / right red", "crowdpose": "left blue / right red"}
    mode = "train transforms" if args.augmented else "val transforms"
    titles[0] = f"{titles[0]}\n[{args.format} {args.split}, {mode}, {legend.get(args.format, 'boxes')}]"
    print(f"wrote {save_grid(images, args.out, titles)} ({len(images)} samples)")
    return 0
