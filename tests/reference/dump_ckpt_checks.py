#!/usr/bin/env python3
"""Dumps torch's own view of each fixture's model_weights.ckpt into tests/fixtures/ckpt_checks.json.

test_ckpt compares our checkpoint reader against these numbers: keys in state-dict order, dtype,
shape, stride, storage offset, float64 sum and abs-sum, the first and last elements, and which
entries share a storage (tied weights). Every number comes from torch.load, never from our code.

Run by hand with the NeMo venv after the fixtures change:
    /work/nemo-venv/bin/python tests/reference/dump_ckpt_checks.py
"""
import argparse
import io
import json
import tarfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
MODELS = ("canary1-tiny", "canary2-tiny", "canary2-unified-tiny")


def load_state_dict(nemo_path):
    with tarfile.open(nemo_path, "r:") as tar:
        for m in tar.getmembers():
            if m.name.lstrip("./") == "model_weights.ckpt":
                data = tar.extractfile(m).read()
                break
        else:
            raise SystemExit(f"{nemo_path}: no model_weights.ckpt")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def describe(name, t):
    flat = t.detach().reshape(-1)
    d = {
        "name": name,
        "dtype": str(t.dtype).replace("torch.", ""),
        "shape": list(t.shape),
        "stride": list(t.stride()),
        "storage_offset": int(t.storage_offset()),
        "storage_numel": int(t.untyped_storage().nbytes() // t.element_size()),
    }
    if flat.numel():
        dd = flat.double()
        d["sum"] = float(dd.sum())
        d["abs_sum"] = float(dd.abs().sum())
        d["first"] = [float(x) for x in dd[:4]]
        d["last"] = float(dd[-1])
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=str(REPO / "tests" / "fixtures"))
    args = ap.parse_args()
    fx = Path(args.fixtures)
    out = {"torch": torch.__version__, "models": {}}
    for name in MODELS:
        p = fx / name / "model.nemo"
        if not p.exists():
            print("skipping missing", p)
            continue
        sd = load_state_dict(p)
        by_ptr = {}
        for k, t in sd.items():
            by_ptr.setdefault(t.untyped_storage().data_ptr(), []).append(k)
        out["models"][name] = {
            "n_tensors": len(sd),
            "tensors": [describe(k, t) for k, t in sd.items()],
            "shared": [v for v in by_ptr.values() if len(v) > 1],
        }
        print(name, len(sd), "tensors")
    # One tensor per line: small diffs when the fixtures are regenerated.
    lines = ['{"torch": %s, "models": {' % json.dumps(out["torch"])]
    for i, (name, m) in enumerate(out["models"].items()):
        lines.append(' %s: {"n_tensors": %d, "shared": %s, "tensors": [' % (
            json.dumps(name), m["n_tensors"], json.dumps(m["shared"])))
        lines += ["  " + json.dumps(t) + ("," if j + 1 < len(m["tensors"]) else "")
                  for j, t in enumerate(m["tensors"])]
        lines.append(" ]}" + ("," if i + 1 < len(out["models"]) else ""))
    lines.append("}}")
    text = "\n".join(lines) + "\n"
    json.loads(text)  # the hand-made layout must still be valid JSON
    (fx / "ckpt_checks.json").write_text(text)


if __name__ == "__main__":
    main()
