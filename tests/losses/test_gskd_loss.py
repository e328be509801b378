"""GSKDLoss: class-balanced sampling, replay, clean vs faithful (authors' released behaviour) against python loops."""

from __future__ import annotations

import math

import pytest
import torch

from kd_suite.data.batch import ParsingBatch
from kd_suite.losses import GSKDLoss
from kd_suite.losses.gskd import class_balanced_indices, descriptor_loss, gskd_loss, random_indices
from kd_suite.outputs import ParsingOutput, TapInfo

from .common import kl_list, softmax_list

IGN = 255


def _labels() -> torch.Tensor:
    """(2, 4, 4): image 0 has class 0 ×8, class 1 ×2 (padded at k = 3), class 2 ×1 (skipped), ignore ×5."""
    img0 = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 2, IGN], [IGN, IGN, IGN, IGN]])
    img1 = torch.tensor([[2, 2, 2, 1], [1, 1, 0, 0], [0, 0, 2, 2], [1, IGN, 0, 2]])
    return torch.stack([img0, img1])


def _pixel_vectors(x: torch.Tensor, b: int, cand: list[tuple[int, int]], faithful: bool) -> list[list[float]]:
    """Unit feature vectors of the candidate pixels; faithful = the reference's reshape(B,H,W,C) + view(C,-1)."""
    _, c, h, w = x.shape
    norm = {}
    for y in range(h):
        for i in range(w):
            length = math.sqrt(sum(x[b, k, y, i].item() ** 2 for k in range(c)))
            for k in range(c):
                norm[k, y, i] = x[b, k, y, i].item() / length
    if not faithful:
        return [[norm[k, y, i] for k in range(c)] for y, i in cand]
    flat = [norm[f // (h * w), (f % (h * w)) // w, f % w] for f in range(c * h * w)]  # memory order of image b
    rows = [[flat[y * w * c + i * c + k] for k in range(c)] for y, i in cand]  # rows of reshape(H, W, C)[keep]
    joined = [v for row in rows for v in row]
    p = len(cand)
    return [[joined[k * p + j] for k in range(c)] for j in range(p)]  # column j of .view(C, P)


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _loop_gskd(s, t, labels, k, group_width, tau, correct, seed, faithful):
    g = torch.Generator().manual_seed(seed)
    _, _, h, w = s.shape
    per_image = []
    for b in range(s.shape[0]):
        cand = [
            (y, i)
            for y in range(h)
            for i in range(w)
            if (faithful or labels[b, y, i] != IGN) and (correct is None or bool(correct[b, y, i]))
        ]
        lab = [int(labels[b, y, i]) for y, i in cand]
        if len(cand) < k:
            per_image.append(None)
            continue
        rows, n_cls = [], 0
        for c in sorted(set(lab) - {IGN}):
            idx = [j for j, v in enumerate(lab) if v == c]
            if len(idx) == 1:
                continue
            perm = torch.randperm(len(idx), generator=g).tolist()
            if len(idx) >= k:
                rows += [idx[p] for p in perm[:k]]
            else:
                others = [j for j, v in enumerate(lab) if v != c]
                rows += idx + [others[p] for p in torch.randperm(len(others), generator=g).tolist()[: k - len(idx)]]
            n_cls += 1
        if not n_cls:
            per_image.append(None)
            continue
        vs, vt = _pixel_vectors(s, b, cand, faithful), _pixel_vectors(t, b, cand, faithful)
        m = len(rows)
        shuffle = torch.rand(m, m, generator=g).argsort(dim=1).tolist()

        picked_s, picked_t = [vs[r] for r in rows], [vt[r] for r in rows]
        gs = [[_dot(picked_s[i], picked_s[shuffle[i][j]]) for j in range(m)] for i in range(m)]  # row-shuffled GSSMs
        gt = [[_dot(picked_t[i], picked_t[shuffle[i][j]]) for j in range(m)] for i in range(m)]
        width = -group_width * n_cls if group_width < 0 else group_width
        if faithful and width > m:  # reference: softmax over dim 0 of the whole shuffled map, ÷ M
            total = sum(
                kl_list(
                    softmax_list([gt[i][j] / tau for i in range(m)]), softmax_list([gs[i][j] / tau for i in range(m)])
                )
                for j in range(m)
            )
            per_image.append(total / m * tau**2)
            continue
        width = min(width, m)
        terms = []
        for start in range(0, m, width):
            cols = range(start, min(start + width, m))
            d_s = [gs[i][j] / tau for i in range(m) for j in cols]
            d_t = [gt[i][j] / tau for i in range(m) for j in cols]
            terms.append(kl_list(softmax_list(d_t), softmax_list(d_s)) / len(d_s) * tau**2)
        if faithful and m % width:
            per_image.append(sum(terms[:-1]) / (len(terms) - 1) + terms[-1])
        else:
            per_image.append(sum(terms) / len(terms))
    if faithful:
        return per_image[-1] or 0.0
    kept = [v for v in per_image if v is not None]
    return sum(kept) / len(kept)


def _features(seed: int = 0, c: int = 3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, c, 4, 4, generator=g).double(), torch.randn(2, c, 4, 4, generator=g).double()


# ---------------------------------------------------------------- sampling
def test_class_balanced_sampler_returns_exactly_k_per_present_class():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] + [5] * 6 + [IGN] * 4)
    index, classes = class_balanced_indices(labels, 4, IGN, torch.Generator().manual_seed(0))
    assert classes.tolist() == [0, 1, 5]  # class 2 has a single pixel, ignore is never a class
    assert index.shape == (3, 4)
    for row, c in zip(index.tolist(), classes.tolist()):
        assert len(set(row)) == 4, "no position twice within a class"
        if c == 1:  # fewer than k: all its pixels first, then pixels of other labels
            assert sorted(row[:3]) == [10, 11, 12] and labels[row[3]] != 1
        else:
            assert all(labels[j] == c for j in row)
    with pytest.raises(ValueError, match="cannot give"):
        class_balanced_indices(labels[:3], 4)


