#!/usr/bin/env python3
"""NeMo reference outputs for the bundled demo model (a trained model: real words, real margins).

Dumps the same per-clip files as make_fixtures.py (mel, encoder output, beam-1/4 ids and text,
teacher-forced log-probs) for the clips in examples/audio/ that have a reference text, under
tests/fixtures/canary-demo/, and records them in manifest.json. The model itself is not copied:
tests/fixtures/canary-demo/model.nemo and tests/fixtures/audio/<clip>.wav are relative symlinks
to examples/models/canary-default.nemo and examples/audio/<clip>.wav.

Usage: make_demo_fixtures.py [--clips seen-voice-1,seen-voice-2,unseen-voice-1]
"""
import argparse
import json
import os
import shutil
from pathlib import Path

import make_fixtures as fx

REPO = fx.REPO
NAME = "canary-demo"


def link(path: Path, target: Path):
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(os.path.relpath(target, path.parent))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", default="seen-voice-1,seen-voice-2,unseen-voice-1")
    ap.add_argument("--tf-max-steps", type=int, default=64)
    a = ap.parse_args()
    fx.torch.set_num_threads(1)
    fx.torch.use_deterministic_algorithms(True)
    fx.nemo_logging.setLevel(fx.pylogging.ERROR)

    out = REPO / "tests" / "fixtures"
    src = REPO / "examples" / "models" / "canary-default.nemo"
    mdir = out / NAME
    shutil.rmtree(mdir, ignore_errors=True)
    mdir.mkdir(parents=True)
    link(mdir / "model.nemo", src)
    wavs = {}
    for c in a.clips.split(","):
        link(out / "audio" / f"{c}.wav", REPO / "examples" / "audio" / f"{c}.wav")
        wavs[c] = out / "audio" / f"{c}.wav"

    model = fx.restore(src)
    prompts = fx.make_prompts(model, langs=("en",))  # an English-only model
    (mdir / "prompts.json").write_text(json.dumps(prompts, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    info = {"source": "examples/models/canary-default.nemo (trained by training/, see docs/accuracy.md)",
            "config": fx.config_summary(model), "clips": {}}
    fx.dump_clips(NAME, model, mdir, wavs, a.tf_max_steps, prompts, info)

    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["models"][NAME] = info
    manifest["files"] = fx.list_files(out)
    manifest["total_bytes"] = sum(v["bytes"] for v in manifest["files"].values() if "symlink_to" not in v)
    manifest_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
