#pragma once

#include <stage/detail/waiter.h>
#include <stage/global.h>

#include <QtCore/QDateTime>
#include <QtCore/QList>
#include <QtCore/QMetaType>
#include <QtCore/QObject>
#include <QtCore/QPointer>

#include <chrono>
#include <memory>

namespace stage {

class Node;
class NodePrivate;
class Supervisor;
class SupervisorPrivate;

namespace detail {

/* Waits until a node has stopped (Stopped, Failed or Idle); ready at once if it has. */
class STAGE_EXPORT NodeStoppedAwaitable : public AwaitableBase
{
public:
    explicit NodeStoppedAwaitable(Node *node) noexcept;
    bool await_ready() const noexcept;
    void await_suspend(std::coroutine_handle<> handle);
    void await_resume();

private:
    QPointer<Node> m_node;
    WaiterRef<Waiter> m_waiter;
};

} // namespace detail

/*!
    The common base of the nodes of a supervision tree: stage::Group and stage::Supervisor. It
    carries what every node has: the state machine, a name (QObject::objectName()), the link to
    the supervising parent, a bounded history of timestamped transitions, and the signals a view
    binds to.

    States: Idle (never started) -> Starting -> Running <-> Restarting -> Stopping -> Stopped, or
    Failed when the node gave up (its restart intensity was exceeded). A supervisor may start a
    Stopped or Failed child again. Every transition emits stateChanged() with a reason and appends
    a NodeEvent to history() (the last historyLimit() transitions, default 32).

    Thread: a node is used from the thread it lives in; its signals are emitted there.

    Re-entrancy: a slot connected to any signal of a node may delete the node, its supervisor or
    its children, or call any public function of them. A node's signals go out only when no
    Stage operation is in progress on its thread: each operation (a public call, an event-loop
    job) finishes its transitions first, and the signals it emitted are delivered in order when
    it returns (called from a slot: right after that slot returns); those of a node deleted
    meanwhile are dropped. So stateChanged()'s argument is the state entered, and state() the
    state now.

    Not meant to be subclassed outside Stage.
*/
class STAGE_EXPORT Node : public QObject
{
    Q_OBJECT
    Q_PROPERTY(State state READ state NOTIFY stateChanged)
    Q_PROPERTY(QString stateReason READ stateReason NOTIFY stateChanged)
    Q_PROPERTY(bool running READ isRunning NOTIFY stateChanged)
    Q_MOC_INCLUDE(<stage/supervisor.h>)
    Q_PROPERTY(stage::Supervisor *supervisor READ supervisor NOTIFY supervisorChanged)
    Q_PROPERTY(int historyLimit READ historyLimit WRITE setHistoryLimit NOTIFY historyLimitChanged)

public:
    /*!
        The states of a node (see the class description for the transitions). In QML: Node.Running, and so
        on.
    */
    enum class State {
        Idle,       //!< never started
        Starting,   //!< being started: until every worker (a group) or child (a supervisor) has started
        Running,    //!< everything that should run is running
        Restarting, //!< at least one worker or child waits for (or is in) its restart
        Stopping,   //!< shutdown (or giving up) is stopping the workers or children
        Stopped,    //!< everything has ended after a shutdown, or ended for good on its own
        Failed,     //!< the restart intensity was exceeded; stateReason() says why
    };
    Q_ENUM(State)

    ~Node() override;

    /*!
        The current state; Idle until first started. Changes are announced by stateChanged(). Thread: the
        node's.
    */
    State state() const;
    /*!
        Why the node entered its current state (empty for the ordinary transitions; for Failed, the reason
        the restart intensity was exceeded, naming the child and root cause).
    */
    QString stateReason() const;
    /*! Starting, Running or Restarting. */
    bool isRunning() const;
    /*! The supervisor this node is a child of, or nullptr for a root. */
    Supervisor *supervisor() const;

