#!/usr/bin/env python3
"""Sentence corpus for the demo model, from WordNet 3.0's usage examples.

Source: Debian package `wordnet-base` (/usr/share/wordnet/data.{noun,verb,adj,adv}); every gloss
carries quoted usage examples ("she intended her remarks to be interpreted positively"), ~48k
everyday English sentences and phrases. We normalise them to what the model writes (lowercase, no
punctuation but apostrophes, numbers as words via num2words), keep 4-16 word sentences, restrict
them to the N most frequent words (a dictation-sized vocabulary the small model can learn), and
split by sentence: dev/test sentences never occur in train.

The 5000-word restriction leaves ~10.7k sentences, and the model learns them by heart (WER 9 % on
training sentences vs 29 % on new ones with the same voices, step 13 525). `extra.txt` adds the
sentences within a wider vocabulary (--extra-vocab, ~17k more at 20 000 words) for training only:
more text to spell, less to memorise. dev/test/train and the vocabulary (hence the BPE, trained on
train.txt) are the same with or without it, so models trained before it still load.

Usage: make_corpus.py OUT_DIR [--vocab 5000] [--extra-vocab 20000] [--seed 1] [--dev 400] [--test 400]
Writes OUT_DIR/{train,dev,test,extra}.txt (one sentence a line) and OUT_DIR/vocab.txt.
"""
import argparse
import collections
import random
import re
from pathlib import Path

from num2words import num2words

WORDNET = Path("/usr/share/wordnet")


def examples():
    for pos in ("noun", "verb", "adj", "adv"):
        with open(WORDNET / f"data.{pos}", encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):  # licence header
                    continue
                _, _, gloss = line.partition("|")
                yield from re.findall(r'"([^"]+)"', gloss)


def spell_number(m):
    s = m.group(0).replace(",", "")
    n = int(s)
    words = num2words(n, to="year") if 1100 <= n <= 2099 and len(s) == 4 else num2words(n)
    return " " + words + " "


def normalise(s):
    s = s.lower()
    s = re.sub(r"\d[\d,]*\d|\d", spell_number, s)
    s = re.sub(r"[^a-z' ]", " ", s)  # hyphens, commas, "and" in num2words output stay words
    words = [w.strip("'") for w in s.split()]
    return " ".join(w for w in words if w)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--vocab", type=int, default=5000)
    ap.add_argument("--extra-vocab", type=int, default=20000,
                    help="extra.txt: sentences within this many most frequent words not in train/dev/test "
                         "(0: none)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dev", type=int, default=400)
    ap.add_argument("--test", type=int, default=400)
    a = ap.parse_args()

    sents = sorted({n for n in map(normalise, examples()) if 4 <= len(n.split()) <= 16})
    freq = collections.Counter(w for s in sents for w in s.split())
    ranked = [w for w, _ in sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))]
    vocab = set(ranked[: a.vocab])
    kept = [s for s in sents if all(w in vocab for w in s.split())]
    wide = set(ranked[: a.extra_vocab])
    extra = [s for s in sents if a.extra_vocab > a.vocab and all(w in wide for w in s.split())
             and not all(w in vocab for w in s.split())]
    random.Random(f"{a.seed}/extra").shuffle(extra)
    random.Random(a.seed).shuffle(kept)
    test, dev, train = kept[: a.test], kept[a.test : a.test + a.dev], kept[a.test + a.dev :]
    a.out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("dev", dev), ("test", test), ("extra", extra)):
        (a.out / f"{name}.txt").write_text("\n".join(part) + "\n")
    (a.out / "vocab.txt").write_text("\n".join(sorted(vocab)) + "\n")
    used = {w for s in kept for w in s.split()}
    print(f"{len(sents)} sentences, {len(kept)} within the {a.vocab}-word vocabulary "
          f"({len(used)} distinct words used): train {len(train)}, dev {len(dev)}, test {len(test)}; "
          f"extra {len(extra)} within {a.extra_vocab} words")


if __name__ == "__main__":
    main()
