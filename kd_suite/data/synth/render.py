"""Draw one synthetic person: the LIP-labelled shapes of its body and outfit.

The person is a list of filled polygons in the local body frame (see :mod:`.skeleton`), each carrying a LIP class id
and a part id, in painter's order; :mod:`.paint` rasterises them and paints the picture *from* the label canvas, so
image and label map agree pixel for pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .outfit import (
    ARM_ID,
    COAT,
    DRESS,
    FACE,
    GLASSES,
    GLOVE,
    HAIR,
    HAT,
    JUMPSUIT,
    LEG_ID,
    PANTS,
    SCARF,
    SHOE_ID,
    SKIRT,
    SOCKS,
    UPPER,
    Outfit,
)
from .skeleton import ARMS, HEAD, LEGS, NECK, PELVIS, THORAX, Body


@dataclass
class PersonRender:
    """A drawn person: label/part crops and RGB crop placed at ``(x0, y0)`` in the scene."""

    x0: int
    y0: int
    labels: np.ndarray  # (h, w) uint8 LIP ids, 0 = not this person
    rgb: np.ndarray  # (h, w, 3) uint8
    head_box: tuple[float, float, float, float]
    extras: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ shapes (local)
_ARC = np.linspace(0, np.pi, 7)[:, None]
_UNIT = np.linspace(0, 1, 20)
_ARC_COS, _ARC_SIN = np.cos(_ARC), np.sin(_ARC)


def capsule(p: np.ndarray, q: np.ndarray, r1: float, r2: float) -> np.ndarray:
    """Convex outline of a tapered segment from ``p`` (radius r1) to ``q`` (radius r2) with round ends."""
    d = q - p
    length = float(np.hypot(*d))
    u = d / length if length > 1e-9 else np.array([0.0, 1.0])
    nrm = np.array([-u[1], u[0]])
    arc_q = q + r2 * (_ARC_COS * nrm + _ARC_SIN * u)
    arc_p = p - r1 * (_ARC_COS * nrm + _ARC_SIN * u)
    return np.concatenate([arc_q, arc_p])


def ellipse(c: np.ndarray, a: float, b: float, axis: np.ndarray, t0: float = 0.0, t1: float = 2 * np.pi) -> np.ndarray:
    """Outline of an ellipse with semi-axis ``b`` along unit vector ``axis`` and ``a`` across it (arc t0..t1)."""
    side = np.array([axis[1], -axis[0]])
    t = t0 + (t1 - t0) * _UNIT[:, None]
    return c + a * np.cos(t) * side + b * np.sin(t) * axis


def along(points: list[np.ndarray], distance: float) -> tuple[np.ndarray, np.ndarray]:
    """Point at ``distance`` along a polyline and the direction of its segment there."""
    for p, q in zip(points[:-1], points[1:]):
        seg = float(np.hypot(*(q - p)))
        if distance <= seg or q is points[-1]:
            u = (q - p) / max(seg, 1e-9)
            return p + u * min(distance, seg), u
        distance -= seg
    raise ValueError("empty polyline")


def limb(points: list[np.ndarray], radii: list[float], start: float, stop: float) -> list[np.ndarray]:
    """Capsules covering a polyline from arc length ``start`` to ``stop`` (radii interpolated per joint)."""
    out, pos = [], 0.0
    for (p, q), (r1, r2) in zip(zip(points[:-1], points[1:]), zip(radii[:-1], radii[1:])):
        seg = float(np.hypot(*(q - p)))
        a, b = max(start, pos), min(stop, pos + seg)
        if b > a:
            ta, tb = (a - pos) / max(seg, 1e-9), (b - pos) / max(seg, 1e-9)
            out.append(capsule(p + (q - p) * ta, p + (q - p) * tb, r1 + (r2 - r1) * ta, r1 + (r2 - r1) * tb))
        pos += seg
    return out


# ------------------------------------------------------------------------------------------------ outfit → shapes
def person_shapes(body: Body, outfit: Outfit) -> tuple[list[tuple[int, int, np.ndarray]], dict]:
    """Painter-ordered ``(lip_id, part_id, outline)`` list in the local frame, plus face-detail anchors."""
    j, b, o = body.local, body.build, outfit
    th = b.thickness
    front = body.facing == "front"
    up = (j[THORAX] - j[PELVIS]) / np.hypot(*(j[THORAX] - j[PELVIS]))
    side = np.array([-up[1], up[0]])  # towards the person's left
    head_axis = (j[HEAD] - j[NECK]) / np.hypot(*(j[HEAD] - j[NECK]))
    hc = (j[HEAD] + j[NECK]) / 2
    hl = np.hypot(*(j[HEAD] - j[NECK]))
    shapes: list[tuple[int, int, np.ndarray]] = []
    part = iter(range(1, 255))

    def add(lip: int, outlines: list[np.ndarray] | np.ndarray, pid: int | None = None) -> None:
        pid = next(part) if pid is None else pid
        for outline in outlines if isinstance(outlines, list) else [outlines]:
            shapes.append((lip, pid, outline))

    long_hair = [
        np.array(
            [
                hc + side * 0.058 * b.head + head_axis * 0.03,
                hc - side * 0.058 * b.head + head_axis * 0.03,
                j[NECK] - side * 0.07 - head_axis * 0.07,
                j[NECK] + side * 0.07 - head_axis * 0.07,
            ]
        ),
        ellipse(hc + head_axis * 0.015, 0.06 * b.head, 0.062 * b.head, head_axis, 0, np.pi),
    ]
    if o.hair == "long" and front:
        add(HAIR, long_hair)

    # legs: skin, socks, trousers, shoes
    legs = {s: [j[h], j[k], j[a]] for s, (h, k, a) in LEGS.items()}
    leg_r = [0.05 * th, 0.036 * th, 0.025 * th]
    leg_len = {s: np.hypot(*(p[1] - p[0])) + np.hypot(*(p[2] - p[1])) for s, p in legs.items()}
    cover = {"pants": 1.0, "shorts": o.short_len, "skirt": 0.0, "none": 0.0}[o.bottom]
    trouser = JUMPSUIT if o.top == "jumpsuit" else PANTS
    if o.top == "jumpsuit":
        cover = 1.0
    for s, pts in legs.items():
        add(LEG_ID[s], limb(pts, leg_r, 0.0, leg_len[s] + 0.01))
        if o.socks and cover < 0.8:
            add(SOCKS, limb(pts, [r + 0.004 for r in leg_r], leg_len[s] - 0.06, leg_len[s] + 0.012))
        if cover > 0:
            add(trouser, limb(pts, [r + 0.01 for r in leg_r], 0.0, cover * leg_len[s] + (0.015 if cover >= 1 else 0)))
        ankle, shin = along(pts, leg_len[s])
        foot = ankle + shin * 0.028 + np.array([-shin[1], shin[0]]) * s * 0.006
        add(SHOE_ID[s], ellipse(foot, 0.036 * th, 0.026 * th, shin))
    if cover > 0:
        band = [
            j[PELVIS] + up * 0.05 + side * 0.085 * b.hips,
            j[PELVIS] + up * 0.05 - side * 0.085 * b.hips,
            along(legs[-1], 0.07)[0] - side * 0.045,
            j[PELVIS] - up * 0.05,
            along(legs[1], 0.07)[0] + side * 0.045,
        ]
        add(trouser, np.array(band))

    # neck, skirts and coat tails, torso
    add(FACE, capsule(j[THORAX] - up * 0.01, j[NECK] + up * 0.01, 0.027 * th, 0.025 * th))
    waist = {s: j[PELVIS] + up * 0.11 + side * s * 0.072 * b.hips * th for s in (1, -1)}
    hip_out = {s: j[PELVIS] + side * s * 0.105 * b.hips * th - up * 0.01 for s in (1, -1)}

    down = sum(along(legs[s], 0.1)[0] - legs[s][0] for s in (1, -1))  # mean thigh direction
    down = down / max(float(np.hypot(*down)), 1e-9)
    across = np.array([-down[1], down[0]]) * np.sign(np.dot([-down[1], down[0]], side) or 1.0)  # towards the left

    def flare(length: float, out: float, top: float) -> np.ndarray:
        """A-line garment from the waist to ``length`` down the legs, ``out`` wider than the hips at the hem."""
        hem = j[PELVIS] + down * (length + 0.03)
        lo = {s: hem + across * s * (0.09 * b.hips * th + out) for s in (1, -1)}
        return np.array([waist[1] - up * top, hip_out[1], lo[1], lo[-1], hip_out[-1], waist[-1] - up * top])

    if o.bottom == "skirt":
        add(SKIRT, flare(o.skirt_len, 0.02 + o.skirt_len * 0.15, 0.05))
    if o.top == "dress":
        add(DRESS, flare(o.skirt_len + 0.05, 0.03 + o.skirt_len * 0.18, 0.0))
    if o.top == "coat":
        add(COAT, flare(0.12, 0.02, 0.0))
    sho = {s: j[ARMS[s][0]] for s in (1, -1)}
    torso = []
    for s in (1, -1):
        torso_side = [
            j[THORAX] + side * s * 0.035 + up * 0.01,
            sho[s] + up * 0.022,
            sho[s] + side * s * 0.028 * th,
            sho[s] - up * 0.075 + side * s * 0.01,
            waist[s],
            hip_out[s],
            j[PELVIS] - up * 0.035 + side * s * 0.04,
        ]
        torso.append(torso_side if s == 1 else torso_side[::-1])
    top_id = {"upper": UPPER, "coat": COAT, "dress": DRESS, "jumpsuit": JUMPSUIT}[o.top]
    add(top_id, np.array(torso[0] + torso[1]))
    if o.top == "coat" and front:
        add(
            UPPER,
            np.array(
                [
                    j[THORAX] + up * 0.008 + side * 0.03,
                    j[THORAX] + up * 0.008 - side * 0.03,
                    j[PELVIS] - up * 0.06 - side * 0.022,
                    j[PELVIS] - up * 0.06 + side * 0.022,
                ]
            ),
        )
    if o.scarf:
        knot = j[THORAX] + up * 0.005
        add(
            SCARF,
            [
                capsule(knot - side * 0.05, knot + side * 0.05, 0.022, 0.022),
                capsule(knot + side * 0.025, knot + side * 0.035 - up * 0.14, 0.018, 0.016),
            ],
        )

    # arms: skin (hand included), sleeves, gloves
    arm_r = [0.033 * th, 0.026 * th, 0.02 * th]
    for s, (a, e, w) in ARMS.items():
        pts = [j[a], j[e], j[w]]
        length = np.hypot(*(j[e] - j[a])) + np.hypot(*(j[w] - j[e]))
        _, fdir = along(pts, length)
        hand = ellipse(j[w] + fdir * 0.03, 0.021 * th, 0.032, fdir)
        add(ARM_ID[s], limb(pts, arm_r, 0.0, length) + ([] if o.gloves else [hand]))
        if o.gloves:
            add(GLOVE, hand)
        reach = {"none": 0.0, "short": 0.5 * np.hypot(*(j[e] - j[a])), "long": length - 0.01}[o.sleeves]
        if reach > 0:
            add(top_id, limb(pts, [r + 0.008 for r in arm_r], 0.0, reach) + [capsule(j[a], j[a], 0.04 * th, 0.04 * th)])

    # head
    head = ellipse(hc, 0.05 * b.head, 0.5 * hl + 0.002, head_axis)
    cap = ellipse(hc + head_axis * 0.012, 0.056 * b.head, 0.5 * hl + 0.006, head_axis, 0, np.pi)
    add(FACE if front else HAIR, head)
    if o.hair != "bald" or not front:
        add(HAIR, cap)
    if o.hair == "long" and not front:
        add(HAIR, long_hair)
    eye_y = -0.1 * hl
    eyes = [hc + head_axis * eye_y + side * s * 0.019 * b.head for s in (1, -1)]
    if o.glasses and front:
        add(GLASSES, [ellipse(e, 0.016, 0.011, head_axis) for e in eyes] + [capsule(eyes[0], eyes[1], 0.004, 0.004)])
    if o.hat:
        add(
            HAT,
            [
                ellipse(hc + head_axis * 0.03, 0.058 * b.head, 0.5 * hl, head_axis, 0, np.pi),
                capsule(hc + head_axis * 0.03 - side * 0.075, hc + head_axis * 0.03 + side * 0.075, 0.008, 0.008),
            ],
        )
    details = {"eyes": eyes, "mouth": hc - head_axis * 0.31 * hl, "axis": head_axis, "side": side, "hl": hl}
    return shapes, {"head": head, "details": details if front else None, "glasses": o.glasses}
