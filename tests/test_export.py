"""``kd-suite export``: each task's student, trained for one step by ``kd-suite fit`` on tiny synthetic data, is
written as safetensors that reload bit-exactly, rebuilt by ``load_exported`` alone, and as ONNX that onnxruntime runs
within 1e-4 of PyTorch (detection: the decoded boxes of validation's own decode, before NMS)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from kd_suite.cli import main
from kd_suite.data.synth import synthesize
from kd_suite.export import export_graph, load_exported
from kd_suite.standalone import load_standalone

REPO = Path(__file__).resolve().parents[1]


def student(**init_args: object) -> list[str]:
    """Command-line overrides of the student's init_args."""
    return [f"--model.init_args.student.init_args.{k}={v}" for k, v in init_args.items()]


TINY_INPUT, NO_PIN = "--data.init_args.input_size=[64,64]", "--data.init_args.pin_memory=false"
#: student → (demo config, data folder, tiny overrides of the student and the data)
STUDENTS = {
    "parsing": (
        "parsing_student.yaml",
        "LIP",
        [*student(backbone="test_resnet", context_channels=16, fusion_channels="[8,8,8]", head_channels=8), TINY_INPUT],
    ),
    "detection": ("detection_student.yaml", "VOCdevkit", [*student(width=0.0625), TINY_INPUT, NO_PIN]),
    "pose_regression": (
        "pose_student.yaml",
        "mpii",
        [*student(dim=32, depth=1, stem_channels=8, stage_channels=16, num_blocks=1), NO_PIN],
    ),
    "pose_heatmap": (
        "pose_heatmap_student.yaml",
        "mpii",
        [*student(backbone="test_resnet", deconv_channels=8), NO_PIN],
    ),
}
#: one training step and one validation batch, quietly
ONE_STEP = [
    "--data.init_args.batch_size=2", "--data.init_args.num_workers=0", "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1", "--trainer.check_val_every_n_epoch=1",
    "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    "--model.init_args.scheduler=null",
]  # fmt: skip
OUTPUTS = {"parsing": ["logits"], "detection": ["detections"], "pose_regression": ["coords", "scores"],
           "pose_heatmap": ["heatmaps"]}  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export_data")
    synthesize(root, 2, 2, (96, 96), seed=3, formats=["lip", "mpii", "voc"], workers=0, progress=False)
    return root


