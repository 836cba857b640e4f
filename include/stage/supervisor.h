#pragma once

#include <stage/node.h>
#include <stage/policy.h>

#include <QtCore/QList>

#include <chrono>
#include <memory>

namespace stage {

class SupervisorPrivate;

/*! A consistent snapshot of a supervisor's counters (Supervisor::statistics()). */
class STAGE_EXPORT SupervisorStatistics
{
    Q_GADGET
    Q_PROPERTY(int children MEMBER children)
    Q_PROPERTY(int runningChildren MEMBER runningChildren)
    Q_PROPERTY(qint64 childExits MEMBER childExits)
    Q_PROPERTY(qint64 childFailures MEMBER childFailures)
    Q_PROPERTY(qint64 restarts MEMBER restarts)
    Q_PROPERTY(qint64 childrenRestarted MEMBER childrenRestarted)
    Q_PROPERTY(qint64 escalations MEMBER escalations)

public:
    int children = 0;             //!< children now
    int runningChildren = 0;      //!< children whose state is Starting, Running or Restarting
    qint64 childExits = 0;        //!< children that ended on their own (not stopped by the supervisor)
    qint64 childFailures = 0;     //!< of those, the ones that ended Failed
    qint64 restarts = 0;          //!< restarts decided by the strategy (one per handled exit)
    qint64 childrenRestarted = 0; //!< children started again by those restarts
    qint64 escalations = 0;       //!< times this supervisor gave up (its intensity was exceeded)
};

/*!
    Supervises groups and other supervisors, Erlang/OTP style: restarts children by a strategy,
    gives up (and fails to its own supervisor) when restarts come too often, stops in order.

    \code
    stage::Supervisor root(stage::Supervisor::Strategy::OneForOne);
    auto *sync = new stage::Group;           // a group: its workers, its factory
    auto *devices = new stage::Supervisor(stage::Supervisor::Strategy::OneForAll);
    root.addChild(sync);                     // reparented: &root owns it now
    root.addChild(devices);
    sync->spawn(syncEngine);                 // waits for the supervisor to start it
    root.start();                            // starts sync, then devices (and its children)
    ...
    co_await root.shutdown();                // devices' subtree first, then sync
    \endcode

    Strategies (OTP's): OneForOne restarts only the child that ended; OneForAll stops every other
    child in reverse start order, then starts them all again in start order; RestForOne does that
    for the child that ended and the children started after it. A child is restarted according
    to its restart type (addChild()): Permanent (the default, as OTP's) always, Transient after a
    failure only, Temporary never (and not as a sibling in OneForAll/RestForOne either).
    "Ended" means: the child entered Stopped or Failed without the supervisor asking it to. A
    supervised Group fails to its supervisor as soon as it gives up; a Group whose maxRestarts()
    is -1 (its default) escalates every worker failure at once when it is supervised, so by
    default the supervisor sees every failure.

    Restarts pass through backoff() (as in groups: the first restart immediate, then exponential
    with jitter; Backoff::none() for storms and tests) and count against the intensity: more than
    maxRestarts() (default 3, Elixir's; OTP's is 1) within restartPeriod() ms (default 5000) makes
    the supervisor stop all its children in reverse start order, enter Failed, emit gaveUp(), and
    report itself failed to its own supervisor, which treats it like any failed child. A root
    supervisor's failure is the gaveUp() signal and a warning under stage.supervisor.

    Ownership mirrors the tree: addChild() reparents the node to the supervisor. Deleting a
    supervisor deletes its children first, in reverse start order; each one stops on the way
    (a group waits at most its shutdownTimeout()), so a subtree stops bottom-up and in order.

    Stopping is sequential, as in OTP: a child is asked to stop only after the one started after it
    has ended. A group stops within its shutdownTimeout() (stragglers are reported abandoned), so
    every stop is bounded.

    Thread: a supervisor and its children live on one thread and are used from it; signals are
    emitted there (a group's workers may still run on threads of their own). Children's ends are
    handled from the event loop, never inside a call into the supervisor.
    Errors: misuse (a null child, a node under itself or its own descendant, a node that already
    has a supervisor, a node of another thread, calls after shutdown) is refused with a warning
    under stage.supervisor and changes nothing.
*/
class STAGE_EXPORT Supervisor : public stage::Node // qualified: moc records the base by name (QML type info)
{
    Q_OBJECT
    Q_PROPERTY(Strategy strategy READ strategy WRITE setStrategy NOTIFY strategyChanged)
    Q_PROPERTY(int maxRestarts READ maxRestarts WRITE setMaxRestarts NOTIFY maxRestartsChanged)
    Q_PROPERTY(int restartPeriod READ restartPeriod WRITE setRestartPeriod NOTIFY restartPeriodChanged)
    Q_PROPERTY(stage::Backoff backoff READ backoff WRITE setBackoff NOTIFY backoffChanged)
    Q_PROPERTY(int childCount READ childCount NOTIFY childCountChanged)
    Q_PROPERTY(int runningChildren READ runningChildren NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 restarts READ restarts NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 childFailures READ childFailures NOTIFY statisticsChanged)

public:
    /*!
        How a supervisor restarts its children when one ends (OTP's strategies). In QML:
        Supervisor.OneForAll, and so on.
    */
    enum class Strategy {
        OneForOne,  //!< restart only the child that ended
        OneForAll,  //!< stop the others (reverse start order), restart all (start order)
        RestForOne, //!< the same for the child that ended and those started after it
    };
    Q_ENUM(Strategy)

