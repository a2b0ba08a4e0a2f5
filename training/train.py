#!/usr/bin/env python3
"""Train the demo Canary model: NeMo's EncDecMultiTaskModel (canary2 prompt format, English
aggregate tokenizer, FastConformer + Transformer decoder: the layer types of the released
models) in a plain PyTorch loop on the synthetic corpus from synth.py.

Resumable across sessions: the loop saves OUT/last.pt every --save-minutes and at the end;
rerunning the same command continues from it (model, optimiser, schedule, step, RNG). When there is
no OUT/last.pt (a fresh machine) but --init names an existing .nemo (the committed demo model), the
weights start from it with a fresh optimiser and a short re-warmup; the step, epoch and hours reached
come from the .train.json written beside it at export, so the schedule (LR, clean steps, joined
segments) continues where the last session stopped instead of restarting.
`--export` writes the .nemo from the last checkpoint (NeMo's own save_to) and its .train.json, and exits.

Data: epoch 0 runs single utterances shortest-first (the alignment is learned on short clips);
from epoch --join-from-epoch on, half the training items are several utterances joined with
pauses into segments of up to --join-seconds, as the element's 10 s windows hold several
sentences and pauses. The variety split (synth.py) repeats training sentences in espeak-ng's
other voice variants, read from their written form, so that <|pnc|> commas and question marks
have pauses and rises to be heard in.

Usage:
  train.py WORK OUT_DIR [--steps N] [--hours H] [--batch-seconds S] [--threads 2] [--init M.nemo]
  train.py WORK OUT_DIR --export MODEL.nemo
WORK holds make_corpus.py's corpus/ and synth.py's audio/.
"""
import argparse
import json
import math
import os
import random
import sys
import time
import wave
from pathlib import Path
from typing import NamedTuple, Optional

import numpy as np
from scipy.signal import resample_poly

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import torch  # noqa: E402
from omegaconf import OmegaConf, open_dict  # noqa: E402

from nemo.collections.asr.models import EncDecMultiTaskModel  # noqa: E402
from nemo.collections.common.tokenizers.canary_tokenizer import CANARY_SPECIAL_TOKENIZER  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "reference"))
import make_fixtures as fx  # noqa: E402  (tokenizer builders and the base model config)
import written  # noqa: E402  (written forms and the cased tokenizer, for the <|pnc|> prompt)

# The demo model's shape. .nemo stays < 30 MB (fp32 weights, ~5 M parameters). No dropout: on two
# CPU cores the run sees each sentence only a few times, and dropout costs ~10 % of a step; the
# regularisers are voices, noise, reverberation and SpecAugment.
# 6 encoder layers (4.05 M parameters): leaves the CTC plateau at step ~1850 with the schedule
# below, where 8 layers with faster-decaying schedules never did (docs/accuracy.md). Grown to 8
# from the trained step-58 000 weights (--enc-layers 8, 5.10 M parameters) and trained 10 000
# steps more, it was no better on the dev sets (docs/accuracy.md, 2026-12-08 (2)): 6 it stays.
ENC_D, ENC_LAYERS, ENC_HEADS, SUB_CHANNELS = 144, 6, 4, 64
DEC_D, DEC_LAYERS, DEC_HEADS = 144, 2, 4
EN_VOCAB = 256  # subword units shared across words: ~14 examples per word is too few for word pieces
LABEL_SMOOTHING = 0.1
# Joint CTC-attention training: an auxiliary CTC head on the encoder output (training only, not
# exported) makes the encoder learn the alignment early, so the decoder's cross-attention does
# not have to discover it from scratch; it shortens the run on CPUs considerably.
CTC_WEIGHT = 0.5


