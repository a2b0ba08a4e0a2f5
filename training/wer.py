"""Word error rate: word-level Levenshtein distance / reference words, on normalised text
(lowercase, letters and apostrophes only) so punctuation/casing choices do not count."""
import re


def normalise(text):
    return re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " ")).split()


def edit_distance(ref, hyp):
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(pairs):
    """pairs: iterable of (reference, hypothesis) strings -> (errors, reference words)."""
    errors = words = 0
    for ref, hyp in pairs:
        r, h = normalise(ref), normalise(hyp)
        errors += edit_distance(r, h)
        words += len(r)
    return errors, words
