#pragma once

//  W A R N I N G
//  Not part of the Stage API. We mean it.

#include "node_p.h"
#include "policy_p.h"

#include <stage/supervisor.h>

#include <QtCore/QTimer>

#include <deque>
#include <vector>

namespace stage {

/* One child of a supervisor. */
struct SupervisedChild
{
    Node *node;
    RestartType restart;
    quint64 incarnation = 0;    // starts so far: an exit of an earlier incarnation is stale
    bool stopRequested = false; // the supervisor asked it to stop: its end is not an exit
};

/* A child that ended on its own, waiting to be handled from the event loop. */
struct ChildExit
{
    Node *node;
    quint64 incarnation;
    bool failed;
    QString reason;
};

class SupervisorPrivate
{
public:
    explicit SupervisorPrivate(Supervisor *q) : q(q) {}
    static SupervisorPrivate *get(Supervisor *sv) { return sv->d.get(); }

    // From Node (synchronously, inside the child's own transition): record only.
    void childStateChanged(Node *node, Node::State state, const QString &reason);
    void childDestroyed(Node *node);

    bool checkThread(const char *function) const;
    SupervisedChild *find(Node *node);
    void forget(Node *node); // drop every reference to node (it was removed or destroyed)
    void schedulePump();
    void pump();
    bool pumpStops();   // false while a stop is awaited
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
    std::vector<SupervisedChild> children; // start order
    std::deque<Node *> stopQueue;          // stopped one after another, front first
    std::size_t stopHint = 0;              // where pumpStops() looks for the next child first
    std::vector<Node *> startQueue;        // started in order once the stops are done
    Node *waitingFor = nullptr;            // the child whose stop is awaited
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
    bool pumping = false;
    bool pumpAgain = false;
    bool destroying = false;
    SupervisorStatistics stats; // childExits, childFailures, restarts, childrenRestarted, escalations
};

} // namespace stage
