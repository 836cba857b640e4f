#pragma once

// Helpers shared by the Stage QtTest suites. Header-only, no Q_OBJECT (AutoMoc would not see it).
//
// Coroutines cannot use QVERIFY/QCOMPARE (they expand to `return;`): a body records what it saw in
// a Probe, and the test function compares outside, after QTRY_COMPARE_WITH_TIMEOUT on the
// finished() count of its handle.

#include <stage/stage.h>

#include <QtCore/QAbstractEventDispatcher>
#include <QtCore/QCoreApplication>
#include <QtCore/QEventLoop>
#include <QtCore/QMetaObject>
#include <QtCore/QMutex>
#include <QtCore/QMutexLocker>
#include <QtCore/QObject>
#include <QtCore/QSemaphore>
#include <QtCore/QString>
#include <QtCore/QStringList>
#include <QtCore/QThread>
#include <QtCore/QTimer>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <exception>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace stagetest {

using namespace std::chrono_literals;

/* Generous limit for every asynchronous check (QTRY_*_WITH_TIMEOUT): the machine may be loaded. */
constexpr int Timeout = 10000;

/* An ordered, thread-safe record of events ("child dtor", "parent catch", ...). */
class EventLog
{
public:
    void add(const QString &event)
    {
        QMutexLocker lock(&m_mutex);
        m_events.append(event);
    }
    QStringList events() const
    {
        QMutexLocker lock(&m_mutex);
        return m_events;
    }
    int count(const QString &event) const
    {
        QMutexLocker lock(&m_mutex);
        return int(m_events.count(event));
    }

private:
    mutable QMutex m_mutex;
    QStringList m_events;
};

/* Put one in a coroutine frame: its destructor counts (and optionally logs) the unwinding. */
class Sentinel
{
public:
    explicit Sentinel(std::atomic<int> &destroyed, EventLog *log = nullptr, QString label = {})
        : m_destroyed(&destroyed), m_log(log), m_label(std::move(label))
    {
    }
    Sentinel(const Sentinel &) = delete;
    Sentinel &operator=(const Sentinel &) = delete;
    ~Sentinel()
    {
        m_destroyed->fetch_add(1);
        if (m_log)
            m_log->add(m_label);
    }

private:
    std::atomic<int> *m_destroyed;
    EventLog *m_log;
    QString m_label;
};

/* What a worker body saw, written inside the coroutine (any thread), read by the test. */
struct Probe
{
    std::atomic<int> entered{0};   // the body started
    std::atomic<int> resumed{0};   // the body got past its awaited point normally
    std::atomic<int> cancelled{0}; // the body caught stage::Cancelled (and rethrew it)
    std::atomic<int> errors{0};    // the body caught the error the test expects
    std::atomic<int> destroyed{0}; // Sentinel destructions
    std::atomic<QThread *> startThread{nullptr};
    std::atomic<QThread *> resumeThread{nullptr}; // QThread::currentThread() after the co_await
    EventLog log;
};

/* Records every WorkerHandle::finished() of one handle. Declare it after the handle. */
class ExitRecorder
{
public:
    explicit ExitRecorder(stage::WorkerHandle &handle)
    {
        QObject::connect(&handle, &stage::WorkerHandle::finished, &m_context,
                         [this](const stage::WorkerExit &exit) { m_exits.push_back(exit); });
    }

    int count() const { return int(m_exits.size()); }
    stage::WorkerExit last() const { return m_exits.empty() ? stage::WorkerExit{} : m_exits.back(); }
    stage::WorkerExit::Kind lastKind() const { return last().kind; }
    QString lastReason() const { return last().reason; }

private:
    QObject m_context;
    std::vector<stage::WorkerExit> m_exits;
};

/* A started QThread with an event loop, quit and joined when the scope ends (also on a failed check). */
class ScopedThread
{
public:
    explicit ScopedThread(const QString &name = QStringLiteral("stage-test-thread"))
    {
        m_thread.setObjectName(name);
        // started() is emitted on the new thread once its event dispatcher exists.
        auto running = std::make_shared<QSemaphore>();
        QObject::connect(&m_thread, &QThread::started, &m_thread, [running]() { running->release(); },
                         Qt::DirectConnection);
        m_thread.start();
        running->acquire();
    }
    ScopedThread(const ScopedThread &) = delete;
    ScopedThread &operator=(const ScopedThread &) = delete;
    ~ScopedThread()
    {
        m_thread.quit();
        m_thread.wait();
    }

