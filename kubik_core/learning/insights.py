"""Statistics for ``kubik insights``: what the store has learned, in numbers.

* best LoRAs per style: ranked by the Wilson lower bound of their share of good ratings (>= 4),
  so a LoRA rated 5 once does not beat one rated 4-5 thirty times;
* acceptance of suggestions: the share of generations whose suggested sampling parameters were
  kept unchanged, and the share of applied LoRAs that the recommender had picked;
* ratings per family and the learned parameter values: for each, the value AUTO uses (after
  the family's bounds), what you chose, from how many edits, and when you last made one.
"""
from __future__ import annotations

import time
from typing import Any

from ..params import ParamsError, optimize
from ..params.optimizer import LEARNED_SOURCE
from .adjust import learned_details
from .scores import GOOD_RATING, wilson_lower_bound
from .store import LearningStore


def insights(store: LearningStore, top: int = 5) -> dict[str, Any]:
    """A JSON-ready summary (the documented ``kubik insights --json`` output)."""
    generations = store.rows("generations")
    feedback = store.rows("feedback")
    loras = store.rows("generation_loras")
    by_gen = {g["id"]: g for g in generations}
    ratings_by_gen: dict[str, list[int]] = {}
    for row in feedback:
        ratings_by_gen.setdefault(row["generation_id"], []).append(int(row["rating"]))

    per_style: dict[str, dict[str, list[int]]] = {}
    for row in loras:
        gen = by_gen.get(row["generation_id"])
        for rating in ratings_by_gen.get(row["generation_id"], []):
            style = (gen or {}).get("style") or "unknown"
            per_style.setdefault(style, {}).setdefault(row["lora"], []).append(rating)
    best = {}
    for style, table in sorted(per_style.items()):
        ranked = []
        for lora, ratings in table.items():
            good = sum(1 for r in ratings if r >= GOOD_RATING)
            ranked.append({"lora": lora, "ratings": len(ratings),
                           "mean_rating": round(sum(ratings) / len(ratings), 2),
                           "wilson": round(wilson_lower_bound(good, len(ratings)), 3)})
        ranked.sort(key=lambda r: (-r["wilson"], -r["ratings"], r["lora"]))
        best[style] = ranked[:top]

    with_params = [g for g in generations if g.get("params") not in (None, "", "{}")]
    kept = sum(1 for g in with_params if not g.get("edited"))
    suggested = sum(1 for row in loras if row.get("suggested"))
    families: dict[str, dict[str, Any]] = {}
    for row in store.rows("edits"):     # a family may have edits before any recorded image
        if row.get("family"):
            families.setdefault(row["family"], {"generations": 0, "ratings": 0, "rating_sum": 0})
    for gen in generations:
        fam = gen.get("family") or "unknown"
        stats = families.setdefault(fam, {"generations": 0, "ratings": 0, "rating_sum": 0})
        stats["generations"] += 1
        for rating in ratings_by_gen.get(gen["id"], []):
            stats["ratings"] += 1
            stats["rating_sum"] += rating
    for fam, stats in families.items():
        total = stats.pop("rating_sum")
        stats["mean_rating"] = round(total / stats["ratings"], 2) if stats["ratings"] else None
        stats["learned_details"] = _learned(store, fam) if fam != "unknown" else []
        stats["learned"] = {item["field"]: item["value"] for item in stats["learned_details"]}
    return {
        "store": store.describe(),
        "generations": len(generations),
        "feedback": len(feedback),
        "edits": store.count("edits"),
        "parameter_acceptance": round(kept / len(with_params), 3) if with_params else None,
        "lora_suggestion_share": round(suggested / len(loras), 3) if loras else None,
        "best_loras_by_style": best,
        "families": dict(sorted(families.items())),
    }


def _learned(store: LearningStore, family: str) -> list[dict[str, Any]]:
    """The learned values of ``family`` (all styles) as AUTO applies them to a plain prompt."""
    details = learned_details(store, family)
    if not details:
        return []
    try:
        plan = optimize(None, family, learned=details, device="h100_80gb")
    except ParamsError:    # a family id this version does not know: the values as learned
        plan = None
    used = {d.field: d for d in plan.decisions if d.source == LEARNED_SOURCE} if plan is not None else {}
    rows = []
    for name, item in sorted(details.items()):
        decision = used.get(name)
        if decision is not None:
            value, reason = decision.value, decision.reason
        else:   # a value AUTO cannot use (e.g. a sampler this version does not know)
            value = item.value
            reason = next((n for n in (plan.notes if plan is not None else []) if f": {name}: " in n),
                          "not used by AUTO")
        rows.append({"field": name, "value": value, "wanted": item.wanted, "edits": item.edits,
                     "last_edit": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(item.last_edit)),
                     "reason": reason})
    return rows


def format_insights(data: dict[str, Any]) -> str:
    lines = [f"Learning store: {data['store']}",
             f"{data['generations']} generations, {data['feedback']} ratings, {data['edits']} edits"]
    if data["parameter_acceptance"] is not None:
        lines.append(f"Suggested parameters kept unchanged: {data['parameter_acceptance']:.0%}")
    if data["lora_suggestion_share"] is not None:
        lines.append(f"Applied LoRAs picked by the recommender: {data['lora_suggestion_share']:.0%}")
    for style, ranked in data["best_loras_by_style"].items():
        lines.append(f"Best LoRAs for {style}:")
        for r in ranked:
            lines.append(f"  {r['lora']}: mean {r['mean_rating']} over {r['ratings']} ratings "
                         f"(Wilson {r['wilson']:.2f})")
    for fam, stats in data["families"].items():
        mean = "-" if stats["mean_rating"] is None else stats["mean_rating"]
        learned = "" if stats["learned_details"] else ", learned: nothing yet"
        lines.append(f"{fam}: {stats['generations']} generations, mean rating {mean}{learned}")
        for item in stats["learned_details"]:
            lines.append(f"  learned {item['field']} = {item['value']} from {item['edits']} edits, "
                         f"last {item['last_edit']}: {item['reason']}")
        if stats["learned_details"]:
            lines.append(f"  (forget these: kubik insights --reset {fam})")
    return "\n".join(lines)
