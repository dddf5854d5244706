"""Caffe Python layers of SEC / DSRG: thin adapters over the numpy cores of `dsrg`.

Every layer checks its bottom shapes in ``reshape`` (the error names the layer, the expected and
the actual shape), never writes into its bottoms, scales its gradients by ``top[0].diff`` (so
``loss_weight`` works) and only writes the diffs of bottoms whose ``propagate_down`` is set.
Bottoms without a defined gradient (images, labels, cues) get a zero diff when one is asked for.
"""
import caffe
import numpy as np

from dsrg import crf, losses
from dsrg.cues import MAX_LABELS_PER_IMAGE, annotation_batch, image_index_from_label, load_cues
from dsrg.fileio import MAX_IMAGE_SIDE
from dsrg.growing import grow_cues
from dsrg.imagelabels import read_image_labels
from dsrg.lists import read_indexed_list
from dsrg.params import REQUIRED, Within, parse_param_str, rank_seed
from dsrg.seedgrowth import seed_densities
from dsrg.softmax import floor_probs, plain_softmax, softmax_backward_from_plain
from dsrg.voc import NUM_CLASSES


def bottom_data(bottom):
    """The data arrays of a Caffe blob vector (which pycaffe cannot iterate)."""
    return [bottom[index].data for index in range(len(bottom))]


class _CheckedLayer(caffe.Layer):
    """Bottom/top counts, param_str parsing and shape errors shared by the layers below. A 'seed' key
    becomes the seed of this solver process (dsrg.params.rank_seed: seed + caffe.solver_rank(), the
    given seed itself outside a multi-GPU run)."""

    bottom_names = ()
    top_names = ()
    param_schema = {}

    @property
    def layer_name(self):
        return type(self).__name__

    def setup(self, bottom, top):
        if len(bottom) != len(self.bottom_names):
            raise ValueError(f"{self.layer_name}: expected {len(self.bottom_names)} bottoms "
                             f"({', '.join(self.bottom_names) or 'none'}), got {len(bottom)}")
        if len(top) != len(self.top_names):
            raise ValueError(f"{self.layer_name}: expected {len(self.top_names)} tops "
                             f"({', '.join(self.top_names)}), got {len(top)}")
        self.params = parse_param_str(self.layer_name, getattr(self, "param_str", ""), self.param_schema)
        if "seed" in self.params:
            self.params["seed"] = rank_seed(self.params["seed"], caffe.solver_rank())
        self.configure(bottom, top)

    def configure(self, bottom, top):
        """Layer-specific setup after the param_str is parsed."""

    def shape_error(self, index, expected, actual):
        return ValueError(f"{self.layer_name}: bottom {index} ({self.bottom_names[index]}) must be "
                          f"{expected}, got shape {tuple(actual)}")

    def require_4d(self, bottom, index):
        if bottom[index].data.ndim != 4:
            raise self.shape_error(index, "N×C×h×w", bottom[index].data.shape)
        return bottom[index].data.shape

    def require_same_shape(self, bottom, index, reference_index):
        expected = bottom[reference_index].data.shape
        if bottom[index].data.shape != expected:
            raise self.shape_error(index, f"of shape {tuple(expected)} like bottom {reference_index} "
                                          f"({self.bottom_names[reference_index]})", bottom[index].data.shape)

    def require_images(self, bottom, index, num_images):
        shape = bottom[index].data.shape
        if len(shape) != 4 or shape[0] != num_images or shape[1] != 3:
            raise self.shape_error(index, f"N×3×H×W with N = {num_images}", shape)

    def require_image_labels(self, bottom, index, num_images, num_classes):
        shape = bottom[index].data.shape
        if tuple(shape) != (num_images, 1, 1, num_classes):
            raise self.shape_error(index, f"N×1×1×C = {num_images}×1×1×{num_classes}", shape)

    @staticmethod
    def zero_diffs(propagate_down, bottom, indices):
        for index in indices:
            if propagate_down[index]:
                bottom[index].diff[...] = 0


