#include "executor_p.h"

#include <stage/sleep.h>

namespace stage::detail {

namespace {

class SleepWaiter final : public Waiter
{
public:
    void arm(std::chrono::milliseconds duration)
    {
        m_timer = home()->addTimer(Clock::now() + duration, &m_fire);
        m_armed = true;
    }

private:
    // The timer map does not own its jobs: this one lives exactly as long as its waiter, which the
    // awaitable keeps while the frame is suspended, and disarm() takes it out of the map first.
    struct Fire final : Job
    {
        SleepWaiter *waiter;
        explicit Fire(SleepWaiter *w) : waiter(w) {}
        void run() noexcept override
        {
            waiter->m_armed = false; // the executor erased the entry
            if (waiter->claim())
                waiter->resumeHere(Outcome::Value); // from the executor's own timer event
        }
        void drop() noexcept override {}
    };

    void disarm() noexcept override
    {
        if (m_armed) {
            home()->removeTimer(m_timer);
            m_armed = false;
        }
    }

    Fire m_fire{this};
    Executor::TimerHandle m_timer;
    bool m_armed = false;
};

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
    } else if (!waiter->isClaimed()) {
        waiter->arm(m_duration);
    }
}

void SleepAwaitable::await_resume()
{
    throwIfStoppedBeforeSuspending();
    m_waiter->rethrowIfFailed();
}

} // namespace stage::detail
