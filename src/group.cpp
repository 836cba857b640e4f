#include "group_p.h"
#include "node_p.h"
#include "signalqueue_p.h"

#include <stage/supervisor.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QEvent>
#include <QtCore/QMetaMethod>
#include <QtCore/QRandomGenerator>
#include <QtCore/QThread>

#include <algorithm>

Q_LOGGING_CATEGORY(lcGroup, "stage.group", QtInfoMsg)

namespace stage {

using detail::Clock;

// GroupSlot

GroupSlot::GroupSlot(int index) : id(detail::WorkerCore::nextId()), index(index) {}

void SlotTimer::fire() noexcept
{
    m_group->onSlotTimer(m_slot);
}

// GroupPrivate

GroupPrivate::GroupPrivate(Group *q) : q(q)
{
    watchdog.setTimerType(Qt::CoarseTimer);
    QObject::connect(&watchdog, &QTimer::timeout, q, [this] { watchdogTick(); });
}

bool GroupPrivate::checkThread(const char *function) const
{
    if (QThread::currentThread() == q->thread())
        return true;
    qCWarning(lcGroup, "%s: called from a thread other than the group's; ignored", function);
    return false;
}

QThread *GroupPrivate::homeFor(const GroupSlot *slot) const
{
    return threads.empty() ? q->thread() : threads[size_t(slot->index) % threads.size()];
}

void GroupPrivate::startWorkers()
{
    if (threadCount > 0 && threads.empty()) {
        for (int i = 0; i < threadCount; ++i) {
            auto *thread = new QThread;
            thread->setObjectName(QStringLiteral("stage-group-%1").arg(i));
            thread->start();
            threads.push_back(thread);
        }
    }
    intensity.clear();
    addSlots(size);
    if (heartbeatTimeout > 0)
        watchdog.start(std::max(1, heartbeatTimeout / 4));
    probeStart();
    updateRunningState();
}

namespace {
/* A reference to an executor, given back when the job holding it runs or is dropped. */
struct ExecutorRef
{
    explicit ExecutorRef(detail::Executor *e) : executor(e) {}
    ExecutorRef(ExecutorRef &&o) noexcept : executor(std::exchange(o.executor, nullptr)) {}
    ExecutorRef(const ExecutorRef &) = delete;
    ~ExecutorRef()
    {
        if (executor)
            executor->deref();
    }
    detail::Executor *executor;
};
} // namespace

/*
    The group counts as started (Starting -> Running) once every worker of this start has reached
    its first suspension, or ended, without failing. Each home thread runs its posted starts in
    order, so a probe posted after them runs once they have; it then posts back to the group's
    thread, behind the ends those starts reported, so that a worker that failed at once is
    decided (under a supervisor: the group fails) before the group would count as started.
*/
void GroupPrivate::probeStart()
{
    const quint64 epoch = ++startEpoch;
    const QPointer<Group> group(q);
    if (threads.empty()) {
        // The group's own thread: one probe, which looks at the workers itself (no second hop
        // in the common case, where every body waits, suspended, by then).
        startProbes = 1;
        executor->post(detail::makeJob([group, epoch] {
            if (group)
                group->d->onLocalStartProbe(epoch);
        }));
        return;
    }
    startProbes = 0;
    for (QThread *home : threads) {
        detail::Executor *there = detail::Executor::acquire(home);
        if (!there)
            continue;
        ++startProbes;
        executor->ref();
        there->post(detail::makeJob([group, epoch, owner = ExecutorRef(executor), self = ExecutorRef(there)] {
            owner.executor->post(detail::makeJob([group, epoch] {
                if (group)
                    group->d->onStartProbe(epoch);
            }));
        }));
    }
}

void GroupPrivate::onLocalStartProbe(quint64 epoch)
{
    if (epoch != startEpoch)
        return;
    // Every start of this probe's start has run. A body that is not suspended now ended at once
    // (or was stopped): its end, posted behind this probe, must be decided first.
    const bool allSuspended = std::all_of(positions.begin(), positions.end(), [](const auto &slot) {
        return !slot->core || slot->core->isBodySuspended();
    });
    if (allSuspended) {
        onStartProbe(epoch);
        return;
    }
    executor->post(detail::makeJob([group = QPointer<Group>(q), epoch] {
        if (group)
            group->d->onStartProbe(epoch);
    }));
}

void GroupPrivate::onStartProbe(quint64 epoch)
{
    if (epoch != startEpoch || --startProbes > 0)
        return;
    detail::SignalScope scope;
    updateRunningState();
}

void GroupPrivate::addSlots(int count)
{
    if (count > 0 && positions.capacity() < positions.size() + size_t(count)) // exact for a first start
        positions.reserve(std::max(positions.size() + size_t(count), positions.capacity() * 2));
    if (count > 64)
        detail::reserveFrames(size_t(count)); // one rehash of the frame registry, not one per doubling
    // A clock read per 256 starts, not per start (4% of W4's spawning thread): a start time,
    // and so a watchdog's grace, is early by at most 256 starts (tens of microseconds).
    auto now = Clock::now();
    for (int i = 0; i < count; ++i) {
        if (i && i % 256 == 0)
            now = Clock::now();
        positions.push_back(std::make_unique<GroupSlot>(nextSlotIndex++));
        launch(positions.back().get(), now);
    }
}

void GroupPrivate::launch(GroupSlot *slot, Clock::time_point now)
{
    ++slot->generation;
    slot->watchdogFired = false;
    slot->inBackoff = false;
    slot->startedAt = now;
    auto core = detail::WorkerCore::create(slot->id, slot->generation, factory, homeFor(slot), this);
    core->tag = slot;
    core->destroyOnStop = stopMode == StopMode::Destroy;
    core->lastHeartbeatNs.store(slot->startedAt.time_since_epoch().count(), std::memory_order_relaxed);
    slot->core = std::move(core);
    ++stats.started;
    ++stats.running;
    markDirty();
    slot->core->launch(/*deferred=*/true); // from the event loop: never inside a call to the group
}

void GroupPrivate::updateRunningState()
{
    if (state() != Group::State::Starting && state() != Group::State::Running && state() != Group::State::Restarting)
        return;
    bool anyBackoff = false;
    bool anyAlive = false;
    for (const auto &slot : positions) {
        anyBackoff = anyBackoff || slot->inBackoff;
        anyAlive = anyAlive || slot->core || slot->inBackoff;
    }
    if (!anyAlive && retiring.empty() && !positions.empty()) {
        setState(Group::State::Stopped, QStringLiteral("every worker has ended for good"));
        watchdog.stop();
        if (!destroying)
            detail::SignalScope::emitLater(q, &Group::stopped);
        return;
    }
    if (state() == Group::State::Starting && startProbes > 0)
        return; // not started yet (probeStart())
    if (anyBackoff)
        setState(Group::State::Restarting, QStringLiteral("a worker waits for its restart"));
    else
        setState(Group::State::Running, QString());
}

void GroupPrivate::workerEnded(const std::shared_ptr<detail::WorkerCore> &core, WorkerExit exit)
{
    detail::SignalScope scope;
    auto *slot = static_cast<GroupSlot *>(core->tag);
    if (!slot) { // reported abandoned earlier; the statistics counted it then
        abandonedCores.erase(std::remove(abandonedCores.begin(), abandonedCores.end(), core), abandonedCores.end());
        qCInfo(lcGroup, "Group: abandoned worker %llu (generation %d) ended after all: %s", exit.id, exit.generation,
               qPrintable(exit.reason));
        markDirty(); // lingering()
        return;
    }
    Q_ASSERT(slot->core == core);
    slot->core.reset();
    core->tag = nullptr;
    slot->disarmTimer(); // a stop deadline, if one was armed
    endedIterations += core->iterations.load(std::memory_order_relaxed);
    --stats.running;

    if (slot->watchdogFired && exit.kind != WorkerExit::Kind::Failed) {
        exit.kind = WorkerExit::Kind::Failed;
        exit.reason = QStringLiteral("missed its heartbeat deadline (%1 ms)").arg(heartbeatTimeout);
    }
    switch (exit.kind) {
    case WorkerExit::Kind::Completed:
        ++stats.completed;
        break;
    case WorkerExit::Kind::Failed:
        ++stats.failed;
        logFailure(exit);
        break;
    case WorkerExit::Kind::Cancelled:
        ++stats.cancelled;
        break;
    case WorkerExit::Kind::Abandoned:
        ++stats.abandoned;
        break;
    }
    markDirty();
    announceThenDecide(slot, exit);
}

void GroupPrivate::announceThenDecide(GroupSlot *slot, const WorkerExit &exit)
{
    static const QMetaMethod finishedSignal = QMetaMethod::fromSignal(&Group::workerFinished);
    if (destroying || !q->isSignalConnected(finishedSignal)) {
        decide(slot, exit);
        return;
    }
    detail::SignalScope::emitLater(q, &Group::workerFinished, exit);
    if (!detail::SignalScope::isOutermostNow()) {
        decide(slot, exit); // inside another operation: the slots run after it, and after this decision
        return;
    }
    // The slots run now, before the decision: they may delete the group, resize it, shut it down.
    const QPointer<Group> alive(q);
    const quint64 epoch = slotEpoch;
    const quint64 id = slot->id;
    const int generation = slot->generation;
    detail::SignalScope::flushPendingNow();
    if (!alive)
        return;
    if (slotEpoch != epoch && !isLiveSlot(slot, id, generation))
        return; // freed meanwhile (a resize, a stop, a start from scratch): nothing left to decide
    if (slot->core)
        return; // started again meanwhile
    decide(slot, exit);
}

bool GroupPrivate::isLiveSlot(const GroupSlot *slot, quint64 id, int generation) const
{
    // Compare the pointer first: only a slot found in a list may be read (a freed slot's block
    // may hold another slot by now, which the id tells apart).
    auto same = [&](const std::unique_ptr<GroupSlot> &p) { return p.get() == slot; };
    const bool found = std::any_of(positions.begin(), positions.end(), same)
        || std::any_of(retiring.begin(), retiring.end(), same);
    return found && slot->id == id && slot->generation == generation;
}

void GroupPrivate::logFailure(const WorkerExit &exit)
{
    // At most kPerSecond lines a second, so that a worker failing in a tight loop cannot flood
    // the log; the next line that gets through says how many were left out.
    constexpr int kPerSecond = 10;
    if (!lcGroup().isInfoEnabled())
        return;
    const auto now = Clock::now();
    if (now - logWindowStart >= std::chrono::seconds(1)) {
        logWindowStart = now;
        logLinesInWindow = 0;
    }
    if (++logLinesInWindow > kPerSecond) {
        ++logSuppressed;
        return;
    }
    if (logSuppressed) {
        qCInfo(lcGroup, "Group: %lld more failure(s) not logged", logSuppressed);
        logSuppressed = 0;
    }
    qCInfo(lcGroup, "Group: worker %llu (generation %d) failed: %s", exit.id, exit.generation, qPrintable(exit.reason));
}

void GroupPrivate::decide(GroupSlot *slot, const WorkerExit &exit)
{
    if (slot->retiring) {
        eraseRetired(slot);
        maybeFinishStop();
        updateRunningState();
        return;
    }
    if (state() == Group::State::Stopping) {
        maybeFinishStop();
        return;
    }
    if (state() != Group::State::Starting && state() != Group::State::Running && state() != Group::State::Restarting)
        return;

    const bool abnormal = exit.kind == WorkerExit::Kind::Failed || exit.kind == WorkerExit::Kind::Abandoned;
    bool restart = false;
    switch (restartType) {
    case RestartType::Permanent:
        restart = true;
        break;
    case RestartType::Transient:
        restart = abnormal;
        break;
    case RestartType::Temporary:
        restart = false;
        break;
    }
    if (!restart) {
        slot->done = true;
        updateRunningState();
        return;
    }

    const auto now = Clock::now();
    if (!intensity.allow(now, effectiveMaxRestarts(), std::chrono::milliseconds(restartPeriod))) {
        const QString what = NodePrivate::bounded(QStringLiteral("worker %1: %2")
                                                      .arg(exit.id)
                                                      .arg(exit.reason.isEmpty() ? QStringLiteral("ended") : exit.reason));
        // The root cause of an escalation, with where it happened; supervisors pass it on as it is.
        const QString name = q->objectName().isEmpty() ? QStringLiteral("its group") : q->objectName();
        NodePrivate::get(q)->failureCause = NodePrivate::bounded(
            QStringLiteral("worker %1 of %2: %3")
                .arg(exit.id)
                .arg(name, exit.reason.isEmpty() ? QStringLiteral("ended") : exit.reason));
        const QString reason = maxRestarts < 0 // supervised, escalating every failure: the failure is the reason
            ? what
            : QStringLiteral("more than %1 restart(s) within %2 ms; the last: %3")
                  .arg(effectiveMaxRestarts())
                  .arg(restartPeriod)
                  .arg(what);
        if (q->supervisor()) // escalating is the normal path under a supervisor, which logs its decision
            qCInfo(lcGroup, "Group: giving up (escalating to its supervisor): %s", qPrintable(reason));
        else
            qCWarning(lcGroup, "Group: giving up: %s", qPrintable(reason));
        beginStop(std::chrono::milliseconds(shutdownTimeout), reason, /*failing=*/true);
        return;
    }
    ++stats.restarted;
    if (now - slot->startedAt >= backoff.resetAfter())
        slot->streak = 0;
    ++slot->streak;
    const auto delay = backoff.delay(slot->streak, backoff.isNone() ? 0.0 : QRandomGenerator::global()->generateDouble());
    if (delay.count() <= 0) {
        launch(slot, now); // the instant the decision was taken
        updateRunningState();
        return;
    }
    qCDebug(lcGroup, "Group: worker %llu restarts in %lld ms (streak %d)", slot->id, qint64(delay.count()), slot->streak);
    slot->inBackoff = true;
    slot->armTimer(this, executor, now + delay);
    updateRunningState();
}

void GroupPrivate::onSlotTimer(GroupSlot *slot)
{
    detail::SignalScope scope;
    if (slot->inBackoff) {
        slot->inBackoff = false;
        if (state() == Group::State::Running || state() == Group::State::Restarting || state() == Group::State::Starting) {
            launch(slot, Clock::now());
            updateRunningState();
        }
        return;
    }
    abandon(slot); // its stop deadline passed
}

void GroupPrivate::abandon(GroupSlot *slot)
{
    detail::SignalScope scope;
    if (!slot->core)
        return;
    if (slot->core->home == q->thread() && !slot->core->isBodySuspended())
        return; // on this thread and not waiting: its start or its end is queued here, and settles it
    auto core = std::move(slot->core);
    qCWarning(lcGroup, "Group: worker %llu (generation %d) did not stop within %d ms; abandoned", slot->id,
              slot->generation, shutdownTimeout);
    core->tag = nullptr; // its late end, if any, is only logged
    abandonedCores.push_back(core);
    endedIterations += core->iterations.load(std::memory_order_relaxed);
    slot->disarmTimer();
    --stats.running;
    ++stats.abandoned;
    markDirty();
    WorkerExit exit;
    exit.kind = WorkerExit::Kind::Abandoned;
    exit.reason = QStringLiteral("did not stop within %1 ms").arg(shutdownTimeout);
    exit.id = slot->id;
    exit.generation = slot->generation;
    // A hung worker that would not stop: its frame is left behind; an abandoned end is abnormal,
    // so it restarts by policy.
    announceThenDecide(slot, exit);
}

void GroupPrivate::abandonAllRunning()
{
    std::vector<GroupSlot *> running;
    for (const auto &slot : positions)
        if (slot->core)
            running.push_back(slot.get());
    for (const auto &slot : retiring)
        if (slot->core)
            running.push_back(slot.get());
    for (GroupSlot *slot : running) {
        QPointer<Group> alive(q);
        abandon(slot);
        if (!alive)
            return;
    }
}

void GroupPrivate::retire(std::unique_ptr<GroupSlot> slot)
{
    ++slotEpoch;
    slot->retiring = true;
    if (!slot->core)
        return; // in backoff or done: nothing runs; the slot goes with its timer
    slot->armTimer(this, executor, Clock::now() + std::chrono::milliseconds(shutdownTimeout));
    slot->core->requestStop();
    retiring.push_back(std::move(slot));
}

void GroupPrivate::eraseRetired(GroupSlot *slot)
{
    auto it = std::find_if(retiring.begin(), retiring.end(), [slot](const auto &p) { return p.get() == slot; });
    if (it != retiring.end()) {
        ++slotEpoch;
        retiring.erase(it);
    }
}

void GroupPrivate::beginStop(std::chrono::milliseconds timeout, const QString &reason, bool failing)
{
    if (failing)
        failReason = reason;
    setState(Group::State::Stopping, reason);
    watchdog.stop();
    for (const auto &slot : positions) {
        if (slot->inBackoff) {
            slot->inBackoff = false;
            slot->disarmTimer();
        }
        if (slot->core) {
            slot->disarmTimer();
            slot->core->requestStop();
        }
    }
    for (const auto &slot : retiring)
        if (slot->core)
            slot->core->requestStop();
    if (stats.running > 0 && executor)
        stopDeadline.arm(executor, Clock::now() + timeout);
    maybeFinishStop();
}

void GroupPrivate::onStopDeadline()
{
    detail::SignalScope scope;
    abandonAllRunning();
    maybeFinishStop();
}

void GroupPrivate::maybeFinishStop()
{
    if (state() != Group::State::Stopping || stats.running > 0)
        return;
    stopDeadline.disarm();
    ++slotEpoch;
    retiring.clear();
    const bool failing = !failReason.isEmpty();
    setState(failing ? Group::State::Failed : Group::State::Stopped, failing ? failReason : QStringLiteral("shut down"));
    if (destroying)
        return;
    if (failing)
        detail::SignalScope::emitLater(q, &Group::gaveUp, failReason);
    detail::SignalScope::emitLater(q, &Group::stopped);
}

void GroupPrivate::watchdogTick()
{
    detail::SignalScope scope;
    if (heartbeatTimeout <= 0)
        return;
    const auto now = Clock::now();
    const auto limit = std::chrono::milliseconds(heartbeatTimeout);
    for (const auto &slot : positions) {
        if (!slot->core || slot->watchdogFired || slot->core->isStopRequested())
            continue;
        const Clock::time_point last{Clock::duration(slot->core->lastHeartbeatNs.load(std::memory_order_relaxed))};
        if (now - last <= limit)
            continue;
        qCWarning(lcGroup, "Group: worker %llu (generation %d) missed its heartbeat deadline (%d ms); stopping it",
                  slot->id, slot->generation, heartbeatTimeout);
        slot->watchdogFired = true;
        slot->armTimer(this, executor, now + std::chrono::milliseconds(shutdownTimeout));
        slot->core->requestStop(detail::StopCause::Fault); // its end is a failure, for its mailbox too
    }
}

int GroupPrivate::effectiveMaxRestarts() const
{
    if (maxRestarts >= 0)
        return maxRestarts;
    return q->supervisor() ? 0 : -1;
}

void GroupPrivate::startFromScratch()
{
    if (!executor) {
        executor = detail::Executor::current();
        executor->ref();
    }
    ++slotEpoch;
    positions.clear();
    retiring.clear();
    failReason.clear();
    NodePrivate::get(q)->failureCause.clear();
    setState(Group::State::Starting, QString());
    startWorkers();
}

namespace {

/*
    The group's worker threads, kept running after the group is gone while abandoned workers
    still live on them (found by stage-fuzz). An abandoned worker is often suspended on a foreign
    awaitable (a QTimer, a signal) that only its thread's event loop can resume: quitting that loop
    would leave the frame suspended forever, leaked with whatever it holds (a mailbox delivery: the
    message would be neither acknowledged nor put back). The keeper hears each such worker's late
    end, on the group's thread, and quits and deletes the threads after the last one.
*/
class AbandonedThreadKeeper final : public detail::WorkerListener
{
public:
    std::vector<QThread *> threads;
    int alive = 0;

