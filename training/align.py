#!/usr/bin/env python3
"""Word times of the training utterances, by CTC forced alignment with the training run's own CTC
head, so that train.py can cut utterances mid-sentence the way the element's fixed 10 s windows
do (a window starts and ends anywhere) and still label the cut audio with the words it holds.

For each utterance: the encoder (eval mode) and the CTC head give per-frame log-probabilities;
the Viterbi path of the transcript's tokens through them (blanks between, CTC's topology) puts
every token on frames; a word's spikes are its tokens' frames. CTC spikes are narrow, so a word's
span is widened to the midpoints between its spikes and its neighbours' (the first and last words
by 0.1 s): the spans tile the speech, and a cut keeps the words whose span's middle it holds.

Usage: align.py WORK CKPT [--splits train,extra,variety] [--reuse DIR] [--save DIR]
CKPT: train.py's last.pt, or an exported .nemo with its .ctc.pt beside it.
Writes WORK/audio/<split>.align.jsonl: one line per manifest row, {"spans": [[start_s, end_s],
...]} with one span per word of its text, or {"spans": null} where no path exists (fewer frames
than the transcript needs) or the word pieces do not match the words.

Aligning the 46 836 training utterances took 19 min of the 2-core machine, on every fresh
machine: synthesis is seeded, so the committed training/alignments/<split>.align.jsonl.xz (made
with --save from a machine's alignment) hold the spans of the same rows. --reuse DIR takes a
row's spans from there when its clip name, duration and text all match the manifest's; only the
other rows are aligned (all of them where the synthesis came out different). --save DIR writes
WORK/audio/<split>.align.jsonl, keyed by those three, to DIR, and aligns nothing.
"""
import argparse
import json
import lzma
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train as tr  # noqa: E402  (the model's shape, tokenizer and prompt, exactly as trained)
import torch  # noqa: E402


def viterbi(lp, targets, blank):
    """Best CTC path of `targets` through log-probs lp [T, V]: the frame each token is emitted on
    first and last (lists of len(targets)), or None when no path exists."""
    T, L = lp.shape[0], len(targets)
    ext = np.full(2 * L + 1, blank)
    ext[1::2] = targets
    S = len(ext)
    skip = np.zeros(S, dtype=bool)  # s may come from s-2: a token after a different token
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    e = lp[:, ext]
    alpha = np.full(S, -np.inf)
    alpha[0] = e[0, 0]
    if S > 1:
        alpha[1] = e[0, 1]
    back = np.zeros((T, S), dtype=np.int8)  # 0: stay, 1: from s-1, 2: from s-2
    for t in range(1, T):
        stay, one = alpha, np.concatenate(([-np.inf], alpha[:-1]))
        two = np.where(skip, np.concatenate(([-np.inf, -np.inf], alpha[:-2])), -np.inf)
        cand = np.stack([stay, one, two])
        back[t] = np.argmax(cand, 0)
        alpha = cand.max(0) + e[t]
    ends = [S - 1, S - 2] if S > 1 else [0]
    s = max(ends, key=lambda k: alpha[k])
    if not np.isfinite(alpha[s]):
        return None
    first, last = [None] * L, [None] * L
    for t in range(T - 1, -1, -1):
        if s % 2 == 1:
            k = s // 2
            first[k] = t
            if last[k] is None:
                last[k] = t
        s -= int(back[t, s])
    return first, last


def word_spans(pieces, first, last, frame_s, duration):
    """Spans in seconds of the words the pieces spell ("▁" starts a word), or None."""
    starts = [i for i, p in enumerate(pieces) if p.startswith("▁")]
    if not starts or starts[0] != 0:
        return None
    bounds = starts + [len(pieces)]
    spikes = [(first[a] * frame_s, (last[b - 1] + 1) * frame_s) for a, b in zip(bounds, bounds[1:])]
    spans = []
    for k, (s, e) in enumerate(spikes):
        lo = max(0.0, s - 0.1) if k == 0 else (spikes[k - 1][1] + s) / 2
        hi = min(duration, e + 0.1) if k == len(spikes) - 1 else (e + spikes[k + 1][0]) / 2
        spans.append([round(lo, 3), round(hi, 3)])
    return spans


def row_key(row):
    """What identifies a synthesised utterance across machines: its clip, duration and text."""
    return "/".join(Path(row["audio_filepath"]).parts[-2:]), round(float(row["duration"]), 4), row["text"]


def load_saved(path):
    """--save's file as {row_key: spans}; empty when there is none."""
    if not path.exists():
        return {}
    with lzma.open(path, "rt") as f:
        return {tuple(d["key"]): d["spans"] for d in map(json.loads, f)}


