"""Dynamic prompts: reproducible from the seed, wildcard files, and the refusals."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from kubik_core.prompting import WildcardError, expand_dynamic


@pytest.fixture
def wildcards(tmp_path: Path) -> Path:
    (tmp_path / "color.txt").write_text("# colours\nred\n\nblue\n  green  \n", encoding="utf-8")
    (tmp_path / "animals").mkdir()
    (tmp_path / "animals" / "pet.txt").write_text("cat\ndog\n{tiny|huge} __color__ hamster\n",
                                                  encoding="utf-8")
    (tmp_path / "loop.txt").write_text("again __loop__\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("# nothing\n\n", encoding="utf-8")
    return tmp_path


def test_same_seed_same_text_and_seeds_differ(wildcards):
    text = "a {big|small|{tiny|huge}} __animals/pet__ on a {2$$red|green|blue|white} rug"
    first = [expand_dynamic(text, seed, wildcards) for seed in range(40)]
    assert first == [expand_dynamic(text, seed, wildcards) for seed in range(40)]
    assert len(set(first)) > 10
    assert all("{" not in t and "__" not in t for t in first)


def test_choices_are_pinned_to_random_random_of_the_seed():
    # The documented algorithm: one Random(seed), one random() draw per pick, left to right.
    rng = random.Random(7)
    first = ["a", "b", "c"][int(rng.random() * 3)]
    second = ["x", "y"][int(rng.random() * 2)]
    assert expand_dynamic("{a|b|c} {x|y}", 7) == f"{first} {second}"


def test_pick_n_distinct_with_joiner_and_range():
    for seed in range(30):
        two = expand_dynamic("{2$$a|b|c}", seed).split(", ")
        assert len(two) == 2 and len(set(two)) == 2 and set(two) <= {"a", "b", "c"}
        joined = expand_dynamic("{2$$ and $$x|y}", seed)
        assert joined in ("x and y", "y and x")
        some = expand_dynamic("{1-3$$a|b|c|d}", seed).split(", ")
        assert 1 <= len(some) <= 3
    assert expand_dynamic("{5$$a|b}", 0) in ("a, b", "b, a")  # capped at the options there are


def test_weighted_options():
    picks = [expand_dynamic("{0::never|1::always}", seed) for seed in range(50)]
    assert set(picks) == {"always"}
    biased = [expand_dynamic("{9::x|1::y}", seed) for seed in range(300)]
    assert biased.count("x") > 200


def test_wildcard_lines_skip_comments_and_blank_lines(wildcards):
    seen = {expand_dynamic("__color__", seed, wildcards) for seed in range(60)}
    assert seen == {"red", "blue", "green"}


def test_text_without_dynamic_syntax_is_returned_unchanged():
    text = "a (cat:1.2), score_9, a_b_c"
    assert expand_dynamic(text, 3) is text or expand_dynamic(text, 3) == text


def test_unclosed_brace_stays_literal():
    assert expand_dynamic("a {b|c", 1) == "a {b|c"


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "animals/../../x"])
def test_wildcard_escaping_the_folder_is_refused(wildcards, name):
    with pytest.raises(WildcardError, match="outside the wildcards folder"):
        expand_dynamic(f"a __{name}__", 0, wildcards)


def test_missing_wildcard_and_missing_folder_name_the_problem(wildcards):
    with pytest.raises(WildcardError, match="__nope__ not found"):
        expand_dynamic("__nope__", 0, wildcards)
    with pytest.raises(WildcardError, match="no wildcards folder"):
        expand_dynamic("__color__", 0, None)
    with pytest.raises(WildcardError, match="no options"):
        expand_dynamic("__empty__", 0, wildcards)


def test_self_referencing_wildcard_hits_the_recursion_limit(wildcards):
    with pytest.raises(WildcardError, match="nested deeper"):
        expand_dynamic("__loop__", 0, wildcards)


def test_many_unclosed_braces_stay_literal_in_linear_time():
    text = "{" * 50_000 + "a {b|b} c"
    assert expand_dynamic(text, 0) == "{" * 50_000 + "a b c"
