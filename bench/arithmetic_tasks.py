"""Write resources/proof/arithmetic.jsonl: the reward-model proof's task set (see
playground/reward/proof.py). One-step word problems whose answer a program checks: small
enough that the embedded 135M model gets some of its samples right and some wrong, which is
what a verifier needs to learn from (Cobbe et al., 2021).

    python bench/arithmetic_tasks.py      # rewrites the file; the seed makes it the same file
"""

from __future__ import annotations

import json
import random
from pathlib import Path

NAMES = ["Sam", "Lily", "Omar", "Mei", "Ana", "Ravi", "Tom", "Zoe", "Ivan", "Nia", "Leo", "Ada"]
THINGS = ["apples", "pens", "stickers", "marbles", "books", "shells", "cards", "coins"]
TEMPLATES = [
    ("{n} has {a} {t} and gets {b} more. How many {t} does {n} have now?", lambda a, b: a + b),
    ("{n} had {a} {t} and gave away {b}. How many {t} does {n} have left?", lambda a, b: a - b),
    ("There are {a} bags with {b} {t} in each bag. How many {t} are there in all?",
     lambda a, b: a * b),
    ("{n} puts {a} {t} on a shelf and then {b} more. How many {t} are on the shelf?",
     lambda a, b: a + b),
    ("A box holds {a} {t}. {n} takes out {b}. How many {t} are left in the box?",
     lambda a, b: a - b),
    ("{n} buys {a} packs of {t} with {b} in each pack. How many {t} does {n} buy?",
     lambda a, b: a * b),
]
COUNT = 96


def main() -> None:
    rng = random.Random(17)
    out = Path(__file__).resolve().parent.parent / "resources" / "proof" / "arithmetic.jsonl"
    rows = []
    for index in range(COUNT):
        template, solve = TEMPLATES[index % len(TEMPLATES)]
        multiply = "each" in template
        a = rng.randint(2, 9) if multiply else rng.randint(5, 40)
        b = rng.randint(2, 9) if multiply else rng.randint(2, a - 1)
        question = template.format(n=rng.choice(NAMES), t=rng.choice(THINGS), a=a, b=b)
        rows.append({"id": f"arith-{index:03d}", "question": question, "answer": solve(a, b)})
    out.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
