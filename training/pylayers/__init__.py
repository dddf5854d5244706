"""Caffe Python layers of DSRG (``python_param { module: 'pylayers' layer: '...' }``).

Thin adapters over the numpy cores in `dsrg`; the stage-2 data layer lives in `pylayers.layer`.
"""
from pylayers.layers import (
    AnnotationLayer,
    BalancedSeedLossLayer,
    ConstrainLossLayer,
    CRFLayer,
    DSRGLayer,
    ExpandLossLayer,
    ImageLabelLayer,
    SeedLossLayer,
    SoftmaxLayer,
)

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
