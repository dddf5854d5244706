"""The pylayers Caffe adapters in inline-prototxt nets: Caffe-style numeric gradient checks with
loss_weight 3, propagate_down respected, bottoms untouched, the shared CRF, cue files, real data."""
import gzip
import os
import pickle

import numpy as np
import pytest

from caffe_helpers import (
    SHARED_VOC12,
    check_net_gradient,
    input_layer,
    make_net,
    python_layer,
    random_probs,
    set_inputs,
)

os.environ.setdefault("GLOG_minloglevel", "2")
import caffe  # noqa: E402  (after GLOG_minloglevel is set)
caffe.set_mode_cpu()

from dsrg import crf, losses  # noqa: E402
from dsrg.cues import save_cues  # noqa: E402
from dsrg.fileio import read_label_png  # noqa: E402
from dsrg.growing import grow_cues  # noqa: E402

LOSS_WEIGHT = 3.0


def header():
    return "force_backward: true\n"


def net_with(inputs, layers):
    return make_net(caffe, header() + "".join(input_layer(n, s) for n, s in inputs.items()) + "".join(layers))


def caffe_gradient_check(net, values, loss_name, wrt, step=1e-3, rtol=2e-2, atol=2e-3):
    return check_net_gradient(net, values, loss_name, wrt, LOSS_WEIGHT, step=step, rtol=rtol, atol=atol)


def seeded_batch(seed=0, shape=(2, 4, 3, 4)):
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, shape, spread=1.0).astype(np.float32)
    cues = (rng.random(shape) < 0.35).astype(np.float32)
    cues[1, 0] = 0   # an image without background cues
    return rng, probs, cues


# ---- losses --------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer, core", [
    ("SeedLossLayer", losses.seed_loss_backward),
    ("BalancedSeedLossLayer", losses.balanced_seed_loss_backward),
])
def test_seed_losses_gradient_and_loss_weight(layer, core):
    _, probs, cues = seeded_batch()
    net = net_with({"probs": probs.shape, "cues": cues.shape},
                   [python_layer("loss", layer, ["probs", "cues"], ["loss"], loss_weight=3)])
    analytic = caffe_gradient_check(net, {"probs": probs, "cues": cues}, "loss", "probs")
    np.testing.assert_allclose(analytic, LOSS_WEIGHT * core(probs, cues), rtol=1e-5)


def test_constrain_loss_gradients_to_both_bottoms():
    rng, probs, _ = seeded_batch(1)
    log_q = np.log(random_probs(rng, probs.shape, spread=1.0)).astype(np.float32)
    net = net_with({"probs": probs.shape, "log_q": probs.shape},
                   [python_layer("loss", "ConstrainLossLayer", ["probs", "log_q"], ["loss"], loss_weight=3)])
    values = {"probs": probs, "log_q": log_q}
    caffe_gradient_check(net, values, "loss", "probs")
    caffe_gradient_check(net, values, "loss", "log_q")


def test_expand_loss_gradient():
    rng = np.random.default_rng(2)
    # distinct, well separated values in every map: no rank swap within the difference step
    levels = np.linspace(0.02, 0.9, 12)
    probs = np.stack([rng.permutation(levels) for _ in range(2 * 5)]).reshape(2, 5, 3, 4).astype(np.float32)
    labels = np.zeros((2, 1, 1, 5), dtype=np.float32)
    labels[..., 0] = 1
    labels[0, 0, 0, [1, 3]] = 1
    labels[1, 0, 0, 4] = 1
    net = net_with({"probs": probs.shape, "labels": labels.shape},
                   [python_layer("loss", "ExpandLossLayer", ["probs", "labels"], ["loss"], loss_weight=3)])
    caffe_gradient_check(net, {"probs": probs, "labels": labels}, "loss", "probs", step=5e-4)


