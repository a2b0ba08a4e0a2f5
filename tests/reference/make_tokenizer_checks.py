#!/usr/bin/env python3
# gst-canary — NeMo's own answers for the tokenizers of the fixture models, beyond what the
# transcription fixtures exercise: ids_to_text over the whole vocabulary and random id sequences,
# and prompt ids for every language and slot value the models know.
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Run by hand (not in CI) with NeMo's Python, after tests/reference/make_fixtures.py:
#
#   /work/nemo-venv/bin/python tests/reference/make_tokenizer_checks.py [tests/fixtures]
#
# Writes <fixtures>/spm/nemo_tokenizers.json:
#   {"generator": ..., "models": {"<fixture>": {
#       "tokenizers": [{"lang": "spl_tokens", "vocab_sha256": ...}, ...], vocabularies, YAML order
#       "decode": [{"ids": [...], "text": model.tokenizer.ids_to_text(ids)}, ...],
#       "prompts": [{"slots": {...}, "ids": [...]}, ...]               model.prompt.encode_dialog
#   }}}
# The digests tie the expectations to the vocabularies (which make_fixtures.py builds from fixed
# corpora and seeds), not to the random weights, so regenerating weights does not stale them.

import hashlib
import json
import logging
import os
import random
import sys
import tempfile

import sentencepiece  # noqa: F401  (before NeMo, which imports it too)
from nemo.collections.asr.models import EncDecMultiTaskModel
from nemo.utils import logging as nemo_logging

FIXTURES = ["canary1-tiny", "canary2-tiny", "canary2-unified-tiny"]
SENTENCES = {
    "en": ["the quick brown fox jumps over the lazy dog", "Hello, World! 42 times?"],
    "de": ["Grüße aus der Straße, schöne Bäume", "Der schnelle braune Fuchs"],
    "es": ["El niño comió una manzana mañana", "¿Dónde está la biblioteca?"],
    "fr": ["Ça va très bien, merci à vous", "Le renard brun rapide"],
}
EMOTIONS = ["<|emo:undefined|>", "<|emo:neutral|>", "<|emo:angry|>", "<|emo:happy|>", "<|emo:sad|>"]


def vocab_sha256(sp):
    """Digest of the vocabulary: "piece\ttype\n" per id, where USER_DEFINED counts as NORMAL (1)
    because the Python API cannot tell them apart. The .model files themselves differ between
    builds (trainer_spec records the training paths), so they cannot be the key."""
    h = hashlib.sha256()
    for i in range(sp.get_piece_size()):
        t = 2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i) else 6 if sp.is_byte(i) else 1
        h.update(f"{sp.id_to_piece(i)}\t{t}\n".encode("utf-8"))
    return h.hexdigest()


def tokenizer_digests(model):
    tok = model.tokenizer
    if hasattr(tok, "tokenizers_dict"):  # aggregate, in config order
        return [{"lang": lang, "vocab_sha256": vocab_sha256(t.tokenizer)} for lang, t in tok.tokenizers_dict.items()]
    return [{"lang": "unified", "vocab_sha256": vocab_sha256(tok.tokenizer)}]


def language_codes(model):
    tok = model.tokenizer
    if hasattr(tok, "langs"):  # aggregate
        return [l for l in tok.langs if l != "spl_tokens"]
    sp = tok.tokenizer
    out = []
    for i in range(sp.get_piece_size()):
        p = sp.id_to_piece(i)
        if len(p) == 6 and p.startswith("<|") and p.endswith("|>") and p[2:4].isalpha() and p[2:4].islower():
            out.append(p[2:4])
    return out


def prompt_slots(fmt, langs):
    """Fully specified slot sets (what the prompt functions fill in) for the user turn."""
    pairs = [(l, l) for l in langs] + [("en", l) for l in langs if l != "en"] + [(l, "en") for l in langs if l != "en"]
    out = []
    if fmt == "canary":
        for src, tgt in pairs:
            for task in (["asr"] if src == tgt else ["ast"]):
                out.append(dict(source_lang=src, target_lang=tgt, task=task, pnc="yes"))
        out += [dict(source_lang="en", target_lang="en", task="asr", pnc="no"),
                dict(source_lang="<|en|>", target_lang="<|en|>", task="transcribe", pnc="<|nopnc|>")]
        return out
    base = dict(decodercontext="", emotion="<|emo:undefined|>", pnc="yes", itn="no", timestamp="no", diarize="no")
    for src, tgt in pairs:
        out.append(dict(base, source_lang=src, target_lang=tgt))
    for emo in EMOTIONS:
        out.append(dict(base, source_lang="en", target_lang="en", emotion=emo))
    for mask in range(16):
        flags = {k: ("yes" if mask >> i & 1 else "no") for i, k in enumerate(("pnc", "itn", "timestamp", "diarize"))}
        out.append(dict(base, source_lang="en", target_lang="en", **flags))
    return out


def decode_cases(model, rng):
    tok = model.tokenizer
    n = tok.vocab_size
    seqs = [[]]
    seqs += [list(range(i, min(i + 48, n))) for i in range(0, n, 48)]  # every id once
    for _ in range(40):
        seqs.append([rng.randrange(n) for _ in range(rng.randrange(1, 24))])
    if hasattr(tok, "langs"):
        for lang in tok.langs:
            for s in SENTENCES.get(lang, []):
                seqs.append(tok.text_to_ids(s, lang))
    else:
        for ss in SENTENCES.values():
            seqs += [tok.text_to_ids(s) for s in ss]
    return [{"ids": ids, "text": tok.ids_to_text(ids)} for ids in seqs]


def one_model(path, rng):
    model = EncDecMultiTaskModel.restore_from(path, map_location="cpu")
    files = tokenizer_digests(model)
    prompts = []
    for slots in prompt_slots(model.prompt_format, language_codes(model)):
        turn = {"role": "user", "slots": dict(slots, prompt_language="spl_tokens")}
        ids = model.prompt.encode_dialog([turn])["context_ids"].tolist()
        prompts.append({"slots": slots, "ids": ids})
    return {"tokenizers": files, "decode": decode_cases(model, rng), "prompts": prompts}


def main():
    fixtures = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "fixtures")
    nemo_logging.setLevel(logging.ERROR)
    rng = random.Random(77)
    doc = {"generator": "tests/reference/make_tokenizer_checks.py", "models": {}}
    for name in FIXTURES:
        path = os.path.join(fixtures, name, "model.nemo")
        if os.path.exists(path):
            doc["models"][name] = one_model(path, rng)
    out = os.path.join(fixtures, "spm", "nemo_tokenizers.json")
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=os.path.dirname(out), delete=False) as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    os.chmod(f.name, 0o644)
    os.replace(f.name, out)


if __name__ == "__main__":
    main()
