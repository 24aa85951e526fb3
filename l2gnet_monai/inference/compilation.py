# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""``torch.compile`` for inference: a frozen, fixed-batch compiled copy of a network that notices new weights.

Inductor's *freezing* treats the weights as constants: it folds batch norms into the convolutions and packs the
weights once into the layout oneDNN (CPU) or cuDNN wants, instead of at every call. On a 2-core AVX-512 CPU this
made the default L2GNet 1.2-1.3x faster than the same network in eager mode, in float32 and under bfloat16
autocast alike (3.3x MONAI's defaults in bf16, ``docs/benchmarks.md``); without freezing the gain was 1.15x. The
price is a compilation of 20-60 s on such a CPU, and weights that are baked in: :class:`CompiledInference`
therefore compiles a copy of the network and compiles again when the network's weights change (a model validated
during training).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import shutil
import threading
import time
import weakref
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from l2gnet_monai._weights import weights_version

__all__ = [
    "COMPILE_LOCK",
    "CompilationError",
    "CompiledInference",
    "compiler_available",
    "detached_copy",
    "weights_version",
]

logger = logging.getLogger(__name__)

#: Held by every compilation in the process, so that one thread at a time patches Inductor's configuration.
COMPILE_LOCK = threading.Lock()


class CompilationError(RuntimeError):
    """``torch.compile`` could not compile the network (no C++ compiler or Triton, or an unsupported operation)."""


def compiler_available(device: torch.device) -> Tuple[bool, str]:
    """Whether ``torch.compile``'s default backend (Inductor) can generate code for ``device``.

    Inductor needs a C++ compiler for CPU code and Triton for CUDA code; servers in hospitals often have neither.
    The C++ compilers are looked up here on ``PATH`` from Inductor's own list (``torch._inductor.config.cpp.cxx``,
    which holds ``$CXX`` or ``g++``), without calling Inductor's search: that search caches its answer for the
    whole process, so a check made under a temporarily changed configuration would outlive the change.

    Args:
        device: where the network runs.

    Returns:
        ``(True, "")``, or ``(False, reason)`` with what is missing.
    """
    if device.type == "cpu":
        import torch._inductor.config as inductor_config

        configured = inductor_config.cpp.cxx
        candidates = [name for name in (configured if isinstance(configured, (list, tuple)) else (configured,)) if name]
        if any(shutil.which(name) for name in candidates):
            return True, ""
        return False, (
            f"Inductor found no C++ compiler for CPU code (looked for {', '.join(candidates) or 'none'} on PATH); "
            "install g++ or set CXX"
        )
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return False, "Inductor needs Triton for CUDA code and it is not installed (pip install triton)"
        return True, ""
    return False, f"Inductor has no backend for device type {device.type!r}"


