#pragma once

// Plumbing shared by every Stage awaitable. Not API: the names in stage::detail may change.

#include <stage/errors.h>
#include <stage/global.h>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <exception>
#include <optional>
#include <stop_token>
#include <utility>

QT_BEGIN_NAMESPACE
class QThread;
QT_END_NAMESPACE

namespace stage {

class Worker;

namespace detail {

class Executor;
class WorkerCore;

/*
    A unit of work run later on one executor's thread (Executor::post). Intrusive, so that posting
    needs no allocation. run() receives the reference that post() was given; drop() is called
    instead when the executor's thread has finished and the job can never run.
*/
class STAGE_EXPORT Job
{
public:
    virtual ~Job();
    virtual void run() noexcept = 0;
    virtual void drop() noexcept;

    Job *nextJob = nullptr;
};

/* The worker whose code runs on this thread now (set while Stage starts or resumes it), or null. */
STAGE_EXPORT WorkerCore *currentWorker() noexcept;
/* True when \a worker (may be null) has been asked to stop. */
STAGE_EXPORT bool isStopRequested(const WorkerCore *worker) noexcept;

/* \a worker's stop token, or a token that never stops for null. */
STAGE_EXPORT std::stop_token stopTokenOf(const WorkerCore *worker) noexcept;

/*
    Frames known to belong to a worker while they run: the worker's body, and each child awaited
    through stage::child(). A frame resumed by a foreign (non-Stage) awaitable runs without a
    current worker; its next Stage awaitable finds the worker here by frame address, so it stays
    a cancellation point. Unregister before the frame is freed.
*/
STAGE_EXPORT void registerFrame(void *frame, WorkerCore *worker) noexcept;
STAGE_EXPORT void unregisterFrame(void *frame) noexcept;
/* Makes room for \a count more registered frames at once (a group starting many workers). */
STAGE_EXPORT void reserveFrames(std::size_t count);
STAGE_EXPORT WorkerCore *workerOfFrame(void *frame) noexcept;

/* Sets the current worker of this thread for its lifetime and restores the previous one. */
class STAGE_EXPORT CurrentWorkerScope
{
public:
    explicit CurrentWorkerScope(WorkerCore *worker) noexcept;
    ~CurrentWorkerScope();
    CurrentWorkerScope(const CurrentWorkerScope &) = delete;
    CurrentWorkerScope &operator=(const CurrentWorkerScope &) = delete;

private:
    WorkerCore *m_previous;
    bool m_previousKnown;
    int m_previousDepth;
};

/* How many body destructions by a StopMode::Destroy stop enclose the code running on this thread
   now (0 inside any Stage resumption: a nested event loop's resumptions are not part of the
   destruction). Used as std::uncaught_exceptions() is: recorded when a Delivery is made, compared
   when it is released, so that only what the destruction itself destroys counts as stopped. */
STAGE_EXPORT int bodyDestructionDepth() noexcept;

/*
    The shared state of one suspension of a coroutine on a Stage awaitable.

    Sources (a timer, a signal, a future, the worker's stop token, ...) race to settle it, on any
    thread: claim() lets exactly one of them win, the winner stores its outcome and calls publish(),
    which resumes the coroutine on its home thread (the thread that suspended it) from that thread's
    executor, never inside the winner's call stack. Losers, and late deliveries after the winner,
    are ignored, so a frame is never resumed twice. disarm() runs on the home thread just before
    the resumption, to drop whatever sources remain. The state is reference counted because the
    sources may outlive the suspension (a queued delivery, a pool thread still computing).

    An await_suspend() that finds its result ready and settles inline (returns false, no
    suspension) must claim() too, and suspend after all if the claim is lost: the worker's stop
    claims without the awaitable's locks, and has then posted the resumption. After an inline
    win the waiter never runs, so disarm() does not either: nothing may be listed or armed yet.
*/
class STAGE_EXPORT Waiter : public Job
{
public:
    enum class Outcome : quint8 { None, Value, Error, Cancelled, TimedOut };

    /* Captures the current worker of this thread (the one the awaitable belongs to, or null). */
    Waiter() noexcept;
    Waiter(const Waiter &) = delete;
    Waiter &operator=(const Waiter &) = delete;

    /* Waiters come and go with every suspension: a small per-thread cache of freed blocks saves
       the allocator most of that (off under AddressSanitizer, which must see every free). */
    static void *operator new(std::size_t size);
    static void operator delete(void *block, std::size_t size) noexcept;

    void ref() noexcept { m_ref.fetch_add(1, std::memory_order_relaxed); }
    void deref() noexcept
    {
        if (m_ref.fetch_sub(1, std::memory_order_acq_rel) == 1)
            delete this;
    }

    WorkerCore *worker() const noexcept { return m_worker; }

    /* Home thread, first thing in await_suspend (before any source is connected, since a source
       may settle at once from another thread): records the coroutine and its home executor and,
       if \a listenToStop, listens to the worker's stop token (a stop that was already requested
       settles it at once). */
    void suspend(std::coroutine_handle<> handle, bool listenToStop = true);
    /* Instead of suspend(), for a waiter that no coroutine awaits: records this thread as its home,
       where the winning source's publish() runs fire() (from the executor, never inside the
       winner's call). It does not listen to any worker's stop. */
    void bindHome();

    /* Any thread: true for exactly one caller; that caller must then store its outcome and call
       publish() (or resumeHere()). */
    bool claim() noexcept { return !(m_flags.fetch_or(Claimed, std::memory_order_acq_rel) & Claimed); }
    bool isClaimed() const noexcept { return m_flags.load(std::memory_order_acquire) & Claimed; }

