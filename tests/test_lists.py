"""dsrg.lists on hand-made list files: LF, CRLF and CR line endings, a byte-order mark, blank lines, the
three line formats, repeated ids, and bad lines named by file and line number."""
import pytest

from dsrg.lists import image_id, read_image_ids, read_image_label_pairs, read_indexed_list, read_list_lines


def test_image_id_is_the_stem_of_the_first_token():
    assert image_id("2007_000032") == "2007_000032"
    assert image_id("2007_000032.jpg") == "2007_000032"
    assert image_id("/JPEGImages/2007_000032.jpg") == "2007_000032"


def test_list_lines_drop_line_ends_and_a_byte_order_mark(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"\xef\xbb\xbfa\r\nb\r\n\r\nc\rd\ne")
    assert read_list_lines(path) == ["a", "b", "", "c", "d", "e"]


def test_image_ids_accept_the_three_list_formats(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("2007_000032\n2007_000039.jpg 1\n"
                    "/JPEGImages/2007_000063.jpg /SegmentationClassAug/2007_000063.png\n\n")
    assert read_image_ids(path) == ["2007_000032", "2007_000039", "2007_000063"]


def test_list_readers_handle_crlf_and_a_byte_order_mark(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"\xef\xbb\xbf2007_000032\r\n2007_000039\r\n\r\n2007_000063\r\n")
    assert read_image_ids(ids) == ["2007_000032", "2007_000039", "2007_000063"]
    listed = tmp_path / "input_list.txt"
    listed.write_bytes(b"\xef\xbb\xbf2007_000032.jpg 0\r\n2007_000039.jpg 1\r\n")
    assert read_indexed_list(listed) == [("2007_000032", 0), ("2007_000039", 1)]
    pairs = tmp_path / "train.txt"
    pairs.write_bytes(b"/JPEGImages/a.jpg /SegmentationClassAug/a.png\r\n\r\nJPEGImages/b.jpg labels/b.png\r\n")
    assert read_image_label_pairs(tmp_path / "voc", pairs) == [
        (tmp_path / "voc" / "JPEGImages" / "a.jpg", tmp_path / "voc" / "SegmentationClassAug" / "a.png"),
        (tmp_path / "voc" / "JPEGImages" / "b.jpg", tmp_path / "voc" / "labels" / "b.png")]


def test_image_ids_refuse_repeats_unless_allowed(tmp_path):
    listed = tmp_path / "val.txt"
    listed.write_text("a\n\nb\r\na.jpg 3\n")
    with pytest.raises(ValueError, match=r"val\.txt: image id a is listed twice \(lines 1 and 4\)"):
        read_image_ids(listed)
    assert read_image_ids(listed, allow_repeats=True) == ["a", "b", "a"]


def test_empty_lists_are_refused(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_bytes(b"\r\n  \r\n")
    with pytest.raises(ValueError, match=r"blank\.txt: the image list is empty"):
        read_image_ids(blank)
    with pytest.raises(ValueError, match=r"blank\.txt: the input list is empty"):
        read_indexed_list(blank)
    with pytest.raises(ValueError, match=r"blank\.txt: the list file has no entries"):
        read_image_label_pairs(tmp_path, blank)


def test_indexed_list_takes_negative_indices_and_names_a_bad_line(tmp_path):
    path = tmp_path / "input_list.txt"
    path.write_text("a.jpg 0\nb.jpg -1\n")
    assert read_indexed_list(path) == [("a", 0), ("b", -1)]
    path.write_text("a.jpg 0\r\nb.jpg\r\n")
    with pytest.raises(ValueError, match=r"input_list\.txt:2: expected '<id>\.jpg <index>', got 'b\.jpg'"):
        read_indexed_list(path)
    path.write_text("a.jpg 0\n\nc.jpg x\n")
    with pytest.raises(ValueError, match=r"input_list\.txt:3: expected '<id>\.jpg <index>', got 'c\.jpg x'"):
        read_indexed_list(path)


def test_image_label_pairs_name_a_bad_line_and_a_missing_list(tmp_path):
    bad_list = tmp_path / "bad.txt"
    bad_list.write_text("one_field_only\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1: expected 'image_path label_path'"):
        read_image_label_pairs(tmp_path, bad_list)
    bad_list.write_text("a.jpg a.png\r\n\r\na.jpg a.png extra\r\n")
    with pytest.raises(ValueError, match=r"bad\.txt:3: expected 'image_path label_path', got 'a\.jpg a\.png extra'"):
        read_image_label_pairs(tmp_path, bad_list)
    with pytest.raises(FileNotFoundError, match="segmentation list file not found: .*absent.txt"):
        read_image_label_pairs(tmp_path, tmp_path / "absent.txt")
