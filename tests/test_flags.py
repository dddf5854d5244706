"""The tools' one flag vocabulary (dsrg.cli): --help shows only the vocabulary's spellings, every earlier
spelling still parses as a hidden alias of the same option, and the exit policy (0 done, 1 an expected
error as one line naming the file, 2 a usage error) holds where it used to break."""
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from caffe_helpers import load_tool
from dsrg.fileio import atomic_save_label_png

REPO = Path(__file__).resolve().parents[1]
TOOLS = sorted(path.stem for path in (REPO / "tools").glob("*.py") if path.stem != "train")

VOCABULARY = {"--images", "--image-ext", "--ids", "--input-list", "--out", "--num-classes", "--force", "--no-progress",
              "--quiet", "--grown-seeds", "--cue-size", "--batch-size"}

# The vocabulary flags each tool's --help shows: a new tool must be added here.
SHOWN = {
    "bench_crf": {"--out", "--batch-size"},
    "bench_layers": {"--num-classes", "--batch-size"},
    "bench_saliency": {"--images", "--image-ext", "--ids", "--input-list", "--out", "--num-classes", "--cue-size",
                       "--no-progress"},
    "check_data": {"--images", "--image-ext", "--input-list", "--out", "--num-classes", "--cue-size", "--force",
                   "--no-progress"},
    "compare_evals": set(),
    "convert_coco": {"--images", "--out", "--no-progress"},
    "convert_cues": {"--force"},
    "dump_grown_seeds": {"--out", "--batch-size", "--no-progress"},
    "estimate_cost": set(),
    "evaluate": {"--ids", "--out", "--num-classes", "--quiet", "--no-progress"},
    "extract_cams": {"--images", "--image-ext", "--ids", "--out", "--no-progress"},
    "import_weights": {"--out", "--force"},
    "infer": {"--images", "--image-ext", "--ids", "--input-list", "--out", "--num-classes", "--no-progress"},
    "make_cues": {"--input-list", "--out", "--num-classes", "--cue-size", "--force", "--no-progress"},
    "make_demo_data": {"--out", "--cue-size", "--quiet", "--no-progress"},
    "make_image_labels": {"--ids", "--out", "--num-classes", "--force", "--no-progress"},
    "make_resnet_prototxt": {"--out"},
    "make_saliency": {"--images", "--image-ext", "--ids", "--out", "--quiet", "--no-progress"},
    "make_stage2_list": {"--images", "--image-ext", "--ids", "--out", "--no-progress"},
    "make_train_list": {"--input-list", "--ids", "--out", "--num-classes"},
    "probe_trunk": {"--images", "--out", "--num-classes", "--batch-size", "--no-progress"},
    "render_experiment": {"--out"},
    "resolve_settings": set(),
    "seed_quality": {"--grown-seeds", "--input-list", "--out", "--num-classes", "--cue-size", "--quiet",
                     "--no-progress"},
    "segment": {"--out", "--no-progress"},
    "summary": set(),
    "visualize": {"--images", "--image-ext", "--ids", "--input-list", "--grown-seeds", "--out", "--num-classes",
                  "--cue-size", "--force", "--no-progress"},
}

# Spellings no tool's --help may show any more, and those hidden in one tool only (elsewhere they are
# options of their own: --classes is a class-name file, --quiet prints less, --grid a panel PNG).
RETIRED = {"--image-dir", "--ext", "--out-dir", "--overwrite", "--class_num", "--test_ids", "--save_path",
           "--pred_path", "--gt_path", "--seed-dir", "--list", "--json", "--batch"}
RETIRED_IN = {"bench_layers": {"--classes"}, "bench_saliency": {"--quiet", "--grid"}}


