#include "signalqueue_p.h"

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
    for (Entry *e = state().head; e; e = e->next)
        if (e->sender == sender)
            e->sender = nullptr;
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
