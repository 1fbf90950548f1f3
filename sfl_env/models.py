"""Splittable model zoo.

A :class:`SplitModel` is an ordered list of blocks. Cut ``l`` (``1 <= l < num_blocks``) puts blocks
``[0, l)`` on the clients and blocks ``[l, num_blocks)`` on the server, so every block boundary is a
candidate cut. Blocks are whole stages (a residual stage is never cut inside) and each BatchNorm belongs
to the block of the layer before it.

There is one set of weights per model: splitting is a view by block index, never a copy, so moving the
cut cannot re-initialise anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .config import MODELS



class SplitModel(nn.Module):
    """An ordered list of named blocks with every block boundary as a candidate cut."""

    def __init__(
        self,
        name: str,
        blocks: Sequence[nn.Module],
        block_names: Sequence[str],
        input_shape: tuple[int, int, int],
        num_classes: int,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if len(blocks) < 2 or len(blocks) != len(block_names):
            raise ValueError("a split model needs at least two blocks, each with a name")
        self.name = name
        self.blocks = nn.ModuleList(blocks)
        self.block_names = tuple(block_names)
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.width = width

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def cuts(self) -> tuple[int, ...]:
        """Candidate cut points ``l``: the number of blocks on the clients."""
        return tuple(range(1, self.num_blocks))

    @property
    def cut_names(self) -> tuple[str, ...]:
        return tuple(f"after {self.block_names[cut - 1]}" for cut in self.cuts)

    @property
    def arch_key(self) -> tuple:
        """Identifies the architecture (not the weights): used to cache profiles."""
        return (self.name, self.input_shape, self.num_classes, self.width)

    def check_cut(self, cut: int) -> int:
        if isinstance(cut, bool) or not isinstance(cut, int) or cut not in self.cuts:
            raise ValueError(
                f"cut={cut!r} is not a candidate cut of model {self.name!r}; "
                f"allowed: integers {self.cuts[0]}..{self.cuts[-1]} ({', '.join(self.cut_names)})"
            )
        return cut

    def forward_range(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for block in self.blocks[start:stop]:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_range(x, 0, self.num_blocks)


def build_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    width: float = 1.0,
    seed: int = 0,
) -> SplitModel:
    """Builds model ``name`` for inputs of shape (C, H, W), initialised from ``seed`` alone.

    ``width`` scales the channel counts of ``vgg11`` and ``resnet18`` (0.25 keeps CPU runs practical)
    and the hidden sizes of the others.
    """
    if name not in _BUILDERS:
        raise ValueError(f"model={name!r} is unknown; allowed: {', '.join(MODELS)}")
    if not (isinstance(width, (int, float)) and 0 < width <= 4):
        raise ValueError(f"width={width!r} is out of range; allowed: a number in (0, 4]")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape={input_shape!r} is invalid; expected (channels, height, width)")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes={num_classes!r} is invalid; expected an integer >= 2")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        blocks, names = _BUILDERS[name](shape, int(num_classes), float(width))
        return SplitModel(name, blocks, names, shape, int(num_classes), float(width))


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def _output_shape(layers: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(layers.eval()(torch.zeros(2, *shape)).shape[1:])


def _flat(shape: Sequence[int]) -> int:
    n = 1
    for v in shape:
        n *= v
    return n


def _pool_if_possible(shape: tuple[int, ...]) -> list[nn.Module]:
    """2x2 max-pooling, skipped once the feature map is 1 pixel wide (small inputs such as 8x8 digits)."""
    return [nn.MaxPool2d(2)] if min(shape[1:]) >= 2 else []


def _cnn(shape, num_classes, width):
    c1, c2, c3, hidden = (_scaled(c, width) for c in (16, 32, 64, 64))
    conv1 = nn.Sequential(nn.Conv2d(shape[0], c1, 3, padding=1), nn.ReLU())
    s1 = _output_shape(conv1, shape)
    conv2 = nn.Sequential(nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), *_pool_if_possible(s1))
    s2 = _output_shape(conv2, s1)
    conv3 = nn.Sequential(
        nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(), *_pool_if_possible(s2), nn.Flatten()
    )
    s3 = _output_shape(conv3, s2)
    head = nn.Sequential(nn.Linear(_flat(s3), hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    return [conv1, conv2, conv3, head], ["conv1", "conv2", "conv3", "fc"]


def _mlp(shape, num_classes, width):
    h1, h2, h3 = (_scaled(c, width) for c in (128, 64, 32))
    blocks = [
        nn.Sequential(nn.Flatten(), nn.Linear(_flat(shape), h1), nn.ReLU()),
        nn.Sequential(nn.Linear(h1, h2), nn.ReLU()),
        nn.Sequential(nn.Linear(h2, h3), nn.ReLU()),
        nn.Linear(h3, num_classes),
    ]
    return blocks, ["fc1", "fc2", "fc3", "out"]


def _lenet5(shape, num_classes, width):
    c1, c2, f1, f2 = (_scaled(c, width) for c in (6, 16, 120, 84))
    conv1 = nn.Sequential(nn.Conv2d(shape[0], c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
    s1 = _output_shape(conv1, shape)
    # The classic unpadded 5x5 conv needs a 10x10 map or more; small inputs keep their size instead.
    pad = 0 if min(s1[1:]) >= 10 else 2
    conv2 = nn.Sequential(nn.Conv2d(c1, c2, 5, padding=pad), nn.ReLU())
    conv2.extend([*_pool_if_possible(_output_shape(conv2, s1)), nn.Flatten()])
    s2 = _output_shape(conv2, s1)
    blocks = [
        conv1,
        conv2,
        nn.Sequential(nn.Linear(_flat(s2), f1), nn.ReLU()),
        nn.Sequential(nn.Linear(f1, f2), nn.ReLU()),
        nn.Linear(f2, num_classes),
    ]
    return blocks, ["conv1", "conv2", "fc1", "fc2", "out"]


_VGG11_STAGES = ((64,), (128,), (256, 256), (512, 512), (512, 512))


def _vgg11(shape, num_classes, width):
    blocks, names, channels = [], [], shape[0]
    for i, stage in enumerate(_VGG11_STAGES, start=1):
        layers: list[nn.Module] = []
        for out in stage:
            out = _scaled(out, width)
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
        block = nn.Sequential(*layers)
        block.extend(_pool_if_possible(_output_shape(block, shape)))
        shape = _output_shape(block, shape)
        blocks.append(block)
        names.append(f"stage{i}")
    blocks.append(nn.Sequential(nn.Flatten(), nn.Linear(_flat(shape), num_classes)))
    names.append("classifier")
    return blocks, names


class BasicBlock(nn.Module):
    """The two-conv residual block of ResNet-18."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def _resnet18(shape, num_classes, width):
    c = [_scaled(v, width) for v in (64, 128, 256, 512)]
    blocks: list[nn.Module] = [
        nn.Sequential(nn.Conv2d(shape[0], c[0], 3, 1, 1, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU())
    ]
    in_channels = c[0]
    for i, out in enumerate(c):
        stride = 1 if i == 0 else 2
        blocks.append(nn.Sequential(BasicBlock(in_channels, out, stride), BasicBlock(out, out, 1)))
        in_channels = out
    blocks.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes)))
    return blocks, ["stem", "stage1", "stage2", "stage3", "stage4", "head"]


_BUILDERS = {"cnn": _cnn, "mlp": _mlp, "lenet5": _lenet5, "vgg11": _vgg11, "resnet18": _resnet18}
