#!/usr/bin/env python3
"""Writes the hand-made seed inputs of stage-fuzz into a directory (tests/fuzz/corpus holds them,
merged with what fuzzing found). The encoding is main.cpp's World::step(): one opcode byte
(op % 24), then its argument bytes."""
import os
import sys

NEWBOX, TRYSEND, BLOCKING, SEND, CLOSE, DELOBJ, TRYRECV, TAKEDEAD, MAXREDEL = range(9)
NEWGROUP, SPAWN, SETSIZE, GSHUT, GDEL, NEWSUP, ADD, REMOVE, START, SSHUT, SDEL, HANDLE = range(9, 21)
EVENTS, SPIN = 21, 23


def box(slot, capacity=None):  # capacity None: unbounded
    return [NEWBOX, slot * 2 + (1 if capacity is None else 0), (capacity or 0) & 0xFF]


def group(slot, boxslot, size, restart=1, maxr=-1, on_closed=2, timeout=1, threaded=False, spawn=True):
    a = boxslot | (on_closed << 2) | (timeout << 4) | (0xC0 if threaded else 0)
    b = size | (restart << 2) | ((maxr + 1) << 4) | (0x80 if spawn else 0)
    return [NEWGROUP, slot, a & 0xFF, b & 0xFF]


def sends(boxslot, behaviours, op=TRYSEND):
    out = []
    for b in behaviours:
        out += [op, boxslot, b]
    return out


def sup(slot, strategy, maxr=3):
    return [NEWSUP, slot, strategy | ((maxr + 1) << 2)]


def node(kind, i):  # ('g', i) -> 0..3, ('s', i) -> 4..6, null -> 7
    return i if kind == 'g' else 4 + i


def spin(ms=3):
    return [SPIN, ms]


def events(n=3):
    return [EVENTS, n - 1]


