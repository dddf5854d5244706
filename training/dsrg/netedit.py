"""Prototxt variants: a base experiment's nets and solvers plus a list of edits.

An experiment that differs from another only in sizes, learning rates or a few connections is
written as the base experiment's prototxt files and an *edits file*, not as a copied net. Each
non-empty line of an edits file that does not start with ``#`` is one edit::

    FILE  LAYER  FIELD  VALUE      set a field of every matching layer (or of the solver)
    FILE  LAYER  delete            remove every matching layer

- FILE: a file name of the base experiment, a glob (``*_train.prototxt``), or several of them
  joined by commas (``*_train.prototxt,deploy.prototxt``);
- LAYER: a layer name or glob (``conv[1-4]_*``); ``-`` for a file's top-level message (a solver);
- FIELD: a dotted path through the message, each part ``name``, ``name[i]`` or ``name[*]`` (every
  element of a repeated field): ``image_data_param.batch_size``, ``param[*].lr_mult``,
  ``bottom[1]``;
- VALUE: the rest of the line, a prototxt value: ``10``, ``0.001``, ``true``, ``MAX``, ``"Adam"``.

A file, layer or field that matches nothing is an error naming the edits file and line, so a
typo never passes silently. Edits work on any protobuf message (no Caffe import here): the caller
parses the prototxt with the right message type and serialises the result.
"""
import copy
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor

_PART = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+|\*)\])?$")
_ESCAPE = re.compile(r"\\(.)")
DELETE = "delete"
TOP_LEVEL = "-"


@dataclass(frozen=True)
class Edit:
    """One line of an edits file."""

    file_glob: str
    layer_glob: str
    field_path: str | None
    value: str | None
    source: str

    @property
    def deletes(self):
        return self.field_path is None


def parse_edits(text, source="edits"):
    """The edits of an edits file's text; a malformed line is a ValueError naming `source` and the line."""
    edits = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        where = f"{source}:{number}"
        fields = stripped.split(None, 3)
        if len(fields) == 3 and fields[2] == DELETE:
            if fields[1] == TOP_LEVEL:
                raise ValueError(f"{where}: '{TOP_LEVEL} {DELETE}' would delete a whole file; name a layer")
            edits.append(Edit(fields[0], fields[1], None, None, where))
        elif len(fields) == 4:
            for part in fields[2].split("."):
                if not _PART.match(part):
                    raise ValueError(f"{where}: bad field path {fields[2]!r} (expected name, name[i] or "
                                     f"name[*] parts joined by dots)")
            edits.append(Edit(fields[0], fields[1], fields[2], fields[3], where))
        else:
            raise ValueError(f"{where}: expected 'FILE LAYER FIELD VALUE' or 'FILE LAYER {DELETE}', got {line!r}")
    return edits


def read_edits(path):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"edits file not found: {path}")
    return parse_edits(path.read_text(), str(path))


def _file_matches(file_name, file_globs):
    return any(fnmatch.fnmatchcase(file_name, pattern) for pattern in file_globs.split(","))


def edits_for_file(edits, file_name):
    return [edit for edit in edits if _file_matches(file_name, edit.file_glob)]


def check_every_file_matched(edits, file_names):
    """Every glob of every edit's FILE must match one of `file_names`."""
    for edit in edits:
        for pattern in edit.file_glob.split(","):
            if not any(fnmatch.fnmatchcase(name, pattern) for name in file_names):
                raise ValueError(f"{edit.source}: no file of the base experiment matches {pattern!r} "
                                 f"(files: {', '.join(sorted(file_names))})")


def _targets(message, edit):
    if edit.layer_glob == TOP_LEVEL:
        return [message]
    if not hasattr(message, "layer"):
        raise ValueError(f"{edit.source}: {edit.file_glob} has no layers; use '{TOP_LEVEL}' for a solver")
    return [layer for layer in message.layer if fnmatch.fnmatchcase(layer.name, edit.layer_glob)]


def _scalar_from_text(parent, name, value_text, where):
    """The value `value_text` parsed as field `name` of a message of `parent`'s type."""
    scratch = type(parent)()
    try:
        text_format.Merge(f"{name}: {value_text}", scratch)
    except text_format.ParseError as error:
        raise ValueError(f"{where}: {value_text!r} is not a valid value of {name}: {error}") from error
    value = getattr(scratch, name)
    return value[0] if parent.DESCRIPTOR.fields_by_name[name].is_repeated else value


def _set_path(message, parts, value_text, where, path_text):
    name, index = _PART.match(parts[0]).groups()
    field = message.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        known = ", ".join(sorted(message.DESCRIPTOR.fields_by_name))
        raise ValueError(f"{where}: {type(message).__name__} has no field {name!r} (in {path_text}); fields: {known}")
    repeated = field.is_repeated
    is_message = field.type == FieldDescriptor.TYPE_MESSAGE
    last = len(parts) == 1
    if index is not None and not repeated:
        raise ValueError(f"{where}: {name} is not a repeated field (in {path_text})")
    if repeated and index is None and not last:
        raise ValueError(f"{where}: {name} is repeated; write {name}[i] or {name}[*] (in {path_text})")
    if not repeated:
        if last:
            if is_message:
                raise ValueError(f"{where}: {name} is a message; set one of its fields (in {path_text})")
            setattr(message, name, _scalar_from_text(message, name, value_text, where))
            return
        _set_path(getattr(message, name), parts[1:], value_text, where, path_text)
        return
    container = getattr(message, name)
    if last and index is None:
        raise ValueError(f"{where}: {name} is repeated; write {name}[i] or {name}[*] (in {path_text})")
    positions = range(len(container)) if index == "*" else [int(index)]
    if not positions or max(positions) >= len(container):
        raise ValueError(f"{where}: {name}[{index}] does not exist: the field has {len(container)} entries "
                         f"(in {path_text})")
    for position in positions:
        if last:
            if is_message:
                raise ValueError(f"{where}: {name}[{index}] is a message; set one of its fields (in {path_text})")
            container[position] = _scalar_from_text(message, name, value_text, where)
        else:
            _set_path(container[position], parts[1:], value_text, where, path_text)


def apply_edits(message, edits, file_name):
    """Apply the edits whose FILE glob matches `file_name` to `message` in place; returns how many applied.

    An edit whose LAYER glob matches no layer of the file is an error naming its line.
    """
    applied = 0
    for edit in edits_for_file(edits, file_name):
        targets = _targets(message, edit)
        if not targets:
            names = ", ".join(layer.name for layer in message.layer)
            raise ValueError(f"{edit.source}: no layer of {file_name} matches {edit.layer_glob!r} (layers: {names})")
        if edit.deletes:
            doomed = {id(layer) for layer in targets}
            keep = [copy.deepcopy(layer) for layer in message.layer if id(layer) not in doomed]
            del message.layer[:]
            message.layer.extend(keep)
        else:
            for target in targets:
                _set_path(target, edit.field_path.split("."), edit.value, f"{edit.source} ({file_name})",
                          edit.field_path)
        applied += 1
    return applied


def unescape_single_quotes(text):
    """protobuf writes ' inside "..." strings as \\'; Caffe reads a plain ' just as well, and people read it better."""
    return _ESCAPE.sub(lambda match: "'" if match.group(1) == "'" else match.group(0), text)


def message_text(message):
    """A protobuf message (a net, a solver) as prototxt text, single quotes unescaped."""
    return unescape_single_quotes(text_format.MessageToString(message))
