#pragma once

//  W A R N I N G
//  Not part of the Stage API. We mean it.

#include <stage/detail/pool.h>

#include <QtCore/QObject>

#include <tuple>
#include <utility>

namespace stage::detail {

/*
    The re-entrancy discipline of every Stage QObject (Node, Group, Supervisor, WorkerHandle):
    a signal goes out only when no Stage operation is in progress on the emitting thread.

    Each entry point into a Stage object (a public function, a job or timer of the executor, an
    event) opens a SignalScope. A signal emitted inside one is queued (emitLater()) and delivered,
    in the order emitted, when the outermost scope of the thread closes: by then every operation
    has finished its transition, so a slot may delete the emitter, its supervisor or its
    children, or call any public function of them. A queued signal of an object deleted before
    the flush is dropped (forget(), from the destructor). A slot that calls into Stage opens a
    scope of its own, and its signals join the same queue (they go out when it returns, after
    the ones queued before them). Exception: a slot that spins a nested QEventLoop (a dialog,
    QSignalSpy::wait()) gets the signals of what runs in that loop while it waits.

    An operation that must let slots act before it decides (a child's exit before the
    supervisor's restart decision, workerFinished() before the group's) closes its scope
    between the two halves and checks that its object is alive before the second.
*/
class SignalScope
{
public:
    /* For a destructor: what it queues is delivered from the event loop, once the object is
       gone (not while ~QObject has yet to run, when QPointers and children() still see it). */
    enum Destruction { InDestructor };

    SignalScope() noexcept { ++state().depth; }
    explicit SignalScope(Destruction) noexcept : m_inDestructor(true) { ++state().depth; }
    ~SignalScope()
    {
        State &s = state();
        if (m_inDestructor && s.depth == 1 && !s.flushing) {
            if (s.deferredHead)
                runDeferred();
            --s.depth;
            if (s.head)
                postFlush();
            return;
        }
        // The outermost scope of an operation (or the one around a slot): deferred calls run
        // first, still inside it, so that what they emit is queued behind.
        if (s.deferredHead
            && (s.depth == 1
                || (s.flushing && (s.depth == s.flushBase || (s.depth == s.flushBase + 1 && inNestedLoop())))))
            runDeferred();
        --s.depth;
        if (s.head && (s.flushing ? s.depth == s.flushBase && inNestedLoop() : s.depth == 0))
            flush();
    }
    SignalScope(const SignalScope &) = delete;
    SignalScope &operator=(const SignalScope &) = delete;

    /* Whether closing this scope would deliver the queued signals (no other operation is in
       progress on this thread, or only a slot's nested event loop). */
    static bool isOutermostNow()
    {
        const State &s = state();
        return s.flushing ? s.depth == s.flushBase + 1 && inNestedLoop() : s.depth == 1;
    }
    /* For an outermost scope (isOutermostNow()): delivers what is queued now, as its closing would,
       and stays open. The caller checks that its object is alive afterwards. */
    static void flushPendingNow()
    {
        State &s = state();
        --s.depth;
        struct Reopen
        {
            State &s;
            ~Reopen() { ++s.depth; }
        } reopen{s};
        if (s.head)
            flush();
    }

    /* True inside a scope: emitLater() queues. */
    static bool isActive() noexcept { return state().depth > 0; }

    /* Emits (sender->*signal)(args...) now outside a scope, or queues it until the outermost
       scope closes. */
    template<typename Object, typename Sender, typename... Params, typename... Args>
    static void emitLater(Object *object, void (Sender::*signal)(Params...), Args &&...args)
    {
        Sender *sender = object; // a signal of the object's class or of a base
        if (!isActive()) {
            (sender->*signal)(std::forward<Args>(args)...);
            return;
        }
        enqueue(new Pending<Sender, Params...>(sender, signal, std::forward<Args>(args)...));
    }

    /* Inside a scope: calls fn(object) when the outermost scope closes, before its signals go
       out (outside one: now). For an object's own follow-up work that must not run inside
       another object's transition (a supervisor's next start after a child has started), at
       the cost of no posted job. forget(object) drops it. */
    static void defer(QObject *object, void (*fn)(QObject *));

    /* From the destructor of a sender: its queued signals (and deferred calls) are dropped. */
    static void forget(const QObject *sender) noexcept;

    struct Entry
    {
        virtual ~Entry() = default;
        virtual void fire() = 0;
        static void *operator new(std::size_t bytes) { return poolAllocate(bytes); }
        static void operator delete(void *block, std::size_t bytes) noexcept { poolFree(block, bytes); }

        const QObject *sender = nullptr; // null once forgotten
        Entry *next = nullptr;
    };

private:
    struct State
    {
        int depth = 0;
        bool flushing = false;
        int flushBase = 0;      // the depth of the scope around the slot being called
        int flushLoopLevel = 0; // the thread's event-loop level when the flush began
        Entry *head = nullptr;
        Entry *tail = nullptr;
        Entry *deferredHead = nullptr;
        Entry *deferredTail = nullptr;
        bool flushPosted = false;
    };
    static State &state() noexcept
    {
        static thread_local State s;
        return s;
    }

    template<typename Sender, typename... Params>
    struct Pending final : Entry
    {
        template<typename... Args>
        Pending(Sender *s, void (Sender::*sig)(Params...), Args &&...a) : signal(sig), args(std::forward<Args>(a)...)
        {
            sender = s;
        }
        void fire() override
        {
            auto *object = static_cast<Sender *>(const_cast<QObject *>(sender)); // fire() only while set
            std::apply([this, object](auto &...a) { (object->*signal)(a...); }, args);
        }
        void (Sender::*signal)(Params...);
        std::tuple<std::decay_t<Params>...> args;
    };

    struct Deferred final : Entry
    {
        Deferred(QObject *o, void (*f)(QObject *)) : object(o), fn(f) { sender = o; }
        void fire() override { fn(object); }
        QObject *object;
        void (*fn)(QObject *);
    };

    static bool inNestedLoop();
    static void runDeferred();
    static void postFlush();

    bool m_inDestructor = false;
    static void enqueue(Entry *entry) noexcept;
    static void flush();
};

} // namespace stage::detail
