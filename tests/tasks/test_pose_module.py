"""PoseDistiller: every synthetic config runs, flip geometry, end-to-end metrics with an oracle, EMA self-guide, W&B."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor, nn

from kd_suite.cli import KDCLI
from kd_suite.data.crowdpose import CrowdPoseDataModule
from kd_suite.data.mpii import MPIIDataModule
from kd_suite.data.synth import synthesize
from kd_suite.metrics.pckh import evaluate_files
from kd_suite.outputs import PoseOutput, TapInfo
from kd_suite.tasks.pose import DenseGuidedHeatmapLoss, HeatmapNet, PoseDistiller, RegressionPoseNet
from kd_suite.tasks.pose.flip import flip_test, unflip_coords
from kd_suite.tasks.pose.scores import PosePredictions

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC = sorted((REPO / "configs" / "pose").glob("synthetic_*.yaml"))


@pytest.fixture(autouse=True)
def one_thread():
    """The models here are tiny: one intra-op thread is faster than two on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pose_synth")
    synthesize(root, 4, 3, formats=("mpii", "crowdpose"), workers=0, progress=False)
    return root


def trainer(**kwargs) -> L.Trainer:
    defaults = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    return L.Trainer(**(defaults | {"enable_checkpointing": False} | kwargs))


@pytest.mark.parametrize("config", SYNTHETIC, ids=[p.stem for p in SYNTHETIC])
def test_synthetic_config_fast_dev_run(config, synth_root, tmp_path):
    fmt = "crowdpose" if "crowdpose" in config.stem else "mpii"
    cli = KDCLI(
        args=[
            "fit",
            "--config",
            str(config),
            "--trainer.logger=false",
            "--trainer.fast_dev_run=true",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            "--trainer.callbacks=[]",
            f"--trainer.default_root_dir={tmp_path}",
            f"--data.init_args.root={synth_root / fmt}",
            "--data.init_args.batch_size=2",
            "--data.init_args.num_workers=0",
        ]
    )
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["train/total"])
    key = "val/PCKh" if fmt == "mpii" else "val/AP"
    assert key in metrics and 0.0 <= float(metrics[key]) <= (100.0 if fmt == "mpii" else 1.0)


