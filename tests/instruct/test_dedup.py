"""Exact and near-duplicate detection (`llama3med.instruct.dedup`): tokens, shingles, Jaccard, both scopes."""

from __future__ import annotations

import pytest

from llama3med.instruct.dedup import DuplicateIndex, conversation_text, jaccard, normalised_tokens, shingles
from llama3med.instruct.prompting import DedupSettings
from llama3med.instruct.validate import Rejection


def test_shingles_and_jaccard():
    tokens = normalised_tokens("<image>\nThe Liver, the LIVER!")
    assert tokens == ["the", "liver", "the", "liver"]
    assert shingles(tokens, 3) == frozenset({"the liver the", "liver the liver"})
    assert shingles(["one"], 3) == frozenset({"one"})
    assert jaccard(frozenset("ab"), frozenset("bc")) == pytest.approx(1 / 3)


LONG = (
    "The axial CT image of the abdomen shows a well defined hypodense lesion in segment seven of the liver "
    "with peripheral nodular enhancement that fills in on delayed images, typical of a hemangioma."
)


def test_global_dedup_exact_near_and_distinct():
    index = DuplicateIndex({"conversation": DedupSettings("global", 3, 0.8)})
    index.check_and_add("conversation", "a", "img1", LONG)
    with pytest.raises(Rejection, match="exact_duplicate: same text as a"):
        index.check_and_add("conversation", "b", "img2", LONG.upper() + " !")
    near = LONG.replace("typical of a hemangioma.", "typical of a liver hemangioma.")
    with pytest.raises(Rejection) as raised:
        index.check_and_add("conversation", "c", "img3", near)
    assert raised.value.reason == "near_duplicate" and "with a" in raised.value.detail
    similarity = float(raised.value.detail.split()[1])
    expected = jaccard(shingles(normalised_tokens(LONG), 3), shingles(normalised_tokens(near), 3))
    assert similarity == pytest.approx(expected, abs=0.005) and similarity >= 0.8
    index.check_and_add("conversation", "d", "img4", "A frontal chest radiograph with a large right pneumothorax.")


def test_image_scope_only_compares_results_for_the_same_image():
    index = DuplicateIndex({"closed_qa": DedupSettings("image", 1, 0.9)})
    index.check_and_add("closed_qa", "a", "img1", "Is this a CT scan?\nYes")
    index.check_and_add("closed_qa", "b", "img2", "Is this a CT scan?\nYes")  # another image: kept
    with pytest.raises(Rejection, match="exact_duplicate"):
        index.check_and_add("closed_qa", "c", "img1", "Is this a CT scan? Yes.")
    index.check_and_add("closed_qa", "d", "img1", "Is the liver enlarged?\nNo")


def test_conversation_text_joins_every_turn_and_empty_texts_have_no_shingles():
    turns = [{"from": "human", "value": "<image>\nIs it a CT?"}, {"from": "gpt", "value": "Yes."}]
    assert conversation_text(turns) == "<image>\nIs it a CT?\nYes."
    assert normalised_tokens("<image>\n?!") == [] and shingles([], 3) == frozenset()
    assert jaccard(frozenset(), frozenset()) == 0.0


def test_each_kind_has_its_own_index():
    index = DuplicateIndex({"conversation": DedupSettings("global", 3, 0.8), "open_qa": DedupSettings("global", 3, 0.8)})
    index.check_and_add("conversation", "a", "img1", LONG)
    index.check_and_add("open_qa", "b", "img1", LONG)  # the same text in another kind is no duplicate
    with pytest.raises(Rejection, match="exact_duplicate: same text as b"):
        index.check_and_add("open_qa", "c", "img2", LONG)


def test_similarity_below_the_threshold_is_kept():
    index = DuplicateIndex({"conversation": DedupSettings("global", 3, 0.8)})
    index.check_and_add("conversation", "a", "img1", LONG)
    other = LONG.replace("segment seven of the liver", "the left kidney")
    grams = [shingles(normalised_tokens(text), 3) for text in (LONG, other)]
    assert 0.5 < jaccard(*grams) < 0.8  # similar, but under the kind's threshold
    index.check_and_add("conversation", "b", "img2", other)
