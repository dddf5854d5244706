"""dsrg.cost by hand, and tools/estimate_cost.py on a small inline deploy net against hand-counted FLOPs."""
import pytest

from caffe_helpers import load_tool
from dsrg import cost

SMALL_DEPLOY = """
name: "small"
layer { name: "input" type: "Input" top: "images" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "images" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 6 kernel_size: 3 pad: 2 dilation: 2 group: 2 } }
"""


def test_multiply_adds_of_one_convolution_by_hand():
    conv = cost.ConvShape("c", (64, 3, 3, 3), 10, 20)
    assert conv.multiply_adds == 64 * 10 * 20 * 3 * 3 * 3
    assert cost.forward_flops([conv, conv]) == 4 * conv.multiply_adds


def test_training_counts_three_passes_per_image():
    conv = cost.ConvShape("c", (2, 1, 1, 1), 1, 1)
    assert cost.training_flops([conv], batch=5, iterations=7) == 3 * 4 * 5 * 7


def test_training_memory_by_hand():
    assert cost.training_memory_bytes(10, 3, "SGD") == 4 * (2 * 10 + 3 * 3)
    assert cost.training_memory_bytes(10, 3, "Adam") == 4 * (2 * 10 + 4 * 3)
    with pytest.raises(ValueError, match="RMSProp"):
        cost.training_memory_bytes(10, 3, "RMSProp")


def test_hours_at_a_rate():
    assert cost.hours_at(3600e12, 1) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive"):
        cost.hours_at(1, 0)


def test_tool_counts_the_small_net_by_hand(tmp_path, capsys):
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(SMALL_DEPLOY)
    # At 16x16: conv1 4 x 16 x 16 x (3 x 3 x 3); pool1 -> 8x8; conv2 (groups of 2) 6 x 8 x 8 x (2 x 3 x 3).
    multiply_adds = 4 * 16 * 16 * 27 + 6 * 8 * 8 * 18
    status = load_tool("estimate_cost").main(["--deploy", str(deploy), "--size", "16", "--schedule", "tiny=10x2",
                                              "--tflops", "1"])
    out = capsys.readouterr().out
    assert status == 0
    assert f"{2 * multiply_adds / 1e9:.1f} GFLOP per image" in out
    blobs = 3 * 16 * 16 + 4 * 16 * 16 + 4 * 8 * 8 + 6 * 8 * 8
    parameters = (4 * 3 * 9 + 4) + (6 * 2 * 9 + 6)
    row = next(line for line in out.splitlines() if line.startswith("tiny"))
    flops = 3 * 2 * multiply_adds * 2 * 10
    memory = 4 * (2 * blobs * 2 + 3 * parameters)
    assert row.split() == ["tiny", "10", "2", f"{flops / 1e15:.1f}", f"{memory / 2 ** 30:.1f}",
                           f"{flops / 1e12 / 3600:.1f}"]


def test_a_bad_schedule_is_a_usage_error(tmp_path):
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(SMALL_DEPLOY)
    with pytest.raises(SystemExit) as exit_info:
        load_tool("estimate_cost").main(["--deploy", str(deploy), "--schedule", "stage 1=8000"])
    assert exit_info.value.code == 2
