#pragma once

#include <stage/detail/waiter.h>

#include <chrono>

namespace stage {
namespace detail {

class STAGE_EXPORT SleepAwaitable : public AwaitableBase
{
public:
    explicit SleepAwaitable(std::chrono::milliseconds duration) noexcept : m_duration(duration) {}
    void await_suspend(std::coroutine_handle<> handle);
    void await_resume();

private:
    std::chrono::milliseconds m_duration;
    WaiterRef<Waiter> m_waiter;
};

} // namespace detail

/*!
    Suspends the calling coroutine for \a duration (a zero or negative duration still yields once
    to the event loop), driven by one precise timer per thread, not one QTimer per call.

    Thread: resumes on the thread that awaited it; that thread must run an event loop.
    Cancellation: a cancellation point. If the current worker is asked to stop while sleeping (or
    was already), the coroutine resumes at once with stage::Cancelled.
    Errors: none besides stage::Cancelled.

    \code
    co_await stage::sleep(250ms);
    \endcode
*/
inline detail::SleepAwaitable sleep(std::chrono::milliseconds duration) noexcept
{
    return detail::SleepAwaitable(duration);
}

} // namespace stage
