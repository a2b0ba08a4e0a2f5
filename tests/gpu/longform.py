#!/usr/bin/env python3
"""Joins WAV clips (16 kHz mono s16) with 0.6 s pauses, repeating the list, into one file of at
least SECONDS, and writes the text said in it (the clips' reference texts, in order).

Usage: longform.py OUT.wav OUT.txt SECONDS CLIP.wav=TEXT [CLIP.wav=TEXT ...]
Standard library only: it runs on the lent GPU machine, which has Python but no sox."""
import sys
import wave


def main():
    out_wav, out_txt, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    clips = [a.split("=", 1) for a in sys.argv[4:]]
    pause = b"\0\0" * int(0.6 * 16000)
    frames, texts, total = [], [], 0
    while total < seconds * 16000:
        for path, text in clips:
            with wave.open(path) as w:
                if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (16000, 1, 2):
                    sys.exit(f"{path}: not 16 kHz mono 16-bit")
                frames += [w.readframes(w.getnframes()), pause]
                total += w.getnframes() + len(pause) // 2
            texts.append(text)
            if total >= seconds * 16000:
                break
    with wave.open(out_wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"".join(frames))
    open(out_txt, "w").write(" ".join(texts) + "\n")


if __name__ == "__main__":
    main()
