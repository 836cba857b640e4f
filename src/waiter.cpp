#include "executor_p.h"
#include "worker_p.h"

#include <stage/detail/waiter.h>

#include <mutex>
#include <unordered_map>

namespace stage::detail {

namespace {
// initial-exec: a direct %fs access instead of a __tls_get_addr call per use (5% of W3).
[[gnu::tls_model("initial-exec")]] thread_local WorkerCore *t_currentWorker = nullptr;
// True while Stage itself runs a segment (a start or a resumption): the current worker is then
// known, even when it is null (a plain coroutine), and no frame lookup is needed.
[[gnu::tls_model("initial-exec")]] thread_local bool t_contextKnown = false;

// Frames may end on another thread than the one that registered them (a foreign awaitable may
// resume them anywhere), so one map for the process, under a mutex; it is touched once at each
// start and end of a body or child, and looked up only when a Stage awaitable has no context.
std::mutex g_framesMutex;
std::unordered_map<void *, WorkerCore *> &frames()
{
    static auto *map = new std::unordered_map<void *, WorkerCore *>; // leaked: used at exit
    return *map;
}
} // namespace

void registerFrame(void *frame, WorkerCore *worker) noexcept
{
    if (!frame || !worker)
        return;
    std::lock_guard lock(g_framesMutex);
    frames()[frame] = worker;
}

void unregisterFrame(void *frame) noexcept
{
    if (!frame)
        return;
    std::lock_guard lock(g_framesMutex);
    frames().erase(frame);
}

WorkerCore *workerOfFrame(void *frame) noexcept
{
    std::lock_guard lock(g_framesMutex);
    auto it = frames().find(frame);
    return it == frames().end() ? nullptr : it->second;
}

WorkerCore *currentWorker() noexcept
{
    return t_currentWorker;
}

bool isStopRequested(const WorkerCore *worker) noexcept
{
    return worker && worker->isStopRequested();
}

std::stop_token stopTokenOf(const WorkerCore *worker) noexcept
{
    return worker ? worker->stopSource.get_token() : std::stop_token();
}

CurrentWorkerScope::CurrentWorkerScope(WorkerCore *worker) noexcept
    : m_previous(t_currentWorker), m_previousKnown(t_contextKnown)
{
    t_currentWorker = worker;
    t_contextKnown = true;
}

CurrentWorkerScope::~CurrentWorkerScope()
{
    t_currentWorker = m_previous;
    t_contextKnown = m_previousKnown;
}

Waiter::Waiter() noexcept : m_worker(currentWorker()) {}

Waiter::~Waiter()
{
    if (m_home)
        m_home->deref();
}

void Waiter::suspend(std::coroutine_handle<> handle, bool listenToStop)
{
    Q_ASSERT(!m_handle);
    m_handle = handle;
    if (!m_worker && !t_contextKnown) // resumed by a foreign awaitable: the frame may be a worker's
        m_worker = workerOfFrame(handle.address());
    m_home = Executor::current();
    m_home->ref();
    if (listenToStop && m_worker)
        m_onStop.emplace(m_worker->stopSource.get_token(), OnStop{this});
}

void Waiter::OnStop::operator()() noexcept
{
    if (waiter->claim())
        waiter->publish(Outcome::Cancelled);
}

void Waiter::publish(Outcome outcome) noexcept
{
    Q_ASSERT(isClaimed() && m_home);
    m_outcome = outcome;
    ref(); // the reference run() or drop() releases
    m_home->post(this);
}

void Waiter::resumeHere(Outcome outcome) noexcept
{
    Q_ASSERT(isClaimed() && m_home && m_home->isCurrent());
    m_outcome = outcome;
    ref();
    run();
}

bool Waiter::settleError(std::exception_ptr error) noexcept
{
    if (!claim())
        return false;
    m_error = std::move(error);
    publish(Outcome::Error);
    return true;
}

void Waiter::rethrowIfFailed() const
{
    switch (m_outcome) {
    case Outcome::Cancelled:
        throw Cancelled();
    case Outcome::Error:
        std::rethrow_exception(m_error);
    case Outcome::None:
    case Outcome::Value:
    case Outcome::TimedOut:
        break;
    }
}

void Waiter::run() noexcept
{
    disarm();
    // Waits, if the stop callback is still returning on another thread after losing the race.
    m_onStop.reset();
    {
        CurrentWorkerScope scope(m_worker);
        m_handle.resume();
    }
    deref();
}

void Waiter::drop() noexcept
{
    // The home thread has ended: the frame can never resume.
    deref();
}

} // namespace stage::detail
