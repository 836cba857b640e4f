#pragma once

//  W A R N I N G
//  Not part of the Stage API. We mean it.

#include "policy_p.h"
#include "signalqueue_p.h"
#include "worker_p.h"

#include <stage/detail/pool.h>
#include <stage/group.h>
#include <stage/mailbox.h>

#include <QtCore/QPointer>
#include <QtCore/QTimer>

#include <deque>
#include <vector>

QT_BEGIN_NAMESPACE
class QThread;
QT_END_NAMESPACE

namespace stage {

namespace detail {

/* A Job armed on its executor's timer, that knows whether it is armed; fire() says what it does. */
class TimerJob : public Job
{
public:
    ~TimerJob() override { disarm(); }

    void arm(Executor *executor, Clock::time_point deadline)
    {
        disarm();
        m_executor = executor;
        m_handle = executor->addTimer(deadline, this);
        m_armed = true;
    }
    void disarm()
    {
        if (m_armed) {
            m_executor->removeTimer(m_handle);
            m_armed = false;
        }
    }
    bool isArmed() const { return m_armed; }

protected:
    virtual void fire() noexcept = 0;

private:
    void run() noexcept final
    {
        m_armed = false; // the executor erased the entry
        fire();
    }
    void drop() noexcept final {}

    Executor *m_executor = nullptr;
    Executor::TimerHandle m_handle;
    bool m_armed = false;
};

/* A TimerJob that calls a member of its owner. */
template<typename Owner, void (Owner::*Fire)()>
class TimerSlot final : public TimerJob
{
public:
    explicit TimerSlot(Owner *owner) : m_owner(owner) {}

private:
    void fire() noexcept override { (m_owner->*Fire)(); }

    Owner *m_owner;
};

} // namespace detail

class GroupPrivate;

/* One worker position of a group: survives restarts, keeps the failure streak. */
struct GroupSlot;

/* A GroupSlot's timer (a restart's backoff or a stop deadline): allocated by its first arm(). */
class SlotTimer final : public detail::TimerJob
{
public:
    SlotTimer(GroupPrivate *group, GroupSlot *slot) : m_group(group), m_slot(slot) {}

private:
    void fire() noexcept override; // m_group->onSlotTimer(m_slot)

    GroupPrivate *m_group;
    GroupSlot *m_slot;
};

/* One worker position of a group: survives restarts, keeps the failure streak. Small: a group
   may have 100,000 of them. */
struct GroupSlot
{
    explicit GroupSlot(int index);

    // From the pool: a group starting many workers allocates a slot for each.
    static void *operator new(std::size_t bytes) { return detail::poolAllocate(bytes); }
    static void operator delete(void *block, std::size_t bytes) noexcept { detail::poolFree(block, bytes); }

    void armTimer(GroupPrivate *group, detail::Executor *executor, detail::Clock::time_point deadline)
    {
        if (!timer)
            timer = std::make_unique<SlotTimer>(group, this);
        timer->arm(executor, deadline);
    }
    void disarmTimer()
    {
        if (timer)
            timer->disarm();
    }

    const quint64 id;                // the worker id, kept across restarts
    detail::Clock::time_point startedAt;
    std::shared_ptr<detail::WorkerCore> core; // the live frame, or null
    std::unique_ptr<SlotTimer> timer; // most slots never arm one
    const int index;                 // creation order; picks the home thread
    int generation = -1;
    int streak = 0;                  // consecutive restarts without a healthy run
    bool retiring = false;           // removed by setSize(): never restarted
    bool done = false;               // ended for good (its restart type says so)
    bool watchdogFired = false;      // this run missed its heartbeat: its end is a failure
    bool inBackoff = false;          // the timer waits for a restart (else: for a stop deadline)
};

class GroupPrivate final : public detail::WorkerListener
{
public:
    explicit GroupPrivate(Group *q);

    void workerEnded(const std::shared_ptr<detail::WorkerCore> &core, WorkerExit exit) override;

    bool checkThread(const char *function) const;
    void updateRunningState();

    void startWorkers();
    void probeStart();
    void onStartProbe(quint64 epoch);
    void onLocalStartProbe(quint64 epoch);
    void addSlots(int count);
    void launch(GroupSlot *slot, detail::Clock::time_point now);
    /* Emits workerFinished(exit) (if connected) and decides the slot's future: after the slots
       have run when the caller's scope is the outermost, so that they may delete, resize or stop
       the group first. */
    void announceThenDecide(GroupSlot *slot, const WorkerExit &exit);
    bool isLiveSlot(const GroupSlot *slot, quint64 id, int generation) const;
    void decide(GroupSlot *slot, const WorkerExit &exit);
    void logFailure(const WorkerExit &exit);
    void retire(std::unique_ptr<GroupSlot> slot);
    void eraseRetired(GroupSlot *slot);
    void beginStop(std::chrono::milliseconds timeout, const QString &reason, bool failing);
    void maybeFinishStop();
    void abandon(GroupSlot *slot);
    void abandonAllRunning();
    void onStopDeadline();
    void onSlotTimer(GroupSlot *slot);
    void watchdogTick();
    QThread *homeFor(const GroupSlot *slot) const;
    void stopThreads();
    void startFromScratch();
    int effectiveMaxRestarts() const;
    Group::State state() const { return q->state(); }
    void setState(Group::State next, const QString &reason) { q->setState(next, reason); }
    void markDirty() { q->markDirty(); }

    Group *const q;
    detail::Executor *executor = nullptr; // the group's thread; set at spawn
    std::shared_ptr<const WorkerFactory> factory;
    std::vector<std::unique_ptr<GroupSlot>> positions;    // the active positions, oldest first
    std::vector<std::unique_ptr<GroupSlot>> retiring; // removed by setSize, still unwinding
    std::vector<std::shared_ptr<detail::WorkerCore>> abandonedCores; // may still end one day
    std::vector<QThread *> threads;
    detail::RestartIntensity intensity;
    detail::TimerSlot<GroupPrivate, &GroupPrivate::onStopDeadline> stopDeadline{this};
    QTimer watchdog;

    QString failReason; // set when giving up: the stop then ends in Failed
    int size = 1;
    int nextSlotIndex = 0;
    quint64 slotEpoch = 0; // changes whenever a slot may have been freed
    quint64 startEpoch = 0; // probeStart() calls: a probe of an earlier start is stale
    int startProbes = 0;    // probes of this start still to come back: Starting until none
    RestartType restartType = RestartType::Transient;
    Backoff backoff;
    int maxRestarts = -1;
    int restartPeriod = 5000;
    int threadCount = 0;
    int shutdownTimeout = 5000;
    int heartbeatTimeout = 0;
    StopMode stopMode = StopMode::Unwind;
    QPointer<MailboxBase> mailbox; // informational (views)
    bool destroying = false;
    detail::Clock::time_point logWindowStart;
    int logLinesInWindow = 0;
    qint64 logSuppressed = 0;

    GroupStatistics stats; // running, started, completed, failed, cancelled, abandoned, restarted
    quint64 endedIterations = 0; // heartbeats of runs that have ended
};

} // namespace stage
