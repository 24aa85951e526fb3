"""ContiguousNibabelReader gives LoadImaged's result (values, dtype, affine, metadata), in C order."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.transforms import LoadImaged

from l2gnet_monai.transforms.readers import ContiguousNibabelReader


def _nifti(path: Path, data: np.ndarray, slope: float | None = None) -> Path:
    image = nib.Nifti1Image(data, np.diag([-0.7, -0.8, 2.5, 1.0]))
    if slope is not None:
        image.header.set_slope_inter(slope, -1024.0)
    nib.save(image, str(path))
    return path


def test_loads_what_monais_nibabel_reader_loads(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    files = [
        _nifti(tmp_path / "ct.nii.gz", rng.integers(-1000, 1500, (23, 17, 9)).astype(np.int16)),
        _nifti(tmp_path / "scaled.nii.gz", rng.integers(0, 3000, (23, 17, 9)).astype(np.int16), slope=0.5),
        _nifti(tmp_path / "mri.nii", rng.random((11, 13, 5))),  # float64, uncompressed
    ]
    for path in files:
        expected = LoadImaged("image")({"image": str(path)})["image"]
        got = LoadImaged("image", reader=ContiguousNibabelReader())({"image": str(path)})["image"]
        assert got.dtype == expected.dtype == torch.float32 and got.shape == expected.shape
        assert got.is_contiguous() and torch.equal(got.as_tensor(), expected.as_tensor()), path.name
        torch.testing.assert_close(got.affine, expected.affine)
        assert got.meta["filename_or_obj"] == expected.meta["filename_or_obj"]
        assert np.array_equal(got.meta["spatial_shape"], expected.meta["spatial_shape"])


def test_keeps_the_files_dtype_when_asked_and_falls_back_for_other_formats(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "ct.nii.gz", np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6))
    reader = ContiguousNibabelReader(dtype=None)
    data, _ = reader.get_data(reader.read(str(path)))
    assert data.dtype == np.int16 and data.flags.c_contiguous
    np.testing.assert_array_equal(data, np.arange(4 * 5 * 6).reshape(4, 5, 6))
    array = np.random.default_rng(1).random((3, 4, 5)).astype(np.float32)
    np.save(tmp_path / "volume.npy", array)  # not NIfTI: LoadImaged's own NumpyReader reads it
    loaded = LoadImaged("image", reader=ContiguousNibabelReader())({"image": str(tmp_path / "volume.npy")})["image"]
    np.testing.assert_array_equal(np.asarray(loaded), array)
