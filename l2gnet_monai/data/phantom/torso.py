# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The unlabelled context of the phantom: body wall, lungs and heart, ribs, table, bowel, muscles and skeleton.

A body outline (skin fat, muscle wall), lung bases and heart above the diaphragm, ribs, the scanner table, colon,
small-bowel loops and duodenum with gas and fluid, psoas and paraspinal muscles, lumbar vertebrae with discs and
posterior elements, and iliac wings; all with label 0.
"""

from __future__ import annotations

import math

import numpy as np

from l2gnet_monai.data.phantom.anatomy import AnatomyBase
from l2gnet_monai.data.phantom.geometry import WHOLE, Blob, Tube

__all__ = ["Torso"]


class Torso(AnatomyBase):
    """Paints the structures around the labelled organs (all with label 0)."""

    def muscle_hu(self) -> np.ndarray:
        """Textured muscle HU over the whole grid (body wall, psoas and paraspinal muscles)."""
        return self.hu["muscle"] + 4.0 * self.cv.tex("medium")

    def body(self) -> None:
        """Skin fat, muscle wall, abdominal cavity, diaphragm, lung bases and heart."""
        g, cv = self.grid, self.cv
        x, y, z = g.open(WHOLE)
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
        cv.paint(WHOLE, body, self.hu["fat"] + 5.0 * cv.tex("coarse"), clip=None)
        cv.paint(WHOLE, inner, self.muscle_hu(), clip=None)
        cv.paint(WHOLE, cavity, self.hu["fat"] + 8.0 + 6.0 * cv.tex("coarse"), clip=None)
        cv.paint(WHOLE, thorax, -860.0 + 25.0 * cv.tex("medium"), clip=None)
        heart = Blob(self.rng, self.pos(15.0, -40.0, self.dome_l + 50.0), self.size(75.0, 55.0, 55.0), self.angles(20))
        cv.fill(heart, 110.0 + 8.0 * cv.tex("medium"), clip="thorax")
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
        cv.paint(WHOLE, ribs, 500.0 + 60.0 * cv.tex("fine"), clip="inner")
        # the scanner table under the patient's back
        gap, thick, radius = self.u(3.0, 12.0), self.u(7.0, 10.0), self.u(500.0, 900.0)
        table_y = self.body_b + gap - x**2 / (2.0 * radius)
        table = (y >= table_y) & (y <= table_y + thick) & (np.abs(x) < 210.0) & ~body
        cv.paint(WHOLE, np.broadcast_to(table, body.shape), 250.0 + 30.0 * cv.tex("fine"), clip=None)

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
        cv = self.cv
        x, y, z = self.grid.open(WHOLE)
        hu = self.muscle_hu()
        grow = self.u(0.10, 0.16)
        r = np.clip(5.0 + grow * (self.z_panc + 30.0 - z), 4.0, 26.0)
        for side in (-1.0, 1.0):
            cx = self.vx + side * (self.va + 0.75 * r)
            cy = self.vy - 0.1 * self.vb
            psoas = ((x - cx) / r) ** 2 + ((y - cy) / (0.85 * r)) ** 2 <= 1.0
            cv.paint(WHOLE, psoas, hu, clip="cavity")
            para_x = self.vx + side * self.u(32.0, 38.0)
            para_a, para_b = self.u(20.0, 28.0), self.u(16.0, 22.0)
            para_y = self.vy + self.vb + 24.0
            para = ((x - para_x) / para_a) ** 2 + ((y - para_y) / para_b) ** 2 <= 1.0
            cv.paint(WHOLE, para, hu, clip="inner")

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
