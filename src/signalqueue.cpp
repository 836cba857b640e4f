#include "signalqueue_p.h"

#include "executor_p.h"

#include <QtCore/QThread>

#include <memory>

namespace stage::detail {

void SignalScope::enqueue(Entry *entry) noexcept
{
    State &s = state();
    if (s.tail)
        s.tail->next = entry;
    else
        s.head = entry;
    s.tail = entry;
}

void SignalScope::forget(const QObject *sender) noexcept
{
    State &s = state();
    for (Entry *e = s.head; e; e = e->next)
        if (e->sender == sender)
            e->sender = nullptr;
    for (Entry *e = s.deferredHead; e; e = e->next)
        if (e->sender == sender)
            e->sender = nullptr;
}

void SignalScope::defer(QObject *object, void (*fn)(QObject *))
{
    State &s = state();
    if (s.depth == 0) {
        fn(object);
        return;
    }
    auto *entry = new Deferred(object, fn);
    if (s.deferredTail)
        s.deferredTail->next = entry;
    else
        s.deferredHead = entry;
    s.deferredTail = entry;
}

void SignalScope::runDeferred()
{
    // Called by the closing outermost scope (depth 1): each call runs as part of the operation
    // that closes, and may defer more.
    State &s = state();
    while (Entry *e = s.deferredHead) {
        s.deferredHead = e->next;
        if (!s.deferredHead)
            s.deferredTail = nullptr;
        std::unique_ptr<Entry> entry(e);
        if (entry->sender)
            entry->fire();
    }
}

void SignalScope::postFlush()
{
    State &s = state();
    if (s.flushPosted)
        return;
    s.flushPosted = true;
    Executor::current()->post(makeJob([] {
        state().flushPosted = false;
        SignalScope scope; // closing it delivers what is queued
    }));
}

bool SignalScope::inNestedLoop()
{
    return QThread::currentThread()->loopLevel() > state().flushLoopLevel;
}

void SignalScope::flush()
{
    // One entry at a time, unlinked before it fires, inside a scope: what the slot's calls into
    // Stage emit is queued behind the rest and goes out from this loop, not from a recursion per
    // slot (a slot per child of a 100,000-child supervisor would overflow the stack). A nested
    // event loop in a slot flushes what is queued meanwhile (see ~SignalScope()).
    State &s = state();
    const bool wasFlushing = std::exchange(s.flushing, true);
    const int oldBase = std::exchange(s.flushBase, s.depth + 1);
    const int oldLevel = std::exchange(s.flushLoopLevel, QThread::currentThread()->loopLevel());
    struct Restore
    {
        State &s;
        bool flushing;
        int base, level;
        ~Restore()
        {
            s.flushing = flushing;
            s.flushBase = base;
            s.flushLoopLevel = level;
        }
    } restore{s, wasFlushing, oldBase, oldLevel};
    while (Entry *e = s.head) {
        s.head = e->next;
        if (!s.head)
            s.tail = nullptr;
        std::unique_ptr<Entry> entry(e);
        if (entry->sender) {
            SignalScope scope; // what the slot's calls emit waits for the slot to return
            entry->fire();
        }
    }
}

} // namespace stage::detail
