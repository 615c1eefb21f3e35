"""Exact and near-duplicate detection for generated conversations.

Text is normalised to lowercase alphanumeric tokens. Exact duplicate: the same token sequence.
Near duplicate: Jaccard similarity of word n-gram sets ("shingles") at or above the kind's threshold.
Where to look is set per kind in its prompt file: `global` compares with every accepted result of the
kind (MinHash LSH from `datasketch` finds candidates in sub-linear time, then the exact Jaccard decides);
`image` compares only with results for the same image (short QA such as "Is this a CT scan? Yes" is
fine across images but useless twice for one image). The first result kept wins; with concurrency,
"first" is the order in which replies arrive.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from datasketch import MinHash, MinHashLSH

from llama3med.instruct.prompting import DedupSettings
from llama3med.instruct.validate import Rejection
from llama3med.io.image_tag import IMAGE_TOKEN

NUM_PERMUTATIONS = 128
# LSH recall drops near its threshold; candidates are found a little below it and the exact Jaccard decides.
LSH_MARGIN = 0.15


def normalised_tokens(text: str) -> list[str]:
    """Lowercase alphanumeric tokens; `<image>` and punctuation are dropped."""
    return re.findall(r"[a-z0-9]+", text.replace(IMAGE_TOKEN, " ").lower())


def shingles(tokens: list[str], size: int) -> frozenset[str]:
    """The set of word `size`-grams (the whole text as one shingle when it is shorter)."""
    if len(tokens) <= size:
        return frozenset([" ".join(tokens)]) if tokens else frozenset()
    return frozenset(" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a ∩ b| / |a ∪ b| (0 for two empty sets)."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def conversation_text(conversations: Iterable[dict[str, str]]) -> str:
    """All turns of a LLaVA conversation as one text."""
    return "\n".join(turn["value"] for turn in conversations)


class _KindIndex:
    """Accepted results of one kind."""

    def __init__(self, settings: DedupSettings) -> None:
        self.settings = settings
        self.exact: dict[tuple[str, ...], str] = {}  # (scope key, *tokens) -> result id
        self.shingles: dict[str, frozenset[str]] = {}  # result id -> shingles
        self.by_image: dict[str, list[str]] = defaultdict(list)  # image -> result ids (scope image)
        self.lsh = (
            MinHashLSH(threshold=max(0.05, settings.threshold - LSH_MARGIN), num_perm=NUM_PERMUTATIONS)
            if settings.scope == "global"
            else None
        )

    def _minhash(self, grams: frozenset[str]) -> MinHash:
        minhash = MinHash(num_perm=NUM_PERMUTATIONS, seed=1)
        minhash.update_batch([gram.encode("utf-8") for gram in grams])
        return minhash

    def check_and_add(self, result_id: str, image: str, text: str) -> None:
        tokens = normalised_tokens(text)
        scope = "" if self.settings.scope == "global" else image
        exact_key = (scope, *tokens)
        if exact_key in self.exact:
            raise Rejection("exact_duplicate", f"same text as {self.exact[exact_key]}")
        grams = shingles(tokens, self.settings.shingle_size)
        if self.lsh is not None:
            minhash = self._minhash(grams) if grams else None
            candidates = self.lsh.query(minhash) if minhash is not None else []
        else:
            minhash, candidates = None, self.by_image.get(image, [])
        best_id, best = None, 0.0
        for candidate in candidates:
            similarity = jaccard(grams, self.shingles[candidate])
            if similarity > best:
                best_id, best = candidate, similarity
        if best_id is not None and best >= self.settings.threshold:
            raise Rejection("near_duplicate", f"Jaccard {best:.2f} with {best_id}")
        self.exact[exact_key] = result_id
        self.shingles[result_id] = grams
        if self.lsh is None:
            self.by_image[image].append(result_id)
        elif minhash is not None:
            self.lsh.insert(result_id, minhash)


class DuplicateIndex:
    """Accepted results of every kind; `check_and_add` rejects a duplicate or remembers the result."""

    def __init__(self, settings_by_kind: dict[str, DedupSettings]) -> None:
        self._kinds = {kind: _KindIndex(settings) for kind, settings in settings_by_kind.items()}

    def check_and_add(self, kind: str, result_id: str, image: str, text: str) -> None:
        """Raise Rejection (exact_duplicate / near_duplicate) or add the result to the index."""
        self._kinds[kind].check_and_add(result_id, image, text)
