#!/usr/bin/env python3
"""Word error rate of a model on a synth.py manifest, through NeMo or through the GStreamer element.

  evaluate.py nemo    MODEL.nemo MANIFEST.jsonl OUT.jsonl     # NeMo's transcribe(), beam 1
  evaluate.py element MODEL.nemo MANIFEST.jsonl OUT.jsonl     # gst-launch-1.0 ... canarytranscribe ! fdsink
        [--precision fp32|fp16]                                  # the element's precision (CPU)
        [--segmentation fixed|vad]                               # fixed (default): each clip whole,
                                                                 # as NeMo gets it; vad: speech only
        [--pnc yes|no]                                           # the prompt's <|pnc|> (default yes, as the
                                                                 # element's default) or <|nopnc|>, both modes
  evaluate.py longform MODEL.nemo MANIFEST.jsonl OUT.jsonl --seconds 120 [--segmentation fixed|vad]
        # joins the manifest's clips into one file of at least --seconds, runs it
        # through `canarytranscribe ! webvttenc` (10 s windows, or VAD segments) and scores the
        # joined cues; with vad also the fraction of the audio that went to the model
  evaluate.py compare A.jsonl B.jsonl                          # how many transcripts are identical
  evaluate.py voices OUT.jsonl                                 # WER per voice (engine and voice name)

Element runs need the plugin on GST_PLUGIN_PATH (e.g. build/gst). Prints "WER x.xx % (errors/words)",
on normalised text (wer.py), and with --pnc yes also the WER of the written form (written.py),
where a capital or a mark that differs from the reference's is an error too.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from wer import edit_distance, wer  # noqa: E402

PIPE = ["filesrc", "location={wav}", "!", "decodebin", "!", "audioconvert", "!", "audioresample", "!",
        "canarytranscribe", "model-path={model}", "device=cpu"]


PRECISION = "fp32"
SEGMENTATION = "fixed"
PNC = "yes"
REPO = Path(__file__).resolve().parent.parent
# The build tree's plugin finds the VAD weights through this (tools/fetch-vad.sh puts them there).
os.environ.setdefault("CANARY_VAD_MODEL", str(REPO / "data" / "silero_vad_16k.safetensors"))


def gst(model, wav, tail, log=False):
    """The element's output on stdout; with `log`, also its debug log (stderr)."""
    args = (["gst-launch-1.0", "-q"] + [a.format(wav=wav, model=model) for a in PIPE]
            + [f"precision={PRECISION}", f"segmentation={SEGMENTATION}",
               f"pnc={'true' if PNC == 'yes' else 'false'}"] + tail)
    env = dict(os.environ, GST_DEBUG="canarytranscribe:6", GST_DEBUG_NO_COLOR="1") if log else None
    r = subprocess.run(args, check=True, capture_output=True, text=True, env=env)
    return (r.stdout, r.stderr) if log else r.stdout


def sent_samples(log):
    """Samples the element handed to the model, from its LOG lines ("... of N samples, text ...")."""
    return sum(int(m.group(1)) for m in re.finditer(r"(?:speech segment|window) of (\d+) samples", log))


def run_nemo(model_path, rows):
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    import torch
    from nemo.collections.asr.models import EncDecMultiTaskModel

    torch.set_num_threads(2)
    model = EncDecMultiTaskModel.restore_from(model_path, map_location="cpu")
    model.eval()
    # One clip per batch, as the element sends one window: a batch is padded to its longest clip,
    # and NeMo's generation cap (encoder length + max_generation_delta) grows with the padding.
    # Greedy decoding hardly notices; with the demo model's beam 4, batches of 16 changed 14 of
    # 100 test_unseen transcripts, and NeMo per clip then gave the element's on all 14.
    hyps = model.transcribe([r["audio_filepath"] for r in rows], batch_size=1, num_workers=0, verbose=False,
                            source_lang="en", target_lang="en", pnc=PNC)
    # batched transcribe() may keep the decoder's leading space; the element strips it
    return [(h.text if hasattr(h, "text") else h).strip() for h in hyps]


