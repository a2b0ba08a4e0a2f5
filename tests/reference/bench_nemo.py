#!/usr/bin/env python3
"""NeMo's own CPU time for one 10 s window of a Canary-shaped model with random weights.

Builds NeMo's modules (preprocessor, ConformerEncoder, TransformerDecoderNM, TokenClassifier) at the
shape of a released model, then times, on the same machine as our engine's benchmark:
  - preprocessor + encoder on a 10 s window,
  - NeMo's own incremental decoder step (GreedySequenceGenerator._one_step_forward, the per-token
    path of its beam/greedy search) for a 9-token prompt plus a fixed number of generated tokens.
Random weights are fine: speed does not depend on the values. Run by hand (not in CI):

    /work/nemo-venv/bin/python tests/reference/bench_nemo.py --shape canary-1b-flash --threads 2
"""
import argparse
import json
import resource
import time

import torch

from nemo.collections.asr.modules import AudioToMelSpectrogramPreprocessor, ConformerEncoder
from nemo.collections.asr.modules.transformer.transformer import TransformerDecoderNM
from nemo.collections.asr.modules.transformer.transformer_generators import GreedySequenceGenerator
from nemo.collections.asr.parts.submodules.token_classifier import TokenClassifier

# Hyper-parameters of the released models (docs/MODEL.md, Released models).
SHAPES = {
    "canary-1b": dict(enc_layers=24, d_model=1024, dec_layers=24, hidden=1024, vocab=4128, max_len=512),
    "canary-1b-flash": dict(enc_layers=32, d_model=1024, dec_layers=4, hidden=1024, vocab=5248, max_len=1024),
    "canary-180m-flash": dict(enc_layers=17, d_model=512, dec_layers=4, hidden=1024, vocab=5248, max_len=1024),
}


def build(shape):
    s = SHAPES[shape]
    pre = AudioToMelSpectrogramPreprocessor(sample_rate=16000, normalize="per_feature", window_size=0.025,
                                            window_stride=0.01, window="hann", features=128, n_fft=512,
                                            log=True, frame_splicing=1, dither=0.0, pad_to=0, pad_value=0.0)
    enc = ConformerEncoder(feat_in=128, feat_out=-1, n_layers=s["enc_layers"], d_model=s["d_model"],
                           subsampling="dw_striding", subsampling_factor=8, subsampling_conv_channels=256,
                           ff_expansion_factor=4, self_attention_model="rel_pos", n_heads=8,
                           att_context_size=[-1, -1], xscaling=False, untie_biases=True, pos_emb_max_len=5000,
                           conv_kernel_size=9, conv_norm_type="batch_norm", dropout=0.0, dropout_pre_encoder=0.0,
                           dropout_emb=0.0, dropout_att=0.0)
    proj = torch.nn.Linear(s["d_model"], s["hidden"]) if s["d_model"] != s["hidden"] else torch.nn.Identity()
    dec = TransformerDecoderNM(vocab_size=s["vocab"], hidden_size=s["hidden"], num_layers=s["dec_layers"],
                               inner_size=4 * s["hidden"], num_attention_heads=8,
                               max_sequence_length=s["max_len"], num_token_types=0, hidden_act="relu",
                               pre_ln=True, pre_ln_final_layer_norm=True)
    head = TokenClassifier(hidden_size=s["hidden"], num_classes=s["vocab"], num_layers=1, log_softmax=True)
    for m in (pre, enc, proj, dec, head):
        m.eval()
    n_params = sum(p.numel() for m in (enc, proj, dec, head) for p in m.parameters())
    return pre, enc, proj, dec, head, n_params


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="canary-1b-flash", choices=sorted(SHAPES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    t0 = time.perf_counter()
    pre, enc, proj, dec, head, n_params = build(args.shape)
    build_s = time.perf_counter() - t0

    audio = torch.randn(1, 160000) * 0.1
    length = torch.tensor([160000])
    prompt = torch.arange(10, 19).unsqueeze(0)  # 9 tokens, like a canary2 prompt
    gen = GreedySequenceGenerator(embedding=dec.embedding, decoder=dec.decoder, classifier=head,
                                  max_sequence_length=SHAPES[args.shape]["max_len"], bos=4, pad=2, eos=3,
                                  max_delta_length=50)
    enc_times, dec_times = [], []
    with torch.inference_mode():
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            feats, flen = pre(input_signal=audio, length=length)
            e, elen = enc(audio_signal=feats, length=flen)
            e = proj(e.transpose(1, 2))
            enc_times.append(time.perf_counter() - t0)
            mask = torch.ones(1, e.shape[1])
            t0 = time.perf_counter()
            logits, mems = gen._one_step_forward(prompt, e, mask, None, 0)
            tok = logits[:, -1].argmax(-1, keepdim=True)
            for i in range(args.tokens - 1):
                logits, mems = gen._one_step_forward(tok, e, mask, mems, prompt.shape[1] + i)
                tok = logits[:, -1].argmax(-1, keepdim=True)
            dec_times.append(time.perf_counter() - t0)
    res = dict(shape=args.shape, threads=args.threads, params=n_params, tokens=args.tokens,
               build_s=round(build_s, 3), encoder_s=[round(x, 3) for x in enc_times],
               decoder_s=[round(x, 3) for x in dec_times],
               ms_per_token=round(1000 * min(dec_times) / args.tokens, 2),
               window_s=round(min(enc_times) + min(dec_times), 3),
               peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
               torch=torch.__version__)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
