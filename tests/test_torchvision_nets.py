"""torchvision classifiers from config: local weights load exactly, heads and stems adapt, errors are clear."""

import pytest
import torch
import torchvision

from sglp.core.errors import CheckpointError, InvalidArgument
from sglp.core.surgery import remove_layers
from sglp.core.units import prunable_units
from sglp.kinds.classification.models.torchvision_nets import torchvision_classifier


def test_local_weights_load_exactly(tmp_path):
    torch.manual_seed(0)
    src = torchvision.models.resnet18()
    torch.save(src.state_dict(), tmp_path / "w.pt")
    same = torchvision_classifier("resnet18", 1000, weights_path=str(tmp_path / "w.pt")).eval()
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in same.state_dict().items())
    ten = torchvision_classifier("resnet18", 10, 1, weights_path=str(tmp_path / "w.pt")).eval()
    assert ten.fc.out_features == 10 and ten.conv1.in_channels == 1
    assert torch.allclose(ten.conv1.weight[:, 0], src.conv1.weight.mean(dim=1))  # RGB filters averaged
    assert torch.equal(ten.layer3[1].conv2.weight, src.layer3[1].conv2.weight)  # the body is the pretrained one
    out = remove_layers(ten, [0, 2])(torch.randn(2, 1, 64, 64))
    assert out.shape == (2, 10) and len(prunable_units(ten)) == 5  # layer1.0 keeps its shape in ResNet-18


def test_bad_weights_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        torchvision_classifier("resnet18", 10, weights_path=str(tmp_path / "missing.pt"))
    with pytest.raises(InvalidArgument, match="no torchvision weights"):
        torchvision_classifier("resnet18", 10, weights="NOT_A_WEIGHT")
    with pytest.raises(InvalidArgument, match="unknown torchvision model"):
        torchvision_classifier("resnet9999", 10)
