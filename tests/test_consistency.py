"""Model/data consistency is checked before training, for every task, with one error naming both sides and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from kd_suite.cli import main
from kd_suite.consistency import ConsistencyError, check_consistency
from kd_suite.data.crowdpose import CrowdPoseDataModule
from kd_suite.data.lip import LIPDataModule
from kd_suite.data.mpii import MPIIDataModule
from kd_suite.data.voc import VOCDataModule
from kd_suite.tasks.parsing import ParsingDistiller, ParsingNet
from kd_suite.tasks.pose import HeatmapNet, PoseDistiller

REPO = Path(__file__).resolve().parents[1]
DETECTION = REPO / "configs" / "detection" / "synthetic_student.yaml"


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("consistency") / "VOCdevkit"
    VOCDataModule(
        str(root), ["standing", "fallen"], synth_if_missing=True, synth_num_train=2, synth_num_val=2
    ).prepare_data()
    return root


@pytest.mark.parametrize("num_classes", [3, 1])
def test_detector_with_the_wrong_class_count_stops_before_training(voc_root, num_classes, capsys, tmp_path):
    code = main(["fit", "--config", str(DETECTION), f"--model.init_args.student.init_args.num_classes={num_classes}",
                 f"--data.init_args.root={voc_root}", "--data.init_args.num_workers=0", "--trainer.fast_dev_run=1",
                 "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert f"predicts {num_classes} class" in err and "VOCDataModule has 2: ['standing', 'fallen']" in err
    assert "num_classes: 2" in err and "Traceback" not in err


def _parser(num_classes: int = 20) -> ParsingNet:
    return ParsingNet("test_resnet", num_classes, context_channels=8, fusion_channels=(8, 8, 8), head_channels=8)


def test_parser_with_the_wrong_class_count_or_flip_pairs(tmp_path):
    with pytest.raises(
        ConsistencyError, match=r"predicts 4 classes.*LIPDataModule labels 20 classes.*num_classes to 20"
    ):
        check_consistency(ParsingDistiller(_parser(4), num_classes=4, flip_pairs=()), LIPDataModule(str(tmp_path)))
    module = ParsingDistiller(_parser(), flip_test=True, flip_pairs=((14, 15),))
    with pytest.raises(ConsistencyError, match=r"flip pairs.*\[\(14, 15\)\].*\(16, 17\)"):
        check_consistency(module, LIPDataModule(str(tmp_path)))
    check_consistency(ParsingDistiller(_parser(), flip_test=True), LIPDataModule(str(tmp_path)))  # consistent


def _pose(num_joints: int, **kwargs) -> PoseDistiller:
    return PoseDistiller(HeatmapNet("test_resnet", num_joints, deconv_channels=8, num_deconv=3), **kwargs)


def test_a_16_joint_pose_model_on_crowdpose_stops_naming_both_sides(tmp_path):
    with pytest.raises(
        ConsistencyError, match=r"student HeatmapNet predicts 16 joints.*CrowdPoseDataModule annotates 14"
    ):
        check_consistency(_pose(16, metric="crowdpose"), CrowdPoseDataModule(str(tmp_path)))
    with pytest.raises(ConsistencyError, match=r"metric='pckh' scores 16 joints.*metric to crowdpose"):
        check_consistency(_pose(14, metric="pckh"), CrowdPoseDataModule(str(tmp_path)))
    with pytest.raises(ConsistencyError, match=r"flip pairs"):
        check_consistency(_pose(16, flip_pairs=[[0, 1]]), MPIIDataModule(str(tmp_path)))
    with pytest.raises(ConsistencyError, match=r"heatmap stride.*stride 4.*heatmap_stride=2.*heatmap_stride: 4"):
        check_consistency(_pose(16), MPIIDataModule(str(tmp_path), heatmap_stride=2, input_size=(64, 64)))
    check_consistency(_pose(16), MPIIDataModule(str(tmp_path)))  # consistent
