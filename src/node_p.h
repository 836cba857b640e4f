#pragma once

//  W A R N I N G
//  Not part of the Stage API. We mean it.

#include <stage/node.h>

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
    bool destroying = false;
    std::vector<detail::WaiterRef<detail::Waiter>> stoppedWaiters;
};

} // namespace stage
