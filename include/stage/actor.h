#pragma once

// Degree 3: typed actors whose address survives restarts (stage::Actor, stage::ActorRef).

#include <stage/group.h>
#include <stage/guard.h>
#include <stage/mailbox.h>
#include <stage/qfuture.h>
#include <stage/reply.h>

#include <QtCore/QFuture>
#include <QtCore/QMetaObject>
#include <QtCore/QThread>
#include <QtCore/QObject>
#include <QtCore/QString>
#include <QtCore/QStringList>
#include <QtCore/QVariant>
#include <QtCore/QVariantMap>

#include <QCoro/QCoroTask>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <ctime>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <variant>
#include <vector>

namespace stage {

/*! Log category of actors: \c stage.actor. */
STAGE_EXPORT const QLoggingCategory &lcActor();

/*!
    The messages an actor accepts and what each one answers, as function types `Reply(Message)`:

    \code
    using AdderProtocol = stage::Protocol<int(Add), void(Reset), int(Total)>;
    \endcode

    Each message type appears once, as a plain class type (no reference, no cv-qualifier). A
    `void` reply means the ask completes with no value once the handler has returned. Checked at
    compile time: ActorRef<P>::tell(), ask() and askFuture() accept only the messages of P and
    return each one's reply type; Actor<P>::spawn() requires exactly one handler per message.
*/
template<typename... Signatures>
struct Protocol
{};

class ActorBase;

namespace detail {

using ActorClock = std::chrono::steady_clock;

/* What a Reply<R> carries for a reply type R: void answers with std::monostate. */
template<typename R>
using ActorStored = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

template<typename Signature>
struct ActorSignature
{
    static_assert(sizeof(Signature *) == 0, "stage::Protocol: each entry is a function type Reply(Message)");
};
template<typename R, typename M>
struct ActorSignature<R(M)>
{
    static_assert(std::is_same_v<M, std::remove_cvref_t<M>> && std::is_class_v<M>,
                  "stage::Protocol: a message is a plain class type (no reference, no const)");
    using Reply = R;
    using Message = M;
};

template<typename M, typename... Ms>
constexpr std::size_t indexOfType()
{
    constexpr bool same[] = {std::is_same_v<M, Ms>..., false};
    for (std::size_t i = 0; i < sizeof...(Ms); ++i) {
        if (same[i])
            return i;
    }
    return sizeof...(Ms);
}

template<typename... Ms>
constexpr bool allDistinct()
{
    constexpr std::size_t indices[] = {indexOfType<Ms, Ms...>()..., 0};
    for (std::size_t i = 0; i < sizeof...(Ms); ++i) {
        if (indices[i] != i)
            return false;
    }
    return true;
}

/* One message in an actor's mailbox, with the Reply of an ask (empty for a tell). */
template<typename M, typename R>
struct ActorLetter
{
    M message;
    std::optional<Reply<ActorStored<R>>> reply;

    friend void stageFailReplies(ActorLetter &letter, const DeadLettered &why)
    {
        failReplies(letter.message, why);
        if (letter.reply)
            letter.reply->fail(why);
    }
};

template<typename P>
struct ProtocolTraits;
template<typename... Signatures>
struct ProtocolTraits<Protocol<Signatures...>>
{
    static constexpr std::size_t count = sizeof...(Signatures);
    static_assert(count > 0, "stage::Protocol: an actor accepts at least one message");
    static_assert(allDistinct<typename ActorSignature<Signatures>::Message...>(),
                  "stage::Protocol: each message type appears once");
    using Messages = std::tuple<typename ActorSignature<Signatures>::Message...>;
    using Replies = std::tuple<typename ActorSignature<Signatures>::Reply...>;
    template<typename M>
    static constexpr std::size_t indexOf = indexOfType<M, typename ActorSignature<Signatures>::Message...>();
    template<typename M>
    static constexpr bool accepts = indexOf<M> < count;
    template<std::size_t I>
    using Message = std::tuple_element_t<I, Messages>;
    template<std::size_t I>
    using ReplyAt = std::tuple_element_t<I, Replies>;
    using Letter = std::variant<ActorLetter<typename ActorSignature<Signatures>::Message,
                                            typename ActorSignature<Signatures>::Reply>...>;
};

/* The reply type of M in P, or void with found == false (the callers static_assert on found). */
template<typename P, typename M, bool = ProtocolTraits<P>::template accepts<M>>
struct ActorReplyOf
{
    static constexpr bool found = false;
    using type = void;
};
template<typename P, typename M>
struct ActorReplyOf<P, M, true>
{
    static constexpr bool found = true;
    using type = typename ProtocolTraits<P>::template ReplyAt<ProtocolTraits<P>::template indexOf<M>>;
};

class ActorShared;

/* One actor waiting in a handler: the actor, and the serial of the message it was handling. */
struct AskLink
{
    std::shared_ptr<ActorShared> actor;
    quint64 serial = 0;
};

/*
    The chain of asking actors an ask carries (ask-cycle detection): the actors whose handlers
    wait, transitively, for this ask's answer, oldest first, the asker last. Made only for an ask
    from an actor's handler (or from work it deferred); null otherwise. The liveness of the ask's
    own reply is kept too, so that a handler that defers its reply keeps the chain while the reply
    is pending. Immutable once the ask is queued; any thread.
*/
struct AskChain
{
    std::vector<AskLink> links;
    std::weak_ptr<void> reply;                 // the ask's reply state
    bool (*pending)(const void *) = nullptr;  // whether that state is still unanswered

    bool isPending() const
    {
        if (!pending)
            return false;
        std::shared_ptr<void> state = reply.lock();
        return state && pending(state.get());
    }
    template<typename S>
    void watch(const std::shared_ptr<ReplyState<S>> &state)
    {
        reply = state;
        pending = [](const void *s) {
            auto *typed = static_cast<ReplyState<S> *>(const_cast<void *>(s));
            std::lock_guard lock(typed->mutex);
            return typed->status == ReplyState<S>::Status::Pending;
        };
    }
};
using AskChainPtr = std::shared_ptr<const AskChain>;

/* What an ask from an actor's handler carries: its chain, and the cycle it closes (empty if none). */
struct AskContext
{
    std::shared_ptr<AskChain> chain;
    QString cycle; // "A -> B -> A"
};

/* The chain of an ask made now on this thread to \a target, and the cycle it closes (warned
   about under stage.actor, naming \a function and \a message). Cheap when the caller is no
   actor's handler. */
STAGE_EXPORT AskContext askContextSlow(Worker *current, const ActorShared *target, const char *function,
                                       const std::type_info &message);
inline AskContext askContext(const ActorShared *target, const char *function, const std::type_info &message)
{
    Worker *current = Worker::current();
    if (!current || !target)
        return {};
    return askContextSlow(current, target, function, message);
}

/* What an actor's mailbox holds: one letter, an ask's deadline (max for a tell), and the chain of
   asking actors behind an ask made from a handler (null otherwise). */
template<typename P>
struct ActorEnvelope
{
    typename ProtocolTraits<P>::Letter letter;
    ActorClock::time_point deadline = ActorClock::time_point::max();
    AskChainPtr chain;

    template<typename M, typename R>
    static ActorEnvelope make(M &&message, std::optional<Reply<ActorStored<R>>> reply, ActorClock::time_point deadline,
                              AskChainPtr chain = nullptr)
    {
        constexpr std::size_t I = ProtocolTraits<P>::template indexOf<std::remove_cvref_t<M>>;
        return ActorEnvelope{typename ProtocolTraits<P>::Letter(
                                 std::in_place_index<I>,
                                 ActorLetter<std::remove_cvref_t<M>, R>{std::forward<M>(message), std::move(reply)}),
                             deadline, std::move(chain)};
    }

    friend void stageFailReplies(ActorEnvelope &envelope, const DeadLettered &why)
    {
        failReplies(envelope.letter, why);
    }
};

/*
    The part of an actor that its references share with it and its runs: the name, the default
    ask timeout, the worker running now (for the self-ask check) and the counters. Any thread.
*/
class STAGE_EXPORT ActorShared
{
public:
    ActorShared();
    ~ActorShared();

    QString name() const;
    void setName(const QString &name);
    void setNode(ActorBase *node, QObject *object);

