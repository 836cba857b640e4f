#include "executor_p.h"

#include <stage/sleep.h>

namespace stage::detail {

// The timer map does not own its jobs: this one lives as long as its waiter, which the awaitable
// keeps while the frame is suspended, and disarm() takes it out of the map first.
struct TimedWaiter::Timer final : Job
{
    explicit Timer(TimedWaiter *w) : waiter(w) {}
    void run() noexcept override
    {
        armed = false; // the executor erased the entry
        if (waiter->claim())
            waiter->resumeHere(Outcome::TimedOut); // from the executor's own timer event
    }
    void drop() noexcept override {}

    TimedWaiter *waiter;
    Executor::TimerHandle handle;
    bool armed = false;
};

void TimedWaiter::armTimeout(std::chrono::milliseconds duration)
{
    if (isClaimed())
        return; // settled meanwhile (a stop)
    if (!m_timer)
        m_timer = new Timer(this);
    m_timer->handle = home()->addTimer(Clock::now() + duration, m_timer);
    m_timer->armed = true;
}

TimedWaiter::~TimedWaiter()
{
    delete m_timer; // disarmed by then, or its thread (and timer map) is gone
}

void TimedWaiter::disarm() noexcept
{
    if (m_timer && m_timer->armed) {
        home()->removeTimer(m_timer->handle);
        m_timer->armed = false;
    }
}

namespace {
class SleepWaiter final : public TimedWaiter
{};
} // namespace

void SleepAwaitable::await_suspend(std::coroutine_handle<> handle)
{
    markSuspended();
    auto *waiter = new SleepWaiter;
    m_waiter = WaiterRef<Waiter>(waiter);
    waiter->suspend(handle);
    if (m_duration <= std::chrono::milliseconds::zero()) {
        if (waiter->claim()) // a yield: straight to the ready queue, no timer
            waiter->publish(Waiter::Outcome::Value);
    } else {
        waiter->armTimeout(m_duration);
    }
}

void SleepAwaitable::await_resume()
{
    throwIfStoppedBeforeSuspending();
    m_waiter->rethrowIfFailed();
}

} // namespace stage::detail
