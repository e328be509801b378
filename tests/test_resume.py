"""Exact resume: a run crashed or SIGKILLed mid-epoch and resumed with ``--ckpt_path last`` ends bit-identical to
the uninterrupted run (augmentation on, dropout, a scheduled KD term, an epoch-interval LR scheduler)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from kd_suite.cli import main
from kd_suite.data.lip import LIPDataModule

from .support import TinySegNet

REPO = Path(__file__).resolve().parents[1]


def config(tmp: Path, workers: int, callbacks: list[dict] | None = None) -> dict:
    seg = {"class_path": "tests.support.TinySegNet", "init_args": {"width": 8, "num_classes": 20}}
    return {
        "seed_everything": 3,
        "trainer": {
            "max_epochs": 3,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 1,
            "limit_val_batches": 1,
            "deterministic": True,
            "callbacks": callbacks or [],
        },
        "model": {
            "class_path": "kd_suite.tasks.parsing.ParsingDistiller",
            "init_args": {
                "student": seg,
                "teacher": seg | {"init_args": {"width": 16, "num_classes": 20}},
                "teacher_ckpt": str(tmp / "teacher.pt"),
                "losses": {
                    "kl": {
                        "class_path": "tests.support.PixelKL",
                        "init_args": {"weight": 0.5, "schedule": {"warmup_epochs": 2.0}},
                    }
                },
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01}},
                "scheduler": {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 1}},
            },
        },
        "data": {
            "class_path": "kd_suite.data.lip.LIPDataModule",
            "init_args": {
                "root": str(tmp / "LIP"),
                "input_size": [32, 32],
                "batch_size": 2,
                "num_workers": workers,
                "augment": True,
                "flip": True,
                "pin_memory": False,
            },
        },
    }


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    LIPDataModule(root=str(root / "LIP"), input_size=(32, 32), synth_if_missing=True, synth_num_train=8,
                  synth_num_val=2).prepare_data()  # fmt: skip
    torch.manual_seed(0)
    torch.save(TinySegNet(16, 20).state_dict(), root / "teacher.pt")
    return root


def fit(tmp: Path, name: str, cfg: dict, *extra: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert (
        main(
            [
                "fit",
                "--config",
                str(path),
                f"--trainer.default_root_dir={tmp / 'runs'}",
                "--run_name",
                name,
                "--experiment",
                "resume",
                *extra,
            ]
        )
        == 0
    )
    return tmp / "runs" / "resume" / name


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 2
    return {k: v for k, v in state["state_dict"].items() if k.startswith("student.")}


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ after the resume, e.g. {differ[:3]}"


@pytest.fixture(scope="module")
def reference(tmp: Path) -> dict[int, dict[str, torch.Tensor]]:
    """Uninterrupted 3-epoch runs, without and with a loader worker."""
    return {w: weights(fit(tmp, f"full{w}", config(tmp, w))) for w in (0, 1)}


@pytest.mark.parametrize("workers", [0, 1])
def test_crash_then_resume_is_bit_exact(tmp, reference, workers):
    crash = [{"class_path": "tests.support.CrashAt", "init_args": {"epoch": 1, "batch": 2}}]
    name = f"crash{workers}"
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tmp, name, config(tmp, workers, crash))
    run = tmp / "runs" / "resume" / name
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0  # the crash lost epoch 1
    resumed = fit(tmp, name, config(tmp, workers), "--ckpt_path", "last")
    assert resumed == run  # the resume continues in the same run folder, no new version
    assert_identical(reference[workers], weights(run))
    assert reference[0].keys() == reference[1].keys()
    assert any(not torch.equal(reference[0][k], reference[1][k]) for k in reference[0])  # the streams matter


def test_sigkill_mid_epoch_then_resume_is_bit_exact(tmp, reference):
    slow = [{"class_path": "tests.support.SlowSteps", "init_args": {"seconds": 0.3}}]
    path = tmp / "killed.yaml"
    path.write_text(yaml.safe_dump(config(tmp, 0, slow)))
    run = tmp / "runs" / "resume" / "killed"
    last = run / "checkpoints" / "last.ckpt"
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # one thread, as the tests run
    root = f"--trainer.default_root_dir={tmp / 'runs'}"
    cmd = [sys.executable, "-m", "kd_suite.cli", "fit", "--config", str(path), root, "--run_name", "killed",
           "--experiment", "resume"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert last.is_file(), "the run wrote no last.ckpt"
    time.sleep(0.5)  # into epoch 1: four batches of >= 0.3 s each
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert torch.load(last, weights_only=True)["epoch"] == 0  # killed before epoch 1 ended
    assert not (run / "metrics.json").exists()
    fit(tmp, "killed", config(tmp, 0), "--ckpt_path", "last")
    assert_identical(reference[0], weights(run))


DEMO = REPO / "configs" / "demo"
#: the most stateful shipped recipes: EMA self-guide (DSKD), mosaic + FSD, two terms on parsing; tiny sizes
SHIPPED = {
    "pose_dskd.yaml": ("mpii", ["--data.init_args.input_size=[32,32]", "--data.init_args.batch_size=4"]),
    "detection_fsd.yaml": ("VOCdevkit", ["--data.init_args.input_size=[64,64]", "--data.init_args.batch_size=4"]),
    "parsing_dist_gskd.yaml": ("LIP", ["--data.init_args.input_size=[32,32]", "--data.init_args.batch_size=4"]),
}


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kd_suite.data.synth import synthesize

    out = tmp_path_factory.mktemp("demo_data")
    synthesize(out, 12, 4, (96, 96), seed=1, formats=("lip", "mpii", "voc"), workers=0, progress=False)
    return out


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_recipes_resume_bit_exactly(tmp_path, demo_data, name):
    folder, sizes = SHIPPED[name]
    common = [
        "--config", str(DEMO / name), f"--data.init_args.root={demo_data / folder}", *sizes,
        "--model.init_args.teacher_ckpt=null", "--trainer.max_epochs=2", "--trainer.limit_train_batches=3",
        "--trainer.limit_val_batches=1", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path}", "--experiment", "shipped",
    ]  # fmt: skip
    assert main(["fit", *common, "--run_name", "full"]) == 0
    crash = '--trainer.callbacks=[{"class_path": "tests.support.CrashAt", "init_args": {"epoch": 1, "batch": 1}}]'
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["fit", *common, "--run_name", "cut", crash])
    assert main(["fit", *common, "--run_name", "cut", "--ckpt_path", "last"]) == 0
    full, cut = (
        torch.load(tmp_path / "shipped" / r / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        for r in ("full", "cut")
    )
    assert full.keys() == cut.keys() and any(k.startswith("student.") for k in full)
    assert_identical({k: full[k] for k in full}, {k: cut[k] for k in cut})
