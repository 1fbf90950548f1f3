"""Splittable model zoo: image classifiers and a GPT-style language model.

A :class:`SplitModel` is an ordered list of blocks. Cut ``l`` (``1 <= l < num_blocks``) puts blocks
``[0, l)`` on the clients and blocks ``[l, num_blocks)`` on the server, so every block boundary is a
candidate cut. Blocks are whole stages (a residual stage is never cut inside) and each BatchNorm belongs
to the block of the layer before it. The language model ``gpt`` takes (context,) token windows and
predicts the next token at every position: its blocks are the embeddings (always on the clients), one
per transformer block, and the final norm with the head (always on the server), so its cuts are the
block boundaries.

There is one set of weights per model: splitting is a view by block index, never a copy, so moving the
cut cannot re-initialise anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .config import DEFAULT_MODEL_DEPTH, DEFAULT_MODEL_HEADS, GPT_BASE_WIDTH, LANGUAGE_MODELS, MODELS



class SplitModel(nn.Module):
    """An ordered list of named blocks with every block boundary as a candidate cut."""

    def __init__(
        self,
        name: str,
        blocks: Sequence[nn.Module],
        block_names: Sequence[str],
        input_shape: tuple[int, ...],
        num_classes: int,
        width: float = 1.0,
        options: tuple[tuple[str, int], ...] = (),
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
        self.options = tuple(options)  # the builder's other keywords (gpt: depth and heads)

    @property
    def is_language_model(self) -> bool:
        """Inputs are int64 token windows (N, T) and outputs (N, T, vocabulary) next-token logits."""
        return self.name in LANGUAGE_MODELS

    def example_input(self, batch: int) -> torch.Tensor:
        """A batch of zeros shaped and typed like the model's input (tokens for a language model)."""
        dtype = torch.int64 if self.is_language_model else torch.float32
        return torch.zeros(batch, *self.input_shape, dtype=dtype)

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
        return (self.name, self.input_shape, self.num_classes, self.width, self.options)

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
    depth: int | None = None,
    heads: int | None = None,
    seed: int = 0,
) -> SplitModel:
    """Builds model ``name`` for inputs of shape (C, H, W) (a language model: (context,) tokens of a
    vocabulary of ``num_classes``), initialised from ``seed`` alone.

    ``width`` scales the channel counts of ``vgg11`` and ``resnet18`` (0.25 keeps CPU runs practical),
    the hidden sizes of the image models and gpt's features per token (128 x width). ``depth`` and
    ``heads`` are gpt's transformer blocks and attention heads (default 4 each); other models refuse them.
    """
    if name not in _BUILDERS:
        raise ValueError(f"model={name!r} is unknown; allowed: {', '.join(MODELS)}")
    if not (isinstance(width, (int, float)) and 0 < width <= 4):
        raise ValueError(f"width={width!r} is out of range; allowed: a number in (0, 4]")
    shape = tuple(int(v) for v in input_shape)
    language = name in LANGUAGE_MODELS
    if len(shape) != (1 if language else 3) or min(shape) < 1:
        expected = "(context,)" if language else "(channels, height, width)"
        raise ValueError(f"input_shape={input_shape!r} is invalid for model {name!r}; expected {expected}")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes={num_classes!r} is invalid; expected an integer >= 2")
    options: tuple[tuple[str, int], ...] = ()
    if language:
        options = (("depth", DEFAULT_MODEL_DEPTH if depth is None else int(depth)),
                   ("heads", DEFAULT_MODEL_HEADS if heads is None else int(heads)))
    elif depth is not None or heads is not None:
        raise ValueError(f"depth and heads apply to the language models ({', '.join(LANGUAGE_MODELS)}) only")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        blocks, names = _BUILDERS[name](shape, int(num_classes), float(width), **dict(options))
        return SplitModel(name, blocks, names, shape, int(num_classes), float(width), options)


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


class TokenEmbedding(nn.Module):
    """Token plus learned position embeddings: gpt's first block, always on the clients."""

    def __init__(self, vocabulary: int, context: int, width: int) -> None:
        super().__init__()
        self.token = nn.Embedding(vocabulary, width)
        self.position = nn.Parameter(torch.zeros(context, width))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.token(tokens) + self.position[: tokens.shape[-1]]


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t attends to positions up to t.

    Written with plain matrix products (not a fused kernel) so that it runs under ``torch.func.vmap``
    and torch's FLOP counter sees every product."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width={width} is not a multiple of heads={heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., T, C)
        T, C = x.shape[-2:]
        q, k, v = (t.unflatten(-1, (self.heads, C // self.heads)).transpose(-3, -2)
                   for t in self.qkv(x).split(C, dim=-1))  # (..., heads, T, C / heads)
        scores = (q @ k.transpose(-1, -2)) * (C // self.heads) ** -0.5
        future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        weights = scores.masked_fill(future, float("-inf")).softmax(-1)
        return self.proj((weights @ v).transpose(-3, -2).flatten(-2))


class TransformerBlock(nn.Module):
    """A pre-norm decoder block: x + attention(norm(x)), then x + MLP(norm(x)) with a 4x GELU MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _gpt(shape, num_classes, width, depth, heads):
    """GPT-2's layout at a small scale (Radford et al., 2019): N(0, 0.02) weights, zero biases, the
    residual projections scaled by 1 / sqrt(2 depth); the head is not tied to the embeddings, which
    live on the other side of every cut."""
    features = _scaled(GPT_BASE_WIDTH, width)
    blocks: list[nn.Module] = [TokenEmbedding(num_classes, shape[0], features)]
    blocks += [TransformerBlock(features, heads) for _ in range(depth)]
    blocks.append(nn.Sequential(nn.LayerNorm(features), nn.Linear(features, num_classes)))
    for module in nn.ModuleList(blocks).modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
    for block in blocks[1:-1]:
        for projection in (block.attention.proj, block.mlp[2]):
            nn.init.normal_(projection.weight, std=0.02 / (2 * depth) ** 0.5)
    nn.init.normal_(blocks[0].position, std=0.02)
    names = ["embeddings", *(f"block{i}" for i in range(1, depth + 1)), "head"]
    return blocks, names


_BUILDERS = {"cnn": _cnn, "mlp": _mlp, "lenet5": _lenet5, "vgg11": _vgg11, "resnet18": _resnet18, "gpt": _gpt}
