#!/usr/bin/env python3
"""A real .nemo file at a released model's shape, with random weights, for the memory benchmark
(tools/canary-bench --load FILE --load-only; docs/benchmarks.md, CPU FP16): NeMo builds
EncDecMultiTaskModel with canary-1b's encoder and decoder (24 + 24 layers, d 1024, 8 heads,
subsampling channels 256) and writes it with its own save_to, so the engine loads it through the
same archive, checkpoint and binding code as a downloaded model. The tokenizer is the fixtures'
small aggregate one (a 256-piece English BPE): the vocabulary only sizes the embedding and the head
(1.4 k vs canary-1b's 4 128 rows of 1024), 0.3 % of the weights.

    tests/reference/.venv/bin/python tests/reference/make_bench_nemo.py OUT.nemo [--shape canary-1b]
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as fx  # noqa: E402
from nemo.collections.asr.models import EncDecMultiTaskModel  # noqa: E402

SHAPES = {  # as bench_nemo.py's (docs/MODEL.md, Released models)
    "canary-1b": dict(enc_layers=24, d_model=1024, dec_layers=24, hidden=1024, max_len=512),
    "canary-1b-flash": dict(enc_layers=32, d_model=1024, dec_layers=4, hidden=1024, max_len=1024),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--shape", default="canary-1b", choices=sorted(SHAPES))
    a = ap.parse_args()
    s = SHAPES[a.shape]
    spec = dict(prompt_format="canary2", enc_d=s["d_model"], dec_h=s["hidden"], max_seq_len=s["max_len"],
                tokenizer="agg2", langs={"en": 256}, seed=0)
    with tempfile.TemporaryDirectory() as work:
        tok = fx.build_tokenizers(spec, Path(work) / "tokenizer")
        cfg = fx.model_config(spec, tok)
        cfg["encoder"].update(n_layers=s["enc_layers"], n_heads=8, subsampling_conv_channels=256)
        cfg["transf_decoder"]["config_dict"].update(num_layers=s["dec_layers"], num_attention_heads=8)
        torch.manual_seed(0)
        with fx.quiet():
            model = EncDecMultiTaskModel(cfg=OmegaConf.create(cfg))
        model.eval()
        n = sum(p.numel() for p in model.parameters())
        model.save_to(str(a.out))
    print(f"{a.out}: {a.shape} shape, {n / 1e6:.1f} M parameters, {a.out.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
