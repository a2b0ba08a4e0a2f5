#!/usr/bin/env python3
# gst-canary — builds tiny SentencePiece models with the sentencepiece package and records what
# sentencepiece itself does with them, as ground truth for tests/test_tokenizer.c.
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Run by hand (not in CI), from the repository root, with a Python that has sentencepiece and
# protobuf (e.g. /work/nemo-venv/bin/python):
#
#   python tests/reference/make_spm_checks.py [tests/fixtures/spm]
#
# Writes <out>/<name>.model and <out>/expect.json:
#   {"generator": ..., "models": [{
#       "file": "bpe_bf.model",
#       "trainer_spec": {...}, "normalizer_spec": {...},   field values as protobuf parses them
#       "pieces": [[piece, score, type], ...],               ModelProto.pieces in id order
#       "unk_id": runtime <unk> id (SentencePieceProcessor.unk_id()),
#       "lookup": [[piece, piece_to_id(piece)], ...] where that is not the piece's own index,
#       "decode": [{"ids": [...], "text": "..."}],          SentencePieceProcessor.decode(ids)
#       "encode": [{"text": "...", "ids": [...]}]           SentencePieceProcessor.encode(text)
#   }]}
# "encode" only holds strings made of user-defined <|...|> symbols (what a Canary prompt is):
# the C side emulates exactly that case, not general segmentation.

import io
import json
import os
import random
import sys
import tempfile

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as mp

# Canary-like user-defined symbols (DEFAULT_TOKENS first, as NeMo's build_special_tokenizer does).
SYMBOLS = [
    "<|nospeech|>", "<pad>", "<|endoftext|>", "<|startoftranscript|>", "<|pnc|>", "<|nopnc|>",
    "<|startofcontext|>", "<|itn|>", "<|noitn|>", "<|timestamp|>", "<|notimestamp|>", "<|diarize|>",
    "<|nodiarize|>", "<|emo:undefined|>", "<|en|>", "<|de|>", "<|es|>", "<|fr|>", "<|e|>",
    "<|transcribe|>", "<|translate|>",
]

# Small multilingual corpus. The rare characters at the end fall outside character_coverage, so
# they become <unk> (or byte pieces with byte_fallback).
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world this is a small test of the tokenizer",
    "we transcribe speech into text and translate it",
    "der schnelle braune fuchs springt über den faulen hund",
    "grüße aus straße und gärten öffnen",
    "el rápido zorro marrón salta sobre el perro perezoso",
    "niño año señor mañana",
    "le renard brun rapide saute par-dessus le chien paresseux",
    "ça va très bien merci à vous",
    "numbers 1234 and 5678 appear here",
]
RARE = ["smørrebrød", "日本語", "ελληνικά", "ﬁ ligature", "😀 emoji"]


def train(name, **kw):
    sentences = CORPUS * 40 + RARE
    w = io.BytesIO()
    # The default nmt_nfkc rules add a ~240 KB precompiled_charsmap; "identity" keeps the models
    # tiny. One model gets a one-rule charsmap so the reader still skips a real one.
    kw.setdefault("normalization_rule_name", "identity")
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=w,
                                   num_threads=1, shuffle_input_sentence=False,
                                   minloglevel=2, **kw)
    # The rule file's temporary path is recorded in the model; drop it so reruns are byte-identical.
    m = mp.ModelProto()
    m.ParseFromString(w.getvalue())
    m.normalizer_spec.ClearField("normalization_rule_tsv")
    return name, m.SerializeToString()


def one_rule_tsv():
    path = os.path.join(tempfile.mkdtemp(), "rules.tsv")
    with open(path, "w") as f:
        f.write("FB01\t66 69\n")  # U+FB01 LATIN SMALL LIGATURE FI -> "fi"
    return path


def models():
    yield train("unigram_bf", model_type="unigram", vocab_size=360, byte_fallback=True,
                user_defined_symbols=SYMBOLS, character_coverage=0.99)
    yield models_trained_once()[0]
    yield train("bpe_nodummy", model_type="bpe", vocab_size=120, user_defined_symbols=SYMBOLS,
                character_coverage=0.99, add_dummy_prefix=False, remove_extra_whitespaces=False,
                unk_surface="<?>", pad_id=3, unk_id=1, bos_id=0, eos_id=2)
    name, keepws = train("unigram_keepws", model_type="unigram", vocab_size=110,
                         user_defined_symbols=SYMBOLS, character_coverage=0.99,
                         remove_extra_whitespaces=False, normalization_rule_name="",
                         normalization_rule_tsv=one_rule_tsv())
    yield name, keepws
    yield train("bpe_suffix", model_type="bpe", vocab_size=110, user_defined_symbols=SYMBOLS,
                character_coverage=0.99, treat_whitespace_as_suffix=True)
    # Hand-edited variants for paths training never produces.
    _, bpe_bf = next(m for m in models_trained_once() if m[0] == "bpe_bf")
    yield "bpe_bf_nows", edit(bpe_bf, rename={"\u2581": "\u2581q\u2581q\u2581"})  # no "▁": byte fallback
    yield "unigram_noescape", edit(keepws, escape_whitespaces=False)  # " " prefix: <unk>
    # A NORMAL piece spelled like the CONTROL piece </s>: sentencepiece keeps both, and the
    # reserved one wins every lookup, so decoding the NORMAL id behaves as </s>.
    yield "unigram_dupe", edit(keepws, rename={"\u2581th": "</s>"})


_TRAINED = []


