#pragma once

#include <stage/detail/spinmutex.h>
#include <stage/detail/waiter.h>

#include <chrono>
#include <concepts>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <variant>

namespace stage {

template<typename T>
class Reply;
template<typename T>
class ReplyReceiver;

namespace detail {

struct ReplyAccess;

STAGE_EXPORT void warnReplyTwice();
[[noreturn]] STAGE_EXPORT void throwBrokenReply();
[[noreturn]] STAGE_EXPORT void throwReplyTimeout(std::chrono::milliseconds timeout);
[[noreturn]] STAGE_EXPORT void throwReplyTaken();

template<typename T>
class ReplyState
{
public:
    enum class Status { Pending, Ready, Broken, Failed, Taken };

    class ReplyWaiter final : public TimedWaiter
    {
    public:
        explicit ReplyWaiter(std::shared_ptr<ReplyState> s) : state(std::move(s)) {}
        std::shared_ptr<ReplyState> state;

    private:
        void disarm() noexcept override
        {
            TimedWaiter::disarm();
            state->detach(this);
        }
    };

    /* Home thread, from a waiter's disarm(): forgets \a waiter if it is still the one listed. */
    void detach(TimedWaiter *listed) noexcept
    {
        std::lock_guard lock(mutex);
        if (waiter == listed) {
            waiter = nullptr;
            listed->deref();
        }
    }

    /* Receiver side, once settled: the value (Ready becomes Taken), or what an await throws. */
    T take()
    {
        std::exception_ptr failure;
        {
            std::lock_guard lock(mutex);
            switch (status) {
            case Status::Ready:
                status = Status::Taken;
                return std::move(*value);
            case Status::Broken:
                throwBrokenReply();
            case Status::Failed: // stays Failed: every later await throws it too
                failure = error;
                break;
            case Status::Taken:
            case Status::Pending: // awaited twice at once
                throwReplyTaken();
            }
        }
        std::rethrow_exception(failure);
    }

    /* Sender side: Ready with a value, or Broken. False if already settled. */
    bool settle(std::optional<T> &&value)
    {
        TimedWaiter *wake = nullptr;
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
        wakeUp(wake);
        return true;
    }

    /* Sender side: Failed with \a failure, which every await then throws. False if already settled. */
    bool fail(std::exception_ptr failure)
    {
        TimedWaiter *wake = nullptr;
        {
            std::lock_guard lock(mutex);
            if (status != Status::Pending)
                return false;
            error = std::move(failure);
            status = Status::Failed;
            wake = std::exchange(waiter, nullptr);
        }
        wakeUp(wake);
        return true;
    }

    SpinMutex mutex;
    Status status = Status::Pending;
    std::optional<T> value;
    std::exception_ptr error;      // Failed
    TimedWaiter *waiter = nullptr; // holds a reference

private:
    static void wakeUp(TimedWaiter *wake) noexcept
    {
        if (wake) {
            if (wake->claim())
                wake->publish(Waiter::Outcome::Value);
            wake->deref();
        }
    }
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
        return m_state->take();
    }

private:
    std::shared_ptr<State> m_state;
    std::chrono::milliseconds m_timeout;
    WaiterRef<typename State::ReplyWaiter> m_waiter;
};

} // namespace detail