    void workerEnded(const std::shared_ptr<detail::WorkerCore> &core, WorkerExit exit) override
    {
        core->listener = nullptr;
        qCInfo(lcGroup, "Group: abandoned worker %llu (generation %d) ended after all: %s", exit.id, exit.generation,
               qPrintable(exit.reason));
        if (--alive == 0)
            release();
    }
    // The group's thread ended before the report came (an application quitting right as the
    // worker ended): the worker has ended all the same.
    void workerEndDropped(const std::shared_ptr<detail::WorkerCore> &core, WorkerExit exit) override
    {
        workerEnded(core, std::move(exit));
    }

private:
    void release()
    {
        for (QThread *thread : threads) {
            thread->quit();
            if (thread == QThread::currentThread()) {
                // Dropped on this very thread (its group's thread had ended already): it cannot
                // join itself; it ends with the process.
                qCInfo(lcGroup, "Group: worker thread %s outlives its group's thread; leaked",
                       qPrintable(thread->objectName()));
                continue;
            }
            thread->wait();
            delete thread;
        }
        delete this;
    }
};

} // namespace

void GroupPrivate::stopThreads()
{
    // Every abandoned worker's late end is reported (logged), wherever it runs; the threads of
    // those that run on the group's threads are kept until they have ended.
    AbandonedThreadKeeper *keeper = nullptr;
    bool keepThreads = false;
    for (const auto &core : abandonedCores) {
        if (!keeper)
            keeper = new AbandonedThreadKeeper;
        core->listener = keeper; // its end is reported on this thread, by a posted job
        ++keeper->alive;
        keepThreads = keepThreads || std::find(threads.begin(), threads.end(), core->home) != threads.end();
    }
    abandonedCores.clear();
    if (keepThreads) {
        keeper->threads = std::move(threads);
        threads.clear();
        return;
    }
    for (QThread *thread : threads) {
        thread->quit();
        if (thread->wait(std::max(shutdownTimeout, 100))) {
            delete thread;
        } else {
            qCWarning(lcGroup, "Group: worker thread %s did not finish (an abandoned worker keeps it busy); leaked",
                      qPrintable(thread->objectName()));
        }
    }
    threads.clear();
}

// Group

Group::Group(QObject *parent) : Node(parent), d(std::make_unique<GroupPrivate>(this)) {}

Group::~Group()
{
    // What the jobs run below emit (other nodes' signals, its supervisor's childCountChanged())
    // goes out once the group is gone, from the event loop.
    detail::SignalScope scope(detail::SignalScope::InDestructor);
    d->destroying = true;
    beginDestruction(); // no signals from here on; a supervisor forgets this child
    if (d->state() == State::Starting || d->state() == State::Running || d->state() == State::Restarting)
        d->beginStop(std::chrono::milliseconds(d->shutdownTimeout), QStringLiteral("the group was destroyed"), false);
    if (d->stats.running > 0 && d->executor) {
        // A bounded wait that runs only Stage jobs (unwinding workers), not a nested event loop.
        // A worker of this group whose body is deleting the group cannot end before this
        // returns: it is not waited for.
        detail::WorkerCore *self = detail::currentWorker();
        const bool selfIsOurs = self && self->listener == d.get();
        const auto deadline = Clock::now() + std::chrono::milliseconds(d->shutdownTimeout);
        d->executor->runUntil([&] { return d->stats.running <= (selfIsOurs ? 1 : 0); }, deadline);
        if (selfIsOurs && self->tag) {
            // Not abandoned: it is unwinding right now, from the delete that is running.
            auto *slot = static_cast<GroupSlot *>(self->tag);
            qCInfo(lcGroup, "Group: worker %llu deleted its own group; it unwinds on its own", slot->id);
            self->tag = nullptr;
            self->listener = nullptr;
            slot->core.reset();
            --d->stats.running;
            ++d->stats.cancelled;
        }
    }
    d->abandonAllRunning();
    for (const auto &slot : d->positions)
        if (slot->core)
            slot->core->listener = nullptr;
    d->stopDeadline.disarm();
    d->positions.clear();
    d->retiring.clear();
    d->stopThreads();
    if (d->executor)
        d->executor->deref();
}

bool Group::spawnWith(WorkerFactory factory)
{
    detail::SignalScope scope;
    if (!d->checkThread("Group::spawn"))
        return false;
    if (!factory) {
        qCWarning(lcGroup, "Group::spawn: the factory is empty; ignored");
        return false;
    }
    if (d->factory) {
        qCWarning(lcGroup, "Group::spawn: the group already has a factory (one factory per group); ignored");
        return false;
    }
    if (d->state() != State::Idle) {
        qCWarning(lcGroup, "Group::spawn: the group has been shut down; ignored");
        return false;
    }
    d->factory = std::make_shared<const WorkerFactory>(std::move(factory));
    if (supervisor() && !supervisor()->isRunning())
        return true; // the supervisor starts it
    d->startFromScratch();
    return true;
}

bool Group::startRoot()
{
    detail::SignalScope scope;
    if (!d->factory) {
        qCWarning(lcGroup, "Group::start: the group has no factory (spawn() starts it the first time); ignored");
        return false;
    }
    if (isRunning() || state() == State::Stopping) {
        qCWarning(lcGroup, "Group::start: the group is %s already; ignored",
                  state() == State::Stopping ? "stopping" : "running");
        return false;
    }
    d->startFromScratch();
    return true;
}

void Group::shutdownRoot()
{
    (void)shutdown();
}

void Group::startNode()
{
    detail::SignalScope scope;
    if (!d->factory) {
        qCDebug(lcGroup) << this << "has no factory yet: it starts when spawn() is called";
        return;
    }
    if (isRunning() || state() == State::Stopping)
        return;
    d->startFromScratch();
}

void Group::stopNode(const QString &reason)
{
    detail::SignalScope scope;
    if (isRunning())
        d->beginStop(std::chrono::milliseconds(d->shutdownTimeout), reason, false);
}

detail::GroupShutdownAwaitable Group::shutdown(std::chrono::milliseconds timeout)
{
    detail::SignalScope scope;
    if (!d->checkThread("Group::shutdown"))
        return detail::GroupShutdownAwaitable(this);
    if (timeout.count() < 0)
        timeout = std::chrono::milliseconds(d->shutdownTimeout);
    switch (d->state()) {
    case State::Idle:
        d->setState(State::Stopped, QStringLiteral("shut down before it was spawned"));
        detail::SignalScope::emitLater(this, &Group::stopped);
        break;
    case State::Starting:
    case State::Running:
    case State::Restarting:
        d->beginStop(timeout, QStringLiteral("shut down"), false);
        break;
    case State::Stopping:
    case State::Stopped:
    case State::Failed:
        break;
    }
    return detail::GroupShutdownAwaitable(this);
}

int Group::size() const
{
    return d->size;
}

void Group::setSize(int size)
{
    detail::SignalScope scope;
    if (!d->checkThread("Group::setSize"))
        return;
    if (size < 0) {
        qCWarning(lcGroup, "Group::setSize: the size must be >= 0, got %d; ignored", size);
        return;
    }
    if (d->size == size)
        return;
    d->size = size;
    if (isRunning()) {
        const int current = int(d->positions.size());
        if (size > current) {
            d->addSlots(size - current);
        } else {
            while (int(d->positions.size()) > size) {
                auto slot = std::move(d->positions.back()); // the newest first
                d->positions.pop_back();
                d->retire(std::move(slot));
            }
        }
        d->updateRunningState();
    }
    detail::SignalScope::emitLater(this, &Group::sizeChanged, size);
}

RestartType Group::restartType() const
{
    return d->restartType;
}

void Group::setRestartType(RestartType type)
{
    if (d->restartType == type)
        return;
    d->restartType = type;
    emit restartTypeChanged(type);
}

Backoff Group::backoff() const
{
    return d->backoff;
}

void Group::setBackoff(const Backoff &backoff)
{
    if (d->backoff == backoff)
        return;
    d->backoff = backoff;
    emit backoffChanged(backoff);
}

int Group::maxRestarts() const
{
    return d->maxRestarts;
}

void Group::setMaxRestarts(int count)
{
    if (count < -1) {
        qCWarning(lcGroup, "Group::setMaxRestarts: the count must be >= 0 (or -1: unlimited), got %d; ignored", count);
        return;
    }
    if (d->maxRestarts == count)
        return;
    d->maxRestarts = count;
    d->intensity.clear();
    emit maxRestartsChanged(count);
}

int Group::restartPeriod() const
{
    return d->restartPeriod;
}

void Group::setRestartPeriod(int milliseconds)
{
    if (milliseconds <= 0) {
        qCWarning(lcGroup, "Group::setRestartPeriod: the period must be > 0 ms, got %d; ignored", milliseconds);
        return;
    }
    if (d->restartPeriod == milliseconds)
        return;
    d->restartPeriod = milliseconds;
    emit restartPeriodChanged(milliseconds);
}

int Group::threadCount() const
{
    return d->threadCount;
}

void Group::setThreadCount(int count)
{
    if (count < 0) {
        qCWarning(lcGroup, "Group::setThreadCount: the count must be >= 0, got %d; ignored", count);
        return;
    }
    if (d->factory) {
        qCWarning(lcGroup, "Group::setThreadCount: the placement is fixed once spawn() has been called; ignored");
        return;
    }
    if (d->threadCount == count)
        return;
    d->threadCount = count;
    emit threadCountChanged(count);
}

MailboxBase *Group::mailbox() const
{
    return d->mailbox.data();
}

void Group::setMailbox(MailboxBase *mailbox)
{
    if (d->mailbox == mailbox)
        return;
    d->mailbox = mailbox;
    emit mailboxChanged(mailbox);
}

int Group::recentRestarts() const
{
    return d->intensity.recent(detail::Clock::now(), std::chrono::milliseconds(d->restartPeriod));
}

StopMode Group::stopMode() const
{
    return d->stopMode;
}

void Group::setStopMode(StopMode mode)
{
    if (d->stopMode == mode)
        return;
    d->stopMode = mode;
    emit stopModeChanged(mode);
}

int Group::shutdownTimeout() const
{
    return d->shutdownTimeout;
}

void Group::setShutdownTimeout(int milliseconds)
{
    if (milliseconds < 0) {
        qCWarning(lcGroup, "Group::setShutdownTimeout: the timeout must be >= 0 ms, got %d; ignored", milliseconds);
        return;
    }
    if (d->shutdownTimeout == milliseconds)
        return;
    d->shutdownTimeout = milliseconds;
    emit shutdownTimeoutChanged(milliseconds);
}

int Group::heartbeatTimeout() const
{
    return d->heartbeatTimeout;
}

void Group::setHeartbeatTimeout(int milliseconds)
{
    if (milliseconds < 0) {
        qCWarning(lcGroup, "Group::setHeartbeatTimeout: the timeout must be >= 0 ms (0: off), got %d; ignored",
                  milliseconds);
        return;
    }
    if (d->heartbeatTimeout == milliseconds)
        return;
    d->heartbeatTimeout = milliseconds;
    if (milliseconds == 0)
        d->watchdog.stop();
    else if (isRunning())
        d->watchdog.start(std::max(1, milliseconds / 4));
    emit heartbeatTimeoutChanged(milliseconds);
}

GroupStatistics Group::statistics() const
{
    GroupStatistics s = d->stats;
    s.iterations = qint64(d->endedIterations);
    for (const auto &slot : d->positions)
        if (slot->core)
            s.iterations += qint64(slot->core->iterations.load(std::memory_order_relaxed));
    for (const auto &slot : d->retiring)
        if (slot->core)
            s.iterations += qint64(slot->core->iterations.load(std::memory_order_relaxed));
    return s;
}

int Group::running() const
{
    return d->stats.running;
}

qint64 Group::started() const
{
    return d->stats.started;
}

qint64 Group::completed() const
{
    return d->stats.completed;
}

qint64 Group::failed() const
{
    return d->stats.failed;
}

qint64 Group::cancelled() const
{
    return d->stats.cancelled;
}

qint64 Group::abandoned() const
{
    return d->stats.abandoned;
}

int Group::lingering() const
{
    return int(d->abandonedCores.size());
}

qint64 Group::restarted() const
{
    return d->stats.restarted;
}

qint64 Group::iterations() const
{
    return statistics().iterations;
}

} // namespace stage
