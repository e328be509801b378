"""Default experiment logger: Weights & Biases, offline unless the user opted in."""

from __future__ import annotations

import netrc
import os
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger


def wandb_online() -> bool:
    """True if the user chose a W&B mode or has credentials (``WANDB_MODE``, ``WANDB_API_KEY`` or ~/.netrc)."""
    if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class KDWandbLogger(WandbLogger):
    """W&B logger whose runs of one experiment (teacher, baseline, KD) share a group.

    Args:
        project: W&B project.
        group: experiment group (the CLI fills it from the task and dataset when unset).
        name: run name (the CLI fills it from the config file name when unset).
        save_dir: local directory for run files.
        offline: force offline (True) or online (False); ``None`` = offline unless the user set ``WANDB_MODE``, an
            API key or logged in.
        log_model: upload checkpoints as artifacts.
        tags: run tags.
    """

    def __init__(
        self,
        project: str = "kd-suite",
        group: str | None = None,
        name: str | None = None,
        save_dir: str = "runs",
        offline: bool | None = None,
        log_model: bool = False,
        tags: list[str] | None = None,
    ) -> None:
        if offline is None:
            offline = not wandb_online()
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(
            project=project, group=group, name=name, save_dir=save_dir, offline=offline, log_model=log_model, tags=tags
        )
