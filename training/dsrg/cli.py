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
    try:
        status = main(argv)
    except EXPECTED_ERRORS + tuple(also) as error:
        print(error_line(error), file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0


def error_line(error, name=None):
    """An expected error as the one line a tool prints: its message, prefixed with the tool's name
    (`name`, default the running script's) unless the message already starts with it."""
    name = name or tool_name()
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return text if text.startswith(f"{name}:") else f"{name}: error: {text}"


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


def parse_scales(text):
    """argparse type of --scales: comma-separated positive numbers."""
    try:
        scales = [float(token) for token in text.split(",") if token.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scales must be comma-separated numbers, got {text!r}") from None
    if not scales or min(scales) <= 0:
        raise argparse.ArgumentTypeError(f"--scales must be positive numbers, got {text!r}")
    return scales


def _joined(scales):
    return ",".join(f"{scale:g}" for scale in scales)


def add_inference_options(parser, scale_mode):
    """The options of multi-scale inference through a deploy net (dsrg.inference.predict), shared by
    tools/infer.py and tools/segment.py: --scale-mode (default `scale_mode`), --scales, --fuse, --crf,
    --crf-scale, --mean, --input-blob, --score-blob, --gpu. Call :func:`resolve_scales` on the parsed
    arguments."""
    from dsrg.inference import DEFAULT_SCALES, FUSE_MODES, SCALE_MODES
    from dsrg.voc import MEAN_BGR

    parser.add_argument("--scale-mode", choices=SCALE_MODES, default=scale_mode,
                        help=f"warp: square sides in pixels (the stage-1 model); relative: factors of the image "
                             f"size (the final model) (default {scale_mode})")
    parser.add_argument("--scales", type=parse_scales,
                        help=f"comma-separated scales (default {_joined(DEFAULT_SCALES['warp'])} for warp, "
                             f"{_joined(DEFAULT_SCALES['relative'])} for relative)")
    parser.add_argument("--fuse", choices=FUSE_MODES, default="scores",
                        help="scores: sum the raw scores and take one softmax (default, the release's "
                             "test-ms.py and test-ms-f.py); probs: average the per-scale softmax maps")
    parser.add_argument("--crf", action="store_true", help="refine with the dense CRF on log-probabilities")
    parser.add_argument("--crf-scale", type=float, default=1.0, help="CRF scale_factor (default 1)")
    parser.add_argument("--input-blob", help="input blob name (default: the net's first input)")
    parser.add_argument("--score-blob", help="score blob name (default: the net's first output)")
    parser.add_argument("--mean", type=float, nargs=3, default=MEAN_BGR, metavar=("B", "G", "R"),
                        help="BGR mean subtracted from the input (default the VGG16 mean)")
    parser.add_argument("--gpu", type=int, help="GPU id; CPU when not given")


def resolve_scales(args):
    """Fill in args.scales (parsed options of :func:`add_inference_options`) from the scale mode's
    defaults when --scales was not given; returns args."""
    from dsrg.inference import DEFAULT_SCALES

    if args.scales is None:
        args.scales = [float(scale) for scale in DEFAULT_SCALES[args.scale_mode]]
    return args