    /* After a successful claim(): posts the resumption to the home thread. Any thread. */
    void publish(Outcome outcome) noexcept;
    /* After a successful claim(), on the home thread, from a call stack Stage owns: resumes now. */
    void resumeHere(Outcome outcome) noexcept;
    /* claim() + store \a error + publish(); false if another source won. */
    bool settleError(std::exception_ptr error) noexcept;
    /* After a successful claim(): stores \a error and publishes Outcome::Error. Any thread. */
    void publishError(std::exception_ptr error) noexcept;

    /* In await_resume: throws stage::Cancelled or the stored error; returns for a value. Inline:
       the throw then starts in the awaiting coroutine's own frame, one frame fewer to unwind
       (each costs two FDE lookups and CFA programs, in both unwinder phases). */
    void rethrowIfFailed() const
    {
        if (m_outcome == Outcome::Cancelled) [[unlikely]]
            throw Cancelled();
        if (m_outcome == Outcome::Error) [[unlikely]]
            rethrowError();
    }
    Outcome outcome() const noexcept { return m_outcome; }

protected:
    ~Waiter() override;
    [[noreturn]] void rethrowError() const;
    Executor *home() const noexcept { return m_home; }
    /* Home thread, once, just before the coroutine resumes: disconnect timers, signals, ... */
    virtual void disarm() noexcept {}
    /* Home thread, once, after disarm(), for a waiter bound by bindHome(): what it does instead of
       resuming a coroutine. */
    virtual void fire() noexcept {}

private:
    friend class WorkerCore; // its list of waiters listening to its stop
    void run() noexcept override;
    void drop() noexcept override;
    void resumeNow() noexcept;
    void stopListening() noexcept;

    std::atomic<int> m_ref{1};
    // Claimed: a source won. DestroyBody: a StopMode::Destroy stop found the body waiting here
    // (set under the worker's stop lock; read by run() only after a Cancelled claim). One atomic
    // byte for both: a bool of its own would grow every waiter by 8 bytes.
    enum Flag : quint8 { Claimed = 1, DestroyBody = 2 };
    std::atomic<quint8> m_flags{0};
    Outcome m_outcome = Outcome::None;
    bool m_listening = false; // home thread: suspend() put it in m_worker's stop list
    bool m_stopListed = false; // in m_worker's stop list now (under the worker's stop lock)
    std::coroutine_handle<> m_handle;
    WorkerCore *m_worker;
    Executor *m_home = nullptr;
    std::exception_ptr m_error;
    // The worker's stop list: intrusive, so listening costs no allocation (a std::stop_callback
    // is 56 bytes, its std::stop_source state an allocation per worker).
    Waiter *m_stopPrevious = nullptr;
    Waiter *m_stopNext = nullptr;
};

/*
    A waiter that can also be settled by a deadline, on its home thread's executor timer: it then
    resumes with Outcome::TimedOut (stage::sleep treats that as its value, a reply as an error).
*/
class STAGE_EXPORT TimedWaiter : public Waiter
{
public:
    TimedWaiter() noexcept = default;
    /* Home thread, after suspend(): settles with TimedOut once \a duration has passed. */
    void armTimeout(std::chrono::milliseconds duration);

protected:
    ~TimedWaiter() override;
    /* Subclasses that override disarm() call TimedWaiter::disarm() too. */
    void disarm() noexcept override;

private:
    struct Timer;
    Timer *m_timer = nullptr;
};

/* An owning reference to a Waiter subclass. */
template<typename W>
class WaiterRef
{
public:
    WaiterRef() noexcept = default;
    explicit WaiterRef(W *adopt) noexcept : m_p(adopt) {}
    WaiterRef(const WaiterRef &other) noexcept : m_p(other.m_p) { if (m_p) m_p->ref(); }
    WaiterRef(WaiterRef &&other) noexcept : m_p(std::exchange(other.m_p, nullptr)) {}
    WaiterRef &operator=(WaiterRef other) noexcept { std::swap(m_p, other.m_p); return *this; }
    ~WaiterRef() { if (m_p) m_p->deref(); }

    W *get() const noexcept { return m_p; }
    W *operator->() const noexcept { return m_p; }
    W &operator*() const noexcept { return *m_p; }
    explicit operator bool() const noexcept { return m_p != nullptr; }

private:
    W *m_p = nullptr;
};

template<typename W, typename... Args>
WaiterRef<W> makeWaiter(Args &&...args)
{
    return WaiterRef<W>(new W(std::forward<Args>(args)...));
}

/*
    The common shape of a Stage awaitable: remembers the worker it was created in, skips the
    suspension when that worker is already stopping (await_resume then throws stage::Cancelled),
    and holds the waiter while suspended. Subclasses provide arm(handle) and the result.
*/
class STAGE_EXPORT AwaitableBase
{
public:
    AwaitableBase() noexcept : m_worker(currentWorker()) {}
    bool await_ready() const noexcept { return isStopRequested(m_worker); }

protected:
    /* Called first thing in await_resume. */
    void throwIfStoppedBeforeSuspending() const
    {
        if (!m_suspended && isStopRequested(m_worker))
            throw Cancelled();
    }
    void markSuspended() noexcept { m_suspended = true; }

private:
    WorkerCore *m_worker;
    bool m_suspended = false;
};

} // namespace detail
} // namespace stage
