"""Hostile wildcard folders, files and dynamic prompts, on real temporary folders and symlinks.

The wildcards folder a node is given must stay inside the wildcard roots, a wildcard name must
stay inside its folder, and no dynamic prompt (self-inclusion, mutual inclusion, fan-out, deep
nesting, huge counts and weights) may run long: each case ends in one clear error or a result.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from kubik_core.prompting import WildcardError, expand_dynamic, folder_within_roots
from kubik_core.prompting import wildcards as wildcard_files

NODE_DEFAULTS = dict(dialect="comfyui", seed=0, use_ollama=False,
                     ollama_url="http://127.0.0.1:11434", ollama_model="llama3.2",
                     ollama_timeout=10.0)
ROOTS_HINT = ("ComfyUI's models/wildcards, ComfyUI/wildcards, the ComfyUI user directory, or a "
              "folder listed in the KUBIK_WILDCARDS_DIRS environment variable")
OUTSIDE = (f"the wildcards folder must lie inside {ROOTS_HINT} (give its name relative to one of "
           "them; links leading elsewhere are not followed)")


@pytest.fixture
def disk(tmp_path: Path) -> dict[str, Path]:
    """A wildcard root with a folder of wildcards, and a secret folder beside it."""
    root = tmp_path / "root"
    mine = root / "mine"
    secret = tmp_path / "secret"
    for folder in (mine, secret):
        folder.mkdir(parents=True)
    (secret / "passwd.txt").write_text("SECRET-LINE\n", encoding="utf-8")
    (mine / "hat.txt").write_text("beret\nfedora\n", encoding="utf-8")
    (root / "escape").symlink_to(secret, target_is_directory=True)   # a folder leading out
    (mine / "leak.txt").symlink_to(secret / "passwd.txt")            # a file leading out
    (mine / "sub").symlink_to(secret, target_is_directory=True)      # a sub-folder leading out
    return {"tmp": tmp_path, "root": root, "mine": mine, "secret": secret}


# ---------------------------------------------------------------- the folder stays in the roots
def test_folder_inside_a_root_by_name_or_absolute_path(disk):
    assert folder_within_roots("mine", [str(disk["root"])]) == disk["mine"]
    assert folder_within_roots(f" {disk['mine']} ", [str(disk["root"])]) == disk["mine"]
    assert folder_within_roots(str(disk["root"]), [str(disk["root"])]) == disk["root"]


def test_a_root_that_is_itself_a_link_is_followed(disk):
    link = disk["tmp"] / "root-link"
    link.symlink_to(disk["root"], target_is_directory=True)
    assert folder_within_roots("mine", [str(link)]) == disk["mine"]


@pytest.mark.parametrize("folder", [
    "escape", "../secret", "mine/../../secret", "/", "/etc", "SECRET_ABS", "SECRET_ABS/../root/../secret",
    "/nonexistent/wildcards", "../nonexistent",
])
def test_folder_outside_the_roots_is_refused_alike_whether_it_exists_or_not(disk, folder):
    folder = folder.replace("SECRET_ABS", str(disk["secret"]))
    with pytest.raises(WildcardError) as caught:
        folder_within_roots(folder, [str(disk["root"])])
    assert str(caught.value) == OUTSIDE
    assert str(disk["tmp"]) not in str(caught.value)


def test_missing_folder_inside_a_root_is_named_without_the_server_path(disk):
    with pytest.raises(WildcardError) as caught:
        folder_within_roots("nothere", [str(disk["root"])])
    assert str(caught.value) == f"the wildcards folder 'nothere' does not exist; create it inside {ROOTS_HINT}"


@pytest.mark.parametrize("folder", ["mine\x00", "mi\nne", "\x1b[31mmine"])
def test_folder_names_with_control_characters_are_refused(disk, folder):
    with pytest.raises(WildcardError, match="^the wildcards folder name holds control characters"):
        folder_within_roots(folder, [str(disk["root"])])


def test_without_roots_nothing_can_be_read():
    with pytest.raises(WildcardError) as caught:
        folder_within_roots("anything", ["", "  "])
    assert str(caught.value) == f"no wildcard folders are set up here: put the files in {ROOTS_HINT}"


def test_node_cannot_read_a_file_outside_the_wildcard_roots(run_node, disk, monkeypatch):
    """wildcards_folder '/' and __etc/passwd__ read /etc/passwd before."""
    monkeypatch.setenv("KUBIK_WILDCARDS_DIRS", str(disk["root"]))
    for folder, prompt in (("/", "__etc/passwd__"), (str(disk["secret"]), "__passwd__"),
                           ("escape", "__passwd__"), ("..", "__secret/passwd__")):
        with pytest.raises(ValueError) as caught:
            run_node("KubikPromptAnalyzer", prompt=prompt, wildcards_folder=folder, **NODE_DEFAULTS)
        assert str(caught.value) == f"wildcards_folder: {OUTSIDE}"
    positive = run_node("KubikPromptAnalyzer", prompt="a __hat__", wildcards_folder="mine",
                        **NODE_DEFAULTS)[1]
    assert positive in ("a beret", "a fedora")


def test_node_roots_inside_comfyui(run_node, tmp_path, monkeypatch):
    """Inside ComfyUI the roots are models/wildcards, ComfyUI/wildcards and the user directory."""
    import sys
    import types

    for folder in ("models/wildcards/a", "wildcards/b", "user/c", "custom_nodes"):
        (tmp_path / folder).mkdir(parents=True)
    for folder in ("models/wildcards/a", "wildcards/b", "user/c", "custom_nodes"):
        (tmp_path / folder / "w.txt").write_text(folder + "\n", encoding="utf-8")
    stand_in = types.ModuleType("folder_paths")
    stand_in.base_path, stand_in.models_dir = str(tmp_path), str(tmp_path / "models")
    stand_in.get_user_directory = lambda: str(tmp_path / "user")
    monkeypatch.setitem(sys.modules, "folder_paths", stand_in)
    monkeypatch.delenv("KUBIK_WILDCARDS_DIRS", raising=False)
    for name, expected in (("a", "models/wildcards/a"), ("b", "wildcards/b"), ("c", "user/c")):
        assert run_node("KubikPromptAnalyzer", prompt="__w__", wildcards_folder=name,
                        **NODE_DEFAULTS)[1] == expected
    with pytest.raises(ValueError, match="^wildcards_folder: the wildcards folder must lie inside"):
        run_node("KubikPromptAnalyzer", prompt="__w__",
                 wildcards_folder=str(tmp_path / "custom_nodes"), **NODE_DEFAULTS)


# ---------------------------------------------------------------- names stay in the folder
@pytest.mark.parametrize("name", [
    "leak", "sub/passwd", "../secret/passwd", "../../secret/passwd", "..\\..\\secret\\passwd",
    "/etc/passwd", "//etc/passwd", "mine/../../secret/passwd",
])
def test_wildcard_names_cannot_leave_the_folder(disk, name):
    with pytest.raises(WildcardError) as caught:
        expand_dynamic(f"a __{name}__", 0, disk["mine"])
    assert str(caught.value) == f"wildcard __{name}__ points outside the wildcards folder"
    assert "SECRET" not in str(caught.value) and str(disk["tmp"]) not in str(caught.value)


def test_a_nul_byte_ends_no_wildcard_name(disk):
    assert expand_dynamic("a __ha\x00t__", 0, disk["mine"]) == "a __ha\x00t__"


@pytest.mark.parametrize("setup,name,message", [
    (lambda d: os.mkfifo(d / "fifo.txt"), "fifo",
     "wildcard __fifo__ is not a file (fifo.txt is something else)"),
    (lambda d: (d / "dir.txt").mkdir(), "dir", "wildcard __dir__ is not a file (dir.txt is something else)"),
    (lambda d: (d / "big.txt").write_bytes(b"x\n" * 600_000), "big",
     "wildcard file big.txt has 1200000 bytes; the limit is 1048576 (split it into smaller files)"),
    (lambda d: (d / "empty.txt").write_text("# only\n\n   \n"), "empty",
     "wildcard file empty.txt has no options (only blank or # lines)"),
    (lambda d: None, "nope", "wildcard __nope__ not found: no file nope.txt in the wildcards folder"),
    (lambda d: None, "x" * 201, f"wildcard __{'x' * 57}...__ has a name longer than 200 characters"),
    (lambda d: (d / "loop.txt").symlink_to(d / "loop.txt"), "loop",
     "wildcard __loop__ cannot be read (Too many levels of symbolic links)"),
])
@pytest.mark.timeout(20)
def test_unreadable_wildcard_files_give_one_clear_error(disk, setup, name, message):
    setup(disk["mine"])
    with pytest.raises(WildcardError) as caught:
        expand_dynamic(f"__{name}__", 0, disk["mine"])
    assert str(caught.value) == message


def test_a_missing_wildcards_folder_is_named(tmp_path):
    with pytest.raises(WildcardError) as caught:
        expand_dynamic("__hat__", 0, tmp_path / "gone")
    assert str(caught.value) == "wildcard __hat__ used, but the wildcards folder does not exist"


def test_undecodable_bytes_become_replacement_characters(disk):
    (disk["mine"] / "bytes.txt").write_bytes(b"caf\xe9 \xff\n")
    assert expand_dynamic("__bytes__", 0, disk["mine"]) == "caf\ufffd \ufffd"


def test_the_file_cache_is_bounded_and_sees_changes(disk):
    for index in range(wildcard_files.MAX_CACHED_FILES + 30):
        (disk["mine"] / f"w{index}.txt").write_text(f"option{index}\n", encoding="utf-8")
        assert expand_dynamic(f"__w{index}__", 0, disk["mine"]) == f"option{index}"
    assert len(wildcard_files._cache) <= wildcard_files.MAX_CACHED_FILES
    (disk["mine"] / "w0.txt").write_text("changed and longer\n", encoding="utf-8")
    assert expand_dynamic("__w0__", 0, disk["mine"]) == "changed and longer"


# ---------------------------------------------------------------- recursion and fan-out
DEPTH = ("dynamic prompt nested deeper than 16 levels ({ } inside { }, or wildcards inside "
         "wildcards: does one include itself?)")
CHOICES = "dynamic prompt makes more than 10,000 choices (wildcards that include each other many times?)"
WORK = ("dynamic prompt too large to expand: it reads more than 10,000,000 characters (a "
        "wildcard that includes itself many times, or {N$$...} over a huge list?)")


@pytest.fixture
def recursive(tmp_path: Path) -> Path:
    files = {"self": "again __self__", "ping": "__pong__", "pong": "__ping__",
             "twice": "{2$$__twice__|__twice__|x}", "leaf": "{|}"}
    for level in range(1, 13):  # 4^12 expansions of an empty leaf: exponential, no output
        files[f"fan{level}"] = f"__fan{level + 1}__" * 4
    files["fan13"] = "__leaf__"
    for name, line in files.items():
        (tmp_path / f"{name}.txt").write_text(line + "\n", encoding="utf-8")
    return tmp_path


@pytest.mark.timeout(20)
@pytest.mark.parametrize("prompt,message", [
    ("__self__", DEPTH), ("__ping__", DEPTH), ("__twice__", DEPTH), ("__fan1__", CHOICES),
    ("{" * 10_000 + "a" + "}" * 10_000, DEPTH), ("{a|" * 10_000 + "b" + "}" * 10_000, None),
    ("{99999$$" + "a|" * 50_000 + "}", WORK), ("{a|b}" * 20_000, CHOICES),
])
def test_recursion_and_fan_out_end_in_a_clear_error(recursive, prompt, message):
    if message is None:  # nested 10,000 deep: fine until a choice goes deeper than 16 levels
        outcomes = set()
        for seed in range(40):
            try:
                outcomes.add(expand_dynamic(prompt, seed, recursive))
            except WildcardError as exc:
                assert str(exc) == DEPTH
                outcomes.add("deep")
        assert outcomes <= {"a", "deep"} and "a" in outcomes
        return
    with pytest.raises(WildcardError) as caught:
        expand_dynamic(prompt, 0, recursive)
    assert str(caught.value) == message


def test_interrupt_is_checked_while_expanding(recursive):
    class Cancelled(Exception):
        pass

    calls = []

    def cancel_on_fifth():
        calls.append(1)
        if len(calls) == 5:
            raise Cancelled

    with pytest.raises(Cancelled):
        expand_dynamic("__fan1__", 0, recursive, cancel_on_fifth)
    assert len(calls) == 5


# ---------------------------------------------------------------- counts and weights
@pytest.mark.parametrize("prompt,expected", [
    ("{999999999$$a|b}", {"a, b", "b, a"}),
    ("{1-999999999$$a|b}", {"a", "b", "a, b", "b, a"}),
    ("{" + "9" * 5000 + "$$a|b}", {"a, b", "b, a"}),
    ("{" + "9" * 5000 + "-" + "9" * 5000 + "$$a|b}", {"a, b", "b, a"}),
    ("{0$$a|b}", {""}),
    ("{1e400::a|b}", {"1e400::a", "b"}),            # not a weight: the option is text
    ("{" + "9" * 400 + "::a|0::b}", {"a"}),          # a weight of 1e400 is read as 1e9
    ("{" + "9" * 400 + "::a|" + "9" * 400 + "::b}", {"a", "b"}),
])
def test_huge_counts_and_weights_are_bounded(prompt, expected):
    assert {expand_dynamic(prompt, seed) for seed in range(30)} <= expected


def test_counts_past_a_billion_keep_their_seed_stable():
    assert expand_dynamic("{1-" + "9" * 30 + "$$a|b|c}", 11) == \
        expand_dynamic("{1-1000000000$$a|b|c}", 11)


# ---------------------------------------------------------------- linear scanning (no hang)
@pytest.mark.timeout(10)
@pytest.mark.parametrize("prompt", [
    "__x " + "{_" * 100_000,               # one wildcard search per brace: 22 s before
    "{" * 400_000 + "__x",                 # about a minute before
    "{" * 200_000 + "a {b|b} c",
    "__" + "_a" * 100_000,
    "{" + "|" * 200_000 + "}",
])
def test_expansion_scans_huge_prompts_once(prompt, tmp_path):
    result = expand_dynamic(prompt, 3, tmp_path)
    assert isinstance(result, str) and len(result) <= len(prompt)
