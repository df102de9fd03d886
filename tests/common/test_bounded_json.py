"""bounded_json refuses hostile JSON with one clear ValueError and parses ordinary JSON as json does."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from kubik_core.common.bounded_json import BoundedJSONError, loads, nesting_depth


def test_ordinary_json_parses_like_the_standard_library():
    text = '{"a": [1, 2.5, {"b": "x[y]{z}"}], "c": null, "d": true, "e": -3e2}'
    assert loads(text) == json.loads(text)
    assert loads(text.encode()) == json.loads(text)


@pytest.mark.parametrize("text, words", [
    ("[" * 1000 + "]" * 1000, "nested 1000 levels deep"),
    ("{\"a\":" * 100 + "1" + "}" * 100, "nested 100 levels deep"),
    ("[1e999]", "out of range"),
    ("[-1e400]", "out of range"),
    ("[NaN]", "NaN is not a JSON number"),
    ("[Infinity]", "Infinity is not a JSON number"),
    ("[" + "9" * 5000 + "]", "digits (too large)"),
    ("[18446744073709551617]", "too large (limit 2^64)"),
    ("{\"a\": ", "not valid JSON"),
    (b"\xff\xfe", "not valid UTF-8"),
])
def test_hostile_json_is_one_clear_error(text, words):
    with pytest.raises(BoundedJSONError, match=words.replace("(", r"\(").replace(")", r"\)").replace("^", r"\^")):
        loads(text)


def test_size_limit_applies_before_parsing():
    with pytest.raises(BoundedJSONError, match="too large"):
        loads("[" + "1," * 100 + "1]", max_bytes=50)


def test_brackets_inside_strings_do_not_count_as_depth():
    assert nesting_depth('["' + "[" * 500 + '"]') == 1
    assert loads('["' + "[" * 500 + '"]') == ["[" * 500]


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.text(alphabet='[]{}",:0123456789.eE-+ aNI\\ntrufl', max_size=200))
def test_any_text_parses_or_is_refused_cleanly(text):
    try:
        loads(text)
    except BoundedJSONError:
        pass
