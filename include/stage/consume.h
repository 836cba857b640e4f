#pragma once

#include <stage/group.h>
#include <stage/mailbox.h>

#include <QtCore/QObject>
#include <QtCore/QThread>

#include <functional>
#include <memory>
#include <optional>
#include <type_traits>

namespace stage {
namespace detail {

/* What the consumer's body and the context's destroyed() share (the context's thread only). */
struct ConsumeLink
{
    bool contextAlive = true;
};

template<typename F>
struct ConsumeState : ConsumeLink
{
    explicit ConsumeState(F &&f) : callback(std::move(f)) {}
    F callback;
};

/* Warns and returns false for a null context, or one without a thread. */
STAGE_EXPORT bool checkConsumeContext(const QObject *context);
STAGE_EXPORT void warnConsumeReceiver();
/*
    Creates the group, names it after \a context, ties its life to \a context (deleted, with
    \a link's flag cleared, when \a context is destroyed) and spawns \a factory on \a context's
    thread (now if that is the calling thread; from its event loop otherwise). \a mailbox: its
    QObject side, for views (null from another thread). \a closed: warn that it only drains.
*/
STAGE_EXPORT Group *startConsumer(QObject *context, std::shared_ptr<ConsumeLink> link, WorkerFactory factory,
                                  MailboxBase *mailbox, bool closed, int queued);

template<typename M>
struct MemberClass;
template<typename R, typename C, typename... A>
struct MemberClass<R (C::*)(A...)>
{
    using type = C;
};
template<typename R, typename C, typename... A>
struct MemberClass<R (C::*)(A...) const>
{
    using type = C;
};

template<typename T, typename F>
void invokeConsumer(F &callback, Delivery<T> &delivery)
{
    if constexpr (std::is_invocable_v<F &, T &>) {
        std::invoke(callback, *delivery);
    } else {
        static_assert(std::is_invocable_v<F &, Delivery<T> &>,
                      "stage::consume: the callback takes the message (T &, const T &, or T by value for a "
                      "copyable T) or its stage::Delivery<T> &");
        std::invoke(callback, delivery);
    }
}

template<typename T, typename F>
QCoro::Task<> consumeLoop(Worker &worker, Mailbox<T> mailbox, std::shared_ptr<ConsumeState<F>> state)
{
    for (;;) {
        std::optional<Delivery<T>> delivery;
        try {
            delivery.emplace(co_await mailbox.receive());
        } catch (const MailboxClosed &) {
            co_return; // closed and drained: the consumer has nothing more to do
        }
        // The context is destroyed on this thread, which deletes (stops) the group at once: a
        // body that gets here after that was stopped, and the receive above threw Cancelled.
        // Checked anyway: the callback is never called once the context is gone.
        if (!state->contextAlive)
            throw Cancelled(); // a stop: the message goes back, uncounted
        invokeConsumer<T>(state->callback, *delivery);
        worker.heartbeat(); // one iteration per message handled
    } // the delivery is acknowledged here, after the callback returned normally
}

} // namespace detail

/*!
    Consumes \a mailbox from slot code: \a callback(message) runs on \a context's thread, one
    message at a time, with the delivery semantics of a coroutine consumer. Returns the consumer,
    a stage::Group of one worker, or nullptr for bad input.

    \code
    stage::Mailbox<QString> changes(256);
    stage::Group *consumer = stage::consume(changes, this, [this](const QString &path) {
        reload(path);   // throws? the path is redelivered; more than maxRedeliveries: dead letter
    });
    consumer->setBackoff(stage::Backoff::none());      // a node like any other group
    supervisor->addChild(consumer, stage::RestartType::Transient);
    \endcode

    The callback takes the message (T &, const T &, or T by value for a copyable T), or its
    stage::Delivery<T> & (to ack() early); or it is a member function of \a context's class, a
    slot: consume(mailbox, controller, &Controller::onEvent). Its return value is ignored.

    What it returns: the consumer is an ordinary stage::Group whose factory runs a coroutine loop
    (receive, call \a callback, acknowledge), so it is a node like any other: state, statistics
    (Group::iterations() counts the messages handled), restarts by its restart type and backoff
    (a Group's defaults: Transient, exponential backoff, unlimited restarts), shutdown, and it can
    be a stage::Supervisor's child (Supervisor::addChild(); it runs already, so it is adopted as it
    is) and appears in SupervisionTreeModel (its Group::mailbox() is \a mailbox's QObject side when
    consume() is called on \a context's thread). Its objectName() is "consume: " and the context's
    class (and objectName(), if any).

    Delivery: a message is acknowledged once \a callback returns normally. If \a callback throws,
    the message goes back to the front of the mailbox, the worker fails (restarted by the group's
    policy), and a message whose consumers failed more than Mailbox::maxRedeliveries() times
    goes to the dead letters (its replies fail with stage::DeadLettered). Nothing is lost at this
    boundary: every message is acknowledged after a callback returned, back in the mailbox, or
    among its dead letters.

    Thread: \a callback runs on the thread \a context lives on when consume() is called, from its
    event loop (never inside consume()). The group lives there too; use it from there. Called from
    another thread, consume() moves the group there and starts it from that thread's event loop.
    The context goes away first: destroying \a context deletes the group at once (its worker
    unwinds; a message it was about to hand over goes back, uncounted). The callback is never
    called once \a context's destruction has begun (the same guarantee as a connection to
    \a context: QObject's destroyed() is where it is noticed, so a subclass destructor of
    \a context that spins an event loop runs before that). A callback that deletes its own
    context is safe: the call returns normally, its message is acknowledged, and no other call
    follows. Hold the group in a QPointer if the context may die first.
    The mailbox closes first: the consumer drains what is queued, then its worker returns and the
    group stops (Transient: not restarted; give it RestartType::Transient under a supervisor too,
    or the supervisor restarts a Permanent child that ended). Deleting the mailbox's QObject side
    closes it.
    Bad input: a null \a context, one whose thread has finished, or a member function of a class
    \a context is not: a warning under stage.consume, and nullptr. A closed mailbox: a warning, and a consumer that drains what is left, then stops.
*/
template<typename T, typename F>
Group *consume(const Mailbox<T> &mailbox, QObject *context, F &&callback)
{
    if (!detail::checkConsumeContext(context))
        return nullptr;
    if constexpr (std::is_member_function_pointer_v<std::decay_t<F>>) {
        // A slot of the context: consume(mailbox, controller, &Controller::onEvent).
        using Class = typename detail::MemberClass<std::decay_t<F>>::type;
        auto *receiver = dynamic_cast<Class *>(context);
        if (!receiver) {
            detail::warnConsumeReceiver();
            return nullptr;
        }
        return consume(mailbox, context, [receiver, slot = callback](T &message) { (receiver->*slot)(message); });
    } else {
        using State = detail::ConsumeState<std::decay_t<F>>;
        auto state = std::make_shared<State>(std::decay_t<F>(std::forward<F>(callback)));
        WorkerFactory factory = [mailbox, state](Worker &worker) {
            return detail::consumeLoop<T>(worker, mailbox, state);
        };
        MailboxBase *object = context->thread() == QThread::currentThread() ? mailbox.object() : nullptr;
        return detail::startConsumer(context, state, std::move(factory), object, mailbox.isClosed(), mailbox.count());
    }
}

} // namespace stage
