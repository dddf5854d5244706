"""List files and class-name files as every tool reads them (stdlib only: tools/resolve_settings.py reads
them before set-up has built the project's environment).

A list file names one image per non-empty line, by its id or by a path whose stem is the id; UTF-8 with
or without a byte-order mark, LF, CRLF or CR line endings (the VOC lists come with either). A class-name
file names one class per non-empty line, background first.
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

    Accepts plain id lists (val_id.txt, VOC's ImageSets/Segmentation/val.txt), "<id>.jpg <index>" lines
    (input_list.txt) and "/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png" lines (the Caffe
    ImageSegData lists); line endings and a byte-order mark as :func:`read_list_lines` reads them.

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
