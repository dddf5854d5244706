"""dsrg.runconfig and tools/resolve_settings.py: an experiment's settings from defaults, its config.sh
after its BASE chain, and the environment; each value's origin; the errors a user meets."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dsrg import runconfig
from dsrg.runconfig import SettingsError

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiment"
RESOLVER = REPO / "tools" / "resolve_settings.py"

ROOT_CONFIG = """\
# a root experiment
DATA_KIND=voc
NUM_CLASSES=21
CUE_SIZE=41
GT_SUBDIR=SegmentationClassAug
IMAGE_SUBDIR=JPEGImages
INPUT_LIST_NAME=lists/input_list.txt
TRAIN_IDS_NAME=lists/train_id.txt
VAL_IDS_NAME=lists/val_id.txt
CUE_FILE_NAMES="cues-a.pickle cues-b.pickle"   # the first present wins
STAGE1_SCALES=241,321,401
STAGE2_SCALES=0.75,1,1.25
SEEDS_LIMIT=1464
"""


def write_experiment(experiments, name, config, templates=True, files=()):
    folder = experiments / name
    folder.mkdir(parents=True)
    (folder / "config.sh").write_text(config)
    if templates:
        (folder / "stage1_train.prototxt").write_text("name: 'x'\n")
    for file in files:
        (folder / file).write_text("")
    return folder


@pytest.fixture
def experiments(tmp_path):
    root = tmp_path / "experiment"
    write_experiment(root, "base", ROOT_CONFIG)
    write_experiment(root, "child", "BASE=base\nCUE_SIZE=21\nSEEDS_LIMIT=4\nEDITS='small.edits'\n",
                     templates=False, files=["small.edits"])
    data = tmp_path / "data"
    data.mkdir()
    (data / "cues-b.pickle").write_bytes(b"")
    return root, data


def resolve(experiments, exp, tmp_path, **environ):
    root, data = experiments
    environ.setdefault("PASCAL_DIR", str(data))
    return runconfig.resolve(root, exp, environ, tmp_path, tmp_path)


def test_defaults_then_base_then_child_then_environment(experiments, tmp_path):
    resolved = resolve(experiments, "child", tmp_path, SEEDS_LIMIT="9")
    values, origins = resolved.values, resolved.origins
    assert values["NUM_CLASSES"] == "21" and origins["NUM_CLASSES"] == "experiment experiment/base/config.sh:3"
    assert values["CUE_SIZE"] == "21" and origins["CUE_SIZE"] == "experiment experiment/child/config.sh:2"
    assert values["SEEDS_LIMIT"] == "9" and origins["SEEDS_LIMIT"] == "environment"
    assert values["LOG_EVERY"] == "20" and origins["LOG_EVERY"] == "default"
    # a default that follows another setting follows its final value
    assert values["CUE_FILE_SIZE"] == "21" and origins["CUE_FILE_SIZE"] == "default (= CUE_SIZE)"
    assert values["PSEUDO_SCALES"] == "241,321,401"


def test_a_base_value_set_again_after_the_child_no_longer_shadows_it(experiments, tmp_path):
    """The bash chain of `${NAME:-x}` lines let a base's value win over the child's default (LOG_EVERY
    of the ResNet smoke run stayed 20); with one rule the child's value is what counts."""
    resolved = resolve(experiments, "child", tmp_path)
    assert resolved.values["SEEDS_LIMIT"] == "4"


def test_an_empty_environment_value_overrides_where_empty_has_a_meaning(experiments, tmp_path):
    resolved = resolve(experiments, "child", tmp_path, SEEDS_LIMIT="", GPU="")
    assert resolved.values["SEEDS_LIMIT"] == "" and resolved.origins["SEEDS_LIMIT"] == "environment"
    with pytest.raises(SettingsError, match=r"environment: LOG_EVERY is empty; expected an integer ≥ 1"):
        resolve(experiments, "child", tmp_path, LOG_EVERY="")


