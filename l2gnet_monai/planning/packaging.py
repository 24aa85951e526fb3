# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Distribute the bundle as a model-zoo zip, and install such a zip safely.

:func:`package_bundle` writes ``<name>_v<version>.zip`` holding one folder ``<name>/`` with ``configs/``,
``docs/``, ``LICENSE`` and (when trained) ``models/model.pt``, the form that ``python -m monai.bundle download
--url ...`` and MONAI Label expect. Override files (``configs/smoke.json``, a CPU override, ...) can be merged
into the packaged ``train.json`` and ``inference.json``. The zip is byte-for-byte reproducible (sorted entries,
fixed timestamps and permissions) and appears only when complete.

:func:`~l2gnet_monai.planning.install.install_bundle` extracts such a zip safely.

The bundle carries no Python code: its configs use the ``l2gnet_monai`` package, which must be installed where the
bundle runs (``metadata.json`` names it in ``required_packages_version``; the configs' ``requirements`` entry fails
with the ``pip install`` command to run when it is missing). See ``docs/distribution.md``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Union

from l2gnet_monai.data.errors import DatasetError

__all__ = [
    "BundleError",
    "DEFAULT_BUNDLE_NAME",
    "OVERRIDE_TARGETS",
    "REQUIRED_CONFIGS",
    "merge_overrides",
    "package_bundle",
    "read_metadata",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: Name of the bundle folder in the zip when ``metadata.json`` has no ``name``.
DEFAULT_BUNDLE_NAME = "l2gnet_segmentation"
#: Configs every distributed bundle needs (MONAI Label reads the last two; the zoo's tools all three).
REQUIRED_CONFIGS = ("metadata.json", "inference.json", "train.json")
#: Configs that override files are merged into. ``evaluate.json`` and ``multi_gpu_train.json`` are themselves
#: overrides of ``train.json`` and are used on top of the (merged) ``train.json``, so they stay unchanged.
OVERRIDE_TARGETS = ("train.json", "inference.json")
#: Files in ``configs/`` that are run artefacts, not part of the bundle (MONAI Label's multi-GPU training).
_SKIPPED_CONFIGS = frozenset({"monailabel_train.json"})
#: Timestamp of every zip entry (the earliest a zip can hold), so that the archive is reproducible.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class BundleError(DatasetError):
    """A bundle folder, override file or bundle archive that cannot be used; the message names the file.

    A :class:`~l2gnet_monai.data.msd.DatasetError` (a ``ValueError``), so the command line reports it in one line.
    """


# ------------------------------------------------------------------------------------------------------------
# reading the bundle
# ------------------------------------------------------------------------------------------------------------


def _read_json_object(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {str(path)!r} does not exist.")
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{what}: {str(path)!r} is not valid JSON ({e}).") from e
    if not isinstance(content, dict):
        raise BundleError(f"{what}: {str(path)!r} must hold a JSON object.")
    return content


def read_metadata(bundle_dir: PathLike) -> dict[str, Any]:
    """The bundle's ``configs/metadata.json``, after checking the folder has the configs a bundle needs.

    Raises:
        FileNotFoundError: ``bundle_dir``, its ``configs/`` folder or one of :data:`REQUIRED_CONFIGS` is missing.
        BundleError: a required config is not a JSON object, or ``version`` is missing or unusable in a file name.
    """
    bundle = Path(bundle_dir)
    if not bundle.is_dir():
        raise FileNotFoundError(f"bundle_dir: {str(bundle)!r} is not a folder.")
    configs = bundle / "configs"
    if not configs.is_dir():
        raise FileNotFoundError(f"bundle_dir: {str(bundle)!r} has no configs/ folder; is it a MONAI bundle?")
    for name in REQUIRED_CONFIGS:
        _read_json_object(configs / name, f"bundle config {name}")
    metadata = _read_json_object(configs / "metadata.json", "bundle metadata")
    version = metadata.get("version")
    if not isinstance(version, str) or not _VERSION_PATTERN.match(version):
        raise BundleError(
            f"bundle metadata: {str(configs / 'metadata.json')!r} needs a 'version' such as \"0.1.0\", got {version!r}."
        )
    return metadata


def _override_files(overrides: str | PathLike | Sequence[PathLike] | None) -> list[Path]:
    """Override files from a comma-separated string, a path or a sequence of paths."""
    if overrides is None:
        return []
    if isinstance(overrides, (str, os.PathLike)):
        items: Iterable[Any] = str(overrides).split(",")
    else:
        items = overrides
    files = [Path(str(item).strip()).expanduser() for item in items if str(item).strip()]
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"overrides: {str(path)!r} does not exist.")
    return files


def _load_override(path: Path) -> dict[str, Any]:
    from monai.bundle import ConfigParser

    try:
        content = ConfigParser.load_config_file(str(path))
    except Exception as e:  # JSON or YAML syntax errors, unknown suffix
        raise BundleError(f"overrides: cannot read {str(path)!r} as a JSON or YAML config ({e}).") from e
    if not isinstance(content, dict):
        raise BundleError(f"overrides: {str(path)!r} must hold a mapping of config keys to values.")
    return content


def merge_overrides(config: dict[str, Any], overrides: Sequence[PathLike], config_name: str = "config") -> dict:
    """``config`` with the keys of each override file set in turn, as ``monai.bundle run`` would merge them.

    Keys use MONAI's ``#`` nesting (``"network_def#backbone": "resnet18"`` replaces one argument). A top-level key
    is always set (one that only the other config uses is harmless); a nested key whose parent is not in
    ``config`` is skipped for this config (e.g. ``train#...`` keys for ``inference.json``).

    Args:
        config: the parsed JSON of one config file (not modified).
        overrides: override files (JSON or YAML), applied in order.
        config_name: name for log messages.

    Returns:
        The merged config, a new dict.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser(config=json.loads(json.dumps(config)))
    for path in overrides:
        for key, value in _load_override(Path(path)).items():
            parent = key.rsplit("#", 1)[0] if "#" in key else None
            if parent is not None and parent not in parser:
                logger.info("%s: %s from %s does not apply to it (no %r); skipped.", config_name, key, path, parent)
                continue
            parser[key] = value
    return parser.get()


def _set_keys(config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``config`` with each ``#``-nested key of ``values`` set (parents are created as needed)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(config=json.loads(json.dumps(config)))
    for key, value in values.items():
        parser[key] = value
    return parser.get()


def _check_model(model_file: Path, inference_config: dict[str, Any], bundle_dir: Path) -> None:
    """``model_file`` loads with ``weights_only=True`` and fits the (merged) inference config's ``network_def``.

    MONAI Label loads ``model.pt`` with ``strict=False``: weights of another network size would be skipped
    silently and the served model would be random. Packaging stops instead.
    """
    import torch
    from monai.bundle import ConfigParser

    try:
        checkpoint = torch.load(str(model_file), map_location="cpu", weights_only=True)
    except Exception as e:
        raise BundleError(
            f"model: {str(model_file)!r} does not load with torch.load(weights_only=True), as MONAI Label and "
            f"CheckpointLoader load it ({' '.join(str(e).split())[:300]})."
        ) from e
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BundleError(f"model: {str(model_file)!r} is not a state dict (or {{'model': state dict}}).")
    parser = ConfigParser(config=json.loads(json.dumps(inference_config)))
    parser["bundle_root"] = str(bundle_dir)
    parser["ckpt_path"] = str(model_file)  # the weights packaged as models/model.pt (an ensemble's, with --folds)
    expected = {k: tuple(v.shape) for k, v in parser.get_parsed_content("network_def").state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        raise BundleError(
            f"model: {str(model_file)!r} does not fit the packaged inference.json's network_def (trained with other "
            f"settings or overrides?): missing {missing[:3]}, unexpected {unexpected[:3]}, other shapes "
            f"{[(k, found[k], expected[k]) for k in shapes[:3]]}."
        )


def _plan_copy(plan: dict[str, Any]) -> dict[str, Any]:
    copy = json.loads(json.dumps({**plan, "class_names": {str(k): v for k, v in plan["class_names"].items()}}))
    return copy


def _generated_readme(metadata: dict[str, Any], name: str, overrides: Sequence[Path]) -> str:
    version = metadata["version"]
    package_version = metadata.get("required_packages_version", {}).get("l2gnet-monai", version)
    baked = ", ".join(p.name for p in overrides) or "none"
    return (
        f"# {name} {version}\n\n"
        f"{metadata.get('description', '')}\n\n"
        "## Requirements\n\n"
        "This bundle ships no code: its configs use the Python package `l2gnet-monai`. Install it first:\n\n"
        f'    pip install "l2gnet-monai=={package_version}"      # or: pip install /path/to/l2gnet-monai\n\n'
        "## Use\n\n"
        f"    python -m monai.bundle run --config_file {name}/configs/inference.json --input_dir DIR   # segment\n"
        f"    python -m monai.bundle run --config_file {name}/configs/train.json                       # train\n\n"
        "MONAI Label (`monaibundle` app): extract into `<app>/model/` and start the server with\n"
        f"`--conf models {name}`. See the l2gnet-monai documentation (`docs/monailabel.md`).\n\n"
        f"Override files merged into train.json and inference.json when packaging: {baked}.\n"
    )


# ------------------------------------------------------------------------------------------------------------
# writing the zip
# ------------------------------------------------------------------------------------------------------------


def _zip_info(arcname: str, is_dir: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, date_time=_ZIP_DATE_TIME)
    info.create_system = 3  # Unix, so that the permissions below are read back
    if is_dir:
        info.external_attr = ((stat.S_IFDIR | 0o755) << 16) | 0x10
        info.compress_type = zipfile.ZIP_STORED
    else:
        info.external_attr = (stat.S_IFREG | 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
    return info


def _write_zip(path: Path, files: dict[str, bytes | Path]) -> None:
    """A reproducible zip: directory entries and files in sorted order, fixed dates and modes."""
    directories = {str(parent) + "/" for arcname in files for parent in PurePosixPath(arcname).parents}
    directories.discard("./")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arcname in sorted(directories | set(files)):
            if arcname in directories:
                archive.writestr(_zip_info(arcname, is_dir=True), b"")
                continue
            source = files[arcname]
            info = _zip_info(arcname, is_dir=False)
            if isinstance(source, bytes):
                archive.writestr(info, source)
            else:
                info.file_size = source.stat().st_size  # lets zipfile pick ZIP64 for files over 2 GiB
                with open(source, "rb") as src, archive.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)


def package_bundle(
    bundle_dir: PathLike = "bundle",
    output_dir: PathLike = "dist",
    name: str | None = None,
    overrides: str | PathLike | Sequence[PathLike] | None = None,
    include_model: bool = True,
    folds: Any = None,
    test_time_flips: bool = False,
) -> Path:
    """Write the bundle as ``<output_dir>/<name>_v<version>.zip`` in the MONAI model zoo's form.

    The zip holds one folder ``<name>/`` with every file of ``configs/`` (override files merged into
    ``train.json`` and ``inference.json``), ``docs/`` (a ``README.md`` made from ``metadata.json`` if the bundle
    has none), ``LICENSE`` (the bundle's, else the one in the folder above it, i.e. the repository's) and, with
    ``include_model`` and when it exists, ``models/model.pt``. Nothing else (data, outputs, other checkpoints).
    The weights are checked to load with ``weights_only=True`` and to fit the packaged network.

    A trained model's plan travels inside ``models/model.pt`` (see :mod:`l2gnet_monai.planning.plan`), with its
    readable copy ``models/plan.json``: the packaged ``metadata.json`` names the trained classes (what MONAI Label
    shows) and carries the model's own evaluation scores (``models/metadata.json``'s ``eval_metrics``),
    ``inference.json`` reads the plan, and ``train.json`` continues the trained model (its classes and network)
    when it runs without ``dataset_dir``, as in MONAI Label's training. No training override needs to be repeated.

    Args:
        bundle_dir: the bundle folder (with ``configs/``).
        output_dir: where the zip goes (created if needed); an existing zip of the same name is replaced.
        name: the bundle's folder name in the zip, which is also its model name in MONAI Label;
            default: ``metadata.json``'s ``name``, else ``l2gnet_segmentation``.
        overrides: config override files merged, in order, into the packaged ``train.json`` and
            ``inference.json``; a comma-separated string or a sequence of paths.
        include_model: put ``models/model.pt`` in the zip when it exists.
        folds: ``"all"`` or fold numbers: package the ensemble of these cross-validation folds
            (``models/fold_K/model.pt``, see :func:`~l2gnet_monai.planning.ensemble.ensemble_checkpoint`) as the
            zip's ``models/model.pt``, which MONAI Label then serves like any model.
        test_time_flips: the packaged model also averages over mirrored inputs.

    Returns:
        The path of the zip.

    Raises:
        FileNotFoundError: the bundle folder, a required config, an override file or a ``LICENSE`` is missing.
        BundleError: invalid JSON, an unusable name or version, or weights that do not fit the network.
    """
    bundle = Path(bundle_dir).expanduser()
    metadata = read_metadata(bundle)
    name = str(name) if name is not None else str(metadata.get("name") or DEFAULT_BUNDLE_NAME)
    if not _NAME_PATTERN.match(name):
        raise BundleError(f"name: {name!r} cannot be a folder name (letters, digits, '_', '-', '.' only).")
    override_files = _override_files(overrides)
    configs = bundle / "configs"

    from l2gnet_monai.planning.checkpoint import trained_plan
    from l2gnet_monai.planning.plan import METADATA_FILE, PLAN_FILE, metadata_with_plan, training_overrides

    model_file = bundle / "models" / "model.pt"
    try:
        if include_model and (folds is not None or test_time_flips):
            from l2gnet_monai.planning.ensemble import trained_model_file

            model_file = Path(
                trained_model_file(
                    bundle / "models", bundle / "models", folds, test_time_flips, configs / "metadata.json"
                )
            )
        plan = trained_plan(model_file) if include_model and model_file.is_file() else {}
    except DatasetError as e:  # not a checkpoint that loads safely, or a plan.json that disagrees with it
        raise BundleError(f"model: {e}") from e
    trained_metadata = model_file.parent / METADATA_FILE

    files: dict[str, bytes | Path] = {}
    merged: dict[str, dict[str, Any]] = {}
    for path in sorted(configs.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name in _SKIPPED_CONFIGS:
            continue
        if path.name in OVERRIDE_TARGETS:
            config = _read_json_object(path, f"bundle config {path.name}")
            merged[path.name] = merge_overrides(config, override_files, path.name) if override_files else config
            if plan and path.name == "train.json":  # the packaged train.json continues the trained model
                merged[path.name] = _set_keys(merged[path.name], training_overrides(plan))
            files[f"{name}/configs/{path.name}"] = (json.dumps(merged[path.name], indent=4) + "\n").encode()
        elif path.name == "metadata.json" and plan:
            # the trained model's own metadata (classes, modality, its evaluation scores), else made from the plan
            packaged = metadata_with_plan(metadata, plan)
            if trained_metadata.is_file():
                packaged["eval_metrics"] = _read_json_object(trained_metadata, "the trained model's metadata").get(
                    "eval_metrics", {}
                )
            else:
                packaged["eval_metrics"] = {}
            files[f"{name}/configs/{path.name}"] = (json.dumps(packaged, indent=4) + "\n").encode()
        else:
            files[f"{name}/configs/{path.name}"] = path

    docs = bundle / "docs"
    if docs.is_dir():
        for path in sorted(docs.rglob("*")):
            relative = path.relative_to(docs)
            if path.is_file() and not any(p.startswith(".") or p == "__pycache__" for p in relative.parts):
                files[f"{name}/docs/{relative.as_posix()}"] = path
    if f"{name}/docs/README.md" not in files:
        files[f"{name}/docs/README.md"] = _generated_readme(metadata, name, override_files).encode()

    license_file = next((p for p in (bundle / "LICENSE", bundle.resolve().parent / "LICENSE") if p.is_file()), None)
    if license_file is None:
        raise FileNotFoundError(f"LICENSE: neither {str(bundle / 'LICENSE')!r} nor the folder above it has one.")
    files[f"{name}/LICENSE"] = license_file

    if include_model and model_file.is_file():
        _check_model(model_file, merged["inference.json"], bundle)
        files[f"{name}/models/model.pt"] = model_file
        if plan:  # the readable copy of the plan inside model.pt
            files[f"{name}/models/{PLAN_FILE}"] = (json.dumps(_plan_copy(plan), indent=4) + "\n").encode()
    elif include_model:
        logger.warning("model: %s does not exist; the zip carries no weights (train the bundle first).", model_file)

    output = Path(output_dir).expanduser()
    output.mkdir(parents=True, exist_ok=True)
    target = output / f"{name}_v{metadata['version']}.zip"
    handle, temporary = tempfile.mkstemp(dir=output, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        _write_zip(Path(temporary), files)
        with open(temporary, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info("wrote %s (%d files)", target, len(files))
    return target


# ------------------------------------------------------------------------------------------------------------
# installing a zip
# ------------------------------------------------------------------------------------------------------------