def test_softmax_gradient_through_a_loss_and_with_a_given_top_diff():
    rng, probs, cues = seeded_batch(3)
    scores = rng.normal(size=probs.shape).astype(np.float32)
    net = net_with({"scores": scores.shape, "cues": cues.shape}, [
        python_layer("softmax", "SoftmaxLayer", ["scores"], ["probs"]),
        python_layer("loss", "BalancedSeedLossLayer", ["probs", "cues"], ["loss"], loss_weight=3),
    ])
    caffe_gradient_check(net, {"scores": scores, "cues": cues}, "loss", "scores")

    alone = net_with({"scores": scores.shape}, [python_layer("softmax", "SoftmaxLayer", ["scores"], ["probs"])])
    alone.blobs["scores"].data[...] = scores
    alone.forward()
    top_diff = rng.normal(size=scores.shape).astype(np.float32)
    diff = alone.backward(probs=top_diff)["scores"]
    step = 1e-2
    numeric = np.zeros(scores.shape)
    for index in np.ndindex(scores.shape):
        for sign in (1, -1):
            shifted = scores.astype(np.float64)
            shifted[index] += sign * step
            alone.blobs["scores"].data[...] = shifted
            numeric[index] += sign * float((alone.forward()["probs"].astype(np.float64) * top_diff).sum())
    np.testing.assert_allclose(diff, numeric / (2 * step), rtol=2e-2, atol=2e-3)


def learnable_copy(name, source):
    """A Bias layer with a learnable scalar (initialised to 0): its top needs backward without force_backward."""
    return (f'layer {{ name: "{name}" type: "Bias" bottom: "{source}" top: "{name}" '
            f'bias_param {{ axis: 0 num_axes: 0 filler {{ type: "constant" value: 0 }} }} }}\n')


def test_propagate_down_zero_is_respected_and_bottoms_are_unchanged():
    # force_backward would override propagate_down (Caffe ORs it in), so this net does without it:
    # both bottoms come out of learnable layers and need backward unless propagate_down says no.
    rng, probs, _ = seeded_batch(4)
    log_q = np.log(random_probs(rng, probs.shape)).astype(np.float32)
    prototxt = (input_layer("probs_in", probs.shape) + input_layer("log_q_in", probs.shape)
                + learnable_copy("probs", "probs_in") + learnable_copy("log_q", "log_q_in")
                + python_layer("loss", "ConstrainLossLayer", ["probs", "log_q"], ["loss"], loss_weight=3,
                               propagate_down=[1, 0]))
    net = make_net(caffe, prototxt)
    set_inputs(net, {"probs_in": probs, "log_q_in": log_q})
    net.forward()
    np.testing.assert_array_equal(net.blobs["probs"].data, probs)
    np.testing.assert_array_equal(net.blobs["log_q"].data, log_q)
    net.blobs["log_q"].diff[...] = 7.0
    net.blobs["probs"].diff[...] = 7.0
    net.backward()
    assert np.all(net.blobs["log_q"].diff == 7.0)
    expected = LOSS_WEIGHT * losses.constrain_loss_backward(probs, log_q)[0]
    np.testing.assert_allclose(net.blobs["probs"].diff, expected, rtol=1e-5, atol=1e-8)


def test_shape_errors_name_layer_expected_and_actual():
    with pytest.raises(ValueError, match=r"SeedLossLayer: bottom 1 \(cues\) must be of shape \(2, 3, 4, 5\).*"
                                         r"got shape \(2, 3, 4, 6\)"):
        net_with({"probs": (2, 3, 4, 5), "cues": (2, 3, 4, 6)},
                 [python_layer("loss", "SeedLossLayer", ["probs", "cues"], ["loss"], loss_weight=3)])
    with pytest.raises(ValueError, match=r"DSRGLayer: unknown param_str key 'th3'; allowed keys: iters, th1, th2"):
        net_with({"labels": (1, 1, 1, 3), "probs": (1, 3, 4, 4), "cues": (1, 3, 4, 4), "images": (1, 3, 8, 8)},
                 [python_layer("dsrg", "DSRGLayer", ["labels", "probs", "cues", "images"], ["grown"],
                               param_str="{'th3': 0.5}")])
    with pytest.raises(ValueError, match=r"ExpandLossLayer: bottom 1 \(labels\) must be N×1×1×C = 2×1×1×3"):
        net_with({"probs": (2, 3, 4, 4), "labels": (2, 1, 1, 4)},
                 [python_layer("loss", "ExpandLossLayer", ["probs", "labels"], ["loss"], loss_weight=3)])


