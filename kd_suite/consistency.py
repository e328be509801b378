"""Model/data consistency, checked before training: classes, joints, flip pairs, class names and heatmap stride.

A model whose head does not match the data trains silently on wrong targets (3 detection classes on 2-class data),
or crashes deep inside a loss or an assigner. :class:`ConsistencyCheck` runs one function per task at ``setup``
(after the DataModule has read its annotations, before the first batch) and raises :class:`ConsistencyError`
naming both sides and the fix. On by default in ``kd-suite`` (``--guards=false`` turns it off).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L


class ConsistencyError(ValueError):
    """The model and the data disagree (classes, joints, flip pairs, class names)."""


def _data_name(datamodule: Any) -> str:
    return type(datamodule).__name__


def _pairs(pairs: Any) -> set[tuple[int, int]] | None:
    """Flip pairs as an order-free set (``None`` stays ``None``)."""
    if pairs is None:
        return None
    return {tuple(sorted((int(a), int(b)))) for a, b in pairs}


def _mismatch(what: str, model_side: str, data_side: str, fix: str) -> ConsistencyError:
    return ConsistencyError(f"model/data mismatch in {what}: {model_side}, but {data_side}. Fix: {fix}")


def _classes(n: int) -> str:
    return f"{n} class" if n == 1 else f"{n} classes"


def check_class_count(facts: Any, count: int, model_side: str, fix_keys: str) -> None:
    """Raise :class:`ConsistencyError` unless the dataset facts have ``count`` classes (linking, see data/facts.py).

    Args:
        facts: the DataModule's :class:`~kd_suite.data.facts.DatasetFacts`.
        count: classes the model predicts.
        model_side: what predicts them, e.g. ``"the parser (model.init_args.num_classes)"``.
        fix_keys: the settings to change, e.g. ``"the student's and teacher's num_classes"``.
    """
    if facts.num_classes != count:
        names = ", ".join(facts.class_names[:3]) + (", …" if facts.num_classes > 3 else "")
        raise _mismatch(
            "classes",
            f"{model_side} predicts {_classes(count)}",
            f"the data labels {_classes(facts.num_classes)} ({names})",
            f"set {fix_keys} to {facts.num_classes}",
        )


def _tap_channels(model: Any, tap: str) -> int | None:
    info = getattr(model, "tap_info", None)
    return info[tap].channels if isinstance(info, dict) and tap in info else None


def check_parsing(module: Any, datamodule: Any) -> None:
    """Classes, class names and (with flip test) flip pairs of a parsing model against its DataModule."""
    data_classes = getattr(datamodule, "num_classes", None)
    if data_classes is not None and module.num_classes != data_classes:
        raise _mismatch(
            "classes",
            f"the parser predicts {_classes(module.num_classes)} (model.init_args.num_classes and the student's "
            "num_classes)",
            f"{_data_name(datamodule)} labels {_classes(data_classes)}",
            f"set model.init_args.num_classes and the student's (and teacher's) num_classes to {data_classes}",
        )
    names = getattr(datamodule, "class_names", None)
    if (
        names is not None
        and module.class_names is not None
        and not all(n.isdigit() for n in module.class_names)
        and tuple(module.class_names) != tuple(names)
    ):
        raise _mismatch(
            "class names",
            f"model.init_args.class_names is {list(module.class_names)}",
            f"{_data_name(datamodule)} names them {list(names)}",
            "list the data's classes in its order, or leave model.init_args.class_names unset",
        )
    data_pairs = _pairs(getattr(datamodule, "flip_pairs", None))
    model_pairs = _pairs(module.flip_pairs)
    if module.flip_test and data_pairs is not None and model_pairs is not None and model_pairs != data_pairs:
        raise _mismatch(
            "flip pairs",
            f"flip test swaps classes {sorted(model_pairs)} (model.init_args.flip_pairs)",
            f"{_data_name(datamodule)} mirrors {sorted(data_pairs)}",
            "set model.init_args.flip_pairs to the data's left/right class pairs",
        )


#: joint count each pose metric is defined for
METRIC_JOINTS = {"pckh": 16, "crowdpose": 14, "coco": 17}


def check_pose(module: Any, datamodule: Any) -> None:
    """Joint count (student, teachers, metric), flip pairs and heatmap stride of a pose model against its data."""
    joints = getattr(datamodule, "num_joints", None)
    if joints is None:
        return
    name = _data_name(datamodule)
    for who, net in [("student", module.student), *[(f"teacher {i}", t) for i, t in enumerate(module.teachers)]]:
        k = _tap_channels(net, "coords")
        if k is not None and k != joints:
            raise _mismatch(
                "joints",
                f"the {who} {type(net).__name__} predicts {k} joints",
                f"{name} annotates {joints} ({', '.join(datamodule.class_names[:3])}, …)",
                f"set num_joints: {joints} in the {who}'s init_args (and use a {who} checkpoint trained on this data)",
            )
    expected = METRIC_JOINTS.get(getattr(module, "metric", None))
    if expected is not None and expected != joints:
        better = [m for m, k in METRIC_JOINTS.items() if k == joints]
        raise _mismatch(
            "metric",
            f"metric={module.metric!r} scores {expected} joints",
            f"{name} has {joints}",
            f"set model.init_args.metric to {better[0] if better else 'none'}",
        )
    data_pairs, model_pairs = _pairs(getattr(datamodule, "flip_pairs", None)), _pairs(module.flip_pairs)
    if model_pairs is not None:
        out_of_range = sorted(p for p in model_pairs if max(p) >= joints)
        if out_of_range or (data_pairs is not None and model_pairs != data_pairs):
            raise _mismatch(
                "flip pairs",
                f"model.init_args.flip_pairs is {sorted(model_pairs)}",
                f"{name} mirrors {sorted(data_pairs or [])} over {joints} joints",
                "leave model.init_args.flip_pairs unset (the data's pairs are used) or give the data's pairs",
            )
    info = getattr(module.student, "tap_info", {})
    stride = getattr(datamodule, "heatmap_stride", None)
    if "heatmaps" in info and stride is not None and info["heatmaps"].stride != stride:
        raise _mismatch(
            "heatmap stride",
            f"the student predicts heatmaps at stride {info['heatmaps'].stride}",
            f"{name} draws GT heatmaps at heatmap_stride={stride}",
            f"set data.init_args.heatmap_stride: {info['heatmaps'].stride}",
        )


def check_detection(module: Any, datamodule: Any) -> None:
    """Class count and class names of a detector against its DataModule."""
    names: Sequence[str] | None = getattr(datamodule, "class_names", None)
    if names is None:
        return
    if module.num_classes != len(names):
        raise _mismatch(
            "classes",
            f"the detector predicts {_classes(module.num_classes)} (the student's num_classes)",
            f"{_data_name(datamodule)} has {len(names)}: {list(names)}",
            f"set num_classes: {len(names)} in the student's (and teacher's) init_args, or give the data "
            f"{module.num_classes} class_names",
        )
    if module.class_names is not None and tuple(module.class_names) != tuple(names):
        raise _mismatch(
            "class names",
            f"model.init_args.class_names is {list(module.class_names)}",
            f"{_data_name(datamodule)} has {list(names)}",
            "list the data's classes in its order, or leave model.init_args.class_names unset",
        )


def check_consistency(module: L.LightningModule, datamodule: Any) -> None:
    """Run the check of the module's task (parsing, pose, detection); other modules are not checked."""
    from .tasks.detection.module import DetectionDistiller
    from .tasks.parsing.module import ParsingDistiller
    from .tasks.pose.module import PoseDistiller

    if datamodule is None:
        return
    for cls, check in (
        (ParsingDistiller, check_parsing),
        (PoseDistiller, check_pose),
        (DetectionDistiller, check_detection),
    ):
        if isinstance(module, cls):
            check(module, datamodule)


class ConsistencyCheck(L.Callback):
    """Raise :class:`ConsistencyError` at ``setup`` when the model and the DataModule disagree."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        check_consistency(pl_module, trainer.datamodule)
