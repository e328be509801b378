"""``kd-suite`` command line: LightningCLI for fit/validate/test plus the suite's own tools.

``kd-suite fit --config X.yaml`` builds the Distiller and DataModule named by ``class_path`` in the config; unknown or
misspelled keys are rejected before anything is built. The tools in :data:`TOOLS` (predict, export, calibrate, study,
data, evaluate, profile, demo) are plain commands; ``predict`` and ``export`` need only a checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from .distiller import Distiller
from .run_folder import RunLayout

#: extra subcommands → module exposing ``main(argv: list[str]) -> int``
TOOLS = {
    "predict": ("kd_suite.tools.predict", "run a trained student on plain photos (label PNGs, COCO results, overlays)"),
    "data": ("kd_suite.tools.data", "generate synthetic datasets (synth) or render sample grids (show)"),
    "evaluate": ("kd_suite.tools.evaluate", "score prediction files against ground truth with the official protocol"),
    "profile": ("kd_suite.tools.profile", "params, GFLOPs and CPU latency of the student and teacher of a config"),
    "study": ("kd_suite.tools.study", "teacher, baselines and KD variants over seeds in one command, with a report"),
    "demo": ("kd_suite.tools.demo", "teacher → baseline → KD student on built-in synthetic data, with a report"),
    "export": ("kd_suite.tools.export", "the trained student as safetensors + ONNX, checked against PyTorch"),
    "calibrate": ("kd_suite.tools.calibrate", "weights giving each KD term a chosen share of the task gradient norm"),
}


@contextlib.contextmanager
def exact_class_arguments() -> Iterator[None]:
    """While parsing, a class named in a config gets the init_args written for it plus its own defaults, nothing else.

    jsonargparse's rule when a ``class_path`` replaces an earlier one (a signature default, ``trainer_defaults``, an
    earlier ``--config``) is to keep the earlier class's init_args that the new class also accepts: a default of
    ``AdamW`` handed ``weight_decay=0.01`` to every config's ``Adam``, the default W&B logger handed ``name=None`` to
    a config's ``CSVLogger``. Under this context a class change discards all of the earlier class's init_args.
    """
    from jsonargparse import _typehints

    original = getattr(_typehints, "discard_init_args_on_class_path_change", None)
    if original is None:  # a jsonargparse without that hook: the config test over the shipped configs still guards
        yield
        return

    def discard_all(parser_or_action: Any, prev_val: Any, value: Any) -> None:
        if prev_val and "init_args" in prev_val and prev_val["class_path"] != value["class_path"]:
            prev_val["init_args"] = type(prev_val["init_args"])()

    _typehints.discard_init_args_on_class_path_change = discard_all
    try:
        yield
    finally:
        _typehints.discard_init_args_on_class_path_change = original


class KDCLI(LightningCLI):
    """LightningCLI in subclass mode: any :class:`Distiller` and any ``LightningDataModule`` by ``class_path``.

    Parsing runs under :func:`exact_class_arguments`, so ``--print_config`` shows, for every class, exactly the
    init_args its config gives plus that class's own signature defaults.

    Every trainer gets the guards of :func:`kd_suite.guards.default_callbacks` (model/data consistency, divergence,
    KD liveness) before the config's own callbacks, also when a config or ``--trainer.callbacks=[]`` sets the list;
    ``--guards=false`` leaves them out.

    ``fit`` writes into one run folder (:mod:`kd_suite.run_folder`): ``runs/<experiment>/<run>[-vN]/`` with the
    config, ``checkpoints/last.ckpt`` and ``best.ckpt``, ``metrics.json`` and the W&B files, and ends with a summary.
    ``--ckpt_path last`` continues the newest version of the run bit-exactly (:mod:`kd_suite.resume`). A
    ``teacher_ckpt`` given in the config or on the command line wins over the one stored in ``--ckpt_path``.

    Args:
        args: command-line arguments (``None`` reads ``sys.argv``).
        run: run the subcommand after instantiating the classes.
        exit_on_error: print usage and exit on a parse error (argparse behaviour); ``False`` raises the
            ``ArgumentError`` instead, for :func:`main` to print a short message.
        **kwargs: passed to ``LightningCLI``.
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """fit, validate and test; ``kd-suite predict`` is the photo tool (:mod:`kd_suite.tools.predict`)."""
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

    def parse_arguments(self, parser: Any, args: Any) -> None:
        with exact_class_arguments():
            super().parse_arguments(parser, args)

    def __init__(
        self, args: list[str] | None = None, run: bool = True, exit_on_error: bool = True, **kwargs: Any
    ) -> None:
        self.exit_on_error = exit_on_error
        self.layout: RunLayout | None = None
        kwargs.setdefault(
            "trainer_defaults",
            {"default_root_dir": default_root(), "logger": {"class_path": "kd_suite.loggers.KDWandbLogger"}},
        )
        try:
            super().__init__(
                Distiller,
                L.LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                save_config_callback=LoggedConfig,
                save_config_kwargs={"overwrite": True},
                parser_kwargs={"parser_mode": "yaml", "allow_abbrev": False},  # no silent prefix matches
                args=args,
                run=run,
                **kwargs,
            )
        except argparse.ArgumentError as err:  # the parsers know the valid keys: kept for "did you mean" hints
            err.kd_parsers = [*getattr(self, "_subcommand_parsers", {}).values(), getattr(self, "parser", None)]
            raise

    def init_parser(self, **kwargs: Any) -> Any:
        kwargs.setdefault("exit_on_error", self.exit_on_error)
        return super().init_parser(**kwargs)

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--guards",
            type=bool,
            default=True,
            help="add kd-suite's run guards: model/data consistency, divergence stop, KD liveness (default true)",
        )
        parser.add_argument(
            "--experiment",
            type=str | None,
            default=None,
            help="run folder group and W&B group (default: config folder)",
        )
        parser.add_argument("--run_name", type=str | None, default=None, help="run name (default: config file stem)")
        parser.add_argument(
            "--run_dir", type=str | None, default=None, help="write into exactly this folder (no version folders)"
        )
        parser.add_argument(
            "--role", type=str | None, default=None, help="teacher | baseline | kd (W&B job type; default inferred)"
        )

    def instantiate_classes(self) -> None:
        """Build the classes; a constructor's error becomes a :class:`~kd_suite.explain.ConfigError` (cause kept)."""
        from .explain import ConfigError

        try:
            super().instantiate_classes()
        except Exception as err:
            raise ConfigError(f"{type(err).__name__} while building the classes of the config: {err}") from err

    def _parse_ckpt_path(self) -> None:  # Lightning reads the checkpoint's hyperparameters here, right after parsing
        subcommand = self.config.get("subcommand")
        if not subcommand:  # run=False: the caller fits, in the run folder of a fit
            self.layout = self._layout("fit", self.config)
            return super()._parse_ckpt_path()
        config = self.config[subcommand]
        self.layout = self._layout(subcommand, config)
        if self.layout.resume_ckpt is not None:
            config["ckpt_path"] = str(self.layout.resume_ckpt)
        check_ckpt_path(config.get("ckpt_path"))
        teacher_ckpt = config.get("model.init_args.teacher_ckpt")
        super()._parse_ckpt_path()
        model = self.config[subcommand]["model"]
        stored = (model.get("dict_kwargs") or {}) if hasattr(model, "get") else {}
        if isinstance(stored, dict):
            stored.pop("teacher_ckpt", None)  # the config's / command line's teacher file wins over the stored one
        if teacher_ckpt is not None:
            self.config[subcommand]["model.init_args.teacher_ckpt"] = teacher_ckpt

    def _layout(self, subcommand: str, config: Any) -> RunLayout:
        """The run folder of this command (:func:`kd_suite.run_folder.resolve_layout`); names written back into the
        config so the saved ``config.yaml`` re-runs under the same experiment and run names."""
        from .run_folder import infer_role, names_from, next_version, resolve_layout

        experiment, run_name = names_from(config.get("config") or [], config.get("experiment"), config.get("run_name"))
        losses = config.get("model.init_args.losses")
        role = infer_role(config.get("role"), bool(losses), run_name)
        config["experiment"], config["run_name"], config["role"] = experiment, run_name, role
        root = Path(str(config.get("trainer.default_root_dir") or default_root()))  # holds the experiment folders
        ckpt_path = config.get("ckpt_path")
        if subcommand == "fit":
            given = Path(str(ckpt_path)) if ckpt_path not in (None, "last") else None
            if given is not None and given.parent.name == "checkpoints" and not config.get("run_dir"):
                return RunLayout(experiment, run_name, given.parent.parent, role)  # a run's checkpoint: continue there
            return resolve_layout(root, experiment, run_name, role, config.get("run_dir"), resume=ckpt_path == "last")
        if config.get("run_dir"):
            return RunLayout(experiment, run_name, Path(config["run_dir"]), role)
        ckpt = Path(str(ckpt_path)) if ckpt_path else None
        if ckpt is not None and ckpt.parent.name == "checkpoints":  # evaluating a run's checkpoint: inside its folder
            return RunLayout(experiment, run_name, ckpt.parent.parent / subcommand, role)
        return RunLayout(experiment, run_name, next_version(root, experiment, f"{run_name}-{subcommand}"), role)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The trainer in the run folder, with the guards of :func:`kd_suite.guards.default_callbacks` first unless
        ``--guards=false``, then the run callbacks (checkpoints, summary, random state, LR monitor), then the
        config's own."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer_init = self._get(self.config_init, "trainer", default={})
        own = trainer_init.get("callbacks") or []
        callbacks = list(own if isinstance(own, list) else [own])
        layout = self.layout
        if layout is not None and "default_root_dir" not in kwargs:
            kwargs["default_root_dir"] = str(layout.run_dir)
            self._configure_logger(trainer_init.get("logger"), config, layout)
            if self.subcommand in ("fit", None):
                callbacks = [*self._run_callbacks(trainer_init, layout), *callbacks]
                if not trainer_init.get("plugins"):  # a config's own plugins (its CheckpointIO) are left alone
                    from .resume import AtomicCheckpointIO

                    kwargs["plugins"] = [AtomicCheckpointIO()]
        if config.get("guards", True) and "callbacks" not in kwargs:
            from .guards import default_callbacks

            callbacks = [*default_callbacks(), *callbacks]
        kwargs.setdefault("callbacks", callbacks)
        return super().instantiate_trainer(**kwargs)

    def _run_callbacks(self, trainer_init: dict[str, Any], layout: RunLayout) -> list[L.Callback]:
        from lightning.pytorch.callbacks import LearningRateMonitor

        from .resume import RandomState
        from .run_folder import BestCheckpoint, RunSummary, last_checkpoint

        callbacks: list[L.Callback] = [RunSummary(layout), RandomState()]
        if trainer_init.get("enable_checkpointing", True) is not False:
            callbacks += [BestCheckpoint(layout.checkpoints), last_checkpoint(layout.checkpoints)]
        if trainer_init.get("logger") not in (None, False):
            callbacks.append(LearningRateMonitor(logging_interval="step"))
        return callbacks

    def _configure_logger(self, logger: Any, config: Any, layout: RunLayout) -> None:
        """Point a :class:`~kd_suite.loggers.KDWandbLogger` at the run: folder, group, name, job type, tags."""
        from .loggers import KDWandbLogger

        for each in _as_list(logger):
            if isinstance(each, KDWandbLogger):
                losses = config.get("model.init_args.losses") or {}
                tags = sorted({str(v["class_path"]).rsplit(".", 1)[-1] for v in losses.values()})
                each.configure_run(layout, seed=config.get("seed_everything"), tags=tags)