    /* Queues \a job to the actor's QObject thread; false if the actor is gone. Any thread. */
    template<typename Job>
    bool postToNode(Job &&job)
    {
        std::lock_guard lock(m_mutex);
        if (!m_object)
            return false;
        QMetaObject::invokeMethod(m_object, std::forward<Job>(job), Qt::QueuedConnection);
        return true;
    }
    /* The actor's QObject thread, or null once it is gone. */
    QThread *nodeThread() const;
    /* Connects the actor's down() to \a callback on \a context; invalid if the actor is gone. */
    QMetaObject::Connection connectDown(QObject *context, std::function<void(const QString &)> callback);

    std::chrono::milliseconds askTimeout() const noexcept
    {
        return std::chrono::milliseconds(askTimeoutMs.load(std::memory_order_relaxed));
    }
    /* negative: the actor's askTimeout() */
    std::chrono::milliseconds effectiveTimeout(std::chrono::milliseconds timeout) const noexcept
    {
        return timeout.count() < 0 ? askTimeout() : timeout;
    }

    /* An ask dequeued after its caller's deadline: counted, and its reply failed as expired. */
    void noteExpired() noexcept;
    qint64 expiredAsks() const noexcept { return m_expiredAsks.load(std::memory_order_relaxed); }

    std::atomic<qint64> askTimeoutMs{5000};
    std::atomic<Worker *> worker{nullptr};    // the run in progress, or null
    std::atomic<QThread *> homeThread{nullptr}; // the thread of the run in progress, or of the last one

    // ---- ask-cycle detection ----
    /* The run's thread, before a message's handler: it is handling message \a serial now,
       asked with \a chain (null: a tell, or an ask from outside any actor). */
    void beginMessage(quint64 serial, const AskChainPtr &chain) noexcept
    {
        if (chain || currentChain)
            currentChain = chain;
        handling.store(serial, std::memory_order_release);
    }
    /* The run's thread, after it: idle. \a deferred: a replying handler returned, its reply
       perhaps taken for later; its chain is kept while that ask is pending. */
    void endMessage(bool deferred) noexcept
    {
        if (deferred && currentChain)
            keepDeferred(handling.load(std::memory_order_relaxed));
        handling.store(0, std::memory_order_release);
    }
    /* The serial of the message being handled now, or 0 between messages. Any thread. */
    std::atomic<quint64> handling{0};
    quint64 lastSerial = 0;    // the run's thread
    AskChainPtr currentChain;  // the run's thread: the chain of the message handled now
    struct Deferred
    {
        AskChainPtr chain;
        quint64 serial = 0;
    };
    std::mutex deferredMutex;
    std::vector<Deferred> deferred; // chains of replies taken by replying handlers, pending
    void keepDeferred(quint64 serial);

private:
    mutable std::mutex m_mutex;
    QString m_name;
    ActorBase *m_node = nullptr; // cleared by ~ActorBase
    QObject *m_object = nullptr; // the same
    std::atomic<qint64> m_expiredAsks{0};
};

/* A reply failed with this when its ask is dropped unprocessed, its caller's deadline passed:
   the caller (who may see it instead of its own timer, by a hair) reports its timeout. */
class STAGE_EXPORT AskExpired : public BrokenReply
{
public:
    AskExpired();
};

/* The demangled name of \a type. */
STAGE_EXPORT QString actorTypeName(const std::type_info &type);

/* Why an ask cannot be made (null reference, a zero timeout, an actor asking itself, a blocking
   ask on the actor's own thread), or null when it can. */
STAGE_EXPORT std::exception_ptr askRefusal(const ActorShared *shared, std::chrono::milliseconds timeout,
                                           const char *function, const std::type_info &message, bool blocking);
/* The exception an ask ends with after \a error: TimeoutError and AskExpired become the
   actor's TimeoutError naming the actor, the message type and the duration; the rest as is. */
[[noreturn]] STAGE_EXPORT void rethrowAskError(std::exception_ptr error, const ActorShared *shared,
                                               const std::type_info &message, std::chrono::milliseconds timeout,
                                               const QString &cycle = QString());
STAGE_EXPORT void warnNullActorRef(const char *function);
STAGE_EXPORT void warnUnanswered(const ActorShared *shared, const std::type_info &message);

/* The cheap look before askRefusal(): false when the ask can certainly be made. */
inline bool mayRefuse(const ActorShared *shared, std::chrono::milliseconds timeout) noexcept
{
    if (!shared || timeout.count() == 0)
        return true;
    Worker *running = shared->worker.load(std::memory_order_acquire);
    return running && Worker::current() == running;
}

/*
    Now, from the coarse monotonic clock (the same clock as steady_clock's, a few ms behind it,
    several times cheaper to read): the actor's look at an ask's deadline, once per message. Being
    behind, it never finds a deadline passed before it has.
*/
inline ActorClock::time_point coarseNow() noexcept
{
#if defined(CLOCK_MONOTONIC_COARSE)
    timespec now;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &now) == 0)
        return ActorClock::time_point(std::chrono::duration_cast<ActorClock::duration>(
            std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec)));
#endif
    return ActorClock::now();
}

/*
    One message of a registered actor that code without its C++ type (QML's Stage.ask()) can send:
    a Q_GADGET message M (default-constructible; its reply void or copyable), built from a
    QVariantMap whose keys are exactly M's writable Q_PROPERTYs (readGadgetFields()); the reply
    comes back as a QVariant (a Q_GADGET reply as a QVariantMap of its properties; void: an
    invalid QVariant). registerActor() makes one per such message of the protocol. Thread: any.
*/
struct ActorVariantMessage
{
    QString type;                             // M's class name without its namespaces ("Add")
    const QMetaObject *metaObject = nullptr;  // M::staticMetaObject
    /* Builds M from \a fields and asks (askFuture(), \a timeout negative: the actor's default):
       true with the answer in \a answer; false, nothing sent, with \a error saying which field is
       missing, unknown or of the wrong type. */
    std::function<bool(const QVariantMap &fields, std::chrono::milliseconds timeout, QFuture<QVariant> *answer,
                       QString *error)>
        ask;
    /* Builds M from \a fields and tells it: true with the status in \a status; false as ask. */
    std::function<bool(const QVariantMap &fields, SendStatus *status, QString *error)> tell;
};
using ActorVariantMessages = std::vector<ActorVariantMessage>;

/* The actor registry: references by name, type-erased (the protocol's type is checked at lookup). */
struct RegisteredActor
{
    std::shared_ptr<void> ref; // an ActorRef<P> *
    const std::type_info *protocol = nullptr;
    const ActorShared *shared = nullptr;
    std::shared_ptr<const ActorVariantMessages> messages; // its Q_GADGET messages (never null once registered)
};

/* A Q_GADGET's class name without its namespaces. */
STAGE_EXPORT QString gadgetTypeName(const QMetaObject &metaObject);
/* The writable properties of a Q_GADGET, in declaration order: the fields of a variant message. */
STAGE_EXPORT QStringList gadgetFields(const QMetaObject &metaObject);
/*
    Writes \a fields onto \a gadget (a default-constructed instance of \a metaObject's type): every
    writable property must be given, no other key; a value must have the property's type or
    convert to it without loss (numbers to numbers, integral targets only from integral values in
    range; strings and bools only from their own type; other types by QVariant's conversion).
    False, with \a error naming the field and why, at the first bad field (the gadget may then be
    partly written).
*/
STAGE_EXPORT bool readGadgetFields(const QMetaObject &metaObject, void *gadget, const QVariantMap &fields,
                                   QString *error);
/* The properties of \a gadget as a map. */
STAGE_EXPORT QVariantMap gadgetToMap(const QMetaObject &metaObject, const void *gadget);
STAGE_EXPORT RegisteredActor registeredActorImpl(const QString &name);
STAGE_EXPORT void unregisterActorsOf(const ActorShared *shared);
STAGE_EXPORT void warnActorProtocol(const char *function, const QString &name, const std::type_info &registered,
                                    const std::type_info &wanted);

STAGE_EXPORT QMetaObject::Connection monitorActor(ActorShared *shared, QObject *context,
                                                 std::function<void(const QString &)> callback);
struct ActorRefAccess
{
    template<typename Ref>
    static ActorShared *shared(const Ref &ref) noexcept
    {
        return ref.m_shared.get();
    }
};

/* Makes the remaining time of an ask, rounded up, never negative. */
inline std::chrono::milliseconds remainingUntil(ActorClock::time_point deadline)
{
    const auto left = deadline - ActorClock::now();
    if (left.count() <= 0)
        return std::chrono::milliseconds(0);
    return std::chrono::ceil<std::chrono::milliseconds>(left);
}

