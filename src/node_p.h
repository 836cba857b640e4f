#pragma once

//  W A R N I N G
//  Not part of the Stage API. We mean it.

#include <stage/node.h>

#include <atomic>
#include <deque>
#include <vector>

namespace stage {

class NodePrivate
{
public:
    static NodePrivate *get(Node *node) { return node->nd.get(); }

    static bool isTerminal(Node::State state)
    {
        return state == Node::State::Idle || state == Node::State::Stopped || state == Node::State::Failed;
    }

    void settleStoppedWaiters();

    Node::State state = Node::State::Idle;
    QString stateReason;
    Supervisor *supervisor = nullptr;
    std::deque<NodeEvent> history;
    int historyLimit = 32;
    bool notifyPending = false;
    // statisticsChanged() may have a receiver: set by connectNotify(), which may run on any
    // thread; markDirty() reads it on every change (QObject::isSignalConnected() with a
    // QMetaMethod costs about 100 instructions, and a node changes several times a restart). A
    // disconnection only asks markDirty() to look again (disconnectNotify() runs under Qt's
    // connection lock and must not call isSignalConnected()).
    std::atomic<bool> statisticsWatched{false};
    std::atomic<bool> statisticsRecheck{false};
    bool destroying = false;
    std::vector<detail::WaiterRef<detail::Waiter>> stoppedWaiters;
};

} // namespace stage
