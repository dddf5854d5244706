"""Parsing of Caffe Python-layer ``param_str`` values: a Python dict literal, read with ast.literal_eval."""
import ast

_REQUIRED = object()
REQUIRED = _REQUIRED
"""Use as a schema default to make a key mandatory."""


def _type_names(types):
    return " or ".join(kind.__name__ for kind in types)


def _coerce(layer_name, key, value, types):
    """Accept `value` if it is an instance of one of `types`; ints are accepted where float is allowed."""
    if isinstance(value, bool) and bool not in types:
        raise ValueError(f"layer {layer_name}: param_str key '{key}' must be {_type_names(types)}, "
                         f"got bool {value!r}")
    if isinstance(value, types):
        return value
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"layer {layer_name}: param_str key '{key}' must be {_type_names(types)}, "
                     f"got {type(value).__name__} {value!r}")


def parse_param_str(layer_name, param_str, schema):
    """Parse `param_str` (a dict literal, empty for none) against `schema`.

    `schema` maps key -> (type or tuple of types, default); a default of ``REQUIRED`` makes the key
    mandatory. Returns a dict with every schema key. An unknown key, a wrong type, a missing required
    key or a param_str that is not a dict literal is a ValueError naming the layer, the key and the
    allowed keys.
    """
    allowed = ", ".join(sorted(schema)) or "(none)"
    text = (param_str or "").strip()
    if text:
        try:
            given = ast.literal_eval(text)
        except (ValueError, SyntaxError) as error:
            raise ValueError(f"layer {layer_name}: param_str {param_str!r} is not a Python dict literal "
                             f"({error}); allowed keys: {allowed}") from error
        if not isinstance(given, dict):
            raise ValueError(f"layer {layer_name}: param_str must be a dict literal, got "
                             f"{type(given).__name__}; allowed keys: {allowed}")
    else:
        given = {}
    parsed = {}
    for key, value in given.items():
        if key not in schema:
            raise ValueError(f"layer {layer_name}: unknown param_str key {key!r}; allowed keys: {allowed}")
        types, _ = schema[key]
        types = types if isinstance(types, tuple) else (types,)
        parsed[key] = _coerce(layer_name, key, value, types)
    for key, (_, default) in schema.items():
        if key not in parsed:
            if default is _REQUIRED:
                raise ValueError(f"layer {layer_name}: param_str key '{key}' is required; allowed keys: {allowed}")
            parsed[key] = default
    return parsed
