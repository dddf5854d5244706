"""Caffe for the command-line tools: CPU or GPU mode, and deploy nets opened with their files checked.

Caffe is imported on first use, after GLOG_minloglevel defaults to 2 (no start-up log), so a tool's
``--help`` and argument errors never load it.
"""
import os
from pathlib import Path


def use_caffe(gpu):
    """The caffe module in GPU mode on device `gpu`, or in CPU mode when `gpu` is None."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    import caffe

    if gpu is not None:
        caffe.set_device(gpu)
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    return caffe


def load_net(deploy, weights, gpu, tool):
    """caffe.Net(deploy, weights, TEST) on the chosen device; a missing file is an error naming `tool`."""
    for path, what in ((deploy, "deploy prototxt"), (weights, "weights")):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{tool}: {what} not found: {path}")
    caffe = use_caffe(gpu)
    return caffe.Net(str(deploy), str(weights), caffe.TEST)
