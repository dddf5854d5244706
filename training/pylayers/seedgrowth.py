"""Seed growth of a Caffe net's current batch, read from its DSRG layer(s), for the training log.

pycaffe's ``net.layers[i]`` (and ``net.layer_dict[name]``) is the Python layer object itself, so
what a DSRGLayer keeps after a forward (``grown_seeds``, ``growth_figures``: the densities of
dsrg.seedgrowth) is read straight from it. Precision needs the images of the batch: the net's
AnnotationLayer keeps their indices (ImageData's labels, the second column of the input list) and
which of them it mirrored; the input list (dsrg.seeds.read_indexed_list) maps the indices to image
ids, and a mirrored image's seeds are flipped back before they meet its ground truth.

Columns (dsrg.seedgrowth): seed_bg_density, seed_fg_density, and with a ground-truth folder and the
input list seed_bg_precision, seed_fg_precision. A net with several DSRG layers gives each column
once per layer, as ``column[layer name]``; a net without one gives none.
"""
import numpy as np

from dsrg.seedgrowth import DENSITY_COLUMNS, PRECISION_COLUMNS, seed_precisions
from dsrg.lists import read_indexed_list
from pylayers.layers import AnnotationLayer, DSRGLayer


def layers_of_class(net, layer_class):
    """[(name, layer object)] of the net's layers that are `layer_class` instances, in net order."""
    return [(name, layer) for name, layer in net.layer_dict.items() if isinstance(layer, layer_class)]


class SeedGrowthReader:
    """The seed-growth figures of `net`'s current batch; `figures()` after each forward (solver step).

    gt_dir (ground-truth PNGs <id>.png) and input_list (the ImageData source, "<id>.jpg <index>"
    lines) together add the precisions; the ground truth of each image is read once and kept.
    """

    def __init__(self, net, gt_dir=None, input_list=None):
        if (gt_dir is None) != (input_list is None):
            raise ValueError("seed precision needs both a ground-truth folder and the input list "
                             f"(got gt_dir={gt_dir!r}, input_list={input_list!r})")
        self.dsrg_layers = layers_of_class(net, DSRGLayer)
        self.gt_dir, self.input_list = gt_dir, input_list
        self.image_ids = None
        self.annotation = None
        self.gt_cache = {}
        if input_list is not None and self.dsrg_layers:
            self.image_ids = {index: name for name, index in read_indexed_list(input_list)}
            annotations = layers_of_class(net, AnnotationLayer)
            if len(annotations) != 1:
                raise ValueError(f"seed precision needs the images of a batch from the net's one AnnotationLayer; "
                                 f"the net has {len(annotations)}")
            self.annotation = annotations[0][1]

    @property
    def columns(self):
        """The figures' names, in the order `figures()` gives them ([] without a DSRG layer)."""
        base = DENSITY_COLUMNS + (PRECISION_COLUMNS if self.image_ids is not None else ())
        if len(self.dsrg_layers) == 1:
            return list(base)
        return [f"{column}[{name}]" for name, _ in self.dsrg_layers for column in base]

    def batch_image_ids(self, num_images):
        """The ids of the AnnotationLayer's current batch, checked against the grown seeds' batch size."""
        indices = list(self.annotation.batch_image_indices)
        if len(indices) != num_images:
            raise ValueError(f"the AnnotationLayer's batch has {len(indices)} images, the DSRG layer's {num_images}")
        missing = [index for index in indices if index not in self.image_ids]
        if missing:
            raise ValueError(f"image index {missing[0]} of the batch is not in the input list {self.input_list}")
        return [self.image_ids[index] for index in indices]

    def figures(self):
        """{column: value} of the current batch (see the module doc)."""
        figures = {}
        for name, layer in self.dsrg_layers:
            if layer.grown_seeds is None:
                raise RuntimeError(f"DSRG layer '{name}' has no figures before the net's first forward")
            layer_figures = dict(layer.growth_figures)
            if self.image_ids is not None:
                seeds = np.array(layer.grown_seeds)
                mirrored = np.asarray(self.annotation.batch_mirrored, dtype=bool)
                image_ids = self.batch_image_ids(seeds.shape[0])
                seeds[mirrored] = seeds[mirrored][..., ::-1]
                layer_figures.update(seed_precisions(seeds, image_ids, self.gt_dir, self.gt_cache))
            suffix = f"[{name}]" if len(self.dsrg_layers) > 1 else ""
            figures.update({f"{column}{suffix}": value for column, value in layer_figures.items()})
        return figures


def seed_growth_figures(net, gt_dir=None, input_list=None):
    """The seed-growth figures of `net`'s (or `solver.net`'s) current batch, once; a training loop
    keeps a SeedGrowthReader instead (it reads the input list and each ground truth once)."""
    return SeedGrowthReader(net, gt_dir, input_list).figures()
