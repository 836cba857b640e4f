#include "supervisor_p.h"

#include <QtCore/QLoggingCategory>
#include <QtCore/QPointer>
#include <QtCore/QRandomGenerator>
#include <QtCore/QThread>

#include <algorithm>

Q_LOGGING_CATEGORY(lcSupervisor, "stage.supervisor", QtInfoMsg)

namespace stage {

using detail::Clock;

namespace {
QString nameOf(const Node *node)
{
    const QString name = node->objectName();
    if (!name.isEmpty())
        return name;
    return QStringLiteral("%1(0x%2)")
        .arg(QString::fromLatin1(node->metaObject()->className()))
        .arg(quintptr(node), 0, 16);
}

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

/* SupervisorPrivate::find() from where the previous search ended (\a hint): a queue in start
   order costs O(1) a node instead of O(children), O(children) a restart instead of O(children^2). */
SupervisedChild *findFrom(std::vector<SupervisedChild> &children, Node *node, std::size_t &hint)
{
    const std::size_t n = children.size();
    if (hint >= n)
        hint = 0;
    for (std::size_t k = 0; k < n; ++k) {
        const std::size_t i = (hint + k) % n;
        if (children[i].node == node) {
            hint = i + 1;
            return &children[i];
        }
    }
    return nullptr;
}

// As findFrom(), searching backwards from \a hint: stops run in reverse start order.
SupervisedChild *findBackFrom(std::vector<SupervisedChild> &children, Node *node, std::size_t &hint)
{
    const std::size_t n = children.size();
    if (hint >= n)
        hint = n ? n - 1 : 0;
    for (std::size_t k = 0; k < n; ++k) {
        const std::size_t i = (hint + n - k) % n;
        if (children[i].node == node) {
            hint = i ? i - 1 : n - 1;
            return &children[i];
        }
    }
    return nullptr;
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

SupervisedChild *SupervisorPrivate::find(Node *node)
{
    for (auto &child : children)
        if (child.node == node)
            return &child;
    return nullptr;
}

void SupervisorPrivate::forget(Node *node)
{
    children.erase(std::remove_if(children.begin(), children.end(), [node](const auto &c) { return c.node == node; }),
                   children.end());
    stopQueue.erase(std::remove(stopQueue.begin(), stopQueue.end(), node), stopQueue.end());
    startQueue.erase(std::remove(startQueue.begin(), startQueue.end(), node), startQueue.end());
    exits.erase(std::remove_if(exits.begin(), exits.end(), [node](const auto &e) { return e.node == node; }),
                exits.end());
    if (waitingFor == node)
        waitingFor = nullptr;
}

void SupervisorPrivate::childStateChanged(Node *node, Node::State state, const QString &reason)
{
    // Node::setState() calls this only for a node whose supervisor is q, that is a child
    // (addChild() links it after recording it; removeChild() and destruction forget it before
    // unlinking), so the common transitions need no search of the children.
    q->markDirty(); // runningChildren
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
    exits.push_back(ChildExit{node, child->incarnation, failed, reason});
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
    emit q->childCountChanged(int(children.size()));
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
        auto *d = supervisor->d.get();
        d->pumpPosted = false;
        d->pump();
    }));
}

