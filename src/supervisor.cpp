#include "supervisor_p.h"

#include <QtCore/QLoggingCategory>
#include <QtCore/QMetaMethod>
#include <QtCore/QPointer>
#include <QtCore/QRandomGenerator>
#include <QtCore/QThread>

#include <algorithm>

Q_LOGGING_CATEGORY(lcSupervisor, "stage.supervisor", QtInfoMsg)

namespace stage {

using detail::Clock;

namespace {
const char *restartName(RestartType type)
{
    switch (type) {
    case RestartType::Permanent:
        return "permanent";
    case RestartType::Transient:
        return "transient";
    case RestartType::Temporary:
        return "temporary";
    }
    return "?";
}

} // namespace

// SupervisorPrivate

bool SupervisorPrivate::checkThread(const char *function) const
{
    if (QThread::currentThread() == q->thread())
        return true;
    qCWarning(lcSupervisor, "%s: called from a thread other than the supervisor's; ignored", function);
    return false;
}

SupervisedChild *SupervisorPrivate::find(Node *node) const
{
    const auto it = byNode.constFind(node);
    return it == byNode.cend() ? nullptr : &*it.value();
}

SupervisedChild *SupervisorPrivate::resolve(const ChildRef &ref) const
{
    SupervisedChild *child = find(ref.node);
    return child && child->serial == ref.serial ? child : nullptr;
}

void SupervisorPrivate::forget(Node *node)
{
    const auto it = byNode.find(node);
    if (it == byNode.end())
        return;
    startQueue.erase(it.value()->serial);
    children.erase(it.value());
    byNode.erase(it);
    if (waitingFor == node)
        waitingFor = nullptr;
    if (startingChild == node)
        startingChild = nullptr;
    // The stop queue and the exits are checked when taken (resolve(), handleExit()).
}

void SupervisorPrivate::childStateChanged(Node *node, Node::State state, const QString &reason)
{
    // Node::setState() calls this only for a node whose supervisor is q, that is a child
    // (addChild() links it after recording it; removeChild() and destruction forget it before
    // unlinking).
    q->markDirty(); // runningChildren
    if (node == startingChild && state != Node::State::Starting) {
        // Started, or failed to: the next start follows once the child's operation is over,
        // without a posted job (a one-for-all restart of 100 children would post 100).
        if (!pumpDeferred && !destroying) {
            pumpDeferred = true;
            detail::SignalScope::defer(q, [](QObject *object) {
                auto *d = static_cast<Supervisor *>(object)->d.get();
                d->pumpDeferred = false;
                d->pump();
            });
        }
    }
    if (!NodePrivate::isTerminal(state))
        return;
    if (node == waitingFor) {
        schedulePump(); // its stop was requested (stopRequested is set whenever waitingFor is)
        return;
    }
    SupervisedChild *child = find(node);
    if (!child || child->stopRequested)
        return;
    if (state == Node::State::Idle)
        return;
    // It ended on its own: handled from the event loop, never inside the child's transition.
    const bool failed = state == Node::State::Failed;
    const QString &cause = NodePrivate::get(node)->failureCause;
    exits.push_back(ChildExit{node, child->serial, child->incarnation, failed, reason,
                              failed && !cause.isEmpty() ? cause : NodePrivate::bounded(reason)});
    ++stats.childExits;
    if (failed)
        ++stats.childFailures;
    schedulePump();
}

void SupervisorPrivate::childDestroyed(Node *node)
{
    if (!find(node))
        return;
    forget(node);
    if (destroying)
        return;
    qCDebug(lcSupervisor) << q << "child destroyed:" << node;
    q->markDirty();
    detail::SignalScope::emitLater(q, &Supervisor::childCountChanged, int(children.size()));
    schedulePump();
}

void SupervisorPrivate::schedulePump()
{
    if (pumpPosted || destroying)
        return;
    pumpPosted = true;
    detail::Executor::current()->post(detail::makeJob([supervisor = QPointer<Supervisor>(q)] {
        if (!supervisor)
            return;
        detail::SignalScope scope;
        auto *d = supervisor->d.get();
        d->pumpPosted = false;
        d->pump();
    }));
}

/*
    Drives the one operation in progress (stops in order, the backoff, starts in order, each
    child started before the next), then handles the next recorded exit, which may begin another
    operation. Reentrant calls (a child stopping synchronously) only ask for another round. No
    user code runs inside: signals wait for the end of the operation (SignalScope).
*/
void SupervisorPrivate::pump()
{
    if (destroying)
        return;
    if (pumping) {
        pumpAgain = true;
        return;
    }
    pumping = true;
    do {
        pumpAgain = false;
        if (!pumpStops())
            break;
        if (after != After::Nothing) {
            finish();
            break;
        }
        if (backoffPending)
            break;
        pumpStarts();
        updateRunningState();
        if (!exits.empty() && q->isRunning()) {
            ChildExit &front = exits.front();
            static const QMetaMethod exitedSignal = QMetaMethod::fromSignal(&Supervisor::childExited);
            if (!isCurrent(front)) {
                exits.pop_front(); // stale: no signal, no decision
                pumpAgain = true;
                continue;
            }
            if (!front.announced && q->isSignalConnected(exitedSignal)) {
                // The slots run before the decision: one that shuts the supervisor down (or
                // removes the child) means nothing restarts.
                front.announced = true;
                detail::SignalScope::emitLater(q, &Supervisor::childExited, front.node, front.failed, front.reason);
                if (!detail::SignalScope::isOutermostNow()) {
                    schedulePump(); // inside another operation: decided on the next turn
                    break;
                }
                const QPointer<Supervisor> alive(q);
                detail::SignalScope::flushPendingNow();
                if (!alive)
                    return;
                pumpAgain = true; // look again: a slot may have stopped or changed something
                continue;
            }
            const ChildExit exit = std::move(front);
            exits.pop_front();
            handleExit(exit);
            pumpAgain = true;
        }
    } while (pumpAgain);
    pumping = false;
}

bool SupervisorPrivate::pumpStops()
{
    if (waitingFor) {
        if (!NodePrivate::isTerminal(waitingFor->state()))
            return false;
        waitingFor = nullptr;
    }
    while (!stopQueue.empty()) {
        const ChildRef ref = stopQueue.front();
        stopQueue.pop_front();
        SupervisedChild *child = resolve(ref);
        if (!child)
            continue;
        child->stopRequested = true;
        Node *node = child->node;
        if (NodePrivate::isTerminal(node->state()))
            continue;
        node->stopNode(after == After::Nothing ? QStringLiteral("stopped by its supervisor for a restart")
                                               : finishReason);
        if (!NodePrivate::isTerminal(node->state())) {
            waitingFor = node;
            return false;
        }
    }
    return true;
}

void SupervisorPrivate::pumpStarts()
{
    if (startingChild) {
        if (startingChild->state() == Node::State::Starting)
            return;
        startingChild = nullptr; // started; or it failed, and its exit is handled first (below)
    }
    // OTP's rule: a start sequence goes on only while the children it starts start. An exit
    // (a child that failed to start, or any other) is decided before the next start, so that a
    // RestForOne child never runs while one it depends on cannot start.
    if (startQueue.empty())
        restartingFor = kNoChild;
    while (!startQueue.empty() && exits.empty()) {
        const auto first = startQueue.begin();
        const quint64 serial = first->first;
        const PendingStart pending = first->second;
        startQueue.erase(first);
        SupervisedChild *child = resolve(ChildRef{pending.node, serial});
        if (!child)
            continue;
        startChild(*child, pending.restart);
        if (pending.node->state() == Node::State::Starting) {
            startingChild = pending.node;
            return;
        }
    }
}

bool SupervisorPrivate::isCurrent(const ChildExit &exit) const
{
    // Not removed, not started again since, not stopped for a sibling's restart (which covers
    // it, as in OTP), and the supervisor still runs (a slot of childExited() may have shut it
    // down: then nothing restarts).
    const SupervisedChild *child = find(exit.node);
    return child && child->serial == exit.serial && child->incarnation == exit.incarnation && !child->stopRequested
        && q->isRunning() && after == After::Nothing;
}

void SupervisorPrivate::handleExit(const ChildExit &exit)
{
    if (!isCurrent(exit))
        return;
    SupervisedChild *child = find(exit.node);
    Node *node = child->node;
    const RestartType restartType = child->restart;
    const bool restart = restartType == RestartType::Permanent || (restartType == RestartType::Transient && exit.failed);
    if (exit.failed)
        qCInfo(lcSupervisor, "Supervisor %s: child %s failed: %s", qPrintable(nodeName(q)), qPrintable(nodeName(node)),
               qPrintable(exit.cause));
    if (!restart) {
        qCDebug(lcSupervisor, "Supervisor %s: child %s ended; %s: not restarted", qPrintable(nodeName(q)),
                qPrintable(nodeName(node)), restartName(restartType));
        return;
    }

    const auto now = Clock::now();
    if (!intensity.allow(now, maxRestarts, std::chrono::milliseconds(restartPeriod))) {
        // The child named once and the root cause once: a reason does not grow with the depth.
        const QString cause = exit.cause.isEmpty() ? QStringLiteral("ended") : exit.cause;
        const QString reason = QStringLiteral("more than %1 restart(s) within %2 ms; the last: %3 %4: %5")
                                   .arg(maxRestarts)
                                   .arg(restartPeriod)
                                   .arg(nodeName(node), exit.failed ? QStringLiteral("failed") : QStringLiteral("ended"),
                                        cause);
        NodePrivate::get(q)->failureCause = exit.failed ? exit.cause : NodePrivate::bounded(nodeName(node) + QStringLiteral(": ") + cause);
        ++stats.escalations;
        qCWarning(lcSupervisor, "Supervisor %s: giving up: %s", qPrintable(nodeName(q)), qPrintable(reason));
        beginStopAll(reason, /*failing=*/true);
        return;
    }
    ++stats.restarts;
    if (now - lastRestart >= backoff.resetAfter())
        streak = 0;
    ++streak;
    lastRestart = now;

    switch (strategy) {
    case Supervisor::Strategy::OneForOne:
        startQueue.insert_or_assign(child->serial, PendingStart{node, true});
        break;
    case Supervisor::Strategy::OneForAll:
    case Supervisor::Strategy::RestForOne: {
        // Stop the siblings concerned in reverse start order, then start them all in start order;
        // temporary siblings are stopped and not started again.
        const auto self = byNode.value(node);
        restartingFor = child->serial;
        const auto first = strategy == Supervisor::Strategy::OneForAll ? children.begin() : self;
        for (auto it = children.end(); it != first;) {
            --it;
            if (it != self)
                stopQueue.push_back(ChildRef{it->node, it->serial});
        }
        for (auto it = first; it != children.end(); ++it)
            if (it == self || it->restart != RestartType::Temporary)
                startQueue.insert_or_assign(it->serial, PendingStart{it->node, true});
        break;
    }
    }
    const auto delay = backoff.delay(streak, backoff.isNone() ? 0.0 : QRandomGenerator::global()->generateDouble());
    if (delay.count() > 0) {
        backoffPending = true;
        backoffTimer.start(delay);
    }
    q->setState(Node::State::Restarting,
                QStringLiteral("restarting after %1 %2").arg(nodeName(node), exit.failed ? QStringLiteral("failed") : QStringLiteral("ended")));
    q->markDirty();
}

void SupervisorPrivate::beginStopAll(const QString &reason, bool failing)
{
    after = failing ? After::Failed : After::Stopped;
    finishReason = reason;
    backoffTimer.stop();
    backoffPending = false;
    startQueue.clear();
    startingChild = nullptr;
    restartingFor = kNoChild;
    exits.clear();
    // Every child, in reverse start order (those already stopped are skipped as they come).
    stopQueue.clear();
    for (auto it = children.rbegin(); it != children.rend(); ++it)
        stopQueue.push_back(ChildRef{it->node, it->serial});
    q->setState(Node::State::Stopping, reason);
    pump();
}

void SupervisorPrivate::startChild(SupervisedChild &child, bool restart)
{
    child.stopRequested = false;
    ++child.incarnation;
    Node *node = child.node;
    if (restart)
        ++stats.childrenRestarted;
    node->startNode();
    if (restart && !destroying)
        detail::SignalScope::emitLater(q, &Supervisor::childRestarted, node);
}

void SupervisorPrivate::finish()
{
    const bool failed = after == After::Failed;
    after = After::Nothing;
    const QString reason = finishReason;
    q->setState(failed ? Node::State::Failed : Node::State::Stopped, reason);
    q->markDirty();
    if (destroying)
        return;
    if (failed) {
        if (!q->supervisor())
            qCWarning(lcSupervisor, "Supervisor %s (root) failed: %s", qPrintable(nodeName(q)), qPrintable(reason));
        detail::SignalScope::emitLater(q, &Supervisor::gaveUp, reason);
    }
    detail::SignalScope::emitLater(q, &Supervisor::stopped);
}

void SupervisorPrivate::onBackoff()
{
    detail::SignalScope scope;
    backoffPending = false;
    pump();
}

void SupervisorPrivate::updateRunningState()
{
    if (!q->isRunning())
        return;
    const bool busy = waitingFor || startingChild || !stopQueue.empty() || !startQueue.empty() || backoffPending;
    if (!busy)
        q->setState(Node::State::Running, QString());
}

// Supervisor

Supervisor::Supervisor(QObject *parent) : Supervisor(Strategy::OneForOne, parent) {}

Supervisor::Supervisor(Strategy strategy, QObject *parent) : Node(parent), d(std::make_unique<SupervisorPrivate>(this))
{
    d->strategy = strategy;
    d->backoffTimer.setSingleShot(true);
    connect(&d->backoffTimer, &QTimer::timeout, this, [this] { d->onBackoff(); });
}

Supervisor::~Supervisor()
{
    // What the children's stops emit goes out once this is gone, from the event loop.
    detail::SignalScope scope(detail::SignalScope::InDestructor);
    d->destroying = true;
    beginDestruction();
    d->backoffTimer.stop();
    // Children go in reverse start order; each stops on its way out (a group within its
    // shutdownTimeout, a supervisor by deleting its own children the same way).
    while (!d->children.empty()) {
        Node *node = d->children.back().node;
        d->byNode.remove(node);
        d->children.pop_back();
        NodePrivate::get(node)->supervisor = nullptr;
        delete node;
    }
}

bool Supervisor::addChild(Node *node, RestartType restart)
{
    if (!d->checkThread("Supervisor::addChild"))
        return false;
    if (!node) {
        qCWarning(lcSupervisor, "Supervisor::addChild: the node is null; ignored");
        return false;
    }
    if (node == this) {
        qCWarning(lcSupervisor, "Supervisor::addChild: cannot add a supervisor under itself; ignored");
        return false;
    }
    for (Supervisor *above = supervisor(); above; above = above->supervisor()) {
        if (above == node) {
            qCWarning(lcSupervisor, "Supervisor::addChild: %s is an ancestor of this supervisor (a cycle); ignored",
                      qPrintable(nodeName(node)));
            return false;
        }
    }
    if (node->supervisor()) {
        qCWarning(lcSupervisor, "Supervisor::addChild: %s already has a supervisor (%s); ignored",
                  qPrintable(nodeName(node)), qPrintable(nodeName(node->supervisor())));
        return false;
    }
    if (node->thread() != thread()) {
        qCWarning(lcSupervisor, "Supervisor::addChild: %s lives on another thread than the supervisor; ignored",
                  qPrintable(nodeName(node)));
        return false;
    }
    if (d->shutDown || d->destroying) { // stopping for its own supervisor's restart is fine: it starts again
        qCWarning(lcSupervisor, "Supervisor::addChild: the supervisor has been shut down; ignored");
        return false;
    }
    if (node->isDestroying()) {
        qCWarning(lcSupervisor, "Supervisor::addChild: %s is being destroyed; ignored", qPrintable(nodeName(node)));
        return false;
    }
    detail::SignalScope scope;
    const quint64 serial = d->nextSerial++;
    d->children.push_back(SupervisedChild{node, restart, serial});
    d->byNode.insert(node, std::prev(d->children.end()));
    NodePrivate::get(node)->supervisor = this;
    node->setParent(this);
    detail::SignalScope::emitLater(node, &Node::supervisorChanged, this);
    markDirty();
    detail::SignalScope::emitLater(this, &Supervisor::childCountChanged, int(d->children.size()));
    detail::SignalScope::emitLater(this, &Supervisor::childAdded, node);
    if (isRunning() && !node->isRunning()) {
        // After the children being started, if a start sequence is under way.
        d->startQueue.insert_or_assign(serial, PendingStart{node, false});
        d->pump();
    } else if (state() == State::Stopping && node->isRunning()) {
        d->stopQueue.push_front(ChildRef{node, serial}); // the newest child stops first
        d->schedulePump();
    }
    return true;
}

bool Supervisor::removeChild(Node *node)
{
    if (!d->checkThread("Supervisor::removeChild"))
        return false;
    SupervisedChild *child = node ? d->find(node) : nullptr;
    if (!child) {
        qCWarning(lcSupervisor, "Supervisor::removeChild: %s is not a child of this supervisor; ignored",
                  node ? qPrintable(nodeName(node)) : "(null)");
        return false;
    }
    detail::SignalScope scope;
    // The child whose failure the strategy is restarting its siblings for (a OneForAll or
    // RestForOne restart still queued, in backoff or starting): the siblings after it in start
    // order, stopped for that restart, stay stopped, as in OTP (whose restart starts the children
    // before the failing one, stops at it, and does not retry it once it is deleted).
    if (d->restartingFor == child->serial && !d->startQueue.empty()) {
        for (auto it = d->startQueue.upper_bound(child->serial); it != d->startQueue.end();)
            it = it->second.restart ? d->startQueue.erase(it) : std::next(it);
    }
    d->forget(node);
    NodePrivate::get(node)->supervisor = nullptr;
    if (node->isRunning())
        node->stopNode(QStringLiteral("removed from its supervisor"));
    node->setParent(nullptr);
    detail::SignalScope::emitLater(node, &Node::supervisorChanged, static_cast<Supervisor *>(nullptr));
    markDirty();
    detail::SignalScope::emitLater(this, &Supervisor::childCountChanged, int(d->children.size()));
    detail::SignalScope::emitLater(this, &Supervisor::childRemoved, node);
    d->schedulePump(); // an operation may have waited for it
    return true;
}

QList<Node *> Supervisor::childNodes() const
{
    QList<Node *> nodes;
    nodes.reserve(qsizetype(d->children.size()));
    for (const auto &child : d->children)
        nodes.append(child.node);
    return nodes;
}

int Supervisor::childCount() const
{
    return int(d->children.size());
}

RestartType Supervisor::childRestartType(Node *node) const
{
    const SupervisedChild *child = d->find(node);
    return child ? child->restart : RestartType::Permanent;
}

bool Supervisor::setChildRestartType(Node *node, RestartType restart)
{
    SupervisedChild *child = d->find(node);
    if (!child) {
        qCWarning(lcSupervisor, "Supervisor::setChildRestartType: the node is not a child of this supervisor; ignored");
        return false;
    }
    child->restart = restart;
    return true;
}

bool Supervisor::terminateChild(Node *node)
{
    if (!d->checkThread("Supervisor::terminateChild"))
        return false;
    SupervisedChild *child = node ? d->find(node) : nullptr;
    if (!child) {
        qCWarning(lcSupervisor, "Supervisor::terminateChild: %s is not a child of this supervisor; ignored",
                  node ? qPrintable(nodeName(node)) : "(null)");
        return false;
    }
    detail::SignalScope scope;
    d->startQueue.erase(child->serial);
    child->stopRequested = true;
    if (node->isRunning())
        node->stopNode(QStringLiteral("terminated by request"));
    d->schedulePump(); // an operation may have waited for it
    return true;
}

bool Supervisor::restartChild(Node *node)
{
    if (!d->checkThread("Supervisor::restartChild"))
        return false;
    SupervisedChild *child = node ? d->find(node) : nullptr;
    if (!child) {
        qCWarning(lcSupervisor, "Supervisor::restartChild: %s is not a child of this supervisor; ignored",
                  node ? qPrintable(nodeName(node)) : "(null)");
        return false;
    }
    if (!isRunning() || d->after != SupervisorPrivate::After::Nothing) {
        qCWarning(lcSupervisor, "Supervisor::restartChild: the supervisor %s is not running; ignored",
                  qPrintable(nodeName(this)));
        return false;
    }
    detail::SignalScope scope;
    if (node->isRunning() || node->state() == State::Stopping)
        d->stopQueue.push_back(ChildRef{node, child->serial});
    d->startQueue.insert_or_assign(child->serial, PendingStart{node, true});
    if (state() == State::Running)
        setState(State::Restarting, QStringLiteral("restarting %1 by request").arg(nodeName(node)));
    d->pump();
    return true;
}

bool Supervisor::startRoot()
{
    if (isRunning() || state() == State::Stopping) {
        qCWarning(lcSupervisor, "Supervisor::start: the supervisor is %s already; ignored",
                  state() == State::Stopping ? "stopping" : "running");
        return false;
    }
    detail::SignalScope scope;
    startNode();
    return true;
}

void Supervisor::startNode()
{
    if (isRunning() || state() == State::Stopping)
        return;
    detail::SignalScope scope;
    d->shutDown = false;
    d->intensity.clear();
    d->streak = 0;
    d->exits.clear();
    d->stopQueue.clear();
    d->waitingFor = nullptr;
    d->startingChild = nullptr;
    d->after = SupervisorPrivate::After::Nothing;
    NodePrivate::get(this)->failureCause.clear();
    setState(State::Starting, QString());
    d->startQueue.clear();
    for (const auto &child : d->children)
        d->startQueue.emplace_hint(d->startQueue.end(), child.serial, PendingStart{child.node, false});
    d->pump();
}

void Supervisor::stopNode(const QString &reason)
{
    detail::SignalScope scope;
    if (isRunning())
        d->beginStopAll(reason, /*failing=*/false);
}

void Supervisor::shutdownRoot()
{
    (void)shutdown();
}

detail::NodeStoppedAwaitable Supervisor::shutdown()
{
    if (!d->checkThread("Supervisor::shutdown"))
        return stoppedAwaitable();
    detail::SignalScope scope;
    d->shutDown = true;
    switch (state()) {
    case State::Idle:
        setState(State::Stopped, QStringLiteral("shut down before it was started"));
        detail::SignalScope::emitLater(this, &Supervisor::stopped);
        break;
    case State::Starting:
    case State::Running:
    case State::Restarting:
        d->beginStopAll(QStringLiteral("shut down"), /*failing=*/false);
        break;
    case State::Stopping:
    case State::Stopped:
    case State::Failed:
        break;
    }
    return stoppedAwaitable();
}

Supervisor::Strategy Supervisor::strategy() const
{
    return d->strategy;
}

void Supervisor::setStrategy(Strategy strategy)
{
    if (d->strategy == strategy)
        return;
    d->strategy = strategy;
    emit strategyChanged(strategy);
}

int Supervisor::maxRestarts() const
{
    return d->maxRestarts;
}

void Supervisor::setMaxRestarts(int count)
{
    if (count < -1) {
        qCWarning(lcSupervisor, "Supervisor::setMaxRestarts: the count must be >= 0 (or -1: unlimited), got %d; ignored",
                  count);
        return;
    }
    if (d->maxRestarts == count)
        return;
    d->maxRestarts = count;
    d->intensity.clear();
    emit maxRestartsChanged(count);
}

int Supervisor::restartPeriod() const
{
    return d->restartPeriod;
}

void Supervisor::setRestartPeriod(int milliseconds)
{
    if (milliseconds <= 0) {
        qCWarning(lcSupervisor, "Supervisor::setRestartPeriod: the period must be > 0 ms, got %d; ignored", milliseconds);
        return;
    }
    if (d->restartPeriod == milliseconds)
        return;
    d->restartPeriod = milliseconds;
    emit restartPeriodChanged(milliseconds);
}

Backoff Supervisor::backoff() const
{
    return d->backoff;
}

void Supervisor::setBackoff(const Backoff &backoff)
{
    if (d->backoff == backoff)
        return;
    d->backoff = backoff;
    emit backoffChanged(backoff);
}

SupervisorStatistics Supervisor::statistics() const
{
    SupervisorStatistics s = d->stats;
    s.children = int(d->children.size());
    s.runningChildren = runningChildren();
    return s;
}

int Supervisor::runningChildren() const
{
    return int(std::count_if(d->children.begin(), d->children.end(), [](const auto &c) { return c.node->isRunning(); }));
}

qint64 Supervisor::restarts() const
{
    return d->stats.restarts;
}

qint64 Supervisor::childFailures() const
{
    return d->stats.childFailures;
}

int Supervisor::recentRestarts() const
{
    return d->intensity.recent(Clock::now(), std::chrono::milliseconds(d->restartPeriod));
}

} // namespace stage