@pytest.mark.parametrize("name, value, expected", [
    ("LOG_EVERY", "ten", "an integer ≥ 1"),
    ("LOG_EVERY", "0", "an integer ≥ 1"),
    ("NUM_CLASSES", "1", "an integer ≥ 2"),
    ("FUSE", "mean", "one of 'scores', 'probs'"),
    ("PSEUDO_RESTRICT", "yes", "one of '0', '1'"),
    ("CAM_FG_THRESHOLD", "1.5", "a number between 0 and 1"),
    ("STAGE2_SCALES", "0.75,,1", "comma-separated positive numbers"),
    ("GPU", "0,,1", "a GPU id"),
    ("GPU", "0,1,0", "a GPU id"),
    ("GPU", "gpu0", "a GPU id"),
    ("WORKERS", "0", "an integer ≥ 1"),
])
def test_a_value_of_the_wrong_type_names_the_setting_and_what_was_expected(experiments, tmp_path, name, value,
                                                                           expected):
    with pytest.raises(SettingsError, match=rf"environment: {name}='{value}': expected {expected}"):
        resolve(experiments, "child", tmp_path, **{name: value})


def test_workers_default_to_one_per_gpu_or_the_cores_at_the_blas_threads_of_a_worker(experiments, tmp_path):
    root, data = experiments

    def workers(cores=8, **environ):
        resolved = runconfig.resolve(root, "child", dict(environ, PASCAL_DIR=str(data)), tmp_path, tmp_path,
                                     cores=cores)
        return resolved.values["WORKERS"], resolved.origins["WORKERS"]

    assert workers() == ("8", "default (cores / 1 BLAS thread)")
    assert workers(OPENBLAS_NUM_THREADS="2") == ("4", "default (cores / 2 BLAS threads)")
    assert workers(OMP_NUM_THREADS="3") == ("2", "default (cores / 3 BLAS threads)")
    assert workers(cores=2, OPENBLAS_NUM_THREADS="4") == ("1", "default (cores / 4 BLAS threads)")
    assert workers(GPU="3") == ("1", "default (one per GPU)")
    assert workers(GPU="0,1,2,3") == ("4", "default (one per GPU)")
    assert workers(GPU="0,1", WORKERS="6") == ("6", "environment")
    assert int(workers(cores=None)[0]) == runconfig.cpu_cores()


def test_warps_must_be_whole_pixels(experiments, tmp_path):
    with pytest.raises(SettingsError, match=r"STAGE1_SCALES='0.5,1' \(environment\): expected warp sides"):
        resolve(experiments, "child", tmp_path, STAGE1_SCALES="0.5,1")
    resolved = resolve(experiments, "child", tmp_path, STAGE2_SCALE_MODE="relative", STAGE2_SCALES="0.5,1")
    assert resolved.values["STAGE2_SCALES"] == "0.5,1"
    with pytest.raises(SettingsError, match=r"STAGE2_SCALES='0.5,1'"):
        resolve(experiments, "child", tmp_path, STAGE2_SCALE_MODE="warp", STAGE2_SCALES="0.5,1")


@pytest.mark.parametrize("line, message", [
    ("LOG_EVRY=5", r"child/config.sh:5: unknown setting LOG_EVRY \(did you mean LOG_EVERY\?\)"),
    ("SEEDS_LIMIT=${SEEDS_LIMIT:-4}", r"child/config.sh:5: SEEDS_LIMIT: expected a plain value"),
    ("source ../base/config.sh", r"child/config.sh:5: expected NAME=value \(config.sh is read, not run\)"),
    ("CUE_SIZE=11", r"child/config.sh:5: CUE_SIZE is set twice \(also on line 2\)"),
    ("EDITS=a b", r"child/config.sh:5: EDITS: expected one value, got 2 words \(quote them\)"),
    ("GPU=0", r"child/config.sh:5: GPU is set from the environment only"),
    ("LOG_EVERY=-3", r"child/config.sh:5: LOG_EVERY='-3': expected an integer ≥ 1"),
])
def test_config_errors_name_the_file_and_line(experiments, tmp_path, line, message):
    root, _ = experiments
    config = root / "child" / "config.sh"
    config.write_text(config.read_text() + line + "\n")
    with pytest.raises(SettingsError, match=message):
        resolve(experiments, "child", tmp_path)