inline ActorClock::time_point deadlineAfter(std::chrono::milliseconds timeout)
{
    return ActorClock::now() + timeout;
}

// ---- handlers ----

template<typename F>
struct CallableTraits : CallableTraits<decltype(&F::operator())>
{};
template<typename C, typename Ret, typename... A>
struct CallableTraits<Ret (C::*)(A...) const>
{
    using Result = Ret;
    using Args = std::tuple<A...>;
};
template<typename C, typename Ret, typename... A>
struct CallableTraits<Ret (C::*)(A...)>
{
    using Result = Ret;
    using Args = std::tuple<A...>;
};
template<typename C, typename Ret, typename... A>
struct CallableTraits<Ret (C::*)(A...) const noexcept>
{
    using Result = Ret;
    using Args = std::tuple<A...>;
};
template<typename C, typename Ret, typename... A>
struct CallableTraits<Ret (C::*)(A...) noexcept>
{
    using Result = Ret;
    using Args = std::tuple<A...>;
};
template<typename Ret, typename... A>
struct CallableTraits<Ret (*)(A...)>
{
    using Result = Ret;
    using Args = std::tuple<A...>;
};
template<typename Ret, typename... A>
struct CallableTraits<Ret (*)(A...) noexcept>
{
    using Result = Ret;
    using Args = std::tuple<A...>;
};

template<typename F>
concept NonGenericCallable = requires { typename CallableTraits<std::decay_t<F>>::Args; };

template<typename T>
struct TaskValue
{
    static constexpr bool isTask = false;
    using type = T;
};
template<typename T>
struct TaskValue<QCoro::Task<T>>
{
    static constexpr bool isTask = true;
    using type = T;
};

template<typename H>
struct HandlerTraits
{
    using Args = typename CallableTraits<std::decay_t<H>>::Args;
    static constexpr std::size_t arity = std::tuple_size_v<Args>;
    static_assert(arity == 2 || arity == 3,
                  "stage::Actor::spawn: a handler takes (State &, Message &) and returns the reply (or a "
                  "QCoro::Task of it), or takes (State &, Message &, stage::Reply<R> &) and answers through it");
    using Message = std::remove_cvref_t<std::tuple_element_t<1, Args>>;
    using Result = typename CallableTraits<std::decay_t<H>>::Result;
    static constexpr bool async = TaskValue<Result>::isTask;
    using Value = typename TaskValue<Result>::type;
    static constexpr bool replying = arity == 3;
};

template<typename M, typename... Hs>
constexpr std::size_t handlerIndex()
{
    constexpr bool same[] = {std::is_same_v<M, typename HandlerTraits<Hs>::Message>..., false};
    for (std::size_t i = 0; i < sizeof...(Hs); ++i) {
        if (same[i])
            return i;
    }
    return sizeof...(Hs);
}

template<typename M, typename Tuple>
struct HandlerIndexIn;
template<typename M, typename... Hs>
struct HandlerIndexIn<M, std::tuple<Hs...>>
{
    static constexpr std::size_t value = handlerIndex<M, Hs...>();
};

template<typename M, typename... Hs>
constexpr std::size_t handlerCount()
{
    return (std::size_t(std::is_same_v<M, typename HandlerTraits<Hs>::Message>) + ... + 0);
}

template<typename P, typename... Hs>
struct HandlersCheck;
template<typename... Signatures, typename... Hs>
struct HandlersCheck<Protocol<Signatures...>, Hs...>
{
    static constexpr bool everyHandlerInProtocol =
        (ProtocolTraits<Protocol<Signatures...>>::template accepts<typename HandlerTraits<Hs>::Message> && ...);
    static constexpr bool oneHandlerPerMessage =
        ((handlerCount<typename ActorSignature<Signatures>::Message, Hs...>() == 1) && ...);
};

template<typename R, typename H>
constexpr bool handlerResultFits()
{
    using T = HandlerTraits<H>;
    if constexpr (T::replying)
        return std::is_void_v<typename T::Value>;
    else if constexpr (std::is_void_v<R>)
        return std::is_void_v<typename T::Value>;
    else
        return std::is_convertible_v<typename T::Value, R>;
}

template<typename Init>
auto initResult()
{
    if constexpr (std::is_invocable_v<Init &, Worker &>)
        return std::type_identity<std::invoke_result_t<Init &, Worker &>>{};
    else if constexpr (std::is_invocable_v<Init &>)
        return std::type_identity<std::invoke_result_t<Init &>>{};
    else
        return std::type_identity<void>{};
}
template<typename Init>
using InitResult = typename decltype(initResult<Init>())::type;

template<typename Init>
decltype(auto) callInit(Init &init, Worker &worker)
{
    if constexpr (std::is_invocable_v<Init &, Worker &>)
        return init(worker);
    else
        return init();
}

/* Makes \a worker known as run \a run of \a shared (for the chains of its handlers' asks), or
   forgets it: false if another run registered the worker since (an abandoned run ending late). */
STAGE_EXPORT void registerActorWorker(Worker *worker, const std::shared_ptr<ActorShared> &shared, const void *run);
STAGE_EXPORT bool unregisterActorWorker(Worker *worker, const void *run);

/* Clears the actor's running worker when the run ends, however it ends. */
struct ActorRunScope
{
    ActorRunScope(const std::shared_ptr<ActorShared> &s, Worker *w) : shared(s.get()), worker(w)
    {
        shared->worker.store(w, std::memory_order_release);
        shared->homeThread.store(w->thread(), std::memory_order_release);
        registerActorWorker(w, s, this);
    }
    ~ActorRunScope()
    {
        if (unregisterActorWorker(worker, this)) { // not if a newer run has started meanwhile
            shared->handling.store(0, std::memory_order_release); // a handler that threw: no longer waiting
            shared->currentChain.reset();
        }
        Worker *expected = worker;
        shared->worker.compare_exchange_strong(expected, nullptr, std::memory_order_acq_rel);
    }
    ActorRunScope(const ActorRunScope &) = delete;
    ActorRunScope &operator=(const ActorRunScope &) = delete;
    ActorShared *shared;
    Worker *worker;
};

/*
    Keeps an async handler's frame known as the actor's worker's while it runs (so that a Stage
    awaitable after a foreign co_await in it stays a cancellation point), as stage::child() does,
    but awaited directly: the run learns that the handler has returned even when a stop is
    reported right after (stage::child() would throw Cancelled then, and the handled message would
    go back for a second handling).
*/
struct HandlerFrameScope
{
    template<typename T>
    explicit HandlerFrameScope(const QCoro::Task<T> &task)
    {
        if (!task.isReady()) {
            frame = frameOf(task);
            registerFrame(frame, currentWorker());
        }
    }
    ~HandlerFrameScope()
    {
        if (frame)
            unregisterFrame(frame);
    }
    HandlerFrameScope(const HandlerFrameScope &) = delete;
    HandlerFrameScope &operator=(const HandlerFrameScope &) = delete;
    void *frame = nullptr;
};

/* \a handled is set once the handler has returned (and the reply is sent, with no suspension in
   between): a stop reported after that must not put the message back (it would be handled twice). */
template<typename S, typename H, typename State, typename M>
QCoro::Task<> runValueHandler(H &handler, State &state, M &message, std::optional<Reply<S>> &reply, bool *handled)
{
    auto task = std::invoke(handler, state, message);
    HandlerFrameScope scope(task);
    if constexpr (std::is_void_v<typename HandlerTraits<H>::Value>) {
        co_await std::move(task);
        *handled = true;
        if (reply)
            reply->send(S{});
    } else {
        S value = co_await std::move(task);
        *handled = true;
        if (reply)
            reply->send(std::move(value));
    }
}

template<typename H, typename State, typename M, typename S>
QCoro::Task<> runReplyingHandler(H &handler, State &state, M &message, Reply<S> &reply, bool *handled)
{
    auto task = std::invoke(handler, state, message, reply);
    HandlerFrameScope scope(task);
    co_await std::move(task);
    *handled = true;
}

/* Handles letter I: at once for a synchronous handler (returns nullopt), or returns the task.
   \a replying: set when the handler answers through its Reply (and so may defer it). */
