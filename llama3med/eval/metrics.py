"""Answer metrics, as pure functions of (prediction, answer).

Two families, side by side:

- **LLaVA-Med-compatible** (`llava_med_open_recall`, `llava_med_closed_hit`): what LLaVA-Med's `run_eval`
  computes and what the field's zero-shot tables report, quirks included, so our numbers line up with
  published ones. The quirks are documented on each function.
- **Strict** (`strict_closed_hit`, `exact_match`, `token_f1`, `bleu1`): the honest variants reported beside
  them. They use the same normalisation, so differences come from the decision rule only.

All functions take raw text (any case, any punctuation) and normalise it themselves.
"""

from __future__ import annotations

import re
from collections import Counter

from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

OPEN, CLOSED = "OPEN", "CLOSED"
YES_NO = ("yes", "no")

# Normalisation tables (the VQA evaluation's, as used by LLaVA-Med) ----------------------------------
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# The reference writes `(?!<=\d)(\.)(?!\d)`; its first group is a lookahead typo (not a lookbehind) that
# always holds before a ".", so the rule is: a period not followed by a digit.
PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
# The reference passes `re.UNICODE` (= 32) as `re.sub`'s positional `count`: at most 32 periods go.
MAX_PERIODS_REMOVED = 32
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
# Apostrophe-less spellings -> contracted form. The reference table also has "Id've", "Im", "Ive" (never
# matched: text is lower-cased first) and identity entries; those have no effect and are left out.
# "somebody'd" -> "somebodyd" is the reference's own (inverted) entry, kept for comparability.
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "i'dve": "i'd've", "isnt": "isn't", "itd": "it'd",
    "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's",
    "somethingd": "something'd", "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd", "thered've": "there'd've",
    "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've",
    "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've",
    "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've",
    "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}  # fmt: skip


def llava_med_normalize(text: str) -> str:
    """LLaVA-Med's answer normalisation (its `normalize_word`), applied to predictions and answers alike.

    Steps, in the reference's order:

    1. Each punctuation mark of `; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !` is *deleted* everywhere when
       the input has that mark next to a space anywhere, or when the input contains a digit-comma-digit
       anywhere (then every mark is deleted); otherwise it is *replaced by a space* everywhere.
       So "left-sided" -> "left sided", but "left - sided" -> "left  sided" -> "left sided", and
       "1,000 (approx)" -> "1000 approx" (digit-comma-digit deletes the parentheses too).
    2. Periods not followed by a digit are dropped ("3.5" keeps its period) — at most 32 of them (quirk).
    3. Lower-case, split on whitespace; number words zero..ten become digits and "none" becomes "0";
       the articles a/an/the are dropped (after the number mapping).
    4. Apostrophe-less contractions get their apostrophe ("dont" -> "don't"); apostrophes are not
       punctuation here, so "don't" stays one token.
    5. Tokens are joined with single spaces. (The reference then deletes commas; none are left by then.)

    Quirks kept for comparability: the punctuation rule looks at the whole input, not at each mark's own
    position; "none" counts as the number 0; articles vanish even inside names ("hepatitis a" -> "hepatitis").
    """
    original = text.lower()
    digit_comma_digit = DIGIT_COMMA_DIGIT.search(original) is not None
    spaced = original
    for mark in PUNCTUATION:
        deleted = digit_comma_digit or (mark + " " in original) or (" " + mark in original)
        spaced = spaced.replace(mark, "" if deleted else " ")
    spaced = PERIOD_NOT_BEFORE_DIGIT.sub("", spaced, count=MAX_PERIODS_REMOVED)
    words = [NUMBER_WORDS.get(word, word) for word in spaced.split()]
    words = [CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES]
    return " ".join(words)


def normalized_tokens(text: str) -> list[str]:
    """Words of `llava_med_normalize(text)`; the strict metrics compare these."""
    return llava_med_normalize(text).split()


# LLaVA-Med-compatible --------------------------------------------------------------------------------
def llava_med_open_recall(prediction: str, answer: str) -> float:
    """LLaVA-Med's open-question score (the "recall" of its `calculate_f1score`), in [0, 1].

    With C = word counts of the normalised prediction and R = word counts of the normalised answer:
    tp = sum of C[w] over words in both, fn = sum of R[w] over words only in the answer, score = tp / (tp + fn);
    0 when either side is empty or tp = 0. Example: answer "left lung", prediction "the left side" ->
    C = {left: 1, side: 1}, R = {left: 1, lung: 1}: tp = 1, fn = 1 -> 0.5.

    Quirks kept: tp counts the *prediction's* repeats, so "lung lung" against "lung heart" scores
    2 / (2 + 1) = 0.667, not 0.5; long answers that mention the right word score 1 however much else they
    say. The reference normalises twice (in the caller and again inside); that changes nothing except for
    texts with more than 32 periods, and is reproduced here.
    """
    predicted = Counter(llava_med_normalize(llava_med_normalize(prediction)).split())
    expected = Counter(llava_med_normalize(llava_med_normalize(answer)).split())
    if not predicted or not expected:
        return 0.0
    true_positive = sum(count for word, count in predicted.items() if word in expected)
    false_negative = sum(count for word, count in expected.items() if word not in predicted)
    return true_positive / (true_positive + false_negative) if true_positive else 0.0


