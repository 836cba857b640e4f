#pragma once

#include <stage/detail/waiter.h>

#include <QtCore/QRunnable>
#include <QtCore/QThreadPool>

#include <functional>
#include <type_traits>

namespace stage {
namespace detail {

template<typename F>
constexpr bool takesStopToken = std::is_invocable_v<F &, std::stop_token>;

template<typename F>
using OffloadResult = typename std::conditional_t<takesStopToken<F>, std::invoke_result<F &, std::stop_token>,
                                         std::invoke_result<F &>>::type;

template<typename R>
class OffloadWaiter final : public Waiter
{
public:
    using Stored = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
    std::optional<Stored> value;
};

template<typename F, typename R>
class OffloadRunnable final : public QRunnable
{
public:
    OffloadRunnable(F &&function, WaiterRef<OffloadWaiter<R>> waiter, std::stop_token token)
        : m_function(std::move(function)), m_waiter(std::move(waiter)), m_token(std::move(token))
    {
        setAutoDelete(true);
    }

    void run() override
    {
        if (m_waiter->isClaimed())
            return; // cancelled before it got a pool thread: do not run it at all
        try {
            if constexpr (std::is_void_v<R>) {
                call();
                if (m_waiter->claim()) {
                    m_waiter->value.emplace();
                    m_waiter->publish(Waiter::Outcome::Value);
                }
            } else {
                R result = call();
                if (m_waiter->claim()) {
                    m_waiter->value.emplace(std::move(result));
                    m_waiter->publish(Waiter::Outcome::Value);
                }
            }
        } catch (...) {
            m_waiter->settleError(std::current_exception());
        }
    }

private:
    decltype(auto) call()
    {
        if constexpr (takesStopToken<F>)
            return std::invoke(m_function, m_token);
        else
            return std::invoke(m_function);
    }

    F m_function;
    WaiterRef<OffloadWaiter<R>> m_waiter;
    std::stop_token m_token;
};

template<typename F>
class OffloadAwaitable : public AwaitableBase
{
    using R = OffloadResult<F>;

public:
    OffloadAwaitable(F function, QThreadPool *pool) : m_function(std::move(function)), m_pool(pool) {}

    void await_suspend(std::coroutine_handle<> handle)
    {
        markSuspended();
        m_waiter = makeWaiter<OffloadWaiter<R>>();
        m_waiter->suspend(handle);
        m_pool->start(new OffloadRunnable<F, R>(std::move(m_function), m_waiter,
                                                stopTokenOf(m_waiter->worker())));
    }

    R await_resume()
    {
        throwIfStoppedBeforeSuspending();
        m_waiter->rethrowIfFailed();
        if constexpr (takesStopToken<F>) {
            // The function may have seen the stop and returned early, beating the stop callback:
            // its (partial) result is discarded as documented.
            if (isStopRequested(m_waiter->worker()))
                throw Cancelled();
        }
        if constexpr (!std::is_void_v<R>)
            return std::move(*m_waiter->value);
    }

private:
    F m_function;
    QThreadPool *m_pool;
    WaiterRef<OffloadWaiter<R>> m_waiter;
};

} // namespace detail

/*!
    Runs \a function on \a pool (default: QThreadPool::globalInstance()) and returns its result,
    for CPU-bound or blocking work that must not stall the home thread's event loop.

    If \a function accepts a std::stop_token it receives the current worker's token and can stop
    early by polling it.
    Thread: \a function runs on a pool thread; the coroutine resumes on the thread that awaited.
    Cancellation: a cancellation point. On stop the coroutine resumes at once with stage::Cancelled;
    a function that has not started yet is not run, one that is running is not interrupted (only
    its stop_token says so) and its result is discarded.
    Errors: an exception thrown by \a function is rethrown in the coroutine, as itself.
*/
template<typename F>
detail::OffloadAwaitable<std::decay_t<F>> offload(F &&function, QThreadPool *pool = QThreadPool::globalInstance())
{
    return detail::OffloadAwaitable<std::decay_t<F>>(std::forward<F>(function), pool);
}

} // namespace stage