    QThread *get() noexcept { return &m_thread; }
    /* A QObject living on the thread, for QMetaObject::invokeMethod(..., Qt::QueuedConnection). */
    QObject *context() const noexcept { return m_thread.eventDispatcher(); }

private:
    QThread m_thread;
};

/*
    Spins a real event loop until \a done() or \a timeoutMs, looking every millisecond (the loop
    runs everything else in between). For waits that QTRY_* and QTest::qWaitFor would slow down:
    they sleep 10 ms between their event-processing rounds.
*/
template<typename Predicate>
bool spinUntil(Predicate done, int timeoutMs = Timeout)
{
    if (done())
        return true;
    QEventLoop loop;
    QTimer poll;
    poll.setTimerType(Qt::PreciseTimer);
    QObject::connect(&poll, &QTimer::timeout, &loop, [&] {
        if (done())
            loop.quit();
    });
    poll.start(1);
    QTimer failsafe;
    failsafe.setSingleShot(true);
    QObject::connect(&failsafe, &QTimer::timeout, &loop, &QEventLoop::quit);
    failsafe.start(timeoutMs);
    loop.exec();
    return done();
}

/*
    Sends a no-op through \a thread's event queue and back through the calling thread's, spinning
    a local event loop meanwhile: whatever was posted to either thread before has been delivered
    when it returns true. False after \a timeoutMs. Used to check that something did NOT happen
    (a second finished(), a late resumption) without sleeping.
*/
inline bool roundTrip(QThread *thread, int timeoutMs = Timeout)
{
    auto done = std::make_shared<std::atomic<bool>>(false);
    QObject *here = QCoreApplication::instance();
    if (QThread::currentThread() != here->thread())
        here = QThread::currentThread()->eventDispatcher();
    QObject *there = thread == here->thread() ? here : thread->eventDispatcher();
    if (!here || !there)
        return false;
    QMetaObject::invokeMethod(
        there,
        [done, here]() {
            QMetaObject::invokeMethod(here, [done]() { done->store(true); }, Qt::QueuedConnection);
        },
        Qt::QueuedConnection);
    return spinUntil([&done] { return done->load(); }, timeoutMs);
}

/*
    A third-party awaitable (neither Stage nor QCoro) that the test completes by hand, on the thread
    of its choice. Copies share one state, so the test keeps a copy while stage::guard() owns another.
*/
class ManualAwaitable
{
public:
    struct State
    {
        std::coroutine_handle<> handle;
        std::optional<int> value;
        std::exception_ptr error;
        std::atomic<int> suspensions{0};
        std::atomic<int> deliveries{0}; // await_resume() calls
    };

    ManualAwaitable() : m_state(std::make_shared<State>()) {}

    bool await_ready() const noexcept { return m_state->value.has_value() || m_state->error; }
    void await_suspend(std::coroutine_handle<> handle) noexcept
    {
        m_state->handle = handle;
        m_state->suspensions.fetch_add(1);
    }
    int await_resume()
    {
        m_state->deliveries.fetch_add(1);
        if (m_state->error)
            std::rethrow_exception(m_state->error);
        return *m_state->value;
    }

    bool isSuspended() const noexcept { return bool(m_state->handle); }
    int suspensions() const noexcept { return m_state->suspensions.load(); }
    int deliveries() const noexcept { return m_state->deliveries.load(); }

    /* Resumes the waiting coroutine (if any) inside this call with \a value. */
    void complete(int value)
    {
        m_state->value = value;
        resume();
    }
    /* Resumes the waiting coroutine (if any) inside this call, throwing \a error from await_resume. */
    void fail(std::exception_ptr error)
    {
        m_state->error = std::move(error);
        resume();
    }

private:
    void resume()
    {
        if (auto handle = std::exchange(m_state->handle, {}))
            handle.resume();
    }

    std::shared_ptr<State> m_state;
};


} // namespace stagetest
