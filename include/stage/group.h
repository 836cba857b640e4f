#pragma once

#include <stage/detail/waiter.h>
#include <stage/guard.h>
#include <stage/node.h>
#include <stage/policy.h>
#include <stage/worker.h>

#include <QtCore/QObject>
#include <QtCore/QPointer>

#include <chrono>
#include <memory>

namespace stage {

class GroupPrivate;
class Group;
class MailboxBase;

/*! A consistent snapshot of a group's counters (Group::statistics()). */
class STAGE_EXPORT GroupStatistics
{
    Q_GADGET
    Q_PROPERTY(int running MEMBER running)
    Q_PROPERTY(qint64 started MEMBER started)
    Q_PROPERTY(qint64 completed MEMBER completed)
    Q_PROPERTY(qint64 failed MEMBER failed)
    Q_PROPERTY(qint64 cancelled MEMBER cancelled)
    Q_PROPERTY(qint64 abandoned MEMBER abandoned)
    Q_PROPERTY(qint64 restarted MEMBER restarted)
    Q_PROPERTY(qint64 iterations MEMBER iterations)

public:
    int running = 0;       //!< frames alive now (including those being stopped)
    qint64 started = 0;    //!< runs started (first starts and restarts)
    qint64 completed = 0;  //!< runs that returned normally with no stop requested
    qint64 failed = 0;     //!< runs that threw (or missed their heartbeat)
    qint64 cancelled = 0;  //!< runs that ended after a stop request (shutdown, resize)
    qint64 abandoned = 0;  //!< runs that did not end within the shutdown timeout
    qint64 restarted = 0;  //!< restarts decided by the policy
    qint64 iterations = 0; //!< Worker::heartbeat() calls

