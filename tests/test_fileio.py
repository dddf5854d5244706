"""dsrg.fileio and dsrg.atomic: atomic outputs follow the umask and name the file when a write fails."""
import errno
import os
import stat

import pytest

from dsrg import atomic, fileio


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomic_outputs_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        fileio.atomic_write_json(tmp_path / "out.json", {"a": 1})
        fileio.atomic_save_npy(tmp_path / "out.npy", [1, 2])
    finally:
        os.umask(previous)
    for name in ("out.json", "out.npy"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode


def test_a_failed_write_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fd, mode):
            self.handle = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fdopen", FullDisk)
    target = tmp_path / "weights.npy"
    with pytest.raises(OSError, match=r"weights\.npy: No space left on device") as caught:
        fileio.atomic_save_npy(target, [1.0])
    assert caught.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []


def test_an_unwritable_folder_names_the_file(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(OSError, match=r"not_a_folder/out\.json"):
        fileio.atomic_write_json(blocker / "out.json", {})
