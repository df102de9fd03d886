"""`kubik insights --reset FAMILY` with hostile family names: one clear line and exit 2, nothing
removed; only an exact family with edits is reset, and only its edits."""
from __future__ import annotations

import pytest

from kubik_core.cli import main
from kubik_core.learning import LearningStore


@pytest.fixture
def store(tmp_path):
    store = LearningStore(tmp_path / "learning.sqlite3")
    for _ in range(3):
        store.record_edits("sd15", "", {"steps": 25}, {"steps": 30})
        store.record_edits("sdxl", "anime", {"cfg": 7.0}, {"cfg": 6.0})
    return store


@pytest.mark.parametrize("family,shown", [
    ("", "''"),
    ("SD15", "'SD15'"),                                   # family ids are exact
    ("sd15 ", "'sd15 '"),
    ("%", "'%'"),                                         # no LIKE pattern
    ("sd15' OR '1'='1", "\"sd15' OR '1'='1\""),
    ("../../etc/passwd", "'../../etc/passwd'"),
    ("x\nkubik insights: done", "'x\\nkubik insights: done'"),
    ("a" * 5000, repr("a" * 80)),
])
def test_a_family_without_edits_is_refused_in_one_line(store, capsys, family, shown):
    assert main(["insights", "--store", str(store.path), "--reset", family]) == 2
    err = capsys.readouterr().err
    assert err == (f"kubik insights: error: --reset: no edits for family {shown} in {store.describe()}; "
                   "families with learned values or edits: sd15, sdxl\n")
    assert store.count("edits") == 6


def test_only_the_named_family_is_reset(store, capsys):
    assert main(["insights", "--store", str(store.path), "--reset", "sdxl"]) == 0
    assert "removed 3 edits" in capsys.readouterr().out
    assert {row["family"] for row in store.rows("edits")} == {"sd15"}