def test_base_chain_errors(experiments, tmp_path):
    root, _ = experiments
    write_experiment(root, "loop-a", "BASE=loop-b\n")
    write_experiment(root, "loop-b", "BASE=loop-a\n")
    with pytest.raises(SettingsError, match=r"BASE chain loop-a -> loop-b -> loop-a is a circle"):
        resolve(experiments, "loop-a", tmp_path)
    write_experiment(root, "orphan", "BASE=nowhere\n")
    with pytest.raises(SettingsError, match=r"unknown experiment 'nowhere' \(BASE of .*orphan/config.sh\)"):
        resolve(experiments, "orphan", tmp_path)
    with pytest.raises(SettingsError, match=r"unknown experiment 'absent'"):
        resolve(experiments, "absent", tmp_path)
    write_experiment(root, "bare", "DATA_KIND=voc\n")
    with pytest.raises(SettingsError, match=r"bare/config.sh: no value for NUM_CLASSES, CUE_SIZE"):
        resolve(experiments, "bare", tmp_path)


def test_template_edits_and_paths(experiments, tmp_path):
    root, data = experiments
    resolved = resolve(experiments, "child", tmp_path, RUN_DIR="out")
    paths = resolved.paths
    assert paths["TEMPLATE_DIR"] == str(root / "base")       # the nearest of the chain with templates
    assert paths["EDIT_FILES"] == [str((root / "child" / "small.edits").resolve())]
    assert paths["RUN_DIR"] == str(tmp_path / "out")
    assert paths["IMAGES"] == str(data / "JPEGImages") and paths["VAL_IDS"] == str(data / "lists/val_id.txt")
    assert paths["CUE_FILE"] == str(data / "cues-b.pickle")  # cues-a.pickle is absent
    assert paths["STAGE1_LIST"] == paths["TRAIN_INPUT_LIST"] and paths["INIT_WEIGHTS_FILE"] == ""
    assert paths["IMAGE_LABELS"] == str(tmp_path / "out" / "lists" / "image_labels.txt")
    # environment EDITS are relative to the experiment's own folder
    (root / "child" / "other.edits").write_text("")
    resolved = resolve(experiments, "child", tmp_path, EDITS="other.edits")
    assert resolved.paths["EDIT_FILES"] == [str((root / "child" / "other.edits").resolve())]
    with pytest.raises(SettingsError, match=r"EDITS: .*child/missing.edits does not exist"):
        resolve(experiments, "child", tmp_path, EDITS="missing.edits")


def test_cues_init_weights_and_data_folder(experiments, tmp_path):
    root, data = experiments
    resolved = resolve(experiments, "child", tmp_path, CUES="generate", INIT_WEIGHTS_SOURCE="keras-vgg16",
                       STAGE1_REPEAT_THRESHOLD="0.1")
    run_dir = Path(resolved.paths["RUN_DIR"])
    assert resolved.paths["CUE_FILE"] == str(run_dir / "cues" / "localization_cues.pickle.gz")
    assert resolved.paths["INIT_WEIGHTS_FILE"] == str(run_dir / "init" / "keras-vgg16.caffemodel")
    assert resolved.paths["STAGE1_LIST"].endswith("lists/stage1_balanced_list.txt")
    resolved = resolve(experiments, "child", tmp_path, INIT_WEIGHTS="w.caffemodel", INIT_WEIGHTS_SOURCE="hed")
    assert resolved.paths["INIT_WEIGHTS_FILE"] == str(tmp_path / "w.caffemodel")   # INIT_WEIGHTS wins
    with pytest.raises(SettingsError, match=r"CUES=nothing.pickle: .*nothing.pickle does not exist"):
        resolve(experiments, "child", tmp_path, CUES="nothing.pickle")
    (data / "cues-b.pickle").unlink()
    assert resolve(experiments, "child", tmp_path).paths["CUE_FILE"] == ""       # run.sh says so when needed
    with pytest.raises(SettingsError, match=r"EXP=child needs PASCAL_DIR"):
        resolve(experiments, "child", tmp_path, PASCAL_DIR="")
    with pytest.raises(SettingsError, match=r"PASCAL_DIR=.*absent is not a folder"):
        resolve(experiments, "child", tmp_path, PASCAL_DIR=str(tmp_path / "absent"))