def models_trained_once():
    if not _TRAINED:
        _TRAINED.append(train("bpe_bf", model_type="bpe", vocab_size=380, byte_fallback=True,
                              user_defined_symbols=SYMBOLS, character_coverage=0.99, bos_id=-1,
                              eos_id=-1))
    return _TRAINED


def edit(blob, rename=None, escape_whitespaces=None):
    m = mp.ModelProto()
    m.ParseFromString(blob)
    for p in m.pieces:
        if rename and p.piece in rename:
            p.piece = rename[p.piece]
    if escape_whitespaces is not None:
        m.normalizer_spec.escape_whitespaces = escape_whitespaces
    return m.SerializeToString()


def spec_dict(msg, fields):
    return {f: getattr(msg, f) for f in fields}


def crafted_ids(sp, rng):
    """Id sequences that exercise every branch of SentencePiece's decoder."""
    n = sp.get_piece_size()
    pid = sp.piece_to_id
    unk = sp.unk_id()

    def has(p):
        return sp.id_to_piece(pid(p)) == p

    def byte_ids(bs):
        return [pid("<0x%02X>" % b) for b in bs]

    seqs = [[]]
    for s in CORPUS[:4] + RARE + ["  two  spaces ", "<|en|> after symbol", "x"]:
        seqs.append(sp.encode(s))
    controls = [i for i in range(n) if sp.is_control(i)]
    normal = [i for i in range(n) if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)
                                          or sp.id_to_piece(i) in SYMBOLS) and len(sp.id_to_piece(i)) > 1]
    words = [i for i in normal if sp.id_to_piece(i).startswith("\u2581")]
    if len(words) < 3:  # treat_whitespace_as_suffix: pieces end with ▁ instead
        words = [i for i in normal if sp.id_to_piece(i).endswith("\u2581")] + normal
    user = [pid(s) for s in ("<|en|>", "<|pnc|>", "<pad>")]
    if has("\u2581"):
        ws = pid("\u2581")
        seqs += [[ws], [ws, ws], [ws] + words[:2], [ws, user[0], words[0]], [ws, ws, words[1]]]
    seqs += [controls + words[:3], words[:1] + controls + words[1:3], controls, controls + controls,
             [unk], [unk] + words[:2], words[:2] + [unk, unk] + words[2:3], user + words[:3],
             words[:1] + user + words[1:2], [user[0], words[0], user[1]]]
    if sp.is_byte(pid("<0x41>")):
        for bs in ([0xC3, 0xA9], [0xE6, 0x97, 0xA5], [0xF0, 0x9F, 0x98, 0x80], [0xC3], [0xFF], [0x80],
                   [0xE2, 0x82], [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xEF, 0xBF, 0xBD], [0xF4, 0x90, 0x80, 0x80],
                   [0xF8, 0x88, 0x80, 0x80, 0x80], [0x20], [0x20, 0x41], [0xC3, 0xA9, 0xC3], [0xE2, 0x96, 0x81],
                   [0x00], [0x41, 0x80, 0x42]):
            seqs.append(byte_ids(bs))
            seqs.append(byte_ids(bs) + words[:2])
            seqs.append(words[:1] + byte_ids(bs) + words[1:2])
            seqs.append(controls + byte_ids(bs) + [unk])
        seqs.append(words[:1] + byte_ids([0xE2, 0x82]) + controls + byte_ids([0xAC]) + words[1:2])
    seqs.append(list(range(n)))  # every piece once
    for _ in range(30):
        seqs.append([rng.randrange(n) for _ in range(rng.randrange(1, 14))])
    return seqs


def prompt_strings():
    return [
        "",
        "<|startofcontext|><|startoftranscript|><|emo:undefined|><|en|><|en|><|pnc|><|noitn|>"
        "<|notimestamp|><|nodiarize|>",
        "<|startoftranscript|><|de|><|translate|><|en|><|nopnc|>",
        "<|en|>",
        "<|e|><|en|><|e|>",  # longest-match between symbols sharing a prefix
        "<pad><|endoftext|>",
    ]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "fixtures", "spm")
    os.makedirs(out, exist_ok=True)
    rng = random.Random(20240611)
    doc = {"generator": "tests/reference/make_spm_checks.py, sentencepiece " + spm.__version__,
           "models": []}
    for name, blob in models():
        fname = name + ".model"
        with open(os.path.join(out, fname), "wb") as f:
            f.write(blob)
        sp = spm.SentencePieceProcessor(model_proto=blob)
        m = mp.ModelProto()
        m.ParseFromString(blob)
        pieces = [[p.piece, p.score, p.type] for p in m.pieces]
        assert [p[0] for p in pieces] == [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
        entry = {
            "file": fname,
            "trainer_spec": spec_dict(m.trainer_spec, ["model_type", "vocab_size", "byte_fallback", "unk_id",
                                                       "bos_id", "eos_id", "pad_id", "unk_surface",
                                                       "treat_whitespace_as_suffix"]),
            "normalizer_spec": spec_dict(m.normalizer_spec, ["add_dummy_prefix", "remove_extra_whitespaces",
                                                             "escape_whitespaces"]),
            "pieces": pieces,
            "unk_id": sp.unk_id(),
            # piece_to_id where it is not the piece's own index (a string defined twice)
            "lookup": [[p[0], sp.piece_to_id(p[0])] for i, p in enumerate(pieces)
                       if sp.piece_to_id(p[0]) != i],
            "decode": [{"ids": ids, "text": sp.decode(ids)} for ids in crafted_ids(sp, rng)],
            "encode": [{"text": s, "ids": sp.encode(s)} for s in prompt_strings()],
        }
        doc["models"].append(entry)
    with open(os.path.join(out, "expect.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
