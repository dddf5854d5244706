"""The command-line tools' exit policy, in one place.

0: done (or nothing left to do); 1: failed, with one line on stderr naming the file and what was
expected (an expected error: OSError or ValueError, which the project's code raises with such a
message), never a traceback; 2: a usage error (argparse). tools/train.py adds its documented guard
codes (3 diverged, 4 a layer raised, 128 + N stopped by signal N).
"""
import sys
from pathlib import Path

EXPECTED_ERRORS = (OSError, ValueError)


def tool_name():
    """The running tool's file name as it was started (Path(sys.argv[0]).name, e.g. "train.py"): the
    prefix of its messages."""
    return Path(sys.argv[0]).name


def run_main(main, argv=None, also=()):
    """Run a tool's `main(argv)` and return its exit status: an int it returns, else 0 (a tool may
    return its summary). An expected error (EXPECTED_ERRORS, plus the exception types in `also`) is
    printed as one line, prefixed with the tool's name unless the message already starts with it."""
    name = tool_name()
    try:
        status = main(argv)
    except EXPECTED_ERRORS + tuple(also) as error:
        text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(text if text.startswith(f"{name}:") else f"{name}: error: {text}", file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0
