#!/usr/bin/env python3
"""Writes the hand-made seed inputs of stage-fuzz into a directory (tests/fuzz/corpus holds them,
merged with what fuzzing found). The encoding is main.cpp's World::step(): one opcode byte
(op % 26; bytes 234..255 are actor operations, ActorWorld::step(): (byte - 234) % 8), then its
argument bytes."""
import os
import sys

NEWBOX, TRYSEND, BLOCKING, SEND, CLOSE, DELOBJ, TRYRECV, TAKEDEAD, MAXREDEL = range(9)
NEWGROUP, SPAWN, SETSIZE, GSHUT, GDEL, NEWSUP, ADD, REMOVE, START, SSHUT, SDEL, HANDLE = range(9, 21)
EVENTS, SPIN = 21, 23
SLOT_ONCE, SLOT_EVERY = 24, 25
# Actor operations (ActorWorld::step): the byte, then the actor slot byte a (a % 2: the slot)
A_NEW, A_TELL, A_ASK, A_ASKFUTURE, A_RESTART, A_DELETE, A_SET, A_ASK_REPLYING = range(234, 242)
# Job behaviours (low 3 bits; the rest is a parameter): answer, throw, sleep, hang, nested ask,
# Cancelled, foreign sleep. DeferJob (low 2 bits): answer now, defer, drop the reply, throw.
J_ANSWER, J_THROW, J_SLEEP, J_HANG, J_NESTED, J_CANCELLED, J_FOREIGN = range(7)
D_NOW, D_DEFER, D_DROP, D_THROW = range(4)

# Slots (World::connectSlot): the emitter, the signal, the action, its argument.
G, S, M, H = range(4)  # emitter kinds: group, supervisor, mailbox (its MailboxBase), WorkerHandle
IDLE, STARTING, RUNNING, RESTARTING, STOPPING, STOPPED, FAILED = range(7)  # Node::State
# Node's signals (groups and supervisors): stateChanged for any state, or for one (state_is())
STATE, GAVEUP, STOPPED_SIG, NODE_STATS, SUPERVISOR_CHANGED = 0, 8, 9, 10, 11
WORKER_FINISHED, SIZE_CHANGED = 12, 13  # Group's
CHILD_EXITED, CHILD_RESTARTED, CHILD_ADDED, CHILD_REMOVED, CHILD_COUNT = 12, 13, 14, 15, 16  # Supervisor's
COUNT_CHANGED, CLOSED_CHANGED, BOX_STATS, MAXREDEL_CHANGED = range(4)  # MailboxBase's
H_IDLE, H_RUNNING, H_STOPPING, H_FINISHED = range(4)  # WorkerHandle::State
# WorkerHandle's: stateChanged (any: H_STATE, or handle_state_is()), then these
H_STATE, RUNNING_CHANGED, STARTED, FINISHED, STOP_TIMEOUT_CHANGED, ABANDONED_COUNT, ABANDONED_FINISHED = 0, 5, 6, 7, 8, 9, 10
# Slot actions
(DO_DELETE_EMITTER, DO_DELETE_LATER, DO_DELETE_SUPERVISOR, DO_SHUTDOWN, DO_START, DO_RESTART, DO_SET_SIZE_0,
 DO_SET_SIZE_UP, DO_ADD_CHILD, DO_REMOVE_CHILD, DO_CLOSE_MAILBOX, DO_DELETE_OTHER) = range(12)


def state_is(state):
    return 1 + state


def handle_state_is(state):
    return 1 + state


def slot(kind, index, signal, action, arg=0, every=False):
    """arg: the timeout of a group's shutdown (% 3); the mailbox of a handle's first start; the
    handle to restart (% 2) for other emitters; setSizeUp's step (1 + arg % 2); addChild's node
    (nodes[(arg >> 2) % 8]: groups 0-3, supervisors 4-6, null 7) and restart type ((arg >> 5) % 3);
    the child a supervisor removes (% its children); the mailbox slot to close when the emitter
    has none (% 3); deleteOther's victim (arg % 10: groups 0-3, supervisors 4-6, handles 7-8, 9:
    the MailboxBase of mailbox slot (arg >> 4) % 3); a group of the world (% 4) when the emitter
    has none."""
    return [SLOT_EVERY if every else SLOT_ONCE, kind | (index << 2), signal, action, arg]


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


