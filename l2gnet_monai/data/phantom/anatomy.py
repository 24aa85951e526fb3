# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""One case's anatomy: the random parameters every structure depends on, and the helpers that draw and paint.

:class:`AnatomyBase` samples the body, the organs' intensities, the spine, the aorta and the pancreas (with the
duodenum around its head) in millimetres, before anything depends on the grid. The structures themselves are
painted by :class:`~l2gnet_monai.data.phantom.torso.Torso` (unlabelled context) and
:class:`~l2gnet_monai.data.phantom.organs.Organs` (the labelled organs), which extend it.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np

from l2gnet_monai.data.phantom.canvas import Canvas
from l2gnet_monai.data.phantom.geometry import Box, Tube
from l2gnet_monai.data.phantom.spec import PHANTOM_HU

__all__ = ["AnatomyBase"]


class AnatomyBase:
    """Samples one case's anatomy (all random draws are independent of the grid); the painters extend it."""

    def __init__(self, rng: np.random.Generator, canvas: Canvas) -> None:
        self.rng = rng
        self.cv = canvas
        self.grid = canvas.grid

    # -- drawing and painting helpers --------------------------------------------------------
    def u(self, lo: float, hi: float) -> float:
        """A uniform draw in ``[lo, hi)``."""
        return float(self.rng.uniform(lo, hi))

    def pos(self, x: float, y: float, z: float, jitter: float = 5.0) -> np.ndarray:
        """A nominal position scaled to this body's cavity, with Gaussian jitter (mm)."""
        j = self.rng.normal(0.0, jitter, size=3) * (1.0, 1.0, 1.5)
        return np.array([x * self.sxc + j[0], y * self.syc + j[1], z + j[2]])

    def rel(self, x: float, y: float, z: float, jitter: float = 4.0) -> np.ndarray:
        """A position relative to the aorta's anterior surface at the pancreas level, with jitter (mm)."""
        j = self.rng.normal(0.0, jitter, size=3)
        return np.array(
            [self.ax + x * self.sxc + j[0], self.ay - self.ar + y * self.syc + j[1], self.z_panc + z + j[2]]
        )

    def size(self, a: float, b: float, c: float, var: float = 0.12) -> np.ndarray:
        """Nominal semi-axes scaled to this body, each with its own relative jitter."""
        return np.array([a, b, c]) * self.organ_scale * self.rng.uniform(1.0 - var, 1.0 + var, size=3)

    def angles(self, yaw_deg: float, yaw_var: float = 12.0, tilt_var: float = 8.0) -> tuple[float, float, float]:
        """Rotation angles (radians): in-plane ``yaw_deg`` +- ``yaw_var``, two tilts of +- ``tilt_var`` degrees."""
        yaw = math.radians(yaw_deg + self.rng.uniform(-yaw_var, yaw_var))
        tilts = np.radians(self.rng.uniform(-tilt_var, tilt_var, size=2))
        return yaw, float(tilts[0]), float(tilts[1])

    def content(self, box: Box, kind: str) -> Union[float, np.ndarray]:
        """HU of a hollow viscus' content: ``"gas"``, ``"fluid"`` or ``"mixed"`` (stool with gas bubbles)."""
        fine = self.cv.tex("fine", box)
        if kind == "gas":
            return -900.0 + 30.0 * fine
        if kind == "fluid":
            return self.fluid_hu + 6.0 * fine
        return np.where(fine > 1.0, -750.0, -20.0 + 45.0 * fine)

    def paint_hollow(self, box: Optional[Box], f: Optional[np.ndarray], wall: float, kind: str) -> None:
        """Paint a hollow viscus from its implicit function ``f`` (wall where ``-wall < f < 0``); unlabelled."""
        if box is None or f is None:
            return
        self.cv.paint(box, f < 0, self.bowel_wall_hu + 5.0 * self.cv.tex("medium", box), label=0)
        self.cv.paint(box, f < -wall, self.content(box, kind), label=0)

    # -- the case's parameters ---------------------------------------------------------------
    def sample_case(self) -> None:
        """Draw the body's shape, the diaphragm, the intensities, the spine, the aorta and the pancreas level."""
        u = self.u
        self.body_a, self.body_b = u(145.0, 178.0), u(105.0, 130.0)
        self.fat, self.muscle_t = u(8.0, 30.0), u(6.0, 12.0)
        self.fat_post = self.fat * u(0.4, 0.8)
        self.taper = u(-0.05, 0.05)  # relative change of the body width per 100 mm along z
        self.p_ant, self.p_post = u(2.0, 2.4), u(2.8, 3.4)
        self.cav_a = self.body_a - self.fat - self.muscle_t
        self.cav_b = self.body_b - 0.5 * (self.fat + self.fat_post) - self.muscle_t
        self.sxc, self.syc = self.cav_a / 130.0, self.cav_b / 88.0
        self.organ_scale = math.sqrt(self.sxc * self.syc) * u(0.92, 1.08)
        # diaphragm domes (anatomical z, mm; the scanned range is about +-120 around 0, shifted per case)
        self.dome_r = u(92.0, 118.0)
        self.dome_l = self.dome_r - u(5.0, 20.0)
        # intensities (HU)
        self.hu = {
            "fat": PHANTOM_HU["fat"] + u(-12.0, 12.0),
            "muscle": PHANTOM_HU["muscle"] + u(-6.0, 8.0),
            "liver": PHANTOM_HU["liver"] + u(-10.0, 12.0),
            "spleen": PHANTOM_HU["spleen"] + u(-10.0, 12.0),
            "pancreas": PHANTOM_HU["pancreas"] + u(-8.0, 12.0),
            "stomach": PHANTOM_HU["stomach"] + u(-6.0, 14.0),
            "gallbladder": PHANTOM_HU["gallbladder"] + u(-6.0, 10.0),
            "aorta": PHANTOM_HU["aorta"] + u(-40.0, 60.0),
            "cortex": 190.0 + u(-30.0, 30.0),
            "ivc": u(80.0, 150.0),
            "portal": u(120.0, 185.0),
            "bone_cortex": PHANTOM_HU["bone_cortex"] + u(-100.0, 100.0),
            "bone_cancellous": PHANTOM_HU["bone_cancellous"] + u(-70.0, 70.0),
        }
        self.hu["medulla"] = self.hu["cortex"] - u(40.0, 80.0)
        self.bowel_wall_hu = u(30.0, 50.0)
        self.fluid_hu = u(5.0, 25.0)
        self.noise_sd = u(10.0, 20.0)
        # vertebral column (in-plane position of the vertebral body centre)
        self.vx = u(-4.0, 4.0)
        self.vy = 0.55 * self.cav_b + u(-4.0, 4.0)
        self.va, self.vb = u(18.0, 23.0), u(15.0, 19.0)
        self.vert_period, self.vert_phase, self.disc = u(31.0, 36.0), u(0.0, 36.0), u(7.0, 10.0)
        # aorta, anterior-left of the vertebral body
        self.ar = u(9.0, 12.5)
        self.ax = self.vx + u(8.0, 16.0)
        self.ay = self.vy - self.vb - self.ar - u(1.0, 4.0)
        self.z_panc = u(-12.0, 12.0)

    def plan_pancreas(self) -> None:
        """Sample the pancreas and the duodenal C-loop around its head (painted later, in anatomical order)."""
        rng, rel = self.rng, self.rel
        head = rel(-50, -18, -12)
        self.panc_pts = [head, rel(-18, -26, -2), rel(15, -24, 6), rel(55, -4, 12), rel(82, 22, 18)]
        radii = np.array([15.0, 9.0, 10.5, 9.5, 7.0]) * self.organ_scale * rng.uniform(0.85, 1.15, size=5)
        self.pancreas = Tube(rng, self.panc_pts, radii, wobble=0.15, z_scale=self.u(0.6, 0.8), step=2.5)
        self.uncinate = Tube(rng, [head, rel(-35, 2, -28)], [radii[0] * 0.8, 8.0], z_scale=0.8)
        # duodenum: C-loop around the pancreatic head, horizontal part between aorta and SMA
        duo_pts = [
            head + (-2, -32, 22),
            head + (-24, -16, 12),
            head + (-26, 2, -10),
            head + (-18, 12, -34),
            rel(-10, -12, -45),
            rel(25, -18, -34),
        ]
        self.duodenum = Tube(rng, duo_pts, [self.u(9, 13)] * 6, wobble=0.15, step=3.0)
