#pragma once

//  W A R N I N G
//  Not part of the Stage API. We mean it.

#include "executor_p.h"

#include <stage/detail/pool.h>
#include <stage/worker.h>

#include <functional>
#include <memory>
#include <vector>
#include <stop_token>

namespace stage::detail {

class WorkerCore;

/*
    Why a worker's stop was requested; it decides how the end of the run is counted.
    Requested: a shutdown, a sibling's restart, a resize, a removal, WorkerHandle::requestStop().
    The run's end is a stop however the body ends (a return, stage::Cancelled, any other
    exception): Kind::Cancelled, and a message it held goes back uncounted.
    Fault: the owner judged the worker faulty (a group's heartbeat watchdog). The end is a
    failure: the owner reports it Failed, and a message it held counts a failure (see Delivery).
*/
enum class StopCause { Requested, Fault };

/* Who is told when a run ends: a WorkerHandle, later a Group. Called on the owner's thread. */
class WorkerListener
{
public:
    virtual void workerEnded(const std::shared_ptr<WorkerCore> &core, WorkerExit exit) = 0;
    /* The report of \a core's end could not be delivered: the listener's thread ended first (its
       executor dropped the job, at that thread's end or, if it had ended already, on the
       worker's thread). Called on whichever thread dropped it. Nothing by default. */
    virtual void workerEndDropped(const std::shared_ptr<WorkerCore> &core, WorkerExit exit)
    {
        Q_UNUSED(core);
        Q_UNUSED(exit);
    }

protected:
    ~WorkerListener() = default;
};

/*
    One run of a worker. Shared by its owner and by the frame that runs the body (which keeps it,
    and the factory, alive until the body has ended, whatever happened to the owner).
*/
class WorkerCore : public std::enable_shared_from_this<WorkerCore>
{
public:
    WorkerCore(quint64 id, int generation, std::shared_ptr<const WorkerFactory> factory, QThread *home,
               WorkerListener *listener);
    /* A core from the pool, with its control block: a group starting many workers allocates one
       for each. */
    static std::shared_ptr<WorkerCore> create(quint64 id, int generation,
                                              const std::shared_ptr<const WorkerFactory> &factory, QThread *home,
                                              WorkerListener *listener)
    {
        return std::allocate_shared<WorkerCore>(PoolAllocator<WorkerCore>(), id, generation, factory, home, listener);
    }
    ~WorkerCore();
    WorkerCore(const WorkerCore &) = delete;
    WorkerCore &operator=(const WorkerCore &) = delete;

    static quint64 nextId() noexcept;

    bool isStopRequested() const noexcept { return m_stop.load(std::memory_order_acquire) != 0; }
    /* True once a stop with StopCause::Fault was requested (before or after another one). */
    bool isStoppedAsFaulty() const noexcept { return m_stop.load(std::memory_order_acquire) & StopFault; }
    /* Any thread: settles every waiter listening with Cancelled, then stops the std::stop_token
       handed out by stopToken(), if any. Idempotent, except that the cause is Fault once any
       request was (a Fault after a plain stop turns it into a Fault stop; a plain one after a
       Fault leaves it one). */
    void requestStop(StopCause cause = StopCause::Requested) noexcept;
    /* Any thread: the token of Worker::stopToken(); its state is allocated by the first call. */
    std::stop_token stopToken() noexcept;

    /* Waiter::suspend(): settles \a waiter with Cancelled from now on (at once if the stop was
       requested already). */
    void listenForStop(Waiter *waiter) noexcept;
    /* Waiter, home thread: no longer listening. \a worker may have been destroyed meanwhile. */
    static void stopListening(WorkerCore *worker, Waiter *waiter) noexcept;

    /* Owner thread: runs the body now (if home is the owner's thread and not \a deferred: up to
       its first suspension) or posts its start to the home thread. The end is always reported
       later, by a posted job. */
    void launch(bool deferred = false);

