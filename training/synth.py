#!/usr/bin/env python3
"""Synthesise the demo model's speech corpus: espeak-ng, flite and Festival voices (every English
voice these Debian packages offer, espeak-ng's with its voice variants), varied rate and pitch,
mild reverberation and gain through sox. Deterministic from --seed (each utterance draws its
parameters from its own seeded RNG, so parallel workers do not change the result).

Usage: synth.py CORPUS_DIR OUT_DIR [--seed 1] [--train-copies 3] [--jobs 2]
Writes OUT_DIR/<split>/NNNNN.wav (16 kHz mono s16) and one NeMo-style
manifest OUT_DIR/<split>.jsonl per split ({"audio_filepath", "duration", "text", "voice"}).
Needs: espeak-ng, flite, sox, festival with festvox-kallpc16k, festvox-kdlpc16k,
festvox-us-slt-hts (Debian packages).
"""
import argparse
import json
import os
import random
import subprocess
import tempfile
import wave
from multiprocessing import Pool
from pathlib import Path

ESPEAK_SEEN_LANGS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc"]
ESPEAK_SEEN_VARIANTS = ["m1", "m2", "m3", "m4", "m6", "f1", "f2", "f3", "f5"]
FLITE_SEEN = ["kal16", "awb", "slt"]
# Festival: a third engine (diphone and HTS voices), so the model does not learn one vocoder.
FESTIVAL_SEEN = ["kal_diphone", "cmu_us_slt_arctic_hts"]
# Never used for train/dev: accents and timbres the model has not heard.
ESPEAK_UNSEEN_LANGS = ["en-gb-x-gbclan", "en-gb-x-gbcwmd"]
ESPEAK_UNSEEN_VARIANTS = ["m7", "f4"]
FLITE_UNSEEN = ["rms"]
FESTIVAL_UNSEEN = ["ked_diphone"]
# The variety split: espeak-ng's other voice variants (espeak-ng --voices=variant), each a
# different formant set, pitch range, voicing and, for the Klatt ones, a different synthesiser,
# read in the seen accents. The held-out m7 and f4 are not among them (and no variant's file
# equals theirs); whisper, croak and the robot and announcer variants are left out as speech
# nobody dictates in.
ESPEAK_VARIETY_VARIANTS = [
    "adam", "Alex", "Alicia", "Andy", "Annie", "antonio", "aunty", "belinda", "benjamin", "boris",
    "caleb", "david", "Denis", "ed", "edward", "edward2", "Gene", "Gene2", "gustave", "Hugo",
    "iven", "iven2", "iven3", "iven4", "Jacky", "john", "kaukovalta", "klatt", "klatt2", "klatt3",
    "klatt4", "klatt5", "klatt6", "Lee", "linda", "m5", "m8", "Marco", "Mario", "max", "Michael",
    "michel", "miguel", "Mike", "Nguyen", "norbert", "pablo", "paul", "quincy", "RicishayMax",
    "rob", "robert", "sandro", "shelby", "steph", "steph2", "steph3", "Storm", "travis", "victor",
    "zac", "grandpa", "grandma", "anika"]


def voices(voice_set):
    """The (engine, voice) entries an utterance draws from: "seen" (train, dev, test_seen),
    "unseen" (test_unseen) or "variety"."""
    if voice_set == "seen":
        v = [("espeak", f"{l}+{x}") for l in ESPEAK_SEEN_LANGS for x in ESPEAK_SEEN_VARIANTS]
        # espeak 54 entries, flite 18 (~20 %), Festival 16 (~18 %)
        return v + [("flite", f) for f in FLITE_SEEN] * 6 + [("festival", f) for f in FESTIVAL_SEEN] * 8
    if voice_set == "variety":
        v = [("espeak", f"{l}+{x}") for l in ESPEAK_SEEN_LANGS for x in ESPEAK_VARIETY_VARIANTS]
        # espeak 384 entries, flite 63 (~12 %), Festival 64 (~12 %)
        return v + [("flite", f) for f in FLITE_SEEN] * 21 + [("festival", f) for f in FESTIVAL_SEEN] * 32
    v = [("espeak", f"{l}+{x}") for l in ESPEAK_UNSEEN_LANGS for x in ESPEAK_UNSEEN_VARIANTS]
    return v + [("flite", f) for f in FLITE_UNSEEN] * 2 + [("festival", f) for f in FESTIVAL_UNSEEN] * 2


