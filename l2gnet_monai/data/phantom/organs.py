# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The eight labelled organs of the phantom, with the unlabelled vessels around them.

Liver on the patient's right with the gallbladder beneath it, spleen on the left, kidneys either side of the spine
(cortex, medulla and a darker sinus), aorta anterior-left of the vertebral body, pancreas across the midline in
front of it, stomach left-anterior with wall, fluid and air; the IVC, portal, splenic, mesenteric and renal veins
and the aorta's branches are context (label 0). Liver, spleen, pancreas and stomach wall share intensities with
muscle and bowel wall, so only shape and position tell them apart.
"""

from __future__ import annotations

import math

import numpy as np

from l2gnet_monai.data.phantom.anatomy import AnatomyBase
from l2gnet_monai.data.phantom.geometry import Blob, Tube

__all__ = ["Organs"]


class Organs(AnatomyBase):
    """Paints liver, gallbladder, stomach, spleen, kidneys, pancreas and aorta (labels in the Synapse order)."""

    def liver(self) -> None:
        """Liver (label 5): right lobe, left lobe across the midline, inferior tip; hepatic veins inside."""
        g, cv = self.grid, self.cv
        hu = self.hu["liver"] + 4.0 * cv.tex("medium") + 3.0 * cv.tex("coarse")
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
            cv.fill(blob, hu, label=5)
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
        self.cv.fill(blob, self.hu["gallbladder"] + 3.0 * self.cv.tex("medium"), label=4)

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

    def pancreas_and_vessels(self) -> None:
        """Pancreas (label 8), its veins, renal veins, IVC, aorta (label 7) with SMA, coeliac trunk and iliacs."""
        cv, rng, rel = self.cv, self.rng, self.rel
        zp = self.z_panc
        ant = self.ay - self.ar  # anterior surface of the aorta
        pancreas, uncinate, pts = self.pancreas, self.uncinate, self.panc_pts
        # pancreas: lobulated parenchyma
        hu = self.hu["pancreas"] + 10.0 * cv.tex("fine") + 4.0 * cv.tex("medium")
        for tube in (pancreas, uncinate):
            cv.fill(tube, hu, label=8)
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
            cv.fill(tube, self.hu["portal"] if tube is not ivc else self.hu["ivc"], label=0)
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
        arterial = self.hu["aorta"] + 6.0 * cv.tex("medium")
        for tube in (sma, coeliac, *iliacs, aorta):
            cv.fill(tube, arterial, label=7 if tube is aorta else 0, clip="cavity")
