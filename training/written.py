"""Punctuation and capitals for the demo model's <|pnc|> prompt (issue 11, item 5).

Canary is trained to answer the <|pnc|> prompt with written text (capitals, punctuation) and the
<|nopnc|> prompt with normalised text. The corpus (make_corpus.py) keeps the normalised form of
each WordNet usage example, which the audio is synthesised from; this module gives each of those
sentences its written form, and gives the English BPE the pieces to write it with.

Written form: the WordNet example's own case and punctuation (proper nouns, "I", commas, "?" and
"!"), numbers spelt as make_corpus.py spells them, quotes, brackets and hyphens dropped (hyphens
become spaces, as in the normalised form), made a sentence: first letter capitalised, a full stop
where it does not already end in . ? or !. The examples are fragments quoted inside glosses
("she intended her remarks to be interpreted positively"); four in five start in lowercase and
98 % have no final mark. The written form has exactly the normalised form's words, each with its
case and trailing punctuation, so word i of one is word i of the other: training items cut at word
times (train.py) take the same words in either form.

Tokenizer: the English BPE is trained on the normalised text (lowercase, no punctuation), and the
models trained with it can only write that. `extend_spm` appends to it a cased twin of every piece
that starts with a letter ("▁the" -> "▁The", "he" -> "He", "t" -> "T"), with its twin's score,
and the punctuation marks as single pieces. The old pieces keep their ids and lowercase text
keeps its tokenisation exactly (SentencePiece's BPE merges by piece score, and no new piece can
form from lowercase characters); a capitalised word is tokenised as the mirror image of its
lowercase twin, the capital in the first piece. A model trained before the extension loads into
the extended one row for row (train.py: `widen_vocabulary`).
"""
import re
import struct
import sys
from pathlib import Path

import make_corpus

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "reference"))
from make_fixtures import _pb_fields  # noqa: E402

# The written marks the model learns. Hyphens, quotes and brackets are not among them: hyphens are
# spaces in the normalised form (the words must correspond), and quotes and brackets in WordNet's
# examples mark the quoted word, not speech.
PUNCTUATION = (".", ",", "?", "!", ";", ":")
_TOKEN = re.compile(r"[A-Za-z']+|[.,;:?!]")


def _spell_number(m):
    # make_corpus.py's spelling, without num2words' own commas and hyphens (the normalised form
    # drops them, and "thousand," would be a comma nobody spoke).
    return make_corpus.spell_number(m).replace(",", " ").replace("-", " ")


def written_form(example):
    """The written form of a WordNet example, as a list of words aligned with
    make_corpus.normalise(example).split(); None when they cannot be aligned."""
    s = re.sub(r"\d[\d,]*\d|\d", _spell_number, example)
    words = []
    for tok in _TOKEN.findall(s):
        if tok in PUNCTUATION:
            # A mark after a word belongs to it; a second mark ("...", "?!") adds nothing.
            if words and words[-1][-1] not in PUNCTUATION:
                words[-1] += tok
            continue
        w = tok.strip("'")
        if w:
            words.append(w)
    if not words:
        return None
    normalised = make_corpus.normalise(example).split()
    if [w.rstrip("".join(PUNCTUATION)).lower() for w in words] != normalised:
        return None
    words[0] = words[0][0].upper() + words[0][1:]
    last = words[-1]
    if last[-1] not in ".?!":
        words[-1] = last.rstrip("".join(PUNCTUATION)) + "."
    return words


def written_forms():
    """{normalised sentence: written form (list of words)} for every WordNet example. Where
    several examples share a normalised form, the first written form in sorted order wins, so
    every machine picks the same one."""
    forms = {}
    for ex in make_corpus.examples():
        w = written_form(ex)
        if w is None:
            continue
        key = " ".join(make_corpus.normalise(ex).split())
        if key not in forms or w < forms[key]:
            forms[key] = w
    return forms


