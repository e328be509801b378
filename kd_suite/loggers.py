"""Default experiment logger: Weights & Biases, offline unless the user opted in."""

from __future__ import annotations

import netrc
import os
import uuid
from pathlib import Path
from typing import Any

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

    ``kd-suite fit`` calls :meth:`configure_run` before the W&B run starts: files go to the run folder, the group is
    the experiment, the job type the run's role (teacher / baseline / kd), the tags the distillation terms, the name
    ``<run>[-vN]-seed<S>`` (unique per run folder), and a resumed run continues the same W&B run.

    Args:
        project: W&B project.
        group: experiment group (default: the experiment).
        name: run name (default: the run folder's name and the seed).
        save_dir: local directory for run files (default: the run folder).
        offline: force offline (True) or online (False); ``None`` = offline unless the user set ``WANDB_MODE``, an
            API key or logged in.
        log_model: upload checkpoints as artifacts.
        tags: run tags (the distillation terms' classes are added).
        job_type: W&B job type (default: the run's role).
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
        job_type: str | None = None,
    ) -> None:
        if offline is None:
            offline = not wandb_online()
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(
            project=project,
            group=group,
            name=name,
            save_dir=save_dir,
            offline=offline,
            log_model=log_model,
            tags=tags,
            job_type=job_type,
        )
        self._explicit = {"group": group, "name": name, "job_type": job_type, "save_dir": save_dir != "runs"}

    def configure_run(self, layout: Any, seed: int | None, tags: list[str]) -> None:
        """Fill what the config left unset from the run's :class:`~kd_suite.run_folder.RunLayout` (before the run
        starts; a resumed run folder reuses its W&B run id, kept in ``wandb_id.txt``)."""
        if self._experiment is not None:
            return
        run_dir = Path(layout.run_dir)
        init = self._wandb_init
        if not self._explicit["save_dir"]:
            run_dir.mkdir(parents=True, exist_ok=True)
            self._save_dir = init["dir"] = str(run_dir)
        init["group"] = self._explicit["group"] or layout.experiment
        init["job_type"] = self._explicit["job_type"] or layout.role
        base = run_dir.name if run_dir.name.startswith(layout.run_name) else layout.run_name  # keeps a -vN suffix
        init["name"] = self._name = self._explicit["name"] or f"{base}-seed{seed}"
        init["tags"] = sorted({*(init.get("tags") or []), layout.role, *tags})
        id_file = run_dir / "wandb_id.txt"
        if id_file.is_file():
            init["id"], init["resume"] = id_file.read_text().strip(), "allow"
        else:
            run_id = uuid.uuid4().hex[:12]  # W&B run ids: lowercase letters and digits
            run_dir.mkdir(parents=True, exist_ok=True)
            id_file.write_text(run_id + "\n")
            init["id"] = run_id
        self._id = init["id"]
