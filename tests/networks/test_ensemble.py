"""FoldEnsemble: the members' softmax averaged (over mirrored inputs too), loaded strictly, never trained."""

from __future__ import annotations

import pytest
import torch

from l2gnet_monai.networks import FoldEnsemble

MEMBER = {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 3, "kernel_size": 3, "padding": 1}


def test_output_is_the_log_of_the_mean_member_softmax():
    torch.manual_seed(0)
    ensemble = FoldEnsemble(MEMBER, num_members=3)
    x = torch.randn(2, 1, 12, 10)
    with torch.no_grad():
        expected = torch.stack([torch.softmax(m(x), dim=1) for m in ensemble.members]).mean(0)
        out = ensemble(x)
    assert out.shape == (2, 3, 12, 10) and out.dtype == torch.float32
    torch.testing.assert_close(out.exp(), expected)
    torch.testing.assert_close(torch.softmax(out, dim=1), expected)  # what the bundle's softmax inversion sees
    assert torch.equal(out.argmax(1), expected.argmax(1))


def test_test_time_flips_average_the_mirrored_predictions():
    torch.manual_seed(1)
    ensemble = FoldEnsemble(MEMBER, num_members=2, flip_axes=[0, 1])
    assert ensemble.flip_sets == [(), (2,), (3,), (2, 3)]
    x = torch.randn(1, 1, 9, 11)
    with torch.no_grad():
        passes = [
            torch.flip(torch.softmax(m(torch.flip(x, d)), 1), d) if d else torch.softmax(m(x), 1)
            for m in ensemble.members
            for d in [(), (2,), (3,), (2, 3)]
        ]
        torch.testing.assert_close(ensemble(x).exp(), torch.stack(passes).mean(0))


def test_the_ensemble_is_never_trained_and_loads_every_member():
    ensemble = FoldEnsemble(MEMBER, num_members=2)
    ensemble.train()
    assert not ensemble.training and not any(m.training for m in ensemble.members)
    assert not any(p.requires_grad for p in ensemble.parameters())
    assert ensemble.init_args == {"network": MEMBER, "num_members": 2, "flip_axes": []}
    state = ensemble.state_dict()
    partial = {k: v for k, v in state.items() if not k.startswith("members.1.")}
    with pytest.raises(RuntimeError, match="members.1.weight"):
        ensemble.load_state_dict(partial, strict=False)  # MONAI Label's lenient load cannot leave a member random
    with pytest.raises(ValueError, match="not an importable torch.nn.Module"):
        FoldEnsemble({"_target_": "no.such.Network"}, num_members=2)
