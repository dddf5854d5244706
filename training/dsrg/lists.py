"""The project's list files and class-name files, read in one place (stdlib only:
tools/resolve_settings.py reads them before set-up has built the project's environment).

Three kinds of list, each a line per entry, blank lines skipped, LF, CRLF or CR line endings (the
VOC lists come with either):

- image id lists (val_id.txt, train_aug_id.txt): :func:`read_image_ids`, which also takes the id
  from the first token of the other two kinds;
- input lists, "<id>.jpg <cue index>" (input_list.txt, the stage-1 class-balanced list):
  :func:`read_indexed_list`;
- DeepLab segmentation lists, "image_path label_path" relative to a root folder (stage 2):
  :func:`read_image_label_pairs`.

and class-name files, one class per line, background first: :func:`read_class_names`.

A line that does not fit is a ValueError naming the file and the line number.
"""
from pathlib import Path


def image_id(token):
    """The image id in a list-file token: '2007_000032', '2007_000032.jpg' or '/JPEGImages/2007_000032.jpg'."""
    return Path(token).stem


def read_list_lines(path):
    """The lines of a list file as text: UTF-8, a leading byte-order mark dropped, LF, CRLF or CR
    line endings (the VOC lists come with either), no line-end characters left on any line."""
    return Path(path).read_text(encoding="utf-8-sig").splitlines()


def read_image_ids(path, allow_repeats=False):
    """Image ids from a list file, one per non-empty line; the id is taken from the line's first token.

    Accepts plain id lists (val_id.txt, VOC's ImageSets/Segmentation/val.txt), "<id>.jpg <index>" lines (input_list.txt) and
    "/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png" lines (the Caffe ImageSegData lists);
    line endings and a byte-order mark as :func:`read_list_lines` reads them.

    An id listed twice is a ValueError naming the list, the id and both line numbers (an evaluation
    would count its pixels twice: one val id listed 4 times moved a 14.51 mIoU to 17.10), unless
    `allow_repeats` (a sampling list, such as stage 1's class-balanced list, repeats ids on purpose).
    """
    numbered = [(number, image_id(line.split()[0]))
                for number, line in enumerate(read_list_lines(path), start=1) if line.strip()]
    if not numbered:
        raise ValueError(f"{path}: the image list is empty")
    if not allow_repeats:
        first_line = {}
        for number, name in numbered:
            if name in first_line:
                raise ValueError(f"{path}: image id {name} is listed twice (lines {first_line[name]} and {number}); "
                                 "each image must be listed once")
            first_line[name] = number
    return [name for _, name in numbered]


def read_class_names(path):
    """One class name per non-empty line, background first (line endings and a byte-order mark as
    :func:`read_list_lines` reads them)."""
    names = [line.strip() for line in read_list_lines(path) if line.strip()]
    if not names:
        raise ValueError(f"{path}: no class names found (expected one name per line)")
    return names


def read_indexed_list(path):
    """(image id, cue index) pairs from an input_list ("<id>.jpg <index>" per line; line endings and a
    byte-order mark as :func:`read_list_lines` reads them)."""
    pairs = []
    for number, line in enumerate(read_list_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2 or not fields[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{number}: expected '<id>.jpg <index>', got {line!r}")
        pairs.append((image_id(fields[0]), int(fields[1])))
    if not pairs:
        raise ValueError(f"{path}: the input list is empty")
    return pairs


def read_image_label_pairs(root_folder, source):
    """[(image path, label path)] of a DeepLab list file `source`, each path under `root_folder` (a
    leading "/" too); a missing file is a FileNotFoundError, a malformed line names the file and line."""
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"segmentation list file not found: {source}")
    root = Path(root_folder)
    entries = []
    for number, line in enumerate(source.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ValueError(f"{source}:{number}: expected 'image_path label_path', got {line!r}")
        entries.append((root / fields[0].lstrip("/"), root / fields[1].lstrip("/")))
    if not entries:
        raise ValueError(f"{source}: the list file has no entries")
    return entries