def help_text(tool, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_tool(tool).main(["--help"])
    assert exit_info.value.code == 0, tool
    return capsys.readouterr().out


def named_options(text):
    """Every option string a help text names (usage line, description, option list)."""
    return set(re.findall(r"(?<![\w-])--[a-z][\w-]*", text))


def listed_options(text):
    """The options a help text lists as the tool's own."""
    return set(re.findall(r"^  (?:-\w, )?(--[a-z][\w-]*)", text, re.M))


def test_every_tool_is_in_the_vocabulary_table():
    assert TOOLS == sorted(SHOWN)


@pytest.mark.parametrize("tool", TOOLS)
def test_help_shows_the_vocabulary_and_no_retired_spelling(tool, capsys):
    text = help_text(tool, capsys)
    assert listed_options(text) & VOCABULARY == SHOWN[tool]
    assert not named_options(text) & (RETIRED | RETIRED_IN.get(tool, set()))


@pytest.mark.parametrize("tool", TOOLS)
def test_a_tool_that_reports_progress_takes_no_progress(tool, capsys):
    if "from dsrg.progress import" in (REPO / "tools" / f"{tool}.py").read_text():
        assert re.search(r"--no-progress\s+no progress bar or progress lines\n", help_text(tool, capsys))


EVALUATE = ["--pred", "p", "--gt", "g", "--ids", "ids.txt"]
SEED_QUALITY = ["--cues", "c.pickle", "--gt", "g", "--input-list", "l.txt"]
VISUALIZE = ["--ids", "ids.txt", "--gt", "g", "--grid", "grid.png"]
SALIENCY = ["--images", "i", "--ids", "ids.txt", "--out", "o"]
BENCH_SALIENCY = ["--images", "i", "--gt", "g", "--ids", "ids.txt"]

# (tool, arguments without the option, old spelling, new spelling, value or None for a switch, dest, parsed value)
ALIASES = [
    ("evaluate", EVALUATE[2:], "--pred_path", "--pred", "p", "pred", "p"),
    ("evaluate", EVALUATE[:2] + EVALUATE[4:], "--gt_path", "--gt", "g", "gt", "g"),
    ("evaluate", EVALUATE[:4], "--test_ids", "--ids", "ids.txt", "ids", "ids.txt"),
    ("evaluate", EVALUATE, "--save_path", "--out", "e.json", "out", "e.json"),
    ("evaluate", EVALUATE, "--class_num", "--num-classes", "21", "num_classes", 21),
    ("seed_quality", SEED_QUALITY, "--seed-dir", "--grown-seeds", "seeds", "grown_seeds", "seeds"),
    ("seed_quality", SEED_QUALITY[:4], "--list", "--input-list", "l.txt", "input_list", "l.txt"),
    ("seed_quality", SEED_QUALITY, "--class_num", "--num-classes", "3", "num_classes", 3),
    ("visualize", VISUALIZE + ["--cues", "c.pickle"], "--list", "--input-list", "l.txt", "input_list", "l.txt"),
    ("visualize", VISUALIZE, "--seed-dir", "--grown-seeds", "seeds", "grown_seeds", "seeds"),
    ("visualize", VISUALIZE, "--class_num", "--num-classes", "81", "num_classes", 81),
    ("make_saliency", SALIENCY[2:], "--image-dir", "--images", "i", "images", "i"),
    ("make_saliency", SALIENCY[:4], "--out-dir", "--out", "o", "out", "o"),
    ("make_saliency", SALIENCY, "--ext", "--image-ext", ".png", "image_ext", ".png"),
    ("bench_saliency", BENCH_SALIENCY[2:], "--image-dir", "--images", "i", "images", "i"),
    ("bench_saliency", BENCH_SALIENCY, "--ext", "--image-ext", ".png", "image_ext", ".png"),
    ("bench_saliency", BENCH_SALIENCY, "--grid", "--cue-size", "21", "cue_size", 21),
    ("bench_saliency", BENCH_SALIENCY, "--quiet", "--no-progress", None, "no_progress", True),
    ("convert_coco", ["--annotations", "a.json", "--out", "o"], "--image-dir", "--images", "i", "images", "i"),
    ("convert_cues", ["in.pickle", "out.npz"], "--overwrite", "--force", None, "force", True),
    ("bench_crf", [], "--json", "--out", "b.json", "out", "b.json"),
    ("bench_crf", [], "--batch", "--batch-size", "4", "batch_size", 4),
    ("bench_layers", [], "--classes", "--num-classes", "5", "num_classes", 5),
    ("bench_layers", [], "--batch", "--batch-size", "4", "batch_size", 4),
]


@pytest.mark.parametrize("tool, base, old, new, value, dest, parsed", ALIASES,
                         ids=[f"{case[0]} {case[2]}" for case in ALIASES])
def test_an_old_spelling_parses_as_the_new_one(tool, base, old, new, value, dest, parsed):
    parse_args = load_tool(tool).parse_args
    given = [] if value is None else [value]
    with_new = parse_args(base + [new] + given)
    assert getattr(with_new, dest) == parsed
    assert vars(parse_args(base + [old] + given)) == vars(with_new)
    if value is not None:
        assert vars(parse_args(base + [f"{old}={value}"])) == vars(with_new)


def test_evaluate_with_the_release_flags_writes_the_same_summary(tmp_path, capsys):
    for folder in ("pred", "gt"):
        atomic_save_label_png(tmp_path / folder / "a.png", np.array([[0, 1], [1, 1]], dtype=np.uint8))
    (tmp_path / "ids.txt").write_text("a\n")
    evaluate = load_tool("evaluate")
    new = evaluate.main(["--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--ids",
                         str(tmp_path / "ids.txt"), "--out", str(tmp_path / "new.json"), "--num-classes", "2",
                         "--no-progress"])
    old = evaluate.main(["--pred_path", str(tmp_path / "pred"), "--gt_path", str(tmp_path / "gt"), "--test_ids",
                         str(tmp_path / "ids.txt"), "--save_path", str(tmp_path / "old.json"), "--class_num", "2",
                         "--no-progress"])
    assert old == new and new["miou"] == pytest.approx(100.0)
    assert (tmp_path / "old.json").read_text() == (tmp_path / "new.json").read_text()
    printed = capsys.readouterr().out.splitlines()
    assert printed[len(printed) // 2:] == printed[:len(printed) // 2] and printed[-1] == "mIoU: 100.00"


def test_no_progress_keeps_the_summary_line_and_quiet_drops_it(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (24, 16), (200, 40, 40)).save(tmp_path / "images" / "a.jpg")
    (tmp_path / "ids.txt").write_text("a\n")
    make_saliency = load_tool("make_saliency")
    arguments = ["--images", str(tmp_path / "images"), "--ids", str(tmp_path / "ids.txt")]
    make_saliency.main(arguments + ["--out", str(tmp_path / "one"), "--no-progress"])
    captured = capsys.readouterr()
    assert captured.out.startswith("make_saliency.py: 1 written, 0 already there") and captured.err == ""
    make_saliency.main(arguments + ["--out", str(tmp_path / "two"), "--quiet"])
    assert capsys.readouterr() == ("", "")
    assert (tmp_path / "two" / "a.png").read_bytes() == (tmp_path / "one" / "a.png").read_bytes()


def run_tool(tool, *arguments):
    return subprocess.run([sys.executable, str(REPO / "tools" / f"{tool}.py"), *map(str, arguments)],
                          capture_output=True, text=True, timeout=120)


def assert_one_line_naming(done, tool, path):
    assert done.returncode == 1, (tool, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{tool}.py: ") and str(path) in lines[0], done.stderr


def test_expected_errors_exit_1_with_one_line_naming_the_file(tmp_path):
    missing_ids = tmp_path / "missing_ids.txt"
    assert_one_line_naming(run_tool("evaluate", "--pred", tmp_path, "--gt", tmp_path, "--ids", missing_ids),
                           "evaluate", missing_ids)
    not_json = tmp_path / "eval.json"
    not_json.write_text("{not json")
    assert_one_line_naming(run_tool("compare_evals", "--eval", f"run={not_json}"), "compare_evals", not_json)
    garbled = tmp_path / "net.prototxt"
    garbled.write_text("layer {{ garbled\n")
    # was a traceback (ParseError)
    assert_one_line_naming(run_tool("dump_grown_seeds", "--net", garbled, "--weights", tmp_path / "w.caffemodel",
                                    "--out", tmp_path / "seeds"), "dump_grown_seeds", garbled)
    assert not (tmp_path / "seeds").exists()
    # was Caffe aborting the process (exit 134)
    missing_net = tmp_path / "missing.prototxt"
    assert_one_line_naming(run_tool("make_resnet_prototxt", "--random-weights", tmp_path / "r.caffemodel",
                                    "--net", missing_net), "make_resnet_prototxt", missing_net)
    # was exit 2, as if a usage error
    not_h5 = tmp_path / "hed.h5"
    not_h5.write_text("not HDF5")
    assert_one_line_naming(run_tool("import_weights", "--source", "hed", "--input", not_h5, "--net", garbled,
                                    "--out", tmp_path / "out.caffemodel"), "import_weights", not_h5)


def test_usage_errors_exit_2_with_the_usage(tmp_path):
    unknown = run_tool("evaluate", "--pred", tmp_path, "--gt", tmp_path, "--ids", tmp_path / "ids.txt", "--bogus")
    assert unknown.returncode == 2 and unknown.stderr.startswith("usage: evaluate.py")
    assert "unrecognized arguments: --bogus" in unknown.stderr
    # was exit 1 with numpy's "zero-size array" message
    empty_batch = run_tool("bench_layers", "--synthetic", "--no-caffe", "--batch-size", "0")
    assert empty_batch.returncode == 2 and "--batch-size" in empty_batch.stderr.splitlines()[-1]
    assert "Traceback" not in empty_batch.stderr
