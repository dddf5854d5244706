"""Stage-2 data layer (``module: 'pylayers.layer' layer: 'ImageSegDataLayer'``)."""
from dsrg.fileio import MAX_IMAGE_SIDE
from dsrg.params import REQUIRED, Within
from dsrg.segdata import SegmentationBatchLoader
from dsrg.voc import IGNORE_LABEL
from pylayers.layers import _CheckedLayer

PHASES = ("Train", "Test")


class ImageSegDataLayer(_CheckedLayer):
    """Images and label maps for fully supervised training: no bottoms -> [images N×3×h×w
    (mean-subtracted BGR), labels N×1×h×w (class indices, ignore_label where unlabelled)].

    param_str: 'batch_size', 'root_folder', 'source' (list file of "image_path label_path" lines
    relative to root_folder), 'mean' (3 values, BGR), 'mirror', 'crop_size' (an int for a square
    crop, or (height, width) as the release writes it: ``(321, 321)``), optional 'ignore_label'
    (255), 'scale' (1.0, multiplies the mean-subtracted image), 'phase' ('Train': random crop
    offsets; 'Test': centred crops), 'shuffle' (True), 'seed' (None; rank r of a multi-GPU run uses
    seed + r). Crops are padded with the mean (image) and ignore_label (label), mirrored at random when
    'mirror' is on, and prepared by a background thread (dsrg.segdata).
    """

    top_names = ("images", "labels")
    param_schema = {
        "batch_size": (int, REQUIRED, Within(1)),
        "root_folder": (str, ""),
        "source": (str, REQUIRED),
        "mean": ((tuple, list), REQUIRED, Within(count=3)),
        "mirror": (bool, False),
        "crop_size": ((int, tuple, list), REQUIRED, Within(1, MAX_IMAGE_SIDE)),
        "ignore_label": (int, IGNORE_LABEL, Within(0, 255)),
        "scale": (float, 1.0, Within()),
        "phase": (str, "Train"),
        "shuffle": (bool, True),
        "seed": ((int, type(None)), None, Within(0)),
    }

    def configure(self, bottom, top):
        params = self.params
        if params["phase"] not in PHASES:
            raise ValueError(f"{self.layer_name}: param_str key 'phase' must be one of {PHASES}, "
                             f"got {params['phase']!r}")
        try:
            self.loader = SegmentationBatchLoader(
                params["root_folder"], params["source"], params["batch_size"], params["crop_size"],
                params["mean"], mirror=params["mirror"], ignore_label=params["ignore_label"],
                shuffle=params["shuffle"], seed=params["seed"], scale=params["scale"],
                random_crop=params["phase"] == "Train")
        except ValueError as error:
            raise ValueError(f"{self.layer_name}: {error}") from error
        shape = (self.loader.crop_height, self.loader.crop_width)
        top[0].reshape(params["batch_size"], 3, *shape)
        top[1].reshape(params["batch_size"], 1, *shape)

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        images, labels = self.loader.next_batch()
        top[0].data[...] = images
        top[1].data[...] = labels

    def backward(self, top, propagate_down, bottom):
        pass
