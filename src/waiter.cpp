#include "executor_p.h"
#include "worker_p.h"

#include <stage/detail/waiter.h>

namespace stage::detail {

namespace {
thread_local WorkerCore *t_currentWorker = nullptr;
} // namespace

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

CurrentWorkerScope::CurrentWorkerScope(WorkerCore *worker) noexcept : m_previous(t_currentWorker)
{
    t_currentWorker = worker;
}

CurrentWorkerScope::~CurrentWorkerScope()
{
    t_currentWorker = m_previous;
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
