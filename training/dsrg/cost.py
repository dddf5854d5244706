"""Arithmetic and memory cost of a convolutional net from its layer shapes (no Caffe here).

A convolution with weights O × (I/g) × kh × kw producing an output of O × H × W per image does
O·H·W·(I/g)·kh·kw multiply-adds, counted as 2 FLOPs each. Training one image costs about three forward passes (the forward, the gradient with
respect to the input and the gradient with respect to the weights, each one matrix product of the
same size). Layers other than convolutions (ReLU, pooling, softmax, the CRF on the 41×41 grid) are
left out: next to the convolutions they are a few per cent of the arithmetic.

Memory: Caffe keeps a data and a diff array for every blob of a training net, and for every
parameter its value, its gradient and the solver's history (one array for SGD with momentum, two
for Adam). float32 throughout.
"""
from dataclasses import dataclass

BYTES_PER_VALUE = 4
TRAINING_PASSES = 3
HISTORY_ARRAYS = {"SGD": 1, "Adam": 2}


@dataclass(frozen=True)
class ConvShape:
    """One convolution: its weight shape (out, in per group, kh, kw) and its output's spatial size."""
    name: str
    weight_shape: tuple
    out_height: int
    out_width: int

    @property
    def multiply_adds(self):
        out_channels, in_per_group, kernel_h, kernel_w = self.weight_shape
        return out_channels * self.out_height * self.out_width * in_per_group * kernel_h * kernel_w


def forward_flops(convolutions):
    """FLOPs of one image's forward pass through `convolutions` (ConvShape list): 2 per multiply-add."""
    return 2 * sum(conv.multiply_adds for conv in convolutions)


def training_flops(convolutions, batch, iterations):
    """FLOPs of `iterations` solver steps of `batch` images each (forward + both backward products)."""
    return TRAINING_PASSES * forward_flops(convolutions) * batch * iterations


def training_memory_bytes(activation_values, parameter_values, solver_type="SGD"):
    """Bytes a Caffe training net holds: data + diff for `activation_values` (the sum of its blob
    sizes at the training batch) and value + gradient + history for `parameter_values`."""
    if solver_type not in HISTORY_ARRAYS:
        raise ValueError(f"solver type {solver_type!r}: expected one of {sorted(HISTORY_ARRAYS)}")
    parameter_arrays = 2 + HISTORY_ARRAYS[solver_type]
    return BYTES_PER_VALUE * (2 * activation_values + parameter_arrays * parameter_values)


def hours_at(flops, sustained_tflops):
    """Wall hours for `flops` at a sustained rate of `sustained_tflops` × 10^12 FLOP/s."""
    if sustained_tflops <= 0:
        raise ValueError(f"sustained rate {sustained_tflops} TFLOP/s: expected a positive number")
    return flops / (sustained_tflops * 1e12) / 3600
