"""Stage-2 data layer (``module: 'pylayers.layer' layer: 'ImageSegDataLayer'``)."""
from pylayers.layers import _CheckedLayer
from dsrg.params import REQUIRED
from dsrg.segdata import SegmentationBatchLoader
from dsrg.voc import IGNORE_LABEL


class ImageSegDataLayer(_CheckedLayer):
    """Images and label maps for fully supervised training: no bottoms -> [images N×3×s×s
    (mean-subtracted BGR), labels N×1×s×s (class indices, ignore_label where unlabelled)].

    param_str: 'batch_size', 'root_folder', 'source' (list file of "image_path label_path" lines
    relative to root_folder), 'mean' (3 values, BGR), 'mirror', 'crop_size', optional
    'ignore_label' (255), 'shuffle' (True), 'seed' (None). Random crop padded with the mean (image)
    and ignore_label (label), random mirror, batches prepared by a background thread
    (dsrg.segdata).
    """

    top_names = ("images", "labels")
    param_schema = {
        "batch_size": (int, REQUIRED),
        "root_folder": (str, ""),
        "source": (str, REQUIRED),
        "mean": ((tuple, list), REQUIRED),
        "mirror": (bool, False),
        "crop_size": (int, REQUIRED),
        "ignore_label": (int, IGNORE_LABEL),
        "shuffle": (bool, True),
        "seed": ((int, type(None)), None),
    }

    def configure(self, bottom, top):
        params = self.params
        try:
            self.loader = SegmentationBatchLoader(
                params["root_folder"], params["source"], params["batch_size"], params["crop_size"],
                params["mean"], mirror=params["mirror"], ignore_label=params["ignore_label"],
                shuffle=params["shuffle"], seed=params["seed"])
        except ValueError as error:
            raise ValueError(f"{self.layer_name}: {error}") from error
        top[0].reshape(params["batch_size"], 3, params["crop_size"], params["crop_size"])
        top[1].reshape(params["batch_size"], 1, params["crop_size"], params["crop_size"])

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        images, labels = self.loader.next_batch()
        top[0].data[...] = images
        top[1].data[...] = labels

    def backward(self, top, propagate_down, bottom):
        pass
