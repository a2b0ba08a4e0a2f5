#!/usr/bin/env python3
"""Reads `gst-launch-1.0 -m` output on stdin and prints the text of every `canarytranscribe`
element message (one per window, in order) joined by spaces: the transcript, with no sink
element beyond the core ones (the lent GPU machine has no subtitle encoders).

Usage: gst-launch-1.0 -m ... | messages_text.py"""
import re
import sys

QUOTED = re.compile(r'\(element\): canarytranscribe, .*?\btext=\(string\)"((?:[^"\\]|\\.)*)"')
BARE = re.compile(r'\(element\): canarytranscribe, .*?\btext=\(string\)([^,;"]*)[,;]')

texts = []
for line in sys.stdin:
    m = QUOTED.search(line) or BARE.search(line)
    if m:
        texts.append(re.sub(r"\\(.)", r"\1", m.group(1)).strip())
print(" ".join(t for t in texts if t))
