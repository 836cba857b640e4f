#pragma once

// QFuture forms of Stage's asynchronous results, for code without coroutines: replies, requests,
// shutdowns and a worker's end; and stage::then(), a context continuation that survives its
// context. (stage/future.h is the other direction: a coroutine awaiting a QFuture.)

#include <stage/mailbox.h>
#include <stage/reply.h>
#include <stage/sleep.h>
#include <stage/worker.h>

#include <QtCore/QFuture>
#include <QtCore/QMetaObject>
#include <QtCore/QObject>
#include <QtCore/QPromise>
#include <QtCore/QThread>

#include <QCoro/QCoroTask>

#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

namespace stage {

class Node;

namespace detail {

/*
    Opened around the eager start of the coroutine behind a future: the coroutine belongs to no
    worker (a stop of the caller's worker must not cancel it), and it knows it runs inside the
    call (it then settles its promise from the event loop instead, so that a future is never
    finished when the call returns).
*/
class STAGE_EXPORT FutureStart
{
public:
    FutureStart() noexcept;
    ~FutureStart();
    FutureStart(const FutureStart &) = delete;
    FutureStart &operator=(const FutureStart &) = delete;

    /* True while a FutureStart is open on this thread. */
    static bool isInside() noexcept;

private:
    CurrentWorkerScope m_scope;
};

template<typename T>
void settle(QPromise<T> &promise, std::optional<T> &value, const std::exception_ptr &error)
{
    if (error)
        promise.setException(error);
    else
        promise.addResult(std::move(*value));
    promise.finish();
}

template<typename T>
QCoro::Task<> settleLater(QPromise<T> promise, std::exception_ptr error)
{
    if (FutureStart::isInside()) // still inside the call: settle from the event loop
        co_await stage::sleep(std::chrono::milliseconds(0));
    promise.setException(error);
    promise.finish();
}

/*
    A reply awaited without a coroutine: listed on the reply's state like a coroutine's waiter,
    it settles \a promise on the thread that called start(), from that thread's executor (never
    inside the call, never on the replier's thread): with the value, the reply's failure
    (BrokenReply, DeadLettered, ...) or, after \a timeout (negative: none), TimeoutError. If that
    thread ends first, the promise is destroyed unfinished: the future is cancelled.
*/
template<typename T>
class ReplyPromise final : public TimedWaiter
{
public:
    static void start(std::shared_ptr<ReplyState<T>> state, QPromise<T> promise, std::chrono::milliseconds timeout)
    {
        auto *waiter = new ReplyPromise(std::move(state), std::move(promise), timeout);
        waiter->bindHome();
        bool listed = false;
        {
            std::lock_guard lock(waiter->m_state->mutex);
            if (waiter->m_state->status == ReplyState<T>::Status::Pending && !waiter->m_state->waiter) {
                waiter->ref(); // the state's
                waiter->m_state->waiter = waiter;
                listed = true;
            }
        }
        if (!listed) { // settled already (or awaited elsewhere: take() says so)
            if (waiter->claim())
                waiter->publish(Outcome::Value);
        } else if (timeout.count() >= 0) {
            waiter->armTimeout(timeout);
        }
        waiter->deref();
    }

private:
    ReplyPromise(std::shared_ptr<ReplyState<T>> state, QPromise<T> promise, std::chrono::milliseconds timeout)
        : m_state(std::move(state)), m_promise(std::move(promise)), m_timeout(timeout)
    {}

    void disarm() noexcept override
    {
        TimedWaiter::disarm();
        m_state->detach(this);
    }
    void fire() noexcept override
    {
        try {
            if (outcome() == Outcome::TimedOut)
                throwReplyTimeout(m_timeout);
            m_promise.addResult(m_state->take());
        } catch (...) {
            m_promise.setException(std::current_exception());
        }
        m_promise.finish();
    }

