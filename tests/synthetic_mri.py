"""A small synthetic MRI dataset in the Decathlon layout: 3 foreground classes, non-RAS orientation, thick slices.

Each volume images the same kind of object (two lobes and a vessel between them) in a world frame (RAS, mm); the
voxel grid is that of a 2-D multi-slice acquisition: ``1.5 mm`` in plane, ``4 mm`` slices, stored in a non-RAS
axis order, so that only the reorientation to RAS and the slicing axis chosen from the spacing give the sharp
in-plane images back.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

#: Class names of the dataset (``dataset.json``'s ``labels``); mixed case and spaces, as users write them.
MRI_LABELS = {0: "background", 1: "Left lobe", 2: "Right lobe", 3: "Vessel"}
IN_PLANE_MM = 1.5
SLICE_MM = 4.0

#: Voxel axes -> world (RAS) directions of each acquisition, and the RAS axis its slices are stacked along.
ACQUISITIONS: dict[str, tuple[np.ndarray, int]] = {
    # voxel axes: posterior, inferior (in plane), right (through plane): "PIR"
    "sagittal": (np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float), 0),
    # voxel axes: left, superior (in plane), anterior (through plane): "LSA"
    "coronal": (np.array([[-1, 0, 0], [0, 0, 1], [0, 1, 0]], float), 1),
    # voxel axes: left, posterior (in plane), superior (through plane): "LPS", as most CT
    "axial": (np.array([[-1, 0, 0], [0, -1, 0], [0, 0, 1]], float), 2),
}


def acquisition_affine(acquisition: str, shape: tuple[int, int, int]) -> np.ndarray:
    """The voxel-to-RAS affine of a volume of ``shape`` (in-plane, in-plane, slices), centred on the origin."""
    directions, _ = ACQUISITIONS[acquisition]
    spacing = np.array([IN_PLANE_MM, IN_PLANE_MM, SLICE_MM])
    affine = np.eye(4)
    affine[:3, :3] = directions * spacing  # column j: world step of voxel axis j
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    return affine


def make_case(
    case: int, acquisition: str = "sagittal", shape: tuple[int, int, int] = (32, 32, 10)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One volume: ``(image float32, label uint8, affine)``; the object jitters with ``case``."""
    rng = np.random.default_rng(100 + case)
    affine = acquisition_affine(acquisition, shape)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    world = grid @ affine[:3, :3].T + affine[:3, 3]  # (..., 3) RAS mm
    shift = rng.uniform(-3, 3, size=3)
    r, a, s = (world[..., k] - shift[k] for k in range(3))
    label = np.zeros(shape, np.uint8)
    label[((r + 9) / 8) ** 2 + (a / 13) ** 2 + (s / 11) ** 2 <= 1] = 1
    label[((r - 9) / 7) ** 2 + ((a - 2) / 12) ** 2 + (s / 10) ** 2 <= 1] = 2
    label[(r / 3) ** 2 + ((a + 4) / 3) ** 2 <= 1] = 3
    means = np.array([80.0, 420.0, 300.0, 650.0]) * rng.uniform(0.9, 1.1)
    image = means[label] + rng.normal(0, 25, shape) + 0.8 * (a + 20)  # contrast, noise and a smooth bias field
    return image.astype(np.float32), label, affine


def write_mri_dataset(
    root: Path,
    acquisition: str = "sagittal",
    num_training: int = 5,
    num_test: int = 2,
    shape: tuple[int, int, int] = (32, 32, 10),
) -> Path:
    """An MSD-layout dataset (``dataset.json``, ``imagesTr``/``labelsTr``, ``imagesTs``/``labelsTs``) under ``root``.

    Returns:
        ``root``.
    """
    entries: dict[str, list[dict[str, str]]] = {"training": [], "test": []}
    for index in range(num_training + num_test):
        split, images, labels = (
            ("training", "imagesTr", "labelsTr") if index < num_training else ("test", "imagesTs", "labelsTs")
        )
        image, label, affine = make_case(index, acquisition, shape)
        name = f"mri_{index:03d}.nii.gz"
        for folder, data in ((images, image), (labels, label)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(data, affine), str(root / folder / name))
        entries[split].append({"image": f"./{images}/{name}", "label": f"./{labels}/{name}"})
    datalist = {
        "name": f"SyntheticMRI-{acquisition}",
        "description": f"synthetic {acquisition} multi-slice MRI, {IN_PLANE_MM} mm in plane, {SLICE_MM} mm slices",
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"},
        "labels": {str(k): v for k, v in MRI_LABELS.items()},
        "numTraining": num_training,
        "numTest": num_test,
        **entries,
    }
    (root / "dataset.json").write_text(json.dumps(datalist, indent=2))
    return root


#: Voxel spacing (mm) of the marker volumes: anisotropic in plane and across, so that a wrong aspect shows.
MARKER_SPACING = (2.0, 3.0, 6.0)
#: World position (RAS mm) of the marker: to the patient's right, anterior and superior of the centre.
MARKER_RAS = (14.0, 16.0, 20.0)


def marker_volume(
    acquisition: str, shape: tuple[int, int, int] = (30, 24, 14), spacing: tuple[float, float, float] = MARKER_SPACING
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A dim volume with one bright cube (label 1) at :data:`MARKER_RAS`, stored as ``acquisition`` (axial LPS,
    sagittal PIR or coronal LSA voxel axes) with ``spacing`` along its voxel axes: ``(image, label, affine)``.

    On a radiological picture of any plane through it, the marker is drawn in the top-left quadrant (right or
    anterior on the left, anterior or superior up).
    """
    directions, _ = ACQUISITIONS[acquisition]
    affine = np.eye(4)
    affine[:3, :3] = directions * np.asarray(spacing, float)
    affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(float)
    world = grid @ affine[:3, :3].T + affine[:3, 3]
    inside = np.all(np.abs(world - np.asarray(MARKER_RAS)) <= 6.5, axis=-1)
    label = inside.astype(np.uint8)
    image = np.where(inside, 1.0, 0.1).astype(np.float32)
    return image, label, affine


def marker_voxel(affine: np.ndarray) -> np.ndarray:
    """The voxel index (rounded) of :data:`MARKER_RAS` in a volume with ``affine``."""
    return np.rint(np.linalg.solve(affine, np.array([*MARKER_RAS, 1.0]))[:3]).astype(int)