class _LossLayer(_CheckedLayer):
    """A scalar loss; subclasses give `loss_and_gradients(*bottom data)` -> (loss, {bottom index: gradient})."""

    top_names = ("loss",)
    differentiable = (0,)

    def reshape(self, bottom, top):
        self.check_shapes(bottom)
        top[0].reshape(1)

    def forward(self, bottom, top):
        loss, self.gradients = self.loss_and_gradients(*bottom_data(bottom))
        top[0].data[0] = loss

    def backward(self, top, propagate_down, bottom):
        scale = top[0].diff.flat[0]
        for index in self.differentiable:
            if propagate_down[index]:
                bottom[index].diff[...] = self.gradients[index] * scale
        self.zero_diffs(propagate_down, bottom, [i for i in range(len(bottom)) if i not in self.differentiable])


class SoftmaxLayer(_CheckedLayer):
    """Floored softmax over channels: scores N×C×h×w -> probabilities N×C×h×w.

    p = (softmax(x) + 1e-4) / Σ_c (softmax(x) + 1e-4); exact backward (dsrg.softmax).
    """

    bottom_names = ("scores",)
    top_names = ("probs",)

    def reshape(self, bottom, top):
        self.require_4d(bottom, 0)
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        self.plain = plain_softmax(bottom[0].data)
        top[0].data[...] = floor_probs(self.plain)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = softmax_backward_from_plain(self.plain, top[0].diff)


class CRFLayer(_CheckedLayer):
    """Dense-CRF refinement (SEC's f_CRF): [probs N×C×h×w, images N×3×H×W] -> log Q N×C×h×w.

    Q is the CRF marginal of dsrg.crf (images resized to h×w, mean (104, 117, 123) added back,
    unaries max(P, 1e-4), scale factor 12, 10 iterations, Q floored at 1e-4 and renormalised),
    shared with DSRGLayer through dsrg.crf's one-entry memo. Backward, as published (the CRF is
    not differentiated): dL/dP = (1 − Q)·dL/dlog Q; no gradient to the images.
    """

    bottom_names = ("probs", "images")
    top_names = ("log_q",)

    def reshape(self, bottom, top):
        shape = self.require_4d(bottom, 0)
        self.require_images(bottom, 1, shape[0])
        top[0].reshape(*shape)

    def forward(self, bottom, top):
        self.q = crf.refine(bottom[0].data, bottom[1].data)
        top[0].data[...] = np.log(self.q)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = (1.0 - self.q) * top[0].diff
        self.zero_diffs(propagate_down, bottom, [1])


class DSRGLayer(_CheckedLayer):
    """Deep seeded region growing (DSRG Sec. 3.2): [labels N×1×1×C, probs N×C×h×w, cues N×C×h×w,
    images N×3×H×W] -> grown cues N×C×h×w.

    The probabilities are refined by the same dense CRF as CRFLayer (computed once when both are in
    the net), then every image's ORIGINAL cues are grown by dsrg.growing.grow_cues with background
    threshold th1 and foreground threshold th2. param_str: "{'th1': 0.99, 'th2': 0.85}"; 'iters'
    (an int, default -1) is accepted and ignored, as in the release, whose layer stores it unused.
    No gradient flows to any bottom.

    After each forward the layer keeps, for a caller that reads it from ``net.layers`` (pycaffe
    gives the Python object itself; pylayers.seedgrowth does): ``grown_seeds`` (a copy of the top,
    N×C×h×w, in the frame of the cues as AnnotationLayer gave them) and ``growth_figures``
    ({'seed_bg_density', 'seed_fg_density'}: dsrg.seedgrowth.seed_densities of the batch). Before
    the first forward they are None and {}.
    """

    bottom_names = ("labels", "probs", "cues", "images")
    top_names = ("grown_cues",)
    param_schema = {"th1": (float, 0.99, Within(0, 1)), "th2": (float, 0.85, Within(0, 1)),
                    "iters": (int, -1, Within(-1))}

    def configure(self, bottom, top):
        self.grown_seeds = None
        self.growth_figures = {}

    def reshape(self, bottom, top):
        shape = self.require_4d(bottom, 1)
        self.require_image_labels(bottom, 0, shape[0], shape[1])
        self.require_same_shape(bottom, 2, 1)
        self.require_images(bottom, 3, shape[0])
        top[0].reshape(*shape)

    def forward(self, bottom, top):
        refined = crf.refine(bottom[1].data, bottom[3].data)
        grown = grow_cues(bottom[0].data, refined, bottom[2].data, self.params["th1"], self.params["th2"])
        top[0].data[...] = grown
        self.grown_seeds = grown
        self.growth_figures = seed_densities(grown)

    def backward(self, top, propagate_down, bottom):
        self.zero_diffs(propagate_down, bottom, range(len(bottom)))