# ---- CRF and DSRG layers ----------------------------------------------------------------------------

def stage1_inputs(seed=5, num_images=2, num_classes=4, size=(9, 9), image_size=(33, 33)):
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, (num_images, num_classes) + size, spread=4.0).astype(np.float32)
    images = (rng.uniform(0, 255, (num_images, 3) + image_size) - 115).astype(np.float32)
    labels = np.zeros((num_images, 1, 1, num_classes), dtype=np.float32)
    labels[..., 0] = 1
    labels[0, 0, 0, 1] = labels[1, 0, 0, [2, 3]] = 1
    cues = np.zeros(probs.shape, dtype=np.float32)
    cues[0, 0, 0, :] = cues[0, 1, 4, 4] = 1
    cues[1, 0, :, 0] = cues[1, 2, 3, 3] = cues[1, 3, 6, 6] = 1
    return {"labels": labels, "probs": probs, "cues": cues, "images": images}


def test_crf_layer_forward_and_published_backward(crf_backend):
    values = stage1_inputs()
    net = net_with({"probs": values["probs"].shape, "images": values["images"].shape},
                   [python_layer("crf", "CRFLayer", ["probs", "images"], ["log_q"], propagate_down=[1, 0])])
    set_inputs(net, {"probs": values["probs"], "images": values["images"]})
    net.blobs["images"].diff[...] = 5.0
    log_q = net.forward()["log_q"].copy()
    np.testing.assert_array_equal(net.blobs["probs"].data, values["probs"])
    np.testing.assert_array_equal(net.blobs["images"].data, values["images"])
    crf.clear_memo()
    q = crf.refine(values["probs"], values["images"])
    np.testing.assert_allclose(log_q, np.log(q), rtol=1e-6, atol=1e-6)
    top_diff = np.random.default_rng(0).normal(size=log_q.shape).astype(np.float32)
    diff = net.backward(log_q=top_diff)["probs"]
    np.testing.assert_allclose(diff, (1 - q) * top_diff, rtol=1e-5, atol=1e-7)
    assert np.all(net.blobs["images"].diff == 0)   # force_backward asks for it: no gradient to the images


STAGE1_LAYERS = [
    python_layer("crf", "CRFLayer", ["probs", "images"], ["log_q"], propagate_down=[1, 0]),
    python_layer("dsrg", "DSRGLayer", ["labels", "probs", "cues", "images"], ["grown"],
                 param_str="{'th1': 0.99, 'th2': 0.85}", propagate_down=[0, 0, 0, 0]),
    python_layer("seed", "BalancedSeedLossLayer", ["probs", "grown"], ["seed_loss"], loss_weight=3,
                 propagate_down=[1, 0]),
    python_layer("constrain", "ConstrainLossLayer", ["probs", "log_q"], ["constrain_loss"], loss_weight=3),
]


def test_dsrg_layer_grows_from_the_shared_crf(crf_backend):
    calls = []
    backend = crf.current_backend()

    def counting_backend(images, unaries, **options):
        calls.append(1)
        return backend(images, unaries, **options)

    crf.set_crf_backend(counting_backend)
    values = stage1_inputs()
    net = net_with({name: value.shape for name, value in values.items()}, STAGE1_LAYERS)
    set_inputs(net, values)
    net.forward()
    assert len(calls) == 1   # CRFLayer and DSRGLayer share one CRF per iteration
    expected = grow_cues(values["labels"], crf.refine(values["probs"], values["images"]), values["cues"], 0.99, 0.85)
    grown = net.blobs["grown"].data
    np.testing.assert_array_equal(grown, expected)
    assert grown.sum() > values["cues"].sum()   # something grew
    assert np.all(grown >= values["cues"])       # the original cues are kept
    for name, value in values.items():
        np.testing.assert_array_equal(net.blobs[name].data, value)
    values["probs"][0, 0, 0, 0] *= 0.5
    set_inputs(net, values)
    net.forward()
    assert len(calls) == 2
    net.backward()
    assert np.any(net.blobs["probs"].diff != 0)


