#include "signalqueue_p.h"
#include "worker_p.h"

#include <QtCore/QThread>
#include <QtCore/QTimer>

#include <algorithm>
#include <mutex>
#include <vector>

namespace stage {

class WorkerHandlePrivate final : public detail::WorkerListener
{
public:
    explicit WorkerHandlePrivate(WorkerHandle *q) : q(q)
    {
        stopTimer.setSingleShot(true);
        QObject::connect(&stopTimer, &QTimer::timeout, q, [this]() { abandonCurrent(); });
    }

    void workerEnded(const std::shared_ptr<detail::WorkerCore> &ended, WorkerExit exit) override;
    bool launch(QThread *where);
    void setState(WorkerHandle::State next);
    void armStopTimer();
    void abandonCurrent();

    WorkerHandle *const q;
    std::shared_ptr<const WorkerFactory> factory;
    QThread *thread = nullptr;
    std::shared_ptr<detail::WorkerCore> core; // the current run
    std::mutex coreMutex;                     // guards `core` against requestStop() from other threads
    std::vector<std::shared_ptr<detail::WorkerCore>> abandoned;
    WorkerHandle::State state = WorkerHandle::State::Idle;
    quint64 id = detail::WorkerCore::nextId();
    int generation = -1;
    int stopTimeout = 5000;
    WorkerExit lastExit;
    QTimer stopTimer;
};

void WorkerHandlePrivate::setState(WorkerHandle::State next)
{
    if (state == next)
        return;
    const bool wasRunning = q->isRunning();
    state = next;
    const bool running = q->isRunning();
    // Queued until the operation in progress has finished (see SignalScope).
    detail::SignalScope::emitLater(q, &WorkerHandle::stateChanged, next);
    if (wasRunning != running)
        detail::SignalScope::emitLater(q, &WorkerHandle::runningChanged, running);
}

bool WorkerHandlePrivate::launch(QThread *where)
{
    ++generation;
    auto next = detail::WorkerCore::create(id, generation, factory, where, this);
    {
        std::lock_guard lock(coreMutex);
        core = next;
    }
    setState(WorkerHandle::State::Running);
    detail::SignalScope::emitLater(q, &WorkerHandle::started, generation);
    next->launch();
    return true;
}

void WorkerHandlePrivate::armStopTimer()
{
    detail::SignalScope scope;
    if (core && !stopTimer.isActive()) {
        setState(WorkerHandle::State::Stopping);
        stopTimer.start(stopTimeout);
    }
}

void WorkerHandlePrivate::abandonCurrent()
{
    detail::SignalScope scope;
    if (!core)
        return;
    qCWarning(lcWorker, "WorkerHandle: worker %llu (generation %d) did not stop within %d ms; abandoned",
              id, core->generation, stopTimeout);
    WorkerExit exit;
    exit.kind = WorkerExit::Kind::Abandoned;
    exit.reason = QStringLiteral("did not stop within %1 ms").arg(stopTimeout);
    exit.id = id;
    exit.generation = core->generation;
    abandoned.push_back(core); // still listened to: its late end is reported
    {
        std::lock_guard lock(coreMutex);
        core.reset();
    }
    lastExit = exit;
    setState(WorkerHandle::State::Finished);
    detail::SignalScope::emitLater(q, &WorkerHandle::abandonedCountChanged, int(abandoned.size()));
    detail::SignalScope::emitLater(q, &WorkerHandle::finished, exit);
}

void WorkerHandlePrivate::workerEnded(const std::shared_ptr<detail::WorkerCore> &ended, WorkerExit exit)
{
    detail::SignalScope scope;
    auto late = std::find(abandoned.begin(), abandoned.end(), ended);
    if (late != abandoned.end()) {
        abandoned.erase(late);
        qCInfo(lcWorker, "WorkerHandle: abandoned worker %llu (generation %d) ended after all: %s", id,
               exit.generation, qPrintable(exit.reason));
        detail::SignalScope::emitLater(q, &WorkerHandle::abandonedCountChanged, int(abandoned.size()));
        detail::SignalScope::emitLater(q, &WorkerHandle::abandonedWorkerFinished, exit);
        return;
    }
    if (ended != core)
        return;
    stopTimer.stop();
    {
        std::lock_guard lock(coreMutex);
        core.reset();
    }
    if (exit.kind == WorkerExit::Kind::Failed)
        qCInfo(lcWorker, "WorkerHandle: worker %llu (generation %d) failed: %s", id, exit.generation,
               qPrintable(exit.reason));
    lastExit = exit;
    setState(WorkerHandle::State::Finished);
    detail::SignalScope::emitLater(q, &WorkerHandle::finished, exit);
}

WorkerHandle::WorkerHandle(QObject *parent) : QObject(parent), d(std::make_unique<WorkerHandlePrivate>(this)) {}

WorkerHandle::~WorkerHandle()
{
    detail::SignalScope::forget(this); // its queued signals are dropped
    // Nobody is left to hear how the frames end; they still end on their own.
    if (d->core) {
        d->core->listener = nullptr;
        d->core->requestStop();
    }
    for (const auto &core : d->abandoned)
        core->listener = nullptr;
}

bool WorkerHandle::startWith(WorkerFactory factory, QThread *thread)
{
    if (QThread::currentThread() != this->thread()) {
        qCWarning(lcWorker, "WorkerHandle::start: called from a thread other than the handle's; ignored");
        return false;
    }
    if (!factory) {
        qCWarning(lcWorker, "WorkerHandle::start: the factory is empty; ignored");
        return false;
    }
    if (d->core) {
        qCWarning(lcWorker, "WorkerHandle::start: worker %llu is still running; ignored", d->id);
        return false;
    }
    if (thread && thread->isFinished()) {
        qCWarning(lcWorker, "WorkerHandle::start: the target thread has finished; ignored");
        return false;
    }
    detail::SignalScope scope;
    d->factory = std::make_shared<const WorkerFactory>(std::move(factory));
    d->thread = thread ? thread : this->thread();
    return d->launch(d->thread);
}

bool WorkerHandle::restart()
{
    if (QThread::currentThread() != thread()) {
        qCWarning(lcWorker, "WorkerHandle::restart: called from a thread other than the handle's; ignored");
        return false;
    }
    if (!d->factory) {
        qCWarning(lcWorker, "WorkerHandle::restart: never started; ignored");
        return false;
    }
    if (d->core) {
        qCWarning(lcWorker, "WorkerHandle::restart: worker %llu is still running; ignored", d->id);
        return false;
    }
    detail::SignalScope scope;
    return d->launch(d->thread);
}

void WorkerHandle::requestStop()
{
    {
        std::lock_guard lock(d->coreMutex);
        if (!d->core)
            return;
        d->core->requestStop();
    }
    if (QThread::currentThread() == thread())
        d->armStopTimer();
    else
        QMetaObject::invokeMethod(this, [this]() { d->armStopTimer(); }, Qt::QueuedConnection);
}

WorkerHandle::State WorkerHandle::state() const
{
    return d->state;
}

bool WorkerHandle::isRunning() const
{
    return d->state == State::Running || d->state == State::Stopping;
}

int WorkerHandle::generation() const
{
    return d->generation;
}

quint64 WorkerHandle::id() const
{
    return d->id;
}

WorkerExit WorkerHandle::lastExit() const
{
    return d->lastExit;
}

int WorkerHandle::stopTimeout() const
{
    return d->stopTimeout;
}

void WorkerHandle::setStopTimeout(int milliseconds)
{
    if (milliseconds < 0) {
        qCWarning(lcWorker, "WorkerHandle::setStopTimeout: the timeout must be >= 0, got %d; ignored", milliseconds);
        return;
    }
    if (d->stopTimeout == milliseconds)
        return;
    d->stopTimeout = milliseconds;
    emit stopTimeoutChanged(milliseconds);
}

int WorkerHandle::abandonedCount() const
{
    return int(d->abandoned.size());
}

} // namespace stage
