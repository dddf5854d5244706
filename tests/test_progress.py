"""dsrg.progress: plain periodic lines (not a carriage-return bar) when stderr is not a terminal."""
from dsrg.progress import PlainProgress, progress


def test_plain_lines_one_per_tenth_and_the_end(capsys):
    assert list(progress(range(25), desc="infer", unit="img")) == list(range(25))
    lines = capsys.readouterr().err.splitlines()
    assert "\r" not in "".join(lines)
    assert lines[0].startswith("infer: 1/25 img (4%), ") and lines[-1].startswith("infer: 25/25 img (100%), ")
    assert 10 <= len(lines) <= 14


def test_update_write_and_disable(capsys):
    bar = progress(total=100, desc="train", unit="it", initial=40)
    assert isinstance(bar, PlainProgress)
    bar.update(30)
    bar.write("iter 70/100  loss 1.5")
    bar.close()
    captured = capsys.readouterr()
    assert captured.out == "iter 70/100  loss 1.5\n"
    assert captured.err.splitlines()[0].startswith("train: 70/100 it (70%)")
    assert captured.err.splitlines()[-1].startswith("train: 70/100 it (70%)")
    silent = progress(range(3), desc="x", disable=True)
    assert list(silent) == [0, 1, 2] and capsys.readouterr().err == ""