def actor(slot, thread=False, capacity=None, ask_timeout=10, max_redeliveries=2, sup=None, restart=1):
    """A new actor in slot (0-1): its own thread or the main one, bounded (capacity 1-3) or not,
    askTimeout 1-24 ms, maxRedeliveries 0-3, the child of supervisor slot sup (0-2) or a root."""
    a = slot | (0x10 if thread else 0) | ((0x20 | (sup << 6)) if sup is not None else 0)
    b = (ask_timeout - 1) << 3 | max_redeliveries << 5
    if capacity:
        b |= 1 | (capacity - 1) << 1
    else:
        b |= restart << 1
    return [A_NEW, a, b & 0xFF]


def ask(slot, behaviour=J_ANSWER, timeout=20, replying=False):  # timeout None: the actor's askTimeout
    t = 0x80 if timeout is None else timeout - 1
    return [A_ASK_REPLYING if replying else A_ASK, slot, behaviour, t]


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

    # Slot actions (issue #20): each action from a signal that makes it interesting.
    'slot-delete-on-stopped': box(0) + group(0, 0, 1) + slot(G, 0, state_is(STOPPED), DO_DELETE_EMITTER)
    + sends(0, [0, 2]) + events() + [GSHUT, 0, 1] + spin(2),
    'slot-delete-on-stopped-in-teardown': box(0) + sup(0, 0) + group(0, 0, 2, spawn=False) + [ADD, 0, 0, 0, SPAWN, 0, START, 0]
    + slot(G, 0, state_is(STOPPED), DO_DELETE_EMITTER) + slot(S, 0, state_is(STOPPED), DO_DELETE_EMITTER) + sends(0, [2, 0]) + events(),
    'slot-setsize0-on-workerfinished': box(0) + group(0, 0, 2) + slot(G, 0, WORKER_FINISHED, DO_SET_SIZE_0)
    + sends(0, [1, 0, 2, 0]) + spin(),
    'slot-delete-supervisor-on-childexited': box(0) + sup(0, 0) + group(0, 0, 1, spawn=False) + [ADD, 0, 0, 0, SPAWN, 0, START, 0]
    + slot(S, 0, CHILD_EXITED, DO_DELETE_EMITTER) + sends(0, [1, 0]) + events(4) + spin(2),
    'slot-delete-parent-on-childexited': box(0) + sup(0, 0) + sup(1, 1) + [ADD, 1, 4, 0] + group(0, 0, 1, spawn=False)
    + group(1, 0, 1, spawn=False) + [ADD, 0, 0, 0, ADD, 1, 1, 0, SPAWN, 0, SPAWN, 1, START, 1]
    + slot(S, 0, CHILD_EXITED, DO_DELETE_SUPERVISOR) + sends(0, [1, 2, 0]) + spin(),
    'slot-deletelater-on-gaveup': box(0) + group(0, 0, 1, maxr=0) + slot(G, 0, GAVEUP, DO_DELETE_LATER)
    + sends(0, [1, 1, 0]) + spin(),
    'slot-shutdown-on-childrestarted': box(0) + sup(0, 1) + group(0, 0, 1, spawn=False) + group(1, 0, 1, spawn=False)
    + [ADD, 0, 0, 0, ADD, 0, 1, 0, SPAWN, 0, SPAWN, 1, START, 0] + slot(S, 0, CHILD_RESTARTED, DO_SHUTDOWN)
    + sends(0, [1, 2, 0]) + spin(),
    'slot-start-on-childadded': box(0) + sup(0, 0) + group(0, 0, 1, spawn=False) + slot(S, 0, CHILD_ADDED, DO_START)
    + [ADD, 0, 0, 0, SPAWN, 0] + sends(0, [0, 1, 0]) + spin(),
    'slot-spawn-on-sizechanged': box(0) + group(0, 0, 1, spawn=False) + slot(G, 0, SIZE_CHANGED, DO_START)
    + [SETSIZE, 0, 2] + sends(0, [0, 2]) + spin(),
    'slot-restart-handle-on-finished': box(0) + [HANDLE, 0, 0x01] + slot(H, 0, FINISHED, DO_RESTART, every=True)
    + sends(0, [1, 0, 1, 5, 0]) + spin(3),
    'slot-start-handle-on-finished': box(0) + [HANDLE, 0, 0x01] + slot(H, 0, handle_state_is(H_FINISHED), DO_START)
    + sends(0, [2]) + events() + [HANDLE, 0, 0x04] + spin(2),
    'slot-setsizeup-on-sizechanged': box(0) + group(0, 0, 1) + slot(G, 0, SIZE_CHANGED, DO_SET_SIZE_UP, every=True)
    + slot(G, 0, state_is(RUNNING), DO_SET_SIZE_0) + [SETSIZE, 0, 2] + sends(0, [2, 0, 4]) + spin(),
    'slot-addchild-on-childremoved': box(0) + sup(0, 0) + group(0, 0, 1, spawn=False) + group(1, 0, 1, spawn=False)
    + [ADD, 0, 0, 0, SPAWN, 0, SPAWN, 1, START, 0] + slot(S, 0, CHILD_REMOVED, DO_ADD_CHILD, 1 << 2) + events()
    + [REMOVE, 0, 0] + sends(0, [0, 1]) + spin(),
    'slot-removechild-on-running': box(0) + sup(0, 2) + group(0, 0, 1, spawn=False) + [ADD, 0, 0, 1, SPAWN, 0]
    + slot(G, 0, state_is(RUNNING), DO_REMOVE_CHILD) + [START, 0] + sends(0, [2, 0]) + spin(),
    'slot-removechild-on-childcount': box(0) + sup(0, 0) + group(0, 0, 1, spawn=False) + group(1, 0, 1, spawn=False)
    + slot(S, 0, CHILD_COUNT, DO_REMOVE_CHILD, 0, every=True) + [ADD, 0, 0, 0, ADD, 0, 1, 0, SPAWN, 0, SPAWN, 1, START, 0] + spin(),
    'slot-close-on-countchanged': box(0, 2) + slot(M, 0, COUNT_CHANGED, DO_CLOSE_MAILBOX) + sends(0, [0, 0, 0], SEND)
    + events() + group(0, 0, 1, on_closed=0) + spin(),
    'slot-delete-mailbox-on-closed': box(0) + group(0, 0, 1) + slot(M, 0, CLOSED_CHANGED, DO_DELETE_EMITTER)
    + sends(0, [0, 2]) + [CLOSE, 0] + events() + spin(),
    'slot-delete-consumers-supervisor-on-box-stats': box(0) + sup(0, 1) + group(0, 0, 2, spawn=False)
    + [ADD, 0, 0, 0, SPAWN, 0, START, 0] + slot(M, 0, BOX_STATS, DO_DELETE_SUPERVISOR) + sends(0, [2, 0, 4]) + spin(),
    'slot-delete-other-on-stats': box(0) + group(0, 0, 1) + group(1, 0, 2) + slot(G, 0, NODE_STATS, DO_DELETE_OTHER, 1)
    + sends(0, [2, 2, 0, 0]) + spin(),
    'slot-delete-handle-on-started': box(0) + [HANDLE, 0, 0x05] + slot(H, 0, STARTED, DO_DELETE_EMITTER)
    + sends(0, [2]) + [HANDLE, 0, 0x01] + spin(2),
    'slot-abandoned-handle': box(0) + [HANDLE, 0, 0x06] + slot(H, 0, ABANDONED_COUNT, DO_DELETE_LATER)
    + slot(H, 0, ABANDONED_FINISHED, DO_CLOSE_MAILBOX) + [HANDLE, 0, 0x00] + sends(0, [6, 0]) + events(1)
    + [HANDLE, 0, 0x04] + spin(2),
    'slot-abandoned-handle-finished': box(0) + [HANDLE, 0, 0x06] + slot(H, 0, ABANDONED_FINISHED, DO_START)
    + slot(H, 0, handle_state_is(H_STOPPING), DO_CLOSE_MAILBOX) + [HANDLE, 0, 0x00] + sends(0, [6, 0]) + events(1)
    + [HANDLE, 0, 0x04] + spin(2) + events(4),
    'slot-delete-supervisor-on-group-stopping': box(0) + sup(0, 0) + group(0, 0, 1, spawn=False) + [ADD, 0, 0, 0, SPAWN, 0, START, 0]
    + slot(G, 0, state_is(STOPPING), DO_DELETE_SUPERVISOR) + sends(0, [2]) + events() + [SSHUT, 0] + spin(2),
    'slot-supervisor-changed-shutdown': box(0) + sup(0, 0) + group(0, 0, 1) + slot(G, 0, SUPERVISOR_CHANGED, DO_SHUTDOWN, 1)
    + [START, 0, ADD, 0, 0, 0] + sends(0, [0, 2]) + spin(),
    # Actors (issue #17): every ask ends exactly once, never silently.
    'actor-basic': actor(0) + ask(0) + ask(0, timeout=None) + [A_TELL, 0, 0, A_ASKFUTURE, 0, 0, 10]
    + ask(0, D_NOW, replying=True) + ask(0, D_DROP, replying=True) + events(),
    'actor-throw-restart': actor(0) + ask(0, J_THROW | 1 << 3) + ask(0, J_THROW | 3 << 3) + [A_TELL, 0, 1] + ask(0) + spin(),
    'actor-deferred-drop': actor(1, thread=True) + ask(1, D_DEFER | 3 << 2, replying=True) + ask(1, D_DROP, replying=True)
    + ask(1, D_THROW | 1 << 2, replying=True) + ask(1, D_THROW | 2 << 2, replying=True) + spin(),
    'actor-hang-timeout-restart': actor(0, ask_timeout=3) + ask(0, J_HANG, timeout=3) + ask(0, timeout=None)
    + [A_RESTART, 0, 0] + ask(0, timeout=11) + [A_RESTART, 0, 1] + ask(0, timeout=6) + [A_RESTART, 0, 2] + spin(2),
    'actor-nested-cycle': actor(0) + actor(1, thread=True) + ask(0, J_NESTED | 1 << 3) + ask(1, J_NESTED) + ask(0, J_NESTED) + spin(),
    'actor-delete-queued': actor(0, capacity=2) + ask(0, J_SLEEP | 5 << 3) + ask(0) + ask(0) + [A_TELL, 0, 0, A_DELETE, 0]
    + ask(0, timeout=6) + [A_TELL, 0, 0],
    'actor-supervised': sup(0, 0) + actor(0, sup=0) + [START, 0] + ask(0, J_THROW | 1 << 3) + ask(0) + [SDEL, 0]
    + ask(0, timeout=11) + spin(),
    'actor-settings': actor(0, thread=True) + [A_SET, 0, 0, A_SET, 0, 1, A_SET, 0, 7] + ask(0, J_CANCELLED)
    + ask(0, J_FOREIGN) + [A_DELETE, 0x40] + events(2),
    'slot-threaded-delete-on-workerfinished': box(0) + group(0, 0, 2, threaded=True) + slot(G, 0, WORKER_FINISHED, DO_DELETE_EMITTER)
    + sends(0, [0, 1, 0, 2]) + spin(3),
}

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), 'corpus')
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, 'seed-' + name), 'wb') as f:
        f.write(bytes(b & 0xFF for b in data))
print(f'{len(seeds)} seeds in {out}')
