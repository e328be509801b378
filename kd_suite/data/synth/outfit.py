"""What a synthetic person wears: outfit choices and the textured material of each LIP class."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

# LIP ids
HAT, HAIR, GLOVE, GLASSES, UPPER, DRESS, COAT, SOCKS, PANTS, JUMPSUIT, SCARF, SKIRT, FACE = range(1, 14)
ARM_ID = {1: 14, -1: 15}  # left, right
LEG_ID = {1: 16, -1: 17}
SHOE_ID = {1: 18, -1: 19}

SKIN_TONES = ((255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 96), (160, 102, 68), (110, 70, 45))
HAIR_TONES = ((25, 20, 18), (60, 40, 28), (110, 72, 40), (190, 150, 90), (150, 60, 30), (170, 170, 170))


@dataclass
class Outfit:
    """Clothing choices of one person (lengths in body heights along the legs)."""

    top: str  # "upper" | "coat" | "dress" | "jumpsuit"
    bottom: str  # "pants" | "shorts" | "skirt" | "none"
    sleeves: str  # "none" | "short" | "long"
    hair: str  # "short" | "long" | "bald"
    hat: bool
    glasses: bool
    scarf: bool
    gloves: bool
    socks: bool
    skirt_len: float
    short_len: float


@dataclass
class Material:
    """A fill: base colour plus an optional pattern (stripes, checks or noise) in a second colour."""

    base: np.ndarray
    alt: np.ndarray
    pattern: str = "plain"
    period: float = 6.0
    angle: float = 0.0
    noise: float = 4.0

    def paint(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, 3) float colours at pixel coordinates ``x``, ``y`` (N,)."""
        if self.pattern == "stripes":
            t = x * np.cos(self.angle) + y * np.sin(self.angle)
            out = np.where((np.sin(2 * np.pi * t / self.period) > 0)[:, None], self.base, self.alt)
        elif self.pattern == "checks":
            out = np.where((((x // self.period) + (y // self.period)) % 2 == 0)[:, None], self.base, self.alt)
        else:
            out = np.broadcast_to(self.base, (len(x), 3))
        amp = self.noise * (3.0 if self.pattern == "noise" else 1.0)
        return out + rng.normal(0, amp, (len(x), 1)) * np.array([1.0, 0.95, 0.9])


def random_colour(
    rng: np.random.Generator, sat: tuple[float, float] = (0.25, 0.9), val: tuple[float, float] = (0.2, 0.95)
) -> np.ndarray:
    """Random RGB (0..255 floats) with saturation and value drawn from the given ranges."""
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return np.array([r, g, b]) * 255.0


def sample_outfit(rng: np.random.Generator) -> Outfit:
    """Random clothes; dresses and jumpsuits come without a separate bottom."""
    top = str(rng.choice(["upper", "coat", "dress", "jumpsuit"], p=[0.55, 0.15, 0.2, 0.1]))
    bottom = (
        "none" if top in ("dress", "jumpsuit") else str(rng.choice(["pants", "shorts", "skirt"], p=[0.5, 0.2, 0.3]))
    )
    sleeves = {
        "upper": str(rng.choice(["none", "short", "long"], p=[0.2, 0.45, 0.35])),
        "coat": "long",
        "dress": str(rng.choice(["none", "short"])),
        "jumpsuit": str(rng.choice(["short", "long"])),
    }[top]
    return Outfit(
        top=top,
        bottom=bottom,
        sleeves=sleeves,
        hair=str(rng.choice(["short", "long", "bald"], p=[0.5, 0.44, 0.06])),
        hat=rng.random() < 0.2,
        glasses=rng.random() < 0.15,
        scarf=rng.random() < 0.12,
        gloves=rng.random() < 0.08,
        socks=rng.random() < 0.35,
        skirt_len=rng.uniform(0.12, 0.36),
        short_len=rng.uniform(0.1, 0.2),
    )


def sample_materials(rng: np.random.Generator, outfit: Outfit, plain: bool = False) -> dict[int, Material]:
    """One material per LIP id of this person (``plain=True``: clothes without stripes, checks or noise)."""
    skin = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))], float) * rng.uniform(0.92, 1.05)
    hair = np.array(HAIR_TONES[rng.integers(len(HAIR_TONES))], float)

    def cloth() -> Material:
        base = random_colour(rng)
        alt = random_colour(rng) if rng.random() < 0.5 else base * rng.uniform(0.45, 0.75)
        pattern = str(rng.choice(["plain", "stripes", "checks", "noise"], p=[0.4, 0.3, 0.12, 0.18]))
        if plain:
            pattern = "plain"
        return Material(base, alt, pattern, rng.uniform(3, 9), rng.uniform(0, np.pi), rng.uniform(2, 6))

    mats = {k: Material(skin, skin * 0.9, noise=3.0) for k in (FACE, 14, 15, 16, 17)}
    mats[HAIR] = Material(hair, hair * 0.7 + 10, "stripes", rng.uniform(2, 3.5), rng.uniform(1.2, 1.9), 3.0)
    for k in (HAT, GLOVE, UPPER, DRESS, COAT, SOCKS, PANTS, JUMPSUIT, SCARF, SKIRT):
        mats[k] = cloth()
    if rng.random() < 0.5:  # jeans-like trousers are common
        blue = np.array([50, 70, 120]) * rng.uniform(0.7, 1.3)
        mats[PANTS] = Material(blue, blue * 0.8, "noise", noise=5.0)
    mats[GLASSES] = Material(np.array([20.0, 20, 25]), np.array([60.0, 60, 70]), noise=2.0)
    shoe = random_colour(rng, val=(0.1, 0.9)) if rng.random() < 0.5 else np.full(3, rng.choice([25.0, 235.0]))
    mats[18] = mats[19] = Material(shoe, shoe * 0.7, noise=3.0)
    return mats
