#!/usr/bin/env python3
"""Word error rate of a hypothesis file against a reference file (training/wer.py's
normalisation: lowercase, letters and apostrophes), line by line: line i of one is the
transcript of line i of the other. Prints "WER x.x % (errors/words)".

Usage: wer.py REFERENCE.txt HYPOTHESIS.txt"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "training"))
from wer import wer  # noqa: E402

ref, hyp = (Path(p).read_text().splitlines() for p in sys.argv[1:3])
if len(ref) != len(hyp):
    sys.exit(f"{len(ref)} reference lines but {len(hyp)} hypothesis lines")
errors, words = wer(zip(ref, hyp))
print(f"WER {100.0 * errors / max(1, words):.1f} % ({errors}/{words})")
