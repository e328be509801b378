"""A synthetic scene: cluttered background, 0–4 people in depth order, foreground occluders, and per-person facts."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .outfit import random_colour, sample_materials, sample_outfit
from .paint import draw_person
from .render import PersonRender
from .skeleton import ABOVE_PELVIS, BELOW_PELVIS, Body, sample_body

OCCLUDER = 255  # person-index value of foreground objects


@dataclass
class Person:
    """Ground truth of one person in a scene.

    Attributes:
        body: the posed skeleton (``body.joints``: (16, 2) MPII joints in image pixels, 0-based).
        index: 1-based value of this person in :attr:`Scene.person_map`.
        in_image: (16,) joint lies inside the image.
        occluded: (16,) joint is inside the image but covered by another person or object.
        full_box: (x1, y1, x2, y2) inclusive pixel extent of the whole body before occlusion (may exceed the image).
        box: inclusive pixel extent of the visible pixels, or None when nothing is visible.
        area: visible pixel count; ``full_area`` before occlusion (inside the image).
        head_box: (x1, y1, x2, y2) of the head outline.
    """

    body: Body
    index: int
    in_image: np.ndarray
    occluded: np.ndarray
    full_box: tuple[float, float, float, float]
    box: tuple[int, int, int, int] | None
    area: int
    full_area: int
    head_box: tuple[float, float, float, float]

    @property
    def lying(self) -> bool:
        return self.body.lying

    @property
    def visible_fraction(self) -> float:
        return self.area / max(1, self.full_area)


@dataclass
class Scene:
    """Image, LIP label map (0 = background), person map (0 = none, i = person i, 255 = occluder) and people."""

    image: np.ndarray
    labels: np.ndarray
    person_map: np.ndarray
    people: list[Person]


def background(rng: np.random.Generator, h: int, w: int, clutter: bool = True) -> np.ndarray:
    """Wall/floor gradients, floor tiles and random clutter shapes (``clutter=False``: the gradients only)."""
    horizon = int(h * rng.uniform(0.3, 0.75))
    img = np.empty((h, w, 3), np.float32)
    top, mid, floor_a, floor_b = (random_colour(rng, (0.05, 0.6), (0.3, 0.95)) for _ in range(4))
    t = np.linspace(0, 1, horizon)[:, None, None]
    img[:horizon] = top * (1 - t) + mid * t
    t = np.linspace(0, 1, h - horizon)[:, None, None]
    img[horizon:] = floor_a * (1 - t) + floor_b * t
    if not clutter:
        return img
    if rng.random() < 0.4:  # floor tiles
        step = rng.uniform(8, 30)
        for k in range(1, int((h - horizon) / step) + 1):
            y = horizon + int(k * step * (1 + k * 0.1))
            cv2.line(img, (0, y), (w, y), tuple(float(v) for v in floor_a * 0.75), 1)
    for _ in range(int(rng.integers(4, 16))):
        colour = tuple(float(v) for v in random_colour(rng))
        kind = rng.integers(4)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        a, b = int(rng.integers(4, max(5, w // 3))), int(rng.integers(4, max(5, h // 3)))
        if kind == 0:
            cv2.rectangle(img, (cx - a, cy - b), (cx + a, cy + b), colour, -1 if rng.random() < 0.7 else 2)
        elif kind == 1:
            cv2.ellipse(img, (cx, cy), (a // 2 + 1, b // 2 + 1), float(rng.uniform(0, 180)), 0, 360, colour, -1)
        elif kind == 2:
            pts = rng.integers(-a, a + 1, (int(rng.integers(3, 6)), 2)) + np.array([cx, cy])
            cv2.fillPoly(img, [pts.astype(np.int32)], colour)
        else:
            cv2.line(img, (cx, cy), (cx + a, cy - b), colour, int(rng.integers(1, 5)))
    return img


def _place(
    rng: np.random.Generator, n: int, h: int, w: int, kinds: tuple[float, float, float] = (0.5, 0.25, 0.25)
) -> list[tuple[str, np.ndarray, float]]:
    """(kind, pelvis position, height in px) for ``n`` people; crowds are sometimes tightly clustered.

    ``kinds`` are the probabilities of a standing, an action and a lying pose.
    """
    clustered = n >= 2 and rng.random() < 0.45
    centre = rng.uniform(0.3, 0.7) * w
    out = []
    for i in range(n):
        kind = str(rng.choice(["stand", "action", "lying"], p=list(kinds)))
        size = rng.uniform(0.6, 0.95) if n == 1 else rng.uniform(0.4, 0.85)
        x = (
            centre + rng.normal(0, rng.uniform(0.04, 0.12) * w)
            if clustered
            else (i + 0.5) / n * w + rng.normal(0, 0.07 * w)
        )
        if kind == "lying":
            height = size * w * 0.85
            pos = np.array([x, rng.uniform(0.5, 0.88) * h])
        else:
            height = size * h
            feet = rng.uniform(0.78, 1.04) * h
            pos = np.array([x, feet - BELOW_PELVIS * height - 0.02 * height])
            pos[1] = max(pos[1], ABOVE_PELVIS * height * 0.9)
        out.append((kind, pos, height))
    return out


def _occluders(rng: np.random.Generator, img: np.ndarray, pmap: np.ndarray, labels: np.ndarray) -> None:
    """Foreground objects (crates, poles, bushes) drawn over everything."""
    h, w = pmap.shape
    for _ in range(int(rng.integers(1, 3))):
        mask = np.zeros((h, w), np.uint8)
        kind = rng.integers(3)
        if kind == 0:
            x, bw, bh = int(rng.uniform(0, w)), int(rng.uniform(0.1, 0.35) * w), int(rng.uniform(0.12, 0.35) * h)
            cv2.rectangle(mask, (x - bw // 2, h - bh), (x + bw // 2, h), 1, -1)
        elif kind == 1:
            x, bw = int(rng.uniform(0, w)), max(2, int(rng.uniform(0.02, 0.06) * w))
            cv2.rectangle(mask, (x, 0), (x + bw, h), 1, -1)
        else:
            c = (int(rng.uniform(0, w)), int(rng.uniform(0.6, 1.0) * h))
            cv2.ellipse(mask, c, (int(rng.uniform(0.08, 0.2) * w), int(rng.uniform(0.06, 0.15) * h)), 0, 0, 360, 1, -1)
        on = mask.astype(bool)
        colour = random_colour(rng)
        shade = 0.75 + 0.25 * np.linspace(0, 1, w)[None, :]
        img[on] = (colour[None, None] * shade[:, :, None] * np.ones((h, 1, 1)))[on]
        pmap[on], labels[on] = OCCLUDER, 0


def make_scene(rng: np.random.Generator, size: tuple[int, int], num_people: int, easy: bool = False) -> Scene:
    """Render a scene of ``size`` (h, w) with ``num_people`` people (0 gives a background-only picture).

    ``easy=True`` draws upright people (standing or in action) in plain clothes on a clutter-free background with no
    foreground occluders: the same label protocol, learnable within minutes on a CPU.
    """
    h, w = size
    img = background(rng, h, w, clutter=not easy)
    labels = np.zeros((h, w), np.uint8)
    pmap = np.zeros((h, w), np.uint8)
    drawn = []
    for kind, pos, height in _place(rng, num_people, h, w, (0.7, 0.3, 0.0) if easy else (0.5, 0.25, 0.25)):
        body = sample_body(rng, kind, pos, height)
        outfit = sample_outfit(rng)
        person = draw_person(body, outfit, sample_materials(rng, outfit, plain=easy), (h, w), rng)
        if person is not None:
            drawn.append((body, person))
    drawn.sort(key=lambda bp: bp[0].joints[:, 1].max())  # lower feet = nearer the camera = drawn later
    shadow = np.zeros((h, w), np.float32)  # contact shadows under standing people, blurred once
    for body, _ in drawn:
        if not body.lying:
            feet = body.joints[[0, 5]].mean(0)
            axes = (max(2, int(0.16 * body.height)), max(1, int(0.025 * body.height)))
            cv2.ellipse(shadow, (int(feet[0]), int(feet[1] + 0.03 * body.height)), axes, 0, 0, 360, 1.0, -1)
    if shadow.any():
        img *= 1 - 0.35 * cv2.GaussianBlur(shadow, (0, 0), max(1.0, 0.004 * h))[:, :, None]
    full_areas = []
    for i, (_, p) in enumerate(drawn, start=1):
        ph, pw = p.labels.shape
        on = p.labels > 0
        region = (slice(p.y0, p.y0 + ph), slice(p.x0, p.x0 + pw))
        img[region][on] = p.rgb[on]
        labels[region][on] = p.labels[on]
        pmap[region][on] = i
        full_areas.append(int(on.sum()))
    if drawn and not easy and rng.random() < 0.25:
        _occluders(rng, img, pmap, labels)
    img = cv2.GaussianBlur(img, (3, 3), rng.uniform(0.3, 0.9))
    img += rng.normal(0, rng.uniform(1.5, 5.0), (h, w, 1)).astype(np.float32)
    img = img * rng.uniform(0.85, 1.15) + rng.uniform(-15, 15)
    image = np.clip(img, 0, 255).astype(np.uint8)
    people = [_facts(body, p, i, pmap, full_areas[i - 1]) for i, (body, p) in enumerate(drawn, start=1)]
    return Scene(image, labels, pmap, people)


def _facts(body: Body, p: PersonRender, index: int, pmap: np.ndarray, full_area: int) -> Person:
    h, w = pmap.shape
    joints = body.joints
    inside = (joints[:, 0] >= 0) & (joints[:, 0] <= w - 1) & (joints[:, 1] >= 0) & (joints[:, 1] <= h - 1)
    occluded = np.zeros(16, bool)
    for k in np.nonzero(inside)[0]:
        owner = pmap[int(round(joints[k, 1])), int(round(joints[k, 0]))]
        occluded[k] = owner not in (0, index)
    ys, xs = np.nonzero(pmap == index)
    box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())) if len(xs) else None
    return Person(body, index, inside, occluded, p.extras["outline_box"], box, len(xs), full_area, p.head_box)
