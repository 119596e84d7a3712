"""Generated data for the encoder tasks: rows a model can learn, in each task's layout."""
from __future__ import annotations

import random

TOPICS = {
    "sports": ["football", "match", "goal", "team", "coach", "league", "score", "player"],
    "food": ["pizza", "bread", "cheese", "soup", "recipe", "kitchen", "dinner", "salad"],
    "music": ["guitar", "song", "concert", "band", "album", "singer", "melody", "drums"],
    "tech": ["computer", "software", "laptop", "internet", "code", "robot", "phone", "chip"],
}
FILLER = ["the", "a", "and", "was", "it", "this", "really", "so", "very", "that", "is"]
POSITIVE = ["good", "great", "excellent", "fun", "loved", "fine", "liked"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "hated", "poor"]
FIRST = ["anna", "peter", "maria", "john", "laura", "david", "sofia", "mark", "emma", "paul",
         "clara", "tom"]
LAST = ["smith", "brown", "garcia", "miller", "jones", "wilson", "moore", "taylor"]
CITIES = [["paris"], ["berlin"], ["london"], ["madrid"], ["rome"], ["new", "york"],
          ["los", "angeles"], ["tokyo"], ["cairo"], ["san", "francisco"]]
# Names only the held-out rows use: the model must tag them from their context.
UNSEEN_FIRST = ["olivia", "lucas", "nina", "oscar", "hugo", "ines"]
UNSEEN_CITIES = [["lisbon"], ["vienna"], ["buenos", "aires"], ["oslo"], ["nairobi"]]
TEMPLATES = [["{P}", "lives", "in", "{L}"], ["{P}", "flew", "to", "{L}", "yesterday"],
             ["in", "{L}", ",", "{P}", "met", "{P}"], ["{P}", "said", "it", "rains", "in", "{L}"],
             ["the", "train", "to", "{L}", "was", "late"], ["{P}", "and", "{P}", "ran"]]


def multi_label_rows(n: int, *, seed: int = 0) -> list[dict]:
    """Each row names 1-2 topics with two of their words each; labels are those topics."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topics = sorted(rng.sample(sorted(TOPICS), rng.choice([1, 1, 2])))
        words = [w for t in topics for w in rng.sample(TOPICS[t], 2)] + rng.sample(FILLER, 3)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": topics})
    return rows


def regression_rows(n: int, *, seed: int = 0) -> list[dict]:
    """The score is (positive words - negative words), between -3 and 3."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        pos, neg = rng.randint(0, 3), rng.randint(0, 3)
        words = rng.choices(POSITIVE, k=pos) + rng.choices(NEGATIVE, k=neg) + rng.sample(
            FILLER, 4)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "score": float(pos - neg)})
    return rows


def ner_rows(n: int, *, seed: int = 0, unseen: bool = False) -> list[dict]:
    """Template sentences with person (1-2 words) and city (1-2 words) names, IOB2 tags;
    `unseen` takes first names and cities from lists the other rows never use."""
    rng = random.Random(seed)
    first, cities = (UNSEEN_FIRST, UNSEEN_CITIES) if unseen else (FIRST, CITIES)
    rows = []
    for _ in range(n):
        tokens: list[str] = []
        tags: list[str] = []
        for slot in rng.choice(TEMPLATES):
            if slot == "{P}":
                name = [rng.choice(first)] + ([rng.choice(LAST)] if rng.random() < 0.5 else [])
                tokens += name
                tags += ["B-PER"] + ["I-PER"] * (len(name) - 1)
            elif slot == "{L}":
                city = rng.choice(cities)
                tokens += city
                tags += ["B-LOC"] + ["I-LOC"] * (len(city) - 1)
            else:
                tokens.append(slot)
                tags.append("O")
        rows.append({"tokens": tokens, "ner_tags": tags})
    return rows
