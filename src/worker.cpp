#include "worker_p.h"

#include <stage/guard.h>

#include <QtCore/QThread>

#include <cstring>
#include <typeinfo>
#include <mutex>
#include <unordered_map>

namespace stage {

quint64 Worker::id() const noexcept
{
    return d->id;
}

int Worker::generation() const noexcept
{
    return d->generation;
}

std::stop_token Worker::stopToken() const noexcept
{
    return d->stopSource.get_token();
}

bool Worker::isStopRequested() const noexcept
{
    return d->isStopRequested();
}

void Worker::throwIfStopRequested() const
{
    if (d->isStopRequested())
        throw Cancelled();
}

QThread *Worker::thread() const noexcept
{
    return d->home;
}

void Worker::heartbeat() noexcept
{
    d->lastHeartbeatNs.store(detail::Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    d->iterations.store(d->iterations.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

Worker *Worker::current() noexcept
{
    detail::WorkerCore *core = detail::currentWorker();
    return core ? &core->worker : nullptr;
}

namespace detail {

namespace {

// A coroutine that runs from its start to its end on its own and frees its frame.
struct Detached
{
    struct promise_type
    {
        Detached get_return_object() noexcept { return {}; }
        std::suspend_never initial_suspend() noexcept { return {}; }
        std::suspend_never final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); } // runBody catches everything
    };
};

// QCoro 0.8's Task has no way to tell an empty task (no coroutine) from a finished one, and
// awaiting an empty one dereferences a null handle. Its only member is the handle.
WorkerExit failure(const std::exception_ptr &error)
{
    WorkerExit exit;
    exit.kind = WorkerExit::Kind::Failed;
    exit.error = error;
    exit.reason = describeException(error);
    return exit;
}

// QCoro 0.8's Task<void> promise keeps the body's exception in a private member that only a
// rethrow reads (co_await task). A stop unwinds every idle worker with stage::Cancelled, so that
// second throw (~0.8 us here) is most of what a mass stop costs (W4's shutdown, W6). The mirror
// reads the member instead; a self-test at first use checks it against a real promise, and if
// it does not match (another QCoro layout), Stage falls back to the rethrow.
struct PromiseMirror
{
    std::vector<std::coroutine_handle<>> awaiting;
    std::atomic<bool> destroyHandle;
    std::exception_ptr exception;
};
using VoidPromise = QCoro::detail::TaskPromise<void>;
static_assert(sizeof(PromiseMirror) == sizeof(VoidPromise), "QCoro's TaskPromise<void> layout changed");

VoidPromise &promiseOf(void *frame) noexcept
{
    return std::coroutine_handle<VoidPromise>::from_address(frame).promise();
}

const std::exception_ptr &storedException(void *frame) noexcept
{
    return reinterpret_cast<const PromiseMirror &>(promiseOf(frame)).exception;
}

QCoro::Task<> throwsInt()
{
    throw 42;
    co_return;
}

bool mirrorWorks() noexcept
{
    static const bool works = [] {
        QCoro::Task<> task = throwsInt(); // eager: finished, with the exception stored
        void *frame = frameOf(task);
        if (!frame || !std::coroutine_handle<>::from_address(frame).done())
            return false;
        const auto &mirror = reinterpret_cast<const PromiseMirror &>(promiseOf(frame));
        const std::exception_ptr &e = mirror.exception;
        if (!e || e.__cxa_exception_type() == nullptr || *e.__cxa_exception_type() != typeid(int)
            || !mirror.awaiting.empty())
            return false;
        try {
            promiseOf(frame).result(); // must rethrow that same object
        } catch (...) {
            return std::current_exception() == e;
        }
        return false;
    }();
    return works;
}

// Awaits the body without rethrowing what it threw.
struct BodyAwaiter
{
    void *frame;
    bool await_ready() const noexcept { return std::coroutine_handle<>::from_address(frame).done(); }
    void await_suspend(std::coroutine_handle<> awaiting) { promiseOf(frame).addAwaitingCoroutine(awaiting); }
    void await_resume() const noexcept {}
};

// Classifies the body's end. Only kind, reason and error live in the frame that every idle
// worker keeps, not a whole WorkerExit.
Detached runBody(std::shared_ptr<WorkerCore> core, QCoro::Task<> task)
{
    void *frame = frameOf(task);
    registerFrame(frame, core.get());
    WorkerExit::Kind kind = WorkerExit::Kind::Completed;
    QString reason;
    std::exception_ptr error;
    if (mirrorWorks()) {
        co_await BodyAwaiter{frame};
        error = storedException(frame);
    } else {
        try {
            co_await task;
        } catch (...) {
            error = std::current_exception();
        }
    }
    if (!error) {
        if (core->isStopRequested()) {
            kind = WorkerExit::Kind::Cancelled;
            reason = QStringLiteral("returned after a stop request");
        }
    } else if (*error.__cxa_exception_type() == typeid(Cancelled) && core->isStopRequested()) {
        kind = WorkerExit::Kind::Cancelled; // the common stop: no rethrow to tell what it is
        reason = QStringLiteral("cancelled");
        error = nullptr;
    } else {
        kind = WorkerExit::Kind::Failed;
        try {
            std::rethrow_exception(error);
        } catch (const Cancelled &) {
            if (core->isStopRequested()) {
                kind = WorkerExit::Kind::Cancelled; // a subclass of Cancelled
                reason = QStringLiteral("cancelled");
                error = nullptr;
            } else {
                reason = QStringLiteral("stage::Cancelled was thrown without a stop request");
            }
        } catch (const std::exception &e) {
            reason = QString::fromUtf8(e.what());
        } catch (...) {
            reason = describeException(error);
        }
    }
    unregisterFrame(frame); // before the frame is freed and its address reused
    WorkerExit exit;
    exit.kind = kind;
    exit.reason = std::move(reason);
    exit.error = std::move(error);
    for (const auto &hook : std::exchange(core->endHooks, {}))
        hook(exit);
    core->end(std::move(exit));
}

class StartJob final : public Job
{
public:
    explicit StartJob(std::shared_ptr<WorkerCore> core) : m_core(std::move(core)) {}
    void run() noexcept override
    {
        m_core->runOnHome();
        delete this;
    }
    void drop() noexcept override
    {
        WorkerExit exit;
        exit.kind = WorkerExit::Kind::Failed;
        exit.reason = QStringLiteral("the worker's thread ended before the worker started");
        m_core->end(std::move(exit));
        delete this;
    }

private:
    std::shared_ptr<WorkerCore> m_core;
};

class EndJob final : public Job
{
public:
    EndJob(std::shared_ptr<WorkerCore> core, WorkerExit exit) : m_core(std::move(core)), m_exit(std::move(exit)) {}
    void run() noexcept override
    {
        if (m_core->listener)
            m_core->listener->workerEnded(m_core, std::move(m_exit));
        delete this;
    }

private:
    std::shared_ptr<WorkerCore> m_core;
    WorkerExit m_exit;
};

} // namespace

QString describeException(const std::exception_ptr &error)
{
    try {
        std::rethrow_exception(error);
    } catch (const std::exception &e) {
        return QString::fromUtf8(e.what());
    } catch (const QString &s) {
        return s;
    } catch (const char *s) {
        return QString::fromUtf8(s);
    } catch (const std::string &s) {
        return QString::fromStdString(s);
    } catch (int value) {
        return QStringLiteral("an exception of type int: %1").arg(value);
    } catch (...) {
        return QStringLiteral("an exception not derived from std::exception");
    }
}

WorkerCore::WorkerCore(quint64 id, int generation, std::shared_ptr<const WorkerFactory> factory, QThread *home,
                       WorkerListener *listener)
    : id(id), generation(generation), home(home), factory(std::move(factory)), owner(Executor::current()),
      listener(listener)
{
    owner->ref();
}

WorkerCore::~WorkerCore()
{
    owner->deref();
}

quint64 WorkerCore::nextId() noexcept
{
    static std::atomic<quint64> counter{0};
    return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}

void WorkerCore::launch(bool deferred)
{
    if (home == owner->thread() && !deferred) {
        runOnHome();
        return;
    }
    Executor *target = home == owner->thread() ? (owner->ref(), owner) : Executor::acquire(home);
    if (!target) {
        WorkerExit exit;
        exit.kind = WorkerExit::Kind::Failed;
        exit.reason = QStringLiteral("the worker's thread has finished");
        end(std::move(exit));
        return;
    }
    target->post(new StartJob(shared_from_this()));
    target->deref();
}

void WorkerCore::runOnHome() noexcept
{
    if (isStopRequested()) {
        WorkerExit exit;
        exit.kind = WorkerExit::Kind::Cancelled;
        exit.reason = QStringLiteral("stopped before it started");
        end(std::move(exit));
        return;
    }
    CurrentWorkerScope scope(this);
    QCoro::Task<> task;
    try {
        task = (*factory)(worker); // the body runs up to its first suspension here
    } catch (...) {
        end(failure(std::current_exception()));
        return;
    }
    if (!frameOf(task)) {
        WorkerExit exit;
        exit.kind = WorkerExit::Kind::Failed;
        exit.reason = QStringLiteral("the factory returned an empty QCoro::Task");
        end(std::move(exit));
        return;
    }
    runBody(shared_from_this(), std::move(task));
}

void WorkerCore::end(WorkerExit exit) noexcept
{
    exit.id = id;
    exit.generation = generation;
    owner->post(new EndJob(shared_from_this(), std::move(exit)));
}

} // namespace detail
} // namespace stage