template<typename P, std::size_t I, typename State, typename Handlers>
std::optional<QCoro::Task<>> handleLetter(State &state, typename ProtocolTraits<P>::Letter &letters, Handlers &handlers,
                                          const ActorShared *shared, bool &replying, bool *handled)
{
    using M = typename ProtocolTraits<P>::template Message<I>;
    using R = typename ProtocolTraits<P>::template ReplyAt<I>;
    using S = ActorStored<R>;
    auto &letter = std::get<I>(letters);
    constexpr std::size_t h = HandlerIndexIn<M, Handlers>::value;
    auto &handler = std::get<h>(handlers);
    using T = HandlerTraits<std::tuple_element_t<h, Handlers>>;
    if constexpr (T::replying) {
        replying = true;
        if (!letter.reply) // a tell: the handler answers into nothing
            letter.reply.emplace(makeReply<S>().first);
        if constexpr (T::async) {
            return runReplyingHandler(handler, state, letter.message, *letter.reply, handled);
        } else {
            std::invoke(handler, state, letter.message, *letter.reply);
            if (letter.reply->isPending()) {
                warnUnanswered(shared, typeid(M));
                letter.reply.reset(); // broken: the caller gets stage::BrokenReply now
            }
            return std::nullopt;
        }
    } else if constexpr (T::async) {
        return runValueHandler<S>(handler, state, letter.message, letter.reply, handled);
    } else {
        if constexpr (std::is_void_v<typename T::Value>) {
            std::invoke(handler, state, letter.message);
            if (letter.reply)
                letter.reply->send(S{});
        } else {
            S value = std::invoke(handler, state, letter.message);
            if (letter.reply)
                letter.reply->send(std::move(value));
        }
        return std::nullopt;
    }
}

template<typename P, typename State, typename Handlers, std::size_t... I>
std::optional<QCoro::Task<>> dispatchLetter(State &state, typename ProtocolTraits<P>::Letter &letters,
                                            Handlers &handlers, const ActorShared *shared, bool &replying,
                                            bool *handled, std::index_sequence<I...>)
{
    std::optional<QCoro::Task<>> task;
    const std::size_t index = letters.index();
    (void)((index == I ? (task = handleLetter<P, I>(state, letters, handlers, shared, replying, handled), true)
                       : false)
           || ...);
    return task;
}

/* One run of an actor: init, then one message at a time until stopped (or the mailbox closes). */
template<typename P, typename State, typename Init, typename Handlers>
QCoro::Task<> actorRun(Worker &worker, Mailbox<ActorEnvelope<P>> mailbox, std::shared_ptr<ActorShared> shared,
                       std::shared_ptr<Init> init, std::shared_ptr<Handlers> handlers)
{
    ActorRunScope scope(shared, &worker);
    std::optional<State> state;
    if constexpr (TaskValue<InitResult<Init>>::isTask)
        state.emplace(co_await stage::child(callInit(*init, worker)));
    else
        state.emplace(callInit(*init, worker));
    for (;;) {
        std::optional<Delivery<ActorEnvelope<P>>> delivery;
        try {
            delivery.emplace(co_await mailbox.receive());
        } catch (const MailboxClosed &) {
            co_return; // the actor was destroyed: nothing more will come
        }
        ActorEnvelope<P> &envelope = **delivery;
        if (envelope.deadline != ActorClock::time_point::max() && coarseNow() >= envelope.deadline) {
            // Its caller has timed out: dropped unprocessed (acknowledged), counted.
            std::visit([](auto &letter) {
                if (letter.reply)
                    letter.reply->fail(AskExpired());
            }, envelope.letter);
            shared->noteExpired();
            continue;
        }
        // Busy with this message until its handler returns: an ask that comes back to this actor
        // from the actors its handler asks (the chain) closes a cycle.
        shared->beginMessage(++shared->lastSerial, envelope.chain);
        bool replying = false;
        bool handled = false; // an async handler's task has returned
        std::optional<QCoro::Task<>> pending = dispatchLetter<P>(*state, envelope.letter, *handlers, shared.get(),
                                                                 replying, &handled,
                                                                 std::make_index_sequence<ProtocolTraits<P>::count>());
        if (pending) {
            try {
                co_await stage::child(std::move(*pending));
            } catch (const Cancelled &) {
                // A stop that came after the handler had returned: the message was handled (its
                // reply sent), so it is acknowledged, not put back for a second handling.
                if (handled)
                    delivery->ack();
                throw;
            }
        }
        shared->endMessage(replying);
        worker.heartbeat(); // one iteration per message handled
    } // acknowledged here: the handler returned (a throw puts the envelope back, reply and all)
}

template<typename T>
struct BlockingAsk
{
    std::mutex mutex;
    std::condition_variable settled;
    bool done = false;
    std::optional<T> value;
    std::exception_ptr error;

    void finish()
    {
        std::lock_guard lock(mutex);
        done = true;
        settled.notify_all();
    }
    /* False if not done by \a deadline. */
    bool wait(ActorClock::time_point deadline)
    {
        std::unique_lock lock(mutex);
        return settled.wait_until(lock, deadline, [this] { return done; });
    }
};

template<typename T>
QCoro::Task<> runBlockingAsk(QCoro::Task<T> ask, std::shared_ptr<BlockingAsk<ActorStored<T>>> out)
{
    try {
        if constexpr (std::is_void_v<T>) {
            co_await std::move(ask);
            out->value.emplace();
        } else {
            out->value.emplace(co_await std::move(ask));
        }
    } catch (...) {
        out->error = std::current_exception();
    }
    out->finish();
}

} // namespace detail

/*!
    The address of an actor: a reference to its mailbox, the actor's single identity. Copies
    share it; it stays valid across every restart of the actor (the mailbox is created with the
    actor, outside its restart factory), so a reference taken once never points at a dead
    incarnation.

    \code
    stage::ActorRef<AdderProtocol> adder = actor->ref();
    adder.tell(Reset{});                                  // SendStatus, never blocks
    int sum = co_await adder.ask(Add{1, 2});              // the handler's int, or an exception
    adder.askFuture(Add{1, 2}, 2s).then(this, [this](int sum) { show(sum); });
    int again = adder.askBlocking(Add{1, 2});             // from a std::thread
    \endcode

    Compile time: tell(), ask() and askFuture() accept only the messages of \a P (another type is
    a static_assert: "the actor does not handle this message type"), and return each one's reply
    type.

    Thread: every function may be called from any thread; a reference may be copied anywhere.
    Order: FIFO per sender, as the mailbox.
    What is lost: nothing silently. A tell is queued (then handled at least once: a handler that
    throws gets it again after the actor's restart, until it is dead-lettered) or its status
    says why not. An ask ends exactly once: the handler's answer, or an exception (see ask()).
    A null (default-constructed) reference refuses everything: tell() returns
    SendStatus::Closed with a warning under stage.actor; ask(), askFuture() and askBlocking()
    fail with stage::InvalidOperation.
*/
template<typename P>
class ActorRef
{
    using Traits = detail::ProtocolTraits<P>;
    using Envelope = detail::ActorEnvelope<P>;

public:
    /*! A null reference (see isNull()). */
    ActorRef() = default;

    /*! True for a default-constructed reference, which names no actor: tell() and ask() on it fail (see there). Thread: any. */
    bool isNull() const noexcept { return !m_shared; }
    /*! The actor's objectName() (kept current), for messages; empty for a null reference. Thread: any. */
    QString name() const { return m_shared ? m_shared->name() : QString(); }
    /*! Messages queued now. */
    int count() const { return m_mailbox ? m_mailbox->count() : 0; }

    /*!
        Queues \a message for the actor, fire and forget. Never blocks, never suspends.
        Returns SendStatus::Sent once queued; SendStatus::Full if the actor's mailbox is bounded
        (Actor(capacity)) and full; SendStatus::Closed if the actor has been destroyed (or the
        reference is null). Unless Sent, \a message is dropped: the status is the only report.
        Thread: any. A queued tell whose handler throws is redelivered to the restarted actor, and
        dead-lettered (kept in the mailbox's dead letters) after maxRedeliveries() failures.
    */
    template<typename M>
    SendStatus tell(M message) const
    {
        static_assert(Traits::template accepts<M>,
                      "stage::ActorRef::tell: the actor does not handle this message type (it is not in its "
                      "stage::Protocol)");
        if (!m_mailbox) {
            detail::warnNullActorRef("ActorRef::tell");
            return SendStatus::Closed;
        }
        using R = typename detail::ActorReplyOf<P, M>::type;
        return m_mailbox->trySend(
            Envelope::template make<M, R>(std::move(message), std::nullopt, detail::ActorClock::time_point::max()));
    }