class SeedLossLayer(_LossLayer):
    """Seeding loss (SEC Eq. 2): [probs N×C×h×w, cues N×C×h×w] -> mean_n −Σ S·log P / Σ S."""

    bottom_names = ("probs", "cues")

    def check_shapes(self, bottom):
        self.require_4d(bottom, 0)
        self.require_same_shape(bottom, 1, 0)

    def loss_and_gradients(self, probs, cues):
        return losses.seed_loss_forward(probs, cues), {0: losses.seed_loss_backward(probs, cues)}


class BalancedSeedLossLayer(SeedLossLayer):
    """DSRG's balanced seeding loss (DSRG Eq. 3): [probs, cues] -> background term (channel 0) +
    foreground term (channels 1..C-1), each normalised by its own seed count (floored at 1e-4)."""

    def loss_and_gradients(self, probs, cues):
        return (losses.balanced_seed_loss_forward(probs, cues),
                {0: losses.balanced_seed_loss_backward(probs, cues)})


class ConstrainLossLayer(_LossLayer):
    """Constrain-to-boundary loss (SEC Eq. 4): [probs P N×C×h×w, log Q N×C×h×w] ->
    mean_{n,u} Σ_c Q·log(clip(Q/P, 0.05, 20)); gradients to both bottoms."""

    bottom_names = ("probs", "log_q")
    differentiable = (0, 1)

    def check_shapes(self, bottom):
        self.require_4d(bottom, 0)
        self.require_same_shape(bottom, 1, 0)

    def loss_and_gradients(self, probs, log_q):
        loss, grad_probs, grad_log_q = losses.constrain_loss_terms(probs, log_q)
        return loss, {0: grad_probs, 1: grad_log_q}


class ExpandLossLayer(_LossLayer):
    """SEC's expansion loss with global weighted rank pooling (SEC Eq. 3): [probs N×C×h×w,
    labels N×1×1×C] -> loss; q_fg 0.996, q_bg 0.999, any C and h×w."""

    bottom_names = ("probs", "labels")

    def check_shapes(self, bottom):
        shape = self.require_4d(bottom, 0)
        self.require_image_labels(bottom, 1, shape[0], shape[1])

    def loss_and_gradients(self, probs, labels):
        return losses.expand_loss_forward(probs, labels), {0: losses.expand_loss_backward(probs, labels)}


