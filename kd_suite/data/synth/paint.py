"""Rasterise a person's shapes into label/part maps and paint the RGB picture from them."""

from __future__ import annotations

import cv2
import numpy as np

from .outfit import FACE, Material, Outfit
from .render import PersonRender, person_shapes
from .skeleton import Body

_SHIFT = 4  # sub-pixel bits for cv2.fillPoly


def _poly(points: np.ndarray, offset: np.ndarray) -> np.ndarray:
    return np.round((points - offset) * (1 << _SHIFT)).astype(np.int32)


def draw_person(
    body: Body, outfit: Outfit, materials: dict[int, Material], size: tuple[int, int], rng: np.random.Generator
) -> PersonRender | None:
    """Render ``body`` wearing ``outfit``; ``None`` when it lies entirely outside an image of ``size`` (h, w)."""
    shapes, info = person_shapes(body, outfit)
    allpts = body.to_image(np.concatenate([pts for _, _, pts in shapes]))  # one transform for every outline
    outlines = np.split(allpts, np.cumsum([len(pts) for _, _, pts in shapes])[:-1])
    h, w = size
    x0, y0 = (np.floor(allpts.min(0)) - 1).astype(int).clip(0, None)
    x1, y1 = np.ceil(allpts.max(0)).astype(int) + 2
    x1, y1 = min(x1, w), min(y1, h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    off = np.array([x0, y0], np.float64)
    labels = np.zeros((y1 - y0, x1 - x0), np.uint8)
    parts = np.zeros_like(labels)
    for (lip, pid, _), pts in zip(shapes, outlines):
        poly = [_poly(pts, off)]
        cv2.fillPoly(labels, poly, int(lip), cv2.LINE_8, _SHIFT)
        cv2.fillPoly(parts, poly, int(pid), cv2.LINE_8, _SHIFT)
    if not labels.any():
        return None
    rgb = _paint(labels, parts, materials, body.height, rng)
    if info["details"] is not None:
        _face_details(rgb, labels, body, info["details"], off, info["glasses"])
    head = body.to_image(info["head"])
    head_box = (*head.min(0), *head.max(0))
    outline_box = tuple(float(v) for v in (*allpts.min(0), *allpts.max(0)))
    return PersonRender(int(x0), int(y0), labels, rgb, tuple(float(v) for v in head_box), {"outline_box": outline_box})


def _paint(
    labels: np.ndarray, parts: np.ndarray, materials: dict[int, Material], height: float, rng: np.random.Generator
) -> np.ndarray:
    """Fill each class with its material, then shade: darker towards part edges, a soft light gradient."""
    h, w = labels.shape
    rgb = np.zeros((h, w, 3), np.float32)
    for lip in np.unique(labels):
        if lip == 0:
            continue
        ys, xs = np.nonzero(labels == lip)
        rgb[ys, xs] = materials[int(lip)].paint(xs.astype(np.float32), ys.astype(np.float32), rng)
    edge = np.zeros((h, w), bool)
    edge[1:] |= parts[1:] != parts[:-1]
    edge[:, 1:] |= parts[:, 1:] != parts[:, :-1]
    dist = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, 3)  # (h, w) px to the nearest part edge
    depth = max(1.5, 0.012 * height)
    shade = 0.62 + 0.38 * np.clip(dist / depth, 0, 1) ** 0.7
    light = rng.uniform(-1, 1, 2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    shade *= 1.0 + 0.12 * (light[0] * (xx / max(w, 1) - 0.5) + light[1] * (yy / max(h, 1) - 0.5))
    return np.clip(rgb * shade[:, :, None], 0, 255).astype(np.uint8)


def _face_details(rgb: np.ndarray, labels: np.ndarray, body: Body, d: dict, off: np.ndarray, glasses: bool) -> None:
    """Eyes, brows and mouth painted on face pixels only (labels unchanged: they are part of the face)."""
    scale = body.height
    face = labels == FACE
    layer = rgb.copy()
    dark = (35, 28, 25)
    r_eye = max(1, round(0.007 * scale))
    if not glasses:
        for e in d["eyes"]:
            c = body.to_image(e[None])[0] - off
            cv2.circle(layer, (round(c[0]), round(c[1])), r_eye, dark, -1, cv2.LINE_AA)
            if scale > 120:
                brow = body.to_image(np.stack([e - d["side"] * 0.012, e + d["side"] * 0.012]) + d["axis"] * 0.018)
                brow -= off
                cv2.line(layer, tuple(np.round(brow[0]).astype(int)), tuple(np.round(brow[1]).astype(int)), dark, 1)
    m = d["mouth"]
    mouth = body.to_image(np.stack([m - d["side"] * 0.014, m + d["side"] * 0.014])) - off
    thick = max(1, round(0.005 * scale))
    cv2.line(layer, tuple(np.round(mouth[0]).astype(int)), tuple(np.round(mouth[1]).astype(int)), (150, 60, 60), thick)
    rgb[face] = layer[face]
