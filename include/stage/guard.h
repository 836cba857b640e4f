#pragma once

#include <stage/detail/waiter.h>

#include <QCoro/QCoroTask>

#include <cstring>
#include <type_traits>
#include <variant>

namespace stage {
namespace detail {

// The awaiter that `co_await` in a QCoro::Task would use for an operand of type T.
template<typename T>
auto awaiterOf(T &&operand)
{
    if constexpr (requires { std::forward<T>(operand).operator co_await(); })
        return std::forward<T>(operand).operator co_await();
    else if constexpr (requires { operator co_await(std::forward<T>(operand)); })
        return operator co_await(std::forward<T>(operand));
    else
        return std::forward<T>(operand);
}

template<typename A>
using GuardResult = decltype(awaiterOf(std::declval<QCoro::detail::TaskPromiseBase &>().await_transform(std::declval<A>()))
                                 .await_resume());

// The coroutine frame of a QCoro 0.8 task (its only member is the handle), or null if empty.
template<typename T>
void *frameOf(const QCoro::Task<T> &task) noexcept
{
    static_assert(sizeof(QCoro::Task<T>) == sizeof(std::coroutine_handle<>),
                  "QCoro::Task layout changed: revisit stage::detail::frameOf()");
    void *address;
    std::memcpy(&address, static_cast<const void *>(&task), sizeof(address));
    return address;
}

template<typename R>
class GuardWaiter final : public Waiter
{
public:
    using Stored = std::conditional_t<std::is_void_v<R>, std::monostate, std::remove_cvref_t<R>>;
    std::optional<Stored> value;
};

// Awaits \a awaitable in a frame of its own and settles \a waiter with the outcome; a late
// outcome (after a stop won) is dropped. The frame owns the awaitable, so the awaited operation
// may outlive the guarded coroutine safely.
template<typename R, typename A>
QCoro::Task<> runGuarded(WaiterRef<GuardWaiter<R>> waiter, A awaitable)
{
    // A child task belongs to the worker while it runs, even after a foreign resumption.
    void *childFrame = nullptr;
    if constexpr (QCoro::detail::isTask_v<A>) {
        if (!awaitable.isReady()) {
            childFrame = frameOf(awaitable);
            registerFrame(childFrame, waiter->worker());
        }
    }
    struct Unregister
    {
        void *frame;
        ~Unregister() { unregisterFrame(frame); }
    } unregister{childFrame};
    try {
        if constexpr (std::is_void_v<R>) {
            co_await std::move(awaitable);
            if (waiter->claim()) {
                waiter->value.emplace();
                waiter->publish(Waiter::Outcome::Value);
            }
        } else {
            auto result = co_await std::move(awaitable);
            if (waiter->claim()) {
                waiter->value.emplace(std::move(result));
                waiter->publish(Waiter::Outcome::Value);
            }
        }
    } catch (...) {
        waiter->settleError(std::current_exception());
    }
}

template<typename A, bool StopsEarly>
class GuardAwaitable : public AwaitableBase
{
    using R = GuardResult<A>;

public:
    explicit GuardAwaitable(A awaitable) : m_awaitable(std::move(awaitable)) {}

    bool await_ready() const noexcept
    {
        if constexpr (StopsEarly)
            return AwaitableBase::await_ready();
        else
            return false; // a child must end before its parent goes on, even when stopping
    }

    void await_suspend(std::coroutine_handle<> handle)
    {
        markSuspended();
        m_waiter = makeWaiter<GuardWaiter<R>>();
        m_waiter->suspend(handle, StopsEarly);
        // Started while this coroutine is suspended: an outcome that is ready at once is posted.
        runGuarded<R, A>(m_waiter, std::move(m_awaitable));
    }

    R await_resume()
    {
        throwIfStoppedBeforeSuspending();
        m_waiter->rethrowIfFailed();
        if constexpr (!StopsEarly) {
            // A child shares the worker's token: it has ended; report the stop to the parent too.
            if (isStopRequested(m_waiter->worker()))
                throw Cancelled();
        }
        if constexpr (!std::is_void_v<R>)
            return std::move(*m_waiter->value);
    }

private:
    A m_awaitable;
    WaiterRef<GuardWaiter<R>> m_waiter;
};

} // namespace detail

/*!
    Makes any awaitable that is not a task (a QCoro awaitable such as a QNetworkReply *, a
    QTimer *, a QProcess, a third-party awaiter) a Stage cancellation point, and returns its
    result. In QCoro 0.8 qCoro(obj, &Class::signal) returns a QCoro::Task: use stage::signal()
    for signals.

    Thread: the coroutine resumes on the thread that awaited, whatever thread completes
    \a awaitable (use it to await qCoro() on an object of another thread).
    Cancellation: on stop the coroutine resumes at once with stage::Cancelled; \a awaitable is
    moved into a frame of its own that keeps waiting, and its outcome is discarded. So \a awaitable
    must not refer to the guarded coroutine's locals. For a child coroutine use stage::child(),
    which waits for the child to unwind.
    Errors: rethrows what \a awaitable throws.
*/
template<typename A>
auto guard(A &&awaitable)
{
    static_assert(!QCoro::detail::isTask_v<std::remove_cvref_t<A>>,
                  "stage::guard: use stage::child() for a QCoro::Task: a child must unwind before its parent");
    return detail::GuardAwaitable<std::remove_cvref_t<A>, true>(std::forward<A>(awaitable));
}

/*!
    Awaits a child coroutine \a task and returns its result.

    A child started inside a worker belongs to that worker: its own Stage awaitables are
    cancellation points of the same stop token.
    Thread: the parent resumes on the thread that awaited, even if the child finished elsewhere.
    Cancellation: on stop the parent resumes only after the child has ended (it unwinds at its
    next Stage awaitable), then throws stage::Cancelled; so the child may safely use references to
    the parent's locals. A child stuck outside any Stage awaitable keeps its parent waiting: the
    worker is then reported abandoned, which is the truth.
    Errors: rethrows the child's exception.
*/
template<typename T>
auto child(QCoro::Task<T> &&task)
{
    return detail::GuardAwaitable<QCoro::Task<T>, false>(std::move(task));
}

} // namespace stage
