"""Encoders: torchvision-format ResNet weights load exactly; bad checkpoints are reported key by key."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets.efficientnet import EfficientNetEncoder

from l2gnet_monai.networks.encoders import (
    BackboneStages,
    ResNetStages,
    build_encoder,
    load_torchvision_resnet,
    supported_backbones,
)

_LAYOUTS = {
    "resnet18": ("basic", [2, 2, 2, 2]),
    "resnet34": ("basic", [3, 4, 6, 3]),
    "resnet50": ("bottleneck", [3, 4, 6, 3]),
}


def torchvision_resnet_state_dict(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under torchvision's ResNet parameter names and shapes (written from torchvision's layout)."""
    generator = torch.Generator().manual_seed(seed)
    block, layers = _LAYOUTS[name]
    expansion = 4 if block == "bottleneck" else 1
    state: dict[str, torch.Tensor] = {}

    def conv(key: str, cout: int, cin: int, k: int) -> None:
        state[key] = torch.randn(cout, cin, k, k, generator=generator)

    def bn(key: str, channels: int) -> None:
        state[f"{key}.weight"] = torch.rand(channels, generator=generator) + 0.5
        state[f"{key}.bias"] = torch.randn(channels, generator=generator)
        state[f"{key}.running_mean"] = torch.randn(channels, generator=generator)
        state[f"{key}.running_var"] = torch.rand(channels, generator=generator) + 0.5
        state[f"{key}.num_batches_tracked"] = torch.tensor(1000)

    conv("conv1.weight", 64, 3, 7)
    bn("bn1", 64)
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip([64, 128, 256, 512], layers), start=1):
        for index in range(blocks):
            prefix = f"layer{stage}.{index}"
            cin = inplanes if index == 0 else planes * expansion
            if block == "basic":
                conv(f"{prefix}.conv1.weight", planes, cin, 3)
                bn(f"{prefix}.bn1", planes)
                conv(f"{prefix}.conv2.weight", planes, planes, 3)
                bn(f"{prefix}.bn2", planes)
            else:
                conv(f"{prefix}.conv1.weight", planes, cin, 1)
                bn(f"{prefix}.bn1", planes)
                conv(f"{prefix}.conv2.weight", planes, planes, 3)
                bn(f"{prefix}.bn2", planes)
                conv(f"{prefix}.conv3.weight", planes * expansion, planes, 1)
                bn(f"{prefix}.bn3", planes * expansion)
            if index == 0 and (stage > 1 or inplanes != planes * expansion):
                conv(f"{prefix}.downsample.0.weight", planes * expansion, inplanes, 1)
                bn(f"{prefix}.downsample.1", planes * expansion)
        inplanes = planes * expansion
    state["fc.weight"] = torch.randn(1000, 512 * expansion, generator=generator)
    state["fc.bias"] = torch.randn(1000, generator=generator)
    return state


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_torchvision_weights_load_exactly(name: str, tmp_path) -> None:
    state = torchvision_resnet_state_dict(name)
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    encoder = ResNetStages(name, spatial_dims=2, in_channels=1)
    load_torchvision_resnet(encoder, path)

    loaded = encoder.state_dict()
    assert torch.equal(loaded["conv1.weight"], state["conv1.weight"].sum(dim=1, keepdim=True))
    compared = 0
    for key, value in loaded.items():
        if key != "conv1.weight":
            assert torch.equal(value, state[key]), key
            compared += 1
    assert compared == len(loaded) - 1
    assert not any(key.startswith("layer4") for key in loaded)


def test_rgb_and_other_channel_counts_adapt_the_stem(tmp_path) -> None:
    state = torchvision_resnet_state_dict("resnet18")
    rgb = ResNetStages("resnet18", in_channels=3)
    load_torchvision_resnet(rgb, state)
    assert torch.equal(rgb.conv1.weight, state["conv1.weight"])

    two = ResNetStages("resnet18", in_channels=2)
    load_torchvision_resnet(two, state)
    torch.testing.assert_close(two.conv1.weight, state["conv1.weight"][:, :2] * 1.5)

    # a grey image replicated to RGB gives the same stem response as the summed filter
    grey = ResNetStages("resnet18", in_channels=1)
    load_torchvision_resnet(grey, state)
    image = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(grey.conv1(image), rgb.conv1(image.repeat(1, 3, 1, 1)), atol=1e-4, rtol=1e-4)


def test_wrapped_checkpoints_are_unwrapped(tmp_path) -> None:
    state = torchvision_resnet_state_dict("resnet18")
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    encoder = ResNetStages("resnet18")
    load_torchvision_resnet(encoder, path)
    assert torch.equal(encoder.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])


