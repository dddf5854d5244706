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
