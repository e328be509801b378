"""The frozen-teacher fast path: BN folding parity on every shipped teacher, and the Distiller's invariants kept."""

from __future__ import annotations

import copy
import dataclasses
import importlib
import json
import warnings

import pytest
import torch
import yaml
from torch import nn

from kd_suite.fast_teacher import FastPathOptions, TeacherFastPath, max_relative_error
from kd_suite.models.fold_bn import fold_batchnorm, fold_conv_bn
from kd_suite.teacher import fingerprint

from .conftest import REPO
from .support import PixelKL, TinySegDistiller, TinySegNet

RTOL = 1e-4  # issue #16: fused outputs equal the plain teacher's within 1e-4 relative (fp32)
_SIZE_FREE = ("num_classes", "num_joints", "pretrained", "decode")  # do not change which convs and BNs there are


def shipped_teachers() -> dict[str, tuple[str, dict]]:
    """Every teacher architecture of the shipped configs: KD ``teacher`` entries and ``*teacher*.yaml`` students."""
    specs: dict[str, tuple[str, dict]] = {}
    for path in sorted((REPO / "configs").glob("*/*.yaml")):
        args = (yaml.safe_load(path.read_text()).get("model") or {}).get("init_args", {})
        found = args.get("teacher") or []
        found = found if isinstance(found, list) else [found]
        if "teacher" in path.stem and isinstance(args.get("student"), dict):
            found.append(args["student"])
        for spec in found:
            init = dict(spec.get("init_args") or {})
            arch = {k: v for k, v in init.items() if k not in _SIZE_FREE}
            name = f"{spec['class_path'].rsplit('.', 1)[-1]}({json.dumps(arch, sort_keys=True)})"
            specs.setdefault(name, (spec["class_path"], init | {"pretrained": False} if "pretrained" in init else init))
    return specs


def build(class_path: str, init_args: dict) -> nn.Module:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)(**init_args)


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters, so that folding them is not an identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                if m.affine:
                    m.weight.copy_(0.5 + torch.rand(n, generator=g))
                    m.bias.copy_(0.1 * torch.randn(n, generator=g))
    return model


def trained_scale_heads(model: nn.Module) -> nn.Module:
    """Heatmap heads at a trained teacher's scale (peaks ~1 rather than SimpleBaseline's init ~1e-3).

    DARK decodes coordinates from the log of the heatmap around its peak; on the ~1e-3 heatmaps of a fresh init that
    step amplifies float rounding by orders of magnitude (7e-4 relative for BN folding), on a trained teacher's it
    does not (~2e-5), so the parity test uses heads of a trained teacher's scale.
    """
    if hasattr(model, "deconv") and hasattr(model, "final"):
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for layer in model.deconv:
                layer[0].weight.normal_(0.0, 0.05, generator=g)
            model.final.weight.normal_(0.0, 0.01, generator=g)
    return model


def check_decoded_coords(teacher: nn.Module, reference, out) -> None:
    """HeatmapNet's eval coords are DARK-decoded from its heatmaps (a Newton step on the log-heatmap).

    On random weights the step's Hessian is near-singular at some joints, where a change of the heatmaps of the size
    of BN-folding rounding (~2e-6 relative) alone moves the coordinates by up to 1e-3; that is the decoder's
    sensitivity, not the fast path's. The fast coordinates must be exactly the decode of the fast heatmaps, and
    equal the plain ones within 1e-4 relative at every joint the same-size perturbation does not move by more.
    """
    from kd_suite.tasks.pose.heatmap_net import heatmaps_to_coords

    coords, _ = heatmaps_to_coords(out.heatmaps, teacher.decode, teacher.blur_kernel)
    assert torch.equal(coords, out.coords)
    g = torch.Generator().manual_seed(0)
    hm = reference.heatmaps
    size = float((out.heatmaps - hm).abs().max())  # the fast path's own heatmap error
    scale = RTOL * reference.coords.abs().max()
    stable = torch.ones(hm.shape[:2], dtype=torch.bool)  # (B, K)
    for _ in range(8):  # the decode's sensitivity to heatmap changes of that size, in random directions
        perturbed, _ = heatmaps_to_coords(
            hm + size * torch.randn(hm.shape, generator=g), teacher.decode, teacher.blur_kernel
        )
        stable &= (perturbed - reference.coords).abs().amax(-1) <= scale
    assert stable.float().mean() >= 0.9, "the test heads should leave most joints well-conditioned"
    assert ((out.coords - reference.coords).abs().amax(-1)[stable] <= scale).all()


TEACHERS = shipped_teachers()


