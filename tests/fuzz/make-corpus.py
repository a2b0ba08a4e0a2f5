#!/usr/bin/env python3
"""Writes the committed seed corpora under tests/fuzz/corpus/<target>/ (run by hand with the NeMo
venv; torch is needed for the checkpoint seeds). Seeds stay small so libFuzzer's default max_len
remains a few KiB; the fixture .nemo files themselves are far too large to be useful seeds.

    /work/nemo-venv/bin/python tests/fuzz/make-corpus.py [--nemo tests/fixtures/canary2-tiny/model.nemo]
"""
import argparse
import gzip
import io
import shutil
import tarfile
import zipfile
from collections import OrderedDict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CORPUS = HERE / "corpus"

MINI_YAML = """\
prompt_format: canary2
tokenizer:
  type: agg
  langs:
    spl_tokens: {model_path: 'nemo:aaaa_tokenizer.model'}
    en: {model_path: 'nemo:bbbb_tokenizer.model'}
preprocessor:
  _target_: nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor
  window_size: 0.025
  features: 128
  n_fft: 512
  log_zero_guard_value: 2**-24
encoder:
  feat_in: 128
  n_layers: 2
  d_model: 64
  subsampling: dw_striding
  subsampling_factor: 8
  n_heads: 8
  att_context_size: [-1, -1]
  conv_kernel_size: 9
transf_decoder:
  config_dict: {num_layers: 1, hidden_size: 64, inner_size: 256, num_attention_heads: 8, pre_ln: true}
head: {num_classes: 512}
decoding: {beam: {beam_size: 1, max_generation_delta: 50}}
target: nemo.collections.asr.models.aed_multitask_models.EncDecMultiTaskModel
"""


# A float mtime makes Python write a PAX 'x' header, as NeMo's archives have; fixed, so the seeds
# are reproducible.
MTIME = 1700000000.25


def tar_bytes(members, fmt=tarfile.PAX_FORMAT, mode="w:"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as tar:
        d = tarfile.TarInfo("./")
        d.type = tarfile.DIRTYPE
        d.mtime = MTIME
        tar.addfile(d)
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = MTIME
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def small_ckpt(path_in_zip_name="model_weights"):
    import torch
    torch.manual_seed(0)
    emb = torch.nn.Embedding(6, 4)
    sd = OrderedDict()
    sd["emb.weight"] = emb.weight.detach()
    sd["head.weight"] = emb.weight.detach()  # tied: same storage
    sd["head.bias"] = torch.zeros(6)
    sd["bn.num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    sd["half"] = torch.ones(2, 3, dtype=torch.float16)
    sd["view"] = torch.arange(20, dtype=torch.float32).reshape(4, 5)[1:, 2:]
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.getvalue()


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def safetensors_file(tensors, metadata=None):
    """A safetensors file: {name: (dtype, shape, bytes)}, in order, with the header padded to 8."""
    import json
    import struct
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    """Seeds for fuzz_safetensors: a small valid file, and the header of the Silero VAD weights
    (its real tensor names and shapes) without the 1.2 MB of data, so that the VAD loader's
    lookups are reached and the offsets checks fire."""
    import struct
    f32 = lambda *v: struct.pack("<%df" % len(v), *v)
    write("fuzz_safetensors", "small.safetensors", safetensors_file(
        {"a": ("F32", [2, 2], f32(1, 2, 3, 4)), "b": ("F16", [2], b"\x00\x3c\x00\x40"),
         "empty": ("F32", [0], b"")}, {"format": "pt"}))
    shapes = {"stft_conv.weight": [258, 1, 256], "conv1.weight": [128, 129, 3], "conv1.bias": [128],
              "conv2.weight": [64, 128, 3], "conv2.bias": [64], "conv3.weight": [64, 64, 3],
              "conv3.bias": [64], "conv4.weight": [128, 64, 3], "conv4.bias": [128],
              "lstm_cell.weight_ih": [512, 128], "lstm_cell.weight_hh": [512, 128],
              "lstm_cell.bias_ih": [512], "lstm_cell.bias_hh": [512],
              "final_conv.weight": [1, 128, 1], "final_conv.bias": [1]}
    full = safetensors_file({k: ("F32", v, bytes(4 * __import__("math").prod(v))) for k, v in shapes.items()})
    n = struct.unpack("<Q", full[:8])[0]
    write("fuzz_safetensors", "silero-header.safetensors", full[: 8 + n])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nemo", default=str(REPO / "tests" / "fixtures" / "canary2-tiny" / "model.nemo"))
    args = ap.parse_args()
    shutil.rmtree(CORPUS, ignore_errors=True)

    ckpt = small_ckpt()
    members = [("./model_config.yaml", MINI_YAML.encode()), ("./0123abcd_tokenizer.model", b"\x0a\x05\x0a\x01a\x15\x00\x00\x00\x00")]
    write("fuzz_tar", "pax.tar", tar_bytes(members))
    write("fuzz_tar", "pax.tar.gz", gzip.compress(tar_bytes(members), mtime=0))
    write("fuzz_tar", "gnu-longname.tar", tar_bytes([("./" + "n" * 120 + "_tokenizer.model", b"x" * 10)], tarfile.GNU_FORMAT))
    write("fuzz_tar", "ustar-prefix.tar", tar_bytes([("some/dir/" * 12 + "f.txt", b"abc")], tarfile.USTAR_FORMAT))
    write("fuzz_tar", "with-ckpt.tar", tar_bytes([("./model_weights.ckpt", ckpt)]))

    write("fuzz_zip", "torch-small.ckpt", ckpt)
    z = zipfile.ZipFile(io.BytesIO(ckpt))
    pkl_name = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zz:  # a deflated variant
        for n in z.namelist():
            zz.writestr(n, z.read(n))
    write("fuzz_zip", "deflated.ckpt", out.getvalue())

    write("fuzz_pickle", "small.pkl", z.read(pkl_name))
    nemo = Path(args.nemo)
    if nemo.exists():
        with tarfile.open(nemo, "r:") as tar:
            real = tar.extractfile("./model_weights.ckpt").read()
            write("fuzz_config", "fixture.yaml", tar.extractfile("./model_config.yaml").read())
        rz = zipfile.ZipFile(io.BytesIO(real))
        write("fuzz_pickle", "fixture.pkl", rz.read([n for n in rz.namelist() if n.endswith("/data.pkl")][0]))
    write("fuzz_config", "mini.yaml", MINI_YAML.encode())
    write("fuzz_config", "legacy.yaml", MINI_YAML.replace("  config_dict: ", "  legacy: ").encode())

    spm_dir = REPO / "tests" / "fixtures" / "spm"
    for name in ("bpe_nodummy.model", "bpe_suffix.model", "unigram_dupe.model"):
        if (spm_dir / name).exists():
            write("fuzz_spm", name, (spm_dir / name).read_bytes())
    safetensors_seeds()
    for p in sorted(CORPUS.rglob("*")):
        if p.is_file():
            print(p.relative_to(HERE), p.stat().st_size)


if __name__ == "__main__":
    main()
