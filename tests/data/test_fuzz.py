"""Seeded fuzzer over the five dataset formats: a mutated fixture gives valid samples or a DatasetError, nothing else.

For each format (LIP, MPII, CrowdPose, VOC, COCO) a copy of the tiny synthetic fixture is mutated ``CASES`` times,
one file per case: truncated, bytes flipped or inserted, json keys deleted, values set to NaN/Inf/negative/huge or to
the wrong type, XML values and elements replaced, label maps rewritten out of range. After each mutation the
validation split is built and every sample loaded: each step must either succeed with finite tensors or raise
:class:`DatasetError` — never another exception, a hang (``ALARM_S`` per case) or a NaN/Inf tensor. Odd cases run
with ``skip_bad=True``, so the counted-skip path is fuzzed too.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from kd_suite.data.coco import COCODetectionDataModule
from kd_suite.data.crowdpose import CrowdPoseDataModule
from kd_suite.data.errors import DatasetError
from kd_suite.data.lip import LIPDataModule
from kd_suite.data.mpii import MPIIDataModule
from kd_suite.data.voc import VOCDataModule

SEED = 20240614
CASES = 220  # per format (the issue asks for at least 200)
ALARM_S = 10  # a case taking longer than this counts as a hang
_LOADER = {"num_workers": 0, "pin_memory": False}
BAD_VALUES: list[Any] = [
    float("nan"), float("inf"), float("-inf"), -1.0, -1e9, 0, 1e300, 1e39, "abc", "", None, True, [], {}, [1, 2],
    {"x": 1}, 3.5,
]  # fmt: skip

#: format → (fixture folder, DataModule factory, files to mutate relative to the folder: (glob, kind))
FORMATS: dict[str, tuple[str, Callable[[Path, bool], Any], list[tuple[str, str]]]] = {
    "lip": (
        "LIP",
        lambda root, skip: LIPDataModule(str(root), input_size=(48, 48), skip_bad=skip, **_LOADER),
        [
            ("TrainVal_images/val_id.txt", "text"),
            ("TrainVal_images/val_images/*.jpg", "image"),
            ("TrainVal_parsing_annotations/val_segmentations/*.png", "label"),
        ],
    ),
    "mpii": (
        "mpii",
        lambda root, skip: MPIIDataModule(str(root), input_size=(48, 48), skip_bad=skip, **_LOADER),
        [
            ("annot/valid.json", "json"),
            ("annot/valid.json", "json"),
            ("annot/gt_valid.mat", "bytes"),
            ("images/*.jpg", "image"),
        ],
    ),
    "crowdpose": (
        "crowdpose",
        lambda root, skip: CrowdPoseDataModule(str(root), input_size=(48, 36), skip_bad=skip, **_LOADER),
        [("json/crowdpose_val.json", "json"), ("json/crowdpose_val.json", "json"), ("images/*.jpg", "image")],
    ),
    "voc": (
        "VOCdevkit",
        lambda root, skip: VOCDataModule(
            str(root), class_names=["standing", "fallen"], input_size=(48, 48), skip_bad=skip, **_LOADER
        ),
        [
            ("VOC2007/Annotations/*.xml", "xml"),
            ("VOC2007/Annotations/*.xml", "xml"),
            ("VOC2007/ImageSets/Main/test.txt", "text"),
            ("VOC2007/JPEGImages/*.jpg", "image"),
        ],
    ),
    "coco": (
        "coco",
        lambda root, skip: COCODetectionDataModule(str(root), input_size=(48, 48), skip_bad=skip, **_LOADER),
        [
            ("annotations/instances_val.json", "json"),
            ("annotations/instances_val.json", "json"),
            ("val/*.jpg", "image"),
        ],
    ),
}


# ---------------------------------------------------------------------------------------------------------- mutations
def mutate_bytes(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Truncate, flip, insert or zero bytes."""
    op = rng.integers(4)
    n = len(data)
    if op == 0 or n == 0:
        cut = int(rng.integers(0, max(1, n)))
        return data[:cut], f"truncate to {cut} of {n} bytes"
    buf = bytearray(data)
    if op == 1:
        for i in rng.integers(0, n, int(rng.integers(1, 9))):
            buf[i] ^= 1 << int(rng.integers(8))
        return bytes(buf), "flip bits"
    if op == 2:
        at = int(rng.integers(0, n))
        return bytes(buf[:at]) + rng.bytes(int(rng.integers(1, 64))) + bytes(buf[at:]), f"insert bytes at {at}"
    at = int(rng.integers(0, n))
    buf[at : at + 32] = bytes(len(buf[at : at + 32]))
    return bytes(buf), f"zero bytes at {at}"


def _json_paths(obj: Any, path: tuple = (), depth: int = 0) -> Iterator[tuple]:
    """Paths to every value, not descending into polygons (``segmentation``, never read by the loaders)."""
    yield path
    if depth > 4 or (path and path[-1] == "segmentation"):
        return
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        yield from _json_paths(value, (*path, key), depth + 1)


