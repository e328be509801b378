"""Procedural people in the real on-disk formats of LIP, MPII, CrowdPose, VOC2007 and COCO (tests, demos, CI)."""

from __future__ import annotations

from .generate import render_scene, synthesize, write_gt_mat
from .scene import Person, Scene, make_scene
from .writers import FORMAT_DIRS, FORMATS

__all__ = ["FORMATS", "FORMAT_DIRS", "Person", "Scene", "make_scene", "render_scene", "synthesize", "write_gt_mat"]
