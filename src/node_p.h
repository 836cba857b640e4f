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

    /* A reason kept in a state, a history or a signal: at most kMaxReasonLength characters (an
       exception's text may be any length), so that what a tree keeps stays bounded. */
    static constexpr int kMaxReasonLength = 1000;
    static QString bounded(const QString &text)
    {
        if (text.size() <= kMaxReasonLength)
            return text;
        return text.left(kMaxReasonLength - 1) + QChar(0x2026);
    }

    Node::State state = Node::State::Idle;
    QString stateReason;
    // Why the node last entered Failed, at the root: the worker failure that started the
    // escalation and where ("worker 12 of indexer: boom"). A supervisor passes its failed
    // child's on unchanged, so reasons do not grow with the depth of the tree.
    QString failureCause;
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

/* A node as logs name it: its objectName, or its class and address. */
QString nodeName(const Node *node);

} // namespace stage