def build_model(data: Path, work: Path, enc_layers=ENC_LAYERS):
    spec = dict(prompt_format="canary2", enc_d=ENC_D, dec_h=DEC_D, max_seq_len=512, tokenizer="agg2",
                langs={"en": EN_VOCAB}, seed=0)
    # fx.build_tokenizers trains the en BPE on fx.CORPUS["en"]: point it at our training text.
    fx.CORPUS = {"en": (data / "corpus" / "train.txt").read_text().splitlines()}
    tok = fx.build_tokenizers(spec, work / "tokenizer")
    # Capitals and punctuation for the <|pnc|> prompt: the lowercase BPE plus cased twins and marks
    # (written.py); the lowercase pieces keep their ids, so models trained before it still load.
    written.extend_tokenizer_dir(work / "tokenizer" / "en")
    cfg = fx.model_config(spec, tok)
    enc = cfg["encoder"]
    enc.update(n_layers=enc_layers, n_heads=ENC_HEADS, subsampling_conv_channels=SUB_CHANNELS,
               dropout=0.0, dropout_pre_encoder=0.0, dropout_att=0.0,
               # x·√d after subsampling (the released Canary models have it off). Trained from
               # scratch without it, the residual stream is soon dominated by input-independent
               # module outputs: three runs sat on the CTC plateau with encoder outputs for speech
               # and for white noise within 3 % of each other (see docs/accuracy.md).
               xscaling=True)
    dec = cfg["transf_decoder"]["config_dict"]
    dec.update(num_layers=DEC_LAYERS, num_attention_heads=DEC_HEADS, embedding_dropout=0.0, ffn_dropout=0.0,
               attn_score_dropout=0.0, attn_layer_dropout=0.0)
    cfg["spec_augment"].update(freq_masks=2, freq_width=20, time_masks=4, time_width=0.05)
    cfg["decoding"]["beam"]["max_generation_delta"] = 50
    # The model's own decoding setting, which NeMo's transcribe() and the element's default
    # (beam-size=0) both follow: beam 4. On the step-27 000 model through the element, 200
    # test_seen clips 15.59 % -> 12.89 % WER, long-form 120 s in fixed windows 16.84 -> 13.68 %;
    # a CPU step reads each weight once for all four hypotheses.
    cfg["decoding"]["beam"]["beam_size"] = 4
    cfg["label_smoothing"] = LABEL_SMOOTHING
    torch.manual_seed(0)
    with fx.quiet():
        model = EncDecMultiTaskModel(cfg=OmegaConf.create(cfg))
    return model


def prompt_ids(model, text, pnc):
    slots = {"source_lang": "<|en|>", "target_lang": "<|en|>", "pnc": "<|pnc|>" if pnc else "<|nopnc|>",
             "decodercontext": "", "emotion": "<|emo:undefined|>", "itn": "<|noitn|>",
             "timestamp": "<|notimestamp|>", "diarize": "<|nodiarize|>",
             model.prompt.PROMPT_LANGUAGE_SLOT: CANARY_SPECIAL_TOKENIZER}
    turns = [{"role": "user", "slots": slots},
             {"role": "assistant", "slots": {"text": text, model.prompt.PROMPT_LANGUAGE_SLOT: "en"}}]
    enc = model.prompt.encode_dialog(turns)
    return enc["input_ids"].tolist(), len(enc["context_ids"])


def load_split(data: Path, split):
    rows = [json.loads(l) for l in open(data / "audio" / f"{split}.jsonl")]
    audio = []
    for r in rows:
        with wave.open(r["audio_filepath"]) as w:
            audio.append(np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16))
    return rows, audio


class Item(NamedTuple):
    """A training item: utterances back to back (`utts`, indices), the first starting `t0` s into
    its audio and the last ending at `t1` s (None: its end), as a fixed window cuts speech."""
    utts: tuple
    t0: float = 0.0
    t1: Optional[float] = None


def load_spans(data: Path, split, n):
    """align.py's word times for a split (None per utterance where it has none)."""
    path = data / "audio" / f"{split}.align.jsonl"
    if not path.exists():
        return [None] * n
    spans = [json.loads(l)["spans"] for l in open(path)]
    if len(spans) != n:
        sys.exit(f"{path}: {len(spans)} lines for {n} utterances (rerun align.py)")
    return spans


def make_items(durations, rng, join, join_seconds, spans=None, cut_p=0.0, window_p=0.0):
    """Training items. Without `join`, one whole utterance each; with it, half the items join 2+
    random utterances (pauses added in `render_item`) into up to join_seconds of audio, the rest
    stay single and whole (dictation's short phrases, VAD's segments). A joined item starts inside
    its first utterance with probability cut_p, and ends inside its last with probability cut_p
    (uniformly over their audio, where `spans` has their word times): the element's fixed windows
    start and end anywhere. With probability window_p (where `spans` has word times) a joined
    item is instead what a fixed window sends: join_seconds of audio (pauses counted at their
    mean, 0.5 s) starting anywhere inside its first utterance, cut where the seconds run out."""
    order = list(range(len(durations)))
    rng.shuffle(order)
    items, k = [], 0
    while k < len(order):
        if not join or rng.random() < 0.5:
            items.append(Item((order[k],)))
            k += 1
            continue
        if spans is not None and window_p > 0 and rng.random() < window_p:
            item, k = window_item(durations, order, k, rng, join_seconds, spans)
            if item is not None:
                items.append(item)
            continue
        budget, cur = rng.uniform(4.0, join_seconds), [order[k]]
        total = durations[order[k]]
        k += 1
        while k < len(order) and total + 0.5 + durations[order[k]] <= budget:
            total += 0.5 + durations[order[k]]
            cur.append(order[k])
            k += 1
        item = Item(tuple(cur))
        if spans is not None:
            first, last = cur[0], cur[-1]
            t0 = rng.uniform(0, durations[first]) if spans[first] and rng.random() < cut_p else 0.0
            t1 = rng.uniform(0, durations[last]) if spans[last] and rng.random() < cut_p else None
            if len(cur) == 1 and t1 is not None and t1 <= t0:
                t1 = None
            cut = Item(item.utts, t0, t1)
            if any(cut_words(cut, j, spans) != [] for j in range(len(cur))):  # a word is left
                item = cut
        items.append(item)
    return items


