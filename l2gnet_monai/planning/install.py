# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Install a bundle zip safely: every entry is checked before anything is written.

:func:`install_bundle` extracts a zip made by :func:`~l2gnet_monai.planning.packaging.package_bundle` (or any
model-zoo bundle zip) into a folder; an archive with an entry that would land outside the target (``..``, an
absolute path, a link), entries outside one top-level folder, or no ``configs/metadata.json`` is refused first.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Union

from l2gnet_monai.planning.packaging import BundleError

__all__ = ["check_archive", "install_bundle"]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]


def check_archive(archive: zipfile.ZipFile, target_dir: PathLike) -> str:
    """Check every entry of a bundle zip before extracting any, and return the bundle's folder name.

    Refused: names with ``\\``, absolute names (``/x``, ``C:x``), ``..`` or ``.`` components, names that resolve outside
    ``target_dir``, symbolic links and other special files, entries outside a single top-level folder, and an
    archive without ``<folder>/configs/metadata.json``.

    Raises:
        BundleError: naming the first offending entry.
    """
    root = Path(target_dir).resolve()
    tops: set[str] = set()
    names = archive.infolist()
    if not names:
        raise BundleError(f"archive: {archive.filename!r} is empty.")
    for info in names:
        name = info.filename
        unsafe = (
            not name
            or "\\" in name
            or "\x00" in name
            or name.startswith("/")
            or re.match(r"^[A-Za-z]:", name) is not None
            or any(part in ("..", ".", "") for part in name.rstrip("/").split("/"))
        )
        mode = info.external_attr >> 16
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise BundleError(f"archive: entry {name!r} is a link or special file; refusing to extract.")
        if not unsafe:
            resolved = (root / name).resolve()
            unsafe = resolved != root and root not in resolved.parents
        if unsafe:
            raise BundleError(f"archive: entry {name!r} would be written outside {str(root)!r}; refusing to extract.")
        tops.add(name.split("/", 1)[0])
    if len(tops) != 1:
        raise BundleError(f"archive: expected one top-level bundle folder, found {sorted(tops)[:5]}.")
    top = tops.pop()
    if f"{top}/configs/metadata.json" not in archive.namelist():
        raise BundleError(f"archive: {archive.filename!r} has no {top}/configs/metadata.json; is it a MONAI bundle?")
    return top


def install_bundle(archive_path: PathLike, bundle_dir: PathLike, overwrite: bool = False) -> Path:
    """Extract a bundle zip into ``bundle_dir/<name>/``, for a machine without ``monai.bundle download``.

    Every entry is checked first (:func:`check_archive`); nothing is written if one is unsafe. The bundle is
    extracted into a temporary folder beside the destination and renamed into place, so ``bundle_dir/<name>``
    never holds a partial bundle.

    Args:
        archive_path: the zip (e.g. made by :func:`package_bundle`).
        bundle_dir: the folder to install into (created if needed); for MONAI Label, ``<app>/model``.
        overwrite: replace an existing, non-empty ``bundle_dir/<name>``.

    Returns:
        The installed bundle's folder.

    Raises:
        FileNotFoundError: no such archive.
        FileExistsError: the bundle is already installed and ``overwrite`` is false.
        BundleError: not a zip, or an unsafe or malformed archive.
    """
    source = Path(archive_path).expanduser()
    if not source.is_file():
        raise FileNotFoundError(f"archive: {str(source)!r} does not exist.")
    if not zipfile.is_zipfile(source):
        raise BundleError(f"archive: {str(source)!r} is not a zip file.")
    target_root = Path(bundle_dir).expanduser()
    with zipfile.ZipFile(source) as archive:
        top = check_archive(archive, target_root)
        destination = target_root / top
        if destination.exists() and (not destination.is_dir() or any(destination.iterdir())) and not overwrite:
            raise FileExistsError(f"bundle_dir: {str(destination)!r} exists; pass --overwrite to replace it.")
        target_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target_root, prefix=f".{top}.install-"))
        try:
            for info in archive.infolist():
                path = staging.joinpath(*info.filename.rstrip("/").split("/"))
                if info.is_dir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            if destination.exists() or destination.is_symlink():
                old = staging / ".replaced"
                os.replace(destination, old)
            os.replace(staging / top, destination)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("installed %s", destination)
    return destination
