# Copyright (c) l2gnet-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
"""Slice-by-slice inference tuned for the device: precision, memory format and batch size.

:class:`TunedSliceInferer` is MONAI's :class:`~monai.inferers.SliceInferer` with the three choices that
decide its speed made for the machine it runs on:

* **precision** (``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"``): ``auto`` runs the network under
  ``torch.autocast`` in bfloat16 on CPUs with native bf16 arithmetic (AVX-512 BF16 or AMX) and on GPUs
  of compute capability >= 8.0, in float16 on older GPUs, and in float32 otherwise (:func:`resolve_precision`).
  L2GNet's quantizer and optimal-transport mapper run in float32 inside autocast regardless.
* **memory format**: ``channels_last`` for the network and its inputs (oneDNN and cuDNN convolutions are
  faster in NHWC; on a 2-core AVX-512 CPU the ResNet50 L2GNet ran 1.3x faster in fp32 and 1.2x faster under
  bf16 than with NHWC inputs alone, which are slower than NCHW: the network must be converted too). The
  caller's module is not converted: the engine runs a private ``channels_last`` copy of it, made again when its
  weights or its train/eval mode change (one copy of the weights more in memory).
* **batch size** (``sw_batch_size="auto"``): measured on the first volume, by timing the network on
  1, 2, 4, ... of its slices until the throughput stops growing (:func:`measure_batch_size`).

and, optionally, compilation (``compile``): ``torch.compile`` with frozen weights
(:mod:`l2gnet_monai.inference.compilation`),
1.2-1.3x faster than eager on a 2-core AVX-512 CPU after a compilation of 20-60 s. ``compile="auto"`` pays that
price only when the work is long enough, and never on a request's path: the network runs eagerly until it has
spent ``compile_after`` seconds (by default about one compilation), then a background thread compiles it while
calls go on eagerly, and calls run the compiled network once it is ready (from torch 2.13, see
:data:`BACKGROUND_COMPILATION`; older versions compile in the call that crosses the budget).

One engine may be shared by threads (a server answering requests in parallel): what it learns (copies, batch
sizes, compiled graphs, eager time) is kept per network in weak-keyed caches that never refer back to the
network, decided once under a lock, and nothing of a call is stored on the engine (with ``compile``, threads need
torch >= 2.13, the version tested: under torch 2.3 threads running compiled and eager code at once crashed). It
changes no process-wide setting: on CUDA, ``torch.backends.cudnn.benchmark = True`` is faster for fixed slice
sizes and is left to the caller (the bundle's ``inference.json`` sets it at ``initialize``).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Dict, NamedTuple, Optional, Tuple, Union

import torch
from monai.inferers import SliceInferer
from monai.utils import convert_to_tensor
from torch import nn

from l2gnet_monai.inference.batch_size import measure_batch_size, synchronize
from l2gnet_monai.inference.compilation import (
    CompilationError,
    CompiledInference,
    compiler_available,
    detached_copy,
    weights_version,
)
from l2gnet_monai.inference.precision import PRECISIONS, cpu_has_native_bf16, resolve_precision

__all__ = [
    "PRECISIONS",
    "BatchSizeChoice",
    "TunedSliceInferer",
    "cpu_has_native_bf16",
    "measure_batch_size",
    "resolve_precision",
]

logger = logging.getLogger(__name__)

COMPILE_CHOICES = (False, True, "auto")

#: Whether ``compile="auto"`` compiles in a background thread: from the torch version tested with threads running
#: compiled and eager code at once (2.13); under torch 2.3 that crashed, so older versions compile in the call that
#: crosses the budget, which waits for it.
BACKGROUND_COMPILATION = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 13)


class BatchSizeChoice(NamedTuple):
    """A measured batch size and the throughput (slices per second) of every batch size tried."""

    batch_size: int
    throughput: Dict[int, float]


@dataclass(eq=False)
class _NetworkState:
    """What an engine knows about one network. Values of a weak-keyed cache: nothing here may refer to the network
    (the copy and the compiled graphs are copies; :class:`CompiledInference` keeps a weak reference)."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    replica: Optional[nn.Module] = None
    replica_version: Optional[Tuple[Any, ...]] = None
    batch_sizes: Dict[Tuple[Any, ...], BatchSizeChoice] = field(default_factory=dict)
    eager_seconds: float = 0.0
    eager_only: bool = False
    compiled: Dict[Tuple[Any, ...], CompiledInference] = field(default_factory=dict)
    compiling: Dict[Tuple[Any, ...], threading.Thread] = field(default_factory=dict)


