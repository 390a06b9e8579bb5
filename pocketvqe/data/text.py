"""Seeded English sentences for the text-to-speech voices (no text corpus needs downloading).

>>> s = sentences(3, seed=0)
>>> len(s), all(x.endswith((".", "?", "!")) for x in s)
(3, True)
>>> sentences(3, seed=0) == s
True
"""
from __future__ import annotations

import random

SUBJECTS = ["the old man", "my sister", "a young doctor", "the driver", "our neighbour", "the tall woman",
            "a quiet student", "the captain", "his brother", "the baker", "every child", "the new teacher",
            "a tired nurse", "the farmer", "her friend", "the pilot", "nobody", "the little dog", "the engineer",
            "a stranger"]
VERBS = ["carried", "painted", "found", "dropped", "borrowed", "cleaned", "opened", "sold", "watched",
         "repaired", "counted", "noticed", "moved", "lost", "wrapped", "pushed", "described", "ordered",
         "checked", "forgot"]
OBJECTS = ["a heavy basket", "the blue door", "two small boxes", "the broken radio", "a bag of apples",
           "the morning paper", "an old map", "the kitchen table", "a bright red kite", "the spare key",
           "three wooden chairs", "the last train ticket", "a jar of honey", "the silver watch",
           "a pile of letters", "the garden gate", "a warm blanket", "the brown envelope", "a cup of tea",
           "the green bicycle"]
PLACES = ["near the station", "by the river", "in the back yard", "at the market", "on the second floor",
          "behind the library", "across the bridge", "in the small village", "at the corner shop",
          "under the old oak tree", "beside the harbour", "inside the museum", "along the coast road",
          "at the busy airport", "in the school hall"]
TIMES = ["this morning", "last night", "before lunch", "after the storm", "on Sunday", "every winter",
         "at half past seven", "yesterday", "in the spring", "late in the evening", "two weeks ago",
         "just before noon"]
CLAUSES = ["because it was getting late", "while the rain kept falling", "although nobody asked",
           "and then went straight home", "but nobody seemed to notice", "so the others could rest",
           "before the lights went out", "as the band began to play", "when the bell rang twice",
           "and smiled at everyone"]
QUESTIONS = ["Did you see who {v} {o} {p}?", "Why would {s} leave {o} {p}?", "Have you ever been {p} {t}?",
             "Who {v} {o} {t}?", "Can you tell me where {s} put {o}?"]
EXCLAIMS = ["What a surprise to find {o} {p}!", "Be careful with {o}!", "Look, {s} is {p} again!"]


def sentence(rng: random.Random) -> str:
    """One sentence: mostly statements, some questions and exclamations."""
    s, v, o, p, t = (rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS), rng.choice(PLACES),
                     rng.choice(TIMES))
    r = rng.random()
    if r < 0.15:
        return rng.choice(QUESTIONS).format(s=s, v=v, o=o, p=p, t=t)
    if r < 0.22:
        text = rng.choice(EXCLAIMS).format(s=s, o=o, p=p)
        return text[0].upper() + text[1:]
    parts = [s, v, o]
    if rng.random() < 0.7:
        parts.append(p)
    if rng.random() < 0.6:
        parts.append(t)
    if rng.random() < 0.4:
        parts[-1] += ","
        parts.append(rng.choice(CLAUSES))
    text = " ".join(parts)
    return text[0].upper() + text[1:] + "."


def sentences(n: int, seed: int) -> list[str]:
    """``n`` sentences, the same for the same ``seed``."""
    rng = random.Random(seed)
    return [sentence(rng) for _ in range(n)]