    /*! started == running + completed + failed + cancelled + abandoned, always. */
    bool isConsistent() const noexcept { return started == running + completed + failed + cancelled + abandoned; }
};

namespace detail {
using GroupShutdownAwaitable = NodeStoppedAwaitable;
} // namespace detail

/*!
    A group of restartable workers built from one factory: the first degree of Stage, replacing a
    fire-and-forget coroutine or QtConcurrent::run whose failure silently stops the work.

    \code
    stage::Group group;
    group.setSize(4);
    group.spawn([this](stage::Worker &worker) -> QCoro::Task<> {
        // A capturing lambda coroutine is safe here: the group keeps the lambda (the factory)
        // alive until every frame it built has ended.
        for (;;) {
            co_await stage::sleep(1s);
            worker.heartbeat();
            poll();
        }
    });
    ...
    co_await group.shutdown(); // every worker unwound (or reported abandoned)
    \endcode

    A worker that throws is rebuilt from the factory and restarted according to restartType(),
    after backoff(), within the restart intensity (more than maxRestarts() restarts within
    restartPeriod() ms makes the group give up: it stops every worker, enters Failed and emits
    gaveUp()). Defaults: size 1, RestartType::Transient, Backoff::exponential() (10 ms doubling to
    5 s, jitter 0.2, reset after 5 s of healthy running), maxRestarts -1 (unlimited),
    restartPeriod 5000 ms, threadCount 0 (the group's own thread), shutdownTimeout 5000 ms,
    heartbeatTimeout 0 (no watchdog).

    Thread: a Group is used from the thread it lives in; its signals are emitted there. Workers run
    on that thread or, with threadCount() > 0, on threads the group owns (each with its own event
    loop); a worker always resumes on its home thread. Workers are started from the event loop,
    never from inside a call to the group, so a worker body may safely delete its own group.
    Cancellation: shutdown() and resizing down stop workers through their stop tokens; a worker
    unwinds at its next Stage awaitable with stage::Cancelled (stopMode() Unwind, the default),
    or, with StopMode::Destroy, a body waiting in a Stage awaitable is destroyed in place
    (destructors run, catch blocks do not; see stage::StopMode).
    Errors: misuse (negative size, spawn twice, calls after shutdown, changing threadCount while
    running) is refused with a warning under stage.group and changes nothing.
    Supervision: under a stage::Supervisor (Supervisor::addChild()) the group is a child node: a
    group added before spawn() waits for its supervisor to start it; when it gives up (by default
    at its first worker failure, see maxRestarts()) it enters Failed and its supervisor decides,
    restarting it from its factory by the supervisor's strategy.
*/
class STAGE_EXPORT Group : public stage::Node // qualified: moc records the base by name (QML type info)
{
    Q_OBJECT
    Q_PROPERTY(int size READ size WRITE setSize NOTIFY sizeChanged)
    Q_PROPERTY(stage::RestartType restartType READ restartType WRITE setRestartType NOTIFY restartTypeChanged)
    Q_PROPERTY(stage::Backoff backoff READ backoff WRITE setBackoff NOTIFY backoffChanged)
    Q_PROPERTY(int maxRestarts READ maxRestarts WRITE setMaxRestarts NOTIFY maxRestartsChanged)
    Q_PROPERTY(int restartPeriod READ restartPeriod WRITE setRestartPeriod NOTIFY restartPeriodChanged)
    Q_PROPERTY(int threadCount READ threadCount WRITE setThreadCount NOTIFY threadCountChanged)
    Q_PROPERTY(int shutdownTimeout READ shutdownTimeout WRITE setShutdownTimeout NOTIFY shutdownTimeoutChanged)
    Q_PROPERTY(int heartbeatTimeout READ heartbeatTimeout WRITE setHeartbeatTimeout NOTIFY heartbeatTimeoutChanged)
    Q_PROPERTY(stage::StopMode stopMode READ stopMode WRITE setStopMode NOTIFY stopModeChanged)
    Q_PROPERTY(int running READ running NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 started READ started NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 completed READ completed NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 failed READ failed NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 cancelled READ cancelled NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 abandoned READ abandoned NOTIFY statisticsChanged)
    Q_PROPERTY(int lingering READ lingering NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 restarted READ restarted NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 iterations READ iterations NOTIFY statisticsChanged)
    Q_MOC_INCLUDE(<stage/mailbox.h>)
    Q_PROPERTY(stage::MailboxBase *mailbox READ mailbox WRITE setMailbox NOTIFY mailboxChanged)

public:
    /*! The node states (Node::State), also reachable as Group::State. */
    using State = Node::State;

    /*!
        Creates an idle group with the defaults listed above; nothing runs until spawn() (or, under a
        supervisor, until the supervisor starts the group). Thread: the group is used from the thread
        it lives in.
    */
    explicit Group(QObject *parent = nullptr);
    /*! Shuts the group down first if it runs, waiting at most shutdownTimeout(). */
    ~Group() override;

    /*!
        Sets the factory and starts size() workers from it, from the event loop. Accepts a factory
        taking a stage::Worker & or nothing, returning QCoro::Task<>. Returns false, with a
        warning, if the group already has a factory, has been shut down, or \a factory is empty.
    */
    template<typename F>
    bool spawn(F &&factory)
    {
        return spawnWith(detail::toWorkerFactory(std::forward<F>(factory)));
    }

    /* start(), stop() and restart() are Node's slots: a root group that has stopped (after
       shutdown() or giving up) starts size() workers from its factory again; see Node::start(). */

    /*!
        Asks every worker to stop and restarts none after that; finishes when every worker has
        ended or, after \a timeout (default: shutdownTimeout()), been reported abandoned.
        Idempotent; awaiting it after the group stopped does not suspend. Emits stopped().
        Cancellation: awaiting it is a cancellation point of the awaiting worker (the shutdown
        itself goes on).
    */
    detail::GroupShutdownAwaitable shutdown(std::chrono::milliseconds timeout = std::chrono::milliseconds(-1));