class LoggedConfig(SaveConfigCallback):
    """Save ``config.yaml`` in the run folder and log the whole resolved config (model, data, trainer) to W&B."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        from lightning.pytorch.loggers import WandbLogger

        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers:
            return
        import yaml

        resolved = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        for logger in loggers:
            logger.log_hyperparams({"config": resolved})


def _as_list(value: Any) -> list[Any]:
    if value is None or value is False or value is True:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def default_root() -> str:
    """The folder holding the experiment folders unless ``trainer.default_root_dir`` says otherwise: ``runs``, or
    ``$KD_SUITE_RUNS`` when set."""
    return os.environ.get("KD_SUITE_RUNS") or "runs"


def check_ckpt_path(ckpt_path: Any) -> None:
    """Fail early, in one line, when ``--ckpt_path`` names a missing, truncated or non-checkpoint file.

    Lightning checkpoints are torch zip archives, so a file without a zip central directory cannot be one.
    """
    if not isinstance(ckpt_path, (str, Path)) or str(ckpt_path) in ("last", "best", "hpc", "registry"):
        return
    from .explain import ConfigError

    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"--ckpt_path {str(path)!r} does not exist; give a .ckpt written by kd-suite fit")
    if not zipfile.is_zipfile(path):
        raise ConfigError(
            f"--ckpt_path {str(path)!r} ({path.stat().st_size:,} bytes) is truncated, corrupt or not a checkpoint: "
            "expected a Lightning .ckpt (a torch zip archive) written by kd-suite fit"
        )


def _usage() -> str:
    lines = ["usage: kd-suite {fit,validate,test," + ",".join(TOOLS) + "} ...", "", "commands:"]
    lines += [f"  {n:<9} Lightning {n} of a Distiller config (--config X.yaml)" for n in ("fit", "validate", "test")]
    lines += [f"  {name:<9} {help_}" for name, (_, help_) in TOOLS.items()]
    lines += ["", "Run 'kd-suite COMMAND --help' for the options of one command."]
    return "\n".join(lines)


def main(args: list[str] | None = None) -> int:
    """Entry point of the ``kd-suite`` console script.

    A configuration, data, checkpoint or divergence error prints a few lines (the problem, the fix, a key
    suggestion for a misspelled one) and returns 2 (parse/config) or 1; ``--debug`` anywhere on the command line, or
    ``KD_SUITE_DEBUG=1``, shows the full traceback instead.
    """
    argv = list(sys.argv[1:] if args is None else args)
    debug = "--debug" in argv or os.environ.get("KD_SUITE_DEBUG", "").lower() in ("1", "true", "yes")
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    try:
        if argv[0] in TOOLS:
            module = importlib.import_module(TOOLS[argv[0]][0])
            return int(module.main(argv[1:]) or 0)
        if args is None:  # LightningCLI reads sys.argv itself (passing both makes it warn)
            sys.argv = [sys.argv[0], *argv]
        KDCLI(args=None if args is None else argv, exit_on_error=debug)
    except Exception as err:
        if debug:
            raise
        from .explain import explain

        short = explain(err, argv)
        if short is None:
            raise
        print(
            f"kd-suite {argv[0]}: {short.message}\n  (full traceback: add --debug or set KD_SUITE_DEBUG=1)",
            file=sys.stderr,
        )
        return short.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
