"""Shared test set-up: the repository root importable (tools.*) from any start directory; fixtures."""
import sys
from pathlib import Path

import pytest

REPO_ROOT = str(Path(__file__).resolve().parents[1])
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


@pytest.fixture
def crf_backend():
    """The krahenbuhl2013 CRF backend with an empty compute-once memo, restored after the test."""
    from dsrg import crf

    crf.set_crf_backend(None)
    crf.clear_memo()
    yield "krahenbuhl2013"
    crf.set_crf_backend(None)
    crf.clear_memo()