def test_the_shipped_configs_name_the_expected_teacher_families():
    families = {name.split("(")[0] for name in TEACHERS}
    assert families == {"PSPParsingNet", "ParsingNet", "HeatmapNet", "YOLOX"}, families


@pytest.mark.parametrize("name", sorted(TEACHERS))
def test_fast_path_equals_the_plain_teacher_on_every_field(name):
    torch.manual_seed(0)
    teacher = trained_scale_heads(randomise_bn(build(*TEACHERS[name]))).requires_grad_(False).eval()
    before = fingerprint(teacher)
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = teacher(image)
    fast = TeacherFastPath()
    out = fast.forward(teacher, image)
    decoded = getattr(teacher, "decode", None) is not None and reference.coords is not None
    for field in vars(reference):  # every field, list fields entry by entry (taps included)
        ref, got = getattr(reference, field), getattr(out, field)
        for a, b in zip(*(v if isinstance(v, list) else [v] for v in (ref, got))):
            if a is None:
                continue
            assert b.is_contiguous() and b.dtype == a.dtype and b.shape == a.shape, field
            if decoded and field == "coords":
                check_decoded_coords(teacher, reference, out)
            else:
                assert (a - b).abs().max() <= RTOL * a.abs().max(), field
    (report,) = fast.reports()
    assert report.fraction == 1.0, f"{report}: kept {report.kept[:5]}"
    assert fingerprint(teacher) == before, "the fast path must leave the teacher untouched"


def test_fold_conv_bn_handles_bias_groups_and_transposed_convs():
    torch.manual_seed(0)
    cases = [
        nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, bias=True), nn.BatchNorm2d(6)),
        nn.Sequential(nn.Conv2d(6, 6, 3, padding=1, groups=3, bias=False), nn.BatchNorm2d(6)),
        nn.Sequential(nn.ConvTranspose2d(4, 5, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(5)),
        nn.Sequential(nn.Conv2d(4, 6, 1, bias=False), nn.BatchNorm2d(6, affine=False)),
    ]
    for model in cases:
        model = randomise_bn(model).eval()
        x = torch.randn(2, model[0].in_channels, 8, 8)
        with torch.no_grad():
            ref = model(x)
            fused = copy.deepcopy(model)
            report = fold_batchnorm(fused)
            assert isinstance(fused[1], nn.Identity) and report.fraction == 1.0
            torch.testing.assert_close(fused(x), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="cannot fold"):
        fold_conv_bn(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(5))
    with pytest.raises(ValueError, match="eval-mode"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)))


def test_unknown_layouts_are_left_unfolded():
    class PreAct(nn.Module):  # BN *before* its conv: attribute names alone must not trigger a fold
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

        def forward(self, x):
            return self.conv1(torch.relu(self.bn1(x)))

    model = randomise_bn(PreAct()).eval()
    report = fold_batchnorm(model)
    assert report.folded == [] and report.kept == ["bn1"] and report.fraction == 0.0


def _module(**kw) -> TinySegDistiller:
    torch.manual_seed(0)
    teacher = randomise_bn(TinySegNet(16))
    return TinySegDistiller(TinySegNet(8), teacher=teacher, losses={"kl": PixelKL()}, **kw)


def test_distiller_fast_path_is_on_by_default_and_leaves_the_teacher_alone():
    module, plain = _module(), _module(teacher_fast_path=False)
    assert plain.teacher_fast is None and module.teacher_fast is not None
    state, prints = copy.deepcopy(module.state_dict()), module.teacher_fingerprints()
    image = torch.randn(2, 3, 16, 16)
    fast_out, plain_out = module.teacher_forward(image), plain.teacher_forward(image)
    assert max_relative_error(plain_out, fast_out) <= RTOL
    assert module.teacher_fingerprints() == prints and module.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in module.state_dict().items())
    assert not any("fast" in name for name, _ in module.named_modules())
    opt = {id(p) for g in module.configure_optimizers().param_groups for p in g["params"]}
    assert opt == {id(p) for p in module.parameters() if p.requires_grad}
    assert not opt & {id(p) for p in module.teachers.parameters()}
    s = module.student(image)
    module.distill_terms(s, fast_out, None)["kl"].backward()  # teacher tensors enter an autograd-tracked loss
    assert all(p.grad is None for p in module.teachers.parameters())
    assert module.teacher_fast._cache and copy.deepcopy(module).teacher_fast._cache == {}  # copies rebuild theirs