def report(rows, hyps, out):
    with open(out, "w") as f:
        for r, h in zip(rows, hyps):
            f.write(json.dumps({"audio_filepath": r["audio_filepath"], "voice": r.get("voice", ""),
                                "text": r["text"], "pred_text": h}) + "\n")
    e, n = wer((r["text"], h) for r, h in zip(rows, hyps))
    print(f"WER {100 * e / n:.2f} % ({e}/{n} words, {len(rows)} utterances), pnc={PNC}")
    if PNC == "yes":
        import written
        forms = written.written_forms()
        refs = [forms.get(r["text"]) for r in rows]
        pairs = [(ref, h.split()) for ref, h in zip(refs, hyps) if ref]
        e = sum(edit_distance(ref, hyp) for ref, hyp in pairs)
        n = sum(len(ref) for ref, _ in pairs)
        print(f"written-form WER {100 * e / n:.2f} % ({e}/{n} words, capitals and punctuation count)")
        print(f"written form exact: {sum(ref == hyp for ref, hyp in pairs)}/{len(pairs)}; "
              f"starts with a capital: {sum(bool(hyp) and hyp[0][:1].isupper() for _, hyp in pairs)}/{len(pairs)}")
        for mark in written.PUNCTUATION:
            # Per utterance, the marks both have (min of the counts), over the reference's count:
            # whether the model writes the marks the speech has, not where within the sentence.
            have = [(" ".join(ref).count(mark), " ".join(hyp).count(mark)) for ref, hyp in pairs]
            print(f"  {mark!r}: reference {sum(r for r, _ in have)}, transcripts {sum(h for _, h in have)}, "
                  f"in the same utterance {sum(min(r, h) for r, h in have)}")


def longform(model, rows, seconds, out):
    chosen, total = [], 0.0
    for r in rows:
        chosen.append(r)
        total += r["duration"]
        if total >= seconds:
            break
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "long.wav")
        # the clips carry 0.05-0.4 s of silence at each end: concatenated, sentences are 0.15-0.8 s apart
        subprocess.run(["sox"] + [r["audio_filepath"] for r in chosen] + [wav], check=True)
        vtt, log = gst(model, wav, ["!", "webvttenc", "!", "fdsink"], log=True)
        samples = int(subprocess.run(["soxi", "-s", wav], check=True, capture_output=True, text=True).stdout)
    cues = [l for l in vtt.splitlines() if l.strip() and "-->" not in l and l.strip() != "WEBVTT"
            and not re.fullmatch(r"\d+", l.strip())]
    ref = " ".join(r["text"] for r in chosen)
    hyp = " ".join(cues)
    with open(out, "w") as f:
        sent = sent_samples(log)
        json.dump({"seconds": round(total, 1), "clips": len(chosen), "segmentation": SEGMENTATION,
                   "text": ref, "pred_text": hyp, "samples": samples, "samples_to_model": sent,
                   "vtt": vtt}, f, indent=1)
    e, n = wer([(ref, hyp)])
    print(f"long-form {total:.1f} s from {len(chosen)} clips, {SEGMENTATION}: WER {100 * e / n:.2f} % "
          f"({e}/{n} words); {100 * sent / samples:.1f} % of the audio went to the model")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["nemo", "element", "longform", "compare", "voices"])
    ap.add_argument("a")
    ap.add_argument("b", nargs="?")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--precision", choices=["fp32", "fp16"], default="fp32", help="the element's precision")
    ap.add_argument("--segmentation", choices=["fixed", "vad"], default="fixed",
                    help="the element's segmentation")
    ap.add_argument("--pnc", choices=["yes", "no"], default="yes",
                    help="ask for punctuation and capitals (<|pnc|>) or normalised text (<|nopnc|>)")
    a = ap.parse_args()
    if a.mode != "voices" and a.b is None:
        ap.error(f"{a.mode} needs a second argument (see the usage above)")
    global PRECISION, SEGMENTATION, PNC
    PRECISION = a.precision
    SEGMENTATION = a.segmentation
    PNC = a.pnc
    if a.mode == "compare":
        x = [json.loads(l) for l in open(a.a)]
        y = {r["audio_filepath"]: r for r in map(json.loads, open(a.b))}
        same = [r for r in x if y[r["audio_filepath"]]["pred_text"] == r["pred_text"]]
        print(f"identical transcripts: {len(same)}/{len(x)}")
        for r in x:
            if y[r["audio_filepath"]]["pred_text"] != r["pred_text"]:
                print(f"  {Path(r['audio_filepath']).name}: {r['pred_text']!r} vs {y[r['audio_filepath']]['pred_text']!r}")
        return
    if a.mode == "voices":
        by_voice = {}
        for r in map(json.loads, open(a.a)):
            # "espeak-ng en-gb-x-gbcwmd+m7 -s150 -p50 reverb20" -> "espeak-ng en-gb-x-gbcwmd+m7"
            by_voice.setdefault(" ".join(r["voice"].split()[:2]), []).append((r["text"], r["pred_text"]))
        for v, pairs in sorted(by_voice.items()):
            e, n = wer(pairs)
            print(f"{v}: {len(pairs)} clips, WER {100 * e / n:.2f} % ({e}/{n})")
        return
    rows = [json.loads(l) for l in open(a.b)]
    if a.limit:
        rows = rows[: a.limit]
    if a.mode == "nemo":
        report(rows, run_nemo(a.a, rows), a.out)
    elif a.mode == "element":
        report(rows, [gst(a.a, r["audio_filepath"], ["!", "fdsink"]).strip() for r in rows], a.out)
    else:
        longform(a.a, rows, a.seconds, a.out)


if __name__ == "__main__":
    main()
