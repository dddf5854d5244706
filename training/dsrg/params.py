"""Parsing of Caffe Python-layer ``param_str`` values: a Python dict literal, read with ast.literal_eval."""
import ast
import math

_REQUIRED = object()
REQUIRED = _REQUIRED
"""Use as a schema default to make a key mandatory."""


class Within:
    """A schema bound: every number of the value (the value itself, or each item of a tuple or list)
    lies in [low, high] (None: unbounded) and is finite; `count`, when given, is the number of items
    a tuple or list must have."""

    def __init__(self, low=None, high=None, count=None):
        self.low, self.high, self.count = low, high, count

    def describe(self):
        if self.low is not None and self.high is not None:
            text = f"in {self.low}..{self.high}"
        elif self.low is not None:
            text = f"at least {self.low}"
        elif self.high is not None:
            text = f"at most {self.high}"
        else:
            text = "finite"
        return f"{self.count} numbers, each {text}" if self.count is not None else text

    def problem(self, value):
        """None when `value` is within the bound, else the expected range as text."""
        if value is None:
            return None
        items = value if isinstance(value, (tuple, list)) else (value,)
        if isinstance(value, (tuple, list)) and self.count is not None and len(items) != self.count:
            return self.describe()
        for item in items:
            if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
                return self.describe()
            if (self.low is not None and item < self.low) or (self.high is not None and item > self.high):
                return self.describe()
        return None


def duplicate_key(text):
    """The first key a dict literal gives twice (ast.literal_eval keeps only the last), or None."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(node, ast.Dict):
        return None
    seen = set()
    for key in node.keys:
        if isinstance(key, ast.Constant):
            if key.value in seen:
                return key.value
            seen.add(key.value)
    return None


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

    `schema` maps key -> (type or tuple of types, default) or (types, default, :class:`Within`); a
    default of ``REQUIRED`` makes the key mandatory. Returns a dict with every schema key. An unknown
    key, a key given twice, a wrong type, a value outside its bound (non-finite floats included), a
    missing required key or a param_str that is not a dict literal is a ValueError naming the layer,
    the key, and the allowed keys or the expected and actual values.
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
        repeated = duplicate_key(text)
        if repeated is not None:
            raise ValueError(f"layer {layer_name}: param_str key {repeated!r} is given twice")
    else:
        given = {}
    parsed = {}
    for key, value in given.items():
        if key not in schema:
            raise ValueError(f"layer {layer_name}: unknown param_str key {key!r}; allowed keys: {allowed}")
        types, _, *bound = schema[key]
        types = types if isinstance(types, tuple) else (types,)
        parsed[key] = _coerce(layer_name, key, value, types)
        if float in types and isinstance(parsed[key], float) and not math.isfinite(parsed[key]):
            raise ValueError(f"layer {layer_name}: param_str key '{key}' must be a finite number, got {value!r}")
        expected = bound[0].problem(parsed[key]) if bound else None
        if expected is not None:
            raise ValueError(f"layer {layer_name}: param_str key '{key}' must be {expected}, got {value!r}")
    for key, (_, default, *_bound) in schema.items():
        if key not in parsed:
            if default is _REQUIRED:
                raise ValueError(f"layer {layer_name}: param_str key '{key}' is required; allowed keys: {allowed}")
            parsed[key] = default
    return parsed


def rank_seed(seed, rank):
    """The random seed that solver process `rank` (0-based) of a multi-GPU run (tools/train.py --gpus)
    uses for a layer whose param_str gives 'seed': seed + rank, so that the ranks draw distinct streams
    (mirroring, crops, shuffles) that a rerun reproduces, and rank 0 draws exactly what a one-process
    run draws. None (fresh entropy in every process) stays None. Caffe treats the solver's
    random_seed the same way (Solver::Init seeds random_seed + solver_rank)."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ValueError(f"a solver rank is a non-negative int, got {rank!r}")
    return None if seed is None else seed + rank
