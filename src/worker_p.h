#pragma once

//  W A R N I N G
//  Not part of the Stage API. We mean it.

#include "executor_p.h"

#include <stage/worker.h>

#include <functional>
#include <memory>
#include <vector>
#include <stop_token>

namespace stage::detail {

class WorkerCore;

/* Who is told when a run ends: a WorkerHandle, later a Group. Called on the owner's thread. */
class WorkerListener
{
public:
    virtual void workerEnded(const std::shared_ptr<WorkerCore> &core, WorkerExit exit) = 0;

protected:
    ~WorkerListener() = default;
};

/*
    One run of a worker. Shared by its owner and by the frame that runs the body (which keeps it,
    and the factory, alive until the body has ended, whatever happened to the owner).
*/
class WorkerCore : public std::enable_shared_from_this<WorkerCore>
{
public:
    WorkerCore(quint64 id, int generation, std::shared_ptr<const WorkerFactory> factory, QThread *home,
               WorkerListener *listener);
    ~WorkerCore();
    WorkerCore(const WorkerCore &) = delete;
    WorkerCore &operator=(const WorkerCore &) = delete;

    static quint64 nextId() noexcept;

    bool isStopRequested() const noexcept { return stopSource.stop_requested(); }
    void requestStop() noexcept { stopSource.request_stop(); }

    /* Owner thread: runs the body now (if home is the owner's thread and not \a deferred: up to
       its first suspension) or posts its start to the home thread. The end is always reported
       later, by a posted job. */
    void launch(bool deferred = false);

    Worker worker{this};
    const quint64 id;
    const int generation;
    std::stop_source stopSource;
    QThread *const home;
    const std::shared_ptr<const WorkerFactory> factory;
    Executor *const owner; // referenced
    WorkerListener *listener; // owner thread only; cleared when the listener goes away
    void *tag = nullptr;      // the listener's bookkeeping (a Group's slot); owner thread only
    std::atomic<qint64> lastHeartbeatNs{0}; // Clock nanoseconds of the last Worker::heartbeat()
    std::atomic<quint64> iterations{0};     // Worker::heartbeat() calls; written by the worker only
    // Called with the exit when the body has ended, before the owner hears of it. Added and run
    // by the body's own execution (e.g. a Delivery dead-lettered while the frame unwinds).
    std::vector<std::function<void(const WorkerExit &)>> endHooks;

    /* Home thread. */
    void runOnHome() noexcept;
    /* Any thread: reports \a exit to the owner. */
    void end(WorkerExit exit) noexcept;
};

/* Describes a caught exception: what() for std::exception, the value for a few common types. */
QString describeException(const std::exception_ptr &error);

} // namespace stage::detail
