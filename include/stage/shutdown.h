#pragma once

#include <stage/guard.h>

#include <QCoro/QCoroTask>

#include <optional>
#include <type_traits>
#include <utility>

namespace stage {
namespace detail {

// Runs the handler that \a makeHandler builds outside any worker, so that the stop already
// requested does not cancel its awaitables, and settles \a waiter when it has ended. The frame
// keeps \a makeHandler (and so a capturing lambda's captures) alive until then.
template<typename H>
QCoro::Task<> runShielded(WaiterRef<GuardWaiter<void>> waiter, H makeHandler)
{
    try {
        QCoro::Task<> handler;
        {
            CurrentWorkerScope shielded(nullptr); // its awaitables see no worker, hence no stop
            handler = makeHandler();
        }
        co_await std::move(handler);
        if (waiter->claim()) {
            waiter->value.emplace();
            waiter->publish(Waiter::Outcome::Value);
        }
    } catch (...) {
        waiter->settleError(std::current_exception());
    }
}

// Awaits the shielded handler: not a cancellation point (the stop is what started it); the
// awaiting frame resumes on its home thread, as its worker again.
template<typename H>
class ShieldedAwaitable
{
public:
    explicit ShieldedAwaitable(H makeHandler) : m_makeHandler(std::move(makeHandler)) {}
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> handle)
    {
        m_waiter = makeWaiter<GuardWaiter<void>>();
        m_waiter->suspend(handle, /*listenToStop=*/false);
        runShielded<H>(m_waiter, std::move(m_makeHandler));
    }
    void await_resume() { m_waiter->rethrowIfFailed(); }

private:
    H m_makeHandler;
    WaiterRef<GuardWaiter<void>> m_waiter;
};

template<typename T>
using GracefulResult = std::conditional_t<std::is_void_v<T>, bool, std::optional<T>>;

} // namespace detail

/*!
    Runs \a work and returns its value; if the worker is asked to stop first, runs the shutdown
    handler that \a makeHandler builds and returns an empty result (the seed's graceful_shutdown).
    For a \c QCoro::Task<void> \a work the result is \c true when the work completed, \c false
    when the handler ran.

    \code
    QCoro::Task<> uploader(stage::Worker &worker, Queue queue)
    {
        co_await stage::gracefulShutdown(uploadForever(queue), [queue]() -> QCoro::Task<> {
            co_await flushPending(queue);       // still has the worker's resources
        });
    }
    \endcode

    \a makeHandler is a callable returning a \c QCoro::Task<> (a task starts eagerly, so the
    handler is built only when it is needed); it is kept alive until the handler has ended, so a
    capturing lambda coroutine is safe here.

    Every worker that is asked to stop runs the handler, including one asked before it reached
    this call (\a work then ends at its first Stage awaitable and the handler runs at once).
    Limit: the worker is known to this call through the thread's current worker, which a plain
    (foreign) QCoro co_await loses (README, "Workers and cancellation"): call it from the body
    itself or after Stage awaitables, or wrap foreign awaitables in stage::guard().
    Thread: the handler starts on, and the caller resumes on, the worker's home thread.
    Cancellation: \a work is a child (stage::child()): on stop it unwinds first, then the handler
    runs with the stop hidden from it (its Stage awaitables are not cancelled), bounded by the
    owner's shutdown timeout: a handler that outlasts it gets its worker reported abandoned.
    After the handler, the caller's next Stage awaitable throws stage::Cancelled as usual.
    Errors: an exception from \a work (other than the stop) or from the handler propagates.
*/
template<typename T, typename H>
QCoro::Task<detail::GracefulResult<T>> gracefulShutdown(QCoro::Task<T> work, H makeHandler)
{
    static_assert(std::is_invocable_r_v<QCoro::Task<>, H &>,
                  "stage::gracefulShutdown: the handler is a callable returning QCoro::Task<>");
    detail::WorkerCore *const worker = detail::currentWorker();
    try {
        if constexpr (std::is_void_v<T>) {
            co_await child(std::move(work));
            co_return true;
        } else {
            co_return std::optional<T>(co_await child(std::move(work)));
        }
    } catch (const Cancelled &) {
        if (!detail::isStopRequested(worker))
            throw;
    }
    co_await detail::ShieldedAwaitable<H>(std::move(makeHandler));
    if constexpr (std::is_void_v<T>)
        co_return false;
    else
        co_return std::nullopt;
}

} // namespace stage
