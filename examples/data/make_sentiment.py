"""Writes sentiment.tsv: short synthetic movie-review sentences labelled 1 (positive) / 0 (negative).

The sentences are composed from word lists and a few templates (see README.md). Their
labels follow from the words *and their order*: "not" flips a clause, and after "but"
the second clause decides. A bag of words cannot separate "good, but dull" from
"dull, but good"; a recurrent model can. Deterministic: re-running gives the same file.

    python examples/data/make_sentiment.py
"""
from __future__ import annotations

import os
import random

NOUNS = ["movie", "film", "plot", "story", "acting", "cast", "script", "dialogue", "ending", "soundtrack",
         "pacing", "direction", "camera work", "lead actor", "villain", "sequel", "finale", "premise"]
POSITIVE = ["good", "great", "wonderful", "moving", "clever", "charming", "delightful", "superb", "gripping",
            "funny", "beautiful", "memorable", "fresh", "brilliant", "touching", "smart"]
NEGATIVE = ["bad", "dull", "boring", "awful", "clumsy", "tedious", "predictable", "weak", "confusing",
            "bland", "forgettable", "painful", "messy", "lazy", "silly", "flat"]
ADVERBS = ["", "", "really ", "quite ", "very ", "rather ", "truly ", "surprisingly ", "pretty "]
LIKE = ["loved", "enjoyed", "adored", "admired", "liked"]
DISLIKE = ["hated", "disliked", "resented", "loathed"]
OPENERS = ["", "", "", "honestly , ", "overall , ", "in the end , ", "to be fair , ", "i think "]
TENSES = ["was", "is", "felt", "seemed"]


def clause(rng: random.Random, polarity: int) -> str:
    """A clause whose meaning has the given polarity (1 positive, 0 negative)."""
    noun = rng.choice(NOUNS)
    kind = rng.randrange(4)
    if kind == 0:  # the plot was really good
        adj = rng.choice(POSITIVE if polarity else NEGATIVE)
        return f"the {noun} {rng.choice(TENSES)} {rng.choice(ADVERBS)}{adj}"
    if kind == 1:  # the plot was not good  (negation flips the adjective)
        adj = rng.choice(NEGATIVE if polarity else POSITIVE)
        return f"the {noun} {rng.choice(TENSES)} not {adj}"
    if kind == 2:  # i loved the plot
        return f"i {rng.choice(LIKE if polarity else DISLIKE)} the {noun}"
    # i did not love the plot
    verbs = ["hate", "mind", "dislike"] if polarity else ["like", "enjoy", "love"]
    return f"i did not {rng.choice(verbs)} the {noun}"


def sentence(rng: random.Random, polarity: int) -> str:
    form = rng.randrange(3)
    if form == 0:
        body = clause(rng, polarity)
    elif form == 1:  # contrast: the clause after "but" decides
        body = f"{clause(rng, 1 - polarity)} , but {clause(rng, polarity)}"
    else:  # agreement: both clauses share the polarity
        body = f"{clause(rng, polarity)} and {clause(rng, polarity)}"
    return f"{rng.choice(OPENERS)}{body} ."


def make(n: int = 2000, seed: int = 0) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    seen, rows = set(), []
    while len(rows) < n:
        polarity = len(rows) % 2  # balanced classes
        text = sentence(rng, polarity)
        if text not in seen:
            seen.add(text)
            rows.append((polarity, text))
    rng.shuffle(rows)
    return rows


if __name__ == "__main__":
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sentiment.tsv")
    with open(path, "w", encoding="utf-8") as f:
        f.write("label\ttext\n")
        for label, text in make():
            f.write(f"{label}\t{text}\n")
    print(f"wrote {path}")
