#include "node_p.h"
#include "signalqueue_p.h"
#include "supervisor_p.h"

#include <QtCore/QCoreApplication>
#include <QtCore/QEvent>
#include <QtCore/QLoggingCategory>
#include <QtCore/QMetaMethod>
#include <QtCore/QThread>

#include <memory>

Q_LOGGING_CATEGORY(lcNode, "stage.node", QtInfoMsg)

namespace stage {

namespace {
const QEvent::Type NotifyEvent = static_cast<QEvent::Type>(QEvent::registerEventType());

class PlainWaiter final : public detail::Waiter
{};
} // namespace

void NodePrivate::settleStoppedWaiters()
{
    auto waiters = std::move(stoppedWaiters);
    for (auto &w : waiters)
        if (w->claim())
            w->publish(detail::Waiter::Outcome::Value);
}

Node::Node(QObject *parent) : QObject(parent), nd(std::make_unique<NodePrivate>()) {}

QString nodeName(const Node *node)
{
    const QString name = node->objectName();
    if (!name.isEmpty())
        return name;
    return QStringLiteral("%1(0x%2)")
        .arg(QString::fromLatin1(node->metaObject()->className()))
        .arg(quintptr(node), 0, 16);
}

namespace {
bool onOwnThread(const Node *node, const char *function)
{
    if (QThread::currentThread() == node->thread())
        return true;
    qCWarning(lcNode, "%s: called from a thread other than the node's; ignored", function);
    return false;
}
} // namespace

bool Node::start()
{
    if (!onOwnThread(this, "Node::start"))
        return false;
    if (Supervisor *above = supervisor()) {
        if (isRunning()) {
            qCWarning(lcNode, "Node::start: %s is running already; ignored", qPrintable(nodeName(this)));
            return false;
        }
        return above->restartChild(this);
    }
    return startRoot();
}

bool Node::stop()
{
    if (!onOwnThread(this, "Node::stop"))
        return false;
    if (Supervisor *above = supervisor())
        return above->terminateChild(this);
    shutdownRoot();
    return true;
}

bool Node::restart()
{
    if (!onOwnThread(this, "Node::restart"))
        return false;
    if (Supervisor *above = supervisor())
        return above->restartChild(this);
    if (!isRunning() && state() != State::Stopping)
        return startRoot();
    // A root: stop it, then start it again once it has stopped (once: the connection goes).
    if (state() != State::Stopping)
        shutdownRoot();
    if (NodePrivate::isTerminal(state()))
        return startRoot();
    auto connection = std::make_shared<QMetaObject::Connection>();
    *connection = connect(this, &Node::stateChanged, this, [this, connection](State entered) {
        if (entered != State::Stopped && entered != State::Failed)
            return;
        disconnect(*connection);
        startRoot();
    });
    return true;
}

Node::~Node()
{
    beginDestruction();
    nd->settleStoppedWaiters();
}

void Node::beginDestruction()
{
    if (nd->destroying)
        return;
    nd->destroying = true;
    detail::SignalScope::forget(this); // its queued signals are dropped
    if (Supervisor *sv = nd->supervisor)
        SupervisorPrivate::get(sv)->childDestroyed(this);
    nd->supervisor = nullptr;
}

bool Node::isDestroying() const
{
    return nd->destroying;
}

Node::State Node::state() const
{
    return nd->state;
}

QString Node::stateReason() const
{
    return nd->stateReason;
}

bool Node::isRunning() const
{
    return nd->state == State::Starting || nd->state == State::Running || nd->state == State::Restarting;
}

Supervisor *Node::supervisor() const
{
    return nd->supervisor;
}

QList<NodeEvent> Node::history() const
{
    return QList<NodeEvent>(nd->history.begin(), nd->history.end());
}

int Node::historyLimit() const
{
    return nd->historyLimit;
}

void Node::setHistoryLimit(int limit)
{
    if (limit < 0) {
        qCWarning(lcNode, "Node::setHistoryLimit: the limit must be >= 0, got %d; ignored", limit);
        return;
    }
    if (nd->historyLimit == limit)
        return;
    nd->historyLimit = limit;
    while (int(nd->history.size()) > limit)
        nd->history.pop_front();
    emit historyLimitChanged(limit);
}

void Node::setState(State next, const QString &reason)
{
    if (nd->state == next)
        return;
    nd->state = next;
    nd->stateReason = reason;
    if (nd->historyLimit > 0) {
        if (int(nd->history.size()) >= nd->historyLimit)
            nd->history.pop_front();
        nd->history.push_back(NodeEvent{QDateTime::currentMSecsSinceEpoch(), next, reason});
    }
    qCDebug(lcNode) << this << "->" << next << reason;
    if (NodePrivate::isTerminal(next))
        nd->settleStoppedWaiters();
    if (nd->destroying)
        return;
    // The supervisor only records the transition here and reacts from its own event-loop turn.
    if (nd->supervisor)
        SupervisorPrivate::get(nd->supervisor)->childStateChanged(this, next, reason);
    // Queued until the operation in progress has finished (see SignalScope).
    detail::SignalScope::emitLater(this, &Node::stateChanged, next, reason);
}

void Node::markDirty()
{
    if (nd->notifyPending || nd->destroying)
        return;
    // Nobody listens: no event (a posted event wakes the event loop, a system call). A slot
    // connected later reads the current values.
    static const QMetaMethod statistics = QMetaMethod::fromSignal(&Node::statisticsChanged);
    if (nd->statisticsRecheck.exchange(false, std::memory_order_relaxed))
        nd->statisticsWatched.store(isSignalConnected(statistics), std::memory_order_relaxed);
    if (!nd->statisticsWatched.load(std::memory_order_relaxed))
        return;
    nd->notifyPending = true;
    // A posted event, not a job: at most one notification per turn of the event loop.
    QCoreApplication::postEvent(this, new QEvent(NotifyEvent));
}

void Node::connectNotify(const QMetaMethod &signal)
{
    if (signal == QMetaMethod::fromSignal(&Node::statisticsChanged)) {
        nd->statisticsWatched.store(true, std::memory_order_relaxed);
        // A markDirty() looking again on the node's thread right now may overwrite that with
        // what it saw before this connection: make it look again next time.
        nd->statisticsRecheck.store(true, std::memory_order_release);
    }
    QObject::connectNotify(signal);
}

void Node::disconnectNotify(const QMetaMethod &signal)
{
    // An invalid method: everything was disconnected at once. Called under Qt's connection
    // lock: markDirty() looks again, later.
    if (!signal.isValid() || signal == QMetaMethod::fromSignal(&Node::statisticsChanged))
        nd->statisticsRecheck.store(true, std::memory_order_relaxed);
    QObject::disconnectNotify(signal);
}

bool Node::event(QEvent *event)
{
    if (event->type() == NotifyEvent) {
        nd->notifyPending = false;
        emit statisticsChanged();
        return true;
    }
    return QObject::event(event);
}

detail::NodeStoppedAwaitable Node::stoppedAwaitable()
{
    return detail::NodeStoppedAwaitable(this);
}

namespace detail {

NodeStoppedAwaitable::NodeStoppedAwaitable(Node *node) noexcept : m_node(node) {}

bool NodeStoppedAwaitable::await_ready() const noexcept
{
    if (AwaitableBase::await_ready() || !m_node)
        return true;
    return NodePrivate::isTerminal(m_node->nd->state);
}

void NodeStoppedAwaitable::await_suspend(std::coroutine_handle<> handle)
{
    markSuspended();
    m_waiter = WaiterRef<Waiter>(new PlainWaiter);
    m_waiter->suspend(handle);
    m_node->nd->stoppedWaiters.push_back(m_waiter);
}

void NodeStoppedAwaitable::await_resume()
{
    throwIfStoppedBeforeSuspending();
    if (m_waiter)
        m_waiter->rethrowIfFailed();
}

} // namespace detail
} // namespace stage