def test_fast_copy_follows_an_edited_or_reloaded_teacher():
    module = _module()
    image = torch.randn(2, 3, 16, 16)
    module.teacher_forward(image)
    with torch.no_grad():
        module.teachers[0].head.bias.add_(1.0)
        expected = module.teachers[0](image)
    assert max_relative_error(expected, module.teacher_forward(image)[0]) <= RTOL
    other = randomise_bn(TinySegNet(16), seed=3).eval()
    module.teachers[0].load_state_dict(other.state_dict())
    with torch.no_grad():
        expected = other(image)
    assert max_relative_error(expected, module.teacher_forward(image)[0]) <= RTOL


def test_inference_mode_outputs_can_enter_a_loss():
    module = _module(teacher_fast_path={"inference_mode": True})
    image = torch.randn(2, 3, 16, 16)
    teacher = module.teacher_forward(image)
    assert not teacher[0].logits.is_inference()
    module.distill_terms(module.student(image), teacher, None)["kl"].backward()


def test_a_copy_that_disagrees_falls_back_to_the_plain_teacher(monkeypatch):
    def broken(model):
        report = fold_batchnorm(model)
        with torch.no_grad():
            model.head.weight.mul_(2.0)
        return report

    monkeypatch.setattr("kd_suite.fast_teacher.fold_batchnorm", broken)
    module = _module()
    image = torch.randn(2, 3, 16, 16)
    with pytest.warns(UserWarning, match="fast path disabled"):
        out = module.teacher_forward(image)
    with torch.no_grad():
        assert torch.equal(out[0].logits, module.teachers[0](image).logits)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module.teacher_forward(image)  # decided once per teacher state: no second warning


def test_compiled_copy_is_frozen_checked_and_equal_to_the_plain_teacher(monkeypatch):
    options = []
    real_compile = torch.compile

    def spy(model, **kwargs):
        options.append(kwargs.get("options"))
        return real_compile(model, **kwargs)

    monkeypatch.setattr("kd_suite.fast_teacher.torch.compile", spy)
    teacher = _module().teachers[0]
    path = TeacherFastPath(FastPathOptions(compile=True))
    image = torch.randn(2, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the compiled program passes its check
        out = path.forward(teacher, image)
    assert options == [{"freezing": True}]
    with torch.no_grad():
        assert max_relative_error(teacher(image), out) <= RTOL


def test_a_compiled_copy_that_disagrees_runs_uncompiled(monkeypatch):
    def off_by_one(model, **kwargs):
        def run(x):
            out = model(x)
            return dataclasses.replace(out, logits=out.logits + 1.0)

        return run

    monkeypatch.setattr("kd_suite.fast_teacher.torch.compile", off_by_one)
    teacher = _module().teachers[0]
    path = TeacherFastPath(FastPathOptions(compile=True))
    image = torch.randn(2, 3, 16, 16)
    with pytest.warns(UserWarning, match="compiled copy .* differs"):
        out = path.forward(teacher, image)
    with torch.no_grad():
        assert max_relative_error(teacher(image), out) <= RTOL
        assert max_relative_error(teacher(image), path.forward(teacher, image)) <= RTOL


def test_switches(monkeypatch):
    assert TeacherFastPath.from_arg(False) is None
    assert TeacherFastPath.from_arg({"channels_last": False}).options == FastPathOptions(channels_last=False)
    with pytest.raises(ValueError, match="autocast"):
        FastPathOptions(autocast="fp8")
    with pytest.raises(TypeError, match="teacher_fast_path"):
        TeacherFastPath.from_arg("yes")
    monkeypatch.setenv("KD_SUITE_TEACHER_FAST_PATH", "0")
    assert _module().teacher_fast is None


def test_fit_with_the_fast_path_keeps_the_weights_file_and_the_integrity_check(tmp_path):
    import lightning as L

    from kd_suite.callbacks import TeacherIntegrity
    from kd_suite.teacher import sha256_file

    from .support import TinySegData

    path = tmp_path / "teacher.pt"
    torch.save(randomise_bn(TinySegNet(16)).state_dict(), path)
    digest = sha256_file(path)
    module = TinySegDistiller(TinySegNet(8), teacher=TinySegNet(16), teacher_ckpt=str(path), losses={"kl": PixelKL()})
    prints = module.teacher_fingerprints()
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        default_root_dir=tmp_path, callbacks=[TeacherIntegrity()])  # fmt: skip
    trainer.fit(module, TinySegData(num=4))
    assert module.teacher_fast.reports(), "the fit must have run the fast path"
    assert module.teacher_fingerprints() == prints and sha256_file(path) == digest
    assert module.teacher_meta[0]["sha256"] == digest
