"""MPII-16 skeleton of a synthetic person: proportions, random poses and forward kinematics.

Local body frame: units of body height, pelvis at the origin, y down, +x towards the person's **left** (so a person
facing the camera has their left on the image right). :meth:`Body.to_image` mirrors x for people seen from the back,
rotates, scales and places the body; left/right labels therefore always follow the true body side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# joint indices (MPII order)
R_ANK, R_KNE, R_HIP, L_HIP, L_KNE, L_ANK, PELVIS, THORAX, NECK, HEAD, R_WRI, R_ELB, R_SHO, L_SHO, L_ELB, L_WRI = range(
    16
)
#: (shoulder, elbow, wrist) and (hip, knee, ankle) per side; side sign +1 = left
ARMS = {1: (L_SHO, L_ELB, L_WRI), -1: (R_SHO, R_ELB, R_WRI)}
LEGS = {1: (L_HIP, L_KNE, L_ANK), -1: (R_HIP, R_KNE, R_ANK)}

TORSO, NECK_LEN, HEAD_LEN = 0.30, 0.05, 0.13
UPPER_ARM, FOREARM, THIGH, SHIN = 0.165, 0.145, 0.235, 0.235
SHOULDER_HALF, HIP_HALF = 0.105, 0.075
#: from the pelvis up to the head top, and down to the ankles, in body heights
ABOVE_PELVIS, BELOW_PELVIS = TORSO + NECK_LEN + HEAD_LEN, THIGH + SHIN


def rotate(v: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate vectors (..., 2) counter-clockwise as seen on screen (y axis pointing down)."""
    c, s = np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))
    return v @ np.array([[c, -s], [s, c]])


@dataclass
class Build:
    """Body shape factors (1 = average)."""

    shoulders: float
    hips: float
    thickness: float
    head: float


@dataclass
class Pose:
    """Joint angles in degrees. Limb angles are measured from hanging straight down, positive = away from the body."""

    kind: str  # "stand" | "action" | "lying"
    lean: float
    neck: float
    head: float
    arm: dict[int, float]  # side → shoulder abduction
    elbow: dict[int, float]  # side → elbow bend (either direction)
    thigh: dict[int, float]  # side → hip abduction
    knee: dict[int, float]  # side → knee bend (either direction)
    limb_scale: dict[str, float]  # foreshortening per limb, "l_arm", "r_leg", ...


@dataclass
class Body:
    """A posed person: local joints plus its placement in the image.

    Attributes:
        local: (16, 2) joints in the local body frame.
        pose, build: what generated it.
        origin: pelvis position in image pixels (x, y).
        height: body height in pixels.
        angle: in-plane rotation in degrees (counter-clockwise on screen).
        facing: ``"front"`` (facing the camera) or ``"back"``.
    """

    local: np.ndarray
    pose: Pose
    build: Build
    origin: np.ndarray
    height: float
    angle: float
    facing: str

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) local points to image pixels."""
        p = np.asarray(points, np.float64) * np.array([1.0 if self.facing == "front" else -1.0, 1.0])
        return rotate(p, self.angle) * self.height + self.origin

    @property
    def joints(self) -> np.ndarray:
        """(16, 2) joints in image pixels (MPII order)."""
        return self.to_image(self.local)

    @property
    def lying(self) -> bool:
        return self.pose.kind == "lying"


def sample_build(rng: np.random.Generator) -> Build:
    """Random body shape factors."""
    return Build(
        shoulders=rng.uniform(0.82, 1.12),
        hips=rng.uniform(0.85, 1.15),
        thickness=rng.uniform(0.85, 1.2),
        head=rng.uniform(0.92, 1.08),
    )


def sample_pose(rng: np.random.Generator, kind: str) -> Pose:
    """Random joint angles for a standing, action (dance/jump/reach) or lying person."""
    sides = (1, -1)
    if kind == "stand":
        arm = {s: rng.uniform(40, 170) if rng.random() < 0.2 else rng.uniform(3, 35) for s in sides}
        elbow = {s: rng.uniform(-40, 70) for s in sides}
        thigh = {s: rng.uniform(1, 12) for s in sides}
        knee = {s: rng.uniform(-8, 8) for s in sides}
        lean, spread = rng.normal(0, 3), 1.0
    else:
        arm = {s: rng.uniform(-15, 175) for s in sides}
        elbow = {s: rng.uniform(-130, 130) for s in sides}
        thigh = {s: rng.uniform(-5, 50) for s in sides}
        knee = {s: rng.uniform(-100, 100) * (rng.random() < 0.7) for s in sides}
        lean, spread = rng.normal(0, 9), 0.8
    scale = {name: rng.uniform(spread, 1.0) for name in ("l_arm", "r_arm", "l_leg", "r_leg")}
    return Pose(kind, lean, rng.normal(0, 5), rng.normal(0, 8), arm, elbow, thigh, knee, scale)


def forward_kinematics(pose: Pose, build: Build) -> np.ndarray:
    """(16, 2) local joint positions of ``pose`` for ``build``."""
    j = np.zeros((16, 2))
    up = rotate(np.array([0.0, -1.0]), pose.lean)  # torso axis
    side = rotate(np.array([1.0, 0.0]), pose.lean)  # towards the person's left
    j[THORAX] = j[PELVIS] + up * TORSO
    neck_dir = rotate(up, pose.neck)
    j[NECK] = j[THORAX] + neck_dir * NECK_LEN
    j[HEAD] = j[NECK] + rotate(neck_dir, pose.head) * HEAD_LEN * build.head
    hip_side = rotate(np.array([1.0, 0.0]), 0.3 * pose.lean)
    for s, (sho, elb, wri) in ARMS.items():
        k = pose.limb_scale["l_arm" if s > 0 else "r_arm"]
        j[sho] = j[THORAX] + side * s * SHOULDER_HALF * build.shoulders - up * 0.015
        a = np.deg2rad(pose.arm[s])
        upper = rotate(np.array([s * np.sin(a), np.cos(a)]), pose.lean)
        j[elb] = j[sho] + upper * UPPER_ARM * k
        j[wri] = j[elb] + rotate(upper, s * pose.elbow[s]) * FOREARM * k
    for s, (hip, kne, ank) in LEGS.items():
        k = pose.limb_scale["l_leg" if s > 0 else "r_leg"]
        j[hip] = j[PELVIS] + hip_side * s * HIP_HALF * build.hips
        a = np.deg2rad(pose.thigh[s])
        thigh = rotate(np.array([s * np.sin(a), np.cos(a)]), 0.3 * pose.lean)
        j[kne] = j[hip] + thigh * THIGH * k
        j[ank] = j[kne] + rotate(thigh, s * pose.knee[s]) * SHIN * k
    return j


def sample_body(
    rng: np.random.Generator, kind: str, origin: np.ndarray, height: float, facing: str | None = None
) -> Body:
    """A random person of ``kind`` with its pelvis at ``origin`` and ``height`` pixels tall."""
    build, pose = sample_build(rng), sample_pose(rng, kind)
    if kind == "lying":
        angle = float(rng.choice([-1, 1]) * rng.uniform(72, 108))
    else:
        angle = float(rng.normal(0, 4 if kind == "stand" else 10))
    facing = facing or ("front" if rng.random() < 0.72 else "back")
    return Body(forward_kinematics(pose, build), pose, build, np.asarray(origin, np.float64), height, angle, facing)
