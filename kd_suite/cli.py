"""``kd-suite`` command line: LightningCLI for fit/validate/test/predict plus the suite's own tools.

``kd-suite fit --config X.yaml`` builds the Distiller and DataModule named by ``class_path`` in the config; unknown or
misspelled keys are rejected before anything is built. ``kd-suite data|evaluate|profile|demo`` are plain commands.
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
from lightning.pytorch.cli import LightningCLI

from .distiller import Distiller

#: extra subcommands → module exposing ``main(argv: list[str]) -> int``
TOOLS = {
    "data": ("kd_suite.tools.data", "generate synthetic datasets (synth) or render sample grids (show)"),
    "evaluate": ("kd_suite.tools.evaluate", "score prediction files against ground truth with the official protocol"),
    "profile": ("kd_suite.tools.profile", "params, GFLOPs and CPU latency of the student and teacher of a config"),
    "demo": ("kd_suite.tools.demo", "teacher → baseline → KD student on built-in synthetic data, with a report"),
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

    Args:
        args: command-line arguments (``None`` reads ``sys.argv``).
        run: run the subcommand after instantiating the classes.
        exit_on_error: print usage and exit on a parse error (argparse behaviour); ``False`` raises the
            ``ArgumentError`` instead, for :func:`main` to print a short message.
        **kwargs: passed to ``LightningCLI``.
    """

    def parse_arguments(self, parser: Any, args: Any) -> None:
        with exact_class_arguments():
            super().parse_arguments(parser, args)

    def __init__(
        self, args: list[str] | None = None, run: bool = True, exit_on_error: bool = True, **kwargs: Any
    ) -> None:
        self.exit_on_error = exit_on_error
        kwargs.setdefault(
            "trainer_defaults",
            {"default_root_dir": "runs", "logger": {"class_path": "kd_suite.loggers.KDWandbLogger"}},
        )
        try:
            super().__init__(
                Distiller,
                L.LightningDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
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

    def instantiate_classes(self) -> None:
        """Build the classes; a constructor's error becomes a :class:`~kd_suite.explain.ConfigError` (cause kept)."""
        from .explain import ConfigError

        try:
            super().instantiate_classes()
        except Exception as err:
            raise ConfigError(f"{type(err).__name__} while building the classes of the config: {err}") from err

    def _parse_ckpt_path(self) -> None:  # Lightning reads the checkpoint's hyperparameters here, right after parsing
        subcommand = self.config.get("subcommand")
        if subcommand:
            check_ckpt_path(self.config[subcommand].get("ckpt_path"))
        super()._parse_ckpt_path()

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The trainer, with the guards of :func:`kd_suite.guards.default_callbacks` first unless ``--guards=false``."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("guards", True) and "callbacks" not in kwargs:
            from .guards import default_callbacks

            own = self._get(self.config_init, "trainer", default={}).get("callbacks") or []
            kwargs["callbacks"] = [*default_callbacks(), *(own if isinstance(own, list) else [own])]
        return super().instantiate_trainer(**kwargs)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        logger = config.get("trainer", {}).get("logger")
        if isinstance(logger, dict) or hasattr(logger, "init_args"):
            init = logger["init_args"]
            if str(logger["class_path"]).endswith("KDWandbLogger"):
                stems = [Path(str(c)).stem for c in (config.get("config") or [])]
                if init.get("name") is None and stems:
                    init["name"] = f"{stems[-1]}-seed{config.get('seed_everything')}"
                if init.get("group") is None:
                    model = str(config["model"]["class_path"]).rsplit(".", 1)[-1]
                    data = str(config["data"]["class_path"]).rsplit(".", 1)[-1]
                    init["group"] = f"{model}/{data}"


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
    lines = ["usage: kd-suite {fit,validate,test,predict," + ",".join(TOOLS) + "} ...", "", "commands:"]
    lines += [f"  {n:<9} Lightning {n} of a Distiller config (--config X.yaml)" for n in ("fit", "validate", "test")]
    lines += ["  predict   Lightning predict of a Distiller config"]
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