    /*!
        Creates an idle supervisor with the OneForOne strategy and the defaults above (maxRestarts 3 within
        restartPeriod 5000 ms, Backoff::exponential()). Thread: it is used from the thread it lives in.
    */
    explicit Supervisor(QObject *parent = nullptr);
    /*! Creates an idle supervisor with \a strategy and the other defaults. */
    explicit Supervisor(Strategy strategy, QObject *parent = nullptr);
    /*! Deletes the children in reverse start order (each stops, bounded by its own timeout). */
    ~Supervisor() override;

    /*!
        Adds \a node as the last child (the last in start order) with restart type \a restart,
        and reparents it to this supervisor. If the supervisor runs, the node is started (after
        the children a start sequence under way is starting; a group with no factory yet starts
        when spawn() is called). A node that runs already is adopted as it is: add a group before
        spawn() for the supervisor to start it in start order. Returns false, with a warning, for
        a null node, this supervisor itself or one of its ancestors, a node that already has a
        supervisor, a node living on another thread, a node being destroyed, or after shutdown().
        Cost: O(1) amortized.
    */
    bool addChild(Node *node, RestartType restart = RestartType::Permanent);
    /*!
        Removes \a node from the children: it will not be restarted; it is asked to stop (a group
        unwinds its workers within its shutdownTimeout()) and handed back to the caller
        (its parent becomes nullptr). False, with a warning, if it is not a child of this supervisor.
        If a OneForAll or RestForOne restart for \a node is under way (in backoff, or waiting for
        \a node to start), the siblings after it in start order, stopped for that restart, stay
        stopped, as in OTP (the ones before it start).
        Cost: O(1) amortized in Stage; QObject::setParent() searches the parent's children from
        the front, so with many children remove the oldest first.
    */
    bool removeChild(Node *node);
    /*! The children in start order. */
    Q_INVOKABLE QList<stage::Node *> childNodes() const;
    /*! How many children the supervisor has; notified by childCountChanged(). */
    int childCount() const;
    /*! \a node's restart type; Permanent if \a node is not a child. */
    RestartType childRestartType(Node *node) const;
    /*! Changes the restart type of child \a node; false, with a warning, if it is not a child. */
    bool setChildRestartType(Node *node, RestartType restart);

