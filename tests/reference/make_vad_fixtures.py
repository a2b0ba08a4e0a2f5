#!/usr/bin/env python3
"""Reference outputs for the C Silero VAD (gst/canary/vad/silero.c), made by the silero-vad
package itself.

The weights the engine reads are the package's `silero_vad/data/silero_vad_16k.safetensors`; the
package runs exactly that file through its `tinygrad_model.TinySileroVAD` (tinygrad), so that is
the reference: per-chunk speech probabilities for every clip, chunks of 512 samples with 64 of
context, the state carried from chunk to chunk, as the model's docstring shows. For information
the package's default TorchScript model (`load_silero_vad()`, other weights of the same network)
is run on the same audio and its agreement with the safetensors model recorded in the manifest.

Clips: the speech fixtures in tests/fixtures/audio/ and synthetic non-speech written here into
tests/fixtures/vad/ (seeded): white, pink and brown noise, a tone, clicks.

Usage (the NeMo venv plus `pip install silero-vad==6.2.3 tinygrad==0.14.0`, see requirements.txt):
  make_vad_fixtures.py [--weights data/silero_vad_16k.safetensors] [--out tests/fixtures/vad]
"""
import argparse
from importlib import metadata
import json
import platform
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
RATE, CHUNK, CONTEXT = 16000, 512, 64
SPEECH = ["speech4s", "speech10s", "speech13s", "lead_silence", "short", "silence",
          "seen-voice-1", "seen-voice-2", "unseen-voice-1"]


def read_wav(path):
    with wave.open(str(path)) as w:
        assert w.getframerate() == RATE and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def write_wav(path, pcm):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.astype("<i2").tobytes())


def coloured(rng, n, exponent):
    """Gaussian noise with a 1/f^exponent power spectrum (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    f[0] = f[1]
    x = np.fft.irfft(spec / f ** (exponent / 2), n)
    return x / np.sqrt(np.mean(x * x))


def at_dbfs(x, dbfs):
    return np.clip(np.round(x * 10 ** (dbfs / 20) * 32767), -32768, 32767).astype(np.int16)


def make_noise(out: Path):
    rng = np.random.default_rng(20261202)
    n = int(2.5 * RATE)
    t = np.arange(n) / RATE
    clicks = np.zeros(n)
    for k in range(1, 10):  # 1 ms clicks every 0.25 s
        clicks[int(0.25 * k * RATE): int(0.25 * k * RATE) + 16] = 1.0
    clips = {
        "white-20dB": at_dbfs(coloured(rng, n, 0), -20),
        "pink-30dB": at_dbfs(coloured(rng, n, 1), -30),
        "brown-20dB": at_dbfs(coloured(rng, n, 2), -20),
        "tone-1k": at_dbfs(np.sin(2 * np.pi * 1000 * t) * np.sqrt(2), -20),
        "clicks": at_dbfs(clicks, -6),
    }
    for name, pcm in clips.items():
        write_wav(out / f"{name}.wav", pcm)
    return list(clips)


def chunks(pcm):
    x = pcm.astype(np.float32) / 32768.0
    x = np.pad(x, (0, (-len(x)) % CHUNK))
    return x


def tinygrad_probs(model, x):
    from tinygrad import Tensor
    wav = np.pad(x, (CONTEXT, 0))
    state, out = None, []
    for i in range(CONTEXT, len(wav), CHUNK):
        p, state = model(Tensor(wav[None, i - CONTEXT: i + CHUNK].copy()), state)
        state = state.realize()  # else the lazy graph grows with every chunk
        out.append(float(p.numpy()[0, 0]))
    return np.array(out, dtype=np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", type=Path, default=REPO / "data" / "silero_vad_16k.safetensors")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "vad")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)

    import torch
    import silero_vad
    from tinygrad.nn.state import load_state_dict, safe_load
    from silero_vad.tinygrad_model import TinySileroVAD
    model = TinySileroVAD()
    load_state_dict(model, safe_load(str(a.weights)))
    jit = silero_vad.load_silero_vad()

    noise = make_noise(a.out)
    clips = [(n, REPO / "tests" / "fixtures" / "audio" / f"{n}.wav") for n in SPEECH]
    clips += [(n, a.out / f"{n}.wav") for n in noise]
    manifest = {"generator": "tests/reference/make_vad_fixtures.py",
                "silero_vad": metadata.version("silero-vad"),
                "tinygrad": metadata.version("tinygrad"), "torch": torch.__version__,
                "python": platform.python_version(), "chunk": CHUNK, "context": CONTEXT,
                "clips": {}}
    for name, path in clips:
        x = chunks(read_wav(path))
        p = tinygrad_probs(model, x)
        with torch.no_grad():
            q = jit.audio_forward(torch.from_numpy(x)[None], RATE)[0].numpy()
        np.save(a.out / f"{name}.probs.npy", p)
        rel = path.relative_to(REPO / "tests" / "fixtures")
        manifest["clips"][name] = {
            "audio": str(rel), "chunks": len(p),
            "speech_chunks": int((p >= 0.5).sum()),
            "torchscript_speech_chunks": int((q >= 0.5).sum()),
            "agreement_with_torchscript": float(np.mean((p >= 0.5) == (q >= 0.5))),
            "max_abs_diff_torchscript": float(np.abs(p - q).max()),
        }
        print(name, manifest["clips"][name], flush=True)
    (a.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