def test_random_sampler_draws_k_times_classes_without_replacement():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] + [IGN] * 4)
    index, n_cls = random_indices(labels, 3, IGN, torch.Generator().manual_seed(0))
    assert n_cls == 2 and len(index) == 6 and len(set(index.tolist())) == 6


# ---------------------------------------------------------------- loop references
@pytest.mark.parametrize("group_width", [-1, 4, 10])
@pytest.mark.parametrize("faithful", [False, True])
def test_gskd_matches_loop(group_width, faithful):
    s, t = _features(1)
    labels = _labels()
    correct = torch.ones_like(labels, dtype=torch.bool)
    correct[1, 0, :2] = False  # teacher wrong on two pixels of image 1
    correct[labels == IGN] = False  # the teacher's argmax never equals the ignore label
    got = gskd_loss(
        s, t, labels, 3, group_width, 2.0, IGN, correct, faithful=faithful, generator=torch.Generator().manual_seed(5)
    )
    expected = _loop_gskd(s, t, labels, 3, group_width, 2.0, correct, 5, faithful)
    assert got.item() == pytest.approx(expected, rel=1e-9)


def test_faithful_scramble_and_last_image_differ_from_clean():
    s, t = _features(2)
    labels = _labels()
    kw = dict(k=3, correct=labels != IGN)
    clean = gskd_loss(s, t, labels, generator=torch.Generator().manual_seed(0), **kw)
    faithful = gskd_loss(s, t, labels, faithful=True, generator=torch.Generator().manual_seed(0), **kw)
    assert abs(clean.item() - faithful.item()) > 1e-6
    assert faithful.item() == pytest.approx(_loop_gskd(s, t, labels, 3, -1, 1.0, labels != IGN, 0, True), rel=1e-9)


def test_descriptor_remainder_conventions():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(5, 5, generator=g).double(), torch.randn(5, 5, generator=g).double()
    perm = torch.rand(5, 5, generator=g).argsort(dim=1)

    def group(cols):
        d_s = [a[i, perm[i, j]].item() for i in range(5) for j in cols]
        d_t = [b[i, perm[i, j]].item() for i in range(5) for j in cols]
        return kl_list(softmax_list(d_t), softmax_list(d_s)) / len(d_s)

    g1, g2, g3 = group([0, 1]), group([2, 3]), group([4])
    assert descriptor_loss(a, b, perm, 2).item() == pytest.approx((g1 + g2 + g3) / 3, rel=1e-9)
    assert descriptor_loss(a, b, perm, 2, faithful=True).item() == pytest.approx((g1 + g2) / 2 + g3, rel=1e-9)
    assert descriptor_loss(b, b, perm, 2).abs().item() < 1e-12  # zero when the two structures agree
    with pytest.raises(ValueError, match="width"):
        descriptor_loss(a, b, perm, 0)