def save(work, split, out_dir):
    rows = [json.loads(l) for l in open(work / "audio" / f"{split}.jsonl")]
    spans = [json.loads(l)["spans"] for l in open(work / "audio" / f"{split}.align.jsonl")]
    if len(spans) != len(rows):
        sys.exit(f"{split}: {len(spans)} alignments for {len(rows)} rows")
    out_dir.mkdir(parents=True, exist_ok=True)
    with lzma.open(out_dir / f"{split}.align.jsonl.xz", "wt", preset=9) as f:
        for r, sp in zip(rows, spans):
            f.write(json.dumps({"key": list(row_key(r)), "spans": sp}) + "\n")
    print(f"{split}: {len(rows)} rows saved to {out_dir}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("ckpt", type=Path)
    ap.add_argument("--splits", default="train,extra,variety")
    ap.add_argument("--batch-seconds", type=float, default=120.0)
    ap.add_argument("--reuse", type=Path, help="take matching rows' spans from DIR/<split>.align.jsonl.xz")
    ap.add_argument("--save", type=Path, help="write the existing alignments to DIR, keyed; align nothing")
    a = ap.parse_args()
    if a.save:
        for split in a.splits.split(","):
            save(a.work, split, a.save)
        return
    torch.set_num_threads(2)
    model = tr.build_model(a.work, a.work / "run")
    ctc_head = torch.nn.Linear(tr.DEC_D, model.tokenizer.vocab_size + 1)
    if a.ckpt.suffix == ".nemo":
        with tr.fx.quiet():
            sd = tr.EncDecMultiTaskModel.restore_from(str(a.ckpt), map_location="cpu").state_dict()
        ctc_head.load_state_dict(tr.load_weights(model, sd, torch.load(tr.ctc_path(a.ckpt))))
    else:
        state = torch.load(a.ckpt, weights_only=False)
        ctc_head.load_state_dict(tr.load_weights(model, state["model"], state["ctc_head"]))
    model.eval()
    blank = model.tokenizer.vocab_size
    frame_s = model.cfg.preprocessor.window_stride * model.encoder.subsampling_factor
    piece = lambda i: model.tokenizer.ids_to_tokens([i])[0]
    for split in a.splits.split(","):
        rows, audio = tr.load_split(a.work, split)
        durs = [len(x) / 16000 for x in audio]
        out = [None] * len(rows)
        t0, ok = time.time(), 0
        saved = load_saved(a.reuse / f"{split}.align.jsonl.xz") if a.reuse else {}
        todo = []
        for i, r in enumerate(rows):
            k = row_key(r)
            if k in saved:
                out[i] = saved[k]
                ok += out[i] is not None
            else:
                todo.append(i)
        if saved:
            print(f"{split}: {len(rows) - len(todo)}/{len(rows)} rows' spans reused from {a.reuse}", flush=True)
        for bt in tr.batches([durs[i] for i in todo], a.batch_seconds, np.random.default_rng(0), shuffle=False):
            b = [todo[j] for j in bt]
            lens = torch.tensor([len(audio[i]) for i in b])
            sig = torch.zeros(len(b), int(lens.max()))
            for j, i in enumerate(b):
                sig[j, : len(audio[i])] = torch.from_numpy(audio[i].astype(np.float32) / 32768.0)
            seqs = [tr.prompt_ids(model, rows[i]["text"], False) for i in b]
            with torch.no_grad():
                bos = torch.tensor([[s[0]] for s, _ in seqs])
                _, enc_len, enc_states, _ = model(input_signal=sig, input_signal_length=lens,
                                                  transcript=bos, transcript_length=torch.ones(len(b), dtype=torch.long))
                lp = torch.log_softmax(ctc_head(enc_states), -1).numpy()
            for j, i in enumerate(b):
                s, n_ctx = seqs[j]
                targets = np.array(s[n_ctx:-1])
                path = viterbi(lp[j, : int(enc_len[j])], targets, blank)
                spans = None
                if path is not None:
                    spans = word_spans([piece(int(t)) for t in targets], *path, frame_s, durs[i])
                if spans is not None and len(spans) != len(rows[i]["text"].split()):
                    spans = None
                out[i] = spans
                ok += spans is not None
        with open(a.work / "audio" / f"{split}.align.jsonl", "w") as f:
            for spans in out:
                f.write(json.dumps({"spans": spans}) + "\n")
        print(f"{split}: {ok}/{len(rows)} utterances aligned, {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
