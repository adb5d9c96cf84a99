"""The networks: ResNet-32's known size and structure, option-A shortcut, init, copying, ResNet-18 loading."""
import copy
import math
import pickle

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.func import functional_call

from gdwlib.models import MLP, MODELS, ResNet32, ShortcutA, SmallCNN, WeightingNetwork, build_model, resnet18


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_resnet32_has_the_known_parameter_count():
    # 464,154: the published size of option-A ResNet-32 for CIFAR-10 ("0.46M" in He et al. 2016)
    assert n_params(ResNet32(10)) == 464_154


def test_resnet32_is_31_convs_and_one_linear():
    model = ResNet32(10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == 31
    assert len(linears) == 1 and linears[0].in_features == 64
    assert [c.out_channels for c in convs] == [16] * 11 + [32] * 10 + [64] * 10
    assert sum(isinstance(m, ShortcutA) for m in model.modules()) == 2


@pytest.mark.parametrize("shape, in_channels", [((2, 3, 32, 32), 3), ((2, 1, 28, 28), 1)])
def test_resnet32_output_shape(shape, in_channels):
    assert ResNet32(100, in_channels)(torch.randn(shape)).shape == (2, 100)


def test_option_a_shortcut_is_subsampling_plus_zero_channels():
    x = torch.arange(2 * 16 * 7 * 7, dtype=torch.float32).reshape(2, 16, 7, 7)
    expected = torch.zeros(2, 32, 4, 4)
    for i in range(4):
        for j in range(4):
            expected[:, 8:24, i, j] = x[:, :, 2 * i, 2 * j]
    assert torch.equal(ShortcutA(32)(x), expected)


def test_kaiming_normal_init():
    model = ResNet32(10)
    conv = model.layer3[-1].conv2  # 64 x 64 x 3 x 3: 36,864 draws
    fan_in = 64 * 3 * 3
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    assert abs(conv.weight.mean().item()) < 0.05 * math.sqrt(2 / fan_in)
    # the head is Kaiming too, not PyTorch's default uniform(+-1/sqrt(fan_in)) whose std is 1/sqrt(3 fan_in)
    big_head = ResNet32(1000).linear.weight
    assert big_head.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.05)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(b.weight == 1) and torch.all(b.bias == 0) for b in bns)


@pytest.mark.parametrize("make, shape", [
    (lambda: ResNet32(10, 1), (4, 1, 28, 28)),
    (lambda: SmallCNN(10, 1), (4, 1, 28, 28)),
    (lambda: SmallCNN(10, 3, image_size=32), (4, 3, 32, 32)),
    (lambda: SmallCNN(10, 1, image_size=29, channels=(8, 16), strided=True), (4, 1, 29, 29)),  # odd: 13, then 5
    (lambda: MLP(10, 784), (4, 1, 28, 28)),
])
def test_models_copy_pickle_and_train_with_batchnorm(make, shape):
    model = make().train()
    x = torch.randn(shape)
    clone = copy.deepcopy(model)
    unpickled = pickle.loads(pickle.dumps(model))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = clone(x)
    assert out.shape == (4, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in clone.parameters())
    # the copy is independent: its BatchNorm statistics moved, the original's did not
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.allclose(unpickled(x), model(x))


@pytest.mark.parametrize("make, shape", [
    (lambda: ResNet32(10), (3, 3, 32, 32)),
    (lambda: SmallCNN(10), (3, 1, 28, 28)),
    (lambda: MLP(10), (3, 1, 28, 28)),
])
def test_functional_call_matches_and_uses_given_parameters(make, shape):
    model, x = make().eval(), torch.randn(shape)
    params = dict(model.named_parameters())
    assert torch.allclose(functional_call(model, params, (x,)), model(x))
    head_w, head_b = list(params)[-2:]
    zeroed = {**params, head_w: torch.zeros_like(params[head_w])}
    out = functional_call(model, zeroed, (x,))
    assert torch.allclose(out, params[head_b].detach().expand(3, 10))


def test_resnet18_loads_local_weights_then_replaces_head(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["conv1.weight"].fill_(0.123)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = resnet18(14, path)
    assert torch.all(model.conv1.weight == 0.123)
    assert torch.equal(model.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert model.fc.out_features == 14 and model(torch.randn(1, 3, 64, 64)).shape == (1, 14)
    assert build_model("resnet18", 14, 3, 224, weights_path=path).conv1.weight[0, 0, 0, 0].item() == pytest.approx(0.123)


def test_resnet18_missing_file_says_where_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="download.pytorch.org/models/resnet18-f37072fd.pth"):
        resnet18(14, tmp_path / "nope.pth")


def test_resnet18_mismatched_file_names_the_keys(tmp_path):
    state = torchvision.models.resnet18(weights=None, num_classes=14).state_dict()
    del state["layer2.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as err:
        resnet18(14, path)
    message = str(err.value)
    assert "layer2.0.conv1.weight" in message and "extra.weight" in message and "fc.weight" in message


def test_weighting_network_outputs_weights_in_unit_interval():
    net = WeightingNetwork()
    losses = torch.cat([torch.rand(50, 1) * 10, torch.tensor([[0.0], [100.0]])])
    w = net(losses)
    assert w.shape == (52, 1)
    assert torch.all((w > 0) & (w < 1))
    assert n_params(net) == (1 * 100 + 100) + (100 * 1 + 1)


def test_build_model_registry():
    assert set(MODELS) == {"resnet32", "small_cnn", "small_cnn_strided", "mlp", "mlp_bn", "resnet18"}
    strided = build_model("small_cnn_strided", 10, 1, 28)
    assert n_params(strided) == (25 * 8 + 8) + (8 * 16 * 25 + 16) + (16 * 4 * 4 * 128 + 128) + (128 * 10 + 10)
    assert not any(isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.MaxPool2d)) for m in strided.modules())
    assert n_params(build_model("resnet32", 10, 3, 32)) == 464_154
    assert build_model("small_cnn", 10, 1, 28)(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    mlp = build_model("mlp", 10, 1, 28, hidden=(64,))
    assert n_params(mlp) == 784 * 64 + 64 + 64 * 10 + 10
    mlp_bn = build_model("mlp_bn", 10, 1, 28, hidden=(64,))
    assert n_params(mlp_bn) == n_params(mlp) + 2 * 64  # BatchNorm's scale and shift
    assert [type(m).__name__ for m in mlp_bn.net] == ["Flatten", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    with pytest.raises(ValueError, match="resnet32"):
        build_model("resnet50", 10, 3, 32)


def test_strided_cnn_is_the_pooled_one_with_stride_2_convolutions():
    """The strided network's features are two stride-2 unpadded 5x5 convolutions with ReLU,
    computed here by hand with F.conv2d; the head sees 16 x 4 x 4 features from 28 x 28 images."""
    torch.manual_seed(0)
    model, x = SmallCNN(10, 1, 28, channels=(8, 16), strided=True), torch.randn(2, 1, 28, 28)
    c1, c2 = model.features[0], model.features[2]
    h = F.relu(F.conv2d(F.relu(F.conv2d(x, c1.weight, c1.bias, stride=2)), c2.weight, c2.bias, stride=2))
    assert h.shape == (2, 16, 4, 4)
    assert torch.allclose(model.features(x), h)