def window_item(durations, order, k, rng, seconds, spans):
    """A fixed window over utterances order[k], order[k+1], ... (0.5 s pauses): it starts at a
    uniform point of the first and holds `seconds` of audio (less where the utterances run out);
    the last is cut where the window ends. Returns the item (None when no word is left in it)
    and the next k."""
    first = order[k]
    t0 = rng.uniform(0, durations[first]) if spans[first] else 0.0
    cur, total = [first], durations[first] - t0
    k += 1
    while k < len(order) and total < seconds:
        total += 0.5 + durations[order[k]]
        cur.append(order[k])
        k += 1
    t1 = None
    if total > seconds:  # the window ends inside the last utterance, or in the pause before it
        t1 = durations[cur[-1]] - (total - seconds)
        if t1 <= 0 or not spans[cur[-1]]:  # the next item starts with it instead
            cur.pop()
            k -= 1
            t1 = None
    if len(cur) == 1 and t1 is not None and t1 <= t0:
        return None, k
    item = Item(tuple(cur), t0, t1)
    if all(cut_words(item, j, spans) == [] for j in range(len(cur))):
        return None, k
    return item, k


def cut_words(item, j, spans):
    """Indices of the words of the item's j-th utterance that it holds: all, or for a cut first or
    last utterance those whose span's middle lies inside the cut."""
    i = item.utts[j]
    lo = item.t0 if j == 0 else 0.0
    hi = item.t1 if j == len(item.utts) - 1 and item.t1 is not None else math.inf
    if spans is None or spans[i] is None or (lo == 0.0 and hi == math.inf):
        return None  # whole: the caller takes the text as it is
    return [w for w, (s, e) in enumerate(spans[i]) if lo <= (s + e) / 2 <= hi]


def item_text(item, rows, spans, pnc=False):
    """The item's text: normalised, or with `pnc` its written form (written.py), word for word."""
    words = []
    for j, i in enumerate(item.utts):
        ws = rows[i]["written"] if pnc else rows[i]["text"].split()
        keep = cut_words(item, j, spans)
        words += ws if keep is None else [ws[w] for w in keep]
    return " ".join(words)


def item_seconds(item, durations):
    total = sum(durations[i] for i in item.utts) + 0.5 * (len(item.utts) - 1) - item.t0
    if item.t1 is not None:
        total -= durations[item.utts[-1]] - item.t1
    return total


def batches(durations, batch_seconds, rng, shuffle=True):
    """Length-bucketed batches of about batch_seconds of padded audio, in random order (or
    shortest first, without `shuffle`)."""
    order = sorted(range(len(durations)), key=lambda i: durations[i] + rng.uniform(0, 0.3))
    out, cur, longest = [], [], 0.0
    for i in order:
        longest2 = max(longest, durations[i])
        if cur and longest2 * (len(cur) + 1) > batch_seconds:
            out.append(cur)
            cur, longest2 = [], durations[i]
        cur.append(i)
        longest = longest2
    if cur:
        out.append(cur)
    if shuffle:
        rng.shuffle(out)
    return out


def render_item(item, audio, rng):
    """The utterances of an item back to back, each with its own gain (talkers and distances
    change within a window) and a pause of 0.1-1.0 s between them (the utterances carry their
    own 0.05-0.4 s of leading and trailing silence besides), cut at t0 and t1."""
    n = len(item.utts)
    if n == 1 and item.t0 == 0.0 and item.t1 is None:
        return audio[item.utts[0]]
    parts = []
    for j, i in enumerate(item.utts):
        x = audio[i]
        if j == n - 1 and item.t1 is not None:
            x = x[: int(item.t1 * 16000)]
        if j == 0:
            x = x[int(item.t0 * 16000):]
        if j:
            parts.append(np.zeros(int(rng.uniform(0.1, 1.0) * 16000), dtype=np.int16))
        g = 10 ** (rng.uniform(-6, 3) / 20) if n > 1 else 1.0
        parts.append(np.clip(x.astype(np.float32) * g, -32768, 32767).astype(np.int16))
    return np.concatenate(parts)