def mutate_json(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Delete a key/element, or set a value to NaN/Inf/negative/huge/a wrong type (1-3 edits)."""
    obj = json.loads(data)
    notes = []
    for _ in range(int(rng.integers(1, 4))):
        paths = [p for p in _json_paths(obj) if p]
        path = paths[int(rng.integers(len(paths)))]
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if rng.random() < 0.25:
            del parent[key]
            notes.append(f"del {path}")
        else:
            value = BAD_VALUES[int(rng.integers(len(BAD_VALUES)))]
            if isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool) and rng.random() < 0.3:
                value = -parent[key] if rng.random() < 0.5 else parent[key] * 1e6
            parent[key] = value
            notes.append(f"{path} = {value!r}")
    return json.dumps(obj).encode(), "; ".join(notes)


def mutate_xml(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Replace an element's text with a bad value, drop an element, or rename a tag."""
    text = data.decode()
    leaves = list(re.finditer(r"<(\w+)>([^<]*)</\1>", text))
    m = leaves[int(rng.integers(len(leaves)))]
    op = rng.integers(3)
    if op == 0:
        value = str(BAD_VALUES[int(rng.integers(len(BAD_VALUES)))]) if rng.random() < 0.7 else "1e400"
        return (text[: m.start(2)] + value + text[m.end(2) :]).encode(), f"<{m[1]}> = {value!r}"
    if op == 1:
        return (text[: m.start()] + text[m.end() :]).encode(), f"drop <{m[1]}>"
    return (text[: m.start()] + f"<x{m[1]}>{m[2]}</x{m[1]}>" + text[m.end() :]).encode(), f"rename <{m[1]}>"


def mutate_text(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """Edit an id list: drop, duplicate or garble a line, blank it, or add invalid UTF-8."""
    lines = data.decode().splitlines()
    i = int(rng.integers(len(lines)))
    op = rng.integers(4)
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[i])
    elif op == 2:
        lines[i] = ["../x", "", "   ", "a b c", "\x00"][int(rng.integers(5))]
    else:
        return "\n".join(lines).encode() + b"\xff\xfe\n", "append invalid UTF-8"
    return "\n".join(lines).encode(), f"line edit {op} at {i}"


def mutate_label(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """A label PNG with out-of-range ids, colour channels, 16 bits or another size (or mangled bytes)."""
    label = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    op = rng.integers(5)
    if op == 0:
        label = label.copy()
        label[0, : int(rng.integers(1, 5))] = int(rng.integers(20, 255))
    elif op == 1:
        label = np.dstack([label] * 3)
    elif op == 2:
        label = label.astype(np.uint16) * 300
    elif op == 3:
        label = label[: max(1, label.shape[0] // 2)]
    else:
        return mutate_bytes(data, rng)
    return cv2.imencode(".png", label)[1].tobytes(), f"label op {op}"


MUTATORS = {"bytes": mutate_bytes, "image": mutate_bytes, "json": mutate_json, "xml": mutate_xml}
MUTATORS |= {"text": mutate_text, "label": mutate_label}


# ---------------------------------------------------------------------------------------------------------- checks
@contextmanager
def alarm(seconds: int) -> Iterator[None]:
    def hang(signum: int, frame: Any) -> None:
        raise TimeoutError(f"case ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _tensors(sample: Any) -> Iterator[torch.Tensor]:
    items = sample.values() if isinstance(sample, dict) else sample if isinstance(sample, (tuple, list)) else ()
    for value in items:
        if isinstance(value, torch.Tensor):
            yield value


def run_case(make: Callable[[Path, bool], Any], root: Path, skip: bool) -> Counter:
    """Build the val split and load every sample; count outcomes; any non-DatasetError propagates."""
    outcome: Counter = Counter()
    try:
        dm = make(root, skip)
        dm.setup("validate")
    except DatasetError:
        outcome["setup DatasetError"] += 1
        return outcome
    dataset = dm.datasets["val"]
    for i in range(len(dataset)):
        try:
            sample = dataset[i]
        except DatasetError:
            outcome["sample DatasetError"] += 1
            continue
        for t in _tensors(sample):
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise AssertionError(f"sample {i} has a non-finite tensor of shape {tuple(t.shape)}")
        outcome["valid sample"] += 1
    return outcome


@pytest.fixture(scope="module")
def fuzz_root(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fuzz")
    for folder, _, _ in FORMATS.values():
        shutil.copytree(synth_root / folder, out / folder)
    return out


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_mutated_fixtures_give_samples_or_dataset_errors(fmt: str, fuzz_root: Path) -> None:
    folder, make, targets = FORMATS[fmt]
    root = fuzz_root / folder
    files = [(sorted(root.glob(pattern)), kind) for pattern, kind in targets]
    assert all(paths for paths, _ in files), f"fixture files missing under {root}"
    totals: Counter = Counter()
    failures = []
    for case in range(CASES):
        rng = np.random.default_rng([SEED, sorted(FORMATS).index(fmt), case])
        paths, kind = files[int(rng.integers(len(files)))]
        target = paths[int(rng.integers(len(paths)))]
        original = target.read_bytes()
        mutated, note = MUTATORS[kind](original, rng)
        target.write_bytes(mutated)
        skip = bool(case % 2)
        try:
            with alarm(ALARM_S), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                totals += run_case(make, root, skip)
        except Exception as err:  # noqa: BLE001 - the fuzzer's point: anything but DatasetError is a finding
            failures.append(f"case {case} ({target.relative_to(root)}: {note}, skip_bad={skip}): {err!r}"[:400])
        finally:
            target.write_bytes(original)
        totals["cases"] += 1
    print(f"fuzz {fmt}: {dict(totals)}")
    assert not failures, f"{len(failures)} of {CASES} cases failed:\n" + "\n".join(failures[:15])
    assert totals["cases"] >= 200
    assert totals["valid sample"] and (totals["setup DatasetError"] + totals["sample DatasetError"])