@pytest.fixture(scope="module")
def checkpoints(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Lazily fitted ``best.ckpt`` per student (one training step, one validation batch)."""
    runs, cache = tmp_path_factory.mktemp("export_runs"), {}

    def get(kind: str) -> Path:
        if kind not in cache:
            config, folder, overrides = STUDENTS[kind]
            args = ["fit", "--config", str(REPO / "configs" / "demo" / config), f"--run_dir={runs / kind}"]
            assert main([*args, f"--data.init_args.root={data_root / folder}", *ONE_STEP, *overrides]) == 0
            cache[kind] = runs / kind / "checkpoints" / "best.ckpt"
        return cache[kind]

    return get


def export(ckpt: Path, out: Path, *extra: str) -> int:
    return main(["export", "--ckpt", str(ckpt), "--out", str(out), "--threads", "1", "--runs", "3", *extra])


@pytest.mark.parametrize("kind", list(STUDENTS))
def test_weights_reload_bit_exactly_and_the_student_rebuilds_alone(kind, checkpoints, tmp_path, capsys):
    ckpt = checkpoints(kind)
    assert export(ckpt, tmp_path, "--no-onnx") == 0
    assert "ONNX skipped: --no-onnx" in capsys.readouterr().out
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    expected = {k.removeprefix("student."): v for k, v in state.items() if k.startswith("student.")}
    saved = load_file(str(tmp_path / "student.safetensors"))
    assert saved.keys() == expected.keys()
    for key, value in expected.items():
        assert saved[key].dtype == value.dtype and torch.equal(saved[key], value), key
    record = json.loads((tmp_path / "student.json").read_text())
    assert record["student"] == state_student_config(ckpt) and record["onnx"] is None
    assert record["task"] == kind.split("_")[0] and record["facts"]["class_names"]
    rebuilt, original = load_exported(tmp_path), load_standalone(ckpt).module.student
    x = torch.randn(2, 3, *record["input"]["size"])  # (B, 3, H, W)
    with torch.no_grad():
        for a, b in zip(export_graph(rebuilt, record["task"])(x), export_graph(original, record["task"])(x)):
            assert torch.equal(a, b)


def state_student_config(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]["student"]


@pytest.mark.parametrize("kind", list(STUDENTS))
def test_onnx_matches_pytorch(kind, checkpoints, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    ckpt = checkpoints(kind)
    extra = ["--dynamic-batch"] if kind == "pose_regression" else []
    assert export(ckpt, tmp_path, *extra) == 0
    printed = capsys.readouterr().out
    assert "latency PyTorch" in printed and "latency onnxruntime" in printed
    for name in OUTPUTS[kind]:
        assert f"max abs diff {name}" in printed
    record = json.loads((tmp_path / "student.json").read_text())
    assert record["onnx"]["opset"] == 18 and record["onnx"]["parity"]
    assert [o["name"] for o in record["onnx"]["outputs"]] == OUTPUTS[kind]
    session = ort.InferenceSession(str(tmp_path / "student.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    batch = 3 if extra else 1
    x = torch.randn(batch, 3, *record["input"]["size"])
    got = dict(zip(OUTPUTS[kind], session.run(OUTPUTS[kind], {"image": x.numpy()})))
    student = load_exported(tmp_path)
    with torch.no_grad():
        out = student(x)
    if kind == "detection":
        check_detection(student, out, got["detections"])
        return
    want = {"parsing": lambda: {"logits": out.logits}, "pose_heatmap": lambda: {"heatmaps": out.heatmaps},
            "pose_regression": lambda: {"coords": out.coords, "scores": out.scores.sigmoid()}}[kind]()  # fmt: skip
    for name, value in want.items():
        assert got[name].shape == tuple(value.shape)
        assert np.abs(got[name] - value.numpy()).max() <= 1e-4, name


def check_detection(student, out, detections: np.ndarray) -> None:
    """The ONNX rows are validation's decode before thresholding: boxes, objectness and class probabilities."""
    from kd_suite.tasks.detection.decode import decode_boxes, flatten_levels, grid_priors

    cls, reg, obj = flatten_levels(out)
    priors = grid_priors([tuple(c.shape[-2:]) for c in out.cls], student.strides, cls.device)
    boxes = decode_boxes(reg.float(), priors)  # (B, A, 4) cx, cy, w, h input pixels
    assert detections.shape == (1, priors.shape[0], 4 + 1 + cls.shape[-1])
    assert np.abs(detections[..., :4] - boxes.numpy()).max() <= 1e-4
    assert np.abs(detections[..., 4] - obj.sigmoid().numpy()).max() <= 1e-4
    assert np.abs(detections[..., 5:] - cls.sigmoid().numpy()).max() <= 1e-4


def test_without_the_onnx_packages_the_weights_are_still_written(checkpoints, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("kd_suite.export.pipeline.missing_packages", lambda: ["onnxruntime"])
    assert export(checkpoints("pose_regression"), tmp_path) == 0
    printed = capsys.readouterr().out
    assert printed.count("pip install 'kd-suite[export]'") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.json", "student.safetensors"]


def test_parity_failure_is_one_clear_line(checkpoints, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr("kd_suite.export.pipeline.max_abs_diff", lambda graph, session, x: {"coords": 0.5})
    assert export(checkpoints("pose_regression"), tmp_path) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("kd-suite export: ONNX parity failed") and "coords on the random input: 0.5" in err
    assert len(err.splitlines()) == 1 and not json.loads((tmp_path / "student.json").read_text())["onnx"]["parity"]


def test_bad_checkpoints_are_one_line_errors(tmp_path, capsys):
    garbage, plain = tmp_path / "garbage.ckpt", tmp_path / "plain.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    torch.save({"state_dict": {}}, plain)
    for ckpt, words in [(tmp_path / "missing.ckpt", "not found"), (garbage, "not a checkpoint"),
                        (plain, "written by kd-suite fit")]:  # fmt: skip
        assert export(ckpt, tmp_path / "out") == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err


def test_an_opset_the_exporter_cannot_write_is_one_clear_line(checkpoints, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxscript")
    monkeypatch.setattr("torch.onnx.export", lambda *args, **kwargs: None)  # as if the converter had kept opset 18
    monkeypatch.setattr("kd_suite.export.runtime.written_opset", lambda path: 18)
    assert export(checkpoints("pose_regression"), tmp_path, "--opset", "17") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "opset 17 was asked for" in err and "--opset 18" in err
    assert (tmp_path / "student.safetensors").is_file() and json.loads((tmp_path / "student.json").read_text())