class TunedSliceInferer(SliceInferer):
    """:class:`~monai.inferers.SliceInferer` with autocast, ``channels_last`` and a measured batch size.

    Drop-in for ``SliceInferer`` in ``SupervisedEvaluator`` and bundle configs (``"_target_":
    "l2gnet_monai.inference.TunedSliceInferer"``). The network is called under ``torch.autocast`` with the
    dtype of :func:`resolve_precision` (this overrides an evaluator's own ``amp`` setting), on slices in
    ``channels_last``; the logits come back in float32.

    The first call with a network makes a private ``channels_last`` copy of it (the caller's module, e.g. a model
    being trained and validated, is left as it was) and, with ``sw_batch_size="auto"``, measures the batch size on
    that volume's slices (a few seconds on a CPU); later calls with the same network and slice size reuse both,
    and a call after the network's weights or train/eval mode changed copies it again. A ``DistributedDataParallel``
    network is run through its ``module`` (no collective calls at inference), without a copy. Safe to share between
    threads (see the module's docstring).

    Args:
        roi_size: the 2-D slice size, e.g. ``(224, 224)``.
        spatial_dim: the axis of the volume the slices are taken along (0, 1 or 2; 2 = axial for RAS).
        sw_batch_size: slices per network call, or ``"auto"`` to measure it.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see :func:`resolve_precision`).
        channels_last: run a ``channels_last`` copy of the network on ``channels_last`` inputs.
        compile: ``False`` (eager), ``True`` (compile at the first call, which waits for it) or ``"auto"``
            (compile in a background thread once the network has run ``compile_after`` seconds eagerly; calls
            run eagerly until it is ready). The batch size is measured eagerly first; the network is compiled for
            that batch (the last, smaller batch of a volume is padded) with its weights frozen into the graph, from
            a copy, and compiled again when its weights change (with ``"auto"``, a network whose weights change,
            i.e. one being trained, goes back to eager for good). ``True`` raises when Inductor cannot compile here
            (no C++ compiler on CPU, no Triton on CUDA); ``"auto"`` stays eager then.
        compile_after: seconds of eager network time after which ``compile="auto"`` compiles.
        max_batch_size: the largest batch that ``"auto"`` tries (also capped by the number of slices).
        kwargs: other arguments of :class:`~monai.inferers.SlidingWindowInferer` (``overlap``, ``mode``,
            ``sw_device``, ``device``, ``progress``, ...).
    """

    def __init__(
        self,
        roi_size: Union[Sequence[int], int],
        spatial_dim: int = 2,
        sw_batch_size: Union[int, str] = "auto",
        precision: str = "auto",
        channels_last: bool = True,
        compile: Union[bool, str] = False,
        compile_after: float = 30.0,
        max_batch_size: int = 64,
        **kwargs: Any,
    ) -> None:
        if compile not in COMPILE_CHOICES or (compile == 1 and compile is not True):
            raise ValueError(f"TunedSliceInferer: compile must be false, true or 'auto', got {compile!r}.")
        if precision not in PRECISIONS:
            raise ValueError(f"TunedSliceInferer: precision must be one of {PRECISIONS}, got {precision!r}.")
        if sw_batch_size != "auto" and not (isinstance(sw_batch_size, int) and sw_batch_size >= 1):
            raise ValueError(f"TunedSliceInferer: sw_batch_size must be 'auto' or an int >= 1, got {sw_batch_size!r}.")
        super().__init__(
            spatial_dim=spatial_dim,
            roi_size=roi_size,
            sw_batch_size=1 if sw_batch_size == "auto" else sw_batch_size,
            **kwargs,
        )
        self.auto_batch_size = sw_batch_size == "auto"
        self.precision = precision
        self.channels_last = channels_last
        self.compile = compile
        self.compile_after = compile_after
        self.max_batch_size = max_batch_size
        self._lock = threading.Lock()
        self._states: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def autocast_dtype(self, device: torch.device) -> Optional[torch.dtype]:
        """The autocast dtype used on ``device`` (``None``: float32)."""
        return resolve_precision(self.precision, device)

    def batch_size_choices(self, network: nn.Module) -> Dict[Tuple[Any, ...], BatchSizeChoice]:
        """The batch sizes measured for ``network``, by ``(roi_size, channels, device, autocast dtype)``."""
        state = self._states.get(network)
        return dict(state.batch_sizes) if state is not None else {}

    def compiled(self, network: nn.Module) -> Optional[CompiledInference]:
        """The compiled form of ``network`` that this inferer runs, if it compiled it (see ``compile``)."""
        state = self._states.get(network)
        return next(reversed(state.compiled.values()), None) if state is not None and state.compiled else None

    def wait_for_compilation(self, network: nn.Module, timeout: Optional[float] = None) -> Optional[CompiledInference]:
        """Wait for the background compilations of ``network`` (``compile="auto"``) and return :meth:`compiled`."""
        state = self._states.get(network)
        for thread in list(state.compiling.values()) if state is not None else []:
            thread.join(timeout)
        return self.compiled(network)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """
        Args:
            inputs: volume ``(B, C, *spatial)`` (3 spatial dims).
            network: the 2-D network (an ``nn.Module`` gets the device-specific preparation).
            args, kwargs: passed on to the network.

        Returns:
            The network's output for the whole volume, ``(B, out_channels, *spatial)``, in float32.
        """
        channels_last = self.channels_last
        if isinstance(network, nn.parallel.DistributedDataParallel):
            # inference needs no gradient or buffer synchronisation (ranks may run different numbers of
            # forward passes); and DDP's gradient buckets keep the layout the parameters had when it wrapped them
            network, channels_last = network.module, False
        device = _device_of(network, inputs)
        dtype = self.autocast_dtype(device)
        is_module = isinstance(network, nn.Module)
        memory_format = torch.channels_last if channels_last and is_module else torch.contiguous_format
        state = self._state(network) if is_module else None
        model = self._eager_model(network, state, memory_format) if state is not None else network
        roi = tuple(int(s) for s in self.orig_roi_size)
        key = (roi, int(inputs.shape[1]), str(device), str(dtype))

        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            batch_size = self.sw_batch_size
            if self.auto_batch_size:
                batch_size = self._batch_size_for(model, state, key, inputs, device, memory_format)
            compiled = None
            if state is not None and self.compile:
                compiled = self._compiled_for(network, state, key, batch_size, inputs, device, memory_format, dtype)
            runner = compiled or model

            def run_slices(x: torch.Tensor, *a: Any, **k: Any) -> Any:
                out = runner(x.to(device).contiguous(memory_format=memory_format), *a, **k)
                return out.float() if isinstance(out, torch.Tensor) else out

            # a shallow copy per call: SliceInferer.__call__ writes roi_size, and the batch size is the call's own
            call = copy.copy(self)
            call.sw_batch_size = batch_size
            start = time.perf_counter()
            out = SliceInferer.__call__(call, inputs, run_slices, *args, **kwargs)
            if compiled is None and state is not None and self.compile == "auto":
                synchronize(device)
                with state.lock:
                    state.eager_seconds += time.perf_counter() - start
            return out

    def _state(self, network: nn.Module) -> Optional[_NetworkState]:
        with self._lock:
            try:
                return self._states.setdefault(network, _NetworkState())
            except TypeError:  # not weak-referenceable: nothing is remembered
                return None

    def _eager_model(self, network: nn.Module, state: _NetworkState, memory_format: torch.memory_format) -> nn.Module:
        """The module that runs eagerly: ``network`` itself, or its ``channels_last`` copy, made again when the
        weights or the train/eval mode of ``network`` changed."""
        if memory_format == torch.contiguous_format:
            return network
        version = (weights_version(network), tuple(m.training for m in network.modules()))
        with state.lock:
            if state.replica is None or state.replica_version != version:
                replica = detached_copy(network)
                with torch.inference_mode(False):
                    replica.to(memory_format=memory_format)
                state.replica, state.replica_version = replica, version
            return state.replica

    def _compiled_for(
        self,
        network: nn.Module,
        state: _NetworkState,
        key: Tuple[Any, ...],
        batch_size: int,
        inputs: torch.Tensor,
        device: torch.device,
        memory_format: torch.memory_format,
        dtype: Optional[torch.dtype],
    ) -> Optional[CompiledInference]:
        """The compiled network to run this volume with, or ``None`` to run eagerly (see ``compile``).

        With ``True`` a new compilation runs here, under the network's lock, and a failure raises
        :class:`~l2gnet_monai.inference.CompilationError`; with ``"auto"`` it starts in a background thread and
        a failure leaves the network eager.
        """
        key = (*key, batch_size, memory_format)
        with state.lock:
            if state.eager_only:
                return None
            entry = state.compiled.get(key)
            if entry is not None and not entry.stale():
                return entry
            if entry is not None and self.compile == "auto":
                logger.info("TunedSliceInferer(compile='auto'): the network's weights changed; running it eagerly.")
                state.eager_only = True
                state.compiled.clear()
                return None
            if self.compile == "auto" and (key in state.compiling or state.eager_seconds < self.compile_after):
                return None
            available, reason = compiler_available(device)
            if not available:
                if self.compile is True:
                    raise CompilationError(
                        f"TunedSliceInferer(compile=True): {reason}. Set compile to false or 'auto'."
                    )
                logger.info("TunedSliceInferer(compile='auto'): %s; running eagerly.", reason)
                state.eager_only = True
                return None
            entry = entry or CompiledInference(network, batch_size, memory_format)
            example = _one_slice(inputs, self.spatial_dim, key[0]).to(device)
            example = example.repeat(batch_size, *([1] * (example.ndim - 1))).contiguous(memory_format=memory_format)
            if self.compile is True or not BACKGROUND_COMPILATION:
                try:
                    entry.compile(example)
                except CompilationError as error:
                    if self.compile is True:
                        raise
                    logger.warning("TunedSliceInferer(compile='auto'): %s; running eagerly.", error)
                    state.eager_only = True
                    return None
                state.compiled[key] = entry
                return entry
            grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

            def compile_in_background() -> None:
                try:
                    with (
                        torch.inference_mode(inference),
                        torch.set_grad_enabled(grad),
                        torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None),
                    ):
                        entry.compile(example)
                except CompilationError as error:
                    logger.warning("TunedSliceInferer(compile='auto'): %s; running eagerly.", error)
                    with state.lock:
                        state.eager_only = True
                else:
                    with state.lock:
                        state.compiled[key] = entry
                finally:
                    with state.lock:
                        state.compiling.pop(key, None)

            thread = threading.Thread(target=compile_in_background, name="TunedSliceInferer-compile", daemon=True)
            state.compiling[key] = thread
            thread.start()
            return None

    def _batch_size_for(
        self,
        model: Callable[..., Any],
        state: Optional[_NetworkState],
        key: Tuple[Any, ...],
        inputs: torch.Tensor,
        device: torch.device,
        memory_format: torch.memory_format,
    ) -> int:
        """The measured batch size for ``key``; measured once per network, under its lock (every call without a
        weak-referenceable network measures again)."""
        state = state or _NetworkState()
        with state.lock:
            if key not in state.batch_sizes:
                example = _one_slice(inputs, self.spatial_dim, key[0]).to(device)
                num_slices = int(inputs.shape[self.spatial_dim + 2]) * int(inputs.shape[0])

                def run(x: torch.Tensor) -> Any:
                    return model(x.contiguous(memory_format=memory_format))

                with torch.no_grad():
                    best, measured = measure_batch_size(run, example, min(self.max_batch_size, num_slices))
                state.batch_sizes[key] = BatchSizeChoice(best, measured)
                logger.info(
                    "TunedSliceInferer on %s: %s, %s, sw_batch_size %d (measured slices/s: %s).",
                    device,
                    "fp32" if key[3] == "None" else f"autocast {key[3]}",
                    "channels_last" if memory_format == torch.channels_last else "contiguous",
                    best,
                    ", ".join(f"{b}: {v:.1f}" for b, v in measured.items()),
                )
            return state.batch_sizes[key].batch_size


def _device_of(network: Callable[..., Any], inputs: torch.Tensor) -> torch.device:
    if isinstance(network, nn.Module):
        for parameter in network.parameters():
            return parameter.device
    return inputs.device


def _one_slice(inputs: torch.Tensor, spatial_dim: int, roi: Tuple[int, ...]) -> torch.Tensor:
    """The middle slice of ``inputs`` along ``spatial_dim``, cropped or padded to ``roi``: ``(1, C, *roi)``."""
    index = int(inputs.shape[spatial_dim + 2]) // 2
    plane = convert_to_tensor(inputs[:1], track_meta=False).select(spatial_dim + 2, index)
    out = plane.new_zeros((1, plane.shape[1], *roi))
    h, w = min(roi[0], plane.shape[2]), min(roi[1], plane.shape[3])
    out[:, :, :h, :w] = plane[:, :, :h, :w]
    return out
