"""Caffe Python layers of DSRG (``python_param { module: 'pylayers' layer: '...' }``).

Thin adapters over the numpy cores in `dsrg`; the stage-2 data layer lives in `pylayers.layer`, the
tools' Caffe helpers in `pylayers.netio`. The layers are imported on first access (and with them
caffe), so importing `pylayers.netio` alone does not load Caffe.
"""
__all__ = [
    "AnnotationLayer",
    "BalancedSeedLossLayer",
    "ConstrainLossLayer",
    "CRFLayer",
    "DSRGLayer",
    "ExpandLossLayer",
    "ImageLabelLayer",
    "SeedLossLayer",
    "SoftmaxLayer",
]


def __getattr__(name):
    if name in __all__:
        from pylayers import layers

        return getattr(layers, name)
    raise AttributeError(f"module 'pylayers' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
