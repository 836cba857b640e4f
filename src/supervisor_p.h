#pragma once

//  W A R N I N G
//  Not part of the Stage API. We mean it.

#include "node_p.h"
#include "policy_p.h"
#include "signalqueue_p.h"

#include <stage/supervisor.h>

#include <QtCore/QHash>
#include <QtCore/QTimer>

#include <deque>
#include <list>
#include <map>

namespace stage {

/* One child of a supervisor. */
struct SupervisedChild
{
    Node *node;
    RestartType restart;
    quint64 serial;             // order of addition: the start order; tells a node from a later one at the same address
    quint64 incarnation = 0;    // starts so far: an exit of an earlier incarnation is stale
    bool stopRequested = false; // the supervisor asked it to stop: its end is not an exit
};

/* A child in a queue: checked against the children when taken (a removed child is skipped). */
struct ChildRef
{
    Node *node;
    quint64 serial;
};

/* A child that ended on its own, waiting to be handled from the event loop. */
struct ChildExit
{
    Node *node;
    quint64 serial;
    quint64 incarnation;
    bool failed;
    QString reason; // the child's state reason
    QString cause;  // the root cause (NodePrivate::failureCause) of a failure, else the reason
    bool announced = false; // childExited() was queued; the decision waits for its slots
};

/* A child waiting in the start queue (keyed by serial: start order, each child once). */
struct PendingStart
{
    Node *node;
    bool restart; // started again by the strategy (counted, childRestarted()), not a first start
};

class SupervisorPrivate
{
public:
    using ChildList = std::list<SupervisedChild>;

    explicit SupervisorPrivate(Supervisor *q) : q(q) {}
    static SupervisorPrivate *get(Supervisor *sv) { return sv->d.get(); }

    // From Node (synchronously, inside the child's own transition): record only.
    void childStateChanged(Node *node, Node::State state, const QString &reason);
    void childDestroyed(Node *node);

    bool checkThread(const char *function) const;
    SupervisedChild *find(Node *node) const; // O(1)
    SupervisedChild *resolve(const ChildRef &ref) const;
    void forget(Node *node); // drop the child (it was removed or destroyed): O(1) amortized
    void schedulePump();
    void pump();
    bool pumpStops();  // false while a stop is awaited
    void pumpStarts(); // returns while a child starts (or an exit waits to be handled)
    bool isCurrent(const ChildExit &exit) const; // still to be decided
    void handleExit(const ChildExit &exit);
    void beginStopAll(const QString &reason, bool failing);
    void startChild(SupervisedChild &child, bool restart);
    void finish();
    void onBackoff();
    void updateRunningState();

    Supervisor *const q;
    Supervisor::Strategy strategy = Supervisor::Strategy::OneForOne;
    int maxRestarts = 3;
    int restartPeriod = 5000;
    Backoff backoff;
    ChildList children;                          // start order
    QHash<Node *, ChildList::iterator> byNode;   // every child
    quint64 nextSerial = 0;
    std::deque<ChildRef> stopQueue;              // stopped one after another, front first
    std::map<quint64, PendingStart> startQueue;  // started in start order once the stops are done
    Node *waitingFor = nullptr;                  // the child whose stop is awaited
    Node *startingChild = nullptr;               // the child whose start is awaited
    static constexpr quint64 kNoChild = ~quint64(0);
    quint64 restartingFor = kNoChild;            // the serial of the child a OneForAll/RestForOne restart is for
    std::deque<ChildExit> exits;
    detail::RestartIntensity intensity;
    QTimer backoffTimer;
    bool backoffPending = false; // starts wait for backoffTimer
    int streak = 0;              // consecutive restarts without a healthy period
    detail::Clock::time_point lastRestart;
    enum class After { Nothing, Stopped, Failed } after = After::Nothing;
    QString finishReason;
    bool shutDown = false; // shutdown() was called: nothing starts again
    bool pumpPosted = false;
    bool pumpDeferred = false;
    bool pumping = false;
    bool pumpAgain = false;
    bool destroying = false;
    SupervisorStatistics stats; // childExits, childFailures, restarts, childrenRestarted, escalations
};

} // namespace stage