    /*!
        Runs \a body; when it finishes or throws, shuts the group down, waits for every worker to
        end, and returns the body's value or rethrows its exception (the seed's scope).
        Thread: the group's thread. The group must outlive the call.
    */
    template<typename T>
    QCoro::Task<T> scope(QCoro::Task<T> body)
    {
        return runScope(QPointer<Group>(this), std::move(body));
    }

    /*! How many workers the group runs; 1 by default. Notified by sizeChanged(). */
    int size() const;
    /*! Starts workers when raised; stops the newest ones gracefully when lowered. Negative: refused. */
    void setSize(int size);

    /*!
        When a worker that ended is restarted: RestartType::Transient by default (after a failure
        only). Notified by restartTypeChanged().
    */
    RestartType restartType() const;
    /*! Sets restartType() to \a type; no signal if unchanged. */
    void setRestartType(RestartType type);
    /*!
        The delay before each restart: Backoff::exponential() by default (the first restart at once, then 10
        ms doubling to 5 s with 20% jitter, reset after 5 s of healthy running). Notified by
        backoffChanged().
    */
    Backoff backoff() const;
    /*!
        Sets backoff() to \a backoff (Backoff::none() for tests and restart storms); applies to the next
        restart.
    */
    void setBackoff(const Backoff &backoff);
    /*!
        More than this many restarts within restartPeriod() makes the group fail. -1 (the default):
        unlimited while the group stands alone, 0 under a supervisor (every failure escalates to
        it at once); set a positive count to let a supervised group absorb some failures itself.
    */
    int maxRestarts() const;
    /*!
        Sets maxRestarts() to \a count (-1 or more); below -1 is refused with a warning under stage.group
        and changes nothing.
    */
    void setMaxRestarts(int count);
    /*!
        The window, in ms, in which maxRestarts() restarts are allowed; 5000 by default. Notified by
        restartPeriodChanged().
    */
    int restartPeriod() const;
    /*!
        Sets restartPeriod() to \a milliseconds (>= 1); 0 or less is refused with a warning and changes
        nothing.
    */
    void setRestartPeriod(int milliseconds);
    /*! 0: workers run on the group's thread; N: on N threads owned by the group. Set before spawn(). */
    int threadCount() const;
    /*!
        Sets threadCount() to \a count (>= 0) before spawn(); negative, or after spawn() (the placement is
        fixed), is refused with a warning and changes nothing.
    */
    void setThreadCount(int count);
    /*!
        How long, in ms, a stopped worker may take to end before it is reported abandoned (shutdown(),
        resizing down, ~Group(), a supervisor's stop); 5000 by default. Notified by
        shutdownTimeoutChanged().
    */
    int shutdownTimeout() const;
    /*!
        Sets shutdownTimeout() to \a milliseconds (>= 0); negative is refused with a warning and changes
        nothing.
    */
    void setShutdownTimeout(int milliseconds);
    /*! 0: no watchdog; otherwise a worker that does not call Worker::heartbeat() within this many ms is failed. */
    int heartbeatTimeout() const;
    /*!
        Sets heartbeatTimeout() to \a milliseconds (>= 0; 0 turns the watchdog off); negative is refused
        with a warning and changes nothing.
    */
    void setHeartbeatTimeout(int milliseconds);
    /*!
        How a stop ends a worker waiting in a Stage awaitable (see stage::StopMode); Unwind by
        default. Applies to the workers started after the call.
    */
    StopMode stopMode() const;
    /*! Sets stopMode() to \a mode. */
    void setStopMode(StopMode mode);

    /*!
        The mailbox this group's workers read, for views (SupervisionTreeModel, the QML inspector)
        to show its depth and dead letters next to the group. Informational: Stage does not
        route anything through it. Held through a QPointer (nullptr once the mailbox's QObject
        side is destroyed); nullptr by default. Use Mailbox<T>::object() to get it.
    */
    MailboxBase *mailbox() const;
    /*! Sets mailbox() to \a mailbox (nullptr: none); only views read it. */
    void setMailbox(MailboxBase *mailbox);