seeds = {
    'acks': box(0, 4) + group(0, 0, 2) + sends(0, [0, 0, 4, 0, 3]) + events() + spin(),
    'fail-redeliver': box(0) + group(0, 0, 1) + sends(0, [1, 0, 4]) + spin() + [TAKEDEAD, 0],
    'poison-deadletter': box(0) + [MAXREDEL, 0, 1] + group(0, 0, 1, restart=0) + sends(0, [1, 0]) + spin(4) + [TAKEDEAD, 0],
    'hang-shutdown': box(0, 2) + group(0, 0, 2) + sends(0, [2, 2, 0]) + events() + [GSHUT, 0, 1] + spin(),
    'foreign-hang-abandon': box(0) + group(0, 0, 1, timeout=0) + sends(0, [6, 0]) + events() + [GSHUT, 0, 0] + spin(3),
    'delete-group-holding': box(0) + group(0, 0, 2) + sends(0, [2, 4, 0]) + events(2) + [GDEL, 0] + events(),
    'close-drain': box(0, 3) + sends(0, [0, 0, 0, 0]) + [CLOSE, 0] + sends(0, [0], SEND) + group(0, 0, 1, on_closed=0) + spin(),
    'close-waiting-senders': box(0, 1) + sends(0, [0, 0, 0], SEND) + [CLOSE, 0] + events() + group(0, 0, 1) + spin(),
    'delete-object-waiters': box(0) + group(0, 0, 2) + events() + [DELOBJ, 0] + events() + sends(0, [0]),
    'bad-capacity': box(0, 0) + box(1, -3) + sends(0, [0, 0], BLOCKING) + sends(1, [0, 0]) + group(0, 0, 1) + spin(),
    'full-senders': box(0, 1) + sends(0, [0, 4, 0, 4], SEND) + group(0, 0, 1) + spin(2) + sends(0, [0], BLOCKING),
    'setsize': box(0) + group(0, 0, 1) + [SETSIZE, 0, 3] + sends(0, [2, 2, 2]) + events() + [SETSIZE, 0, 0xFF] + [SETSIZE, 0, 1] + spin(),
    'tryreceive': box(0, 4) + sends(0, [0, 1, 0]) + [TRYRECV, 0, 1, TRYRECV, 0, 0] + group(0, 0, 1),
    'finish-transient': box(0) + group(0, 0, 2, restart=1) + sends(0, [3, 3, 0]) + spin(),
    'finish-permanent': box(0) + group(0, 0, 1, restart=0) + sends(0, [3, 0, 3, 0]) + spin(),
    'ack-then-fail': box(0) + group(0, 0, 1, maxr=2) + sends(0, [5, 5, 5, 5, 0]) + spin(),
    'cancelled-throw': box(0) + group(0, 0, 1) + sends(0, [7, 0]) + spin(),
    'sup-one-for-one': box(0) + sup(0, 0) + group(0, 0, 1, spawn=False) + [ADD, 0, 0, 0, SPAWN, 0, START, 0] + sends(0, [1, 0, 0]) + spin(),
    'sup-one-for-all': box(0) + box(1) + sup(0, 1) + group(0, 0, 1, spawn=False) + group(1, 1, 1, spawn=False)
    + [ADD, 0, 0, 0, ADD, 0, 1, 0, SPAWN, 0, SPAWN, 1, START, 0] + sends(0, [1]) + sends(1, [2]) + spin(),
    'sup-rest-for-one': box(0) + sup(0, 2) + group(0, 0, 1, spawn=False) + group(1, 0, 1, spawn=False) + group(2, 0, 1, spawn=False)
    + [ADD, 0, 0, 0, ADD, 0, 1, 1, ADD, 0, 2, 2, SPAWN, 0, SPAWN, 1, SPAWN, 2, START, 0] + sends(0, [1, 2, 0, 1]) + spin(),
    'sup-escalate': box(0) + sup(0, 0, maxr=0) + sup(1, 1, maxr=1) + [ADD, 1, 4, 0] + group(0, 0, 1, spawn=False)
    + [ADD, 0, 0, 0, SPAWN, 0, START, 1] + sends(0, [1, 1, 1, 1]) + spin(4),
    'sup-misuse': sup(0, 0) + sup(1, 0) + [ADD, 0, 4, 0, ADD, 0, 7, 0, ADD, 0, 5, 0, ADD, 1, 4, 0, REMOVE, 1, 4, REMOVE, 0, 5, START, 1, START, 0, START, 0],
    'sup-add-running-group': box(0) + group(0, 0, 1) + sends(0, [0]) + events() + sup(0, 0) + [START, 0, ADD, 0, 0, 1] + sends(0, [1, 0]) + spin(),
    'sup-remove-child': box(0) + sup(0, 0) + group(0, 0, 2, spawn=False) + [ADD, 0, 0, 0, SPAWN, 0, START, 0] + sends(0, [2, 0]) + events() + [REMOVE, 0, 0] + events(),
    'sup-delete': box(0) + sup(0, 1) + group(0, 0, 1, spawn=False) + group(1, 0, 1, spawn=False)
    + [ADD, 0, 0, 0, ADD, 0, 1, 0, SPAWN, 0, SPAWN, 1, START, 0] + sends(0, [2, 2]) + events() + [SDEL, 0] + events(),
    'sup-shutdown': box(0) + sup(0, 2) + group(0, 0, 1, spawn=False) + [ADD, 0, 0, 2, SPAWN, 0, START, 0] + sends(0, [2]) + events() + [SSHUT, 0] + spin(2) + [ADD, 0, 1, 0],
    'handle-stop': box(0) + sends(0, [2, 0]) + [HANDLE, 0, 0x01, EVENTS, 0, HANDLE, 0, 0x04] + events() + [HANDLE, 0, 0x08] + events(),
    'handle-two': box(0) + [HANDLE, 0, 0x00, HANDLE, 1, 0x00] + sends(0, [1, 0, 4, 2]) + spin(2) + [HANDLE, 1, 0x04, HANDLE, 0, 0x08],
    'threaded': box(0) + group(0, 0, 1, threaded=True) + sends(0, [0, 4, 1, 0, 2, 0]) + spin(3) + [GSHUT, 0, 1] + spin(2),
    'threaded-delete': box(0, 2) + group(0, 0, 2, threaded=True) + sends(0, [2, 0, 0, 4], SEND) + spin(2) + [GDEL, 0],
    'mixed': box(0, 2) + box(1) + sup(0, 0) + group(0, 0, 1, spawn=False) + [ADD, 0, 0, 1, SPAWN, 0, START, 0]
    + group(1, 1, 2) + sends(0, [0, 1, 2], SEND) + sends(1, [4, 6, 5]) + spin(2) + [SETSIZE, 1, 0, CLOSE, 0, DELOBJ, 1] + spin(2),
    'discard-at-end': box(0) + box(1, 2) + sends(0, [0, 0, 0]) + sends(1, [0, 0]),
}

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), 'corpus')
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, 'seed-' + name), 'wb') as f:
        f.write(bytes(b & 0xFF for b in data))
print(f'{len(seeds)} seeds in {out}')
