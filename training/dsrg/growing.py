"""Deep seeded region growing (DSRG, Huang et al., CVPR 2018, Sec. 3.2), vectorised.

For each image, from its ORIGINAL cues (seeds) and its CRF-refined probabilities:

1. only classes present in the image label take part; each pixel gets its best present class c
   (first maximum, as ``np.argmax``) and probability v;
2. a label map starts from the seeds (a pixel seeded with several classes keeps the highest class
   index) and a pixel is then (re)labelled c where c != 0 and v > th2, or c == 0 and v > th1;
3. for each present class c: every 8-connected component of {label map == c} that contains a pixel
   seeded with c is grown (all its pixels get seed c), except pixels that carry exactly one seed of
   another class. Components are computed before exclusion, so an excluded pixel still connects its
   neighbours.

The published code applies step 3 class by class in increasing order and counts seeds added for
earlier classes in the exclusion test. Those seeds never matter: class c' only grows inside
{label map == c'}, which is disjoint from {label map == c}, so the seed count of every pixel of
{label map == c} is the same before and after the earlier classes. This lets one
``scipy.ndimage.label`` call treat every (image, present class) plane of the batch at once: the
planes are stacked vertically, each followed by an empty row so that no component crosses planes. The result is
bit-identical to :func:`dsrg.growing_reference.grow_cues_reference` (the per-pixel version).

The published code requires v > th2 as well as v > th1 for background; with th1 >= th2, as in all
published configurations (0.99, 0.85), that is the rule above.
"""
import numpy as np
from scipy import ndimage

_STRUCTURE_8 = np.ones((3, 3), dtype=bool)


def check_growing_inputs(image_labels, refined_probs, cues):
    """Validate shapes; return image labels as (N, C). Errors name expected and actual shapes."""
    refined_probs = np.asarray(refined_probs)
    if refined_probs.ndim != 4:
        raise ValueError(f"refined probabilities must be N×C×h×w, got shape {refined_probs.shape}")
    num_images, num_classes = refined_probs.shape[:2]
    if np.shape(cues) != refined_probs.shape:
        raise ValueError(f"cues must have the probabilities' shape {refined_probs.shape}, got {np.shape(cues)}")
    image_labels = np.asarray(image_labels)
    if image_labels.size != num_images * num_classes:
        raise ValueError(f"image labels must hold N×C = {num_images}×{num_classes} values "
                         f"(N×1×1×C), got shape {image_labels.shape}")
    image_labels = image_labels.reshape(num_images, num_classes)
    if not np.all(image_labels[:, 0] > 0.5):
        missing = np.flatnonzero(image_labels[:, 0] <= 0.5).tolist()
        raise ValueError(f"image labels must mark background present ([0] = 1); images {missing} do not")
    return image_labels


def initial_label_map(present, refined_probs, seeded, th1, th2):
    """Steps 1-2: the label map (N, h, w) int64, -1 where no class claims the pixel.

    present: (N, C) bool; refined_probs: (N, C, h, w); seeded: (N, C, h, w) bool.
    """
    num_images, num_classes = present.shape
    # Present classes of each image in increasing order (the first is always the background, class 0),
    # padded with class 0: a pad repeats the background's value and never beats it.
    order = np.argsort(~present, axis=1, kind="stable")
    counts = present.sum(axis=1)
    width = int(counts.max())
    present_classes = np.where(np.arange(width)[None, :] < counts[:, None], order[:, :width], 0)
    candidates = refined_probs[np.arange(num_images)[:, None], present_classes]
    # first maximum over the (few) candidates, as np.argmax, by a running strict comparison
    best_value = candidates[:, 0]
    best_class = np.zeros(best_value.shape, dtype=np.int64)
    for position in range(1, width):
        challenger = candidates[:, position]
        better = challenger > best_value
        best_value = np.where(better, challenger, best_value)
        best_class = np.where(better, present_classes[:, position, None, None], best_class)

    number_type = np.uint8 if num_classes < 255 else np.int64
    class_numbers = np.arange(1, num_classes + 1, dtype=number_type)[None, :, None, None]
    label_map = (seeded.view(np.uint8) * class_numbers).max(axis=1).astype(np.int64) - 1
    confident = np.where(best_class == 0, best_value > th1, best_value > th2)
    return np.where(confident, best_class, label_map)


def label_planes_8(planes):
    """8-connected components of every plane of a (P, h, w) boolean stack, in one labelling call.

    Returns (labels (P, h, w) int32, count); labels are unique across planes, 0 = background.
    """
    num_planes, height, width = planes.shape
    stacked = np.zeros((num_planes, height + 1, width), dtype=bool)
    stacked[:, :height] = planes
    labels, count = ndimage.label(stacked.reshape(num_planes * (height + 1), width), structure=_STRUCTURE_8)
    return labels.reshape(num_planes, height + 1, width)[:, :height], count


def grow_cues(image_labels, refined_probs, cues, th1, th2):
    """Grow a batch of cues.

    image_labels: (N, C) or (N, 1, 1, C), 1 for classes present (background [0] = 1);
    refined_probs: (N, C, h, w) CRF-refined probabilities; cues: (N, C, h, w) 0/1 seeds (a value
    > 0.5 is a seed); th1 / th2: background / foreground thresholds. Returns float32 (N, C, h, w).
    """
    image_labels = check_growing_inputs(image_labels, refined_probs, cues)
    refined_probs = np.asarray(refined_probs)
    present = image_labels > 0.5
    seeded = np.asarray(cues) > 0.5

    label_map = initial_label_map(present, refined_probs, seeded, th1, th2)
    image_index, class_index = np.nonzero(present)
    class_planes = label_map[image_index] == class_index[:, None, None]
    components, count = label_planes_8(class_planes)

    seeded_planes = seeded[image_index, class_index]
    component_has_seed = np.zeros(count + 1, dtype=bool)
    component_has_seed[components[class_planes & seeded_planes]] = True
    component_has_seed[0] = False

    seed_count = seeded.sum(axis=1, dtype=np.uint8 if seeded.shape[1] < 256 else np.int64)[image_index]
    single_other_seed = (seed_count == 1) & ~seeded_planes
    grown = seeded.copy()
    grown[image_index, class_index] |= component_has_seed[components] & ~single_other_seed
    return grown.astype(np.float32)