/*
    Drives the one operation in progress (stops in order, the backoff, starts in order), then
    handles the next recorded exit, which may begin another operation. Reentrant calls (a child
    stopping synchronously, a slot calling back) only ask for another round.
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
    QPointer<Supervisor> alive(q);
    do {
        pumpAgain = false;
        if (!pumpStops())
            break;
        if (after != After::Nothing) {
            finish();
            if (!alive)
                return;
            continue; // ends the loop, unless a slot of gaveUp()/stopped() started it again
        }
        if (backoffPending)
            break;
        if (!startQueue.empty()) {
            const auto queue = std::exchange(startQueue, {});
            std::size_t hint = 0;
            for (Node *node : queue) {
                if (SupervisedChild *child = findFrom(children, node, hint))
                    startChild(*child, /*restart=*/q->state() != Node::State::Starting);
                if (!alive)
                    return;
                if (after != After::Nothing || !startQueue.empty())
                    break; // a slot shut the supervisor down meanwhile
            }
            if (after != After::Nothing) {
                pumpAgain = true;
                continue;
            }
        }
        updateRunningState();
        if (!exits.empty() && q->isRunning()) {
            const ChildExit exit = exits.front();
            exits.pop_front();
            handleExit(exit);
            if (!alive)
                return;
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
        Node *node = stopQueue.front();
        stopQueue.pop_front();
        SupervisedChild *child = findBackFrom(children, node, stopHint);
        if (!child)
            continue;
        child->stopRequested = true;
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

void SupervisorPrivate::handleExit(const ChildExit &exit)
{
    SupervisedChild *child = find(exit.node);
    if (!child || child->incarnation != exit.incarnation)
        return; // removed, or started again since (a sibling's restart covered it)
    Node *node = child->node;
    const RestartType restartType = child->restart;
    {
        QPointer<Supervisor> alive(q);
        emit q->childExited(node, exit.failed, exit.reason);
        if (!alive || !(child = find(node)) || child->incarnation != exit.incarnation)
            return;
        if (!q->isRunning() || after != After::Nothing)
            return; // a slot shut the supervisor down (or stopped it): nothing restarts
    }
    const bool restart = restartType == RestartType::Permanent || (restartType == RestartType::Transient && exit.failed);
    if (exit.failed)
        qCInfo(lcSupervisor, "Supervisor %s: child %s failed: %s", qPrintable(nameOf(q)), qPrintable(nameOf(node)),
               qPrintable(exit.reason));
    if (!restart) {
        qCDebug(lcSupervisor, "Supervisor %s: child %s ended; %s: not restarted", qPrintable(nameOf(q)),
                qPrintable(nameOf(node)), restartName(restartType));
        return;
    }

    const auto now = Clock::now();
    if (!intensity.allow(now, maxRestarts, std::chrono::milliseconds(restartPeriod))) {
        const QString reason = QStringLiteral("more than %1 restart(s) within %2 ms; the last: %3: %4")
                                   .arg(maxRestarts)
                                   .arg(restartPeriod)
                                   .arg(nameOf(node))
                                   .arg(exit.reason.isEmpty() ? QStringLiteral("ended") : exit.reason);
        ++stats.escalations;
        qCWarning(lcSupervisor, "Supervisor %s: giving up: %s", qPrintable(nameOf(q)), qPrintable(reason));
        beginStopAll(reason, /*failing=*/true);
        return;
    }
    ++stats.restarts;
    if (now - lastRestart >= backoff.resetAfter())
        streak = 0;
    ++streak;
    lastRestart = now;

    const auto index = std::size_t(child - children.data());
    switch (strategy) {
    case Supervisor::Strategy::OneForOne:
        startQueue.push_back(node);
        break;
    case Supervisor::Strategy::OneForAll:
    case Supervisor::Strategy::RestForOne: {
        // Stop the siblings concerned in reverse start order, then start them all in start order;
        // temporary siblings are stopped and not started again.
        const std::size_t first = strategy == Supervisor::Strategy::OneForAll ? 0 : index;
        for (std::size_t i = children.size(); i-- > first;)
            if (i != index)
                stopQueue.push_back(children[i].node);
        for (std::size_t i = first; i < children.size(); ++i)
            if (i == index || children[i].restart != RestartType::Temporary)
                startQueue.push_back(children[i].node);
        break;
    }
    }
    const auto delay = backoff.delay(streak, backoff.isNone() ? 0.0 : QRandomGenerator::global()->generateDouble());
    if (delay.count() > 0) {
        backoffPending = true;
        backoffTimer.start(delay);
    }
    q->setState(Node::State::Restarting,
                QStringLiteral("restarting after %1 %2").arg(nameOf(node), exit.failed ? QStringLiteral("failed") : QStringLiteral("ended")));
    q->markDirty();
}

void SupervisorPrivate::beginStopAll(const QString &reason, bool failing)
{
    after = failing ? After::Failed : After::Stopped;
    finishReason = reason;
    backoffTimer.stop();
    backoffPending = false;
    startQueue.clear();
    exits.clear();
    // Every child, in reverse start order (those already stopped are skipped as they come).
    stopQueue.clear();
    for (auto it = children.rbegin(); it != children.rend(); ++it)
        stopQueue.push_back(it->node);
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
        emit q->childRestarted(node);
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
    QPointer<Supervisor> alive(q);
    if (failed) {
        if (!q->supervisor())
            qCWarning(lcSupervisor, "Supervisor %s (root) failed: %s", qPrintable(nameOf(q)), qPrintable(reason));
        emit q->gaveUp(reason);
    }
    if (alive)
        emit q->stopped();
}

void SupervisorPrivate::onBackoff()
{
    backoffPending = false;
    pump();
}

void SupervisorPrivate::updateRunningState()
{
    if (!q->isRunning())
        return;
    const bool busy = waitingFor || !stopQueue.empty() || !startQueue.empty() || backoffPending;
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
    d->destroying = true;
    beginDestruction();
    d->backoffTimer.stop();
    // Children go in reverse start order; each stops on its way out (a group within its
    // shutdownTimeout, a supervisor by deleting its own children the same way).
    while (!d->children.empty()) {
        Node *node = d->children.back().node;
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
                      qPrintable(nameOf(node)));
            return false;
        }
    }
    if (node->supervisor()) {
        qCWarning(lcSupervisor, "Supervisor::addChild: %s already has a supervisor (%s); ignored",
                  qPrintable(nameOf(node)), qPrintable(nameOf(node->supervisor())));
        return false;
    }
    if (node->thread() != thread()) {
        qCWarning(lcSupervisor, "Supervisor::addChild: %s lives on another thread than the supervisor; ignored",
                  qPrintable(nameOf(node)));
        return false;
    }
    if (d->shutDown || d->destroying) { // stopping for its own supervisor's restart is fine: it starts again
        qCWarning(lcSupervisor, "Supervisor::addChild: the supervisor has been shut down; ignored");
        return false;
    }
    d->children.push_back(SupervisedChild{node, restart});
    NodePrivate::get(node)->supervisor = this;
    node->setParent(this);
    emit node->supervisorChanged(this);
    markDirty();
    emit childCountChanged(int(d->children.size()));
    emit childAdded(node);
    if (isRunning() && !node->isRunning()) {
        if (SupervisedChild *child = d->find(node))
            d->startChild(*child, false);
    } else if (state() == State::Stopping && node->isRunning()) {
        d->stopQueue.insert(d->stopQueue.begin(), node); // the newest child stops first
        d->schedulePump();
    }
    return true;
}

