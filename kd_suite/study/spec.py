"""A study file: what to train and compare, expanded into named variants (ablations and grids included).

A study names a teacher (a config to train, or a checkpoint), the baseline student config(s), named KD variants and
seeds; ``kd-suite study`` (:mod:`kd_suite.study.runner`) trains every run and writes the report. Example::

    name: parsing_dist                     # runs/<name>/..., the W&B group of every run
    calibrate: {variant: DIST+GSKD, share: 0.5}   # adds "DIST+GSKD calibrated" (kd-suite calibrate's weights)
    seeds: [0, 1, 2]
    overrides: [--trainer.max_epochs=2]    # added to every run (dotted keys, as on the kd-suite fit command line)
    teacher: configs/demo/parsing_teacher.yaml        # or {ckpt: runs/.../last.ckpt, score: 41.2}
    baseline: configs/demo/parsing_student.yaml       # or baselines: {name: config, ...}
    variants:
      DIST: configs/demo/parsing_dist.yaml
      DIST+GSKD: {config: configs/demo/parsing_dist_gskd.yaml, ablate: true}
      DIST tau 4: {base: DIST, overrides: [--model.init_args.losses.dist.init_args.temperature=4]}
    grid:                                  # every combination becomes a variant
      DIST: {losses.dist.init_args.weight: [0.5, 2.0]}

A variant is a KD config, another variant plus overrides (``base``), or the baseline plus overrides (no ``config``,
no ``base``). Its ``baseline`` defaults to the only baseline. ``ablate: true`` adds "only <term>" (each term alone)
and "without <term>" (all but one) variants, written as configs of their own under ``<study>/configs/``.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KEYS = {"name", "seeds", "overrides", "teacher", "baseline", "baselines", "variants", "grid", "metric", "score"}
KEYS |= {"parallel", "calibrate"}
VARIANT_KEYS = {"config", "base", "overrides", "baseline", "ablate"}


class StudyError(ValueError):
    """A study file that cannot be run; the message names the file, the key and the fix."""


@dataclass
class Variant:
    """One compared configuration.

    Attributes:
        name: shown in the report.
        config: the config file it trains.
        overrides: dotted command-line overrides on top of the config.
        baseline: the baseline it is compared with.
        terms: its distillation terms (the config's ``losses`` keys).
        kind: ``"config"``, ``"ablation"``, ``"grid"`` or ``"calibrated"``.
        of: the variant an ablation, grid point or calibrated variant derives from.
    """

    name: str
    config: Path
    overrides: list[str]
    baseline: str
    terms: list[str]
    kind: str = "config"
    of: str | None = None


@dataclass
class Study:
    """A parsed study file (see the module docstring)."""

    name: str
    seeds: list[int]
    baselines: dict[str, Path]
    variants: dict[str, Variant]
    overrides: list[str] = field(default_factory=list)
    teacher_config: Path | None = None
    teacher_overrides: list[str] = field(default_factory=list)
    teacher_ckpt: Path | None = None
    teacher_score: float | None = None
    metric: str | None = None
    score: str = "final"
    parallel: int = 0
    calibrate: dict[str, Any] | None = None
    source: Path | None = None


def slug(name: str) -> str:
    """A folder name for a run: lowercase letters, digits, ``_``, ``.``, ``-``, ``=``."""
    return re.sub(r"[^a-z0-9_.=-]+", "_", name.lower()).strip("_") or "run"


def losses_of(config: Path) -> dict[str, Any]:
    """The ``model.init_args.losses`` mapping of a config file (empty when it has none)."""
    data = yaml.safe_load(config.read_text()) or {}
    return dict(((data.get("model") or {}).get("init_args") or {}).get("losses") or {})


def load_study(path: str | Path, out_root: Path) -> Study:
    """Read a study file; ablation configs are written under ``out_root/<name>/configs/``.

    Raises:
        StudyError: unknown keys, missing files, a variant without a known baseline or base, an empty grid.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study file {str(path)!r} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    where = f"study {path}"
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise StudyError(f"{where}: unknown key(s) {unknown}; the keys are {sorted(KEYS)}")
    name = slug(str(data.get("name") or path.stem))
    seeds = [int(s) for s in data.get("seeds", [0])]
    if not seeds:
        raise StudyError(f"{where}: seeds is empty; give e.g. seeds: [0, 1, 2]")

    def existing(value: Any, key: str) -> Path:
        p = Path(str(value))
        if not p.is_file():
            raise StudyError(f"{where}: {key} {str(p)!r} does not exist")
        return p

    study = Study(name, seeds, {}, {}, [str(o) for o in data.get("overrides", [])], source=path)
    study.metric, study.score = data.get("metric"), str(data.get("score", "final"))
    if study.score not in ("final", "best"):
        raise StudyError(f"{where}: score must be 'final' or 'best', got {study.score!r}")
    study.parallel, study.calibrate = int(data.get("parallel", 0)), data.get("calibrate")
    teacher = data.get("teacher")
    if isinstance(teacher, dict) and "ckpt" in teacher:
        study.teacher_ckpt = existing(teacher["ckpt"], "teacher.ckpt")
        study.teacher_score = teacher.get("score")
    elif teacher is not None:
        study.teacher_config = existing(teacher["config"] if isinstance(teacher, dict) else teacher, "teacher")
        study.teacher_overrides = [str(o) for o in (teacher.get("overrides", []) if isinstance(teacher, dict) else [])]
    if "baseline" in data:
        study.baselines["baseline"] = existing(data["baseline"], "baseline")
    for key, value in (data.get("baselines") or {}).items():
        study.baselines[str(key)] = existing(value, f"baselines.{key}")
    if not study.baselines:
        raise StudyError(f"{where}: no baseline; give baseline: STUDENT.yaml (the student trained alone)")
    for key, value in (data.get("variants") or {}).items():
        _add_variant(study, str(key), value if isinstance(value, dict) else {"config": value}, where, existing)
    for key, axes in (data.get("grid") or {}).items():
        _add_grid(study, str(key), axes, where)
    out = out_root / name / "configs"
    for key, value in (data.get("variants") or {}).items():
        if isinstance(value, dict) and value.get("ablate"):
            _add_ablations(study, study.variants[str(key)], out)
    if study.calibrate is not None:
        _add_calibrated(study, where)
    return study


def _add_calibrated(study: Study, where: str) -> None:
    """``calibrate: {variant: NAME, share: 0.5, batches: 8}``: NAME with the weights of ``kd-suite calibrate``."""
    spec = study.calibrate if isinstance(study.calibrate, dict) else {"variant": study.calibrate}
    parent = study.variants.get(str(spec.get("variant")))
    if parent is None or not parent.terms:
        raise StudyError(f"{where}: calibrate.variant {spec.get('variant')!r} is not a listed KD variant")
    study.calibrate = {
        "variant": parent.name,
        "share": float(spec.get("share", 0.5)),
        "batches": int(spec.get("batches", 8)),
    }
    name = f"{parent.name} calibrated"
    study.variants[name] = Variant(name, parent.config, list(parent.overrides), parent.baseline, parent.terms,
                                   "calibrated", parent.name)  # fmt: skip


def _add_variant(study: Study, name: str, spec: dict[str, Any], where: str, existing: Any) -> None:
    unknown = sorted(set(spec) - VARIANT_KEYS)
    if unknown:
        raise StudyError(f"{where}: variants.{name}: unknown key(s) {unknown}; the keys are {sorted(VARIANT_KEYS)}")
    overrides = [str(o) for o in spec.get("overrides", [])]
    baseline = spec.get("baseline") or (next(iter(study.baselines)) if len(study.baselines) == 1 else None)
    if baseline not in study.baselines:
        raise StudyError(f"{where}: variants.{name}: baseline {baseline!r} is not one of {sorted(study.baselines)}")
    if "config" in spec:
        config = existing(spec["config"], f"variants.{name}.config")
    elif "base" in spec:
        base = study.variants.get(str(spec["base"]))
        if base is None:
            raise StudyError(f"{where}: variants.{name}: base {spec['base']!r} is not a variant listed before it")
        config, overrides = base.config, [*base.overrides, *overrides]
    else:
        config = study.baselines[baseline]
    study.variants[name] = Variant(name, config, overrides, str(baseline), sorted(losses_of(config)))


def _add_grid(study: Study, name: str, axes: dict[str, list[Any]], where: str) -> None:
    parent = study.variants.get(name)
    if parent is None:
        raise StudyError(f"{where}: grid.{name}: no variant {name!r}; grids extend a listed variant")
    if not axes or any(not isinstance(v, list) or not v for v in axes.values()):
        raise StudyError(f"{where}: grid.{name}: give each key a non-empty list of values")
    keys = list(axes)
    for values in itertools.product(*(axes[k] for k in keys)):
        full = [k if k.startswith(("model.", "data.", "trainer.")) else f"model.init_args.{k}" for k in keys]
        label = ",".join(f"{'.'.join(k.split('.')[-3::2])}={v}" for k, v in zip(keys, values))
        overrides = [*parent.overrides, *(f"--{k}={v}" for k, v in zip(full, values))]
        grid = Variant(f"{name} {label}", parent.config, overrides, parent.baseline, parent.terms, "grid", name)
        study.variants[grid.name] = grid


def _add_ablations(study: Study, variant: Variant, out: Path) -> None:
    """Each term alone and all but one (term sets already covered are not repeated)."""
    terms = variant.terms
    if len(terms) < 2:
        return
    seen = {tuple(terms)}
    subsets = [(f"{variant.name} only {t}", [t]) for t in terms]
    subsets += [(f"{variant.name} without {t}", [u for u in terms if u != t]) for t in terms]
    data = yaml.safe_load(variant.config.read_text())
    for label, keep in subsets:
        if tuple(keep) in seen:
            continue
        seen.add(tuple(keep))
        losses = data["model"]["init_args"]["losses"]
        derived = {**data, "model": {**data["model"], "init_args": {**data["model"]["init_args"]}}}
        derived["model"]["init_args"]["losses"] = {k: losses[k] for k in keep}
        out.mkdir(parents=True, exist_ok=True)
        config = out / f"{slug(label)}.yaml"
        config.write_text(f"# {label}: {variant.config} with the terms {keep} only\n" + yaml.safe_dump(derived))
        study.variants[label] = Variant(label, config, variant.overrides, variant.baseline, keep, "ablation",
                                        variant.name)  # fmt: skip