def test_dsrg_layer_works_alone(crf_backend):
    values = stage1_inputs(seed=6)
    net = net_with({name: value.shape for name, value in values.items()}, [STAGE1_LAYERS[1]])
    set_inputs(net, values)
    crf.clear_memo()
    grown = net.forward()["grown"]
    expected = grow_cues(values["labels"], crf.run_crf(values["probs"], values["images"]), values["cues"], 0.99, 0.85)
    np.testing.assert_array_equal(grown, expected)


# ---- AnnotationLayer ------------------------------------------------------------------------------

def annotation_net(cue_path, num_images=3, image_size=(2 * 8 + 1, 2 * 8 + 1), extra=""):
    param = f"{{'cues': '{cue_path}', 'mirror': True, 'num_classes': 5, 'cue_size': 3, 'seed': 4{extra}}}"
    return net_with({"ids": (num_images,), "images": (num_images, 3) + image_size},
                    [python_layer("annotation", "AnnotationLayer", ["ids", "images"], ["labels", "cues", "out"],
                                  param_str=param, propagate_down=[0, 0])])


def test_annotation_layer_mirrors_images_and_cues_together(tmp_path):
    mapping = {"0_labels": np.array([2]), "0_cues": np.array([[0, 2, 2], [0, 1, 1], [0, 0, 1]]),
               "1_labels": np.array([1, 4]), "1_cues": np.array([[1, 4, 0], [2, 2, 0], [0, 1, 2]])}
    save_cues(tmp_path / "cues.npz", mapping)
    net = annotation_net(tmp_path / "cues.npz", num_images=3)
    images = np.random.default_rng(0).normal(size=net.blobs["images"].data.shape).astype(np.float32)
    net.blobs["ids"].data[...] = [1, 0, 1]
    net.blobs["images"].data[...] = images
    flips = set()
    for _ in range(6):
        out = net.forward()
        assert out["labels"][:, 0, 0].tolist() == [[1, 1, 0, 0, 1], [1, 0, 1, 0, 0], [1, 1, 0, 0, 1]]
        for position, image_id in enumerate([1, 0, 1]):
            cue_rows = mapping[f"{image_id}_cues"]
            plain = np.zeros((5, 3, 3), np.float32)
            plain[cue_rows[0], cue_rows[1], cue_rows[2]] = 1
            flipped = not np.array_equal(out["cues"][position], plain)
            if flipped:
                np.testing.assert_array_equal(out["cues"][position], plain[..., ::-1])
                np.testing.assert_array_equal(out["out"][position], images[position][..., ::-1])
            else:
                np.testing.assert_array_equal(out["out"][position], images[position])
            flips.add(flipped)
        np.testing.assert_array_equal(net.blobs["images"].data, images)
    assert flips == {True, False}


def test_annotation_layer_errors(tmp_path):
    save_cues(tmp_path / "cues.npz", {"0_labels": np.array([2]), "0_cues": np.array([[2], [5], [0]])})
    net = annotation_net(tmp_path / "cues.npz", num_images=1)
    net.blobs["ids"].data[...] = [3]
    with pytest.raises(ValueError, match="no cues for image index 3"):
        net.forward()
    net.blobs["ids"].data[...] = [0]
    with pytest.raises(ValueError, match=r"image 0: cue row out of range: expected 0\.\.2, got \[5\]"):
        net.forward()
    with pytest.raises(FileNotFoundError, match="absent.pickle"):
        annotation_net(tmp_path / "absent.pickle", num_images=1)


