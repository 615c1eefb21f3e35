"""Metrics on hand-made cases; every expected value is worked out by hand in the comment beside it."""

from __future__ import annotations

import math

import pytest

from llama3med.eval.metrics import (
    bleu1,
    exact_match,
    first_yes_no,
    llava_med_closed_hit,
    llava_med_normalize,
    llava_med_open_recall,
    score_answer,
    strict_closed_hit,
    token_f1,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes.", "yes"),  # period not before a digit dropped, lower-cased
        ("The left lung", "left lung"),  # article dropped
        ("left-sided", "left sided"),  # "-" not next to a space: replaced by a space
        ("left - sided", "left sided"),  # "-" next to a space: deleted -> "left  sided"
        ("x (y)", "x y"),  # " (" occurs: "(" deleted; ")" has no space beside it: replaced by a space
        ("1,000 (approx)", "1000 approx"),  # digit-comma-digit anywhere: every mark deleted
        ("Two lesions", "2 lesions"),  # number words -> digits
        ("None", "0"),  # "none" counts as zero
        ("3.5 cm.", "3.5 cm"),  # a period before a digit stays
        ("dont know", "don't know"),  # apostrophe-less contraction gets its apostrophe
        ("hepatitis a", "hepatitis"),  # articles vanish even inside names
        ("yes/no", "yes no"),
        ("  many   spaces  ", "many spaces"),
    ],
)
def test_normalisation_steps(text: str, expected: str) -> None:
    assert llava_med_normalize(text) == expected


def test_normalisation_removes_at_most_32_periods() -> None:
    # The reference passes re.UNICODE (32) as re.sub's count: the 33rd period survives.
    text = " ".join(["x."] * 33)
    assert llava_med_normalize(text) == " ".join(["x"] * 32 + ["x."])


@pytest.mark.parametrize(
    ("prediction", "answer", "expected"),
    [
        ("the left side", "left lung", 1 / 2),  # C={left,side}, R={left,lung}: tp=1, fn=1
        ("lung lung", "lung heart", 2 / 3),  # tp counts the prediction's repeats: tp=2, fn=1
        ("The lesion is in the left lung.", "left lung", 1.0),  # tp=2 (left, lung), fn=0
        ("Two", "2", 1.0),  # number word mapped
        ("heart", "lung", 0.0),  # tp=0
        ("", "lung", 0.0),  # empty prediction
    ],
)
def test_llava_med_open_recall(prediction: str, answer: str, expected: float) -> None:
    assert llava_med_open_recall(prediction, answer) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("prediction", "answer", "hit"),
    [
        ("Yes, it is.", "yes", True),
        ("no", "yes", False),
        ("yes", "no", False),
        ("normal", "no", True),  # quirk: "no" is a substring of "normal"
        ("not sure", "no", True),  # quirk: "not" contains "no"
        ("It is unknown", "no", True),  # quirk: "unknown" contains "no"
        ("yes and no", "yes", True),  # both words present: the answer is a substring
        ("the liver", "liver", False),  # option answer, but no "yes"/"no" substring in the prediction
        ("liver, not spleen", "liver", True),  # ... unless one happens to be there ("not")
        ("", "yes", False),
    ],
)
def test_llava_med_closed_hit_quirks(prediction: str, answer: str, hit: bool) -> None:
    assert llava_med_closed_hit(prediction, answer) is hit


@pytest.mark.parametrize(
    ("prediction", "answer", "hit"),
    [
        ("normal", "no", False),  # no whole word yes/no
        ("not sure", "no", False),
        ("No, there is no effusion.", "no", True),
        ("no, yes", "no", True),  # the first yes/no word decides
        ("no, yes", "yes", False),
        ("Yes.", "Yes", True),
        ("The liver", "liver", True),  # option answers: whole-word match
        ("livers", "liver", False),
        ("coronal plane", "Coronal Plane", True),
    ],
)
def test_strict_closed_hit(prediction: str, answer: str, hit: bool) -> None:
    assert strict_closed_hit(prediction, answer) is hit


def test_first_yes_no() -> None:
    assert first_yes_no("Not normal, no.") == "no"
    assert first_yes_no("nothing here") is None


def test_exact_match_after_normalisation() -> None:
    assert exact_match("The left lung.", "left lung")
    assert not exact_match("left lung", "lung")


def test_token_f1_uses_minimum_counts() -> None:
    assert token_f1("left lung lung", "left lung") == pytest.approx(0.8)  # overlap 2: P 2/3, R 1 -> 0.8
    assert token_f1("a lung", "lung heart") == pytest.approx(2 / 3)  # [lung] vs [lung, heart]: P 1, R 1/2
    assert token_f1("x", "y") == 0.0
    assert token_f1("", "y") == 0.0


def test_bleu1() -> None:
    assert bleu1("the left lung", "left lung") == pytest.approx(1.0)  # same tokens after normalisation
    assert bleu1("x", "x y") == pytest.approx(math.exp(-1))  # precision 1, brevity penalty exp(1 - 2/1)
    assert bleu1("lung heart", "lung") == pytest.approx(0.5)  # precision 1/2, no brevity penalty
    assert bleu1("", "lung") == 0.0
    assert bleu1("heart", "lung") == 0.0


def test_score_answer_by_type() -> None:
    open_scores = score_answer("the left side", "left lung", "OPEN")
    assert open_scores == {"llava_med_open_recall": 0.5, "open_exact_match": 0.0, "open_f1": 0.5, "bleu1": pytest.approx(0.5)}
    assert score_answer("normal", "no", "CLOSED") == {"llava_med_closed_accuracy": 1.0, "strict_closed_accuracy": 0.0}
    with pytest.raises(ValueError, match="answer_type must be"):
        score_answer("x", "y", "open-ended")
