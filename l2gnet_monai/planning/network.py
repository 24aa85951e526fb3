# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""The network of a plan: built from its definition, and its definition read back from a built network.

A plan records the whole network definition that training used, whatever its class::

    {"_target_": "l2gnet_monai.networks.L2GNet", "spatial_dims": 2, "out_channels": 9, "backbone": "resnet50", ...}
    {"_target_": "monai.networks.nets.FlexibleUNet", "in_channels": 1, "out_channels": 4, "backbone": "resnet18", ...}

so that evaluation, inference, packaging and MONAI Label build the same network with no override. The bundle's
``network_def`` is :func:`planned_network`: with a plan (inference, evaluation, a resumed training) it builds the
plan's network and ignores the config's own arguments; without one (a new training) it builds ``network`` with the
config's arguments and remembers them, so that :func:`network_definition` can give them to the plan. A network
that records its own arguments (``init_args``, as :class:`~l2gnet_monai.networks.L2GNet` does) needs neither.
"""

from __future__ import annotations

import importlib
import json
import weakref
from collections.abc import Mapping
from typing import Any

from torch import nn

from l2gnet_monai.data.errors import DatasetError

__all__ = ["DEFAULT_NETWORK", "planned_network", "build_network", "network_definition"]

#: The network of the bundle when a config names none.
DEFAULT_NETWORK = "l2gnet_monai.networks.L2GNet"

# The definitions of the networks built here, by network; weak keys: a dropped network leaves nothing behind.
_DEFINITIONS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _locate(target: str) -> Any:
    module, _, name = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise DatasetError(f"network: cannot import {target!r} ({e}); give the full dotted path of its class.") from e


def _json_safe(definition: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(dict(definition)))
    except (TypeError, ValueError) as e:
        raise DatasetError(
            f"network: the arguments of {definition.get('_target_')!r} must be JSON values (numbers, strings, lists, "
            f"mappings) to be recorded in the plan ({e})."
        ) from e


def build_network(definition: Mapping[str, Any]) -> nn.Module:
    """The network ``{"_target_": "package.Class", **arguments}`` describes, remembered for :func:`network_definition`.

    Args:
        definition: the class's dotted path under ``"_target_"`` and its keyword arguments (JSON values).

    Returns:
        The network, on the CPU.

    Raises:
        DatasetError: no ``_target_``, a class that cannot be imported, or arguments that are not JSON values.
    """
    definition = _json_safe(definition)
    arguments = dict(definition)
    target = arguments.pop("_target_", None)
    if not target:
        raise DatasetError(f"network: the definition {definition} names no class under '_target_'.")
    network = _locate(target)(**arguments)
    if not isinstance(network, nn.Module):
        raise DatasetError(f"network: {target!r} built a {type(network).__name__}, not a torch.nn.Module.")
    _DEFINITIONS[network] = definition
    return network


def planned_network(
    plan: Mapping[str, Any] | None = None, network: str = DEFAULT_NETWORK, **arguments: Any
) -> nn.Module:
    """The network of ``plan``; without a plan, ``network(**arguments)``.

    With a plan, the config's ``network`` and ``arguments`` are not used at all: the weights to be loaded were
    trained with the plan's network, which the plan records whole.

    Args:
        plan: a training plan (``{}`` or ``None``: none), whose ``"network"`` is the definition to build.
        network: the class (dotted path) to build without a plan.
        arguments: its keyword arguments without a plan.

    Returns:
        The network, on the CPU.
    """
    recorded = (plan or {}).get("network")
    if recorded:
        return build_network(recorded)
    return build_network({"_target_": network, **arguments})


def _unwrap(network: nn.Module) -> nn.Module:
    while isinstance(network, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        network = network.module
    return network


def network_definition(network: nn.Module) -> dict[str, Any]:
    """The definition that rebuilds ``network``'s architecture: ``{"_target_": "package.Class", **arguments}``.

    Taken from the network's own ``init_args`` where it keeps them (L2GNet: the arguments that shape it, without
    the path of pretrained encoder weights, which the trained weights replace), else from the definition it was
    built from by :func:`build_network` / :func:`planned_network`.

    Args:
        network: the network, possibly wrapped in ``DistributedDataParallel``.

    Raises:
        DatasetError: a network built some other way (a config's plain ``"_target_"``), whose arguments cannot be
            read back; the message says how to declare it.
    """
    module = _unwrap(network)
    init_args = getattr(module, "init_args", None)
    if isinstance(init_args, Mapping):
        target = f"{type(module).__module__}.{type(module).__qualname__}"
        return _json_safe({"_target_": target, **init_args})
    if module in _DEFINITIONS:
        return json.loads(json.dumps(_DEFINITIONS[module]))
    name = f"{type(module).__module__}.{type(module).__qualname__}"
    raise DatasetError(
        f"network_def: a {name} built from a plain '_target_' cannot be recorded in the plan (its arguments cannot be "
        'read back from it). Write it as {"_target_": "l2gnet_monai.planning.planned_network", "network": '
        f'"{name}", ...its arguments...}} (docs/bundle.md, "Another network").'
    )