/*!
    The sending half of a one-shot reply: put it in a request, and the worker answers through it.

    Thread: send() and fail() from any thread, once (the first of them settles the reply).
    Destroying an unanswered Reply breaks it: the receiver gets stage::BrokenReply at once, which
    is how a client learns that the worker holding its request died (the seed's "retry until
    answered"). A request dead-lettered by a mailbox fails its Reply with stage::DeadLettered at
    once, if the message type lets the mailbox reach it (see stage::failReplies()). Move-only.
*/
template<typename T>
class Reply
{
public:
    /*! Moves the reply; \a other is left empty (not pending), and answering it does nothing. */
    Reply(Reply &&) noexcept = default;
    /*!
        Breaks this reply if it is still pending (its receiver gets stage::BrokenReply), then takes \a
        other's.
    */
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
    /*!
        Fails the reply with \a error: the receiver's await throws a copy of it (every await, now
        and later). \a E is stage::BrokenReply or a subclass such as stage::DeadLettered, so that
        "retry until answered" loops see it. Returns false, silently, if the reply was already
        sent or failed (or moved from): a reply answered before its request was dead-lettered
        keeps its answer. Thread: any.
    */
    template<typename E>
        requires std::derived_from<E, BrokenReply>
    bool fail(const E &error)
    {
        if (!m_state)
            return false;
        const bool failed = m_state->fail(std::make_exception_ptr(error));
        m_state.reset();
        return failed;
    }
    /*! True until sent or failed (or moved from). */
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
    Errors: stage::BrokenReply if the Reply was destroyed unanswered; stage::DeadLettered (a
    BrokenReply) if the request carrying it was dead-lettered, or whatever Reply::fail() gave;
    stage::TimeoutError if wait() ran out of time; stage::InvalidOperation if the value was
    already taken (awaited twice). A broken or failed reply throws at every await, without
    suspending once it is known.
*/
template<typename T>
class ReplyReceiver
{
public:
    /*! Moves the receiver; the moved-from one must not be awaited. */
    ReplyReceiver(ReplyReceiver &&) noexcept = default;
    /*! Move assignment; the moved-from receiver must not be awaited. */
    ReplyReceiver &operator=(ReplyReceiver &&) noexcept = default;

    /*!
        Awaits the reply for at most \a timeout: the value, or stage::TimeoutError when it runs out.
        Other errors and cancellation as described for the class.
    */
    detail::ReplyAwaitable<T> wait(std::chrono::milliseconds timeout) const
    {
        return detail::ReplyAwaitable<T>(m_state, timeout);
    }
    /*!
        Awaits the reply without a deadline (co_await receiver). Errors and cancellation as described for
        the class.
    */
    detail::ReplyAwaitable<T> operator co_await() const
    {
        return detail::ReplyAwaitable<T>(m_state, std::chrono::milliseconds(-1));
    }

private:
    template<typename U>
    friend std::pair<Reply<U>, ReplyReceiver<U>> makeReply();
    friend struct detail::ReplyAccess;
    explicit ReplyReceiver(std::shared_ptr<detail::ReplyState<T>> state) : m_state(std::move(state)) {}

    std::shared_ptr<detail::ReplyState<T>> m_state;
};

namespace detail {
// For the QFuture forms (stage/qfuture.h), which wait on the state without a coroutine.
struct ReplyAccess
{
    template<typename T>
    static const std::shared_ptr<ReplyState<T>> &stateOf(const ReplyReceiver<T> &receiver) noexcept
    {
        return receiver.m_state;
    }
};
} // namespace detail

/*! A connected reply pair: `auto [reply, answer] = stage::makeReply<int>();` */
template<typename T>
std::pair<Reply<T>, ReplyReceiver<T>> makeReply()
{
    auto state = std::make_shared<detail::ReplyState<T>>();
    return {Reply<T>(state), ReplyReceiver<T>(state)};
}

/*!
    A request envelope: a payload and the Reply that answers it. Put it in a mailbox (alone, in a
    std::variant or a std::optional) and a dead-lettered request fails its caller with
    stage::DeadLettered at once, with no code of yours (see stage::failReplies()).

    \code
    stage::Mailbox<stage::Request<Add, int>> requests;
    // consumer:  auto r = co_await requests.receive();  r->reply.send(r->payload.a + r->payload.b);
    auto [request, answer] = stage::makeRequest<int>(Add{1, 2});
    co_await requests.send(std::move(request));
    int sum = co_await answer.wait(2s);   // BrokenReply, DeadLettered, TimeoutError
    \endcode

    An aggregate: `stage::Request<Q, R>{payload, std::move(reply)}` works too. Move-only (its Reply is).
*/
template<typename Q, typename R>
struct Request
{
    /*! The request itself (the consumer reads it). */
    Q payload;
    /*! Where the consumer sends the answer; broken (or failed with DeadLettered) if it never does. */
    Reply<R> reply;

