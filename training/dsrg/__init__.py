"""Numpy cores of DSRG that know nothing of Caffe.

Losses with analytic gradients, seeded region growing, cue-file I/O, dense-CRF refinement,
evaluation and the small file helpers the tools share. The Caffe adapters live in `pylayers`.
"""