# --- SentencePiece model files (protobuf), edited without the generated bindings: the venv's
# protobuf runtime is older than the sentencepiece package's generated code. The wire-format
# reader is the fixture tool's (tests/reference/make_fixtures.py).

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number, wire, value):
    """One field, encoded back as _pb_fields read it."""
    key = _varint(number << 3 | wire)
    if wire == 0:
        return key + _varint(value)
    if wire == 2:
        return key + _varint(len(value)) + bytes(value)
    return key + bytes(value)  # fixed32 / fixed64: the raw bytes


def _piece(payload):
    """(piece, score, type) of a ModelProto.SentencePiece (type 1 = NORMAL when absent)."""
    piece, score, typ = "", 0.0, 1
    for number, _, value in _pb_fields(payload):
        if number == 1:
            piece = value.decode("utf-8")
        elif number == 2:
            score = struct.unpack("<f", value)[0]
        elif number == 3:
            typ = value
    return piece, score, typ


def _encode_piece(piece, score):
    body = (b"\x0a" + _varint(len(piece.encode())) + piece.encode()
            + b"\x15" + struct.pack("<f", score))  # type NORMAL: the default, omitted
    return b"\x0a" + _varint(len(body)) + body


def _cased_twin(piece):
    if piece.startswith("\u2581") and len(piece) > 1 and "a" <= piece[1] <= "z":
        return "\u2581" + piece[1].upper() + piece[2:]
    if "a" <= piece[0] <= "z":
        return piece[0].upper() + piece[1:]
    return None


def extend_spm(model_bytes):
    """The SentencePiece model with cased twins and punctuation appended (see the module's
    docstring); returns (new model bytes, [(new piece, twin piece or None)] in id order)."""
    fields = list(_pb_fields(model_bytes))
    pieces = [_piece(v) for n, _, v in fields if n == 1]
    have = {p for p, _, _ in pieces}
    added = []
    for p, score, typ in pieces:
        twin = _cased_twin(p) if typ == 1 else None
        if twin and twin not in have:
            added.append((twin, score, p))
            have.add(twin)
    low = min(s for _, s, _ in pieces)
    for mark in PUNCTUATION:
        if mark not in have:
            added.append((mark, low - 1.0, None))
            have.add(mark)
    new_pieces = b"".join(_encode_piece(p, s) for p, s, _ in added)
    vocab_size = len(pieces) + len(added)
    out, inserted = bytearray(), False
    last_piece = max(i for i, f in enumerate(fields) if f[0] == 1)
    for i, (number, wire, value) in enumerate(fields):
        if number == 2:  # trainer_spec: its vocab_size (field 4) follows the pieces
            value = b"".join(_field(*f) for f in _pb_fields(value) if f[0] != 4) + _field(4, 0, vocab_size)
        out += _field(number, wire, value)
        if i == last_piece:
            out += new_pieces
            inserted = True
    assert inserted
    return bytes(out), [(p, twin) for p, _, twin in added]


def pieces_of(model_bytes):
    return [_piece(v)[0] for n, _, v in _pb_fields(model_bytes) if n == 1]


def extend_tokenizer_dir(d):
    """Extends the BPE that NeMo's create_spt_model wrote in `d` (tokenizer.model, and the
    tokenizer.vocab and vocab.txt listings beside it, in their formats) once; a second call finds
    the marks in it and leaves it."""
    model = d / "tokenizer.model"
    old = model.read_bytes()
    if PUNCTUATION[0] in pieces_of(old):
        return
    new, added = extend_spm(old)
    scores = {p: s for p, s, _ in (_piece(v) for n, _, v in _pb_fields(new) if n == 1)}
    with open(d / "tokenizer.vocab", "a", encoding="utf-8") as f:
        for p, _ in added:
            f.write(f"{p}\t{scores[p]:g}\n")
    with open(d / "vocab.txt", "a", encoding="utf-8") as f:
        for p, _ in added:
            f.write((p[1:] if p.startswith("\u2581") else f"##{p}") + "\n")
    model.write_bytes(new)