def render(job):
    """job = (split, index, text, seed, voice_set, out_dir, spoken) -> manifest row. The engine
    reads `spoken` (the written form, or the text itself); the row's text is the normalised one."""
    split, idx, text, seed, voice_set, out_dir, spoken = job
    rng = random.Random(f"{seed}/{split}/{idx}")
    engine, voice = rng.choice(voices(voice_set))
    out = Path(out_dir) / split / f"{idx:05d}.wav"
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "raw.wav")
        if engine == "espeak":
            rate, pitch = rng.randint(125, 195), rng.randint(25, 75)
            cmd = ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", raw, spoken]
            desc = f"espeak-ng {voice} -s{rate} -p{pitch}"
        elif engine == "flite":
            stretch, f0 = round(rng.uniform(0.8, 1.25), 2), rng.randint(90, 180)
            cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}",
                   "--setf", f"int_f0_target_mean={f0}", "-t", spoken, "-o", raw]
            desc = f"flite {voice} stretch={stretch} f0={f0}"
        elif engine == "festival":
            stretch = round(rng.uniform(0.8, 1.25), 2)
            txt = os.path.join(tmp, "text.txt")
            Path(txt).write_text(spoken + "\n")
            cmd = ["text2wave", "-eval", f"(voice_{voice})", "-eval",
                   f"(Parameter.set 'Duration_Stretch {stretch})", txt, "-o", raw]
            desc = f"festival {voice} stretch={stretch}"
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        fx = []
        if engine == "festival" or rng.random() < 0.3:
            # Pitch shift (the engines' own pitch controls differ; Festival has none here)
            cents = rng.randint(-300, 300)
            fx += ["pitch", str(cents)]
            desc += f" pitch{cents:+d}c"
        fx += ["gain", "-n", f"{rng.uniform(-18, -2):.1f}"]
        if rng.random() < 0.35:
            rev = rng.randint(10, 40)
            fx += ["reverb", str(rev), "50", str(rng.randint(20, 60))]
            desc += f" reverb{rev}"
        lead, tail = rng.uniform(0.05, 0.4), rng.uniform(0.1, 0.4)
        fx += ["pad", f"{lead:.2f}", f"{tail:.2f}"]
        # -R: sox's dither (on by default when it requantises) seeded the same every run, so that a
        # fresh machine synthesises the same bits (committed alignments, clips, fixtures match).
        subprocess.run(["sox", "-q", "-R", raw, "-r", "16000", "-c", "1", "-b", "16", str(out), "channels", "1"] + fx,
                       check=True)
    with wave.open(str(out)) as w:
        dur = w.getnframes() / w.getframerate()
    if spoken != text:
        desc += " written"
    return {"audio_filepath": str(out.resolve()), "duration": round(dur, 3), "text": text, "voice": desc}


def written_texts(texts):
    """(normalised, written form) of each sentence (training/written.py)."""
    import written
    forms = written.written_forms()
    return [(t, " ".join(forms[t])) for t in texts]


def variety_texts(train, extra, n, seed):
    """The variety split's sentences: every train/extra sentence whose written form has a mark
    inside it or ends in ? or ! (3 % of them: the only ones that teach commas and questions),
    three times, then a seeded draw of the others up to n."""
    pool = sorted(set(train) | set(extra))
    written = dict(written_texts(pool))
    marked = [t for t in pool if any(c in written[t][:-1] for c in ",;:?!")]
    plain = sorted(set(pool) - set(marked))
    rng = random.Random(f"{seed}/variety")
    texts = marked * 3 + rng.sample(plain, max(0, n - 3 * len(marked)))
    rng.shuffle(texts)
    return [(t, written[t]) for t in texts]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train-copies", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--variety", type=int, default=15000, help="utterances in the variety split")
    ap.add_argument("--splits", default="dev,test_seen,test_unseen,train,extra")
    a = ap.parse_args()

    read = lambda n: (a.corpus / f"{n}.txt").read_text().splitlines()
    same = lambda texts: [(t, t) for t in texts]  # read as normalised
    plan = {
        "train": lambda: (same(read("train") * a.train_copies), "seen"),
        "dev": lambda: (same(read("dev")), "seen"),
        "test_seen": lambda: (same(read("test")), "seen"),
        "test_unseen": lambda: (same(read("test")), "unseen"),
        # The dev sentences in the unseen voices: choosing between checkpoints on unseen voices
        # without looking at test_unseen (not made by default: run.sh asks for it).
        "dev_unseen": lambda: (same(read("dev")), "unseen"),
        # One rendering each: these sentences are for text variety (make_corpus.py)
        "extra": lambda: (same(read("extra")), "seen"),
        # Voice variety and spoken punctuation (pauses at commas, a question's rise): the
        # training sentences again, in other espeak-ng variants, read from their written form.
        "variety": lambda: (variety_texts(read("train"), read("extra"), a.variety, a.seed), "variety"),
        # The test sentences in seen voices, read from their written form: whether the <|pnc|>
        # answer's commas and question marks follow the voice (test_seen has no such cue).
        "test_written": lambda: (written_texts(read("test")), "seen"),
    }
    with Pool(a.jobs) as pool:
        for split in a.splits.split(","):
            texts, voice_set = plan[split]()
            (a.out / split).mkdir(parents=True, exist_ok=True)
            jobs = [(split, i, t, a.seed, voice_set, str(a.out), spoken) for i, (t, spoken) in enumerate(texts)]
            rows = pool.map(render, jobs, chunksize=16)
            with open(a.out / f"{split}.jsonl", "w") as f:
                for r in rows:
                    f.write(json.dumps(r) + "\n")
            hours = sum(r["duration"] for r in rows) / 3600
            print(f"{split}: {len(rows)} utterances, {hours:.2f} h", flush=True)


if __name__ == "__main__":
    main()
