#pragma once

#include <stage/detail/waiter.h>

#include <QtCore/QMetaType>
#include <QtCore/QObject>
#include <QtCore/QString>

#include <QCoro/QCoroTask>

#include <chrono>
#include <functional>
#include <memory>
#include <stop_token>
#include <type_traits>

QT_BEGIN_NAMESPACE
class QThread;
QT_END_NAMESPACE

namespace stage {

class WorkerHandlePrivate;

/*!
    The context of one run of a worker: what a worker body receives as \c stage::Worker &.

    A worker is one run of the coroutine a factory builds; a restart is a new run with a new
    Worker (same id, generation + 1). The Worker outlives the coroutine frame, so the body may
    keep the reference for its whole life.

    Thread: every function is safe from any thread. The body itself starts on, and always resumes
    on, thread() (its home thread).
    Cancellation: stopToken() is stopped when the owner asks the worker to stop; every Stage
    awaitable awaited in this worker's body, or in a child awaited through stage::child(), then
    throws stage::Cancelled, even after a foreign (plain QCoro) co_await resumed the frame. A child
    coroutine awaited directly (co_await child()) shares the stop only until a foreign awaitable
    resumes it: await children through stage::child(), foreign operations through stage::guard().
*/
class STAGE_EXPORT Worker
{
public:
    Worker(const Worker &) = delete;
    Worker &operator=(const Worker &) = delete;

    /*! A process-unique id of the worker, kept across restarts. */
    quint64 id() const noexcept;
    /*! How many times this worker has been restarted: 0 for its first run. */
    int generation() const noexcept;
    /*! The token stopped when the worker is asked to stop. */
    std::stop_token stopToken() const noexcept;
    /*! True once the worker has been asked to stop. */
    bool isStopRequested() const noexcept;
    /*! A synchronous cancellation point for CPU loops: throws stage::Cancelled if a stop was requested. */
    void throwIfStopRequested() const;
    /*! The home thread: where the body starts and resumes. */
    QThread *thread() const noexcept;
    /*!
        Tells the owner the worker is alive and making progress: counts one iteration in the
        group's statistics and feeds its watchdog (Group::heartbeatTimeout()). Cheap (two relaxed
        atomic stores); call it once per loop iteration.
    */
    void heartbeat() noexcept;

    /*!
        The worker whose body is running on the calling thread right now, or nullptr. Known
        limit: after a co_await on a foreign (non-Stage) awaitable it is nullptr until the frame's
        next Stage awaitable resumes it; take a \c stage::Worker & in the factory instead.
    */
    static Worker *current() noexcept;

private:
    friend class detail::WorkerCore;
    explicit Worker(detail::WorkerCore *core) noexcept : d(core) {}
    ~Worker() = default;

    detail::WorkerCore *d;
};

/*! How one run of a worker ended; carried by WorkerHandle::finished(). */
class STAGE_EXPORT WorkerExit
{
    Q_GADGET
    Q_PROPERTY(Kind kind MEMBER kind)
    Q_PROPERTY(QString reason MEMBER reason)
    Q_PROPERTY(quint64 id MEMBER id)
    Q_PROPERTY(int generation MEMBER generation)

public:
    /*!
        The rule for a stop: once a worker's stop has been requested (a shutdown, a restart of a
        sibling, a resize, a removal, WorkerHandle::requestStop()), however its body ends (it
        returns, stage::Cancelled, or any other exception thrown while it unwinds) the end is
        Cancelled, and a stage::Delivery it held goes back to its mailbox uncounted. The one
        exception is a worker its group judged faulty (a missed heartbeat, Group::heartbeatTimeout()):
        that end is Failed, and a message it held counts a failure.
    */
    enum class Kind {
        Completed, //!< the body returned normally, and no stop had been requested
        Failed,    //!< an exception escaped the body (or the factory) with no stop requested, or the
                   //!< group's watchdog stopped it; reason holds the what() or the missed deadline
        Cancelled, //!< the body ended after its stop was requested: by stage::Cancelled, a normal return
                   //!< ("returned after a stop request") or any other exception ("stopped; while
                   //!< unwinding it threw: <what()>")
        Abandoned, //!< the body did not end within the stop timeout; its frame may still be alive
    };
    Q_ENUM(Kind)

    /*! How the run ended (see Kind). */
    Kind kind = Kind::Completed;
    QString reason;           //!< what() of the exception, or a short description
    std::exception_ptr error; //!< the exception that escaped the body, for Failed
    /*! The worker's process-unique id (Worker::id()), kept across its restarts. */
    quint64 id = 0;
    /*! Which run of that worker ended: 0 for the first, one more for each restart. */
    int generation = 0;