bool Supervisor::removeChild(Node *node)
{
    if (!d->checkThread("Supervisor::removeChild"))
        return false;
    if (!node || !d->find(node)) {
        qCWarning(lcSupervisor, "Supervisor::removeChild: %s is not a child of this supervisor; ignored",
                  node ? qPrintable(nameOf(node)) : "(null)");
        return false;
    }
    d->forget(node);
    NodePrivate::get(node)->supervisor = nullptr;
    if (node->isRunning())
        node->stopNode(QStringLiteral("removed from its supervisor"));
    node->setParent(nullptr);
    emit node->supervisorChanged(nullptr);
    markDirty();
    emit childCountChanged(int(d->children.size()));
    emit childRemoved(node);
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

bool Supervisor::start()
{
    if (!d->checkThread("Supervisor::start"))
        return false;
    if (supervisor()) {
        qCWarning(lcSupervisor, "Supervisor::start: %s is started by its own supervisor; ignored", qPrintable(nameOf(this)));
        return false;
    }
    if (d->shutDown) {
        qCWarning(lcSupervisor, "Supervisor::start: the supervisor has been shut down; ignored");
        return false;
    }
    if (isRunning() || state() == State::Stopping) {
        qCWarning(lcSupervisor, "Supervisor::start: the supervisor is %s already; ignored",
                  state() == State::Stopping ? "stopping" : "running");
        return false;
    }
    startNode();
    return true;
}

void Supervisor::startNode()
{
    if (isRunning() || state() == State::Stopping)
        return;
    d->shutDown = false;
    d->intensity.clear();
    d->streak = 0;
    d->exits.clear();
    d->stopQueue.clear();
    d->waitingFor = nullptr;
    d->after = SupervisorPrivate::After::Nothing;
    setState(State::Starting, QString());
    d->startQueue.clear();
    for (const auto &child : d->children)
        d->startQueue.push_back(child.node);
    d->pump();
}

void Supervisor::stopNode(const QString &reason)
{
    if (isRunning())
        d->beginStopAll(reason, /*failing=*/false);
}

detail::NodeStoppedAwaitable Supervisor::shutdown()
{
    if (!d->checkThread("Supervisor::shutdown"))
        return stoppedAwaitable();
    d->shutDown = true;
    switch (state()) {
    case State::Idle:
        setState(State::Stopped, QStringLiteral("shut down before it was started"));
        emit stopped();
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

} // namespace stage
