"""Seeded synthetic movie reviews whose sentiment is known exactly, with a known share of wrong labels.

A review is a shuffle of opinion sentences ("The pacing was not very good.") and neutral filler
("It runs about 120 minutes."). Each opinion has a value: its adjective's strength (1, 2 or 3)
with its sign, doubled by an intensifier ("very", "extremely") or halved by a hedge ("somewhat"),
and, when negated ("not", "never", "wasn't"), flipped and halved ("not great" is mildly negative).
The review's clean label is the sign of the sum: reviews are drawn for a target label, with some
opinions disagreeing (mixed reviews), until the sum agrees. Then `noise_rate` of the labels are
flipped. An oracle reading the text with this lexicon gets every clean label right, so the best
achievable accuracy is 1 - noise_rate, and the best log-loss the entropy of the noise: the noise
floor in the report. Bag-of-words models have to learn negation and intensity from n-grams.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pandas as pd

from domains.sentiment.params import SyntheticParams

FLIPPED = "label_flipped"  # prepared documents of synthetic data: the generator flipped this label (label noise)
ADJECTIVES = {  # sign x strength -> adjectives
    3: ["superb", "brilliant", "outstanding", "wonderful", "magnificent", "flawless"],
    2: ["great", "excellent", "moving", "delightful", "gripping", "charming", "beautiful", "clever"],
    1: ["good", "nice", "decent", "enjoyable", "solid", "pleasant", "fun", "likeable"],
    -1: ["dull", "bland", "flat", "forgettable", "mediocre", "slow", "predictable", "uneven"],
    -2: ["bad", "boring", "poor", "weak", "tedious", "clumsy", "lifeless", "annoying"],
    -3: ["awful", "terrible", "dreadful", "unwatchable", "atrocious", "abysmal"],
}
INTENSIFIERS = {"very": 2.0, "extremely": 2.0, "really": 2.0, "incredibly": 2.0}
HEDGES = {"somewhat": 0.5, "fairly": 0.5, "slightly": 0.5, "a bit": 0.5}
NEGATION_FACTOR = -0.5  # negation flips the sign and halves the strength
ASPECTS = [
    "acting",
    "plot",
    "script",
    "direction",
    "soundtrack",
    "camera work",
    "pacing",
    "ending",
    "dialogue",
    "cast",
    "story",
    "lead performance",
    "editing",
    "special effects",
    "humour",
    "score",
    "second half",
]
FILMS = ["this movie", "the film", "this picture", "the whole thing", "it"]
OPINIONS = [  # {subject} {verb}: "the plot was", with the negation slotted in after the verb
    "{subject} {verb} {words}.",
    "I thought {subject} {verb} {words}.",
    "Honestly, {subject} {verb} {words}.",
    "To be fair, {subject} {verb} {words}.",
    "In my opinion {subject} {verb} {words}.",
    "{subject} {verb} {words} from start to finish.",
    "Overall {subject} {verb} {words}.",
]
SYLLABLES = ["ka", "ren", "mo", "li", "tas", "ver", "do", "na", "bel", "sor", "fi", "gan", "lu", "tem", "ri", "zo"]
FILLER = [
    "I saw it {when} with {who}.",
    "It runs about {minutes} minutes.",
    "It came out in {year}.",
    "It is based on a {origin}.",
    "The story follows {character} in {place}.",
    "Most of it was shot in {place}.",
    "There is a scene with a {thing} near the end.",
    "{name} plays {character}.",
    "The director, {name}, made another film about {thing}s in {year}.",
    "I went in knowing nothing about it.",
    "The trailer had shown {thing}s and {place}.",
    "My {who2} recommended it after seeing it {when}.",
]
SLOTS = {
    "when": ["last week", "on a Sunday", "at a festival", "years ago", "on a plane", "last night", "on television"],
    "who": ["my sister", "a friend", "my parents", "the kids", "some colleagues", "my partner"],
    "who2": ["sister", "neighbour", "uncle", "flatmate", "teacher"],
    "origin": ["novel", "true story", "comic book", "stage play", "short story", "video game"],
    "character": [
        "a young doctor",
        "two brothers",
        "a retired detective",
        "a small-town teacher",
        "a family",
        "a travelling musician",
        "an old sailor",
    ],
    "place": ["Paris", "a small village", "New York", "the desert", "a space station", "the 1920s", "Scotland"],
    "thing": ["train", "dog", "storm", "wedding", "piano", "horse", "letter", "lighthouse"],
}


@dataclass
class SyntheticReviews:
    documents: pd.DataFrame  # the loaders' columns: item_id, split, label, text, decoding, stars
    truth: pd.DataFrame  # item_id, clean_label (class index), score (the lexicon's sum), flipped


def generate_reviews(p: SyntheticParams, classes: list[str], seed: int) -> SyntheticReviews:
    rng = random.Random(seed)  # Python's generator: a per-word choice costs far less than numpy's
    rows, truth, seen = [], [], set()
    for split, count in (("train", p.n_train), ("test", p.n_test)):
        targets = [i % 2 for i in range(count)]  # balanced classes
        rng.shuffle(targets)
        for i, target in enumerate(targets):
            while True:
                text, score = _review(rng, p, target)
                if text not in seen:  # no accidental duplicates: the gate would report them
                    break
            seen.add(text)
            flipped = bool(rng.random() < p.noise_rate)
            item_id = f"{split}/{i:05d}"
            rows.append(
                {
                    "item_id": item_id,
                    "split": split,
                    "label": classes[target ^ flipped],
                    "text": text,
                    "decoding": "",
                    "stars": None,
                }
            )
            truth.append({"item_id": item_id, "clean_label": target, "score": score, "flipped": flipped})
    documents = pd.DataFrame(rows).astype({"stars": "Int64"})
    return SyntheticReviews(documents, pd.DataFrame(truth))


def _review(rng: random.Random, p: SyntheticParams, target: int) -> tuple[str, float]:
    """One review whose lexicon score has the sign of `target` (1: positive, 0: negative)."""
    sign = 1 if target == 1 else -1
    while True:
        n_opinions = max(1, _lognormal_count(rng, p.mean_opinions, p.length_sigma))
        opinions = [_opinion(rng, p, sign if rng.random() < p.agreement else -sign) for _ in range(n_opinions)]
        score = sum(value for _, value in opinions)
        if score * sign > 0:
            break
    sentences = [text for text, _ in opinions]
    sentences += [_filler(rng) for _ in range(_lognormal_count(rng, p.mean_filler, p.length_sigma))]
    rng.shuffle(sentences)
    return " ".join(sentences), float(score)


def _opinion(rng: random.Random, p: SyntheticParams, polarity: int) -> tuple[str, float]:
    """A sentence whose value has the sign `polarity`: a plain or intensified adjective of that sign,
    or a negated adjective of the other sign ("not bad" is mildly positive)."""
    negated = rng.random() < p.negation_rate
    strength = rng.choices([1, 2, 3], weights=[0.4, 0.35, 0.25])[0]
    adjective = rng.choice(ADJECTIVES[strength * (-polarity if negated else polarity)])
    modifier, factor = "", 1.0
    if rng.random() < p.intensifier_rate:  # negated: "not very good", never "not somewhat good"
        modifier = rng.choice(list(INTENSIFIERS) if negated or rng.random() < 2 / 3 else list(HEDGES))
        factor = {**INTENSIFIERS, **HEDGES}[modifier]
    value = strength * factor * (-polarity if negated else polarity) * (NEGATION_FACTOR if negated else 1.0)
    subject = f"the {rng.choice(ASPECTS)}" if rng.random() < 0.75 else rng.choice(FILMS)
    verb = rng.choice(["was", "is"])
    if negated:
        verb = rng.choice([f"{verb} not", f"{verb} never", f"{verb}n't"])
    words = f"{modifier} {adjective}" if modifier else adjective
    sentence = rng.choice(OPINIONS).format(subject=subject, verb=verb, words=words)
    return sentence[0].upper() + sentence[1:], value


def _filler(rng: random.Random) -> str:
    slots: dict[str, object] = {key: rng.choice(values) for key, values in SLOTS.items()}
    slots.update(minutes=rng.randint(80, 180), year=rng.randint(1950, 2024), name=_name(rng))
    return rng.choice(FILLER).format(**slots)


def _name(rng: random.Random) -> str:
    """An invented name: the long tail of rare words real reviews have."""
    first = "".join(rng.choices(SYLLABLES, k=2)).capitalize()
    last = "".join(rng.choices(SYLLABLES, k=rng.randint(2, 3))).capitalize()
    return f"{first} {last}"


def _lognormal_count(rng: random.Random, mean: float, sigma: float) -> int:
    if mean <= 0:
        return 0
    return round(rng.lognormvariate(math.log(mean) - sigma**2 / 2, sigma))


def noise_floor(noise_rate: float, flipped: pd.Series) -> dict[str, float]:
    """The best any model can do on these labels: an oracle knows every clean label, and is right
    except where a label was flipped; its best log-loss is the entropy of the noise."""
    eta = noise_rate
    entropy = -(eta * math.log(eta) + (1 - eta) * math.log(1 - eta)) if 0 < eta < 1 else 0.0
    return {
        "noise_rate": eta,
        "best_accuracy": 1 - eta,
        "oracle_accuracy": float(1 - flipped.mean()),
        "best_log_loss": entropy,
        "documents": int(len(flipped)),
    }