    /*!
        Stops child \a node (OTP's terminate_child): it is asked to stop, stays a child, and is not
        restarted for its end; restartChild() (or a OneForAll/RestForOne restart of its siblings)
        starts it again. Not counted against the restart intensity. False, with a warning, if
        \a node is not a child; true (and nothing happens) if it is not running.
    */
    bool terminateChild(Node *node);
    /*!
        Starts child \a node again (OTP's restart_child): a running child is stopped first (in
        order, like a OneForOne restart), a stopped or failed one is started; emits
        childRestarted(). Not counted against the restart intensity: it is an operator's request,
        not a failure. False, with a warning, if \a node is not a child or the supervisor is not
        running.
    */
    bool restartChild(Node *node);

    /* start(), stop() and restart() are Node's slots: a root supervisor starts its children in
       start order (also again after shutdown() or giving up); see Node::start(). */
    /*!
        Stops every child in reverse start order, each after the one started after it has ended,
        and restarts nothing after that. Finishes when every child has stopped; idempotent.
        Emits stopped(). Cancellation: awaiting it is a cancellation point of the awaiting worker
        (the shutdown itself goes on).
    */
    detail::NodeStoppedAwaitable shutdown();

    /*! The restart strategy; OneForOne by default. Notified by strategyChanged(). */
    Strategy strategy() const;
    /*! Sets strategy() to \a strategy; applies to the next exit handled. */
    void setStrategy(Strategy strategy);
    /*! More than this many restarts within restartPeriod() makes the supervisor fail; -1: unlimited. */
    int maxRestarts() const;
    /*!
        Sets maxRestarts() to \a count (-1 or more); below -1 is refused with a warning under
        stage.supervisor and changes nothing.
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
    /*!
        The delay before each restart the strategy decides: Backoff::exponential() by default (the first at
        once). Notified by backoffChanged().
    */
    Backoff backoff() const;
    /*! Sets backoff() to \a backoff (Backoff::none() for tests and restart storms). */
    void setBackoff(const Backoff &backoff);

    /*!
        A snapshot of the supervisor's counters (SupervisorStatistics). They are notified together by the
        coalesced statisticsChanged(), at most once per event-loop turn.
    */
    SupervisorStatistics statistics() const;
    /*! Children whose state is Starting, Running or Restarting (SupervisorStatistics::runningChildren). */
    int runningChildren() const;
    /*! Restarts decided by the strategy, one per handled exit (SupervisorStatistics::restarts). */
    qint64 restarts() const;
    /*! Children that ended Failed on their own (SupervisorStatistics::childFailures). */
    qint64 childFailures() const;
    /*! Restarts decided within the last restartPeriod() ms: the budget in use (more than maxRestarts() fails). */
    int recentRestarts() const;

Q_SIGNALS:
    /*! strategy() changed to \a strategy. */
    void strategyChanged(stage::Supervisor::Strategy strategy);
    /*! maxRestarts() changed to \a count. */
    void maxRestartsChanged(int count);
    /*! restartPeriod() changed to \a milliseconds. */
    void restartPeriodChanged(int milliseconds);
    /*! backoff() changed to \a backoff. */
    void backoffChanged(const stage::Backoff &backoff);
    /*!
        childCount() changed to \a count (a child added, removed or deleted; a deletion's is delivered from
        the event loop, once the child is gone).
    */
    void childCountChanged(int count);
    /*! \a node became a child (addChild()). */
    void childAdded(stage::Node *node);
    /*! \a node stopped being a child (removeChild()). */
    void childRemoved(stage::Node *node);
    /*! \a node ended on its own; \a failed if it ended Failed. Emitted before any restart. */
    void childExited(stage::Node *node, bool failed, const QString &reason);
    /*! The strategy started \a node again. */
    void childRestarted(stage::Node *node);

private:
    friend class SupervisorPrivate;
    friend class Node;
    void startNode() override;
    void stopNode(const QString &reason) override;
    bool startRoot() override;
    void shutdownRoot() override;

    std::unique_ptr<SupervisorPrivate> d;
};

} // namespace stage

Q_DECLARE_METATYPE(stage::SupervisorStatistics)
