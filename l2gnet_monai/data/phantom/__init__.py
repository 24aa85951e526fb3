# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""A synthetic abdominal CT phantom with the 8 Synapse organs: the bundle's default dataset.

Every case is a 3-D CT-like volume in Hounsfield units with an organ label map in the Synapse
order used by TransUNet and the L2GNet paper (:data:`PHANTOM_LABELS`). The anatomy is modelled in
millimetres and rasterised onto the requested grid: a body outline (skin fat, muscle wall), a
lumbar vertebra with discs and posterior elements, paraspinal and psoas muscles, ribs and lung
bases above the diaphragm, bowel loops, colon and duodenum with gas and fluid, the IVC, portal
vein and mesenteric vessels (all unlabelled context), and the eight labelled organs: liver on the
patient's right with gallbladder beneath it, spleen on the left, kidneys either side of the spine
(cortex, medulla and a darker sinus), aorta anterior-left of the vertebral body, pancreas across
the midline in front of it, stomach left-anterior with wall, fluid and air. Organs are random
ellipsoids and tubes deformed by smooth random modes; their sizes, positions, rotations, z extents
and intensities vary per case, and the scanned z range is shifted per case, so gallbladder,
kidneys, spleen or lung bases appear only in some slices. Several organs share intensities
(liver, spleen, pancreas, muscle, bowel wall, stomach wall), so a network has to use shape and
position, not thresholds. The image is blurred slightly (partial volume) and gets correlated
Gaussian noise.

Geometry and orientation: voxel ``(i, j, k)`` of an array of shape ``(H, W, D)`` lies at the
patient's left for growing ``i``, posterior for growing ``j`` and superior for growing ``k``. The
NIfTI affine is ``diag(-sx, -sy, sz)`` (the "LPS" voxel order of CT NIfTI files converted from
DICOM; nibabel's ``aff2axcodes`` gives ``("L", "P", "S")``), with the volume centred on the world
origin. Displayed radiologically (patient's right on the image's left, anterior up), an axial
slice is ``array[:, :, k].T``. MONAI's ``LoadImaged`` keeps this array order; ``Orientationd(
axcodes="RAS")`` flips the first two axes.

Images are ``int16`` HU, labels ``uint8``, both gzipped NIfTI-1 with qform and sform (code 1,
scanner) and millimetre units. Datasets use the Medical Segmentation Decathlon layout
(``imagesTr/``, ``labelsTr/``, ``dataset.json``), readable by
``monai.data.load_decathlon_datalist`` for the ``training`` and ``validation`` keys.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Optional, Union

import nibabel as nib
import numpy as np
from scipy import ndimage

from l2gnet_monai.data.phantom.canvas import Canvas, correlated_noise, smooth_field
from l2gnet_monai.data.phantom.geometry import Blob, Box, Grid, Tube, phantom_affine
from l2gnet_monai.data.phantom.spec import (
    DEFAULT_NUM_TRAINING,
    DEFAULT_NUM_VALIDATION,
    DEFAULT_SHAPE,
    DEFAULT_SPACING,
    GENERATOR_NAME,
    PHANTOM_GENERATOR_VERSION,
    PHANTOM_HU,
    PHANTOM_LABELS,
)

