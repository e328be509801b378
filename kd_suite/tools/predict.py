"""``kd-suite predict``: run a trained student on plain photos (an image or a folder; no labels, no dataset layout).

The task comes from the checkpoint (:func:`kd_suite.standalone.load_standalone`), and so do the input size, the
classes, the flip pairs and the skeleton. Every photo is prepared as validation prepares its images and the files
written are the ones ``kd-suite evaluate`` scores:

* parsing: ``OUT/<stem>.png`` label maps (LIP class ids at the photo's size, palette PNG), ``OUT/overlays/<stem>.jpg``;
* detection: ``OUT/detections.json`` (COCO results), ``OUT/images.json``, ``OUT/overlays/<stem>.jpg``;
* pose: ``OUT/keypoints.json`` (COCO keypoint results), ``OUT/images.json``, ``OUT/overlays/<stem>.jpg``; person
  boxes from ``--boxes`` (e.g. a detector's ``detections.json``), else the whole photo as one person.

Examples::

    kd-suite predict --ckpt runs/demo/parsing_student/checkpoints/best.ckpt --input photos/ --out preds/
    kd-suite predict --ckpt det.ckpt --input photos/ --out dets/
    kd-suite predict --ckpt pose.ckpt --input photos/ --out poses/ --boxes dets/detections.json --box-category person
"""

from __future__ import annotations

import argparse
import sys
import warnings
import zipfile
from pathlib import Path

import torch

from ..photos import PhotoError, PhotoReader, find_images
from ..standalone import StandaloneError, load_standalone


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``kd-suite predict``."""
    p = argparse.ArgumentParser(
        prog="kd-suite predict",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    p.add_argument("--ckpt", required=True, type=Path, help="a .ckpt written by kd-suite fit (best.ckpt, last.ckpt)")
    p.add_argument("--input", required=True, type=Path, help="an image file or a folder of images (not recursive)")
    p.add_argument("--out", required=True, type=Path, help="output folder (created; files of the same name replaced)")
    p.add_argument("--boxes", type=Path, default=None, help="pose: person boxes, a COCO results json (or COCO json)")
    p.add_argument("--box-category", default=None, help="pose: keep boxes of this category name or id (default person)")
    p.add_argument("--box-threshold", type=float, default=0.3, help="pose: keep boxes scoring at least this (0.3)")
    p.add_argument("--batch-size", type=int, default=8, help="images (pose: person crops) per forward pass (8)")
    p.add_argument("--no-overlays", action="store_true", help="write the prediction files only, no pictures")
    p.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="network input of a checkpoint that does not record it (written before kd_meta.data)",
    )
    p.add_argument("--coco-gt", type=Path, default=None, help="detection, COCO metric: json of the category ids")
    p.add_argument("--device", default="auto", help="torch device: auto (cuda when available), cpu, cuda, cuda:1")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def run(args: argparse.Namespace) -> str:
    """Predict as ``args`` say and return the summary.

    Raises:
        PhotoError, BoxesError, CategoryError, StandaloneError, FileNotFoundError: a user error (one line).
    """
    from ..tasks.pose.boxes import read_person_boxes

    if args.batch_size < 1:
        raise PhotoError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.ckpt.is_file() and not zipfile.is_zipfile(args.ckpt):  # Lightning checkpoints are torch zip archives
        raise StandaloneError(f"--ckpt {args.ckpt} is not a checkpoint (truncated, or not a .ckpt of kd-suite fit)")
    paths = find_images(args.input)
    boxes = read_person_boxes(args.boxes, args.box_category, args.box_threshold) if args.boxes else None
    try:
        with warnings.catch_warnings():  # Lightning's advice on save_hyperparameters concerns training code
            warnings.filterwarnings("ignore", message="Attribute '.*' is an instance of `nn.Module`")
            student = load_standalone(args.ckpt, tuple(args.input_size) if args.input_size else None)
    except StandaloneError as err:
        raise StandaloneError(str(err).replace("pass it explicitly", "pass --input-size H W")) from None
    if boxes is not None and student.task != "pose":
        raise PhotoError(f"--boxes is for pose checkpoints; {args.ckpt} is a {student.task} checkpoint")
    if student.task == "parsing" and any((args.out / f"{p.stem}.png").resolve() == p.resolve() for p in paths):
        raise PhotoError(f"--out {args.out} would overwrite the input PNGs with label maps; give another folder")
    module = student.module.to(_device(args.device))
    photos = PhotoReader(paths, args.batch_size, f"predict {student.task}", progress=not args.no_progress)
    args.out.mkdir(parents=True, exist_ok=True)
    overlays = not args.no_overlays
    with warnings.catch_warnings(record=True) as caught:  # the module's warnings (no flip pairs...) become notes
        warnings.simplefilter("always")
        if student.task == "parsing":
            from ..tasks.parsing.predict import predict_photos as parse

            report = parse(module, student.input_size, photos, args.out, overlays)
        elif student.task == "detection":
            from ..tasks.detection.predict import predict_photos as detect

            report = detect(module, student.input_size, photos, args.out, overlays, args.coco_gt)
        elif student.task == "pose":
            from ..tasks.pose.predict import predict_photos as estimate

            report = estimate(module, student.input_size, photos, args.out, overlays, boxes)
        else:
            raise StandaloneError(f"{args.ckpt}: task {student.task!r} has no predict (parsing, detection or pose)")
    for w in caught:
        if not issubclass(w.category, UserWarning):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    report.notes += list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)))
    report.skipped = photos.skipped
    if photos.read == 0:
        raise PhotoError(f"none of the {len(paths)} image files of {args.input} could be read (see the warnings)")
    if student.facts is None:
        report.notes.append("the checkpoint records no dataset facts (written before kd_meta.data): class names, "
                            "flip pairs and skeleton fall back to the module's own settings")  # fmt: skip
    return report.summary(args.ckpt, args.out)


def main(argv: list[str]) -> int:
    """Entry point of ``kd-suite predict``; a user error prints one line and returns 2."""
    from ..tasks.detection.predict import CategoryError
    from ..tasks.pose.boxes import BoxesError

    args = build_parser().parse_args(argv)
    try:
        summary = run(args)
    except (PhotoError, BoxesError, CategoryError, StandaloneError, FileNotFoundError) as err:
        print(f"kd-suite predict: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print(summary)
    return 0
