"""One TunedSliceInferer shared by threads and by networks that come and go: the sequential outputs, nothing
kept alive, flat memory."""

from __future__ import annotations

import gc
import os
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from l2gnet_monai.inference.compilation import compiler_available
from l2gnet_monai.inference.engine import BACKGROUND_COMPILATION, TunedSliceInferer
from tests.networks.test_l2gnet import initialised_small_net, small_net

SETTINGS = {"roi_size": (64, 64), "precision": "fp32", "max_batch_size": 8}

#: Process memory that 18 network replacements may add. One leaked reload keeps the network, its channels_last
#: copy and its frozen compiled copy: 3 x 2.9 M float32 parameters, 33 MiB; two leaked reloads exceed the bound.
RSS_BOUND_MIB = 48


def _volumes() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(1, 1, 64, 64, slices, generator=generator) for slices in (6, 7, 8, 9)]


def _rss_mib() -> float:
    """Resident memory of this process (``/proc/self/statm``: psutil is not a dependency)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not compiler_available(torch.device("cpu"))[0], reason="no C++ compiler for Inductor")
# torch 2.3 (the floor) crashed (SIGSEGV) or returned wrong objects with threads running compiled and eager code
@pytest.mark.skipif(not BACKGROUND_COMPILATION, reason="threads with compiled code: tested from torch 2.13")
def test_threads_sharing_one_engine_get_the_sequential_eager_outputs() -> None:
    net = initialised_small_net()
    volumes = _volumes()
    with torch.no_grad():
        expected = [TunedSliceInferer(**SETTINGS)(volume, net) for volume in volumes]
    # no eager budget: the first call starts the compilation, the others measure nothing twice and run eagerly
    engine = TunedSliceInferer(**SETTINGS, compile="auto", compile_after=0)

    def run(order: int) -> list[tuple[int, torch.Tensor]]:
        outputs = []
        for index in [(order + i) % len(volumes) for i in range(2 * len(volumes))]:
            with torch.no_grad():  # grad mode is per thread
                outputs.append((index, engine(volumes[index], net)))
        return outputs

    with ThreadPoolExecutor(max_workers=4) as pool:
        eager_rounds = [out for outputs in pool.map(run, range(4)) for out in outputs]
        compiled = engine.wait_for_compilation(net, timeout=600)
        compiled_rounds = [out for outputs in pool.map(run, range(4)) for out in outputs]
    assert compiled is not None and compiled.compilations == 1, "one compilation for all threads"
    assert len(engine.batch_size_choices(net)) == 1
    assert compiled.batch_size == next(iter(engine.batch_size_choices(net).values())).batch_size
    for index, out in eager_rounds + compiled_rounds:
        torch.testing.assert_close(out, expected[index], atol=1e-4, rtol=1e-4)


def test_replacing_the_network_20_times_frees_it_and_keeps_memory_flat(monkeypatch) -> None:
    # the compiled path without Inductor's cost (one real compilation: the next test): "compiling" returns the
    # frozen copy itself, which the engine's compile cache then holds as it holds a compiled graph
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: module)
    weights = initialised_small_net().state_dict()
    engine = TunedSliceInferer(**{**SETTINGS, "sw_batch_size": 2}, compile=True)
    volume = _volumes()[0]
    freed: list[weakref.ref] = []

    def reload_and_infer() -> None:  # what a server does after each /train: a new network, the new weights
        net = small_net()
        net.load_state_dict(weights)
        with torch.no_grad():
            engine(volume, net.eval())
        compiled = engine.compiled(net)
        assert compiled is not None and compiled.network is net
        freed.extend(weakref.ref(item) for item in (net, engine._states[net].replica, compiled._compiled))

    for _ in range(2):  # allocator and oneDNN caches warm up
        reload_and_infer()
    gc.collect()
    before = _rss_mib()
    for _ in range(18):
        reload_and_infer()
        gc.collect()
    growth = _rss_mib() - before
    assert len(engine._states) == 0, "a dropped network must leave the engine's caches"
    assert all(ref() is None for ref in freed), "a dropped network, its copy and its compiled copy must be freed"
    assert growth < RSS_BOUND_MIB, f"resident memory grew by {growth:.0f} MiB over 18 reloads"
    print(f"resident memory growth over 18 reloads: {growth:.1f} MiB")


@pytest.mark.skipif(not compiler_available(torch.device("cpu"))[0], reason="no C++ compiler for Inductor")
def test_a_dropped_compiled_network_frees_its_compiled_copy() -> None:
    engine = TunedSliceInferer(**SETTINGS, sw_batch_size=2, compile=True)
    net = initialised_small_net()
    with torch.no_grad():
        engine(_volumes()[0], net)
    compiled = engine.compiled(net)
    assert compiled is not None
    replica = weakref.ref(compiled._compiled)
    del net, compiled
    gc.collect()
    assert len(engine._states) == 0 and replica() is None
