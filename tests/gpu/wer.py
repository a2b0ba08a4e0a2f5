#!/usr/bin/env python3
"""Word error rate of one hypothesis file against one reference file (training/wer.py's
normalisation: lowercase, letters and apostrophes). Prints "WER x.x % (errors/words)".

Usage: wer.py REFERENCE.txt HYPOTHESIS.txt"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training"))
from wer import wer  # noqa: E402

ref, hyp = (Path(p).read_text() for p in sys.argv[1:3])
errors, words = wer([(ref, hyp)])
print(f"WER {100.0 * errors / max(1, words):.1f} % ({errors}/{words})")