    /*!
        Asks the actor: queues \a message with a reply, and completes with the handler's answer
        (the reply type of M in the protocol; nothing for void).

        \a timeout: negative (the default) uses the actor's askTimeout() (5000 ms unless set); it
        runs from the call. 0 is refused.

        Thread: a coroutine on any thread with a Stage-aware event loop (a QThread's, the main
        thread's); it resumes there. From a thread without one, use askBlocking().
        Errors, each exactly once: the handler's answer, or
        \list
        \li stage::TimeoutError if no answer came within the timeout; its what() names the
            actor, the message type and the duration. The ask is then dropped unprocessed if
            the actor dequeues it later (counted in Actor::expiredAsks()); a handler that was
            already running goes on, and its answer is discarded. The deadline is read from the
            coarse monotonic clock: an actor that dequeues the ask just then may drop it a few
            ms before the caller's own timer fires, which then ends the ask the same way.
        \li stage::DeadLettered (a stage::BrokenReply) if the message was dead-lettered: its
            handler threw more than the mailbox's maxRedeliveries() times; what() carries the
            handler's exception.
        \li stage::BrokenReply if the actor was destroyed with the ask queued, or a handler that
            answers through its stage::Reply<R> dropped it unanswered.
        \li stage::MailboxClosed if the actor was destroyed before the ask was queued.
        \li stage::InvalidOperation at once, nothing queued: a null reference, a zero
            \a timeout, or the actor asking itself from its own handler (it would wait for
            itself: tell() it, or call the code directly). The self check sees the actor's
            worker; after a foreign (non-Stage) co_await in the handler it cannot, and such a
            self-ask ends in the timeout.
        \endlist
        A handler that throws does not fail the ask: the envelope goes back (reply intact) and
        the restarted actor answers it. Nor does a restart or a stop of the actor: a queued ask
        waits for the next run.
        Ask cycles: an ask made from a handler (or from work a replying handler deferred)
        carries the chain of asking actors. If it reaches an actor still in the handler that
        waits for it (A's handler asks B, whose handler asks A), a warning under stage.actor
        names the cycle ("ask cycle: A -> B -> A") and the ask ends in its timeout, whose
        TimeoutError ends with "(ask cycle: A -> B -> A)". Undetected (and so unnamed, still
        ended by the timeout): asks from other threads than the handler's, after a foreign
        co_await in the handler, and askFuture() asks whose reply a handler defers.
        Cancellation: a cancellation point (with a bounded mailbox that is full, while waiting
        for room too). If cancelled before it was queued, nothing was sent; after, the ask stays
        queued and its answer is discarded.
    */
    template<typename M>
    QCoro::Task<typename detail::ActorReplyOf<P, M>::type>
    ask(M message, std::chrono::milliseconds timeout = std::chrono::milliseconds(-1)) const
    {
        static_assert(Traits::template accepts<M>,
                      "stage::ActorRef::ask: the actor does not handle this message type (it is not in its "
                      "stage::Protocol)");
        using R = typename detail::ActorReplyOf<P, M>::type;
        std::exception_ptr refused;
        if (detail::mayRefuse(m_shared.get(), timeout))
            refused = detail::askRefusal(m_shared.get(), timeout, "ActorRef::ask", typeid(M), false);
        if (!m_mailbox) // refused: runAsk throws before it reads the mailbox
            return runAsk<M, R>(Mailbox<Envelope>(), m_shared, std::move(message), timeout, std::move(refused), {});
        detail::AskContext context;
        if (!refused)
            context = detail::askContext(m_shared.get(), "ActorRef::ask", typeid(M));
        return runAsk<M, R>(*m_mailbox, m_shared, std::move(message), timeout, std::move(refused), std::move(context));
    }

    /*!
        ask() for slot code: the answer as a QFuture, through stage::request(). The future holds
        the answer, or the exception ask() would throw (the same list), never a bare cancel.

        \code
        adder.askFuture(Add{1, 2}).then(this, [this](int sum) { label->setNum(sum); })
             .onFailed(this, [this](const stage::Error &e) { label->setText(e.what()); });
        \endcode

        Thread: the calling thread must run an event loop: the future is finished there, never
        inside askFuture(), so QFuture::then(context, ...) runs on context's thread (use
        stage::then() when the context may die first). Refusals (null reference, zero timeout,
        self-ask) arrive the same way, as the future's stage::InvalidOperation.
        Nothing is lost: the ask is queued, or the future says why not.
        Cancellation: cancelling the future withdraws nothing; the answer is discarded.
    */
    template<typename M>
    QFuture<typename detail::ActorReplyOf<P, M>::type>
    askFuture(M message, std::chrono::milliseconds timeout = std::chrono::milliseconds(-1)) const
    {
        static_assert(Traits::template accepts<M>,
                      "stage::ActorRef::askFuture: the actor does not handle this message type (it is not in "
                      "its stage::Protocol)");
        using R = typename detail::ActorReplyOf<P, M>::type;
        using S = detail::ActorStored<R>;
        std::exception_ptr refused;
        if (detail::mayRefuse(m_shared.get(), timeout))
            refused = detail::askRefusal(m_shared.get(), timeout, "ActorRef::askFuture", typeid(M), false);
        const std::chrono::milliseconds effective =
            m_shared ? m_shared->effectiveTimeout(timeout) : std::chrono::milliseconds(1);
        const auto deadline = detail::deadlineAfter(effective);
        detail::AskContext context;
        if (!refused)
            context = detail::askContext(m_shared.get(), "ActorRef::askFuture", typeid(M));
        // The chain's reply liveness is not watched here (the future holds the receiver): a
        // handler that defers this ask's reply does not keep its chain.
        QFuture<S> answer = stage::request<S>(
            m_mailbox ? *m_mailbox : Mailbox<Envelope>(),
            [&message, &refused, &context, deadline](Reply<S> reply) -> Envelope {
                if (refused)
                    std::rethrow_exception(refused);
                return Envelope::template make<M, R>(std::move(message), std::move(reply), deadline,
                                                     std::move(context.chain));
            },
            effective);
        std::shared_ptr<detail::ActorShared> shared = m_shared;
        auto mapError = [shared, effective, cycle = std::move(context.cycle)]() -> R {
            detail::rethrowAskError(std::current_exception(), shared.get(), typeid(M), effective, cycle);
        };
        if constexpr (std::is_void_v<R>)
            return answer.then(QtFuture::Launch::Sync, [](std::monostate) {}).onFailed(std::move(mapError));
        else
            return answer.onFailed(std::move(mapError));
    }

    /*!
        ask() for a thread without an event loop (a std::thread, a thread pool's task): blocks
        the calling thread until the answer, and returns it or throws what ask() would throw.
        The ask itself runs as a coroutine on the thread the actor (its QObject) lives on, whose
        event loop must run; the calling thread only waits.
        Thread: any thread but the actor's own (stage::InvalidOperation: it would wait for
        itself). Avoid it on a GUI thread: prefer askFuture(). stage::MailboxClosed if the actor
        has been destroyed.
        Cancellation: none; it is bounded by the timeout.
    */
    template<typename M>
    typename detail::ActorReplyOf<P, M>::type askBlocking(M message,
                                                          std::chrono::milliseconds timeout = std::chrono::milliseconds(-1)) const
    {
        static_assert(Traits::template accepts<M>,
                      "stage::ActorRef::askBlocking: the actor does not handle this message type (it is not in "
                      "its stage::Protocol)");
        using R = typename detail::ActorReplyOf<P, M>::type;
        if (std::exception_ptr refused =
                detail::askRefusal(m_shared.get(), timeout, "ActorRef::askBlocking", typeid(M), true))
            std::rethrow_exception(refused);
        const std::chrono::milliseconds effective = m_shared->effectiveTimeout(timeout);
        auto out = std::make_shared<detail::BlockingAsk<detail::ActorStored<R>>>();
        detail::AskContext context = detail::askContext(m_shared.get(), "ActorRef::askBlocking", typeid(M));
        // The ask runs as a coroutine on the actor's thread (its event loop); this thread waits.
        const bool posted = m_shared->postToNode(
            [mailbox = *m_mailbox, shared = m_shared, message = std::move(message), effective, out,
             context = std::move(context)]() mutable {
                detail::runBlockingAsk<R>(runAsk<M, R>(mailbox, std::move(shared), std::move(message), effective,
                                                       nullptr, std::move(context)),
                                          out);
            });
        if (!posted)
            detail::throwMailboxClosed("stage::ActorRef::askBlocking");
        // The ask's own timer ends it at the deadline; the margin only guards against a stuck loop.
        if (!out->wait(detail::deadlineAfter(effective) + std::chrono::seconds(5)))
            detail::rethrowAskError(std::make_exception_ptr(TimeoutError("askBlocking")), m_shared.get(), typeid(M),
                                    effective);
        if (out->error)
            std::rethrow_exception(out->error);
        if constexpr (!std::is_void_v<R>)
            return std::move(*out->value);
    }

