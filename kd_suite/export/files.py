"""The exported student's files: ``student.safetensors`` (its weights), ``student.json`` (how to rebuild and read it).

``student.json`` holds the student's ``class_path`` + ``init_args`` exactly as the checkpoint recorded them, the input
size and preprocessing, the task, the dataset facts (class or joint names, flip pairs, skeleton), the settings that
turn raw outputs into predictions (``postprocess``) and, when ONNX was written, its opset and each output's name,
shape and meaning. :func:`load_exported` rebuilds the student from those two files alone: no checkpoint, teacher,
task module or dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.common import MEAN, STD
from ..data.facts import DatasetFacts
from ..standalone import Standalone, StandaloneError, instantiate

WEIGHTS, CONFIG, ONNX = "student.safetensors", "student.json", "student.onnx"
FORMAT = "kd-suite-export/1"

#: what the input image must have been through, per task (normalisation aside)
PREPROCESS = {
    "parsing": "the whole image resized to (H, W)",
    "pose": "a top-down person crop: the person box padded 1.25x to the input aspect, warped to (H, W)",
    "detection": "letterboxed: resized keeping the aspect ratio, padded with 114 to (H, W), image centred",
}


def student_config(ckpt: str | Path) -> dict[str, Any]:
    """The student's ``{"class_path", "init_args"}`` recorded in a ``kd-suite fit`` checkpoint's hyper_parameters.

    Raises:
        StandaloneError: the checkpoint does not record it.
    """
    state = torch.load(Path(ckpt), map_location="cpu", weights_only=True)
    config = (state.get("hyper_parameters") or {}).get("student") if isinstance(state, dict) else None
    if not (isinstance(config, dict) and "class_path" in config):
        raise StandaloneError(f"{ckpt}: the student's config (hyper_parameters.student.class_path) is not recorded")
    return config


def write_weights(student: nn.Module, path: Path) -> int:
    """Save the student's state dict (parameters and buffers, contiguous copies) as safetensors; returns bytes."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in student.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path.stat().st_size


def facts_record(facts: DatasetFacts | None) -> dict[str, Any] | None:
    """The JSON-able dataset facts (the training machine's GT file left out)."""
    if facts is None:
        return None
    return {
        "task": facts.task,
        "class_names": list(facts.class_names),
        "flip_pairs": [list(p) for p in facts.flip_pairs],
        "skeleton": facts.skeleton,
        "heatmap_stride": facts.heatmap_stride,
    }


def postprocess_record(standalone: Standalone) -> dict[str, Any]:
    """The task module's settings that turn raw outputs into predictions, as validation applies them."""
    module, task = standalone.module, standalone.task
    if task == "detection":
        strides = list(module.student.strides)
        return {"score_thresh": module.score_thresh, "nms_thresh": module.nms_thresh, "max_det": module.max_det,
                "strides": strides, "score": "objectness * max(class scores)", "nms": "class-wise"}  # fmt: skip
    if task == "pose":
        record: dict[str, Any] = {"flip_test": bool(module.use_flip), "flip_pairs": module.flip_pairs}
        student = module.student
        if module.student_kind == "heatmap":
            record |= {"decode": student.decode, "blur_kernel": student.blur_kernel, "stride": student.stride}
        return record
    if task == "parsing":
        return {"flip_test": bool(module.flip_test), "flip_pairs": module.flip_pairs, "upsample": "bilinear"}
    return {}


def describe(
    standalone: Standalone, config: dict[str, Any], params: int, onnx: dict[str, Any] | None
) -> dict[str, Any]:
    """The content of ``student.json``.

    Args:
        standalone: the student with its task module, input size, facts and source checkpoint.
        config: the student's ``{"class_path", "init_args"}`` (:func:`student_config`).
        params: the student's parameter count.
        onnx: the ONNX record (file, opset, exporter, input and outputs), ``None`` when no ONNX was written.
    """
    h, w = standalone.input_size
    return {
        "format": FORMAT,
        "task": standalone.task,
        "student": config,
        "weights": WEIGHTS,
        "params": params,
        "input": {
            "size": [h, w],
            "layout": "NCHW float32 RGB",
            "normalise": "(pixel - mean) / std, pixels in 0..255",
            "mean": [round(float(m), 4) for m in MEAN],
            "std": [round(float(s), 4) for s in STD],
            "preprocess": PREPROCESS.get(standalone.task, ""),
        },
        "facts": facts_record(standalone.facts),
        "postprocess": postprocess_record(standalone),
        "onnx": onnx,
        "source": {"ckpt": str(standalone.ckpt), "torch": torch.__version__.split("+")[0]},
    }


def write_description(record: dict[str, Any], path: Path) -> int:
    """Write ``student.json``; returns its size in bytes."""
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path.stat().st_size


def _no_download(config: Any) -> Any:
    """The config with every ``pretrained`` init arg off: the weights come from the safetensors, not a hub."""
    if isinstance(config, dict):
        return {k: False if k == "pretrained" else _no_download(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_no_download(v) for v in config]
    return config


def load_exported(folder: str | Path) -> nn.Module:
    """Rebuild an exported student from ``folder/student.json`` and load ``folder/student.safetensors`` strictly.

    The class named by ``student.class_path`` is built from its ``init_args`` (``pretrained`` switched off: the
    weights are the exported ones) and returned in eval mode on the CPU.

    Raises:
        FileNotFoundError: a file is missing.
        StandaloneError: ``student.json`` is not a kd-suite export, or the weights do not fit the class.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found; give a folder written by kd-suite export")
    record = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    if record.get("format") != FORMAT or "class_path" not in (record.get("student") or {}):
        raise StandaloneError(f"{folder / CONFIG} is not a kd-suite export (format {FORMAT} with student.class_path)")
    student = instantiate(_no_download(record["student"]))
    try:
        student.load_state_dict(load_file(str(folder / record.get("weights", WEIGHTS))), strict=True)
    except RuntimeError as err:
        raise StandaloneError(f"{folder}: the weights do not fit {record['student']['class_path']} ({err})") from err
    return student.eval()
