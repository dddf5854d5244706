"""DeepLab-v2's ResNet-101 trunk described as data: blocks, Caffe layer names, strides, dilations, and the
map from torchvision's `resnet101` state-dict names to those layers (plain Python, no Caffe, no torch).

Layer names are MSRA's / DeepLab-v2's: `conv1`, `bn_conv1`, `scale_conv1`, then for every bottleneck
block `res<s><b>_branch2a/2b/2c` (1×1, 3×3, 1×1 convolutions without bias), `bn…` / `scale…` after each,
`res<s>a_branch1` (the projection shortcut of a stage's first block), the sum `res<s><b>` and its ReLU.
Blocks are `a, b, c` in a stage of three and `a, b1, b2, …` in longer ones (res3: a, b1…b3; res4: a,
b1…b22), as in MSRA's ResNet-101.

Two variants compute different functions from the same parameter shapes (`VARIANTS`):

- `msra` (DeepLab-v2, for MSRA's Caffe ImageNet model, DeepLab's `init.caffemodel`): a downsampling
  block strides in its first 1×1 (`branch2a`) and in `branch1`; res4 and res5 are dilated 2 and 4 in
  every block, their strides 1, so the output stride is 8.
- `torchvision` (for torchvision's `resnet101` with `replace_stride_with_dilation=[False, True, True]`):
  a downsampling block strides in its 3×3 (`branch2b`) and in `branch1`; the first block of a dilated
  stage keeps the previous stage's dilation in its 3×3 (res4a: 1, res5a: 2), the others get the
  stage's (res4: 2, res5: 4), as torchvision's `_make_layer` builds them.
"""
import re
from dataclasses import dataclass

# (stage, blocks, bottleneck width) of ResNet-101; a block outputs 4 × its width.
RESNET101_STAGES = ((2, 3, 64), (3, 4, 128), (4, 23, 256), (5, 3, 512))
EXPANSION = 4
STEM_WIDTH = 64
# Output stride 8: res3 strides 2 (after conv1 and pool1); res4 and res5 are dilated instead of strided.
STAGE_STRIDES = {2: 1, 3: 2, 4: 1, 5: 1}
STAGE_DILATIONS = {2: 1, 3: 1, 4: 2, 5: 4}
VARIANTS = ("msra", "torchvision")
# A trunk layer of this naming scheme: what a ResNet parameter file must give and may only give.
TRUNK_LAYER = re.compile(r"^(?:(?:conv|bn_conv|scale_conv)1|(?:res|bn|scale)[2-9][a-z]\d*_branch(?:1|2[abc]))$")
# torchvision's names: layer<L>.<i>.conv<k> / bn<k> / downsample.<0|1>, with L = stage − 1.
_TORCHVISION_BLOCK_KEY = re.compile(r"^layer(\d+)\.(\d+)\.(conv[123]|bn[123]|downsample\.[01])\.")
TORCHVISION_BRANCH = {"1": "branch2a", "2": "branch2b", "3": "branch2c"}


@dataclass(frozen=True)
class Block:
    """One bottleneck block: its name (`res4b7` without the prefix: stage 4, `b7`) and its geometry."""

    stage: int
    letter: str
    channels_in: int
    width: int
    stride: int
    stride_in: str
    dilation: int
    projection: bool

    @property
    def name(self):
        return f"{self.stage}{self.letter}"

    @property
    def channels_out(self):
        return self.width * EXPANSION


def block_letter(index, count):
    """MSRA's name of block `index` (0-based) of a stage of `count` blocks: a, b, c … or a, b1, b2 …"""
    if index == 0:
        return "a"
    return chr(ord("a") + index) if count <= 3 else f"b{index}"


def blocks(variant="msra", stages=RESNET101_STAGES):
    """The trunk's blocks in order, for `variant` (one of VARIANTS)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ResNet variant {variant!r} (variants: {', '.join(VARIANTS)})")
    out, channels, previous_dilation = [], STEM_WIDTH, 1
    for stage, count, width in stages:
        dilation = STAGE_DILATIONS[stage]
        for index in range(count):
            first = index == 0
            block_dilation = dilation
            if variant == "torchvision" and first:
                block_dilation = previous_dilation
            out.append(Block(stage, block_letter(index, count), channels, width,
                             STAGE_STRIDES[stage] if first else 1,
                             "branch2a" if variant == "msra" else "branch2b", block_dilation, first))
            channels = width * EXPANSION
        previous_dilation = dilation
    return out


def conv_name(block, branch):
    return f"res{block.name}_{branch}"


def norm_names(conv):
    """(BatchNorm, Scale) layer names after convolution `conv`: conv1 → bn_conv1 / scale_conv1,
    res4b7_branch2a → bn4b7_branch2a / scale4b7_branch2a."""
    if conv == "conv1":
        return "bn_conv1", "scale_conv1"
    return "bn" + conv[len("res"):], "scale" + conv[len("res"):]


def trunk_convolutions(variant="msra"):
    """[(conv name, out, in, kernel, stride, dilation)] of every trunk convolution, conv1 first."""
    convs = [("conv1", STEM_WIDTH, 3, 7, 2, 1)]
    for block in blocks(variant):
        if block.projection:
            convs.append((conv_name(block, "branch1"), block.channels_out, block.channels_in, 1, block.stride, 1))
        convs.append((conv_name(block, "branch2a"), block.width, block.channels_in, 1,
                      block.stride if block.stride_in == "branch2a" else 1, 1))
        convs.append((conv_name(block, "branch2b"), block.width, block.width, 3,
                      block.stride if block.stride_in == "branch2b" else 1, block.dilation))
        convs.append((conv_name(block, "branch2c"), block.channels_out, block.width, 1, 1, 1))
    return convs


def is_trunk_layer(name):
    return bool(TRUNK_LAYER.match(name))


def trunk_layer_type(name):
    """The Caffe type of trunk layer `name`: BatchNorm (bn…), Scale (scale…) or Convolution."""
    if name.startswith("bn"):
        return "BatchNorm"
    return "Scale" if name.startswith("scale") else "Convolution"


def torchvision_module_to_conv(module, stage_counts):
    """The Caffe convolution name that torchvision module path `module` (without .weight) feeds, or None.

    `conv1`/`bn1` → conv1; `layer<L>.<i>.conv<k>` / `.bn<k>` → res<L+1><block>_branch2a/b/c;
    `layer<L>.<i>.downsample.0/1` → res<L+1><block>_branch1. `stage_counts` {stage: blocks} names the
    blocks (a, b, c or a, b1, …) as the state dict holds them."""
    if module in ("conv1", "bn1"):
        return "conv1"
    match = _TORCHVISION_BLOCK_KEY.match(module + ".")
    if not match:
        return None
    stage, index, part = int(match.group(1)) + 1, int(match.group(2)), match.group(3)
    letter = block_letter(index, stage_counts[stage])
    branch = "branch1" if part.startswith("downsample") else TORCHVISION_BRANCH[part[-1]]
    return f"res{stage}{letter}_{branch}"


def torchvision_stage_counts(keys):
    """{stage: number of blocks} of a torchvision ResNet state dict's keys."""
    counts = {}
    for key in keys:
        match = _TORCHVISION_BLOCK_KEY.match(key)
        if match:
            stage = int(match.group(1)) + 1
            counts[stage] = max(counts.get(stage, 0), int(match.group(2)) + 1)
    return counts


def is_torchvision_norm(module):
    """Whether torchvision module path `module` is a BatchNorm (bn1, bn<k>, downsample.1)."""
    return module.split(".")[-1].startswith("bn") or module.endswith("downsample.1")

