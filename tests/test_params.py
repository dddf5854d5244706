"""param_str parsing: a dict literal read with ast.literal_eval, checked against a schema."""
import pytest

from dsrg.params import REQUIRED, parse_param_str

SCHEMA = {
    "th1": (float, 0.99),
    "th2": (float, 0.85),
    "cues": (str, REQUIRED),
    "mirror": (bool, False),
    "cue_size": (int, 41),
    "mean": ((tuple, list), (1.0, 2.0, 3.0)),
    "seed": ((int, type(None)), None),
}


def test_values_defaults_and_int_to_float():
    parsed = parse_param_str("DSRGLayer", "{'cues': 'a.pickle', 'th1': 1, 'mirror': True, 'mean': [4, 5, 6]}", SCHEMA)
    assert parsed == {"th1": 1.0, "th2": 0.85, "cues": "a.pickle", "mirror": True, "cue_size": 41,
                      "mean": [4, 5, 6], "seed": None}
    assert isinstance(parsed["th1"], float)


def test_empty_param_str_gives_defaults():
    schema = {key: value for key, value in SCHEMA.items() if key != "cues"}
    assert parse_param_str("SoftmaxLayer", "", schema)["th2"] == 0.85
    assert parse_param_str("SoftmaxLayer", None, {}) == {}


def test_unknown_key_names_layer_key_and_allowed_keys():
    with pytest.raises(ValueError) as error:
        parse_param_str("DSRGLayer", "{'cues': 'x', 'th3': 0.5}", SCHEMA)
    message = str(error.value)
    assert "DSRGLayer" in message and "'th3'" in message
    assert "cue_size, cues, mean, mirror, seed, th1, th2" in message


@pytest.mark.parametrize("text, key", [
    ("{'cues': 'x', 'th1': 'high'}", "th1"),
    ("{'cues': 'x', 'mirror': 1}", "mirror"),
    ("{'cues': 'x', 'cue_size': True}", "cue_size"),
    ("{'cues': 'x', 'cue_size': 41.0}", "cue_size"),
    ("{'cues': 3}", "cues"),
])
def test_wrong_type_is_an_error(text, key):
    with pytest.raises(ValueError, match=rf"AnnotationLayer: param_str key '{key}' must be"):
        parse_param_str("AnnotationLayer", text, SCHEMA)


def test_missing_required_key():
    with pytest.raises(ValueError, match="AnnotationLayer: param_str key 'cues' is required"):
        parse_param_str("AnnotationLayer", "{'mirror': True}", SCHEMA)


@pytest.mark.parametrize("text", ["[1, 2]", "{'cues': 'x'", "cues: x", "__import__('os').getcwd()"])
def test_not_a_dict_literal(text):
    with pytest.raises(ValueError, match="AnnotationLayer: param_str"):
        parse_param_str("AnnotationLayer", text, SCHEMA)


def test_expressions_are_never_evaluated(tmp_path):
    marker = tmp_path / "marker"
    text = "{'cues': open(%r, 'w').name}" % str(marker)
    with pytest.raises(ValueError):
        parse_param_str("AnnotationLayer", text, SCHEMA)
    assert not marker.exists()