    Worker worker{this};
    const quint64 id;
    QThread *const home;
    const std::shared_ptr<const WorkerFactory> factory;
    Executor *const owner; // referenced
    const int generation;
    // StopMode::Destroy: a stop destroys the body's frame when it waits in a Stage awaitable
    // (set by the owner before launch()).
    bool destroyOnStop = false;
private:
    enum StopBits : quint8 { StopRequested = 1, StopFault = 2 };
    std::atomic<quint8> m_stop{0}; // StopBits; written under stopLock(this)
    Waiter *m_stopListeners = nullptr; // under stopLock(this)
    // What few runs use, allocated by the first use (under stopLock(this)).
    struct Rare
    {
        std::stop_source stopSource{std::nostopstate}; // under stopLock; given a state by stopToken()
        // Called with the exit when the body has ended, before the owner hears of it. Added and
        // run by the body's own execution (e.g. a Delivery dead-lettered while the frame unwinds).
        std::vector<std::function<void(const WorkerExit &)>> endHooks;
        // The frame awaiting the body when it did not fit in bodyFrame (a sanitizer build).
        void *runner = nullptr;
    };
    std::unique_ptr<Rare> m_rare;
    Rare &rareLocked();
public:
    WorkerListener *listener; // owner thread only; cleared when the listener goes away
    void *tag = nullptr;      // the listener's bookkeeping (a Group's slot); owner thread only
    std::atomic<qint64> lastHeartbeatNs{0}; // Clock nanoseconds of the last Worker::heartbeat()
    std::atomic<quint64> iterations{0};     // Worker::heartbeat() calls; written by the worker only
    // The frame of the coroutine that awaits the body, and before it the job that starts the body
    // on its home thread: each would be an allocation of its own. A larger frame (another
    // compiler, a sanitizer build) is allocated on its own.
    alignas(__STDCPP_DEFAULT_NEW_ALIGNMENT__) unsigned char bodyFrame[56]; // 56: clang 14 -O2/-O3

    /* Home thread. */
    void runOnHome() noexcept;
    /* Home thread, from the body's own execution. */
    void addEndHook(std::function<void(const WorkerExit &)> hook);
    /* Home thread, once the body's frame is done: classifies its end and reports it. */
    void finishBody(void *frame) noexcept;
    /* Home thread, from the resumption of \a waiter settled by a stop with destroyBody() set:
       destroys the suspended body frame instead of resuming it, and reports a cancelled end. */
    void destroyBody() noexcept;
    /* BodyRun: the frame that awaits the body, when it is not in bodyFrame. */
    void setRunner(void *frame);
    /* Home thread: the body has started and waits, suspended (not before its start, not after
       its end). */
    bool isBodySuspended() const noexcept { return m_body.load(std::memory_order_acquire) != nullptr; }
    /* BodyRun: the body's frame while it is suspended and awaited (null before and after). */
    void setBody(void *frame) noexcept { m_body.store(frame, std::memory_order_release); }
private:
    // Under stopLock(this): marks \a waiter, just claimed by the stop, to destroy the body
    // instead of resuming it, if it is the body that waits in it.
    void markForDestroyLocked(Waiter *waiter) noexcept;
    void report(WorkerExit::Kind kind, QString reason, std::exception_ptr error, void *frame) noexcept;
    // Written by the home thread (or the body's own execution), read by requestStop() from any.
    // In the tail padding after bodyFrame: no extra bytes per worker.
    std::atomic<void *> m_body{nullptr};
public:
    /* Any thread: reports \a exit to the owner. */
    void end(WorkerExit exit) noexcept;
};

/* Marks a body as being destroyed on this thread for its lifetime (bodyDestructionDepth() + 1). */
class BodyDestructionScope
{
public:
    BodyDestructionScope() noexcept;
    ~BodyDestructionScope();
    BodyDestructionScope(const BodyDestructionScope &) = delete;
    BodyDestructionScope &operator=(const BodyDestructionScope &) = delete;
};

/* Describes a caught exception: what() for std::exception, the value for a few common types. */
QString describeException(const std::exception_ptr &error);

} // namespace stage::detail
