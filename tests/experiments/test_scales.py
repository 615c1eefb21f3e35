"""The scales experiment's arms (one token budget), its intervals over seeds and its tables."""

from __future__ import annotations

import json
import math

import pytest

from llama3med.experiments.scales import (
    ARMS,
    ArmSummary,
    markdown_table,
    question_type_scores,
    scores_of,
    summary_json,
)


def test_confidence_interval_is_student_t_over_seeds() -> None:
    summary = ArmSummary("hierarchical", [0, 1, 2], {"closed accuracy (strict)": [50.0, 60.0, 70.0]})
    mean, half = summary.interval("closed accuracy (strict)")
    assert mean == 60.0
    assert half == pytest.approx(4.303 * 10.0 / math.sqrt(3))
    assert math.isnan(ArmSummary("x", [0], {"m": [1.0]}).interval("m")[1])


def test_arms_share_the_token_budget_and_table_lists_every_arm() -> None:
    from llama3med.model.presets import build_preset

    grids = set()
    for overrides in ARMS.values():
        model, _ = build_preset("tiny", **{**overrides, "scales": [s // 7 for s in overrides["scales"]],
                                           **({"tile_size": overrides["tile_size"] // 7} if "tile_size" in overrides else {})})
        grids.add(model.config.num_image_tokens)
    assert len(grids) == 1
    metrics = ("closed accuracy (LLaVA-Med)", "closed accuracy (strict)", "open recall (LLaVA-Med)", "open exact match")
    table = markdown_table([ArmSummary(arm, [0, 1], {m: [10.0, 20.0] for m in metrics}) for arm in ARMS])
    assert all(f"| {arm} | 2 |" in table for arm in ARMS)
    assert "15.0 ± 63.5" in table  # 12.706 * 7.07 / sqrt(2)
    by_type = markdown_table([ArmSummary("single-224", [0, 1, 2], {}, {"PRES": [50.0, 50.0, 50.0], "COUNT": [0.0, 10.0, 20.0]})],
                             by_question_type=True)
    assert by_type.splitlines()[0] == "| arm | seeds | COUNT | PRES |"
    assert by_type.splitlines()[2] == f"| single-224 | 3 | 10.0 ± {4.303 * 10 / math.sqrt(3):.1f} | 50.0 ± 0.0 |"


def test_scores_come_from_the_report_of_the_one_data_set() -> None:
    report = {"benchmarks": {"probe/test": {
        "llava_med": {"closed_accuracy": 75.0, "open_recall": 40.0},
        "strict": {"closed_accuracy": 70.0, "open_exact_match": 30.0},
        "breakdowns": {"question_type": {
            "PRES": {"closed": True, "strict_closed_accuracy": 70.0, "open_exact_match": None},
            "COUNT": {"closed": False, "strict_closed_accuracy": None, "open_exact_match": 30.0},
        }},
    }}}
    assert scores_of(report) == {"closed accuracy (LLaVA-Med)": 75.0, "closed accuracy (strict)": 70.0,
                                 "open recall (LLaVA-Med)": 40.0, "open exact match": 30.0}
    assert question_type_scores(report) == {"COUNT": 30.0, "PRES": 70.0}


def test_a_presence_only_evaluation_has_no_open_scores_and_the_table_says_so() -> None:
    report = {"benchmarks": {"probe/test": {
        "llava_med": {"closed_accuracy": 90.0, "open_recall": None},
        "strict": {"closed_accuracy": 90.0, "open_exact_match": None, "open_f1": None},
        "breakdowns": {"question_type": {"PRES": {"closed": True, "strict_closed_accuracy": 90.0}}},
    }}}
    scores = scores_of(report)
    assert scores["closed accuracy (strict)"] == 90.0 and math.isnan(scores["open exact match"])
    summary = ArmSummary("hierarchical", [0, 1], {name: [value, value] for name, value in scores.items()})
    row = markdown_table([summary]).splitlines()[2]
    assert row.startswith("| hierarchical | 2 | ") and row.count("| – |") + row.endswith("| – |") >= 2
    # summary.json stays strict JSON (no NaN token): a metric with nothing to score is null
    written = json.loads(summary_json([summary]), parse_constant=lambda token: pytest.fail(f"{token} in summary.json"))
    assert written[0]["scores"]["open exact match"] == [None, None] and written[0]["scores"]["closed accuracy (strict)"] == [90.0, 90.0]
