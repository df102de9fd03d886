"""The prompt section of `kubik demo`: every example prompt analysed, planned and explained."""
from __future__ import annotations

import json

from kubik_core.params.demo import prompt_to_parameters
from kubik_core.prompting.examples import EXAMPLE_PROMPTS


def test_each_example_prompt_gets_a_plan_and_an_explanation(tmp_path):
    markdown = prompt_to_parameters(tmp_path)
    records = json.loads((tmp_path / "prompt_to_parameters.json").read_text())
    assert [r["prompt"] for r in records] == [prompt for *_, prompt in EXAMPLE_PROMPTS]
    for (dialect, family, _priority, prompt), record in zip(EXAMPLE_PROMPTS, records):
        assert record["dialect"] == dialect and record["plan"]["steps"] > 0
        assert f"### {records.index(record) + 1}. `{prompt}`" in markdown
    table_rows = [line for line in markdown.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(table_rows) == len(EXAMPLE_PROMPTS)
    assert "flux" in records[3]["plan"]["family"] and "sd35" in records[4]["plan"]["family"]