class _Touch:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_annotation_layer_refuses_a_code_executing_pickle(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pickle.gz"
    path.write_bytes(gzip.compress(pickle.dumps({"0_labels": _Touch(marker), "0_cues": np.zeros((3, 0))}, protocol=2)))
    with pytest.raises(pickle.UnpicklingError, match=r"evil\.pickle\.gz: refused to load global '(posix|os)\.system'"):
        annotation_net(path, num_images=1)
    assert not marker.exists()


def test_real_sec_cues_through_the_annotation_layer():
    cue_path = SHARED_VOC12 / "localization_cues-sec.pickle.gz"
    if not cue_path.is_file():
        pytest.skip(f"shared VOC12 data absent ({cue_path})")
    entries = [line.split() for line in (SHARED_VOC12 / "lists" / "input_list.txt").read_text().splitlines() if line]
    chosen = entries[:6]
    param = f"{{'cues': '{cue_path}', 'mirror': False}}"
    net = net_with({"ids": (len(chosen),), "images": (len(chosen), 3, 321, 321)},
                   [python_layer("annotation", "AnnotationLayer", ["ids", "images"], ["labels", "cues", "out"],
                                 param_str=param, propagate_down=[0, 0])])
    net.blobs["ids"].data[...] = [int(index) for _, index in chosen]
    out = net.forward()
    assert out["labels"].shape == (6, 1, 1, 21) and out["cues"].shape == (6, 21, 41, 41)
    for position, (name, _) in enumerate(chosen):
        ground_truth = read_label_png(SHARED_VOC12 / "SegmentationClassAug" / name.replace(".jpg", ".png"))
        gt_classes = sorted(set(np.unique(ground_truth).tolist()) - {0, 255})
        label_classes = np.flatnonzero(out["labels"][position, 0, 0]).tolist()
        assert label_classes == [0] + gt_classes, name
        seeded_classes = np.flatnonzero(out["cues"][position].sum(axis=(1, 2))).tolist()
        assert set(seeded_classes) <= set(label_classes) and 0 in seeded_classes


# ---- ImageSegDataLayer (stage 2) -------------------------------------------------------------------

def test_image_seg_data_layer(tmp_path):
    from PIL import Image

    from dsrg.fileio import atomic_save_label_png

    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    label = rng.integers(0, 21, (7, 9), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "img" / "x.png")
    atomic_save_label_png(tmp_path / "gt" / "x.png", label)
    (tmp_path / "list.txt").write_text("/img/x.png /gt/x.png\n")
    param = (f"{{'batch_size': 3, 'root_folder': '{tmp_path}', 'source': '{tmp_path / 'list.txt'}', "
             f"'mean': (104.008, 116.669, 122.675), 'mirror': True, 'crop_size': 8, 'seed': 1}}")
    net = make_net(caffe, python_layer("data", "ImageSegDataLayer", [], ["images", "labels"],
                                       module="pylayers.layer", param_str=param))
    out = net.forward()
    assert out["images"].shape == (3, 3, 8, 8) and out["labels"].shape == (3, 1, 8, 8)
    labels = out["labels"][:, 0]
    assert np.all((labels < 21) | (labels == 255))
    assert np.all(labels[:, 7, :] == 255)   # 7 rows padded to 8 with the ignore label
    bgr = rgb[:, :, ::-1].astype(np.float32) - np.array([104.008, 116.669, 122.675], np.float32)
    for position in range(3):
        matches = []
        for left in (0, 1):   # a 9-wide image gives two 8-wide crops
            for flip in (False, True):
                label_window = label[:, left:left + 8].astype(np.float32)
                image_window = bgr[:, left:left + 8].transpose(2, 0, 1)
                if flip:
                    label_window, image_window = label_window[:, ::-1], image_window[..., ::-1]
                if (np.array_equal(labels[position, :7], label_window)
                        and np.allclose(out["images"][position, :, :7], image_window)):
                    matches.append((left, flip))
        assert matches, f"sample {position} is not a (mirrored) crop of the image and its labels"
        assert np.all(out["images"][position, :, 7] == 0)   # padded with the mean
    no_crop = f"{{'batch_size': 1, 'source': '{tmp_path / 'list.txt'}', 'mean': (1, 2, 3)}}"
    with pytest.raises(ValueError, match=r"ImageSegDataLayer: param_str key 'crop_size' is required"):
        make_net(caffe, python_layer("data", "ImageSegDataLayer", [], ["images", "labels"], module="pylayers.layer",
                                     param_str=no_crop))
