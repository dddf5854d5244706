"""Helpers shared by this project's tests: numeric gradients, inline Caffe nets, loading a tool of
tools/ as a module, the location of the shared VOC data, and torch as an optional test-only oracle."""
import functools
import importlib.util
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_VOC12 = REPO_ROOT / ".." / "shared" / "data" / "voc12"

try:
    import torch
except ImportError:
    torch = None
# torch is a test-only oracle; tools/setup.sh installs it only from a local CPU wheel (PyPI's Linux torch
# is a CUDA build of several GB), so without one the tests that need it skip and say why.
requires_torch = pytest.mark.skipif(torch is None, reason="torch (test-only) is not installed: tools/setup.sh "
                                                          "installs it only from a local CPU wheel")


def started_as(script_name, main):
    """`main` run with sys.argv[0] set to `script_name` for the duration of each call (restored after), as
    when the tool is started from the shell: its messages take their prefix from it (dsrg.cli.tool_name)."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        started = sys.argv[0]
        sys.argv[0] = script_name
        try:
            return main(*args, **kwargs)
        finally:
            sys.argv[0] = started

    return run


def load_tool(name):
    """tools/<name>.py as a module (the tools are scripts, not a package) whose main() runs as if
    started as "<name>.py" (:func:`started_as`)."""
    spec = importlib.util.spec_from_file_location(f"dsrg_tool_{name}", REPO_ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main = started_as(f"{name}.py", module.main)
    return module


def numeric_gradient(function, array, step=1e-6):
    """Central-difference gradient of the scalar `function()` w.r.t. `array` (changed in place, restored)."""
    gradient = np.zeros(array.shape, dtype=np.float64)
    flat = array.reshape(-1)
    for index in range(flat.size):
        original = flat[index]
        flat[index] = original + step
        upper = function()
        flat[index] = original - step
        lower = function()
        flat[index] = original
        gradient.reshape(-1)[index] = (upper - lower) / (2 * step)
    return gradient


def random_probs(rng, shape, spread=2.0):
    """Softmax probabilities over axis 1 of random logits (float64), floored away from 0."""
    logits = rng.normal(size=shape) * spread
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = probs / probs.sum(axis=1, keepdims=True) + 1e-3
    return probs / probs.sum(axis=1, keepdims=True)


def set_inputs(net, values):
    """Copy {blob name: array} into the net's blobs."""
    for name, value in values.items():
        net.blobs[name].data[...] = value


def check_net_gradient(net, values, loss_name, wrt, loss_weight, step=1e-3, rtol=2e-2, atol=2e-3):
    """Caffe-style check: central differences of loss_weight · loss (float32 forward passes of `net`
    with inputs `values`) against the diff Caffe's backward leaves in blob `wrt`; returns that diff."""
    set_inputs(net, values)
    net.forward()
    net.backward()
    analytic = net.blobs[wrt].diff.copy()
    data = net.blobs[wrt].data
    numeric = np.zeros_like(analytic, dtype=np.float64)
    for index in np.ndindex(data.shape):
        original = float(data[index])
        data[index] = original + step
        upper = float(net.forward()[loss_name].flat[0])
        data[index] = original - step
        lower = float(net.forward()[loss_name].flat[0])
        data[index] = original
        numeric[index] = loss_weight * (upper - lower) / (2 * step)
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)
    return analytic


def make_net(caffe, prototxt, phase=None):
    """caffe.Net from an inline prototxt written to a temporary file."""
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as handle:
        handle.write(textwrap.dedent(prototxt))
        path = handle.name
    try:
        return caffe.Net(path, caffe.TEST if phase is None else phase)
    finally:
        Path(path).unlink()


def input_layer(name, shape):
    dims = " ".join(f"dim: {size}" for size in shape)
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}\n'


def python_layer(name, layer, bottoms, tops, module="pylayers", param_str=None, loss_weight=None,
                 propagate_down=None):
    lines = [f'layer {{ name: "{name}" type: "Python"']
    lines += [f'  bottom: "{bottom}"' for bottom in bottoms]
    lines += [f'  top: "{top}"' for top in tops]
    param = f" param_str: {param_str!r}" if param_str is not None else ""
    lines.append(f"  python_param {{ module: '{module}' layer: '{layer}'{param} }}")
    if loss_weight is not None:
        lines.append(f"  loss_weight: {loss_weight}")
    for flag in propagate_down or ():
        lines.append(f"  propagate_down: {int(flag)}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def caffemodel_layers(path):
    """{layer name: [arrays]} of a written caffemodel, read back with plain caffe_pb2."""
    from caffe.proto import caffe_pb2

    model = caffe_pb2.NetParameter()
    model.ParseFromString(Path(path).read_bytes())
    return {layer.name: [np.array(blob.data, np.float32).reshape(blob.shape.dim) for blob in layer.blobs]
            for layer in model.layer}


TINY_NET = """
name: "tiny"
layer {{ name: "data" type: "DummyData" top: "x" top: "y"
  dummy_data_param {{ shape {{ dim: 4 dim: 3 }} shape {{ dim: 4 dim: 2 }}
    data_filler {{ type: "constant" value: 1 }} data_filler {{ type: "constant" value: {target} }} }} }}
layer {{ name: "ip" type: "InnerProduct" bottom: "x" top: "p"
  inner_product_param {{ num_output: 2 weight_filler {{ type: "{filler}" {filler_args} }}
    bias_filler {{ type: "constant" value: 0 }} }} }}
layer {{ name: "loss" type: "EuclideanLoss" bottom: "p" bottom: "y" top: "loss" }}
"""


def write_tiny_experiment(folder, base_lr, momentum, target=2.0, filler="uniform", filler_args="min: -1 max: 1"):
    """A one-InnerProduct regression net and its solver (fixed lr, 100 iterations, seed 7) in `folder`;
    returns the solver path (tools/train.py tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.prototxt").write_text(TINY_NET.format(target=target, filler=filler, filler_args=filler_args))
    (folder / "solver.prototxt").write_text(
        f'net: "net.prototxt"\nbase_lr: {base_lr}\nlr_policy: "fixed"\nmomentum: {momentum}\n'
        'weight_decay: 0\nmax_iter: 100\nrandom_seed: 7\n')
    return folder / "solver.prototxt"
