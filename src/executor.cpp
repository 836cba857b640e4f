#include "executor_p.h"

#include <QtCore/QCoreApplication>
#include <QtCore/QThread>

#include <algorithm>
#include <limits>
#include <unordered_map>

namespace stage::detail {

namespace {

const QEvent::Type WakeEvent = static_cast<QEvent::Type>(QEvent::registerEventType());

std::mutex g_registryMutex;
// Leaked on purpose: executors may be released during static destruction.
std::unordered_map<QThread *, Executor *> &registry()
{
    static auto *map = new std::unordered_map<QThread *, Executor *>;
    return *map;
}

// Keeps this thread's executor referenced, and shuts it down when the thread ends (the backstop
// for threads that never emit QThread::finished: the main thread at exit, adopted threads).
struct ThreadHolder
{
    Executor *executor = nullptr;
    ~ThreadHolder();
};
[[gnu::tls_model("initial-exec")]] thread_local ThreadHolder t_holder;

} // namespace

bool ExecutorReceiver::event(QEvent *event)
{
    if (event->type() == WakeEvent) {
        m_executor->runPosted();
        return true;
    }
    return QObject::event(event);
}

void ExecutorReceiver::timerEvent(QTimerEvent *)
{
    m_executor->runTimers();
}

Executor::Executor(QThread *thread) : m_thread(thread)
{
    m_receiver = new ExecutorReceiver(this);
    if (thread != QThread::currentThread())
        m_receiver->moveToThread(thread);
}

Executor::~Executor()
{
    Q_ASSERT(!m_receiver);
}

void Executor::deref() noexcept
{
    if (m_ref.fetch_sub(1, std::memory_order_acq_rel) == 1)
        delete this;
}

Executor *Executor::current()
{
    if (Executor *e = t_holder.executor)
        return e;
    Executor *e = acquire(QThread::currentThread());
    Q_ASSERT(e); // the calling thread is running
    t_holder.executor = e; // adopts the reference acquire() added
    return e;
}

Executor *Executor::acquire(QThread *thread)
{
    std::lock_guard lock(g_registryMutex);
    auto &map = registry();
    auto it = map.find(thread);
    Executor *e = nullptr;
    if (it != map.end()) {
        e = it->second;
    } else {
        if (thread->isFinished())
            return nullptr;
        e = new Executor(thread); // the registry owns this first reference
        map.emplace(thread, e);
        // QThread::finished is emitted on the finishing thread itself, after its event loop.
        QObject::connect(thread, &QThread::finished, e->m_receiver, [e]() { e->shutdown(); },
                         Qt::DirectConnection);
    }
    e->ref();
    return e;
}

bool Executor::isCurrent() const noexcept
{
    return QThread::currentThread() == m_thread;
}

void Executor::post(Job *job) noexcept
{
    std::unique_lock lock(m_mutex);
    if (m_dead) {
        lock.unlock();
        job->drop();
        return;
    }
    job->nextJob = nullptr;
    if (m_tail)
        m_tail->nextJob = job;
    else
        m_head = job;
    m_tail = job;
    if (m_syncWaiters)
        m_posted.notify_one();
    if (!m_wakePending) {
        m_wakePending = true;
        // Under the lock: shutdown() deletes the receiver under the same lock.
        QCoreApplication::postEvent(m_receiver, new QEvent(WakeEvent));
    }
}

void Executor::runPosted()
{
    // Runs jobs one at a time, including those posted meanwhile, for up to a turn's budget of
    // time; then, if jobs remain, posts another wake-up and returns, so that the rest of the event
    // loop (timers, input, painting) gets its turn between ours even when coroutines keep waking
    // each other.
    //
    // The turn is bounded by time, not by a count of jobs, and the budget depends on who comes
    // back for the next turn. A running event loop (QThread::loopLevel() > 0) delivers the
    // re-posted wake-up at once, after the events that were waiting: a short turn (kLoopTurn)
    // costs little and keeps the loop responsive on a busy machine, where a turn may also lose
    // the CPU halfway. With no event loop running, events are pumped by calls to
    // QCoreApplication::processEvents(), and processEvents() delivers only the events posted
    // before it began: the re-posted wake-up waits for the next call, which a test's
    // QTest::qWaitFor makes after sleeping 10 ms. There a turn runs longer (kPumpedTurn). Bounded
    // by 256 jobs, a turn there ran about 40 us of work per 10 ms, and a group's stop, whose
    // resumptions all end at once, could be judged late by its shutdown timeout (stopping 20,000
    // workers took 1.6 s, and 14,656 of them were reported abandoned at a 1 s timeout); bounded
    // by time, the same stop takes a few milliseconds.
    //
    // Many jobs per wake-up also saves the dispatcher's two or three system calls per wake-up.
    // m_wakePending is cleared first, so that a job that spins a nested event loop (a slot that
    // calls stage::waitFor) still gets later jobs run inside it: the first post wakes it.
    {
        std::lock_guard lock(m_mutex);
        m_wakePending = false;
    }
    // The clock is read after the first job (the turn's budget starts there: a turn of one job
    // reads it once), then after strides of 2, 4, ... kMaxStride jobs while a stride takes less
    // than kQuickStride, and after every job again once one takes 4 kQuickStride or more: a read
    // costs about 30 ns, a short resumption about 150 ns, and the budget is overrun by about one
    // stride (tens of microseconds) unless jobs suddenly become slow.
    constexpr int kMaxStride = 16;
    constexpr auto kQuickStride = std::chrono::microseconds(16);
    Clock::time_point deadline;
    Clock::time_point lastRead;
    int stride = 0; // 0 until the first read
    int untilRead = 1;
    for (;;) {
        Job *job;
        {
            std::lock_guard lock(m_mutex);
            job = m_head;
            if (!job)
                return;
            m_head = job->nextJob;
            if (!m_head)
                m_tail = nullptr;
        }
        job->nextJob = nullptr;
        job->run();
        if (--untilRead > 0)
            continue;
        const auto now = Clock::now();
        if (stride == 0) {
            deadline = now + (m_thread->loopLevel() > 0 ? kLoopTurn : kPumpedTurn);
            stride = 1;
        } else if (now >= deadline) {
            break;
        } else if (now - lastRead < kQuickStride) {
            stride = std::min(stride * 2, kMaxStride);
        } else if (now - lastRead >= 4 * kQuickStride) {
            stride = 1;
        }
        lastRead = now;
        untilRead = stride;
    }
    std::lock_guard lock(m_mutex);
    if (m_head && !m_wakePending && !m_dead) {
        m_wakePending = true;
        QCoreApplication::postEvent(m_receiver, new QEvent(WakeEvent));
    }
}

bool Executor::runOne(Clock::time_point deadline)
{
    if (!m_timers.empty() && m_timers.begin()->first.deadline <= Clock::now()) {
        runTimers();
        return true;
    }
    Job *job;
    {
        std::unique_lock lock(m_mutex);
        if (!m_head) {
            auto until = deadline;
            if (!m_timers.empty())
                until = std::min(until, m_timers.begin()->first.deadline);
            ++m_syncWaiters;
            m_posted.wait_until(lock, until, [this] { return m_head != nullptr; });
            --m_syncWaiters;
        }
        job = m_head;
        if (job) {
            m_head = job->nextJob;
            if (!m_head)
                m_tail = nullptr;
        }
    }
    if (job) {
        job->nextJob = nullptr;
        job->run();
        return true;
    }
    return Clock::now() < deadline;
}

Executor::TimerHandle Executor::addTimer(Clock::time_point deadline, Job *job)
{
    Q_ASSERT(isCurrent());
    auto handle = m_timers.emplace(TimerKey{deadline, ++m_timerSequence}, job).first;
    if (deadline < m_armedFor)
        rearmTimer();
    return handle;
}

void Executor::removeTimer(TimerHandle handle)
{
    Q_ASSERT(isCurrent());
    m_timers.erase(handle);
    // The QBasicTimer stays armed for m_armedFor even when no timer is left: it then fires once
    // for nothing. Stopping and restarting it for every short-lived timer (a stop's shutdown
    // timeout, a receive's timeout) costs a timer registration with the event dispatcher each.
}

void Executor::runTimers()
{
    const auto now = Clock::now();
    m_armedFor = Clock::time_point::max(); // the QBasicTimer is re-armed below
    while (!m_timers.empty() && m_timers.begin()->first.deadline <= now) {
        auto first = m_timers.begin();
        Job *job = first->second;
        m_timers.erase(first); // before run(): the job may add or remove timers
        job->run();
    }
    rearmTimer();
}

void Executor::rearmTimer()
{
    if (!m_receiver)
        return;
    if (m_timers.empty()) {
        m_receiver->m_timer.stop();
        m_armedFor = Clock::time_point::max();
        return;
    }
    const auto deadline = m_timers.begin()->first.deadline;
    const auto now = Clock::now();
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(deadline - now);
    // QBasicTimer takes an int of ms: a deadline beyond about 24.8 days is reached in steps (the
    // timer fires early, finds nothing due and re-arms).
    const qint64 ms = std::clamp<qint64>(wait.count(), 0, std::numeric_limits<int>::max());
    m_receiver->m_timer.start(int(ms), Qt::PreciseTimer, m_receiver);
    m_armedFor = ms == wait.count() ? deadline : now + std::chrono::milliseconds(ms);
}

void Executor::shutdown()
{
    // On the executor's thread: from QThread::finished, or from its thread_local holder at exit.
    {
        std::lock_guard lock(g_registryMutex);
        auto &map = registry();
        auto it = map.find(m_thread);
        if (it == map.end() || it->second != this)
            return; // already shut down
        map.erase(it);
    }
    Job *pending;
    {
        std::lock_guard lock(m_mutex);
        m_dead = true;
        pending = m_head;
        m_head = m_tail = nullptr;
        delete m_receiver;
        m_receiver = nullptr;
    }
    int dropped = 0;
    while (pending) {
        Job *next = pending->nextJob;
        pending->drop();
        pending = next;
        ++dropped;
    }
    if (dropped || !m_timers.empty()) {
        qCWarning(lcWorker, "A thread ended with %d resumption(s) and %d timer(s) of Stage coroutines pending; "
                            "they will never run (stop the workers before their thread)",
                  dropped, int(m_timers.size()));
    }
    m_timers.clear();
    deref(); // the registry's reference
}

ThreadHolder::~ThreadHolder()
{
    if (!executor)
        return;
    executor->shutdown();
    executor->deref();
}

// Job

Job::~Job() = default;

void Job::drop() noexcept
{
    delete this;
}

} // namespace stage::detail
