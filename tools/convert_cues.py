"""Convert a localization-cue file between the official pickle form and the project's .npz form.

The output type follows the output suffix: .pickle / .pkl (optionally .gz) or .npz. The input is read
through the restricted unpickler of dsrg.cues, so a hostile pickle is refused, never executed.
"""
import argparse
import sys
from pathlib import Path

from dsrg.cli import add_hidden_aliases, run_main
from dsrg.cues import load_cues, save_cues


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="cue file to read (.pickle, .pkl, .pickle.gz, .npz)")
    parser.add_argument("output", type=Path, help="cue file to write; its suffix picks the format")
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    add_hidden_aliases(parser, {"--overwrite": "--force"})
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.output.exists() and not args.force:
        print(f"{args.output} exists, skipping (use --force to replace it)")
        return 0
    mapping = load_cues(args.input)
    save_cues(args.output, mapping)
    images = sum(1 for key in mapping if key.endswith("_labels"))
    print(f"wrote {args.output}: {images} images")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