def speed_perturb(x, rng, p, max_change):
    """Resample by a factor of 1 +- max_change with probability p (Ko et al., "Audio augmentation
    for speech recognition", 2015): tempo, pitch and formants move together, as between a longer
    and a shorter vocal tract. The voices the model never heard are its largest error (test_unseen 46 % against
    test_seen 17 % on the same sentences at step 20 666); the TTS engines' own rate and pitch
    controls leave the formants where each voice has them. 0.85-1.15 (--speed-max 0.15), tried from
    step 58 000 to 67 000 for the worst unseen voice (ked_diphone, 49 % WER, worst on its fastest
    sentences), gave no gain (ked 50.9 %; docs/accuracy.md), so 0.9-1.1 stays the default."""
    if p <= 0 or rng.random() >= p:
        return x
    pct = int(round(max_change * 100))
    down = int(rng.integers(100 - pct, 100 + pct + 1))  # output length len(x) * 100 / down
    if down == 100:
        return x
    return resample_poly(x, 100, down).astype(np.float32)


class FormantWarp(torch.nn.Module):
    """Vocal tract length perturbation (Jaitly and Hinton, "Vocal Tract Length Perturbation (VTLP)
    improves speech recognition", 2013) on the preprocessor's log-mel features, then SpecAugment.
    Speed perturbation moves tempo, pitch and formants together; this moves the formants alone:
    the spectrum at f is read from f / alpha (alpha in 0.9-1.1, linear up to 80 % of Nyquist, then
    a straight line to Nyquist so the band's edge stays put), as between two speakers of one
    sentence at one pitch and pace. The warp is per item; the training loop sets `alphas` for each
    batch from its own seeded RNG (1.0: unchanged). Features are NeMo's per-feature normalised
    log-mels, so a bin moves with its normalised values, as in the paper's filterbank warp. No
    parameters: the model's state_dict is unchanged."""

    def __init__(self, spec_augment, n_mels, sample_rate):
        super().__init__()
        self.spec_augment = spec_augment
        import librosa  # a NeMo dependency: the same Slaney mel scale as its filterbank
        self.centres = librosa.mel_frequencies(n_mels=n_mels + 2, fmin=0.0, fmax=sample_rate / 2)[1:-1]
        self.nyquist = sample_rate / 2
        self.alphas = None

    def source_bins(self, alpha):
        """Fractional mel-bin index each output bin reads from."""
        f, f0, nyq = self.centres, 0.8 * self.nyquist, self.nyquist
        src = np.where(f <= f0, f / alpha, f0 / alpha + (f - f0) * (nyq - f0 / alpha) / (nyq - f0))
        return np.interp(src, f, np.arange(len(f)))

    def warp(self, spec, alpha):
        """spec: (n_mels, T), linear interpolation between neighbouring bins."""
        pos = torch.from_numpy(self.source_bins(alpha)).to(spec.dtype)
        lo = pos.floor().long().clamp(0, spec.shape[0] - 1)
        hi = (lo + 1).clamp(max=spec.shape[0] - 1)
        frac = (pos - lo.to(spec.dtype)).unsqueeze(1)
        return spec[lo] * (1 - frac) + spec[hi] * frac

    def forward(self, input_spec, length):
        if self.alphas is not None:
            input_spec = torch.stack([self.warp(input_spec[j], a) if a != 1.0 else input_spec[j]
                                      for j, a in enumerate(self.alphas)])
        return self.spec_augment(input_spec=input_spec, length=length)


def augment(x, rng, speed_max, noise=True, speed_p=0.0):
    """Speed perturbation, then gain and additive noise (white or brown) at 5-40 dB SNR on half
    the utterances."""
    x = speed_perturb(x.astype(np.float32) / 32768.0, rng, speed_p, speed_max)
    if noise and rng.random() < 0.5:
        p = float(np.mean(x * x)) + 1e-10
        snr = rng.uniform(5, 40)
        n = rng.standard_normal(len(x)).astype(np.float32)
        if rng.random() < 0.5:
            n = np.cumsum(n)
            k = min(400, len(n))  # a cut item can be shorter than the kernel ("same" then returns 400)
            n -= np.convolve(n, np.ones(k) / k, mode="same")  # brown, detrended
        n *= math.sqrt(p / (10 ** (snr / 10)) / (float(np.mean(n * n)) + 1e-10))
        x = x + n
    x *= 10 ** (rng.uniform(-10, 6) / 20)
    return np.clip(x, -1, 1)


