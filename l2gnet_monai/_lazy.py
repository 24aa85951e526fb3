# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Public names of a package imported from their modules on first use (PEP 562), so that importing a package
(``l2gnet-monai --help``, a config's ``$import``) does not load torch and MONAI until a name needs them."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, names: Mapping[str, str], namespace: Mapping[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of a package whose public names live in its modules.

    Args:
        package: the package's ``__name__`` (for the error message).
        names: ``{public name: module that defines it}``.
        namespace: the package's ``globals()``.

    Returns:
        ``(__getattr__, __dir__)``, to assign at the package's top level.
    """

    def get_attribute(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def list_names() -> list[str]:
        return sorted(set(namespace) | set(names))

    return get_attribute, list_names