__all__ = [
    "PHANTOM_GENERATOR_VERSION",
    "PHANTOM_HU",
    "PHANTOM_LABELS",
    "ensure_phantom_dataset",
    "generate_phantom_case",
    "generate_phantom_dataset",
    "phantom_affine",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


# --------------------------------------------------------------------------------------------
# anatomy
# --------------------------------------------------------------------------------------------


class _Anatomy:
    """Samples one case's anatomy (all random draws are independent of the grid) and paints it."""

    def __init__(self, rng: np.random.Generator, canvas: Canvas) -> None:
        self.rng = rng
        self.cv = canvas
        self.grid = canvas.grid

    # -- small sampling helpers --------------------------------------------------------------
    def u(self, lo: float, hi: float) -> float:
        """A uniform draw in ``[lo, hi)``."""
        return float(self.rng.uniform(lo, hi))

    def pos(self, x: float, y: float, z: float, jitter: float = 5.0) -> np.ndarray:
        """A nominal position scaled to this body's cavity, with Gaussian jitter (mm)."""
        j = self.rng.normal(0.0, jitter, size=3) * (1.0, 1.0, 1.5)
        return np.array([x * self.sxc + j[0], y * self.syc + j[1], z + j[2]])

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

    # -- the case ----------------------------------------------------------------------------
    def run(self) -> None:
        self.sample_case()
        self.plan_pancreas()
        self.body()
        self.bowel()
        self.muscles()
        self.liver()
        self.gallbladder()
        self.stomach()
        self.spleen()
        self.kidneys()
        self.pancreas_and_vessels()
        self.skeleton()

    def sample_case(self) -> None:
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

    def body(self) -> None:
        """Skin fat, muscle wall, abdominal cavity, diaphragm, lung bases and heart."""
        g, cv = self.grid, self.cv
        x = g.axes[0][:, None, None]
        y = g.axes[1][None, :, None]
        z = g.axes[2][None, None, :]
        widen = (1.0 + self.taper * z / 100.0).astype(np.float32)
        p = np.where(y < 0, np.float32(self.p_ant), np.float32(self.p_post)).astype(np.float32)

        def inside(shrink_a: float, shrink_ant: float, shrink_post: float) -> tuple[np.ndarray, np.ndarray]:
            a = (self.body_a - shrink_a) * widen
            b = np.where(y < 0, self.body_b - shrink_ant, self.body_b - shrink_post).astype(np.float32) * widen
            q = (np.abs(x) / a) ** p + (np.abs(y) / b) ** p
            return q <= 1.0, q

        body, _ = inside(0.0, 0.0, 0.0)
        inner, _ = inside(self.fat, self.fat, self.fat_post)
        cavity, q_cav = inside(self.fat + self.muscle_t, self.fat + self.muscle_t, self.fat_post + self.muscle_t)
        # diaphragm: two domes, the right one higher; lungs above, abdomen below
        dome_xy = []
        for side, top in ((-1.0, self.dome_r), (1.0, self.dome_l)):
            cx, cy = side * self.u(55.0, 75.0) * self.sxc, self.u(-20.0, 0.0)
            curv = self.u(110.0, 160.0)
            dome_xy.append(top - ((g.axes[0][:, None] - cx) ** 2 + (g.axes[1][None, :] - cy) ** 2) / (2.0 * curv))
        diaphragm = np.maximum(dome_xy[0], dome_xy[1]).astype(np.float32)[:, :, None]
        thorax = cavity & (z > diaphragm)
        cv.masks.update(
            body=body,
            inner=inner,
            cavity=cavity,
            abdomen=cavity & ~thorax,
            thorax=thorax,
            everywhere=np.ones_like(body),
        )
        full = (slice(None),) * 3
        cv.paint(full, body, self.hu["fat"] + 5.0 * cv.tex("coarse", full), clip=None)
        cv.paint(full, inner, self.hu["muscle"] + 4.0 * cv.tex("medium", full), clip=None)
        cv.paint(full, cavity, self.hu["fat"] + 8.0 + 6.0 * cv.tex("coarse", full), clip=None)
        cv.paint(full, thorax, -860.0 + 25.0 * cv.tex("medium", full), clip=None)
        heart = Blob(self.rng, self.pos(15.0, -40.0, self.dome_l + 50.0), self.size(75.0, 55.0, 55.0), self.angles(20))
        box, f, _ = heart.field(g)
        if box is not None:
            cv.paint(box, f < 0, 110.0 + 8.0 * cv.tex("medium", box), clip="thorax")
        # ribs: cross-sections in the outer muscle wall above the lower costal margin
        rib_z = self.u(-35.0, -5.0)
        rib_n, rib_period, rib_phase = self.u(8.5, 10.5), self.u(40.0, 55.0), self.u(0.0, 2.0 * math.pi)
        phi = np.arctan2(y / self.body_b, x / self.body_a)
        ribs = (
            (q_cav > 0.97)
            & (q_cav < 1.16)
            & (z > rib_z + 25.0 * np.abs(np.cos(phi)) - 25.0)
            & (np.cos(rib_n * phi - 2.0 * math.pi * z / rib_period + rib_phase) > 0.88)
            & (np.abs(phi + math.pi / 2) > 0.55)  # no ribs in front of the midline (costal cartilage gap)
            & (np.abs(phi - math.pi / 2) > 0.45)  # nor over the spine
        )
        cv.paint(full, ribs, 500.0 + 60.0 * cv.tex("fine", full), clip="inner")
        # the scanner table under the patient's back
        gap, thick, radius = self.u(3.0, 12.0), self.u(7.0, 10.0), self.u(500.0, 900.0)
        table_y = self.body_b + gap - x**2 / (2.0 * radius)
        table = (y >= table_y) & (y <= table_y + thick) & (np.abs(x) < 210.0) & ~body
        cv.paint(full, np.broadcast_to(table, body.shape), 250.0 + 30.0 * cv.tex("fine", full), clip=None)

    def bowel(self) -> None:
        """Colon (ascending, transverse, descending), small-bowel loops and the duodenum: unlabelled."""
        g, rng = self.grid, self.rng
        kinds = ("fluid", "gas", "mixed")
        colon_kind = str(rng.choice(kinds, p=(0.1, 0.5, 0.4)))
        # ascending and descending colon: vertical tubes; transverse colon: a curved tube
        flex_r, flex_l = self.dome_r - self.u(115.0, 140.0), self.dome_l - self.u(60.0, 85.0)
        asc = Tube(rng, [self.pos(-100, 5, -250), self.pos(-100, 0, flex_r)], [self.u(16, 24)] * 2, step=6.0)
        desc = Tube(rng, [self.pos(104, 25, flex_l), self.pos(104, 25, -250)], [self.u(13, 19)] * 2, step=6.0)
        trans_pts = [
            self.pos(-100, 0, flex_r),
            self.pos(-75, -45, flex_r - 5),
            self.pos(0, -62, flex_r - self.u(0, 30)),
            self.pos(70, -50, flex_l - 25),
            self.pos(104, 25, flex_l),
        ]
        trans = Tube(rng, trans_pts, [self.u(14, 20)] * 5, wobble=0.2, step=4.0)
        for tube in (asc, desc, trans):
            box, f = tube.field(g)
            self.paint_hollow(box, f, 3.0, colon_kind)
        # small bowel loops, mostly in the lower abdomen
        for _ in range(int(rng.integers(35, 50))):
            loop = Blob(
                rng,
                self.pos(self.u(-85, 85), self.u(-72, 35), self.u(-170, self.z_panc - 10), 0.0),
                self.size(self.u(10, 18), self.u(10, 18), self.u(10, 22), 0.0),
                self.angles(self.u(0, 180), 0.0, 20.0),
                lumpiness=0.05,
            )
            kind = str(rng.choice(kinds, p=(0.55, 0.2, 0.25)))
            box, f, _ = loop.field(g)
            self.paint_hollow(box, None if f is None else f * np.float32(loop.semi.min()), 2.5, kind)
        box, f = self.duodenum.field(g)
        self.paint_hollow(box, f, 2.5, str(rng.choice(kinds, p=(0.6, 0.3, 0.1))))

    def muscles(self) -> None:
        """Psoas muscles beside the vertebral body (growing caudally) and paraspinal muscles behind it."""
        g, cv = self.grid, self.cv
        full = (slice(None),) * 3
        z = g.axes[2][None, None, :]
        x = g.axes[0][:, None, None]
        y = g.axes[1][None, :, None]
        grow = self.u(0.10, 0.16)
        r = np.clip(5.0 + grow * (self.z_panc + 30.0 - z), 4.0, 26.0)
        for side in (-1.0, 1.0):
            cx = self.vx + side * (self.va + 0.75 * r)
            cy = self.vy - 0.1 * self.vb
            psoas = ((x - cx) / r) ** 2 + ((y - cy) / (0.85 * r)) ** 2 <= 1.0
            cv.paint(full, psoas, self.hu["muscle"] + 4.0 * cv.tex("medium", full), clip="cavity")
            para_x = self.vx + side * self.u(32.0, 38.0)
            para_a, para_b = self.u(20.0, 28.0), self.u(16.0, 22.0)
            para_y = self.vy + self.vb + 24.0
            para = ((x - para_x) / para_a) ** 2 + ((y - para_y) / para_b) ** 2 <= 1.0
            cv.paint(full, para, self.hu["muscle"] + 4.0 * cv.tex("medium", full), clip="inner")

    def liver(self) -> None:
        """Liver (label 5): right lobe, left lobe across the midline, inferior tip; hepatic veins inside."""
        g, cv = self.grid, self.cv
        hu = self.hu["liver"] + 4.0 * cv.tex("medium", (slice(None),) * 3) + 3.0 * cv.tex("coarse", (slice(None),) * 3)
        parts = [
            Blob(self.rng, self.pos(-66, -5, self.dome_r - 60), self.size(72, 88, 78), self.angles(0), 0.05),
            Blob(self.rng, self.pos(8, -45, self.dome_r - 45), self.size(60, 30, 38), self.angles(15), 0.08),
            Blob(
                self.rng,
                self.pos(-88, 12, self.dome_r - 118),
                self.size(38, 50, self.u(30, 55)),
                self.angles(-10),
                0.08,
            ),
        ]
        for blob in parts:
            box, f, _ = blob.field(g)
            if box is not None:
                cv.paint(box, f < 0, hu[box], label=5)
        self.liver_hilum = self.pos(-38, -12, self.z_panc + 42)
        ivc_top = np.array([self.vx - 32.0, self.vy - self.vb - 38.0, self.dome_r - 15.0])
        for end in ((-105, -15, 55), (-50, -70, 70), (15, -55, 65)):
            vein = Tube(self.rng, [ivc_top, self.pos(end[0], end[1], self.dome_r - end[2], 8.0)], [6.0, 2.0])
            box, f = vein.field(g)
            if box is not None:
                in_liver = (f < 0) & (cv.label[box] == 5)
                cv.paint(box, in_liver, self.hu["ivc"] + 10.0, label=5)

    def gallbladder(self) -> None:
        """Gallbladder (label 4) under the liver, partly projecting below its edge."""
        blob = Blob(
            self.rng,
            self.pos(-42, -45, self.dome_r - 112, 6.0),
            self.size(14, 20, 32, 0.2),
            self.angles(-30, 20, 20),
            0.05,
        )
        box, f, _ = blob.field(self.grid)
        if box is not None:
            self.cv.paint(box, f < 0, self.hu["gallbladder"] + 3.0 * self.cv.tex("medium", box), label=4)

    def stomach(self) -> None:
        """Stomach (label 6): fundus/body and antrum with a wall, fluid or food, and an air-fluid level."""
        g, cv = self.grid, self.cv
        body = Blob(self.rng, self.pos(58, -18, self.dome_l - 42), self.size(42, 40, 50), self.angles(-30), 0.06)
        antrum = Blob(self.rng, self.pos(15, -55, self.dome_l - 97), self.size(45, 20, 24), self.angles(20), 0.06)
        air_frac = self.u(0.0, 0.5) if self.rng.uniform() < 0.75 else 0.0
        food = self.rng.uniform() < 0.4
        wall_mm = self.u(3.5, 6.0)
        air_level = float(body.center[1] - body.semi[1] + 2.0 * body.semi[1] * air_frac)
        for blob in (body, antrum):
            box, f, _ = blob.field(g)
            if box is None:
                continue
            wall_f = np.float32(wall_mm / blob.semi.min())
            cv.paint(box, f < 0, self.hu["stomach"] + 5.0 * cv.tex("medium", box), label=6)
            lumen = f < -wall_f
            content = self.content(box, "mixed") if food else self.content(box, "fluid")
            cv.paint(box, lumen, content, label=6)
            y = g.open(box)[1]
            cv.paint(box, lumen & (y < air_level), self.content(box, "gas"), label=6)

    def spleen(self) -> None:
        """Spleen (label 1): a crescent along the left posterolateral wall."""
        blob = Blob(self.rng, self.pos(92, 40, self.dome_l - 38), self.size(26, 55, 48), self.angles(40), 0.07)
        hilum_depth = self.u(0.95, 1.25)
        box, f, u = blob.field(self.grid)
        if box is None:
            return
        notch = (u[0] + hilum_depth) ** 2 / 0.5**2 + u[1] ** 2 / 0.6**2 + u[2] ** 2 / 0.75**2 < 1.0
        hu = self.hu["spleen"] + 4.0 * self.cv.tex("medium", box)
        self.cv.paint(box, (f < 0) & ~notch, hu, label=1)

    def kidneys(self) -> None:
        """Kidneys (2 right, 3 left): cortex, medulla and a darker sinus opening medially at the hilum."""
        g, cv = self.grid, self.cv
        kz = self.z_panc + self.u(-5.0, 15.0)
        self.kidney_hilum: dict[int, np.ndarray] = {}
        for label, side, dz in ((2, -1.0, -self.u(5.0, 25.0)), (3, 1.0, 0.0)):
            yaw = math.degrees(math.atan2(-0.6, -side * 0.8))
            blob = Blob(
                self.rng,
                self.pos(side * 68.0, (self.vy - 2.0) / self.syc, kz + dz),
                self.size(21, 31, 55, 0.15),
                self.angles(yaw, 15, 10),
                0.04,
            )
            sinus_shift, sinus_size = self.u(0.4, 0.6), self.u(0.4, 0.55)
            self.kidney_hilum[label] = blob.center + blob.rot @ (np.array([1.05, 0.0, 0.0]) * blob.semi)
            box, f, u = blob.field(g)
            if box is None:
                continue
            sinus = (u[0] - sinus_shift) ** 2 / sinus_size**2 + u[1] ** 2 / 0.45**2 + u[2] ** 2 / 0.55**2 < 1.0
            kidney = f < 0
            medulla = f < -0.22
            hu = np.where(medulla, self.hu["medulla"], self.hu["cortex"]) + 8.0 * cv.tex("medium", box)
            cv.paint(box, kidney, hu, label=label)
            cv.paint(box, kidney & sinus, -20.0 + 25.0 * cv.tex("medium", box), label=label)
            notch = sinus & (f > -0.3) & (u[0] > 0)
            cv.paint(box, notch, self.hu["fat"] + 8.0, label=0)

    def rel(self, x: float, y: float, z: float, jitter: float = 4.0) -> np.ndarray:
        """A position relative to the aorta's anterior surface at the pancreas level, with jitter (mm)."""
        j = self.rng.normal(0.0, jitter, size=3)
        return np.array(
            [self.ax + x * self.sxc + j[0], self.ay - self.ar + y * self.syc + j[1], self.z_panc + z + j[2]]
        )

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

    def pancreas_and_vessels(self) -> None:
        """Pancreas (label 8), its veins, renal veins, IVC, aorta (label 7) with SMA, coeliac trunk and iliacs."""
        g, cv, rng, rel = self.grid, self.cv, self.rng, self.rel
        zp = self.z_panc
        ant = self.ay - self.ar  # anterior surface of the aorta
        pancreas, uncinate, pts = self.pancreas, self.uncinate, self.panc_pts
        # pancreas: lobulated parenchyma
        for tube in (pancreas, uncinate):
            box, f = tube.field(g)
            if box is not None:
                hu = self.hu["pancreas"] + 10.0 * cv.tex("fine", box) + 4.0 * cv.tex("medium", box)
                cv.paint(box, f < 0, hu, label=8)
        # veins: splenic vein behind the pancreas, portal vein to the liver hilum, SMV, renal veins, IVC
        conf = rel(-10, -16, 0, 2.0)
        splenic = Tube(rng, [conf, pts[2] + (0, 11, 0), pts[3] + (0, 10, 0), pts[4] + (5, 8, 0)], [5.0, 4.5, 4.0, 4.0])
        portal = Tube(rng, [conf, self.liver_hilum], [7.0, 7.5])
        smv = Tube(rng, [conf, rel(-18, -22, -45), rel(-22, -28, -110)], [6.0, 5.0, 4.0])
        ivc_x, ivc_y = self.vx - self.u(20.0, 26.0), self.vy - self.vb - self.u(8.0, 14.0)
        ivc_pts = [
            (ivc_x, ivc_y, -260.0),
            (ivc_x, ivc_y, zp + 20.0),
            (ivc_x - 10.0, ivc_y - 25.0, self.dome_r - 15.0),
            (ivc_x - 10.0, ivc_y - 30.0, 260.0),
        ]
        ivc = Tube(rng, ivc_pts, [self.u(10.0, 14.0)] * 4, step=4.0)
        renal = [
            Tube(rng, [self.kidney_hilum[2], (ivc_x, ivc_y, self.kidney_hilum[2][2])], [5.0, 6.0]),
            Tube(
                rng,
                [self.kidney_hilum[3], (self.ax, ant - 4.0, self.kidney_hilum[3][2]), (ivc_x, ivc_y, zp)],
                [5.0] * 3,
            ),
        ]
        for tube in (splenic, portal, smv, ivc, *renal):
            box, f = tube.field(g)
            cv.paint(
                box, None if f is None else f < 0, self.hu["portal"] if tube is not ivc else self.hu["ivc"], label=0
            )
        # aorta (label 7) down to its bifurcation; SMA, coeliac trunk and iliac arteries unlabelled
        z_bif = self.u(-125.0, -90.0)
        drift = rng.normal(0.0, 3.0, size=2)
        aorta = Tube(
            rng,
            [(self.ax + drift[0], self.ay - 4.0, 260.0), (self.ax, self.ay, zp), (self.ax - drift[1], self.ay, z_bif)],
            [self.ar * 1.1, self.ar, self.ar * 0.9],
            wobble=0.05,
            step=4.0,
        )
        spread = self.u(35.0, 50.0)
        iliacs = [
            Tube(
                rng, [(self.ax, self.ay, z_bif + 5.0), (self.ax + s * spread, self.ay + 10.0, z_bif - 90.0)], [7.0, 6.5]
            )
            for s in (-1.0, 1.0)
        ]
        sma = Tube(
            rng,
            [(self.ax, ant + 2, zp + 12), rel(-3, -14, 2), rel(-8, -22, -40), rel(-12, -26, -110)],
            [4.0, 3.5, 3.0, 2.5],
        )
        coeliac = Tube(rng, [(self.ax, ant + 2, zp + 28), rel(0, -18, 32), rel(-20, -24, 36)], [4.0, 3.5, 3.0])
        arterial = self.hu["aorta"] + 6.0 * cv.tex("medium", (slice(None),) * 3)
        for tube in (sma, coeliac, *iliacs, aorta):
            box, f = tube.field(g)
            if box is not None:
                cv.paint(box, f < 0, arterial[box], label=7 if tube is aorta else 0, clip="cavity")

    def skeleton(self) -> None:
        """Lumbar vertebrae (body, discs, arch, spinous and transverse processes) and iliac wings."""
        g, cv = self.grid, self.cv
        box = g.box((self.vx - 60.0, self.vy - self.vb - 2.0, -1e4), (self.vx + 60.0, self.vy + self.vb + 75.0, 1e4))
        if box is not None:
            x, y, z = g.open(box, (self.vx, self.vy, 0.0))
            zm = np.mod(z - self.vert_phase, self.vert_period)
            disc = zm < self.disc
            cortex_hu, marrow_hu = self.hu["bone_cortex"], self.hu["bone_cancellous"]
            e = (x / self.va) ** 2 + (y / self.vb) ** 2
            vbody = e <= 1.0
            marrow = e <= (1.0 - 3.0 / self.vb) ** 2
            bone_hu = np.where(marrow, marrow_hu + 40.0 * cv.tex("fine", box), cortex_hu)
            cv.paint(box, vbody, np.where(disc, 90.0 + 8.0 * cv.tex("fine", box), bone_hu), label=0, clip=None)
            canal_y, canal_r = self.vb + 12.0, self.u(8.0, 10.0)
            rc = np.sqrt(x**2 + (y - canal_y) ** 2)
            arch = (rc <= canal_r + 6.0) & (y >= self.vb - 2.0)
            spinous = (
                (np.abs(x) <= 4.0)
                & (y > canal_y)
                & (y <= canal_y + canal_r + 34.0)
                & (zm > self.disc)
                & (zm < self.disc + 0.6 * self.vert_period)
            )
            transverse = (
                (np.abs(np.abs(x) - 27.0) <= 12.0)
                & (np.abs(y - canal_y + 2.0) <= 3.5)
                & (zm > self.disc + 3.0)
                & (zm < self.disc + 13.0)
            )
            cv.paint(
                box, arch | spinous | transverse, cortex_hu * 0.85 + 40.0 * cv.tex("fine", box), label=0, clip="inner"
            )
            cv.paint(box, rc <= canal_r, 15.0 + 5.0 * cv.tex("fine", box), label=0, clip=None)
        # iliac wings in the lowest slices
        z_il = self.z_panc - self.u(85.0, 110.0)
        for side in (-1.0, 1.0):
            center = (side * 0.72 * self.cav_a, self.vy - 8.0, 0.0)
            wing_box = g.box((center[0] - 55, center[1] - 55, -1e4), (center[0] + 55, center[1] + 55, z_il))
            if wing_box is None:
                continue
            x, y, z = g.open(wing_box, center)
            s = np.clip((z_il - z) / 35.0, 1e-3, 1.0)
            c, sn = math.cos(math.radians(side * 35.0)), math.sin(math.radians(side * 35.0))
            u0, u1 = x * c + y * sn, -x * sn + y * c
            e = (u0 / (9.0 * s)) ** 2 + (u1 / (48.0 * s)) ** 2
            hu = np.where(e < 0.45, self.hu["bone_cancellous"], self.hu["bone_cortex"] * 0.85)
            cv.paint(wing_box, e <= 1.0, hu, label=0, clip="inner")


# --------------------------------------------------------------------------------------------
# cases and datasets
# --------------------------------------------------------------------------------------------


def _check_args(shape: Sequence[int], spacing: Sequence[float], seed: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    shape_t = tuple(int(n) for n in shape)
    spacing_t = tuple(float(s) for s in spacing)
    if len(shape_t) != 3 or min(shape_t) < 1:
        raise ValueError(f"shape must be three positive integers (H, W, D), got {shape}.")
    if len(spacing_t) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing_t):
        raise ValueError(f"spacing must be three positive millimetre values (sx, sy, sz), got {spacing}.")
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    return shape_t, spacing_t


def generate_phantom_case(
    case_index: int,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one phantom case.

    The case depends only on ``(seed, case_index)`` (random generator
    ``numpy.random.default_rng([seed, case_index])``), not on how many cases a dataset has. The anatomy
    is sampled in millimetres before anything depends on the grid, so the same case rendered with a
    different ``shape``/``spacing`` has the same organs (only texture and noise differ). The field of
    view is ``shape * spacing`` centred on the abdomen; the defaults cover 400 x 400 x 240 mm.

    Args:
        case_index: index of the case (non-negative).
        shape: ``(H, W, D)`` voxels; axes run to the patient's left, posterior and superior.
        spacing: ``(sx, sy, sz)`` voxel size in millimetres.
        seed: dataset seed (non-negative).

    Returns:
        ``(image, label, affine)``: ``int16`` HU image, ``uint8`` label map in the Synapse order
        (:data:`PHANTOM_LABELS`), both of shape ``shape``, and the ``(4, 4)`` NIfTI affine
        (:func:`phantom_affine`).
    """
    shape_t, spacing_t = _check_args(shape, spacing, seed)
    if int(case_index) < 0:
        raise ValueError(f"case_index must be non-negative, got {case_index}.")
    rng = np.random.default_rng([int(seed), int(case_index)])
    texture_rng = np.random.default_rng(rng.integers(0, 2**63 - 1))  # grid-dependent draws use their own stream
    z_shift = float(rng.uniform(-25.0, 25.0))  # which part of the abdomen the scan covers
    grid = Grid(shape_t, spacing_t, z_shift)
    canvas = Canvas(grid)
    canvas.textures = {
        "coarse": smooth_field(texture_rng, grid, 60.0),
        "medium": smooth_field(texture_rng, grid, 14.0),
        "fine": correlated_noise(texture_rng, shape_t, (0.8, 0.8, 0.5)),
    }
    anatomy = _Anatomy(rng, canvas)
    anatomy.run()
    # partial volume / reconstruction blur, then correlated quantum noise
    image = ndimage.gaussian_filter(canvas.image, sigma=(0.6, 0.6, 0.4), mode="nearest")
    image += np.float32(anatomy.noise_sd) * correlated_noise(texture_rng, shape_t, (0.6, 0.6, 0.0))
    image = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
    return image, canvas.label, phantom_affine(shape_t, spacing_t)


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: str, is_label: bool) -> None:
    img = nib.Nifti1Image(array, affine)
    img.header.set_data_dtype(array.dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if is_label:
        img.header.set_intent("label")
    nib.save(img, path)


def _generator_entry(
    num_training: int, num_validation: int, shape: Sequence[int], spacing: Sequence[float], seed: int
) -> dict[str, Any]:
    """The ``generator`` record of ``dataset.json``: what produced it, in a JSON round-trip-stable form."""
    shape_t, spacing_t = _check_args(shape, spacing, seed)
    if int(num_training) < 1 or int(num_validation) < 0:
        raise ValueError(f"need num_training >= 1 and num_validation >= 0, got {num_training}, {num_validation}.")
    return {
        "name": GENERATOR_NAME,
        "version": PHANTOM_GENERATOR_VERSION,
        "num_training": int(num_training),
        "num_validation": int(num_validation),
        "shape": list(shape_t),
        "spacing": list(spacing_t),
        "seed": int(seed),
    }


def generate_phantom_dataset(
    dataset_dir: PathLike,
    num_training: int = DEFAULT_NUM_TRAINING,
    num_validation: int = DEFAULT_NUM_VALIDATION,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
    seed: int = 0,
) -> str:
    """Write a phantom dataset in the Medical Segmentation Decathlon layout into ``dataset_dir``.

    Cases ``phantom_0000 ...`` are :func:`generate_phantom_case` ``(i, shape, spacing, seed)``; the first
    ``num_training`` go to ``training``, the next ``num_validation`` to ``validation``. Files are written
    in place (``dataset.json`` last); use :func:`ensure_phantom_dataset` for a safe, generate-once call.

    Args:
        dataset_dir: output folder (created if needed; existing files of the same names are overwritten).
        num_training: number of training cases (>= 1).
        num_validation: number of held-out validation cases (>= 0).
        shape: ``(H, W, D)`` voxels per volume.
        spacing: ``(sx, sy, sz)`` in millimetres.
        seed: dataset seed (non-negative).

    Returns:
        the path of the written ``dataset.json``.
    """
    generator = _generator_entry(num_training, num_validation, shape, spacing, seed)
    dataset_dir = os.path.abspath(os.fspath(dataset_dir))
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(dataset_dir, sub), exist_ok=True)
    start = time.perf_counter()
    entries = []
    for index in range(generator["num_training"] + generator["num_validation"]):
        image, label, affine = generate_phantom_case(index, generator["shape"], generator["spacing"], generator["seed"])
        name = f"phantom_{index:04d}.nii.gz"
        _save_nifti(image, affine, os.path.join(dataset_dir, "imagesTr", name), is_label=False)
        _save_nifti(label, affine, os.path.join(dataset_dir, "labelsTr", name), is_label=True)
        entries.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    ntr = generator["num_training"]
    description = (
        "Synthetic abdominal CT phantom (HU) with the 8 Synapse organs, generated by l2gnet_monai.data.phantom. "
        "Voxel axes run to the patient's left, posterior and superior (NIfTI affine diag(-sx, -sy, sz))."
    )
    dataset = {
        "name": "L2GNetAbdomenPhantom",
        "description": description,
        "reference": "l2gnet_monai.data.phantom",
        "licence": "Apache-2.0 (synthetic data)",
        "release": f"{PHANTOM_GENERATOR_VERSION}",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {str(k): v for k, v in PHANTOM_LABELS.items()},
        "numTraining": ntr,
        "numValidation": generator["num_validation"],
        "numTest": 0,
        "training": entries[:ntr],
        "validation": entries[ntr:],
        "test": [],
        "generator": generator,
    }
    json_path = os.path.join(dataset_dir, "dataset.json")
    with open(json_path + ".part", "w") as f:
        json.dump(dataset, f, indent=2)
    os.replace(json_path + ".part", json_path)
    logger.info(
        "Generated %d phantom cases of shape %s in %s (%.1f s).",
        len(entries),
        tuple(generator["shape"]),
        dataset_dir,
        time.perf_counter() - start,
    )
    return json_path


# --------------------------------------------------------------------------------------------
# generate-once, concurrency-safe entry point
# --------------------------------------------------------------------------------------------

_TMP_TAG = ".phantom-tmp-"
_STALE_OTHER_HOST_S = 3600.0  # temp folders of other hosts are removed only when untouched this long
_STALE_DEAD_PID_S = 30.0  # temp folders of dead local processes, when untouched this long


def _host() -> str:
    """This machine's name as used in temporary folder names (no dashes or separators)."""
    return socket.gethostname().replace("-", "_").replace(os.sep, "_") or "host"


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _last_touched(path: str) -> float:
    times = [os.stat(path).st_mtime]
    for sub in ("imagesTr", "labelsTr"):
        p = os.path.join(path, sub)
        if os.path.isdir(p):
            times.append(os.stat(p).st_mtime)
    return max(times)


def _remove_stale_temps(parent: str, base: str) -> None:
    """Remove temporary folders that crashed generations left beside ``base`` (never a live one)."""
    prefix = f".{base}{_TMP_TAG}"
    host = _host()
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(prefix):
            continue
        path = os.path.join(parent, name)
        try:
            tmp_host, pid, _ = name[len(prefix) :].rsplit("-", 2)
            age = time.time() - _last_touched(path)
            dead_here = tmp_host == host and int(pid) != os.getpid() and not _pid_alive(int(pid))
        except (ValueError, OSError):
            continue
        if (dead_here and age > _STALE_DEAD_PID_S) or age > _STALE_OTHER_HOST_S:
            logger.info("Removing the stale temporary phantom folder %s.", path)
            shutil.rmtree(path, ignore_errors=True)


def _check_existing(dataset_dir: str, expected: dict[str, Any]) -> str:
    """Return ``dataset.json`` of an existing, complete phantom generated with ``expected``; raise otherwise."""
    json_path = os.path.join(dataset_dir, "dataset.json")
    found = None
    if os.path.isfile(json_path):
        try:
            with open(json_path) as f:
                found = json.load(f).get("generator")
        except (OSError, ValueError, AttributeError):
            found = None
    if not isinstance(found, dict) or found.get("name") != GENERATOR_NAME:
        raise FileExistsError(
            f"'{dataset_dir}' exists but is not a phantom dataset generated by {GENERATOR_NAME} (no dataset.json "
            "with a 'generator' entry). It was left untouched: choose another folder for the phantom, or point the "
            "configuration at your real dataset."
        )
    if found != expected:
        raise ValueError(
            f"'{dataset_dir}' holds a phantom dataset generated with different arguments: found {found}, "
            f"requested {expected}. Delete the folder to regenerate it, or choose another dataset folder."
        )
    with open(json_path) as f:
        dataset = json.load(f)
    missing = [
        item[key]
        for item in dataset.get("training", []) + dataset.get("validation", [])
        for key in ("image", "label")
        if not os.path.isfile(os.path.join(dataset_dir, item[key]))
    ]
    if missing:
        raise ValueError(
            f"The phantom dataset in '{dataset_dir}' is incomplete ({len(missing)} files missing, e.g. {missing[0]}). "
            "Delete the folder to regenerate it."
        )
    return json_path


def ensure_phantom_dataset(
    dataset_dir: PathLike,
    num_training: int = DEFAULT_NUM_TRAINING,
    num_validation: int = DEFAULT_NUM_VALIDATION,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
    seed: int = 0,
) -> str:
    """Return the phantom dataset's ``dataset.json`` in ``dataset_dir``, generating it on first use only.

    Safe for concurrent callers (several DDP ranks, several jobs): each generates into a temporary
    sibling folder ``.<name>.phantom-tmp-<host>-<pid>-<random>`` and renames it into place atomically;
    a caller that loses the race discards its copy and uses the winner's. ``dataset_dir`` never holds a
    partial dataset; temporary folders left by crashed callers are removed by later calls. An empty
    existing folder counts as absent.

    Args:
        dataset_dir: folder of the dataset; its parent is created if needed.
        num_training: number of training cases (>= 1).
        num_validation: number of validation cases (>= 0).
        shape: ``(H, W, D)`` voxels per volume.
        spacing: ``(sx, sy, sz)`` in millimetres.
        seed: dataset seed (non-negative).

    Returns:
        the path of ``dataset.json``.

    Raises:
        ValueError: ``dataset_dir`` holds a phantom generated with other arguments (or an incomplete one).
        FileExistsError: ``dataset_dir`` exists, is not empty and is not a phantom dataset (left untouched).
    """
    expected = _generator_entry(num_training, num_validation, shape, spacing, seed)
    dataset_dir = os.path.abspath(os.fspath(dataset_dir))
    if os.path.exists(dataset_dir) and not (os.path.isdir(dataset_dir) and not os.listdir(dataset_dir)):
        return _check_existing(dataset_dir, expected)
    parent, base = os.path.split(dataset_dir)
    os.makedirs(parent, exist_ok=True)
    _remove_stale_temps(parent, base)
    tmp = tempfile.mkdtemp(prefix=f".{base}{_TMP_TAG}{_host()}-{os.getpid()}-", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the dataset should be readable like any folder
    try:
        generate_phantom_dataset(
            tmp,
            num_training=expected["num_training"],
            num_validation=expected["num_validation"],
            shape=expected["shape"],
            spacing=expected["spacing"],
            seed=expected["seed"],
        )
        if os.path.isdir(dataset_dir):  # an empty placeholder (os.rename replaces it on POSIX, not on Windows)
            with contextlib.suppress(OSError):
                os.rmdir(dataset_dir)
        try:
            os.rename(tmp, dataset_dir)  # atomic; replaces an empty folder, fails on a non-empty one
        except OSError:
            if not os.path.isfile(os.path.join(dataset_dir, "dataset.json")):
                raise
            logger.info("Another process generated the phantom in %s first; using it.", dataset_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _check_existing(dataset_dir, expected)
