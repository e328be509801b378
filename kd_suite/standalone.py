"""A trained student on its own: rebuilt from a kd-suite checkpoint with no teacher, no config file and no dataset.

``kd-suite predict`` and ``kd-suite export`` start here. A checkpoint written by ``kd-suite fit`` holds the task
module's settings (``hyper_parameters``, with the student as a ``class_path`` config), the weights under ``student.``
and ``kd_meta["data"]``: the DataModule's input size and :class:`~kd_suite.data.facts.DatasetFacts`. From those this
module builds the task module *without* its teachers, distillation terms, optimizer or scheduler, loads the student
strictly and links the facts, so decoding and drawing work exactly as in validation.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .data.facts import DatasetFacts
from .distiller import Distiller

#: Distiller arguments that belong to training with a teacher; a standalone student is built without them
TRAINING_ONLY = ("teacher", "teacher_ckpt", "losses", "optimizer", "scheduler", "scheduler_interval")


class StandaloneError(ValueError):
    """A checkpoint cannot be turned into a standalone student (the message names the file and what is missing)."""


@dataclass
class Standalone:
    """A student ready to predict or export.

    Attributes:
        module: the task module (eval mode) holding only the student.
        input_size: (h, w) network input the student was trained at.
        facts: the training data's facts (class or joint names, flip pairs, skeleton), ``None`` if not recorded.
        task: ``"parsing"``, ``"pose"`` or ``"detection"`` (from the facts, else from the module class).
        ckpt: the checkpoint file.
    """

    module: Distiller
    input_size: tuple[int, int]
    facts: DatasetFacts | None
    task: str
    ckpt: Path


def import_class(path: str) -> type:
    """The class named by a dotted ``class_path``."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise StandaloneError(f"class_path {path!r} cannot be imported ({err})") from err


def instantiate(config: Any) -> Any:
    """Build ``{"class_path": ..., "init_args": {...}}`` configs recursively (lists and dicts walked)."""
    if isinstance(config, dict) and "class_path" in config:
        args = {k: instantiate(v) for k, v in (config.get("init_args") or {}).items()}
        return import_class(config["class_path"])(**args)
    if isinstance(config, list):
        return [instantiate(v) for v in config]
    if isinstance(config, dict):
        return {k: instantiate(v) for k, v in config.items()}
    return config


def _facts(record: dict[str, Any] | None) -> DatasetFacts | None:
    if not record:
        return None
    return DatasetFacts(
        task=record["task"],
        class_names=tuple(record["class_names"]),
        flip_pairs=tuple(tuple(p) for p in record.get("flip_pairs") or ()),
        skeleton=record.get("skeleton"),
        val_ann_file=None,  # the training machine's GT file is not needed to predict
        heatmap_stride=record.get("heatmap_stride"),
    )


def _task(module: Distiller) -> str:
    name = type(module).__name__.lower()
    for task in ("parsing", "pose", "detection"):
        if task in name:
            return task
    return name


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A ``kd-suite fit`` checkpoint's contents, read with ``weights_only=True`` onto the CPU.

    Raises:
        FileNotFoundError: the file does not exist.
        StandaloneError: the file is not a readable checkpoint or holds no ``state_dict``.
    """
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} not found; give a .ckpt written by kd-suite fit")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise StandaloneError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict):
        raise StandaloneError(f"{path}: holds no state_dict; give a .ckpt written by kd-suite fit")
    return state


def load_standalone(ckpt: str | Path, input_size: tuple[int, int] | None = None) -> Standalone:
    """Rebuild the student of a ``kd-suite fit`` checkpoint on the CPU, without teacher or data.

    Args:
        ckpt: a ``.ckpt`` written by ``kd-suite fit`` (``best.ckpt``, ``last.ckpt``, the demo's ``final.ckpt``).
        input_size: (h, w) to use when the checkpoint does not record one (older checkpoints).

    Raises:
        StandaloneError: the file is not a kd-suite checkpoint, lacks the student's config or input size, or the
            weights do not fit the configured student; the message says which and how to fix it.
    """
    path = Path(ckpt)
    state = read_checkpoint(path)
    hparams = state.get("hyper_parameters") if isinstance(state, dict) else None
    if not isinstance(hparams, dict) or "_class_path" not in hparams:
        raise StandaloneError(
            f"{path}: no task-module settings (hyper_parameters with _class_path); give a checkpoint written by "
            "kd-suite fit (runs/<experiment>/<run>/checkpoints/best.ckpt)"
        )
    student_cfg = hparams.get("student")
    if not (isinstance(student_cfg, dict) and "class_path" in student_cfg):
        raise StandaloneError(f"{path}: the student's config (hyper_parameters.student.class_path) is not recorded")
    cls = import_class(hparams["_class_path"])
    kwargs = {k: v for k, v in hparams.items() if not k.startswith("_") and k not in TRAINING_ONLY}
    kwargs = cls.standalone_arguments(kwargs) if hasattr(cls, "standalone_arguments") else kwargs
    kwargs["student"] = instantiate(student_cfg)
    kwargs = {k: instantiate(v) if isinstance(v, dict) and "class_path" in v else v for k, v in kwargs.items()}
    module = cls(**kwargs)
    weights = {k[len("student.") :]: v for k, v in state["state_dict"].items() if k.startswith("student.")}
    try:
        module.student.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise StandaloneError(f"{path}: the student weights do not fit the recorded student config ({err})") from err
    data = (state.get("kd_meta") or {}).get("data") or {}
    facts = _facts(data.get("facts"))
    if facts is not None:
        module.link_data(facts)
    size = data.get("input_size") or input_size
    if size is None:
        raise StandaloneError(f"{path}: no input size recorded (kd_meta.data.input_size); pass it explicitly")
    module.eval()
    return Standalone(module, (int(size[0]), int(size[1])), facts, facts.task if facts else _task(module), path)