    /*! True for Failed and Abandoned: the ends a restart policy treats as failures. */
    bool isFailure() const noexcept { return kind == Kind::Failed || kind == Kind::Abandoned; }
};

/*!
    Builds the coroutine of one worker run. Called on the worker's home thread at every start and
    restart. The factory object stays alive (shared) until every frame it built has ended, so a
    capturing lambda coroutine is safe here: its captures live in the stored factory, not in a
    temporary.
*/
using WorkerFactory = std::function<QCoro::Task<>(Worker &)>;

namespace detail {
/* Accepts a factory taking a stage::Worker & or nothing (the seed's shape). */
template<typename F>
WorkerFactory toWorkerFactory(F &&factory)
{
    using Fn = std::decay_t<F>;
    if constexpr (std::is_invocable_r_v<QCoro::Task<>, Fn &, Worker &>) {
        return WorkerFactory(std::forward<F>(factory));
    } else {
        static_assert(std::is_invocable_r_v<QCoro::Task<>, Fn &>,
                      "a worker factory takes a stage::Worker & (or nothing) and returns QCoro::Task<>");
        return [f = Fn(std::forward<F>(factory))](Worker &) mutable { return f(); };
    }
}
} // namespace detail

/*!
    Owns one restartable worker: starts a coroutine from a factory, asks it to stop, and reports
    exactly once per run how the frame ended.

    \code
    stage::WorkerHandle handle;
    connect(&handle, &stage::WorkerHandle::finished, [&](const stage::WorkerExit &exit) {
        if (exit.kind == stage::WorkerExit::Kind::Failed)
            handle.restart(); // a fresh frame from the same factory, generation + 1
    });
    handle.start([](stage::Worker &w) -> QCoro::Task<> {
        for (;;) { co_await stage::sleep(1s); poll(); }
    });
    \endcode

    Defaults: stopTimeout is 5000 ms; the worker runs on the handle's thread unless start() is
    given another QThread (which must run an event loop).

    Thread: the handle is used from its own thread (requestStop() from any thread). finished() is
    emitted on the handle's thread, from the event loop, never from inside start().
    Cancellation: requestStop() stops the worker's token; the body unwinds at its next Stage
    awaitable. If it has not ended stopTimeout ms later, finished() reports Kind::Abandoned (the
    frame cannot be destroyed safely, so it is left to end on its own; abandonedWorkerFinished()
    tells when it does).
    Destruction: ~WorkerHandle() requests a stop and does not wait; the frame ends on its own.
*/
class STAGE_EXPORT WorkerHandle : public QObject
{
    Q_OBJECT
    Q_PROPERTY(State state READ state NOTIFY stateChanged)
    Q_PROPERTY(bool running READ isRunning NOTIFY runningChanged)
    Q_PROPERTY(int generation READ generation NOTIFY started)
    Q_PROPERTY(int stopTimeout READ stopTimeout WRITE setStopTimeout NOTIFY stopTimeoutChanged)
    Q_PROPERTY(int abandonedCount READ abandonedCount NOTIFY abandonedCountChanged)

public:
    /*! Where the handle's worker is; notified by stateChanged(). */
    enum class State {
        Idle,     //!< never started
        Running,  //!< the frame is alive
        Stopping, //!< a stop was requested and the frame is still alive
        Finished, //!< the last run ended (see lastExit())
    };
    Q_ENUM(State)

    /*! Creates an idle handle (nothing runs until start()) living on the current thread. */
    explicit WorkerHandle(QObject *parent = nullptr);
    ~WorkerHandle() override;

    /*!
        Starts a worker from \a factory on \a thread (default: this handle's thread). On the
        handle's own thread the body runs at once, up to its first suspension. Returns false, with
        a warning under stage.worker, if a run is still in progress or \a factory is empty.
    */
    template<typename F>
    bool start(F &&factory, QThread *thread = nullptr)
    {
        return startWith(detail::toWorkerFactory(std::forward<F>(factory)), thread);
    }
    /*! Starts a new run (generation + 1) from the last factory and thread. False if running or never started. */
    bool restart();
    /*! Asks the running worker to stop. Idempotent. Thread: any. */
    void requestStop();

    /*! The current state: Idle until start(), then Running, Stopping, Finished. */
    State state() const;
    /*! True while a run's frame is alive (Running or Stopping); notified by runningChanged(). */
    bool isRunning() const;
    /*!
        The current (or last) run: 0 for the first start, one more for each restart(); notified by
        started().
    */
    int generation() const;
    /*!
        The worker's process-unique id (Worker::id()), assigned when the handle is created and kept across
        restarts.
    */
    quint64 id() const;
    /*! How the last run ended; meaningful once state() is Finished. */
    WorkerExit lastExit() const;

    /*!
        Milliseconds a stopping worker gets before finished() reports it Kind::Abandoned; 5000 by default.
        Notified by stopTimeoutChanged().
    */
    int stopTimeout() const;
    /*! Milliseconds a stopping worker gets before it is reported abandoned; negative values are refused. */
    void setStopTimeout(int milliseconds);

    /*! Frames reported abandoned that have not ended yet. */
    int abandonedCount() const;

Q_SIGNALS:
    /*! state() changed to \a state. */
    void stateChanged(stage::WorkerHandle::State state);
    /*! isRunning() changed to \a running. */
    void runningChanged(bool running);
    /*! A run started: \a generation is its generation(). */
    void started(int generation);
    /*! Exactly once per run. */
    void finished(const stage::WorkerExit &exit);
    /*! stopTimeout() changed to \a milliseconds. */
    void stopTimeoutChanged(int milliseconds);
    /*! abandonedCount() changed to \a count. */
    void abandonedCountChanged(int count);
    /*! A frame reported abandoned has ended after all; \a exit says how. */
    void abandonedWorkerFinished(const stage::WorkerExit &exit);

private:
    bool startWith(WorkerFactory factory, QThread *thread);

    std::unique_ptr<WorkerHandlePrivate> d;
};

} // namespace stage

Q_DECLARE_METATYPE(stage::WorkerExit)