def llava_med_closed_hit(prediction: str, answer: str) -> bool:
    """LLaVA-Med's closed-question hit: after normalisation the prediction contains the substring "yes" or
    "no", and the answer is a substring of the prediction.

    Quirks kept (raw substring tests): "no" also matches "not", "normal", "nodule", "know", so answer "no"
    against prediction "normal" is a hit; answer "yes" against "yes and no" is a hit; an option answer
    ("liver") is a hit only if the prediction also happens to contain "yes"/"no" ("the liver" misses,
    "liver, not spleen" hits). Use `strict_closed_hit` beside it.
    """
    predicted, expected = llava_med_normalize(prediction), llava_med_normalize(answer)
    return ("yes" in predicted or "no" in predicted) and expected in predicted


# Strict ----------------------------------------------------------------------------------------------
def first_yes_no(prediction: str) -> str | None:
    """The first whole word "yes" or "no" of the normalised prediction, or None."""
    return next((word for word in normalized_tokens(prediction) if word in YES_NO), None)


def contains_words(haystack: list[str], needle: list[str]) -> bool:
    """Whether `needle` occurs as a contiguous run of whole words in `haystack`."""
    width = len(needle)
    return width > 0 and any(haystack[i : i + width] == needle for i in range(len(haystack) - width + 1))


def strict_closed_hit(prediction: str, answer: str) -> bool:
    """Closed-question hit without substring quirks.

    Yes/no answers: the first whole word "yes" or "no" of the normalised prediction must equal the answer
    ("not normal" has none, so it is a miss; "no, yes" answers "no"). Other closed answers (options named in
    the question, e.g. "liver" for "liver or spleen?"): the answer's words must appear as whole words in
    the prediction ("livers" does not match "liver").
    """
    expected = normalized_tokens(answer)
    if expected in (["yes"], ["no"]):
        return first_yes_no(prediction) == expected[0]
    return contains_words(normalized_tokens(prediction), expected)


def exact_match(prediction: str, answer: str) -> bool:
    """Normalised prediction equals normalised answer ("The left lung." == "left lung")."""
    return normalized_tokens(prediction) == normalized_tokens(answer)


def token_f1(prediction: str, answer: str) -> float:
    """SQuAD-style token F1 over normalised words: overlap counts are minimum counts.

    Example: prediction "left lung lung", answer "left lung": overlap 2, precision 2/3, recall 1, F1 0.8.
    0 when either side is empty or nothing overlaps.
    """
    predicted, expected = normalized_tokens(prediction), normalized_tokens(answer)
    overlap = sum((Counter(predicted) & Counter(expected)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


_SMOOTHING = SmoothingFunction().method1


def bleu1(prediction: str, answer: str) -> float:
    """BLEU-1 of the normalised prediction against the normalised answer (nltk `sentence_bleu`,
    weights (1, 0, 0, 0)): clipped unigram precision times the brevity penalty.

    Smoothing: nltk's `method1` (epsilon for zero n-gram counts). With these weights it never changes the
    value — a zero unigram match still gives 0, and the zero-weight higher orders add 0 · log(p) = 0 —
    it only keeps nltk from warning on every short answer. Example: prediction "the left lung" vs answer
    "left lung" -> tokens [left, lung] vs [left, lung] -> 1.0; prediction "x" vs answer "x y" ->
    precision 1 · exp(1 - 2/1) = 0.368.
    """
    predicted, expected = normalized_tokens(prediction), normalized_tokens(answer)
    if not predicted or not expected:
        return 0.0
    return float(sentence_bleu([expected], predicted, weights=(1, 0, 0, 0), smoothing_function=_SMOOTHING))


def score_answer(prediction: str, answer: str, answer_type: str) -> dict[str, float]:
    """Every metric that applies to one question, as 0..1 floats.

    OPEN: `llava_med_open_recall`, `open_exact_match`, `open_f1`, `bleu1`.
    CLOSED: `llava_med_closed_accuracy`, `strict_closed_accuracy`.
    """
    if answer_type == OPEN:
        return {
            "llava_med_open_recall": llava_med_open_recall(prediction, answer),
            "open_exact_match": float(exact_match(prediction, answer)),
            "open_f1": token_f1(prediction, answer),
            "bleu1": bleu1(prediction, answer),
        }
    if answer_type == CLOSED:
        return {
            "llava_med_closed_accuracy": float(llava_med_closed_hit(prediction, answer)),
            "strict_closed_accuracy": float(strict_closed_hit(prediction, answer)),
        }
    raise ValueError(f"answer_type must be {OPEN!r} or {CLOSED!r}, got {answer_type!r}")
