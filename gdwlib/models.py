"""Networks used in the experiments: CIFAR ResNet-32, small Fashion-MNIST nets, ResNet-18, MW-Net's weighting net.

All are plain ``torch.nn`` modules (no MetaModule rewrites): the bi-level code evaluates them at
other parameters through :func:`torch.func.functional_call`, so they only need to deep-copy,
pickle and run with BatchNorm in train mode.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


class ShortcutA(nn.Module):
    """ResNet "option A" shortcut (He et al. 2016, CIFAR): stride-2 subsampling plus zero channel padding.

    Used where a block halves the resolution and doubles the channels: ``planes // 4`` zero
    channels go on each side, so ``in_planes + planes // 2 == planes`` (16 -> 32, 32 -> 64).
    """

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity (or option-A) shortcut and ReLU after the sum."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            if stride != 2 or in_planes + 2 * (planes // 4) != planes:
                raise ValueError(f"option-A shortcut cannot map {in_planes} -> {planes} channels at stride {stride}")
            self.shortcut: nn.Module = ShortcutA(planes)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet32(nn.Module):
    """CIFAR ResNet-32 (protocol.md, "Training setup"; the model of the paper's CIFAR tables).

    3x3 conv 16 + BN + ReLU, three stages of 5 basic blocks (16/32/64 channels, strides 1/2/2,
    option-A shortcuts), global average pooling and a linear head: 31 convs + 1 linear.
    Kaiming-normal (fan_in) init for every conv and linear weight, as in the public MW-Net/GDW
    code. The pooling adapts to the input size, so 1x28x28 Fashion-MNIST images work too.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, stride=1)
        self.layer2 = self._stage(16, 32, stride=2)
        self.layer3 = self._stage(32, 64, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _stage(in_planes: int, planes: int, stride: int, blocks: int = 5) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(torch.flatten(self.pool(out), 1))


class SmallCNN(nn.Module):
    """Small Fashion-MNIST CNN (setup.md timings table): conv5x5 32, pool, conv5x5 64, pool, fc 128, fc C.

    Convolutions are unpadded; the flattened size follows from ``image_size`` (28 -> 4x4, 32 -> 5x5).
    ``channels`` changes the two convolutions' widths; ``strided=True`` halves the resolution by a
    stride of 2 in each convolution instead of by max pooling after it (the book's second network,
    8 and 16 channels: on two CPU cores max pooling costs more than the convolutions). No
    BatchNorm anywhere.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28,
                 channels: tuple[int, int] = (32, 64), strided: bool = False):
        super().__init__()
        halve = (lambda n: (n - 5) // 2 + 1) if strided else (lambda n: (n - 4) // 2)
        side = halve(halve(image_size))
        if side < 1:
            raise ValueError(f"SmallCNN needs images of at least 12x12 pixels, got image_size={image_size}")
        c1, c2 = channels
        stride = 2 if strided else 1
        pool = lambda: [] if strided else [nn.MaxPool2d(2)]  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, stride=stride), nn.ReLU(), *pool(),
            nn.Conv2d(c1, c2, 5, stride=stride), nn.ReLU(), *pool(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * side * side, 128), nn.ReLU(), nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """Fully connected net (setup.md's 784-256-256-10 sizing run): flatten, Linear/ReLU layers, Linear head.

    ``batch_norm=True`` puts a BatchNorm1d after each hidden Linear layer (Linear, BN, ReLU), as
    ResNet-32 has after each convolution.
    """

    def __init__(self, num_classes: int = 10, in_features: int = 784, hidden: tuple[int, ...] = (256, 256),
                 batch_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), *([nn.BatchNorm1d(h)] if batch_norm else []), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def resnet18(num_classes: int, weights_path: str | Path | None = None) -> nn.Module:
    """torchvision's ResNet-18 with a new ``num_classes`` head (the Clothing1M model, protocol.md Table 5).

    With ``weights_path``, ImageNet weights are read from a local ``state_dict`` file (torchvision's
    ``resnet18-f37072fd.pth``; nothing is downloaded) before the 1000-class head is replaced.
    """
    model = torchvision.models.resnet18(weights=None)
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"ResNet-18 weights file not found: {path}. Download the ImageNet weights from "
                f"{RESNET18_URL} on a machine with internet access and pass the file's path."
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping):
            raise ValueError(f"{path} does not hold a state_dict (got {type(state).__name__})")
        _check_state_dict(model, state, path)
        model.load_state_dict(state)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def _check_state_dict(model: nn.Module, state: Mapping[str, Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong_shape:
        problems = []
        if missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        if wrong_shape:
            problems.append(f"wrong shapes: {', '.join(wrong_shape)}")
        raise ValueError(
            f"{path} is not a torchvision ResNet-18 (ImageNet, 1000 classes) state_dict; "
            + "; ".join(problems)
        )


class WeightingNetwork(nn.Module):
    """MW-Net's weighting network (used by GDW's Step 1): per-instance loss (n, 1) -> weight in (0, 1), (n, 1).

    MLP 1 -> hidden -> 1 with ReLU and a sigmoid output; PyTorch's default Linear init, as the public code.
    """

    def __init__(self, hidden: int = 100):
        super().__init__()
        self.linear1 = nn.Linear(1, hidden)
        self.linear2 = nn.Linear(hidden, 1)

    def forward(self, losses: Tensor) -> Tensor:
        return torch.sigmoid(self.linear2(F.relu(self.linear1(losses))))


def _build_resnet32(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return ResNet32(num_classes, in_channels)


def _build_small_cnn(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return SmallCNN(num_classes, in_channels, image_size)


def _build_small_cnn_strided(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    return SmallCNN(num_classes, in_channels, image_size, channels=(8, 16), strided=True)


def _build_mlp(num_classes: int, in_channels: int, image_size: int, hidden: tuple[int, ...] = (256, 256)) -> nn.Module:
    return MLP(num_classes, in_channels * image_size * image_size, tuple(hidden))


def _build_mlp_bn(num_classes: int, in_channels: int, image_size: int, hidden: tuple[int, ...] = (256, 256)) -> nn.Module:
    return MLP(num_classes, in_channels * image_size * image_size, tuple(hidden), batch_norm=True)


def _build_resnet18(
    num_classes: int, in_channels: int, image_size: int, weights_path: str | Path | None = None
) -> nn.Module:
    if in_channels != 3:
        raise ValueError(f"resnet18 takes 3-channel images, got in_channels={in_channels}")
    return resnet18(num_classes, weights_path)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet32": _build_resnet32,
    "small_cnn": _build_small_cnn,
    "small_cnn_strided": _build_small_cnn_strided,
    "mlp": _build_mlp,
    "mlp_bn": _build_mlp_bn,
    "resnet18": _build_resnet18,
}


def build_model(name: str, num_classes: int, in_channels: int, image_size: int, **kwargs) -> nn.Module:
    """The network registered as ``name`` in :data:`MODELS`, sized for the data set.

    Extra keyword arguments go to the builder (``hidden`` for "mlp", ``weights_path`` for "resnet18").
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes, in_channels, image_size, **kwargs)