    /*! The last historyLimit() state transitions, oldest first. */
    QList<class NodeEvent> history() const;
    /*! How many transitions history() keeps; 32 by default. */
    int historyLimit() const;
    /*! Keeps at most \a limit transitions (>= 0; 0 keeps none). Negative: refused with a warning. */
    void setHistoryLimit(int limit);

public Q_SLOTS:
    /*!
        Starts this node. A root (no supervisor) starts, also again after a shutdown or after
        giving up (a supervisor starts its children in order; a group starts size() workers from
        its factory). A child asks its supervisor to start it (Supervisor::restartChild()), which
        must be running. False, with a warning, when refused: a child that runs already, a root
        that runs or is stopping, a group without a factory, a call from another thread.
        A slot: connect a button's clicked() to it, or call it from QML.
    */
    bool start();
    /*!
        Stops this node. A child is stopped by its supervisor and not restarted until start() or
        restart() (Supervisor::terminateChild(), OTP's terminate_child). A root shuts down as with
        Group::shutdown() / Supervisor::shutdown() (bounded by the shutdown timeouts); start()
        starts it again. False, with a warning, from another thread.
    */
    bool stop();
    /*!
        Stops this node and starts it again. A child goes through its supervisor
        (Supervisor::restartChild(): not counted against the restart intensity). A root that runs
        stops, then starts once it has stopped; a root that does not run starts.
        False, with a warning, when refused (as start()).
    */
    bool restart();

Q_SIGNALS:
    /*! Every transition, with why it happened (empty for the ordinary ones). */
    void stateChanged(stage::Node::State state, const QString &reason);
    /*! The restart intensity was exceeded: the node stopped everything and entered Failed. */
    void gaveUp(const QString &reason);
    /*! Everything has ended (or was abandoned) after a shutdown or giving up. */
    void stopped();
    /*! Some statistic changed; emitted at most once per event-loop turn (the last change always is). */
    void statisticsChanged();
    /*! The node was added to a supervisor, or removed from one (\a supervisor is then nullptr). */
    void supervisorChanged(stage::Supervisor *supervisor);
    /*! historyLimit() changed to \a limit. */
    void historyLimitChanged(int limit);

//! \cond internal
protected:
    explicit Node(QObject *parent = nullptr);
    bool event(QEvent *event) override;
    void connectNotify(const QMetaMethod &signal) override;
    void disconnectNotify(const QMetaMethod &signal) override;

    /* For Group and Supervisor. */
    void setState(State next, const QString &reason);
    void markDirty();
    /* Stops emitting signals and cuts the link to the supervisor: first thing in a destructor. */
    void beginDestruction();
    bool isDestroying() const;
    detail::NodeStoppedAwaitable stoppedAwaitable();

//! \endcond
private:
    friend class NodePrivate;
    friend class Supervisor;
    friend class SupervisorPrivate;
    friend class detail::NodeStoppedAwaitable;

    /* Supervisor's hooks: start (or start again, from Stopped/Failed), and stop (a group within
       its shutdownTimeout(), a supervisor child by child), ending in Stopped or Failed. */
    virtual void startNode() = 0;
    virtual void stopNode(const QString &reason) = 0;
    /* start() and stop() of a root (the node has no supervisor): start with the misuse checks
       (warnings name the class), shut down. */
    virtual bool startRoot() = 0;
    virtual void shutdownRoot() = 0;

    std::unique_ptr<NodePrivate> nd;
};

/*! One transition of a node's state, as kept in Node::history(). */
class STAGE_EXPORT NodeEvent
{
    Q_GADGET
    Q_PROPERTY(qint64 timestamp MEMBER timestamp)
    Q_PROPERTY(QDateTime time READ time)
    Q_PROPERTY(stage::Node::State state MEMBER state)
    Q_PROPERTY(QString reason MEMBER reason)

public:
    qint64 timestamp = 0;                   //!< milliseconds since the epoch (UTC)
    Node::State state = Node::State::Idle;  //!< the state entered
    QString reason;                         //!< why (empty for the ordinary transitions)

    /*! timestamp as a QDateTime (in local time). */
    QDateTime time() const { return QDateTime::fromMSecsSinceEpoch(timestamp); }
};

} // namespace stage

Q_DECLARE_METATYPE(stage::NodeEvent)
