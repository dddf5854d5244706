"""The command-line tools' exit policy and their shared flags, in one place.

Exit status 0: done (or nothing left to do); 1: failed, with one line on stderr naming the file and what was
expected (an expected error: OSError or ValueError, which the project's code raises with such a
message), never a traceback; 2: a usage error (argparse). tools/train.py adds its documented guard
codes (3 diverged, 4 a layer raised, 128 + N stopped by signal N).

One flag vocabulary across the tools: --images (image folder), --image-ext (image extension), --out
(output file or folder), --force (overwrite, redo), --no-progress (no progress bars), --num-classes,
--ids (id list file), --input-list ('<id>.jpg <index>' list). An earlier spelling of a flag keeps
working as a hidden alias (add_hidden_aliases); --help shows only the vocabulary's.
"""
import argparse
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


def add_hidden_aliases(parser, aliases):
    """Let each earlier spelling in `aliases` ({old option string: new option string}) stand for the
    new option: the same argparse action, so the same dest, default, type and required check, but
    --help and the usage line show only the new spelling."""
    for old, new in aliases.items():
        if old in parser._option_string_actions:
            raise argparse.ArgumentError(None, f"{old} is already an option of its own, not an alias of {new}")
        parser._option_string_actions[old] = parser._option_string_actions[new]


def add_no_progress(parser):
    """--no-progress: no progress bar on a terminal and no progress lines in a log (dsrg.progress)."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
