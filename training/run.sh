#!/usr/bin/env bash
# The demo model's whole recipe, from nothing to examples/models/canary-default.nemo, its example
# clips, its NeMo fixtures and its WER report. Each stage is skipped when its output exists, and
# training resumes from its last checkpoint, so the script can be stopped and rerun at any time.
#
#   bash training/run.sh                 # WORK=training/work, NEMO_VENV=tests/reference/.venv
#   NEMO_VENV=/path/to/venv STEPS=50000 bash training/run.sh
#
# Needs: Debian packages espeak-ng flite sox wordnet-base festival festvox-* (installed here), python3.11 and PyPI
# access for the NeMo venv (tests/reference/requirements.txt), a built plugin for the element WER.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
WORK=${WORK:-$here/work}
VENV=${NEMO_VENV:-$repo/tests/reference/.venv}
# The first schedule: peak LR 1.5e-3, warmup 1000, cosine to step 14 000 (stopped at 13 525). The
# second, a warm restart from those weights: peak 5e-4 at step 13 525 (+300 warmup), cosine to
# 23 525, with extra.txt's sentences added (make_corpus.py), re-fitted on the way to end at 27 000.
# The third (2026-12-03): peak 4e-4 at step 27 000 (+300 warmup), cosine to 34 000. The fourth
# (2026-12-03, 4th session): peak 3e-4 at step 34 000 (+300 warmup), cosine to 41 000, with the
# formant warp (train.py --vtlp-p, alpha 0.9-1.1) on, stopped at 40 375. The fifth (2026-12-03,
# 5th session): peak 2.5e-4 at step 40 400 (+300 warmup), cosine to 50 000, the warp widened to
# 0.85-1.15 (train.py --vtlp-max 0.15, now its default); later runs continue it. 2026-12-07: that
# session's run was lost with its machine; the next started again from the step-40 375 model, with
# the cased tokenizer and written forms for <|pnc|> (written.py), the cosine re-fitted at step
# 41 185 to end at 48 000 (0.55 s/step on that machine: what fits before the session's release).
# The sixth (2026-12-07, 2nd session): peak 2e-4 at step 48 000 (+300 warmup), cosine to 59 000,
# re-fitted at step 52 645 to end at 58 000 (0.62 s/step: what fits before the release), with the
# variety split (synth.py: espeak-ng's other voice variants, read from the written form) from the
# start (step 48 000). The seventh (2026-12-08; SCHEDULE_FROM=58000 STEPS=67000 LR=1.5e-4, the
# train.py line with --speed-max 0.15): peak 1.5e-4 at step 58 000 (+300 warmup), cosine
# to 69 000, re-fitted at step 61 476 to end at 67 000 (0.73 s/step), with the speed perturbation
# widened to 0.85-1.15 (train.py --speed-max 0.15). No better model came of it (docs/accuracy.md):
# the step-58 000 model stays, the default range is back at 0.9-1.1. The eighth (2026-12-08 (2);
# SCHEDULE_FROM=58000 STEPS=68000 LR=2.5e-4, the train.py line with --enc-layers 8): the committed
# weights grown to 8 encoder layers, peak 2.5e-4 at step 58 000 (+300 warmup), cosine to 68 000;
# no better on dev / dev_unseen, not shipped. A next run needs its own schedule and a change worth
# measuring (docs/accuracy.md, "Next").
# The defaults are the sixth schedule's, which made the shipped model.
STEPS=${STEPS:-58000}
SCHEDULE_FROM=${SCHEDULE_FROM:-48000}
LR=${LR:-2e-4}
WARMUP=${WARMUP:-300}
# The schedule runs over STEPS (HOURS=0): the hours trained accumulate across sessions (the
# .train.json beside the model), and a session's CPU is often shared, so a time-based schedule
# would decay the LR for steps that never ran. Stop the run by hand before a session ends (it
# saves every 10 minutes) and the next resumes from the step it reached.
HOURS=${HOURS:-0}
SEED=${SEED:-1}

