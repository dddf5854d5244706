#!/usr/bin/env python
"""Render an experiment folder's prototxt templates into a run folder.

Experiment prototxts are valid prototxt in which paths that differ per machine and per run are
written as ${NAME} placeholders inside strings (e.g. source: "${INPUT_LIST}"). This tool copies
every file of the experiment folder into OUT, replacing each placeholder by the value given with
--set NAME=VALUE; a placeholder without a value, a value that is not used, or a value that could
break the prototxt string (quotes, backslashes, newlines) is an error. --set-if-used NAME=VALUE
offers a value that no file needs to use (run.sh offers every experiment its class count and cue
grid this way, for edits files that size the nets to the data set). When pycaffe is importable
each rendered .prototxt is parsed (nets as NetParameter, *solver* files as SolverParameter).

A variant of an experiment (smaller inputs, frozen layers, an ablation) is the base experiment's
folder plus one or more edits files (--edits, format in dsrg.netedit): the edited prototxts are
parsed, changed and written back in protobuf text form under a header naming the edits; the
other files are copied as they are. Placeholders may appear in edit values too.

Example:
  python tools/render_experiment.py --exp experiment/demo --out runs/demo/prototxt \\
      --set IMAGE_DIR=data/demo/JPEGImages --set INPUT_LIST=data/demo/lists/input_list.txt ...
  python tools/render_experiment.py --exp experiment/voc12-vgg16 \\
      --edits experiment/voc12-photos/photos.edits --out runs/voc12-photos/prototxt --set ...
"""
import argparse
import re
import sys
from pathlib import Path

from dsrg import netedit
from dsrg.cli import run_main, tool_name
from dsrg.fileio import atomic_write_text
from pylayers.netio import caffe_protos

PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
FORBIDDEN_CHARACTERS = set("'\"\\\n\r")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", required=True, help="experiment folder (templates)")
    parser.add_argument("--out", required=True, help="folder to write the rendered files to")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="placeholder value")
    parser.add_argument("--set-if-used", action="append", default=[], metavar="NAME=VALUE",
                        help="placeholder value that no template or edits file needs to use")
    parser.add_argument("--edits", action="append", default=[], metavar="FILE",
                        help="edits file applied to the experiment's prototxts (repeatable, applied in order)")
    parser.add_argument("--allow-unused", action="store_true", help="values no template uses are not an error")
    return parser.parse_args(argv)


def parse_values(assignments, option="--set"):
    values = {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or not PLACEHOLDER.fullmatch("${" + name + "}"):
            raise ValueError(f"{tool_name()}: {option} expects NAME=VALUE, got {assignment!r}")
        bad = FORBIDDEN_CHARACTERS & set(value)
        if bad:
            raise ValueError(f"{tool_name()}: the value of {name} ({value!r}) contains {sorted(bad)}, "
                             "which cannot go into a prototxt string")
        values[name] = value
    return values


def render_text(text, values, source):
    """Replace ${NAME} placeholders; returns (text, names used). A missing value is an error naming the file."""
    used = set()

    def substitute(match):
        name = match.group(1)
        if name not in values:
            raise KeyError(f"{tool_name()}: {source} needs a value for ${{{name}}} (pass --set {name}=...)")
        used.add(name)
        return values[name]

    return PLACEHOLDER.sub(substitute, text), used


def import_caffe_proto():
    try:
        caffe_pb2 = caffe_protos()
        from google.protobuf import text_format
    except ImportError:
        return None, None
    return caffe_pb2, text_format


def message_for(path, caffe_pb2):
    return caffe_pb2.SolverParameter() if "solver" in path.name else caffe_pb2.NetParameter()


def validate_prototxt(path, text):
    caffe_pb2, text_format = import_caffe_proto()
    if caffe_pb2 is None:
        return False
    message = message_for(path, caffe_pb2)
    try:
        text_format.Merge(text, message)
    except text_format.ParseError as error:
        raise ValueError(f"{tool_name()}: {path} is not a valid {type(message).__name__}: {error}") from error
    return True


def edited_prototxt(path, text, edits, edit_names):
    """`text` of the prototxt `path` with the matching edits applied, as protobuf text under a header."""
    caffe_pb2, text_format = import_caffe_proto()
    if caffe_pb2 is None:
        raise RuntimeError(f"{tool_name()}: edits need pycaffe's caffe_pb2 (run tools/setup.sh)")
    message = message_for(path, caffe_pb2)
    try:
        text_format.Merge(text, message)
    except text_format.ParseError as error:
        raise ValueError(f"{tool_name()}: {path} is not a valid {type(message).__name__}: {error}") from error
    netedit.apply_edits(message, edits, path.name)
    header = f"# {path.name}, rendered by tools/render_experiment.py with the edits in {', '.join(edit_names)}\n"
    return header + netedit.message_text(message)


def render_experiment(exp_dir, out_dir, values, allow_unused=False, edit_files=(), values_if_used=None):
    """Render `exp_dir` into `out_dir` with `values` (each must be used unless `allow_unused`) and
    `values_if_used` (none needs to be; `values` wins a name given in both)."""
    exp_dir, out_dir = Path(exp_dir), Path(out_dir)
    required = set(values)
    values = {**(values_if_used or {}), **values}
    if not exp_dir.is_dir():
        raise FileNotFoundError(f"{tool_name()}: experiment folder not found: {exp_dir}")
    sources = sorted(path for path in exp_dir.iterdir() if path.is_file())
    edits, used = [], set()
    for edit_file in edit_files:
        edit_file = Path(edit_file)
        if not edit_file.is_file():
            raise FileNotFoundError(f"{tool_name()}: edits file not found: {edit_file}")
        text, names = render_text(edit_file.read_text(), values, edit_file)
        used |= names
        edits.extend(netedit.parse_edits(text, str(edit_file)))
    netedit.check_every_file_matched(edits, [path.name for path in sources])
    written = []
    for source in sources:
        text, names = render_text(source.read_text(), values, source)
        used |= names
        target = out_dir / source.name
        if netedit.edits_for_file(edits, source.name):
            text = edited_prototxt(source, text, edits, [Path(name).name for name in edit_files])
        if source.suffix == ".prototxt":
            validate_prototxt(target, text)
        atomic_write_text(target, text)
        written.append(target)
    unused = sorted(required - used)
    if unused and not allow_unused:
        raise ValueError(f"{tool_name()}: no template in {exp_dir} uses {unused}")
    return written


def main(argv=None):
    args = parse_args(argv)
    written = render_experiment(args.exp, args.out, parse_values(args.set), args.allow_unused, args.edits,
                                parse_values(args.set_if_used, "--set-if-used"))
    print(f"{tool_name()}: {len(written)} files rendered into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