    /* Fails the reply, and any the payload carries itself. */
    friend void stageFailReplies(Request &request, const DeadLettered &why)
    {
        failReplies(request.payload, why);
        request.reply.fail(why);
    }
};

/*! A request for \a payload and the receiver of its answer: `auto [request, answer] = stage::makeRequest<int>(Add{1, 2});` */
template<typename R, typename Q>
std::pair<Request<std::decay_t<Q>, R>, ReplyReceiver<R>> makeRequest(Q &&payload)
{
    auto [reply, receiver] = makeReply<R>();
    return {Request<std::decay_t<Q>, R>{std::forward<Q>(payload), std::move(reply)}, std::move(receiver)};
}

// The replies a message carries: the customization point of stage::failReplies(). The overloads
// for Stage's own types live here, in namespace stage, where argument-dependent lookup always
// looks (through the DeadLettered argument); a message type of yours adds its own beside it.

template<typename T>
void failReplies(T &message, const DeadLettered &why);

/*! Fails \a reply with \a why (stage::DeadLettered): the customization point for a Reply itself. A reply already sent keeps its answer. */
template<typename R>
void stageFailReplies(Reply<R> &reply, const DeadLettered &why)
{
    reply.fail(why);
}

/*! Fails the replies of the value \a message holds, if any. */
template<typename U>
void stageFailReplies(std::optional<U> &message, const DeadLettered &why)
{
    if (message)
        failReplies(*message, why);
}

/*! Fails the replies of the alternative \a message holds (none if it is valueless). */
template<typename... Us>
void stageFailReplies(std::variant<Us...> &message, const DeadLettered &why)
{
    if (!message.valueless_by_exception())
        std::visit([&why](auto &alternative) { failReplies(alternative, why); }, message);
}

/*! Fails the replies of the object \a message owns, if any. */
template<typename U, typename D>
void stageFailReplies(std::unique_ptr<U, D> &message, const DeadLettered &why)
{
    if (message)
        failReplies(*message, why);
}

/*!
    True for a message type whose replies stage::failReplies() can reach: stage::Reply<R>,
    stage::Request<Q, R>, a std::optional, std::variant or std::unique_ptr of such types, and
    any type with a stageFailReplies(T &, const stage::DeadLettered &) found by argument-dependent
    lookup.
*/
template<typename T>
concept CarriesReplies = requires(T &message, const DeadLettered &why) { stageFailReplies(message, why); };

/*!
    Fails, with \a why, every reply that \a message carries and that is still pending; a type
    that does not stage::CarriesReplies is left alone. A mailbox calls it when it dead-letters a
    message, so that a client awaiting the answer gets stage::DeadLettered at once; the actor
    layer's asks use the same hook.

    A message type opts in with a function found by argument-dependent lookup, best a hidden
    friend, which fails each reply it holds (and recurses into members that are messages):

    \code
    struct Add {
        int a, b;
        stage::Reply<int> reply;
        friend void stageFailReplies(Add &add, const stage::DeadLettered &why) { add.reply.fail(why); }
    };
    \endcode

    Contract of the hook: fail replies (Reply::fail(), stage::failReplies() on members) and nothing
    else. It is called with the mailbox's dead letters locked, on the thread that settles the dead
    letter (see Mailbox::takeDeadLetters()); it must not use the mailbox, block, or throw (an
    exception is swallowed). The message itself stays intact and inspectable; only its replies
    are spent, so replaying a dead letter later cannot answer the original caller.
*/
template<typename T>
void failReplies(T &message, const DeadLettered &why)
{
    if constexpr (CarriesReplies<T>)
        stageFailReplies(message, why);
}

} // namespace stage
