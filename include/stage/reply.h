#pragma once

#include <stage/detail/spinmutex.h>
#include <stage/detail/waiter.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>

namespace stage {

template<typename T>
class Reply;
template<typename T>
class ReplyReceiver;

namespace detail {

STAGE_EXPORT void warnReplyTwice();
[[noreturn]] STAGE_EXPORT void throwBrokenReply();
[[noreturn]] STAGE_EXPORT void throwReplyTimeout(std::chrono::milliseconds timeout);
[[noreturn]] STAGE_EXPORT void throwReplyTaken();

template<typename T>
class ReplyState
{
public:
    enum class Status { Pending, Ready, Broken, Taken };

    class ReplyWaiter final : public TimedWaiter
    {
    public:
        explicit ReplyWaiter(std::shared_ptr<ReplyState> s) : state(std::move(s)) {}
        std::shared_ptr<ReplyState> state;

    private:
        void disarm() noexcept override
        {
            TimedWaiter::disarm();
            std::lock_guard lock(state->mutex);
            if (state->waiter == this) {
                state->waiter = nullptr;
                deref();
            }
        }
    };

    /* Sender side: Ready with a value, or Broken. False if already settled. */
    bool settle(std::optional<T> &&value)
    {
        ReplyWaiter *wake = nullptr;
        {
            std::lock_guard lock(mutex);
            if (status != Status::Pending)
                return false;
            if (value) {
                this->value = std::move(value);
                status = Status::Ready;
            } else {
                status = Status::Broken;
            }
            wake = std::exchange(waiter, nullptr);
        }
        if (wake) {
            if (wake->claim())
                wake->publish(Waiter::Outcome::Value);
            wake->deref();
        }
        return true;
    }

    SpinMutex mutex;
    Status status = Status::Pending;
    std::optional<T> value;
    ReplyWaiter *waiter = nullptr; // holds a reference
};

template<typename T>
class ReplyAwaitable : public AwaitableBase
{
    using State = ReplyState<T>;

public:
    ReplyAwaitable(std::shared_ptr<State> state, std::chrono::milliseconds timeout)
        : m_state(std::move(state)), m_timeout(timeout)
    {}

    bool await_ready()
    {
        if (AwaitableBase::await_ready())
            return true;
        std::lock_guard lock(m_state->mutex);
        return m_state->status != State::Status::Pending;
    }

    bool await_suspend(std::coroutine_handle<> handle)
    {
        markSuspended();
        m_waiter = makeWaiter<typename State::ReplyWaiter>(m_state);
        m_waiter->suspend(handle);
        {
            std::lock_guard lock(m_state->mutex);
            if (m_waiter->isClaimed())
                return true; // stopped meanwhile
            if (m_state->status != State::Status::Pending || m_state->waiter) {
                // Settled by now, or awaited twice at once: await_resume says; unless the
                // worker's stop (which claims without this lock) won since the look above.
                return !m_waiter->claim();
            }
            m_waiter->ref();
            m_state->waiter = m_waiter.get();
        }
        if (m_timeout.count() >= 0)
            m_waiter->armTimeout(m_timeout);
        return true;
    }

    T await_resume()
    {
        throwIfStoppedBeforeSuspending();
        if (m_waiter) {
            m_waiter->rethrowIfFailed();
            if (m_waiter->outcome() == Waiter::Outcome::TimedOut)
                throwReplyTimeout(m_timeout);
        }
        std::lock_guard lock(m_state->mutex);
        switch (m_state->status) {
        case State::Status::Ready:
            m_state->status = State::Status::Taken;
            return std::move(*m_state->value);
        case State::Status::Broken:
            throwBrokenReply();
        case State::Status::Taken:
        case State::Status::Pending: // awaited twice at once
            break;
        }
        throwReplyTaken();
    }

private:
    std::shared_ptr<State> m_state;
    std::chrono::milliseconds m_timeout;
    WaiterRef<typename State::ReplyWaiter> m_waiter;
};

} // namespace detail

/*!
    The sending half of a one-shot reply: put it in a request, and the worker answers through it.

    Thread: send() from any thread, once. Destroying an unanswered Reply breaks it: the receiver
    gets stage::BrokenReply at once, which is how a client learns that the worker holding its
    request died (the seed's "retry until answered"). Move-only.
*/
template<typename T>
class Reply
{
public:
    Reply(Reply &&) noexcept = default;
    Reply &operator=(Reply &&other) noexcept
    {
        if (this != &other) {
            breakIfPending();
            m_state = std::move(other.m_state);
        }
        return *this;
    }
    ~Reply() { breakIfPending(); }

    /*! Sends \a value. Returns false, with a warning under stage.mailbox, if already sent. */
    bool send(T value)
    {
        if (!m_state || !m_state->settle(std::optional<T>(std::move(value)))) {
            detail::warnReplyTwice();
            return false;
        }
        m_state.reset();
        return true;
    }
    /*! True until sent (or moved from). */
    bool isPending() const noexcept { return m_state != nullptr; }

private:
    template<typename U>
    friend std::pair<Reply<U>, ReplyReceiver<U>> makeReply();
    explicit Reply(std::shared_ptr<detail::ReplyState<T>> state) : m_state(std::move(state)) {}
    void breakIfPending() noexcept
    {
        if (m_state)
            m_state->settle(std::nullopt);
        m_state.reset();
    }

    std::shared_ptr<detail::ReplyState<T>> m_state;
};

/*!
    The receiving half of a one-shot reply: `co_await receiver` or `co_await receiver.wait(timeout)`.

    Thread: awaited from a coroutine; resumes on its own thread.
    Cancellation: a cancellation point; a reply that arrives after a cancelled wait is kept and can
    still be awaited.
    Errors: stage::BrokenReply if the Reply was destroyed unanswered; stage::TimeoutError if
    wait() ran out of time; stage::InvalidOperation if the value was already taken (awaited twice).
*/
template<typename T>
class ReplyReceiver
{
public:
    ReplyReceiver(ReplyReceiver &&) noexcept = default;
    ReplyReceiver &operator=(ReplyReceiver &&) noexcept = default;

    detail::ReplyAwaitable<T> wait(std::chrono::milliseconds timeout) const
    {
        return detail::ReplyAwaitable<T>(m_state, timeout);
    }
    detail::ReplyAwaitable<T> operator co_await() const
    {
        return detail::ReplyAwaitable<T>(m_state, std::chrono::milliseconds(-1));
    }

private:
    template<typename U>
    friend std::pair<Reply<U>, ReplyReceiver<U>> makeReply();
    explicit ReplyReceiver(std::shared_ptr<detail::ReplyState<T>> state) : m_state(std::move(state)) {}

    std::shared_ptr<detail::ReplyState<T>> m_state;
};

/*! A connected reply pair: `auto [reply, answer] = stage::makeReply<int>();` */
template<typename T>
std::pair<Reply<T>, ReplyReceiver<T>> makeReply()
{
    auto state = std::make_shared<detail::ReplyState<T>>();
    return {Reply<T>(state), ReplyReceiver<T>(state)};
}

} // namespace stage
