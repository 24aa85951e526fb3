"""Compiled inference: same answer as eager, padded last batch, new weights noticed, no compiler handled."""

from __future__ import annotations

import pytest
import torch
import torch._inductor.config as inductor_config

from l2gnet_monai.inference.compilation import CompilationError, CompiledInference, compiler_available, weights_version
from l2gnet_monai.inference.engine import BACKGROUND_COMPILATION, TunedSliceInferer
from tests.networks.test_l2gnet import initialised_small_net

pytestmark = pytest.mark.skipif(not compiler_available(torch.device("cpu"))[0], reason="no C++ compiler for Inductor")


@pytest.fixture
def net() -> torch.nn.Module:
    return initialised_small_net()


def _perturb(network: torch.nn.Module) -> None:
    """What an optimizer step or a checkpoint load does: new values, in place."""
    with torch.no_grad():
        network.segmentation_head[0].weight.mul_(-1.5)
        network.encoder.conv1.weight.mul_(1.2)


@pytest.mark.skipif(not BACKGROUND_COMPILATION, reason="this torch compiles in the call (threads tested from 2.13)")
def test_auto_compiles_in_the_background_after_its_eager_budget_and_gives_eager_output(net) -> None:
    volume = torch.randn(1, 1, 64, 64, 5)  # 5 slices in batches of 2: the last batch is padded
    eager = TunedSliceInferer(roi_size=(64, 64), sw_batch_size=2, precision="fp32")
    engine = TunedSliceInferer(roi_size=(64, 64), sw_batch_size=2, precision="fp32", compile="auto", compile_after=0.5)
    with torch.no_grad():
        expected = eager(volume, net)
        first = engine(volume, net)
        assert engine.compiled(net) is None, "a first volume under the budget must run eagerly"
        for _ in range(100):  # at most 100 volumes to spend 0.5 s
            engine(volume, net)
            if engine._states[net].compiling:
                break
        # the call that crossed the budget started the compilation and returned without waiting for it
        assert engine.compiled(net) is None and engine._states[net].compiling
        compiled = engine.wait_for_compilation(net, timeout=600)
        compiled_out = engine(volume, net)
    assert compiled is not None and compiled.compilations == 1 and compiled.batch_size == 2
    assert not engine._states[net].compiling
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(compiled_out, expected, atol=1e-4, rtol=1e-4)

    _perturb(net)  # "auto" + new weights: a model in training goes back to eager for good
    with torch.no_grad():
        after = engine(volume, net)
        torch.testing.assert_close(after, eager(volume, net))
    assert engine.compiled(net) is None
    assert not torch.allclose(after, compiled_out, atol=1e-3)


def test_compile_true_compiles_again_when_the_weights_change(net) -> None:
    x = torch.randn(3, 1, 64, 64)
    compiled = CompiledInference(net, batch_size=4)
    version = weights_version(net)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), atol=1e-4, rtol=1e-4)
        assert compiled(x).shape == (3, 3, 64, 64) and not compiled.stale()
        _perturb(net)
        assert weights_version(net) != version and compiled.stale()
        torch.testing.assert_close(compiled(x), net(x), atol=1e-4, rtol=1e-4)
    assert compiled.compilations == 2
    with pytest.raises(ValueError, match="compiled for at most 4"):
        compiled(torch.randn(5, 1, 64, 64))


def test_without_a_cpp_compiler_true_says_so_and_auto_stays_eager(net) -> None:
    volume = torch.randn(1, 1, 64, 64, 3)
    with torch.no_grad(), inductor_config.patch({"cpp.cxx": ("/nonexistent/g++",)}):
        assert not compiler_available(torch.device("cpu"))[0]
        with pytest.raises(CompilationError, match=r"compile=True.*C\+\+ compiler.*compile to false or 'auto'"):
            TunedSliceInferer(roi_size=(64, 64), sw_batch_size=2, precision="fp32", compile=True)(volume, net)
        engine = TunedSliceInferer(roi_size=(64, 64), sw_batch_size=2, compile="auto", compile_after=0)
        out = engine(volume, net)
    assert engine.compiled(net) is None and out.shape == (1, 3, 64, 64, 3)
    assert compiler_available(torch.device("cpu"))[0], "the check must not outlive the changed configuration"


def test_bad_compile_setting_is_named() -> None:
    with pytest.raises(ValueError, match="compile must be false, true or 'auto'"):
        TunedSliceInferer(roi_size=(64, 64), compile="yes")


def test_a_failing_compilation_raises_with_true_and_leaves_auto_eager(net, monkeypatch) -> None:
    def broken_compile(module, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("unsupported operator aten::foo")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    volume = torch.randn(1, 1, 64, 64, 3)
    with torch.no_grad():
        with pytest.raises(CompilationError, match="torch.compile failed for L2GNet: unsupported operator aten::foo"):
            TunedSliceInferer(roi_size=(64, 64), sw_batch_size=2, precision="fp32", compile=True)(volume, net)
        settings = {"roi_size": (64, 64), "sw_batch_size": 2, "precision": "fp32"}
        engine = TunedSliceInferer(**settings, compile="auto", compile_after=0)
        out = engine(volume, net)
        expected = TunedSliceInferer(roi_size=(64, 64), sw_batch_size=2, precision="fp32")(volume, net)
    assert engine.compiled(net) is None
    torch.testing.assert_close(out, expected)