    friend bool operator==(const ActorRef &a, const ActorRef &b) { return a.m_shared == b.m_shared; }

private:
    template<typename>
    friend class Actor;
    friend struct detail::ActorRefAccess;
    ActorRef(Mailbox<Envelope> mailbox, std::shared_ptr<detail::ActorShared> shared)
        : m_mailbox(std::move(mailbox)), m_shared(std::move(shared))
    {}

    // \a mailbox is read only before the first suspension, while the caller's reference lives
    // (a full mailbox: copied first); \a shared is kept for the error's text.
    // \a context: the chain of asking actors (an ask from a handler), and the cycle it closes.
    template<typename M, typename R>
    static QCoro::Task<R> runAsk(const Mailbox<Envelope> &mailbox, std::shared_ptr<detail::ActorShared> shared,
                                 M message, std::chrono::milliseconds timeout, std::exception_ptr refused,
                                 detail::AskContext context)
    {
        using S = detail::ActorStored<R>;
        if (refused)
            std::rethrow_exception(refused);
        const std::chrono::milliseconds effective = shared->effectiveTimeout(timeout);
        // The coarse clock: a deadline a few ms early at worst (the actor may drop the ask that
        // much before this caller's own timer fires; the caller then reports its timeout).
        const auto deadline = detail::coarseNow() + effective;
        auto replyPair = makeReply<S>();
        ReplyReceiver<S> answer = std::move(replyPair.second);
        if (context.chain)
            context.chain->watch(detail::ReplyAccess::stateOf(answer));
        Envelope envelope = Envelope::template make<M, R>(std::move(message), std::move(replyPair.first), deadline,
                                                          std::move(context.chain));
        std::chrono::milliseconds wait = effective;
        if (mailbox.trySend(std::move(envelope)) != SendStatus::Sent) { // moved from only when Sent
            Mailbox<Envelope> keep = mailbox; // before suspending: the caller's reference may go
            co_await keep.send(std::move(envelope)); // full: waits for room; closed: MailboxClosed
            wait = detail::remainingUntil(deadline);
        }
        std::exception_ptr error;
        try {
            if constexpr (std::is_void_v<R>) {
                co_await answer.wait(wait);
                co_return;
            } else {
                co_return co_await answer.wait(wait);
            }
        } catch (const Cancelled &) {
            throw;
        } catch (...) {
            error = std::current_exception();
        }
        detail::rethrowAskError(error, shared.get(), typeid(M), effective, context.cycle);
    }

    std::optional<Mailbox<Envelope>> m_mailbox;
    std::shared_ptr<detail::ActorShared> m_shared;
};

/*!
    The QObject side of every stage::Actor<P>: a stage::Group of exactly one worker, so an actor
    is a node like any other (states, statistics, restarts by its restart type and backoff,
    shutdown, a stage::Supervisor's child, a row in SupervisionTreeModel) with what actors add:
    the default ask timeout and the count of asks dropped because their caller had given up.

    Thread: used from the thread it lives in, like a Group; the actor's handlers run on that
    thread or, with threadCount() 1, on a thread the actor owns.
*/
class STAGE_EXPORT ActorBase : public stage::Group // qualified: moc records the base by name
{
    Q_OBJECT
    Q_CLASSINFO("StageKind", "Actor") // SupervisionTreeModel's KindRole
    Q_PROPERTY(int askTimeout READ askTimeout WRITE setAskTimeout NOTIFY askTimeoutChanged)
    Q_PROPERTY(qint64 expiredAsks READ expiredAsks NOTIFY statisticsChanged)

public:
    ~ActorBase() override;

    /*!
        The timeout of an ask that names none, in ms: 5000 by default (gen_server's). Values
        < 1 are refused with a warning under stage.actor. Thread: the actor's; read by asks on
        any thread.
    */
    int askTimeout() const;
    /*! Sets askTimeout() (NOTIFY askTimeoutChanged()); < 1 is refused with a warning. Thread: the actor's. */
    void setAskTimeout(int milliseconds);

    /*! Asks dropped unprocessed when dequeued because their caller's timeout had passed. Thread: any. */
    qint64 expiredAsks() const;

    /*! An actor is a group of exactly one worker: any size but 1 is refused with a warning. */
    void setSize(int size);

Q_SIGNALS:
    /*! askTimeout() changed to \a milliseconds. */
    void askTimeoutChanged(int milliseconds);
    /*!
        The actor went down: emitted once per failed run (a handler or init threw, or the run was
        abandoned), with the failure's reason (the exception's what()), before the restart is
        decided; and once with "destroyed" when the actor is destroyed. Not for a stop or a
        restart asked for (they lose nothing: see stopped() and stateChanged()).
        Thread: the actor's QObject thread. See stage::monitor() to watch it through a reference.
    */
    void down(const QString &reason);

protected:
    /// \cond internal
    explicit ActorBase(QObject *parent = nullptr);
    const std::shared_ptr<detail::ActorShared> &sharedState() const noexcept { return m_shared; }
    /* Spawns the actor's run; false (with a warning) if already spawned. */
    bool spawnRun(WorkerFactory factory);
    /// \endcond

private:
    friend class detail::ActorShared;
    void noteStatistics();

    std::shared_ptr<detail::ActorShared> m_shared;
};

/*!
    An actor: state plus one typed handler per message of its protocol \a P, one message at a
    time, on a group of one worker. Its address, ref(), survives every restart.

    \code
    struct Add { int a, b; };
    struct Total {};
    using AdderProtocol = stage::Protocol<int(Add), int(Total)>;

    auto *adder = new stage::Actor<AdderProtocol>(parent);      // unbounded mailbox
    adder->setObjectName("adder");
    adder->spawn([] { return 0; },                              // init: the state (an int here)
                 [](int &total, const Add &m) { total += m.a + m.b; return m.a + m.b; },
                 [](int &total, const Total &) { return total; });
    stage::ActorRef<AdderProtocol> ref = adder->ref();
    int three = co_await ref.ask(Add{1, 2});
    \endcode

    Init: spawn()'s first argument builds the state, on the actor's thread, at the start of
    every run: the first start and every restart (state is not kept across a restart, as in
    OTP and Akka). It takes a stage::Worker & or nothing and returns the state or a
    QCoro::Task of it; if it throws, the run fails like a handler that throws.

    Handlers: exactly one per message of \a P (a static_assert otherwise), non-generic
    callables (lambdas, function pointers) of one of two shapes:
    \list
    \li (State &, const M &) returning the reply R (or QCoro::Task<R>; void for a void reply):
        the runtime answers the ask with the returned value.
    \li (State &, M &, stage::Reply<S> &) returning void (or QCoro::Task<>), S being R (or
        std::monostate for void): the handler answers through the reply, now or later: move
        the Reply out to answer after returning (gen_server's noreply + reply/2), for instance
        after asking another actor. A handler that returns with the reply still in place and
        unanswered is a bug: a warning, and the caller gets stage::BrokenReply at once. For a
        tell the Reply answers nobody.
    \endlist
    The message is passed by reference to the envelope the runtime keeps (take it by value to
    copy it); a handler may modify it, and a redelivery sees the modified message.

    Delivery: a message is acknowledged once its handler has returned (an async handler: once
    its task has finished). The runtime, not the handler, holds an ask's Reply until then: if
    the handler throws (or init does), the whole envelope, reply included, goes back to the
    front of the mailbox, the run fails, and the group restarts the actor (its restart type
    and backoff: by default Transient, exponential backoff from 10 ms) with a fresh state; the
    restarted actor answers it. A message whose handler threw more than maxRedeliveries() times
    (default 3) is dead-lettered: its caller gets stage::DeadLettered with the last exception's
    what(); the next messages are handled normally. A stop or restart (Node::stop(),
    Node::restart(), a supervisor's strategy, shutdown) is not queued behind the messages: it
    takes effect at the handler's next Stage awaitable, or between two messages; a message it
    interrupts goes back uncounted.
    An ask dequeued after its caller's deadline is dropped unprocessed and counted
    (expiredAsks()).

    Lifetime: destroying the actor stops it (bounded by shutdownTimeout()) and closes its
    mailbox: asks still queued fail at once with stage::BrokenReply, later tells return
    SendStatus::Closed, later asks fail with stage::MailboxClosed.

    Defaults: unbounded mailbox (Actor(capacity, parent) for a bounded one; tell() then returns
    SendStatus::Full when it is full, ask() waits for room), askTimeout() 5000 ms,
    maxRedeliveries() 3, and a Group's defaults otherwise (size 1, fixed).
    Thread: the actor is used from the thread it lives in; handlers and init run on its
    thread, or with setThreadCount(1) (before spawn()) on a thread the actor owns; handlers
    are never called concurrently.
    Bad input: spawn() twice or after shutdown is refused with a warning under stage.group
    (false); a handler set that does not match \a P is a compile error.
*/
template<typename P>
class Actor : public ActorBase
{
    using Envelope = detail::ActorEnvelope<P>;

public:
    /*! An actor with an unbounded mailbox. */
    explicit Actor(QObject *parent = nullptr) : ActorBase(parent), m_mailbox(this) { setUp(); }
    /*! An actor whose mailbox holds at most \a capacity messages (>= 1; else a warning and 1). */
    explicit Actor(int capacity, QObject *parent = nullptr) : ActorBase(parent), m_mailbox(capacity, this) { setUp(); }