    /*! Restarts decided within the last restartPeriod() ms (none are counted while maxRestarts() is -1). */
    int recentRestarts() const;

    /*!
        A consistent snapshot of every counter below (GroupStatistics::isConsistent() holds). The counters
        are notified together by the coalesced statisticsChanged(), at most once per event-loop turn.
    */
    GroupStatistics statistics() const;
    /*! Worker frames alive now, including those being stopped (GroupStatistics::running). */
    int running() const;
    /*! Runs started since the group was created: first starts and restarts (GroupStatistics::started). */
    qint64 started() const;
    /*! Runs that returned normally without a stop request (GroupStatistics::completed). */
    qint64 completed() const;
    /*! Runs that threw, or missed their heartbeat (GroupStatistics::failed). */
    qint64 failed() const;
    /*!
        Runs that ended after a stop request: shutdown, resize, a supervisor's stop
        (GroupStatistics::cancelled).
    */
    qint64 cancelled() const;
    /*!
        Runs that did not end within shutdownTimeout() after their stop (GroupStatistics::abandoned); see
        lingering().
    */
    qint64 abandoned() const;
    /*! Abandoned runs that have not ended yet: each still occupies the thread it runs on (a
        call a stop cannot interrupt). Its late end is logged and lowers this count
        (statisticsChanged()). Before quitting an application, wait for it to reach 0 if the
        process must end cleanly (a thread still busy at exit is leaked, not joined). */
    int lingering() const;
    /*! Restarts decided by the restart policy (GroupStatistics::restarted). */
    qint64 restarted() const;
    /*! Worker::heartbeat() calls of all runs (GroupStatistics::iterations). */
    qint64 iterations() const;

Q_SIGNALS:
    /*! size() changed to \a size. */
    void sizeChanged(int size);
    /*! Every end of a worker run, as the worker reported it (before any restart). */
    void workerFinished(const stage::WorkerExit &exit);
    /*! restartType() changed to \a type. */
    void restartTypeChanged(stage::RestartType type);
    /*! backoff() changed to \a backoff. */
    void backoffChanged(const stage::Backoff &backoff);
    /*! maxRestarts() changed to \a count. */
    void maxRestartsChanged(int count);
    /*! restartPeriod() changed to \a milliseconds. */
    void restartPeriodChanged(int milliseconds);
    /*! threadCount() changed to \a count. */
    void threadCountChanged(int count);
    /*! shutdownTimeout() changed to \a milliseconds. */
    void shutdownTimeoutChanged(int milliseconds);
    /*! heartbeatTimeout() changed to \a milliseconds. */
    void heartbeatTimeoutChanged(int milliseconds);
    /*! stopMode() changed to \a mode. */
    void stopModeChanged(stage::StopMode mode);
    /*! mailbox() changed to \a mailbox (also to nullptr when the mailbox's QObject side is destroyed). */
    void mailboxChanged(stage::MailboxBase *mailbox);

private:
    friend class GroupPrivate;
    void startNode() override;
    void stopNode(const QString &reason) override;
    bool startRoot() override;
    void shutdownRoot() override;
    bool spawnWith(WorkerFactory factory);

    template<typename T>
    static QCoro::Task<T> runScope(QPointer<Group> group, QCoro::Task<T> body)
    {
        std::exception_ptr error;
        std::optional<std::conditional_t<std::is_void_v<T>, std::monostate, T>> value;
        try {
            if constexpr (std::is_void_v<T>) {
                co_await child(std::move(body));
                value.emplace();
            } else {
                value.emplace(co_await child(std::move(body)));
            }
        } catch (...) {
            error = std::current_exception();
        }
        if (group)
            co_await group->shutdown();
        if (error)
            std::rethrow_exception(error);
        if constexpr (!std::is_void_v<T>)
            co_return std::move(*value);
    }

    std::unique_ptr<GroupPrivate> d;
};

} // namespace stage

Q_DECLARE_METATYPE(stage::GroupStatistics)