def test_resnet_variant_follows_the_weights_source(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    environ = {"PASCAL_DIR": str(data)}
    msra = runconfig.resolve(EXPERIMENTS, "voc12-resnet101", environ, REPO, tmp_path)
    assert msra.values["RESNET_VARIANT"] == "msra" and msra.paths["EDIT_FILES"] == []
    torchvision = runconfig.resolve(EXPERIMENTS, "voc12-resnet101-smoke",
                                    dict(environ, INIT_WEIGHTS_SOURCE="torchvision-resnet101"), REPO, tmp_path)
    assert torchvision.values["RESNET_VARIANT"] == "torchvision"
    assert torchvision.origins["RESNET_VARIANT"] == "default (from INIT_WEIGHTS_SOURCE)"
    assert torchvision.paths["EDIT_FILES"] == [str(EXPERIMENTS / "voc12-resnet101-smoke" / "smoke.edits"),
                                               str(EXPERIMENTS / "voc12-resnet101" / "torchvision.edits")]
    with pytest.raises(SettingsError, match=r"RESNET_VARIANT=torchvision: the template .*voc12-vgg16 has no variants"):
        runconfig.resolve(EXPERIMENTS, "voc12-vgg16", dict(environ, RESNET_VARIANT="torchvision"), REPO, tmp_path)


def test_every_shipped_experiment_resolves(tmp_path):
    """Each experiment of the repository, as run.sh would resolve it with only PASCAL_DIR set (your own data
    set's experiments need its class-name file)."""
    data = tmp_path / "data"
    data.mkdir()
    own_data = tmp_path / "own"
    own_data.mkdir()
    (own_data / "classes.txt").write_text("background\nleaf\nstem\nbud\n")
    expected_templates = {"demo": "demo", "voc12-vgg16": "voc12-vgg16", "voc12-photos": "voc12-vgg16",
                          "coco-vgg16": "voc12-vgg16", "voc12-resnet101": "voc12-resnet101",
                          "voc12-resnet101-smoke": "voc12-resnet101", "custom-vgg16": "voc12-vgg16",
                          "custom-vgg16-smoke": "voc12-vgg16"}
    shipped = sorted(path.parent.name for path in EXPERIMENTS.glob("*/config.sh"))
    assert shipped == sorted(expected_templates)
    for exp, template in expected_templates.items():
        folder = own_data if exp.startswith("custom-") else data
        resolved = runconfig.resolve(EXPERIMENTS, exp, {"PASCAL_DIR": str(folder)}, REPO, tmp_path)
        assert Path(resolved.paths["TEMPLATE_DIR"]).name == template, exp
    for exp in ("custom-vgg16", "custom-vgg16-smoke"):
        own = runconfig.resolve(EXPERIMENTS, exp, {"PASCAL_DIR": str(own_data)}, REPO, tmp_path)
        assert own.values["NUM_CLASSES"] == "4" and own.values["CUES"] == "generate"
        assert own.values["TRAIN_GT"] == "0" and own.paths["INPUT_LIST"] == ""
        assert [Path(path).name for path in own.paths["EDIT_FILES"]][-1] == "dataset.edits"
    photos = runconfig.resolve(EXPERIMENTS, "voc12-photos", {"PASCAL_DIR": str(data)}, REPO, tmp_path)
    assert photos.values["NUM_CLASSES"] == "21" and photos.values["PROBE_SIZE"] == "161"
    assert [Path(path).name for path in photos.paths["EDIT_FILES"]] == ["photos.edits", "cam.edits"]
    smoke = runconfig.resolve(EXPERIMENTS, "voc12-resnet101-smoke", {"PASCAL_DIR": str(data)}, REPO, tmp_path)
    assert (smoke.values["LOG_EVERY"], smoke.values["SEEDS_LIMIT"], smoke.values["STAGE1_ITERS"]) == ("1", "4", "2")
    demo = runconfig.resolve(EXPERIMENTS, "demo", {}, REPO, tmp_path)
    assert demo.paths["PASCAL_DIR"] == str(REPO / "runs" / "demo" / "data") and demo.values["CUES"] == "generate"


# ------------------------------------------------------------------ your own data set

OWN_CONFIG = """\
BASE=base
EDITS=sized.edits
CLASSES_NAME=classes.txt
NUM_CLASSES=
GT_SUBDIR=SegmentationClass
TRAIN_GT=
TRAIN_IDS_NAME="lists/train_id.txt ImageSets/Segmentation/train.txt"
VAL_IDS_NAME="lists/val_id.txt ImageSets/Segmentation/val.txt"
INPUT_LIST_NAME=
CUES=generate
"""


@pytest.fixture
def own(experiments):
    """An experiment for a data set of three classes in VOC's own layout: CRLF lists (with a byte-order mark
    in classes.txt) in ImageSets/Segmentation, no training ground truth."""
    root, data = experiments
    folder = write_experiment(root, "own", OWN_CONFIG, templates=False)
    (folder / "sized.edits").write_text("deploy.prototxt  fc8  convolution_param.num_output  ${NUM_CLASSES}\n")
    (data / "classes.txt").write_bytes(b"\xef\xbb\xbfbackground\r\ncat\r\n\r\ndog\r\n")
    imagesets = data / "ImageSets" / "Segmentation"
    imagesets.mkdir(parents=True)
    (imagesets / "train.txt").write_bytes(b"a\r\nb\r\nc\r\n")
    (imagesets / "val.txt").write_bytes(b"d\r\n")
    return root, data


def test_id_lists_fall_back_to_vocs_imagesets_lists(own, tmp_path):
    _, data = own
    paths = resolve(own, "own", tmp_path).paths
    assert paths["TRAIN_IDS"] == str(data / "ImageSets" / "Segmentation" / "train.txt")
    assert paths["VAL_IDS"] == str(data / "ImageSets" / "Segmentation" / "val.txt")
    assert paths["DATA_MISSING"] == f"{data / 'JPEGImages'}/, {data / 'SegmentationClass'}/"
    # the project's list, where present, comes first
    (data / "lists").mkdir()
    (data / "lists" / "train_id.txt").write_text("a\n")
    assert resolve(own, "own", tmp_path).paths["TRAIN_IDS"] == str(data / "lists" / "train_id.txt")
    # neither: the first, and what step data reports names both
    for path in (data / "ImageSets" / "Segmentation").iterdir():
        path.unlink()
    paths = resolve(own, "own", tmp_path).paths
    assert paths["VAL_IDS"] == str(data / "lists" / "val_id.txt")
    assert paths["DATA_MISSING"].endswith(
        f", {data / 'lists' / 'val_id.txt'} or {data / 'ImageSets' / 'Segmentation' / 'val.txt'}")


def test_num_classes_is_the_number_of_names_in_the_class_file(own, tmp_path):
    _, data = own
    resolved = resolve(own, "own", tmp_path)
    assert resolved.values["NUM_CLASSES"] == "3"
    assert resolved.origins["NUM_CLASSES"] == f"class-name file {data / 'classes.txt'}"
    assert resolve(own, "own", tmp_path, NUM_CLASSES="3").origins["NUM_CLASSES"] == "environment"
    with pytest.raises(SettingsError, match=rf"^{data / 'classes.txt'}: expected NUM_CLASSES=4 class names "
                                            r"\(environment\), got 3; make them agree, or leave NUM_CLASSES empty"):
        resolve(own, "own", tmp_path, NUM_CLASSES="4")
    with pytest.raises(SettingsError, match=r"NUM_CLASSES is empty \(experiment experiment/own/config.sh:4\), which "
                                            r"counts the class-name file, but CLASSES_NAME is empty"):
        resolve(own, "own", tmp_path, CLASSES_NAME="")
    (data / "classes.txt").write_text("background\n")
    with pytest.raises(SettingsError, match=r"classes.txt: expected at least 2 class names \(background first\), got 1"):
        resolve(own, "own", tmp_path)
    (data / "classes.txt").unlink()
    with pytest.raises(SettingsError, match=rf"^{data / 'classes.txt'}: class-name file missing \(NUM_CLASSES is empty"):
        resolve(own, "own", tmp_path)


def test_a_set_num_classes_must_agree_with_an_existing_class_file(experiments, tmp_path):
    _, data = experiments
    environ = {"CLASSES_NAME": "classes.txt"}
    assert resolve(experiments, "child", tmp_path, **environ).values["NUM_CLASSES"] == "21"   # no file yet
    (data / "classes.txt").write_text("background\ncat\n")
    with pytest.raises(SettingsError, match=r"classes.txt: expected NUM_CLASSES=21 class names \(experiment "
                                            r"experiment/base/config.sh:3\), got 2"):
        resolve(experiments, "child", tmp_path, **environ)


def test_a_class_count_from_the_data_set_must_reach_the_nets(own, tmp_path):
    """The templates' classifiers have a fixed size: without an edits file that uses ${NUM_CLASSES} the nets
    would keep it."""
    with pytest.raises(SettingsError, match=r"NUM_CLASSES=3 comes from .*classes.txt, but neither the templates of "
                                            r".*base nor the EDITS files \(none\) use \$\{NUM_CLASSES\}"):
        resolve(own, "own", tmp_path, EDITS="")


def test_an_empty_input_list_name_needs_generated_cues(own, tmp_path):
    with pytest.raises(SettingsError, match=r"INPUT_LIST_NAME is empty \(experiment experiment/own/config.sh:9\): "
                                            r"only CUES=generate numbers the training ids itself; CUES=generator"):
        resolve(own, "own", tmp_path, CUES="")


def test_train_gt_empty_follows_the_ground_truth_folder(own, tmp_path):
    _, data = own
    resolved = resolve(own, "own", tmp_path)
    assert resolved.values["TRAIN_GT"] == "0"
    assert resolved.origins["TRAIN_GT"] == "default (from the data: SegmentationClass/<id>.png for 0 of 3 training ids)"
    (data / "SegmentationClass").mkdir()
    for name in "ab":
        (data / "SegmentationClass" / f"{name}.png").write_bytes(b"")
    assert resolve(own, "own", tmp_path).values["TRAIN_GT"] == "0"
    (data / "SegmentationClass" / "c.png").write_bytes(b"")
    resolved = resolve(own, "own", tmp_path)
    assert resolved.values["TRAIN_GT"] == "1" and "3 of 3 training ids" in resolved.origins["TRAIN_GT"]
    assert resolve(own, "own", tmp_path, TRAIN_GT="0").values["TRAIN_GT"] == "0"
    assert resolve(own, "child", tmp_path).values["TRAIN_GT"] == "1"     # the declared default


def run_resolver(*args, cwd, **environ):
    env = {"PATH": os.environ["PATH"], **environ}
    return subprocess.run([sys.executable, str(RESOLVER), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_tool_writes_run_json_and_prints_bash_that_sets_everything(tmp_path):
    done = run_resolver(cwd=tmp_path, EXP="demo", RUN_DIR="run", STAGE1_ITERS="3", EDITS="")
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["experiment"] == "demo"
    assert record["settings"]["STAGE1_ITERS"] == {"value": "3", "from": "environment"}
    line = (EXPERIMENTS / "demo" / "config.sh").read_text().splitlines().index("NUM_CLASSES=7") + 1
    assert record["settings"]["NUM_CLASSES"] == {"value": "7", "from": f"experiment experiment/demo/config.sh:{line}"}
    script = done.stdout + 'printf "%s|" "$EXP" "$STAGE1_ITERS" "$RUN_DIR" "${#EDIT_FILES[@]}" "$PASCAL_DIR"\n'
    shown = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert shown == f"demo|3|{tmp_path / 'run'}|0|{tmp_path / 'run' / 'data'}|"


def test_the_tool_exits_1_with_one_line_naming_the_problem(tmp_path):
    done = run_resolver(cwd=tmp_path, EXP="voc12-vgg16", RUN_DIR="run")
    assert done.returncode == 1 and not (tmp_path / "run").exists()
    assert done.stderr == "resolve_settings.py: error: EXP=voc12-vgg16 needs PASCAL_DIR (the VOC folder; see README)\n"
    done = run_resolver(cwd=tmp_path, EXP="demo", RUN_DIR="run", LOG_EVERY="often")
    assert done.returncode == 1 and "LOG_EVERY='often': expected an integer ≥ 1" in done.stderr
    assert done.stderr.count("\n") == 1


def test_the_tool_describes_every_setting(tmp_path):
    done = run_resolver("--describe", cwd=tmp_path)
    assert done.returncode == 0
    names = [line.split()[0] for line in done.stdout.splitlines() if line and not line.startswith(" ")]
    assert names == list(runconfig.SETTINGS)
