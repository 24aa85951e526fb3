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
  bf16 than with NHWC inputs alone, which are slower than NCHW: the network must be converted too).
* **batch size** (``sw_batch_size="auto"``): measured on the first volume, by timing the network on
  1, 2, 4, ... of its slices until the throughput stops growing (:func:`measure_batch_size`).

and, optionally, compilation (``compile``): ``torch.compile`` with frozen weights
(:mod:`l2gnet_monai.inference.compilation`),
1.2-1.3x faster than eager on a 2-core AVX-512 CPU after a compilation of 20-60 s. ``compile="auto"`` pays that
price only when the work is long enough: the network runs eagerly until it has spent ``compile_after`` seconds
(by default about one compilation) and is compiled from the next volume on, so a single volume never waits for
a compiler, and a folder or a server never spends more than about twice the best choice made in hindsight.

On CUDA, ``cudnn.benchmark`` is switched on unless the caller asked for deterministic cuDNN
(``monai.utils.set_determinism``), which training does.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Dict, Optional, Tuple, Union

import torch
from monai.inferers import SliceInferer
from monai.utils import convert_to_tensor
from torch import nn

from l2gnet_monai.inference.compilation import CompilationError, CompiledInference, compiler_available

__all__ = [
    "PRECISIONS",
    "TunedSliceInferer",
    "cpu_has_native_bf16",
    "measure_batch_size",
    "resolve_precision",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILE_CHOICES = (False, True, "auto")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX-512 BF16 or AMX tiles).

    Asks torch's own CPU feature detection (``torch.cpu._is_avx512_bf16_supported``,
    ``torch.cpu._is_amx_tile_supported``), else reads the ``avx512_bf16`` / ``amx_bf16`` flags of
    ``/proc/cpuinfo``. Without native support, bf16 is emulated and slower than float32.
    """
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(probe is not None for probe in probes):
        return any(bool(probe()) for probe in probes if probe is not None)
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: Union[torch.device, str]) -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` on ``device``: ``torch.bfloat16``, ``torch.float16`` or ``None`` (fp32).

    Args:
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device: where the network runs.

    Returns:
        ``None`` for float32, else the dtype to pass to ``torch.autocast``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}.")
    device = torch.device(device)
    if precision != "auto":
        if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
            logger.warning("precision 'bf16': this CPU has no native bf16 (AVX-512 BF16 / AMX); it will be slow.")
        return _DTYPES[precision]
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def measure_batch_size(
    network: Callable[[torch.Tensor], Any],
    example: torch.Tensor,
    max_batch_size: int,
    min_gain: float = 1.1,
    repeats: int = 2,
    patience: int = 1,
) -> Tuple[int, Dict[int, float]]:
    """The batch size with the highest measured throughput of ``network`` on copies of ``example``.

    Tries 1, 2, 4, ... up to ``max_batch_size`` (each once to warm up, then ``repeats`` timed calls, best
    kept). A size becomes the choice when it beats the current choice's throughput by a factor ``min_gain``;
    the search stops after ``patience + 1`` doublings in a row without such a gain (one slow measurement on a
    busy machine does not end it), or when the device runs out of memory. Run it under the autocast and
    ``no_grad`` context of the inference.

    Args:
        network: callable on a batch ``(B, *example.shape[1:])``.
        example: one input, shape ``(1, ...)``, on the network's device and in its memory format.
        max_batch_size: the largest batch to try (e.g. the number of slices of the volume).
        min_gain: throughput ratio that doubling must reach to go on.
        repeats: timed calls per batch size.
        patience: doublings without gain tolerated before stopping.

    Returns:
        The chosen batch size and the measured throughput (inputs per second) of every size tried.
    """
    device = example.device
    throughput: Dict[int, float] = {}
    best, batch, misses = 1, 1, 0
    while batch <= max(1, max_batch_size):
        inputs = example.repeat(batch, *([1] * (example.ndim - 1)))
        try:
            network(inputs)  # warm-up: kernel selection, allocator growth
            seconds = []
            for _ in range(repeats):
                _synchronize(device)
                start = time.perf_counter()
                network(inputs)
                _synchronize(device)
                seconds.append(time.perf_counter() - start)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
        throughput[batch] = batch / min(seconds)
        if batch == 1 or throughput[batch] >= min_gain * throughput[best]:
            best, misses = batch, 0
        else:
            misses += 1
            if misses > patience:
                break
        batch *= 2
    return best, throughput


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TunedSliceInferer(SliceInferer):
    """:class:`~monai.inferers.SliceInferer` with autocast, ``channels_last`` and a measured batch size.

    Drop-in for ``SliceInferer`` in ``SupervisedEvaluator`` and bundle configs (``"_target_":
    "l2gnet_monai.inference.TunedSliceInferer"``). The network is called under ``torch.autocast`` with the
    dtype of :func:`resolve_precision` (this overrides an evaluator's own ``amp`` setting), on slices in
    ``channels_last``; the logits come back in float32.

    The first call with a network converts it **in place** to ``channels_last`` (its 4-D weights; values
    and parameter objects are unchanged, so a model being trained keeps training) and, with
    ``sw_batch_size="auto"``, measures the batch size on that volume's slices (a few seconds on a CPU);
    later calls with the same network and slice size reuse both. A ``DistributedDataParallel`` network is
    run through its ``module`` (no collective calls at inference) and left in its memory format.

    Args:
        roi_size: the 2-D slice size, e.g. ``(224, 224)``.
        spatial_dim: the axis of the volume the slices are taken along (0, 1 or 2; 2 = axial for RAS).
        sw_batch_size: slices per network call, or ``"auto"`` to measure it.
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see :func:`resolve_precision`).
        channels_last: run the network and its inputs in ``channels_last`` memory format.
        compile: ``False`` (eager), ``True`` (compile on the first call) or ``"auto"`` (compile once the network
            has run ``compile_after`` seconds eagerly). The batch size is measured eagerly first; the network is
            compiled for that batch (the last, smaller batch of a volume is padded) with its weights frozen into
            the graph, from a copy, and compiled again when its weights change (with ``"auto"``, a network whose
            weights change, i.e. one being trained, goes back to eager for good). ``True`` raises when Inductor
            cannot compile here (no C++ compiler on CPU, no Triton on CUDA); ``"auto"`` stays eager then.
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
        self.batch_size_measurements: Dict[int, float] = {}
        self._prepared: weakref.WeakSet = weakref.WeakSet()
        self._batch_sizes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._compiled: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._eager_seconds: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._eager_only: weakref.WeakSet = weakref.WeakSet()

    def autocast_dtype(self, device: torch.device) -> Optional[torch.dtype]:
        """The autocast dtype used on ``device`` (``None``: float32)."""
        return resolve_precision(self.precision, device)

    def prepare(self, network: nn.Module, channels_last: bool = True) -> nn.Module:
        """``network`` in ``channels_last`` (in place, if asked here and in the constructor); done once per network."""
        if network not in self._prepared:
            if self.channels_last and channels_last:
                with torch.inference_mode(False):  # normal tensors: the model may be trained afterwards
                    network.to(memory_format=torch.channels_last)
            self._prepared.add(network)
        return network

    def compiled(self, network: nn.Module) -> Optional[CompiledInference]:
        """The compiled form of ``network`` that this inferer runs, if it compiled it (see ``compile``)."""
        return self._compiled.get(network)

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
        if device.type == "cuda" and not torch.backends.cudnn.deterministic:
            torch.backends.cudnn.benchmark = True
        dtype = self.autocast_dtype(device)
        model = self.prepare(network, channels_last) if isinstance(network, nn.Module) else network
        memory_format = torch.channels_last if channels_last else torch.contiguous_format

        compiled: Optional[CompiledInference] = None

        def run_slices(x: torch.Tensor, *a: Any, **k: Any) -> Any:
            out = (compiled or model)(x.to(device).contiguous(memory_format=memory_format), *a, **k)
            return out.float() if isinstance(out, torch.Tensor) else out

        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            if self.auto_batch_size:
                self.sw_batch_size = self._batch_size_for(network, run_slices, inputs, device)
            if isinstance(network, nn.Module):
                compiled = self._compiled_for(network, inputs, device, memory_format)
            if compiled is not None or self.compile != "auto":
                return super().__call__(inputs, run_slices, *args, **kwargs)
            start = time.perf_counter()
            out = super().__call__(inputs, run_slices, *args, **kwargs)
            _synchronize(device)
            self._eager_seconds[network] = self._eager_seconds.get(network, 0.0) + time.perf_counter() - start
            return out

    def _compiled_for(
        self, network: nn.Module, inputs: torch.Tensor, device: torch.device, memory_format: torch.memory_format
    ) -> Optional[CompiledInference]:
        """The compiled network to run this volume with, or ``None`` to run eagerly (see ``compile``).

        A new compilation runs here, on one slice of ``inputs``, before the volume: with ``"auto"`` a failure
        leaves the network eager, with ``True`` it raises :class:`~l2gnet_monai.inference.CompilationError`.
        """
        if not self.compile or network in self._eager_only:
            return None
        entry = self._compiled.get(network)
        if entry is not None and entry.batch_size == self.sw_batch_size and entry.memory_format == memory_format:
            if self.compile == "auto" and entry.stale():
                logger.info("TunedSliceInferer(compile='auto'): the network's weights changed; running it eagerly.")
                self._eager_only.add(network)
                del self._compiled[network]
                return None
            return entry  # compile=True: a stale entry compiles again on its next call
        if self.compile == "auto" and entry is None and self._eager_seconds.get(network, 0.0) < self.compile_after:
            return None
        available, reason = compiler_available(device)
        if not available:
            if self.compile is True:
                raise CompilationError(f"TunedSliceInferer(compile=True): {reason}. Set compile to false or 'auto'.")
            logger.info("TunedSliceInferer(compile='auto'): %s; running eagerly.", reason)
            self._eager_only.add(network)
            return None
        entry = CompiledInference(network, self.sw_batch_size, memory_format)
        example = _one_slice(inputs, self.spatial_dim, tuple(int(s) for s in self.orig_roi_size)).to(device)
        try:
            entry(example.contiguous(memory_format=memory_format))
        except CompilationError as error:
            if self.compile is True:
                raise
            logger.warning("TunedSliceInferer(compile='auto'): %s; running eagerly.", error)
            self._eager_only.add(network)
            return None
        self._compiled[network] = entry
        return entry

    def _batch_size_for(
        self, network: Callable[..., Any], run_slices: Callable[..., Any], inputs: torch.Tensor, device: torch.device
    ) -> int:
        roi = tuple(int(s) for s in self.orig_roi_size)
        key = (roi, int(inputs.shape[1]), str(device), str(self.autocast_dtype(device)))
        try:
            known: Dict[Tuple[Any, ...], int] = self._batch_sizes.setdefault(network, {})
        except TypeError:  # not weak-referenceable: measure every time
            known = {}
        if key not in known:
            example = _one_slice(inputs, self.spatial_dim, roi).to(device)
            num_slices = int(inputs.shape[self.spatial_dim + 2]) * int(inputs.shape[0])
            with torch.no_grad():
                best, measured = measure_batch_size(run_slices, example, min(self.max_batch_size, num_slices))
            known[key] = best
            self.batch_size_measurements = measured
            logger.info(
                "TunedSliceInferer on %s: %s, %s, sw_batch_size %d (measured slices/s: %s).",
                device,
                "fp32" if key[3] == "None" else f"autocast {key[3]}",
                "channels_last" if self.channels_last else "contiguous",
                best,
                ", ".join(f"{b}: {v:.1f}" for b, v in measured.items()),
            )
        return known[key]


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