class DotModel(nn.Module):
    """Reads two bright dots; joint 0 = the one further left in the image, joint 1 = the other (a 'pose model')."""

    tap_info = {"coords": TapInfo(2, 0), "scores": TapInfo(2, 0)}

    def forward(self, image: Tensor) -> PoseOutput:
        b, _, h, w = image.shape
        flat = image[:, 0].reshape(b, -1)
        idx = flat.topk(2, dim=-1).indices  # (B, 2)
        xy = torch.stack([idx % w, idx // w], dim=-1).float()  # (B, 2, 2) pixels
        order = xy[..., 0].argsort(dim=-1)
        xy = torch.gather(xy, 1, order.unsqueeze(-1).expand(-1, -1, 2))
        return PoseOutput(coords=xy / torch.tensor([w, h]), scores=torch.zeros(b, 2))


def test_flip_test_geometry_is_exact():
    image = torch.zeros(1, 3, 12, 10)
    image[0, 0, 4, 2] = 1.0  # left joint at x=2
    image[0, 0, 7, 6] = 1.0  # right joint at x=6
    coords, conf = flip_test(DotModel(), image, flip_pairs=[(0, 1)])
    expected = torch.tensor([[[2 / 10, 4 / 12], [6 / 10, 7 / 12]]])
    torch.testing.assert_close(coords, expected)  # x ↦ 1 − x would be off by one pixel (0.1)
    assert torch.equal(conf, torch.full((1, 2), 0.5))
    c = torch.rand(3, 4, 2)
    torch.testing.assert_close(unflip_coords(unflip_coords(c, [(0, 3)], 17), [(0, 3)], 17), c)  # an involution


class Oracle(nn.Module):
    """Returns the GT of each validation crop (and its exact mirror for the flipped crop), found by an image key."""

    def __init__(self, loader, num_joints: int, noise: float = 0.0) -> None:
        super().__init__()
        self.table: dict[float, Tensor] = {}
        self.tap_info = {"coords": TapInfo(num_joints, 0), "scores": TapInfo(num_joints, 0)}
        g = torch.Generator().manual_seed(0)
        for batch in loader:
            h, w = batch.image.shape[-2:]
            gt = batch.keypoints / torch.tensor([w, h])  # (B, K, 2) normalised
            gt = gt + noise * torch.randn(gt.shape, generator=g)
            pairs = loader.dataset.flip_pairs
            for i in range(len(gt)):
                self.table[self.key(batch.image[i : i + 1])[0]] = gt[i]
                self.table[self.key(batch.image[i : i + 1].flip(-1))[0]] = unflip_coords(gt[i : i + 1], pairs, w)[0]

    @staticmethod
    def key(image: Tensor) -> list[float]:
        ramp = torch.linspace(0, 1, image.shape[-1])
        return [round(float(v), 2) for v in (image * ramp).sum(dim=(1, 2, 3))]

    def forward(self, image: Tensor) -> PoseOutput:
        coords = torch.stack([self.table[k] for k in self.key(image)])
        return PoseOutput(coords=coords, scores=torch.full(coords.shape[:2], 10.0))


def datamodule(cls, root: Path) -> L.LightningDataModule:
    dm = cls(root=str(root), batch_size=3, num_workers=0, pin_memory=False, input_size=(64, 48))
    dm.setup("validate")
    return dm


def test_crowdpose_oracle_scores_ap_one_after_back_projection(synth_root):
    dm = datamodule(CrowdPoseDataModule, synth_root / "crowdpose")
    module = PoseDistiller(Oracle(dm.val_dataloader(), 14), metric="crowdpose")
    trainer().validate(module, datamodule=dm, verbose=False)
    scores = trainer_metrics(module)
    assert scores["val/AP"] == pytest.approx(100.0) and scores["val/AR"] == pytest.approx(100.0)  # percent
    pred, gt = module.results["student"]["arrays"]["pred"], module.results["student"]["arrays"]["gt"]
    assert pred.shape[1:] == (14, 3) and np.abs(pred[..., :2] - gt).max() < 1e-2  # original-image pixels


def trainer_metrics(module: PoseDistiller) -> dict[str, float]:
    return {k: float(v) for k, v in module.trainer.callback_metrics.items()}


def test_mpii_validation_pckh_equals_the_file_protocol(synth_root, tmp_path):
    dm = datamodule(MPIIDataModule, synth_root / "mpii")
    module = PoseDistiller(Oracle(dm.val_dataloader(), 16, noise=0.04), metric="pckh")
    trainer().validate(module, datamodule=dm, verbose=False)
    logged = trainer_metrics(module)
    state = module.results["student"]["arrays"]
    order = np.argsort(state["uid"])  # MPII: the row of the val json
    assert np.array_equal(state["uid"][order], np.arange(len(order)))  # every val instance predicted once
    (tmp_path / "pred.json").write_text(json.dumps(state["pred"][order, :, :2].tolist()))
    table = evaluate_files(dm.val_ann_file, tmp_path / "pred.json")
    assert 0 < logged["val/PCKh"] < 100
    assert logged["val/PCKh"] == pytest.approx(table["Mean"], abs=1e-3)
    assert logged["val/PCKh/Ankle"] == pytest.approx(table["Ankle"], abs=1e-3)


def tiny_heatmap_net(seed: int, aux: int = 0) -> HeatmapNet:
    torch.manual_seed(seed)
    return HeatmapNet("test_resnet", num_joints=16, deconv_channels=8, aux_heads=aux)


def test_ema_self_guide_is_passed_explicitly_and_follows_the_student(synth_root):
    dm = datamodule(MPIIDataModule, synth_root / "mpii")
    dm.input_size = (64, 64)
    dm.datasets.clear()
    module = PoseDistiller(
        tiny_heatmap_net(0, aux=1),
        teacher=tiny_heatmap_net(1),
        losses={"dense": DenseGuidedHeatmapLoss(self_aux=True)},
        self_kd="ema",
        ema_decay=0.5,
        log_images=0,
    )
    start = {k: v.clone() for k, v in module.ema_student.state_dict().items()}
    image = torch.zeros(1, 3, 64, 64)
    assert len(module.teacher_forward(image)) == 1, "the EMA copy is not a teacher"
    assert len(module.self_guides(image)) == 1 and not module.ema_student.training
    trainer(max_steps=1, limit_val_batches=0).fit(module, datamodule=dm)
    student = module.student.state_dict()
    name = "final.weight"
    expected = 0.5 * start[name] + 0.5 * student[name]  # one EMA step after one optimizer step
    torch.testing.assert_close(module.ema_student.state_dict()[name], expected)
    assert not torch.equal(student[name], start[name])
    assert all(not p.requires_grad for p in module.ema_student.parameters())
    with pytest.raises(ValueError, match="uses_guides"):
        PoseDistiller(tiny_heatmap_net(0), self_kd="ema")


class FakeRun:
    def __init__(self) -> None:
        self.logged: list[dict] = []
        self.config = SimpleNamespace(update=lambda *a, **k: None)

    def log(self, data: dict, **kwargs) -> None:
        self.logged.append(data)


def test_wandb_skeleton_overlays_gt_teacher_student(synth_root, tmp_path):
    dm = datamodule(CrowdPoseDataModule, synth_root / "crowdpose")
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    logger._experiment = FakeRun()
    torch.manual_seed(0)
    teacher = HeatmapNet("test_resnet", num_joints=14, deconv_channels=8)
    module = PoseDistiller(Oracle(dm.val_dataloader(), 14), teacher=teacher, metric="none", log_images=2)
    trainer(logger=logger).validate(module, datamodule=dm, verbose=False)
    panels = [d["val/predictions"] for d in logger._experiment.logged if "val/predictions" in d]
    assert len(panels) == 1 and len(panels[0]) == 2  # first batch only, log_images crops
    assert panels[0][0]._caption == "epoch 0: ground truth | teacher | student"
    picture = module.render(next(iter(dm.val_dataloader())), None, n=2)
    assert len(picture) == 2 and picture[0].shape == (64, 48, 3) and picture[0].dtype == np.uint8


def test_predictions_repeated_by_ddp_padding_are_counted_once():
    acc = PosePredictions()
    for uid in ([3, 1], [2, 3]):  # the padding sampler repeats sample 3 on the second rank
        n = len(uid)
        acc.update(
            torch.full((n, 2, 3), float(uid[0])),
            torch.zeros(n, 2, 2),
            torch.ones(n, 2),
            torch.ones(n),
            torch.zeros(n, dtype=torch.long),
            torch.ones(n),
            torch.tensor(uid),
        )
    state = acc.compute()
    assert state["uid"].tolist() == [3.0, 1.0, 2.0] and state["pred"][:, 0, 0].tolist() == [3.0, 3.0, 2.0]


REAL = sorted(p for p in (REPO / "configs" / "pose").glob("*.yaml") if not p.stem.startswith("synthetic"))


@pytest.mark.parametrize("config", REAL, ids=[p.stem for p in REAL])
def test_real_configs_build_a_student_that_fits_their_data(config):
    cfg = yaml.safe_load(config.read_text())
    model, data = cfg["model"]["init_args"], cfg["data"]
    joints = {"kd_suite.data.mpii.MPIIDataModule": 16, "kd_suite.data.crowdpose.CrowdPoseDataModule": 14}
    k = joints[data["class_path"]]
    nets = [model["student"]] + (model["teacher"] if isinstance(model.get("teacher"), list) else [model.get("teacher")])
    for net in filter(None, nets):
        assert net["init_args"]["num_joints"] == k, net
    spec = model["student"]
    module, name = spec["class_path"].rsplit(".", 1)
    args = {**spec["init_args"], "pretrained": False} if "backbone" in spec["init_args"] else spec["init_args"]
    student = getattr(importlib.import_module(module), name)(**args)
    if isinstance(student, RegressionPoseNet):
        assert list(student.input_size) == data["init_args"]["input_size"]  # token grid built for the crop size
    teachers = model.get("teacher_ckpt")
    if teachers is not None:
        assert len(teachers if isinstance(teachers, list) else [teachers]) == len(nets) - 1


def test_each_student_kind_gets_its_own_supervised_path():
    """Heatmap students are trained on heatmaps, regression students on coordinates; a model with neither is refused."""
    from kd_suite.tasks.pose.supervision import regression_supervision, student_kind

    heatmap = HeatmapNet("test_resnet", num_joints=2, output_stride=8, num_deconv=1, deconv_channels=8)
    assert student_kind(heatmap) == "heatmap"
    with pytest.raises(TypeError, match="neither a 'heatmaps' nor a 'coords' tap"):
        student_kind(nn.Conv2d(3, 2, 1))
    module = PoseDistiller(DotModel(), metric="none", flip_test=False, coord_loss="l1", task_weight=0.5)
    assert module.student_kind == "regression"
    batch = SimpleNamespace(
        image=torch.zeros(2, 3, 8, 8),
        keypoints=torch.tensor([[[2.0, 4.0], [8.0, 0.0]]] * 2),
        visible=torch.tensor([[1.0, 0.0]] * 2),
        heatmaps=torch.zeros(2, 2, 2, 2),
    )
    out = PoseOutput(coords=torch.full((2, 2, 2), 0.5))
    expected = 2 * (abs(0.5 - 0.25) + abs(0.5 - 0.5)) / 8  # joint 0 only (1 is invisible), mean over B·K·2 values
    terms = module.task_loss(out, batch)  # no scores in the output: no score term
    assert set(terms) == {"coord"} and terms["coord"].item() == pytest.approx(0.5 * expected)
    assert regression_supervision(out, batch, "l1")["coord"].item() == pytest.approx(expected)