class CompiledInference:
    """``network`` compiled with ``torch.compile`` (Inductor, weights frozen) for inputs of one batch size.

    Inputs with fewer samples than ``batch_size`` (the last slices of a volume) are padded with zeros to it and
    the padding's outputs dropped, so that one graph serves every call: a second batch size would compile again.
    The compiled graph holds a copy of the weights (in ``memory_format``): when :func:`weights_version` of
    ``network`` has changed since the compilation, :meth:`stale` is true and the next call compiles again from the
    new weights.

    Only a weak reference to ``network`` is kept, so that a cache keyed by the network (weakly) may hold this
    object without keeping the network alive; once the network is gone, the object is stale and cannot compile.
    Compilations are serialised across the process (:data:`COMPILE_LOCK`): Inductor's ``freezing`` switch is a
    process-wide setting, patched only while one compilation runs; calls to compiled graphs do not touch it.

    Args:
        network: the module (in eval mode for inference); it is not modified.
        batch_size: the batch size every call is padded to.
        memory_format: memory format of the padded batch and of the compiled copy's 4-D weights.
    """

    def __init__(
        self, network: nn.Module, batch_size: int, memory_format: torch.memory_format = torch.contiguous_format
    ) -> None:
        self._network = weakref.ref(network)
        self.name = type(network).__name__
        self.batch_size = batch_size
        self.memory_format = memory_format
        self.compilations = 0
        self.compile_seconds: Optional[float] = None
        self._compiled: Optional[Any] = None
        self._version: Optional[Tuple[Tuple[int, int], ...]] = None

    @property
    def network(self) -> Optional[nn.Module]:
        """The network this object compiles, or ``None`` once it has been freed."""
        return self._network()

    def stale(self) -> bool:
        """Whether the network's weights changed since the last compilation (or none happened yet, or it is gone)."""
        network = self._network()
        return self._compiled is None or network is None or self._version != weights_version(network)

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """
        Args:
            x: a batch ``(N, C, *spatial)`` with ``N <= batch_size``.
            args, kwargs: passed on to the network.

        Returns:
            The network's output for the ``N`` inputs.

        Raises:
            CompilationError: the compilation failed (raised by the call that compiles).
        """
        count = x.shape[0]
        if count > self.batch_size:
            raise ValueError(f"CompiledInference: batch of {count} inputs, compiled for at most {self.batch_size}.")
        if count < self.batch_size:
            padded = x.new_zeros((self.batch_size, *x.shape[1:])).contiguous(memory_format=self.memory_format)
            padded[:count] = x
            x = padded
        compiled = self._compiled if not self.stale() else self.compile(x, *args, **kwargs)
        return _first(compiled(x, *args, **kwargs), count)

    def compile(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """Compile a frozen copy of the network's current weights by running it on ``x`` (a full batch) and
        return the compiled module; run it under the autocast and grad mode of the calls to come.

        Raises:
            CompilationError: the network is gone, or the compilation failed.
        """
        network = self._network()
        if network is None:
            raise CompilationError(f"CompiledInference: the {self.name} to compile has been freed.")
        # a new copy each time: the frozen graph is cached against the module object, so compiling the same
        # object again could reuse the graph that holds the old weights
        version = weights_version(network)
        replica = detached_copy(network)
        if self.memory_format != torch.contiguous_format:
            replica.to(memory_format=self.memory_format)
        del network
        compiled = torch.compile(replica, dynamic=False)
        with COMPILE_LOCK:
            start = time.perf_counter()
            try:
                with _freezing():
                    compiled(x, *args, **kwargs)
            except Exception as error:
                raise CompilationError(f"torch.compile failed for {self.name}: {error}") from error
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            self.compile_seconds = time.perf_counter() - start
        self.compilations += 1
        self._compiled, self._version = compiled, version
        logger.info(
            "Compiled %s for batches of %d in %.1f s (compilation %d).",
            self.name,
            self.batch_size,
            self.compile_seconds,
            self.compilations,
        )
        return compiled


def _freezing() -> contextlib.AbstractContextManager:
    """Inductor's ``freezing`` switched on while compiling, under :data:`COMPILE_LOCK`. (``torch.compile(options=
    {"freezing": True})`` compiled but did not freeze: 1.1x faster than eager against 1.5x for the config switch,
    default L2GNet, bf16, 2 cores.) A recompilation that a later call triggers (another autocast or grad mode than
    the compiled one) runs without it: correct, only slower."""
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=True)


def detached_copy(network: nn.Module) -> nn.Module:
    """A deep copy of ``network``; tensors it keeps from a training pass (e.g. L2GNet's recorded quantization
    loss, which torch refuses to deep-copy because it is not a graph leaf) are copied detached."""
    memo: Dict[int, Any] = {}
    for module in network.modules():
        for value in vars(module).values():
            items = (
                value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
            )
            for item in items:
                if isinstance(item, torch.Tensor) and item.grad_fn is not None:
                    memo[id(item)] = item.detach()
    with torch.inference_mode(False):  # normal tensors, whatever mode the inference runs in
        return copy.deepcopy(network, memo)


def _first(out: Any, count: int) -> Any:
    """The outputs of the first ``count`` samples (tensors, or tuples, lists and dicts of them)."""
    if isinstance(out, torch.Tensor):
        return out[:count]
    if isinstance(out, (tuple, list)):
        return type(out)(_first(o, count) for o in out)
    if isinstance(out, dict):
        return {k: _first(v, count) for k, v in out.items()}
    return out