def user_model(name: str, num_classes: int, in_channels: int, image_size: int,
               weights: str | Path | None = None) -> nn.Module:
    """For ``gdw fit``: a network of :data:`MODELS`, or any torchvision classification model by
    name (``resnet50``, ``mobilenet_v3_small``, ...) with a ``num_classes`` head. Pretrained
    weights come from a local ``state_dict`` file only (``weights``), nothing is downloaded."""
    if name in MODELS:
        return build_model(name, num_classes, in_channels, image_size,
                           **({"weights_path": weights} if name == "resnet18" else {}))
    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise ValueError(f"unknown model {name!r}: give one of this package's ({', '.join(sorted(MODELS))}) or a "
                         f"torchvision classification model ({', '.join(known[:6])}, ...)")
    if in_channels != 3:
        raise ValueError(f"torchvision's {name} takes 3-channel images, these have {in_channels}; use one of "
                         f"{', '.join(sorted(MODELS))}, or give RGB images")
    if weights is None:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    model, path = torchvision.models.get_model(name, weights=None), Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path} (a state_dict of torchvision's {name})")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a state_dict (got {type(state).__name__})")
    _check_state_dict(model, state, path)
    model.load_state_dict(state)
    parent, attr, head = _last_linear(model)
    setattr(parent, attr, nn.Linear(head.in_features, num_classes))
    return model


def _last_linear(model: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """The classification head: the last ``nn.Linear``, with the module holding it."""
    found = None
    for parent in model.modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, attr, child)
    if found is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear head to replace")
    return found
