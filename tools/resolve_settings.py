#!/usr/bin/env python3
"""Resolve an experiment's settings (dsrg.runconfig): the declared defaults, the experiment's config.sh
after its BASE chain, then the environment. Writes RUN_DIR/run.json (every value and where it came
from) and prints the settings as bash assignments, which run.sh evaluates.

Stdlib only, so that run.sh can call it with the system python3 before set-up has built .venv.

Examples:
  EXP=voc12-photos PASCAL_DIR=../shared/data/voc12 python3 tools/resolve_settings.py --no-json
  python3 tools/resolve_settings.py --describe
"""
import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))

from dsrg import runconfig  # noqa: E402
from dsrg.atomic import atomic_write_text  # noqa: E402
from dsrg.cli import run_main  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", default=None, help="experiment name (default: $EXP, else demo)")
    parser.add_argument("--experiments", type=Path, default=REPO / "experiment",
                        help="folder of the experiment folders (default: the repository's experiment/)")
    parser.add_argument("--no-json", action="store_true", help="do not write RUN_DIR/run.json")
    parser.add_argument("--describe", action="store_true", help="print every setting, its default and help")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.describe:
        sys.stdout.write(runconfig.describe())
        return 0
    exp = args.exp if args.exp is not None else (os.environ.get("EXP") or "demo")
    resolved = runconfig.resolve(args.experiments, exp, os.environ, REPO, Path.cwd())
    if not args.no_json:
        atomic_write_text(Path(resolved.paths["RUN_DIR"]) / "run.json", runconfig.to_json_text(resolved))
    sys.stdout.write(runconfig.shell_assignments(resolved))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
