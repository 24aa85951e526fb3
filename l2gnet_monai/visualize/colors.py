# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The colour of every class and error kind, the same in every picture the project draws.

* the colours of the paper's classes follow its Figure 2 where the caption names them (Synapse: liver yellow,
  right kidney blue, left kidney green, pancreas light blue; ACDC: RV blue, LV purple, Myo yellow); the
  other Synapse organs get colours chosen to stay apart from those (:data:`PAPER_COLORS`);
* any other class name gets the next colour of a fixed, distinguishable palette (:data:`FALLBACK_PALETTE`,
  matplotlib's ``tab10`` then ``Dark2``), in class-index order, so the same class list always gets the same
  colours;
* error maps colour false positives, false negatives and confusions with :data:`ERROR_COLORS`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "OVERLAY_ALPHA",
    "ERROR_ALPHA",
    "ERROR_UNDERLAY",
    "PAPER_COLORS",
    "FALLBACK_PALETTE",
    "ERROR_COLORS",
    "ERROR_NAMES",
    "RGB",
    "class_palette",
]

RGB = tuple[float, float, float]

#: Opacity of class colours over the image in every overlay.
OVERLAY_ALPHA = 0.5

#: Opacity of the error colours over the image in error maps.
ERROR_ALPHA = 0.9

#: Error maps darken their grey underlay to this share of its value, so that the error colours (yellow included)
#: stay visible on bright tissue.
ERROR_UNDERLAY = 0.45


def _rgb(r: int, g: int, b: int) -> RGB:
    return (r / 255.0, g / 255.0, b / 255.0)


#: Colours by class name (lower case). Synapse liver, kidneys and pancreas and the three ACDC classes are named in
#: the caption of the paper's Figure 2; spleen, gallbladder, stomach and aorta are not, and were chosen here.
PAPER_COLORS: dict[str, RGB] = {
    # Synapse (paper: "yellow: liver, blue: right kidney, green: left kidney, light blue: pancreas")
    "liver": _rgb(255, 255, 0),
    "right kidney": _rgb(0, 0, 255),
    "left kidney": _rgb(0, 255, 0),
    "pancreas": _rgb(102, 204, 255),
    "spleen": _rgb(255, 0, 255),
    "gallbladder": _rgb(255, 165, 0),
    "stomach": _rgb(148, 0, 211),
    "aorta": _rgb(255, 0, 0),
    # ACDC (paper: "blue, purple, and yellow represent the RV, LV, and MYO")
    "rv": _rgb(0, 0, 255),
    "lv": _rgb(160, 32, 240),
    "myo": _rgb(255, 255, 0),
}

_COLOR_ALIASES = {
    "kidney right": "right kidney",
    "kidney left": "left kidney",
    "gall bladder": "gallbladder",
    "right ventricle": "rv",
    "left ventricle": "lv",
    "myocardium": "myo",
}

#: Colours of classes whose names are not in :data:`PAPER_COLORS`, in this order (matplotlib's tab10, then Dark2).
FALLBACK_PALETTE: tuple[RGB, ...] = (
    _rgb(31, 119, 180),
    _rgb(255, 127, 14),
    _rgb(44, 160, 44),
    _rgb(214, 39, 40),
    _rgb(148, 103, 189),
    _rgb(140, 86, 75),
    _rgb(227, 119, 194),
    _rgb(127, 127, 127),
    _rgb(188, 189, 34),
    _rgb(23, 190, 207),
    _rgb(27, 158, 119),
    _rgb(217, 95, 2),
    _rgb(117, 112, 179),
    _rgb(231, 41, 138),
    _rgb(102, 166, 30),
    _rgb(230, 171, 2),
    _rgb(166, 118, 29),
    _rgb(102, 102, 102),
)

#: Error map values and colours: 1 false positive (red), 2 false negative (cyan), 3 wrong class (yellow).
ERROR_NAMES: dict[int, str] = {1: "false positive", 2: "false negative", 3: "wrong class"}
ERROR_COLORS: dict[int, RGB] = {1: _rgb(255, 40, 40), 2: _rgb(0, 220, 255), 3: _rgb(255, 230, 0)}


def _norm_name(name: str) -> str:
    name = " ".join(re.sub(r"[_\-]+", " ", str(name)).lower().split())
    return _COLOR_ALIASES.get(name, name)


def class_palette(class_names: Mapping[int, str]) -> dict[int, RGB]:
    """The colour of every foreground class: the paper's where the name is known, else the fixed palette.

    Args:
        class_names: ``{class index: name}``; index 0 (background) gets no colour.

    Returns:
        ``{class index: (r, g, b)}`` with components in ``[0, 1]``, in index order.
    """
    names = {int(k): str(v) for k, v in class_names.items()}
    palette: dict[int, RGB] = {}
    fallback = 0
    for index in sorted(k for k in names if k != 0):
        name = _norm_name(names[index])
        if name in PAPER_COLORS:
            palette[index] = PAPER_COLORS[name]
        else:
            palette[index] = FALLBACK_PALETTE[fallback % len(FALLBACK_PALETTE)]
            fallback += 1
    return palette