missing=$(for p in espeak-ng flite sox wordnet-base festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3.11 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$repo/tests/reference/requirements.txt" -c "$repo/tests/reference/constraints.txt"
fi
py="$VENV/bin/python"
export CUDA_VISIBLE_DEVICES= PYTHONHASHSEED=0

[ -f "$WORK/corpus/extra.txt" ] || "$py" "$here/make_corpus.py" "$WORK/corpus" --seed "$SEED"
[ -f "$WORK/audio/train.jsonl" ] || "$py" "$here/synth.py" "$WORK/corpus" "$WORK/audio" --seed "$SEED"
[ -f "$WORK/audio/extra.jsonl" ] || "$py" "$here/synth.py" "$WORK/corpus" "$WORK/audio" --seed "$SEED" --splits extra
[ -f "$WORK/audio/variety.jsonl" ] || "$py" "$here/synth.py" "$WORK/corpus" "$WORK/audio" --seed "$SEED" --splits variety
[ -f "$WORK/audio/dev_unseen.jsonl" ] || "$py" "$here/synth.py" "$WORK/corpus" "$WORK/audio" --seed "$SEED" --splits dev_unseen
# Word times for cutting training items mid-sentence: the CTC head of the last checkpoint, or
# the one exported beside the committed model. Rows whose clip, duration and text match the
# committed alignments (synthesis is seeded) take their spans from there instead (19 min saved).
if [ ! -f "$WORK/audio/extra.align.jsonl" ] || [ ! -f "$WORK/audio/variety.align.jsonl" ]; then
  ckpt="$WORK/run/last.pt"; [ -f "$ckpt" ] || ckpt="$repo/examples/models/canary-default.nemo"
  "$py" "$here/align.py" "$WORK" "$ckpt" --reuse "$here/alignments"
fi
# Resumes from $WORK/run/last.pt; on a fresh machine, from training/checkpoints/latest.nemo (a
# run's weights committed when a session ended before they could be shipped) if there is one,
# else from the committed model's weights.
init="$here/checkpoints/latest.nemo"; [ -f "$init" ] || init="$repo/examples/models/canary-default.nemo"
nice -n 10 "$py" "$here/train.py" "$WORK" "$WORK/run" --steps "$STEPS" --hours "$HOURS" --seed "$SEED" \
  --schedule-from "$SCHEDULE_FROM" --lr "$LR" --warmup "$WARMUP" \
  --init "$init"
"$py" "$here/train.py" "$WORK" "$WORK/run" --export "$repo/examples/models/canary-default.nemo"
# The example clips do not depend on the model: made once, kept across model updates. Synthesis
# is seeded but not bit-exact across machines (sox dithers), so remaking them on another machine
# would change the clips, and with them the VAD fixtures, for no gain.
if [ ! -f "$repo/examples/audio/README.md" ]; then
  "$py" "$here/make_examples.py" "$WORK/audio"
  # The VAD fixtures include the example clips (tests/fixtures/audio/ links to them): remade too.
  "$py" "$repo/tests/reference/make_vad_fixtures.py"
fi
(cd "$repo/tests/reference" && "$py" make_demo_fixtures.py)

# Word error rates (docs/accuracy.md): NeMo, then the element (needs the plugin built in build/).
[ -f "$repo/build/gst/libgstcanary.so" ] || { meson setup "$repo/build" >/dev/null; }
ninja -C "$repo/build" >/dev/null
export GST_PLUGIN_PATH="$repo/build/gst"
model="$repo/examples/models/canary-default.nemo"
mkdir -p "$WORK/eval"
for split in test_seen test_unseen; do
  echo "== $split: NeMo"
  "$py" "$here/evaluate.py" nemo "$model" "$WORK/audio/$split.jsonl" "$WORK/eval/$split.nemo.jsonl"
  echo "== $split: element (CPU, FP32)"
  "$py" "$here/evaluate.py" element "$model" "$WORK/audio/$split.jsonl" "$WORK/eval/$split.element.jsonl"
  "$py" "$here/evaluate.py" compare "$WORK/eval/$split.element.jsonl" "$WORK/eval/$split.nemo.jsonl"
done
echo "== long-form (element)"
"$py" "$here/evaluate.py" longform "$model" "$WORK/audio/test_seen.jsonl" "$WORK/eval/longform.json" --seconds 120