def test_mismatching_checkpoints_list_the_offending_keys(tmp_path) -> None:
    state = torchvision_resnet_state_dict("resnet18")
    del state["layer2.0.downsample.0.weight"]
    state["layer1.0.extra.weight"] = torch.zeros(1)
    state["layer3.0.conv1.weight"] = torch.zeros(256, 128, 1, 1)
    encoder = ResNetStages("resnet18")
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    with pytest.raises(ValueError) as info:
        load_torchvision_resnet(encoder, state)
    message = str(info.value)
    assert "missing keys: layer2.0.downsample.0.weight" in message
    assert "unexpected keys: layer1.0.extra.weight" in message
    assert "layer3.0.conv1.weight: file (256, 128, 1, 1) vs model (256, 128, 3, 3)" in message
    for key, value in encoder.state_dict().items():
        assert torch.equal(value, before[key]), "a failed load must leave the encoder untouched"


def test_resnet50_weights_do_not_fit_resnet18(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not fit a torchvision resnet18"):
        load_torchvision_resnet(ResNetStages("resnet18"), torchvision_resnet_state_dict("resnet50"))


def test_unreadable_files_are_named(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        load_torchvision_resnet(ResNetStages("resnet18"), tmp_path / "nothere.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_torchvision_resnet(ResNetStages("resnet18"), garbage)
    notdict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], notdict)
    with pytest.raises(ValueError, match="list.pth"):
        load_torchvision_resnet(ResNetStages("resnet18"), notdict)


def test_3d_encoders_refuse_2d_weights() -> None:
    with pytest.raises(ValueError, match="2-D"):
        load_torchvision_resnet(ResNetStages("resnet18", spatial_dims=3), torchvision_resnet_state_dict("resnet18"))


def test_stage_outputs_have_the_advertised_channels_and_strides() -> None:
    for name, channels in [("resnet18", [64, 64, 128, 256]), ("resnet50", [64, 256, 512, 1024])]:
        encoder = build_encoder(name, spatial_dims=2, in_channels=1)
        assert encoder.out_channels == channels
        features = encoder(torch.randn(1, 1, 64, 64))
        assert [f.shape[1] for f in features] == channels
        assert [f.shape[-1] for f in features] == [32, 16, 8, 4]
    four = build_encoder("resnet18", spatial_dims=3, in_channels=2, num_stages=4).eval()
    assert [f.shape[-1] for f in four(torch.randn(1, 2, 32, 32, 32))] == [16, 8, 4, 2, 1]


def test_other_monai_backbones_are_available() -> None:
    encoder = build_encoder("efficientnet-b0", spatial_dims=2, in_channels=1)
    features = encoder(torch.randn(1, 1, 64, 64))
    assert [f.shape[1] for f in features] == encoder.out_channels
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4]
    with pytest.raises(ValueError, match="Unknown backbone 'vgg16'"):
        build_encoder("vgg16", 2, 1)
    assert set(supported_backbones()) >= {"resnet18", "resnet50", "efficientnet-b0", "efficientnet-b7"}
    with pytest.raises(ValueError, match="EfficientNet backbones only"):
        BackboneStages("resnet18")


@pytest.mark.parametrize(("spatial_dims", "num_stages"), [(2, 3), (2, 4), (3, 3)])
def test_cut_efficientnet_gives_monais_feature_maps_without_the_unused_stacks(spatial_dims, num_stages) -> None:
    """The cut encoder equals the first feature maps of MONAI's whole EfficientNetEncoder, with its weights."""
    torch.manual_seed(0)
    whole = EfficientNetEncoder("efficientnet-b0", pretrained=False, spatial_dims=spatial_dims, in_channels=1).eval()
    cut = BackboneStages("efficientnet-b0", spatial_dims=spatial_dims, in_channels=1, num_stages=num_stages).eval()
    missing, unexpected = cut.encoder.load_state_dict(whole.state_dict(), strict=False)
    assert missing == []
    # efficientnet-b0's 7 stacks: stride 16 after stack 5 (index 4), stride 32 after stack 7
    dropped_stacks = ["_blocks.5.", "_blocks.6."] if num_stages == 3 else []
    dropped = tuple(dropped_stacks + ["_conv_head.", "_bn1.", "_fc."])
    assert unexpected and all(key.startswith(dropped) for key in unexpected), unexpected
    x = torch.randn(2, 1, *([32] * spatial_dims))
    with torch.no_grad():
        expected = whole(x)[: num_stages + 1]
        features = cut(x)
    assert len(features) == num_stages + 1
    for got, want in zip(features, expected):
        torch.testing.assert_close(got, want)
    if num_stages == 3:  # stride 16: the stride-32 stacks and the classifier head are not built
        assert sum(p.numel() for p in cut.parameters()) < 0.2 * sum(p.numel() for p in whole.parameters())