    /*!
        Sets the actor's init and handlers and starts it (a root from the event loop; under a
        supervisor when the supervisor starts it), like Group::spawn(). See the class
        documentation for the shapes. False, with a warning, if the actor was spawned already.
    */
    template<typename Init, typename... Handlers>
    bool spawn(Init init, Handlers... handlers)
    {
        static_assert(!std::is_void_v<detail::InitResult<Init>>,
                      "stage::Actor::spawn: init takes a stage::Worker & (or nothing) and returns the state "
                      "(or a QCoro::Task of it)");
        using State = std::remove_cvref_t<typename detail::TaskValue<detail::InitResult<Init>>::type>;
        static_assert(!std::is_void_v<State>, "stage::Actor::spawn: init must return the state");
        static_assert((detail::NonGenericCallable<Handlers> && ...),
                      "stage::Actor::spawn: a handler must not be generic (no auto parameters): its message "
                      "type tells which message it handles");
        using Check = detail::HandlersCheck<P, Handlers...>;
        static_assert(Check::everyHandlerInProtocol,
                      "stage::Actor::spawn: a handler takes a message type that is not in the actor's "
                      "stage::Protocol");
        static_assert(Check::oneHandlerPerMessage,
                      "stage::Actor::spawn: every message of the protocol needs exactly one handler");
        static_assert((detail::handlerResultFits<
                           typename detail::ActorReplyOf<P, typename detail::HandlerTraits<Handlers>::Message>::type,
                           Handlers>()
                       && ...),
                      "stage::Actor::spawn: a handler's result does not match its message's reply type in the "
                      "protocol (a replying handler, taking the stage::Reply<R> &, returns void)");
        using Tuple = std::tuple<Handlers...>;
        auto initFn = std::make_shared<Init>(std::move(init));
        auto table = std::make_shared<Tuple>(std::move(handlers)...);
        return spawnRun([mailbox = m_mailbox, shared = sharedState(), initFn, table](Worker &worker) {
            return detail::actorRun<P, State, Init, Tuple>(worker, mailbox, shared, initFn, table);
        });
    }

    /*! The actor's address, the same for its whole life, across restarts. Thread: any. */
    ActorRef<P> ref() const { return ActorRef<P>(m_mailbox, sharedState()); }

    /*! See Mailbox::maxRedeliveries(): how many failures a message survives (default 3). */
    int maxRedeliveries() const { return m_mailbox.maxRedeliveries(); }
    /*! See Mailbox::setMaxRedeliveries(). Thread: any. */
    void setMaxRedeliveries(int count) { m_mailbox.setMaxRedeliveries(count); }
    /*! The dead letters (messages whose handler kept throwing), oldest first. */
    std::vector<DeadLetter<Envelope>> takeDeadLetters() const { return m_mailbox.takeDeadLetters(); }
    /*! How many dead letters are kept now. Thread: any. */
    int deadLetterCount() const { return m_mailbox.deadLetterCount(); }

private:
    void setUp()
    {
        setMailbox(m_mailbox.object());
        // Destroyed with the actor (its QObject child), after the run has ended: what is still
        // queued can never be handled; dropping it breaks the asks' replies at once.
        QObject::connect(m_mailbox.object(), &QObject::destroyed, [mailbox = m_mailbox]() {
            while (auto delivery = mailbox.tryReceive()) {
            }
        });
    }

    Mailbox<Envelope> m_mailbox;
};

namespace detail {

template<typename T>
inline constexpr bool isGadget = QtPrivate::IsGadgetHelper<T>::IsRealGadget;

template<typename R>
QVariant replyToVariant(R &value)
{
    if constexpr (isGadget<R>)
        return gadgetToMap(R::staticMetaObject, &value);
    else
        return QVariant::fromValue(std::move(value));
}

/* Adds the variant form of message M (reply R) of \a ref's protocol, if M is a usable Q_GADGET. */
template<typename P, typename M, typename R>
void addVariantMessage(ActorVariantMessages &out, const ActorRef<P> &ref)
{
    if constexpr (isGadget<M> && std::is_default_constructible_v<M>
                  && (std::is_void_v<R> || std::is_copy_constructible_v<R>)) {
        ActorVariantMessage entry;
        entry.metaObject = &M::staticMetaObject;
        entry.type = gadgetTypeName(M::staticMetaObject);
        entry.ask = [ref](const QVariantMap &fields, std::chrono::milliseconds timeout, QFuture<QVariant> *answer,
                          QString *error) {
            M message{};
            if (!readGadgetFields(M::staticMetaObject, &message, fields, error))
                return false;
            // Sync: on the thread that finishes askFuture()'s future (the caller's); a failure
            // skips the continuation and stays in the future, typed.
            if constexpr (std::is_void_v<R>)
                *answer = ref.askFuture(std::move(message), timeout).then(QtFuture::Launch::Sync, [] { return QVariant(); });
            else
                *answer = ref.askFuture(std::move(message), timeout).then(QtFuture::Launch::Sync, [](R value) {
                    return replyToVariant(value);
                });
            return true;
        };
        entry.tell = [ref](const QVariantMap &fields, SendStatus *status, QString *error) {
            M message{};
            if (!readGadgetFields(M::staticMetaObject, &message, fields, error))
                return false;
            *status = ref.tell(std::move(message));
            return true;
        };
        out.push_back(std::move(entry));
    }
}

template<typename P, std::size_t... I>
std::shared_ptr<const ActorVariantMessages> variantMessages(const ActorRef<P> &ref, std::index_sequence<I...>)
{
    auto out = std::make_shared<ActorVariantMessages>();
    (addVariantMessage<P, typename ProtocolTraits<P>::template Message<I>, typename ProtocolTraits<P>::template ReplyAt<I>>(
         *out, ref),
     ...);
    return out;
}

} // namespace detail

namespace detail {
struct RegistryAccess; // src/actor.cpp
}