    std::shared_ptr<ReplyState<T>> m_state;
    QPromise<T> m_promise;
    std::chrono::milliseconds m_timeout;
};

template<typename R, typename T>
QCoro::Task<> runRequest(Mailbox<T> mailbox, T message, ReplyReceiver<R> answer, std::chrono::milliseconds timeout,
                         QPromise<R> promise)
{
    std::optional<R> value;
    std::exception_ptr error;
    try {
        co_await mailbox.send(std::move(message)); // no suspension while there is room
        value.emplace(co_await answer.wait(timeout));
    } catch (...) {
        error = std::current_exception();
    }
    if (FutureStart::isInside()) // still inside the call: settle from the event loop
        co_await stage::sleep(std::chrono::milliseconds(0));
    settle(promise, value, error);
}

// The R of the Reply<R> that a request's makeMessage takes.
template<typename A>
struct ReplyArgument
{};
template<typename R>
struct ReplyArgument<Reply<R>>
{
    using type = R;
};
template<typename M>
struct ReplyOfCall
{};
template<typename C, typename Ret, typename A>
struct ReplyOfCall<Ret (C::*)(A) const> : ReplyArgument<std::remove_cvref_t<A>>
{};
template<typename C, typename Ret, typename A>
struct ReplyOfCall<Ret (C::*)(A)> : ReplyArgument<std::remove_cvref_t<A>>
{};
template<typename Ret, typename A>
struct ReplyOfCall<Ret (*)(A)> : ReplyArgument<std::remove_cvref_t<A>>
{};
template<typename F>
struct ReplyOf : ReplyOfCall<F>
{};
template<typename F>
    requires requires { &F::operator(); }
struct ReplyOf<F> : ReplyOfCall<decltype(&F::operator())>
{};

template<typename R, typename F>
struct RequestResult
{
    using type = R;
};
template<typename F>
struct RequestResult<void, F>
{
    static_assert(requires { typename ReplyOf<F>::type; },
                  "stage::request: cannot tell the reply type from makeMessage (a generic lambda?); "
                  "name it: stage::request<int>(...)");
    using type = typename ReplyOf<F>::type;
};

STAGE_EXPORT std::exception_ptr invalidOperation(const char *what);
STAGE_EXPORT QCoro::Task<> awaitShutdown(Node *node, std::chrono::milliseconds timeout, QPromise<void> promise);
STAGE_EXPORT QCoro::Task<> awaitFinished(WorkerHandle *handle, QPromise<WorkerExit> promise);

/* The exception a finished future holds, or null. */
template<typename T>
std::exception_ptr errorOf(const QFuture<T> &future)
{
    try {
        QFuture<T>(future).waitForFinished(); // finished: rethrows what it holds
    } catch (...) {
        return std::current_exception();
    }
    return nullptr;
}

/*
    A context object as seen from any thread: cleared (under its mutex) when the context is
    destroyed, so that a job is posted to it only while it is alive.
*/
class STAGE_EXPORT ContextLink
{
public:
    explicit ContextLink(QObject *context);
    ~ContextLink();
    ContextLink(const ContextLink &) = delete;
    ContextLink &operator=(const ContextLink &) = delete;

    static std::shared_ptr<ContextLink> make(QObject *context);

    /* Any thread: runs \a job on the context's thread: now when called there, else queued to
       its event loop; drops it (destroys it uncalled) if the context is gone, or goes before
       the queued call is delivered. Once. */
    template<typename Job>
    void run(Job &&job)
    {
        std::unique_lock lock(m_mutex);
        QObject *target = m_context;
        m_context = nullptr; // once: and the destroyed() watch can go
        if (!target)
            return;
        if (target->thread() == QThread::currentThread()) {
            lock.unlock();
            unwatch();
            job();
            return;
        }
        // Queued under the lock: the context cannot be deleted meanwhile (its destroyed() takes
        // the lock). A context deleted before the call is delivered deletes it, uncalled.
        QMetaObject::invokeMethod(target, std::forward<Job>(job), Qt::QueuedConnection);
        lock.unlock();
        unwatch();
    }

private:
    void contextDestroyed() noexcept;
    void unwatch() noexcept;

