#!/usr/bin/env python3
"""Pick the README's example clips from the held-out test set (a fixed rule, not by result):
the first espeak-ng and the first flite clip of test_seen, the first clip of test_unseen, and
test_seen clips joined from index 10 on until >= 12 s (one window boundary to cross).
Writes examples/audio/*.wav and examples/audio/README.md.

Usage: make_examples.py AUDIO_DIR (synth.py's output)
"""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main():
    audio = Path(sys.argv[1])
    seen = [json.loads(l) for l in open(audio / "test_seen.jsonl")]
    unseen = [json.loads(l) for l in open(audio / "test_unseen.jsonl")]
    picks = {
        "seen-voice-1": [next(r for r in seen if r["voice"].startswith("espeak"))],
        "seen-voice-2": [next(r for r in seen if r["voice"].startswith("flite"))],
        "unseen-voice-1": [unseen[0]],
    }
    joined, total = [], 0.0
    for r in seen[10:]:
        joined.append(r)
        total += r["duration"]
        if total >= 12.0:
            break
    picks["long-12s"] = joined
    dst = REPO / "examples" / "audio"
    for old in dst.glob("*.wav"):
        old.unlink()
    lines = ["# Example clips", "",
             "Held-out test sentences of the demo model's corpus (never trained on), synthesised by",
             "`training/synth.py` (16 kHz mono 16-bit). `unseen-voice-1` is spoken by a voice left out of",
             "training; `long-12s` joins several test sentences, so it spans two 10 s windows.",
             "Regenerate with `training/make_examples.py` (see `training/README.md`).", "",
             "| file | voice | text |", "|---|---|---|"]
    for name, rows in picks.items():
        subprocess.run(["sox"] + [r["audio_filepath"] for r in rows] + [str(dst / f"{name}.wav")], check=True)
        voices = "; ".join(sorted({r["voice"] for r in rows}))
        lines.append(f"| {name}.wav | {voices} | {' '.join(r['text'] for r in rows)} |")
    (dst / "README.md").write_text("\n".join(lines) + "\n")
    print((dst / "README.md").read_text())


if __name__ == "__main__":
    main()
