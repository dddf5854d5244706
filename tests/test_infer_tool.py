"""tools/infer.py's folder bookkeeping: a folder holds the outputs of one set of inference settings."""
import json
from pathlib import Path

import pytest
from caffe_helpers import load_tool

REPO = Path(__file__).resolve().parents[1]




def test_release_defaults_and_refusal_of_a_folder_made_with_other_settings(tmp_path):
    infer = load_tool("infer")
    args = infer.parse_args(["--deploy", "d.prototxt", "--weights", "w.caffemodel", "--images", "i", "--ids",
                             "ids.txt", "--out", str(tmp_path), "--crf"])
    assert (args.fuse, args.restrict_to_labels, args.scales) == ("scores", None, [241.0, 321.0, 401.0])
    settings = infer.inference_settings(args)
    infer.check_folder_settings(tmp_path, settings)
    (tmp_path / infer.CONFIG_NAME).write_text(json.dumps({**settings, "images": 3, "ids": "ids.txt"}))
    infer.check_folder_settings(tmp_path, settings)
    with pytest.raises(ValueError, match=r"holds outputs made with other settings \(fuse: 'scores' before, "
                                         r"'probs' now\); choose another --out"):
        infer.check_folder_settings(tmp_path, {**settings, "fuse": "probs"})


def test_netio_names_the_tool_and_the_missing_file_and_imports_caffe_only_when_used(tmp_path):
    import subprocess
    import sys

    from pylayers.netio import load_net

    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"^extract_cams\.py: deploy prototxt not found: .*d\.prototxt$"):
        load_net(tmp_path / "d.prototxt", weights, None, "extract_cams.py")
    (tmp_path / "d.prototxt").write_text("")
    with pytest.raises(FileNotFoundError, match=r"^infer\.py: weights not found: .*x\.caffemodel$"):
        load_net(tmp_path / "d.prototxt", tmp_path / "x.caffemodel", None, "infer.py")
    probe = "import sys, pylayers.netio; print('caffe' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_a_mistyped_net_leaves_nothing_that_would_refuse_the_corrected_call(tmp_path):
    infer = load_tool("infer")
    (tmp_path / "ids.txt").write_text("a\n")
    out = tmp_path / "out"
    args = ["--deploy", str(tmp_path / "typo.prototxt"), "--weights", str(tmp_path / "w.caffemodel"),
            "--images", str(tmp_path), "--ids", str(tmp_path / "ids.txt"), "--out", str(out), "--no-progress"]
    with pytest.raises(FileNotFoundError, match=r"^infer\.py: deploy prototxt not found: .*typo\.prototxt"):
        infer.main(args)
    assert not (out / infer.CONFIG_NAME).exists()
    settings = infer.inference_settings(infer.parse_args(args[:1] + [str(tmp_path / "right.prototxt")] + args[2:]))
    infer.check_folder_settings(out, settings)