/*!
    A directory of actors by name: the references stay valid across the actors' restarts, and an
    entry goes when its actor is destroyed. There is one global registry (global(), used by
    registerActor() and by QML's Stage.ask()), and any number of scoped ones: a Registry made the
    child of a stage::Supervisor (or of any QObject) serves that subtree, so that the actors of
    one subtree find each other by name without clashing with another subtree's.

    \code
    auto *sessions = new stage::Supervisor(&root);
    auto *names = new stage::Registry(sessions);            // serves sessions' subtree
    auto *cache = new stage::Actor<CacheProtocol>;
    sessions->addChild(cache);
    names->add("cache", cache->ref());
    // From any node of the subtree (here a worker's group): the nearest registry first, then the
    // registries above it, then the global one.
    auto ref = stage::Registry::lookup<CacheProtocol>(someGroupUnderSessions, "cache");
    \endcode

    Names are unique per registry: adding a name that another actor holds is refused (a warning
    under stage.actor naming both actors and the registry, and false); adding the same actor under
    the same name again is a no-op (true). A name may be held in several registries: lookup()
    finds the nearest.

    Lifetime: an entry is removed when its actor is destroyed (before ActorBase's destructor
    returns), or by remove(); destroying a registry drops its entries. The registry holds
    references (ActorRef copies), not the actors: it keeps no actor alive.
    Thread: add(), find(), remove(), contains() and names() from any thread (the registries share
    one mutex). namesChanged() is queued to the registry's thread (its event loop emits it after
    the change, also when the change was made there); the global registry lives on the
    application's thread (or, used before a QCoreApplication exists, on the thread that first
    used it). nearest() and lookup() walk QObject parents: call them on the
    thread of the object they start from.
    Bad input: an empty name or a null reference: a warning under stage.actor, and false.
*/
class STAGE_EXPORT Registry : public QObject
{
    Q_OBJECT
    Q_PROPERTY(QStringList names READ names NOTIFY namesChanged)
    Q_PROPERTY(int count READ count NOTIFY namesChanged)

public:
    /*! A registry for the subtree of \a parent (typically a Supervisor): lookups from a node
        under \a parent find it first. Thread: the registry's QObject thread. */
    explicit Registry(QObject *parent = nullptr);
    ~Registry() override;

    /*! The process-wide registry (objectName "global"); never destroyed. Thread: any. */
    static Registry *global();
    /*!
        The registry that serves \a object: a Registry among the children of \a object or of its
        nearest ancestor that has one; global() if none does (or \a object is null). A Registry
        passed in serves itself. Thread: \a object's.
    */
    static Registry *nearest(const QObject *object);

    /*!
        Registers \a ref under \a name. True once registered (or if this very actor already
        holds \a name here). False, with a warning under stage.actor, when another actor holds
        \a name in this registry (remove() it first), for an empty \a name, or a null \a ref.
        Registering one actor under several names is allowed. Thread: any.
    */
    template<typename P>
    bool add(const QString &name, const ActorRef<P> &ref)
    {
        return addEntry(name, makeEntry(ref), "Registry::add");
    }
    /*!
        The reference registered here as \a name, or a null one if there is none, or if its actor
        has another protocol than \a P (then with a warning naming both). This registry only.
        Thread: any.
    */
    template<typename P>
    ActorRef<P> find(const QString &name) const
    {
        return typed<P>(entry(name), name, "Registry::find");
    }
    /*!
        Looks \a name up from \a from: in nearest(\a from), then in each registry further up the
        QObject parents of \a from, then in global(); the first that holds \a name answers (a
        nearer name shadows a farther one; an entry there with another protocol than \a P gives a
        null reference and a warning, without looking further). A null reference if none holds it.
        Thread: \a from's (null \a from: the global registry only, any thread).
    */
    template<typename P>
    static ActorRef<P> lookup(const QObject *from, const QString &name)
    {
        return typed<P>(lookupEntry(from, name), name, "Registry::lookup");
    }

    /*! Removes \a name; false if this registry does not hold it. Thread: any. */
    bool remove(const QString &name);
    /*! Whether this registry holds \a name. Thread: any. */
    bool contains(const QString &name) const;
    /*! The names held here, sorted. Thread: any. */
    QStringList names() const;
    /*! How many names are held here. Thread: any. */
    int count() const;

Q_SIGNALS:
    /*! A name was added or removed (an actor's destruction included). On the registry's thread. */
    void namesChanged();

private:
    template<typename P>
    friend bool registerActor(const QString &name, const ActorRef<P> &ref);
    template<typename P>
    friend ActorRef<P> registeredActor(const QString &name);
    friend struct detail::RegistryAccess;

    template<typename P>
    static detail::RegisteredActor makeEntry(const ActorRef<P> &ref)
    {
        if (ref.isNull())
            return {};
        return detail::RegisteredActor{
            std::make_shared<ActorRef<P>>(ref), &typeid(P), detail::ActorRefAccess::shared(ref),
            detail::variantMessages(ref, std::make_index_sequence<detail::ProtocolTraits<P>::count>())};
    }
    template<typename P>
    static ActorRef<P> typed(const detail::RegisteredActor &entry, const QString &name, const char *function)
    {
        if (!entry.ref)
            return ActorRef<P>();
        if (*entry.protocol != typeid(P)) {
            detail::warnActorProtocol(function, name, *entry.protocol, typeid(P));
            return ActorRef<P>();
        }
        return *static_cast<const ActorRef<P> *>(entry.ref.get());
    }
    bool addEntry(const QString &name, detail::RegisteredActor actor, const char *function);
    detail::RegisteredActor entry(const QString &name) const;
    static detail::RegisteredActor lookupEntry(const QObject *from, const QString &name);
    void notifyChanged(); // with the registries' mutex held

    std::map<QString, detail::RegisteredActor> m_entries; // guarded by the registries' mutex
};

/*!
    Registers the actor behind \a ref under \a name in the global registry (Registry::global()),
    for code that cannot be handed the reference: `stage::registeredActor<AdderProtocol>("adder")`.
    The reference survives the actor's restarts, and so does the entry; it is removed when the
    actor is destroyed (or by unregisterActor()). Names are unique: registering a name that
    another actor holds is refused (a warning, false); the same actor again is a no-op (true).

    From QML: the messages of \a P that are Q_GADGETs (their Q_PROPERTYs are the fields;
    default-constructible, with a void or copyable reply) can be sent by name, without their C++
    type: `Stage.ask("adder", "Add", {a: 1, b: 2})` (a JS Promise of the reply) and
    `Stage.tell(...)` in `import Stage`. Other messages stay C++-only.

    \code
    struct Add { Q_GADGET Q_PROPERTY(int a MEMBER a) Q_PROPERTY(int b MEMBER b) public: int a = 0, b = 0; };
    \endcode

    Thread: any (the registry is guarded by a mutex).
    Bad input: an empty \a name or a null \a ref: a warning under stage.actor, and false.
*/
template<typename P>
bool registerActor(const QString &name, const ActorRef<P> &ref)
{
    return Registry::global()->addEntry(name, Registry::makeEntry(ref), "registerActor");
}

/*!
    The reference registered as \a name in the global registry (registerActor()), or a null
    reference (ActorRef::isNull()) if there is none, or if the actor registered there has another
    protocol than \a P (then with a warning under stage.actor naming both). Thread: any.
*/
template<typename P>
ActorRef<P> registeredActor(const QString &name)
{
    return Registry::typed<P>(Registry::global()->entry(name), name, "registeredActor");
}

/*! Removes actor \a name from the global registry; false if it was not registered. Thread: any. */
STAGE_EXPORT bool unregisterActor(const QString &name);
/*! The names in the global registry, sorted. Thread: any. */
STAGE_EXPORT QStringList registeredActors();

/*!
    Monitors the actor behind \a ref: \a callback(reason) runs on \a context's thread each time
    the actor goes down (ActorBase::down(): once per failed run, with the failure's what(), and
    once with "destroyed"). The reference survives restarts, and so does the monitor: one
    connection for the actor's whole life.

    \code
    stage::monitor(adder, this, [this](const QString &reason) { log(reason); });
    \endcode

    Thread: call it from any thread; \a callback runs on \a context's thread (queued there when
    the actor lives on another thread). Returns the connection (QObject::disconnect() ends the
    monitor; so does destroying \a context or the actor).
    What is lost: nothing is replayed: a failure before the call is not reported. A queued call
    whose context is destroyed meanwhile is dropped.
    Bad input: a null \a ref, a null \a context, or an actor destroyed already: a warning under
    stage.actor and an invalid connection.
*/
template<typename P, typename F>
QMetaObject::Connection monitor(const ActorRef<P> &ref, QObject *context, F &&callback)
{
    static_assert(std::is_invocable_v<std::decay_t<F> &, const QString &>,
                  "stage::monitor: the callback takes the reason (const QString &)");
    return detail::monitorActor(detail::ActorRefAccess::shared(ref), context,
                                std::function<void(const QString &)>(std::forward<F>(callback)));
}

} // namespace stage
