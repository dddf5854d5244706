"""tools/make_train_list.py: the training subset of the input list, and repeat-factor class balancing."""
import json
from pathlib import Path

import numpy as np
import pytest

from caffe_helpers import load_tool
from dsrg.cues import save_cues

REPO = Path(__file__).resolve().parents[1]




def test_repeat_factors_by_hand():
    tool = load_tool("make_train_list")
    # class 1 in 3 of 4 images (f = 0.75), class 2 in 1 of 4 (f = 0.25); threshold 0.5
    factors = tool.repeat_factors([{1}, {1}, {1, 2}, set()], 0.5)
    np.testing.assert_allclose(factors, [1.0, 1.0, np.sqrt(2.0), 1.0])
    counts = tool.repeat_counts(np.array([1.0, 2.0, 2.5, 3.25] * 1000), seed=0)
    assert set(counts[0::4]) == {1} and set(counts[1::4]) == {2}
    assert set(counts[2::4]) == {2, 3} and abs(counts[2::4].mean() - 2.5) < 0.05
    assert abs(counts[3::4].mean() - 3.25) < 0.05


def test_subset_in_input_list_order_with_crlf_lists_and_balancing(tmp_path, capsys):
    tool = load_tool("make_train_list")
    (tmp_path / "input_list.txt").write_bytes(b"a.jpg 0\r\nb.jpg 1\r\nc.jpg 2\r\nd.jpg 3\r\n")
    (tmp_path / "ids.txt").write_bytes(b"d\r\nb\r\na\r\n")
    cues = {}
    for index, labels in enumerate(([1], [1], [2], [3])):
        cues[f"{index}_labels"] = np.array(labels)
        cues[f"{index}_cues"] = np.zeros((3, 0), dtype=np.int64)
    save_cues(tmp_path / "cues.pickle", cues)
    out = tmp_path / "lists" / "train.txt"
    assert tool.main(["--input-list", str(tmp_path / "input_list.txt"), "--ids", str(tmp_path / "ids.txt"),
                      "--out", str(out)]) == 0
    assert out.read_bytes() == b"a.jpg 0\nb.jpg 1\nd.jpg 3\n"
    balanced = tmp_path / "balanced.txt"
    tool.main(["--input-list", str(tmp_path / "input_list.txt"), "--ids", str(tmp_path / "ids.txt"),
               "--out", str(balanced), "--cues", str(tmp_path / "cues.pickle"), "--repeat-threshold", "1"])
    # f(class 1) = 2/3 -> sqrt(1.5) = 1.22 repeats; f(class 3) = 1/3 -> sqrt(3) = 1.73
    lines = balanced.read_text().splitlines()
    assert set(lines) == {"a.jpg 0", "b.jpg 1", "d.jpg 3"} and 3 <= len(lines) <= 6
    assert json.loads(balanced.with_suffix(".json").read_text())["lines"] == len(lines)
    (tmp_path / "ids.txt").write_text("a\nzzz\n")
    with pytest.raises(SystemExit, match=r"1 training ids of .* are not in .*input_list.txt, e.g. \['zzz'\]"):
        tool.main(["--input-list", str(tmp_path / "input_list.txt"), "--ids", str(tmp_path / "ids.txt"),
                   "--out", str(out)])


def test_without_an_input_list_the_ids_are_numbered_in_their_order(tmp_path):
    """A data set with no cue file yet (run.sh's CUES=generate with INPUT_LIST_NAME empty): VOC's CRLF
    ImageSets list numbered 0, 1, 2, ... in its own order."""
    tool = load_tool("make_train_list")
    (tmp_path / "train.txt").write_bytes(b"d\r\nb\r\n\r\na\r\n")
    out = tmp_path / "train_input_list.txt"
    assert tool.main(["--ids", str(tmp_path / "train.txt"), "--out", str(out)]) == 0
    assert out.read_bytes() == b"d.jpg 0\nb.jpg 1\na.jpg 2\n"