# ---------------------------------------------------------------- module
def _module(**kw) -> GSKDLoss:
    torch.manual_seed(0)
    loss = GSKDLoss(samples_per_class=3, **kw)
    loss.bind(TapInfo(4, 8), TapInfo(3, 8))
    return loss


def _io(seed: int = 0, teacher_right: torch.Tensor | None = None):
    g = torch.Generator().manual_seed(seed)
    labels = _labels()
    onehot = torch.nn.functional.one_hot(labels.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 10  # (2, 3, 4, 4)
    if teacher_right is not None:
        onehot = torch.where(teacher_right[:, None], onehot, onehot.roll(1, dims=1))  # wrong class elsewhere
    s = ParsingOutput(
        embedding=torch.randn(2, 4, 4, 4, generator=g, requires_grad=True), logits=torch.randn(2, 3, 4, 4)
    )
    t = ParsingOutput(embedding=torch.randn(2, 3, 4, 4, generator=g), logits=onehot)
    mask = labels.repeat_interleave(2, 1).repeat_interleave(2, 2)  # nearest resize back to (4, 4) gives labels
    return s, t, ParsingBatch(image=torch.zeros(2, 3, 8, 8), mask=mask)


def test_same_seed_replays_exactly_and_reseed_restarts():
    s, t, batch = _io()
    a, b = _module(seed=3), _module(seed=3)
    b.load_state_dict(a.state_dict())
    first = a(s, t, batch)
    assert b(s, t, batch).item() == first.item()
    assert a(s, t, batch).item() != first.item()  # the generator moved on
    a.reseed(3)
    assert a(s, t, batch).item() == first.item()
    assert _module(seed=3, sampling="random")(s, t, batch).item() != first.item()


def test_module_equals_functional_on_projected_features():
    s, t, batch = _io()
    loss = _module(seed=1, filter_correct=False)
    projected = loss.projector(s.embedding)
    expected = gskd_loss(projected, t.embedding, _labels(), 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss(s, t, batch), expected)


def test_clean_mode_sends_gradient_to_student_and_projector():
    s, t, batch = _io()
    loss = _module(seed=0)
    loss(s, t, batch).backward()
    assert s.embedding.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.projector.parameters())


def test_faithful_mode_gives_no_gradient():
    s, t, batch = _io()
    loss = _module(seed=0, faithful=True)
    value = loss(s, t, batch)
    assert value.item() > 0 and not value.requires_grad
    (value + s.embedding.pow(2).mean()).backward()  # as summed into the total by the Distiller
    assert all(p.grad is None for p in loss.projector.parameters())
    torch.testing.assert_close(s.embedding.grad, 2 * s.embedding.detach() / s.embedding.numel())


def test_teacher_wrong_and_ignore_pixels_are_never_sampled():
    right = torch.ones(2, 4, 4, dtype=torch.bool)
    right[:, :, 2:] = False  # the teacher is wrong on the right half
    s, t, batch = _io(teacher_right=right)
    t.embedding[:, :, :, 2:] = float("nan")  # poison every pixel that must not be read
    t.embedding[_labels()[:, None].expand(-1, 3, -1, -1) == IGN] = float("nan")
    for _ in range(5):
        assert torch.isfinite(_module(seed=None)(s, t, batch))
    assert not torch.isfinite(_module(seed=0, filter_correct=False)(s, t, batch))


def test_gradcheck_clean_mode():
    s, t = _features(4, c=2)
    s = s[:1].requires_grad_()
    labels = _labels()[:1]
    assert torch.autograd.gradcheck(
        lambda x: gskd_loss(x, t[:1], labels, 3, temperature=2.0, generator=torch.Generator().manual_seed(0)), (s,)
    )


def test_errors_are_clear():
    s, t = _features()
    with pytest.raises(ValueError, match="equal shape"):
        gskd_loss(s, t[:, :2], _labels())
    with pytest.raises(ValueError, match="labels must be"):
        gskd_loss(s, t, _labels()[:, :2])
    with pytest.raises(ValueError, match="group_width"):
        GSKDLoss(group_width=0)
    with pytest.raises(ValueError, match="faithful"):
        GSKDLoss(sampling="random", faithful=True)
    few = torch.full((2, 4, 4), IGN)
    few[:, 0, 0] = 1
    assert gskd_loss(s.requires_grad_(), t, few).item() == 0.0  # nothing to sample: zero, graph kept