def lr_at(step, peak, warmup, progress):
    """Linear warmup, then cosine decay to 1e-5 over `progress` (0..1 of the run)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, progress)
    return 1e-5 + (peak - 1e-5) * 0.5 * (1 + math.cos(math.pi * t))


def progress_path(nemo: Path) -> Path:
    """Where the schedule position of an exported model is kept: beside it, so it travels in git."""
    return nemo.with_suffix(".train.json")


def ctc_path(nemo: Path) -> Path:
    """The training-only CTC head, kept beside an exported model (0.8 MB) so that a fresh machine
    resumes with it and align.py can run before the first checkpoint."""
    return nemo.with_suffix(".ctc.pt")


def vocabulary(model):
    tok = model.tokenizer
    return [tok.ids_to_tokens([i])[0] for i in range(tok.vocab_size)]


# A new piece's output bias starts this far below the row it was copied from, so that a model
# trained before the cased tokenizer keeps writing what it wrote (e^-8: 0.03 % of the twin's
# probability) until the <|pnc|> items teach it the capitals.
NEW_PIECE_BIAS = 8.0


def widen_vocabulary(model, old_state, old_ctc, n_old):
    """Weights trained with the lowercase BPE (the first n_old ids of the model's vocabulary) loaded
    into the model with the cased one (written.py): the old rows as they were; a cased twin starts
    as its lowercase piece, a punctuation mark as EOS (it ends a sentence or a clause), each with
    its output bias NEW_PIECE_BIAS lower (embedding and output weights are one tied matrix); the
    rows NeMo pads the vocabulary with (to a multiple of 8) at weight 0 and bias -20, never
    written; the CTC head's blank (its last row) moves to its new index. Returns the CTC state."""
    vocab = vocabulary(model)
    n_new = len(vocab)
    en0 = model.tokenizer.token_id_offset["en"]
    en_ids = {p: i for i, p in enumerate(vocab) if i >= en0}
    src = []
    for p in vocab[n_old:]:
        if p in written.PUNCTUATION:
            src.append(model.tokenizer.eos_id)
        else:
            k = 1 if p.startswith("\u2581") else 0
            src.append(en_ids[p[:k] + p[k].lower() + p[k + 1:]])
    src = torch.tensor(src)
    target = model.state_dict()
    state = {}
    for k, v in old_state.items():
        t = target[k]
        if v.shape == t.shape:
            state[k] = v
            continue
        if v.shape[1:] != t.shape[1:] or v.shape[0] != n_old:
            sys.exit(f"{k}: {tuple(v.shape)} does not widen to {tuple(t.shape)}")
        w = torch.zeros_like(t)
        w[:n_old] = v
        w[n_old:n_new] = v[src]
        if k.endswith("bias"):
            w[n_old:n_new] -= NEW_PIECE_BIAS
            w[n_new:] = -20.0
        state[k] = w
    model.load_state_dict(state)
    if old_ctc is None:
        return None
    ctc = {}
    for k, v in old_ctc.items():  # rows: n_old tokens, then the blank
        w = torch.cat([v[:n_old], v[src], v[n_old:]])
        if k.endswith("bias"):
            w[n_old:n_new] -= NEW_PIECE_BIAS
        ctc[k] = w
    return ctc


def state_vocab(model_state):
    """Rows of a state_dict's output head: its vocabulary size (NeMo's padding included)."""
    return model_state["log_softmax.mlp.layer0.bias"].shape[0]


def encoder_layers(model_state):
    """How many Conformer layers a state_dict's encoder has."""
    return len({k.split(".")[2] for k in model_state if k.startswith("encoder.layers.")})


# The modules whose output is added to a Conformer layer's residual stream: zeroed in a new layer,
# it passes its input on unchanged up to its closing LayerNorm.
RESIDUAL_OUTPUTS = ("feed_forward1.linear2", "self_attn.linear_out", "conv.pointwise_conv2",
                    "feed_forward2.linear2")


def grow_encoder(model, old_state):
    """A state_dict of `model` from the weights of a model with fewer encoder layers: the old
    layers as they were, then new layers (fresh weights, their residual outputs zeroed) that start
    as the identity, so that training continues from the old model's outputs instead of from noise.
    A layer ends in a LayerNorm (norm_out), which would re-normalise the stream it is given; the
    old last layer's gain and shift therefore move to the new last layer, and the LayerNorms
    between are plain (gain 1, shift 0): the old last layer emits a normalised stream, each new
    layer re-normalises it to itself (up to LayerNorm's eps), and the last applies the old gain
    and shift. Exact up to that eps (the encoder's output differed by 3.9e-6 relative on an
    example clip, 6 -> 8 layers)."""
    n_old, n_new = encoder_layers(old_state), encoder_layers(model.state_dict())
    state = dict(model.state_dict())
    state.update(old_state)
    last_old, last_new = f"encoder.layers.{n_old - 1}.norm_out", f"encoder.layers.{n_new - 1}.norm_out"
    gain, shift = old_state[last_old + ".weight"].clone(), old_state[last_old + ".bias"].clone()
    for i in range(n_old - 1, n_new):
        state[f"encoder.layers.{i}.norm_out.weight"] = torch.ones_like(gain)
        state[f"encoder.layers.{i}.norm_out.bias"] = torch.zeros_like(shift)
    for i in range(n_old, n_new):
        for m in RESIDUAL_OUTPUTS:
            for t in ("weight", "bias"):
                key = f"encoder.layers.{i}.{m}.{t}"
                state[key] = torch.zeros_like(state[key])
    state[last_new + ".weight"], state[last_new + ".bias"] = gain, shift
    print(f"encoder grown {n_old} -> {n_new} layers (the new ones start as the identity)", flush=True)
    return state


def load_weights(model, model_state, ctc_state=None):
    """Loads a state_dict (and its CTC head's, or None) into `model`, grown where it has fewer
    encoder layers and widened where it was trained before the cased tokenizer; returns the CTC
    state to load into the model's head."""
    have, want = encoder_layers(model_state), encoder_layers(model.state_dict())
    if have > want:
        sys.exit(f"the weights have {have} encoder layers, the model {want}: pass --enc-layers {have}")
    if have < want:
        model_state = grow_encoder(model, model_state)
    n_old = state_vocab(model_state)
    if n_old != state_vocab(model.state_dict()):
        print(f"vocabulary widened {n_old} -> {len(vocabulary(model))} (cased pieces and punctuation)", flush=True)
        return widen_vocabulary(model, model_state, ctc_state, n_old)
    model.load_state_dict(model_state)
    return ctc_state


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--hours", type=float, default=0.0,
                    help="training-time budget: the schedule ends at --steps or after this many hours, "
                         "whichever comes first (0: steps only)")
    ap.add_argument("--batch-seconds", type=float, default=60.0)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--schedule-from", type=int, default=0,
                    help="warm restart: the LR schedule (warmup, then cosine to --steps) starts at this "
                         "step instead of 0, so a run whose cosine has ended can continue at a new peak")
    ap.add_argument("--init", type=Path,
                    help="a .nemo to start from when OUT/last.pt does not exist (fresh optimiser)")
    ap.add_argument("--init-warmup", type=int, default=200, help="warmup steps when starting from --init")
    ap.add_argument("--join-from-epoch", type=int, default=2)
    ap.add_argument("--join-seconds", type=float, default=10.0)
    ap.add_argument("--clean-steps", type=int, default=3000,
                    help="curriculum: no added noise and no SpecAugment for the first N steps")
    ap.add_argument("--cut-p", type=float, default=0.5,
                    help="probability that a joined item starts (and, independently, ends) inside an "
                         "utterance, where align.py's word times say which words it keeps")
    ap.add_argument("--window-p", type=float, default=0.5,
                    help="probability that a joined item is a whole fixed window of --join-seconds, cut "
                         "at both ends as the element's windows are (needs align.py's word times)")
    ap.add_argument("--speed-p", type=float, default=0.5,
                    help="probability of speed perturbation (resampling by 1 +- --speed-max) per item, after --clean-steps")
    ap.add_argument("--speed-max", type=float, default=0.1,
                    help="largest relative speed change of the perturbation (0.15 from step 58 000 to 67 000)")
    ap.add_argument("--vtlp-p", type=float, default=0.5,
                    help="probability of a formant warp (VTLP) per item, after --clean-steps")
    ap.add_argument("--vtlp-max", type=float, default=0.15,
                    help="formant warp factors drawn from 1 +- this (0.1 up to step 41 000, then 0.15)")
    ap.add_argument("--enc-layers", type=int, default=ENC_LAYERS,
                    help="encoder layers; more than the --init model or checkpoint has grows it (grow_encoder); "
                         "a run that grew must be resumed and exported with the same value")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-minutes", type=float, default=10.0)
    ap.add_argument("--export", type=Path)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train-split", default="train,extra,variety",
                    help="comma-separated manifests under WORK/audio to train on (a missing one is skipped "
                         "with a note: extra.jsonl and variety.jsonl came later than train.jsonl)")
    ap.add_argument("--log-every", type=int, default=50)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)

    model = build_model(a.data, a.out, a.enc_layers)
    ckpt_path = a.out / "last.pt"
    state = torch.load(ckpt_path, weights_only=False) if ckpt_path.exists() else None
    init_from = None  # (step, epoch, train_seconds) of the --init model, when starting from it
    init_ctc = None  # the CTC head's state when starting from --init (or a widened checkpoint)
    if state and (state_vocab(state["model"]) != state_vocab(model.state_dict())
                  or encoder_layers(state["model"]) != encoder_layers(model.state_dict())):
        # A checkpoint of a run from before the cased tokenizer or with fewer encoder layers: its
        # weights, widened or grown, with a fresh optimiser (the moment estimates have the old
        # shapes) and a re-warmup, as from --init. Exporting it as it is would lose its step.
        if a.export:
            sys.exit(f"{ckpt_path}: {encoder_layers(state['model'])} encoder layers and "
                     f"{state_vocab(state['model'])} outputs, the model {encoder_layers(model.state_dict())} and "
                     f"{state_vocab(model.state_dict())}: export with the --enc-layers it was trained with")
        init_ctc = load_weights(model, state["model"], state["ctc_head"])
        init_from = (state["step"], state["epoch"] + 1, state["train_seconds"])
        print(f"{ckpt_path}: step {state['step']}, widened or grown (fresh optimiser)", flush=True)
        state = None
    elif state:
        model.load_state_dict(state["model"])
    elif a.init and a.init.exists() and not a.export:
        with fx.quiet():
            init = EncDecMultiTaskModel.restore_from(str(a.init), map_location="cpu")
        # The BPE is retrained from the corpus on every machine: the weights only mean something if
        # it came out piece for piece the same (same corpus, same seed).
        # A model trained before the cased tokenizer (written.py) has its first ids: it is widened.
        old_vocab = vocabulary(init)
        if vocabulary(model)[: len(old_vocab)] != old_vocab:
            sys.exit(f"{a.init}: its tokenizer differs from the one built from {a.data / 'corpus'}")
        init_ctc = load_weights(model, init.state_dict(),
                                torch.load(ctc_path(a.init)) if ctc_path(a.init).exists() else None)
        pp = progress_path(a.init)
        done = json.loads(pp.read_text()) if pp.exists() else {"step": 0, "epoch": 0, "train_seconds": 0.0}
        init_from = (done["step"], done["epoch"] + 1, done["train_seconds"])  # a fresh epoch: its position is lost
        print(f"weights from {a.init} at step {done['step']} (fresh optimiser, re-warmup {a.init_warmup})",
              flush=True)
    if a.export:
        model.eval()
        model.save_to(str(a.export))
        step_, epoch_, secs = (state["step"], state["epoch"], state["train_seconds"]) if state else (0, 0, 0.0)
        if state:
            torch.save(state["ctc_head"], ctc_path(a.export))
        progress_path(a.export).write_text(json.dumps(
            {"step": step_, "epoch": epoch_, "train_seconds": round(secs, 1)}, indent=1) + "\n")
        print(f"exported step {step_} to {a.export}")
        return

    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {n_params / 1e6:.2f} M", flush=True)
    rows, audio, spans = [], [], []
    for split in a.train_split.split(","):
        if not (a.data / "audio" / f"{split}.jsonl").exists():
            print(f"no {split}.jsonl: training without it", flush=True)
            continue
        r, x = load_split(a.data, split)
        rows += r
        audio += x
        spans += load_spans(a.data, split, len(r))
        print(f"{split}: {len(r)} utterances, {sum(len(w) for w in x) / 16000 / 3600:.2f} h", flush=True)
    forms = written.written_forms()
    for r in rows:
        if r["text"] not in forms:
            sys.exit(f"{r['audio_filepath']}: no written form of {r['text']!r} (written.py)")
        r["written"] = forms[r["text"]]
    durs = [len(x) / 16000 for x in audio]
    have_spans = any(sp is not None for sp in spans)
    print(f"word times (align.py) for {sum(sp is not None for sp in spans)}/{len(rows)} utterances: "
          f"{'joined items cut with p ' + str(a.cut_p) + ' per end' if have_spans else 'no cuts'}", flush=True)
    enc_cache = {}

    def ids_for(item, pnc):
        """The prompt and answer ids: <|pnc|> answered with the written form, <|nopnc|> with the
        normalised one, as Canary is trained."""
        if item != Item(item.utts[:1]):  # joined or cut items are drawn anew every epoch
            return prompt_ids(model, item_text(item, rows, spans, pnc), pnc)
        key = (item.utts[0], pnc)
        if key not in enc_cache:
            enc_cache[key] = prompt_ids(model, item_text(item, rows, spans, pnc), pnc)
        return enc_cache[key]

    ctc_head = torch.nn.Linear(DEC_D, model.tokenizer.vocab_size + 1)  # last index: blank
    blank = model.tokenizer.vocab_size
    params = list(model.parameters()) + list(ctc_head.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.98), weight_decay=1e-3)
    step, epoch, pos, train_s = 0, 0, 0, 0.0
    rewarm_from = None
    rng = np.random.default_rng(a.seed)
    if init_from:
        step, epoch, train_s = init_from
        rewarm_from = step
        rng = np.random.default_rng([a.seed, step])  # not the first session's draws again
    if init_ctc is not None:
        ctc_head.load_state_dict(init_ctc)
    if state:
        ctc_head.load_state_dict(state["ctc_head"])
        opt.load_state_dict(state["optimizer"])
        step, epoch, pos, train_s = state["step"], state["epoch"], state["pos"], state["train_seconds"]
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed at step {step} (epoch {epoch}, {train_s / 3600:.2f} h trained)", flush=True)

    def save():
        tmp = a.out / "last.pt.tmp"
        torch.save({"model": model.state_dict(), "ctc_head": ctc_head.state_dict(), "optimizer": opt.state_dict(), "step": step, "epoch": epoch,
                    "pos": pos, "train_seconds": train_s, "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state()}, tmp)
        os.replace(tmp, ckpt_path)

    def progress(step_, seconds):
        p = (step_ - a.schedule_from - a.warmup) / max(1, a.steps - a.schedule_from - a.warmup)
        if a.hours > 0:
            p = max(p, seconds / (a.hours * 3600))
        return p

    spec_augment = FormantWarp(model.spec_augmentation, model.cfg.preprocessor.features,
                               model.cfg.preprocessor.sample_rate)
    model.train()
    last_save, t_log, loss_acc, tok_acc, ctc_acc = time.time(), time.time(), 0.0, 0, 0.0
    while step < a.steps and progress(step, train_s) < 1.0:
        erng = random.Random(f"{a.seed}/{epoch}")
        items = make_items(durs, erng, epoch >= a.join_from_epoch, a.join_seconds,
                           spans if have_spans else None, a.cut_p, a.window_p)
        item_durs = [item_seconds(it, durs) for it in items]
        plan = [[items[k] for k in b] for b in batches(item_durs, a.batch_seconds, erng, shuffle=epoch > 0)]
        while pos < len(plan) and step < a.steps and progress(step, train_s) < 1.0:
            t0 = time.time()
            idx = plan[pos]
            clean = step < a.clean_steps
            model.spec_augmentation = None if clean else spec_augment
            spec_augment.alphas = [float(rng.uniform(1 - a.vtlp_max, 1 + a.vtlp_max)) if rng.random() < a.vtlp_p else 1.0
                                   for _ in idx]
            waves = [augment(render_item(it, audio, rng), rng, noise=not clean,
                             speed_p=0.0 if clean else a.speed_p, speed_max=a.speed_max) for it in idx]
            lens = torch.tensor([len(w) for w in waves])
            sig = torch.zeros(len(idx), int(lens.max()))
            for j, w in enumerate(waves):
                sig[j, : len(w)] = torch.from_numpy(w)
            seqs = [ids_for(i, bool(rng.random() < 0.5)) for i in idx]
            L = max(len(s) for s, _ in seqs)
            tokens = torch.full((len(idx), L), model.tokenizer.pad_id, dtype=torch.long)
            mask = torch.zeros(len(idx), L - 1, dtype=torch.bool)
            for j, (s, n_ctx) in enumerate(seqs):
                tokens[j, : len(s)] = torch.tensor(s)
                mask[j, n_ctx - 1 : len(s) - 1] = True  # predict the answer (text + EOS) only
            tok_lens = torch.tensor([len(s) - 1 for s, _ in seqs])
            for g in opt.param_groups:
                lr = lr_at(max(0, step - a.schedule_from), a.lr, a.warmup, progress(step, train_s))
                if rewarm_from is not None:  # a fresh optimiser has no moment estimates yet
                    lr *= min(1.0, (step - rewarm_from + 1) / a.init_warmup)
                g["lr"] = lr
            log_probs, enc_len, enc_states, _ = model(input_signal=sig, input_signal_length=lens,
                                       transcript=tokens[:, :-1], transcript_length=tok_lens)
            labels = tokens[:, 1:]
            nll = -log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
            smooth = -log_probs[..., : model.tokenizer.vocab_size].mean(-1)
            per_tok = (1 - LABEL_SMOOTHING) * nll + LABEL_SMOOTHING * smooth
            loss = (per_tok * mask).sum() / mask.sum()
            ctc_lp = torch.log_softmax(ctc_head(enc_states), -1).transpose(0, 1)
            targets = [torch.tensor(s[n_ctx:-1]) for s, n_ctx in seqs]  # text ids, no EOS
            ctc = torch.nn.functional.ctc_loss(ctc_lp, torch.cat(targets), enc_len,
                                               torch.tensor([len(t) for t in targets]), blank=blank,
                                               reduction="mean", zero_infinity=True)
            loss = (1 - CTC_WEIGHT) * loss + CTC_WEIGHT * ctc
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            pos += 1
            train_s += time.time() - t0
            loss_acc += float((nll * mask).sum())
            tok_acc += int(mask.sum())
            ctc_acc += float(ctc)
            if step % a.log_every == 0:
                print(f"step {step} epoch {epoch} nll/token {loss_acc / tok_acc:.3f} "
                      f"ctc {ctc_acc / a.log_every:.3f} lr {opt.param_groups[0]['lr']:.2e} {(time.time() - t_log) / a.log_every:.2f} s/step "
                      f"trained {train_s / 3600:.2f} h", flush=True)
                loss_acc, tok_acc, ctc_acc, t_log = 0.0, 0, 0.0, time.time()
            if time.time() - last_save > a.save_minutes * 60:
                save()
                last_save = time.time()
        if pos >= len(plan):
            epoch, pos = epoch + 1, 0
    save()
    print(f"done: {step} steps, {train_s / 3600:.2f} h", flush=True)


if __name__ == "__main__":
    main()
