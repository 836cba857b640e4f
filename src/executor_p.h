#pragma once

//  W A R N I N G
//  Not part of the Stage API. We mean it.

#include <stage/detail/spinmutex.h>
#include <stage/detail/waiter.h>

#include <QtCore/QBasicTimer>
#include <QtCore/QEvent>
#include <QtCore/QObject>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>

QT_BEGIN_NAMESPACE
class QThread;
QT_END_NAMESPACE

namespace stage::detail {

using Clock = std::chrono::steady_clock;

class Executor;

/* The QObject that lives on the executor's thread and receives its wake-ups and timer events. */
class ExecutorReceiver final : public QObject
{
public:
    explicit ExecutorReceiver(Executor *executor) : m_executor(executor) {}

    bool event(QEvent *event) override;
    void timerEvent(QTimerEvent *event) override;

    Executor *m_executor;
    QBasicTimer m_timer;
};

/*
    One per thread that resumes Stage coroutines: a queue of jobs posted from any thread, run in
    batches from the thread's event loop (one posted QEvent per batch, sent only when the queue
    goes from empty to non-empty; a batch yields after 1 or 4 ms), and the thread's timers
    (one QBasicTimer for the earliest deadline of an ordered map).

    Lifetime: reference counted. The registry and the thread's own thread_local holder keep it
    while the thread runs; when the thread finishes, shutdown() deletes the receiver and drops
    whatever can no longer run. Waiters keep a reference, so a late post() finds it dead, not freed.
*/
class Executor
{
public:
    struct TimerKey
    {
        Clock::time_point deadline;
        quint64 sequence;
        bool operator<(const TimerKey &o) const noexcept
        {
            return deadline < o.deadline || (deadline == o.deadline && sequence < o.sequence);
        }
    };
    using TimerMap = std::map<TimerKey, Job *>;
    using TimerHandle = TimerMap::iterator;

    /* The calling thread's executor, created on first use. */
    static Executor *current();
    /* The executor of \a thread (created if needed), with a reference added; null if \a thread has finished. */
    static Executor *acquire(QThread *thread);

    void ref() noexcept { m_ref.fetch_add(1, std::memory_order_relaxed); }
    void deref() noexcept;

    QThread *thread() const noexcept { return m_thread; }
    bool isCurrent() const noexcept;

    /* Any thread: runs \a job later on this executor's thread (or drops it if the thread has ended). */
    void post(Job *job) noexcept;

    /* Executor thread only: calls \a job->run() once \a deadline has passed. The job is not owned. */
    TimerHandle addTimer(Clock::time_point deadline, Job *job);
    void removeTimer(TimerHandle handle);

    /* Executor thread: runs posted jobs and due timers, without spinning a Qt event loop, until
       \a done returns true (true) or \a deadline passes (false). For bounded synchronous waits
       such as ~Group(). */
    template<typename Predicate>
    bool runUntil(Predicate done, Clock::time_point deadline)
    {
        while (!done()) {
            if (!runOne(deadline))
                return done();
        }
        return true;
    }

    /* On the executor's thread when it ends: drops what can no longer run. Idempotent. */
    void shutdown();

private:
    friend class ExecutorReceiver;
    explicit Executor(QThread *thread);
    ~Executor();

    /* How long one wake-up runs posted jobs before it yields (see runPosted()): while the thread
       runs an event loop, which comes back at once, and while it has none and its events are
       pumped by processEvents() calls (a test's QTest::qWaitFor), which may sleep in between. */
    static constexpr auto kLoopTurn = std::chrono::milliseconds(1);
    static constexpr auto kPumpedTurn = std::chrono::milliseconds(4);

    void runPosted();
    void runTimers();
    void rearmTimer();
    bool runOne(Clock::time_point deadline); // false once the deadline has passed

    std::atomic<int> m_ref{1};
    QThread *const m_thread;
    ExecutorReceiver *m_receiver = nullptr; // lives on m_thread; null after shutdown()

    SpinMutex m_mutex; // guards the queue, m_wakePending and m_dead; held for a few instructions
    Job *m_head = nullptr;
    Job *m_tail = nullptr;
    bool m_wakePending = false;
    bool m_dead = false;
    int m_syncWaiters = 0; // threads blocked in runOne(), woken by post()
    std::condition_variable_any m_posted;

    TimerMap m_timers; // executor thread only
    quint64 m_timerSequence = 0;
    Clock::time_point m_armedFor = Clock::time_point::max();
};

/* A heap job running a callable once (or destroying it unrun, if its thread has ended). */
template<typename F>
class FunctionJob final : public Job
{
public:
    explicit FunctionJob(F &&f) : m_f(std::move(f)) {}
    void run() noexcept override
    {
        m_f();
        delete this;
    }

private:
    F m_f;
};

template<typename F>
Job *makeJob(F &&f)
{
    return new FunctionJob<std::decay_t<F>>(std::forward<F>(f));
}

} // namespace stage::detail