class AnnotationLayer(_CheckedLayer):
    """Image labels and localization cues: [image ids N (ImageData's label), images N×3×H×W] ->
    [labels N×1×1×C ([0] = 1 background), cues N×C×s×s, images N×3×H×W].

    param_str: 'cues' (cue file path: .pickle/.pkl(.gz) read by the restricted unpickler, or .npz),
    'mirror' (flip each image and its cues together with probability 1/2), 'num_classes' (21),
    'cue_size' (41: the grid of the net's scores, 21 for a 161 input), 'cue_file_size' (the grid the
    cue file is on, default cue_size; when they differ the cues are resampled by aligned-corners
    nearest sampling, e.g. 41 → 21 takes every second cell), 'seed' (mirroring RNG seed, None = random;
    rank r of a multi-GPU run uses seed + r).

    After each forward the layer keeps ``batch_image_indices`` (the N image indices, ImageData's
    labels: the second column of its input list) and ``batch_mirrored`` (N booleans: the images whose
    images and cues it flipped), for a caller that relates the batch to ground truth
    (pylayers.seedgrowth). Before the first forward they are empty.
    """

    bottom_names = ("image_ids", "images")
    top_names = ("labels", "cues", "images")
    param_schema = {
        "cues": (str, REQUIRED),
        "mirror": (bool, False),
        "num_classes": (int, NUM_CLASSES, Within(2, MAX_LABELS_PER_IMAGE)),
        "cue_size": (int, 41, Within(1, MAX_IMAGE_SIDE)),
        "cue_file_size": ((int, type(None)), None, Within(1, MAX_IMAGE_SIDE)),
        "seed": ((int, type(None)), None, Within(0)),
    }

    def configure(self, bottom, top):
        self.cue_path = self.params["cues"]
        self.cues = load_cues(self.cue_path)
        self.rng = np.random.default_rng(self.params["seed"])
        self.batch_image_indices = []
        self.batch_mirrored = np.zeros(0, dtype=bool)

    def reshape(self, bottom, top):
        num_images = bottom[0].data.shape[0] if bottom[0].data.ndim else 0
        if bottom[0].data.size != num_images:
            raise self.shape_error(0, "N image indices", bottom[0].data.shape)
        self.require_images(bottom, 1, num_images)
        top[0].reshape(num_images, 1, 1, self.params["num_classes"])
        top[1].reshape(num_images, self.params["num_classes"], self.params["cue_size"], self.params["cue_size"])
        top[2].reshape(*bottom[1].data.shape)

    def forward(self, bottom, top):
        indices = [image_index_from_label(value, f"{self.layer_name} bottom 0 (image_ids)")
                   for value in bottom[0].data.reshape(-1)]
        labels, cues = annotation_batch(self.cues, indices, self.params["num_classes"],
                                        self.params["cue_size"], f"{self.layer_name} ({self.cue_path})",
                                        file_cue_size=self.params["cue_file_size"])
        images = bottom[1].data.copy()
        flipped = np.zeros(len(indices), dtype=bool)
        if self.params["mirror"]:
            flipped = self.rng.integers(0, 2, size=len(indices)).astype(bool)
            cues[flipped] = cues[flipped][..., ::-1]
            images[flipped] = images[flipped][..., ::-1]
        self.batch_image_indices, self.batch_mirrored = indices, flipped
        top[0].data[...] = labels
        top[1].data[...] = cues
        top[2].data[...] = images

    def backward(self, top, propagate_down, bottom):
        self.zero_diffs(propagate_down, bottom, range(len(bottom)))


class ImageLabelLayer(_CheckedLayer):
    """Multi-hot foreground labels for a CAM net: [image ids N (ImageData's label)] -> [labels N×(C-1)].

    labels[n, c-1] = 1 when foreground class c (1..C-1) is among the image's labels, else 0: the
    targets of a multi-label SigmoidCrossEntropyLoss on the C-1 class scores (SEC's localisation net).
    The image of index i is the image on the line of `input_list` whose second column is i (what
    ImageData passes on), and its labels are read from `labels` (dsrg.imagelabels format).

    param_str: 'labels' (image label file, required), 'input_list' ("<id>.jpg <index>" lines,
    required), 'num_classes' (C, background included; 21).
    """

    bottom_names = ("image_ids",)
    top_names = ("labels",)
    param_schema = {
        "labels": (str, REQUIRED),
        "input_list": (str, REQUIRED),
        "num_classes": (int, NUM_CLASSES, Within(2, MAX_LABELS_PER_IMAGE)),
    }

    def configure(self, bottom, top):
        labels_by_id = read_image_labels(self.params["labels"], self.params["num_classes"])
        self.targets = {}
        for image_id, index in read_indexed_list(self.params["input_list"]):
            if image_id not in labels_by_id:
                raise ValueError(f"{self.layer_name}: image {image_id} of {self.params['input_list']} has no "
                                 f"line in the label file {self.params['labels']}")
            target = np.zeros(self.params["num_classes"] - 1, dtype=np.float32)
            target[labels_by_id[image_id] - 1] = 1.0
            self.targets[index] = target

    def reshape(self, bottom, top):
        num_images = bottom[0].data.shape[0] if bottom[0].data.ndim else 0
        if bottom[0].data.size != num_images:
            raise self.shape_error(0, "N image indices", bottom[0].data.shape)
        top[0].reshape(num_images, self.params["num_classes"] - 1)

    def forward(self, bottom, top):
        for position, value in enumerate(bottom[0].data.reshape(-1)):
            index = image_index_from_label(value, f"{self.layer_name} bottom 0 (image_ids)")
            if index not in self.targets:
                raise KeyError(f"{self.layer_name}: image index {index} is not in {self.params['input_list']}")
            top[0].data[position] = self.targets[index]

    def backward(self, top, propagate_down, bottom):
        self.zero_diffs(propagate_down, bottom, range(len(bottom)))
