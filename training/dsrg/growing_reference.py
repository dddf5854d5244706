"""Straightforward per-pixel seeded region growing: the reference the vectorised version must equal.

It follows the rule of the DSRG paper (Huang et al., CVPR 2018, Sec. 3.2) as the published
``generate_seed_step`` applies it, one pixel at a time, with connected components found by a
pure-Python breadth-first search. It is slow on purpose: tests and the benchmark compare
:func:`dsrg.growing.grow_cues` against it bit for bit.
"""
from collections import deque

import numpy as np

from dsrg.growing import check_growing_inputs

NO_LABEL = -1
_NEIGHBOURS_8 = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def connected_components_8(mask):
    """Label the 8-connected components of a 2-D boolean `mask` (list of lists of ints, 0 = outside)."""
    height, width = len(mask), len(mask[0])
    labels = [[0] * width for _ in range(height)]
    next_label = 0
    for start_y in range(height):
        for start_x in range(width):
            if not mask[start_y][start_x] or labels[start_y][start_x]:
                continue
            next_label += 1
            labels[start_y][start_x] = next_label
            queue = deque([(start_y, start_x)])
            while queue:
                y, x = queue.popleft()
                for dy, dx in _NEIGHBOURS_8:
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < height and 0 <= nx < width and mask[ny][nx] and not labels[ny][nx]:
                        labels[ny][nx] = next_label
                        queue.append((ny, nx))
    return labels


def grow_image_reference(image_labels, refined_probs, cues, th1, th2):
    """Grow the cues of one image.

    image_labels: (C,) 0/1 with [0] = 1 (background); refined_probs: (C, h, w) CRF-refined
    probabilities; cues: (C, h, w) 0/1 seed map (a value > 0.5 is a seed). Returns the grown
    0/1 cues, float32 (C, h, w).
    """
    num_classes, height, width = refined_probs.shape
    present = [c for c in range(num_classes) if image_labels[c] > 0.5]
    seeded = [[[bool(cues[c, y, x] > 0.5) for x in range(width)] for y in range(height)]
              for c in range(num_classes)]

    label_map = [[NO_LABEL] * width for _ in range(height)]
    for y in range(height):
        for x in range(width):
            for c in range(num_classes):
                if seeded[c][y][x]:
                    label_map[y][x] = c
            best_class, best_value = present[0], refined_probs[present[0], y, x]
            for c in present[1:]:
                if refined_probs[c, y, x] > best_value:
                    best_class, best_value = c, refined_probs[c, y, x]
            if (best_class != 0 and best_value > th2) or (best_class == 0 and best_value > th1):
                label_map[y][x] = best_class

    for c in present:
        region = [[label_map[y][x] == c for x in range(width)] for y in range(height)]
        components = connected_components_8(region)
        grown_components = set()
        excluded = set()
        for y in range(height):
            for x in range(width):
                if not region[y][x]:
                    continue
                if seeded[c][y][x]:
                    grown_components.add(components[y][x])
                elif sum(seeded[k][y][x] for k in range(num_classes)) == 1:
                    excluded.add((y, x))
        for y in range(height):
            for x in range(width):
                if region[y][x] and components[y][x] in grown_components and (y, x) not in excluded:
                    seeded[c][y][x] = True

    return np.array(seeded, dtype=np.float32)


def grow_cues_reference(image_labels, refined_probs, cues, th1, th2):
    """Batch version: image_labels (N, C) or (N, 1, 1, C); refined_probs and cues (N, C, h, w)."""
    image_labels = check_growing_inputs(image_labels, refined_probs, cues)
    return np.stack([grow_image_reference(image_labels[n], refined_probs[n], cues[n], th1, th2)
                     for n in range(len(refined_probs))])