    std::mutex m_mutex;
    QObject *m_context;
    QMetaObject::Connection m_watch;
};

template<typename T, typename F>
auto continuationResult()
{
    if constexpr (std::is_invocable_v<F &, QFuture<T>>)
        return std::type_identity<std::invoke_result_t<F &, QFuture<T>>>{};
    else if constexpr (std::is_void_v<T>)
        return std::type_identity<std::invoke_result_t<F &>>{};
    else
        return std::type_identity<std::invoke_result_t<F &, T>>{};
}

template<typename T, typename F, typename U>
void runContinuation(F &f, const QFuture<T> &parent, QPromise<U> &promise)
{
    try {
        if constexpr (std::is_invocable_v<F &, QFuture<T>>) {
            if constexpr (std::is_void_v<U>)
                std::invoke(f, parent);
            else
                promise.addResult(std::invoke(f, parent));
        } else if (std::exception_ptr error = errorOf(parent)) {
            promise.setException(error); // the value continuation is skipped; the failure goes on
        } else if (parent.isCanceled()) {
            promise.future().cancel();
        } else if constexpr (std::is_void_v<T>) {
            if constexpr (std::is_void_v<U>)
                std::invoke(f);
            else
                promise.addResult(std::invoke(f));
        } else {
            if constexpr (std::is_void_v<U>)
                std::invoke(f, parent.result());
            else
                promise.addResult(std::invoke(f, parent.result()));
        }
    } catch (...) {
        promise.setException(std::current_exception());
    }
    promise.finish();
}

} // namespace detail

/*!
    The answer of \a answer as a QFuture: its value, or the exception an await would throw
    (stage::BrokenReply, stage::DeadLettered, stage::TimeoutError after \a timeout; negative:
    no limit, the default), never a bare cancel, so QFuture::onFailed() gets the typed exception.

    \code
    auto [reply, answer] = stage::makeReply<int>();
    requests.trySend(Add{1, 2, std::move(reply)});
    stage::toFuture(std::move(answer)).then(this, [this](int sum) { show(sum); });
    \endcode

    Thread: the future is finished on the calling thread, from its event loop (which must run),
    never inside toFuture() and never on the thread that replied; so QFuture::then(context, ...)
    runs on context's thread (queued there from the calling thread if it is another), and then()
    without a context on the calling thread. The reply may come from any thread, before or after
    then() is attached.
    The replier goes away first: a Reply destroyed unanswered fails the future with
    stage::BrokenReply. The calling thread ends first: the future can no longer be finished
    there and is cancelled (a reply sent later is dropped with it). The context of a then() goes
    away first: see stage::then().
    Nothing is lost: the value is in the future, or the exception is.
    Cancellation: cancelling the future does not withdraw anything; the reply is still taken.
*/
template<typename T>
QFuture<T> toFuture(ReplyReceiver<T> answer, std::chrono::milliseconds timeout = std::chrono::milliseconds(-1))
{
    QPromise<T> promise;
    QFuture<T> future = promise.future();
    promise.start();
    detail::FutureStart start; // no worker's waiter
    detail::ReplyPromise<T>::start(detail::ReplyAccess::stateOf(answer), std::move(promise), timeout);
    return future;
}

/*!
    Sends a request to \a mailbox from slot code and returns its answer as a QFuture.
    \a makeMessage receives the stage::Reply<R> and returns the message (a T); R is the Reply's
    type, or given: stage::request<int>(...). The same as a coroutine's
    `co_await mailbox.send(makeMessage(reply)); co_return co_await answer.wait(timeout);`.

    \code
    stage::request(requests, [](stage::Reply<int> r) { return Add{1, 2, std::move(r)}; }, 2s)
        .then(this, [this](int sum) { label->setNum(sum); })
        .onFailed(this, [this](const stage::BrokenReply &e) { label->setText(e.what()); });
    \endcode

    Failures, as the future's exception (QFuture::onFailed() gets the type): stage::MailboxClosed
    if the mailbox is (or gets) closed before the request is queued; stage::BrokenReply if the
    Reply is destroyed unanswered (its consumer died holding it, and so on);
    stage::DeadLettered (a BrokenReply) if the request was dead-lettered; stage::TimeoutError if
    no answer came within \a timeout of the request being queued (negative, the default: no
    limit); anything \a makeMessage throws. Never a bare cancel.
    Queueing: like Mailbox::send(): queued at once while there is room; a full mailbox is waited
    on (the timeout starts once the request is queued), never dropped.
    Thread: \a makeMessage runs inside the call. The future is finished on the calling thread,
    from its event loop (which must run), never inside request() and never on the consumer's
    thread: QFuture::then(context, ...) runs on context's thread, then() without a context on
    the calling thread, whether the answer came before or after then() was attached, from
    whatever thread.
    The mailbox goes away first: a closed mailbox fails the future with stage::MailboxClosed (if
    the request was not queued yet) or, if it was queued and the mailbox is later destroyed with
    it, its Reply breaks: stage::BrokenReply. The calling thread ends before the answer: the
    future is cancelled. The context of a then() goes away first: see stage::then().
    Nothing is lost at this boundary: the request is queued (at-least-once from there: a consumer
    that fails holding it causes a redelivery, not a broken reply), or the future says why not.
*/
template<typename R = void, typename T, typename F>
QFuture<typename detail::RequestResult<R, std::decay_t<F>>::type>
request(const Mailbox<T> &mailbox, F &&makeMessage, std::chrono::milliseconds timeout = std::chrono::milliseconds(-1))
{
    using Result = typename detail::RequestResult<R, std::decay_t<F>>::type;
    QPromise<Result> promise;
    QFuture<Result> future = promise.future();
    promise.start();
    detail::FutureStart start;
    auto [reply, answer] = makeReply<Result>();
    std::optional<T> message;
    try {
        message.emplace(std::invoke(std::forward<F>(makeMessage), std::move(reply)));
    } catch (...) {
        detail::settleLater(std::move(promise), std::current_exception());
        return future;
    }
    switch (mailbox.trySend(std::move(*message))) {
    case SendStatus::Sent: // the usual case: no coroutine
        detail::ReplyPromise<Result>::start(detail::ReplyAccess::stateOf(answer), std::move(promise), timeout);
        break;
    case SendStatus::Closed: // the message (and its Reply) is ours still: dropped unsent
        detail::settleLater(std::move(promise), detail::mailboxClosedError("stage::request"));
        break;
    case SendStatus::Full: // waits for room, as Mailbox::send() does
        detail::runRequest<Result, T>(mailbox, std::move(*message), std::move(answer), timeout, std::move(promise));
        break;
    }
    return future;
}

/*!
    Shuts \a node down (Group::shutdown(\a timeout) or Supervisor::shutdown(); \a timeout
    negative, the default: the group's shutdownTimeout(); ignored for a supervisor) and returns a
    QFuture that finishes once it has stopped: every worker has ended or been reported abandoned,
    every child has stopped.

    Thread: call it on \a node's thread; the future is finished there, from its event loop, never
    inside the call (so then(context, ...) runs on context's thread, then() without a context on
    \a node's).
    The node goes away first: deleting it stops it, and the future finishes (normally).
    Nothing is lost: as with the shutdown itself, a message a worker held goes back to its
    mailbox; the future only reports the end.
    Bad input: a null \a node, a node that is neither a Group nor a Supervisor, or a call from
    another thread: a warning under stage.future, and a future that fails with
    stage::InvalidOperation (nothing is shut down).
*/
STAGE_EXPORT QFuture<void> shutdownFuture(Node *node,
                                          std::chrono::milliseconds timeout = std::chrono::milliseconds(-1));

/*!
    The end of \a handle's current run as a QFuture<WorkerExit> (WorkerHandle::finished(), which
    is exactly once per run): at once (from the event loop) with WorkerHandle::lastExit() if the
    run has ended already.

    Thread: call it on \a handle's thread; the future is finished there, from its event loop,
    never inside the call.
    The handle goes away first: ~WorkerHandle() does not wait for the run, so its end is never
    reported: the future fails with stage::ObjectDestroyed. Nothing is lost: the exit is in the
    future, or the exception says why it cannot be.
    Bad input: a null \a handle, one never started, or a call from another thread: a warning
    under stage.future, and a future that fails with stage::InvalidOperation.
*/
STAGE_EXPORT QFuture<WorkerExit> finishedFuture(WorkerHandle *handle);

/*!
    QFuture::then(context, continuation), safe when \a context is destroyed first: the
    continuation then never runs, nothing leaks, and the returned future is cancelled.
    Qt 6.4's own then(context, ...) is fine while the context lives, but reads the context's
    QPointer on whatever thread finishes the future (a race if the context is being destroyed on
    its own thread meanwhile) and, in a build without QT_NO_DEBUG (a Debug build),
    Q_ASSERT(context) aborts when the context was destroyed first (qfuture_impl.h). Use this
    one when the context may die before the future finishes.

    \a continuation takes the value (T; nothing for QFuture<void>), or the QFuture<T> itself (then
    it runs whatever the outcome: call result() in a try block to see the typed exception). A
    value continuation is skipped when \a future failed: the exception goes on to the returned
    future, so a following onFailed() (with or without a context) gets it.

    \code
    stage::then(stage::request(requests, makeAdd, 2s), this, [this](int sum) { show(sum); })
        .onFailed([this](const stage::BrokenReply &e) { showError(e.what()); }); // on this's thread too
    \endcode

    Thread: the continuation runs on \a context's thread: directly when \a future is finished
    there (or is finished already when then() is called there, as Qt does), else queued to
    \a context's event loop. The returned future is finished on that thread, right after.
    The context goes away first: destroyed before \a future finishes, or before the queued call
    is delivered: the continuation is destroyed uncalled (on the thread that dropped it) and the
    returned future cancelled; nothing leaks. Otherwise nothing is lost: the continuation's value
    or exception is in the returned future. A \a future cancelled without an exception cancels
    the returned future (a continuation taking the QFuture<T> is not called then either: Qt
    skips it).
    Bad input: a null \a context: a warning under stage.future, and a cancelled future.
*/
template<typename T, typename F>
auto then(const QFuture<T> &future, QObject *context, F &&continuation)
{
    using U = typename decltype(detail::continuationResult<T, std::decay_t<F>>())::type;
    QPromise<U> promise;
    QFuture<U> result = promise.future();
    promise.start(); // a started promise destroyed unfinished cancels its future (an unstarted one would hang)
    std::shared_ptr<detail::ContextLink> link = detail::ContextLink::make(context);
    if (!link) {
        promise.future().cancel();
        promise.finish();
        return result;
    }
    QFuture<T>(future).then(
        QtFuture::Launch::Sync,
        [link, promise = std::move(promise), f = std::decay_t<F>(std::forward<F>(continuation))](QFuture<T> parent) mutable {
            link->run([promise = std::move(promise), f = std::move(f), parent = std::move(parent)]() mutable {
                detail::runContinuation<T>(f, parent, promise);
            });
        });
    return result;
}

} // namespace stage
