#pragma once

#include <stage/mailbox.h>
#include <stage/signal.h>

#include <QtCore/QByteArray>
#include <QtCore/QMetaMethod>
#include <QtCore/QMetaObject>
#include <QtCore/QObject>
#include <QtCore/QPointer>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <utility>

namespace stage {

class SignalFeed;

namespace detail {
class FeedState;
} // namespace detail

/*! A snapshot of the counters of one stage::connect() connection (SignalFeed::statistics()). */
class STAGE_EXPORT FeedStatistics
{
    Q_GADGET
    Q_PROPERTY(qint64 sent MEMBER sent)
    Q_PROPERTY(qint64 rejected MEMBER rejected)
    Q_PROPERTY(qint64 dropped MEMBER dropped)
    Q_PROPERTY(qint64 rejectedClosed MEMBER rejectedClosed)

public:
    qint64 sent = 0;           //!< emissions queued in the mailbox
    qint64 rejected = 0;       //!< emissions not queued: the mailbox was full (Reject; Block refused on a
                               //!< thread with an event loop; DropOldest after 1024 rounds lost to other
                               //!< producers racing for the room it made), or the map threw
    qint64 dropped = 0;        //!< queued messages discarded, oldest first, to make room (DropOldest)
    qint64 rejectedClosed = 0; //!< emissions that found the mailbox closed (the first one ends the connection)

    /*! Every emission the connection saw: sent + rejected + rejectedClosed. */
    qint64 emitted() const noexcept { return sent + rejected + rejectedClosed; }
};

/*!
    The QObject side of one stage::connect() connection: its overflow policy, its counters, and
    the overflowed() signal. Reach it through FeedConnection::feed().

    \code
    auto c = stage::connect(watcher, &QFileSystemWatcher::fileChanged, changes);
    QObject::connect(c.feed(), &stage::SignalFeed::overflowed, this, [](qint64 n) {
        qWarning() << n << "file changes were not queued";
    });
    \endcode

    Lifetime: the feed lives exactly as long as its connection. It is the connection's context
    object, so deleting it ends the connection; and once the connection ends (the sender is
    destroyed, the mailbox was found closed, QObject::disconnect()), the feed emits
    disconnected() and deletes itself (deleteLater()). Hold it in a QPointer.
    Thread: the feed lives on the thread that called stage::connect(), and its signals are
    emitted there, from its event loop (so that thread must run one for them). Its counters may
    be read from any thread.
    Notifications are coalesced: overflowed() and statisticsChanged() are emitted at most once
    per turn of the feed's event loop (a change may be skipped, the last one never is), and
    statisticsChanged() costs nothing while no one is connected to it.
*/
class STAGE_EXPORT SignalFeed : public QObject
{
    Q_OBJECT
    Q_PROPERTY(Overflow overflow READ overflow CONSTANT)
    Q_PROPERTY(bool connected READ isConnected NOTIFY disconnected)
    Q_PROPERTY(qint64 sent READ sent NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 rejected READ rejected NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 dropped READ dropped NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 rejectedClosed READ rejectedClosed NOTIFY statisticsChanged)

public:
    /*!
        What an emission does when the mailbox is full (an unbounded mailbox is never full).
        Nothing else is ever lost at the boundary: an emission is queued, or counted here.
    */
    enum class Overflow {
        Reject,     //!< the default: the emission is not queued; counted in rejected(), logged (at most a
                    //!< line a second) and reported by overflowed()
        DropOldest, //!< the message at the front of the mailbox (the oldest, or one put back for redelivery)
                    //!< is discarded to make room; counted in dropped(), logged, reported by overflowed()
        Block,      //!< the emitting thread waits for room (Mailbox::sendBlocking()), however long it
                    //!< takes; only on a thread without an event loop. On a thread that has one (it runs a
                    //!< QEventLoop, or is the main thread), blocking could freeze it or deadlock its own
                    //!< consumer, so Block is refused there: a warning (once per connection), and that
                    //!< thread's emissions behave as under Reject (queued if there is room, else counted
                    //!< in rejected()). A close wakes a blocked emission (counted in rejectedClosed()).
    };
    Q_ENUM(Overflow)

    ~SignalFeed() override;

    /*! The policy this feed applies when the mailbox is full (the one given to stage::connect()). */
    Overflow overflow() const;
    /*! True until the connection has ended. */
    bool isConnected() const;
    /*! A consistent snapshot of the counters below. Thread: any. */
    FeedStatistics statistics() const;
    /*! Emissions queued in the mailbox (FeedStatistics::sent). */
    qint64 sent() const;
    /*! Emissions not queued for lack of room, or because the map threw (FeedStatistics::rejected). */
    qint64 rejected() const;
    /*! Queued messages discarded to make room under DropOldest (FeedStatistics::dropped). */
    qint64 dropped() const;
    /*! Emissions that found the mailbox closed (FeedStatistics::rejectedClosed). */
    qint64 rejectedClosed() const;

Q_SIGNALS:
    /*!
        Emissions were rejected, or queued messages dropped, for lack of room: \a count of them
        since the previous overflowed() (coalesced: at most one per event-loop turn).
    */
    void overflowed(qint64 count);
    /*! Some counter changed; at most once per event-loop turn, and only while connected to. */
    void statisticsChanged();
    /*! The connection has ended; emitted once, then the feed deletes itself (deleteLater()). */
    void disconnected();

//! \cond internal
protected:
    bool event(QEvent *event) override;
    void connectNotify(const QMetaMethod &signal) override;

//! \endcond
private:
    friend class detail::FeedState;
    explicit SignalFeed(std::shared_ptr<detail::FeedState> state);

    std::shared_ptr<detail::FeedState> m_state;
    bool m_endReported = false;
};

/*! stage::Overflow::DropOldest reads better than stage::SignalFeed::Overflow::DropOldest. */
using Overflow = SignalFeed::Overflow;

/*!
    What stage::connect() returns: a QMetaObject::Connection (QObject::disconnect() takes it, and
    it converts to bool), and the connection's feed.
*/
class FeedConnection : public QMetaObject::Connection
{
public:
    FeedConnection() = default;
    /*! Wraps \a connection and its \a feed (what stage::connect() returns). */
    FeedConnection(QMetaObject::Connection connection, SignalFeed *feed)
        : QMetaObject::Connection(std::move(connection)), m_feed(feed)
    {}

    /*! The connection's SignalFeed (its counters, overflowed()); null once it was deleted, or if
        stage::connect() refused to connect. Thread: the one that called stage::connect(). */
    SignalFeed *feed() const { return m_feed; }

private:
    QPointer<SignalFeed> m_feed;
};

namespace detail {

/*
    The shared state of one connection: the counters the emitting threads write, the throttled
    log, and the link to the feed (which may be deleted on its thread at any time).
*/
class STAGE_EXPORT FeedState
{
public:
    FeedState(SignalFeed::Overflow overflow, QByteArray signal);
    ~FeedState();
    FeedState(const FeedState &) = delete;
    FeedState &operator=(const FeedState &) = delete;

    /* Creates the feed on the calling thread. */
    static SignalFeed *createFeed(const std::shared_ptr<FeedState> &state);
    /* After QObject::connect(): keeps the connection for ending it; ends it now if an emission
       found the mailbox closed meanwhile. */
    void attach(const QMetaObject::Connection &connection);

    // Emitting threads, per emission.
    void noteSent() noexcept
    {
        sent.fetch_add(1, std::memory_order_relaxed);
        if (watched.load(std::memory_order_relaxed))
            notify();
    }
    void noteFull() noexcept;
    void noteDropped() noexcept;
    void noteClosed() noexcept;
    void noteMapFailed(std::exception_ptr error) noexcept;
    /* Block: true on a thread without an event loop; otherwise false (and a warning, the first time). */
    bool blockAllowedHere() noexcept;

    /* The slot object is gone (sender destroyed, disconnected, feed deleted). Any thread. */
    void slotDestroyed() noexcept;
    /* ~SignalFeed, on its thread. */
    void feedDestroyed() noexcept;

    const SignalFeed::Overflow overflow;
    const QByteArray signal; // "Class::signal(args)", for the log

    // The emitting threads' line (sent is the only counter written per message).
    alignas(64) std::atomic<qint64> sent{0};
    std::atomic<bool> watched{false};      // statisticsChanged() connected
    std::atomic<bool> ended{false};
    std::atomic<bool> notifyPending{false};
    // The rare counters.
    alignas(64) std::atomic<qint64> rejected{0};
    std::atomic<qint64> dropped{0};
    std::atomic<qint64> rejectedClosed{0};
    std::atomic<qint64> overflowSinceSignal{0};
    // The throttled log: what happened since the last line, and when that line was.
    std::atomic<qint64> fullSinceLine{0};
    std::atomic<qint64> droppedSinceLine{0};
    std::atomic<bool> blockRefusalLogged{false};
    std::atomic<qint64> mapFailedSinceLine{0};
    std::atomic<qint64> lastLineNs{0};

private:
    friend class stage::SignalFeed;
    void notify() noexcept;
    void end() noexcept;
    void logDue() noexcept;

    std::mutex m_mutex;                    // m_feed, m_connection, m_attached
    SignalFeed *m_feed = nullptr;          // null once deleted
    QMetaObject::Connection m_connection;
    bool m_attached = false;
};

STAGE_EXPORT void warnConnect(const char *what);
STAGE_EXPORT void warnConnectFailed(const QByteArray &signal);
STAGE_EXPORT bool warnIfClosed(bool closed);

struct NoMap
{};

template<typename T, typename Map, typename... Args>
T makeMessage(Map &map, const Args &...args)
{
    if constexpr (!std::is_same_v<Map, NoMap>) {
        static_assert(std::is_invocable_v<Map &, const Args &...>,
                      "stage::connect: the map must be callable with the signal's arguments");
        return T(std::invoke(map, args...));
    } else if constexpr (sizeof...(Args) == 0) {
        static_assert(std::is_default_constructible_v<T>,
                      "stage::connect: a signal without arguments needs a map, or a default-constructible message");
        return T{};
    } else if constexpr (std::is_constructible_v<T, const Args &...>) {
        return T(args...);
    } else {
        static_assert(requires { T{args...}; },
                      "stage::connect: the message cannot be built from the signal's arguments; pass a map");
        return T{args...};
    }
}

/* The slot: runs on the emitting thread, queues (or counts) one message per emission. */
template<typename T, typename Map, typename... Args>
class FeedSlot
{
public:
    FeedSlot(std::shared_ptr<MailboxCore<T>> core, std::shared_ptr<FeedState> state, Map map)
        : m_core(std::move(core)), m_state(std::move(state)), m_map(std::move(map))
    {}
    FeedSlot(FeedSlot &&) noexcept = default;
    FeedSlot &operator=(FeedSlot &&) = delete;
    ~FeedSlot()
    {
        if (m_state) // not moved from
            m_state->slotDestroyed();
    }

    void operator()(const Args &...args)
    {
        FeedState &state = *m_state;
        std::optional<T> value;
        try {
            value.emplace(makeMessage<T>(m_map, args...));
        } catch (...) {
            state.noteMapFailed(std::current_exception());
            return;
        }
        using Push = typename MailboxCore<T>::Push;
        Push status = Push::Full;
        try {
            switch (state.overflow) {
            case SignalFeed::Overflow::Reject:
                status = m_core->tryPush(*value);
                break;
            case SignalFeed::Overflow::DropOldest:
                status = pushDroppingOldest(*value);
                break;
            case SignalFeed::Overflow::Block:
                if (state.blockAllowedHere())
                    status = m_core->pushBlocking(*value, std::chrono::steady_clock::time_point::max());
                else // refused (logged): as Reject on this thread
                    status = m_core->tryPush(*value);
                break;
            }
        } catch (...) {
            // A journaled mailbox's journal refused the message (stage::JournalError): counted
            // and logged as a message that could not be made, never thrown into the emitter.
            state.noteMapFailed(std::current_exception());
            return;
        }
        switch (status) {
        case Push::Sent:
            state.noteSent();
            break;
        case Push::Full:
            state.noteFull();
            break;
        case Push::Closed:
            state.noteClosed();
            break;
        }
    }

private:
    typename MailboxCore<T>::Push pushDroppingOldest(T &value)
    {
        using Push = typename MailboxCore<T>::Push;
        // Other producers may take the room made here (with four racing for it, a round is lost
        // three times in four): up to 1024 rounds, then the emission is rejected (counted)
        // rather than spinning on.
        typename MailboxCore<T>::Outgoing out; // a journaled mailbox's: encoded once
        for (int round = 0; round < 1024; ++round) {
            const Push status = m_core->tryPush(value, &out);
            if (status != Push::Full)
                return status;
            if (auto oldest = m_core->tryTake()) { // not a delivery: no consumer ever sees it
                m_core->noteDropped(*oldest);
                m_state->noteDropped();
                oldest.reset(); // its replies (if any) break here: stage::BrokenReply
            }
        }
        return Push::Full;
    }

    std::shared_ptr<MailboxCore<T>> m_core;
    std::shared_ptr<FeedState> m_state;
    Map m_map;
};

template<typename T, typename Map, typename ArgList>
struct FeedSlotFor;
template<typename T, typename Map, typename... Args>
struct FeedSlotFor<T, Map, TypeList<Args...>>
{
    using type = FeedSlot<T, Map, Args...>;
};

template<typename Signal>
QByteArray signalName(Signal signal)
{
    const QMetaMethod method = QMetaMethod::fromSignal(signal);
    if (!method.isValid())
        return QByteArrayLiteral("(not a signal)");
    return QByteArray(method.enclosingMetaObject()->className()) + "::" + method.methodSignature();
}

template<typename Sender, typename Signal, typename T, typename Map>
FeedConnection connectFeed(const Sender *sender, Signal signal, const Mailbox<T> &mailbox, Map &&map,
                           SignalFeed::Overflow overflow)
{
    using Traits = SignalTraits<Signal>;
    static_assert(std::is_base_of_v<typename Traits::ClassType, Sender>,
                  "stage::connect: the signal does not belong to the sender's class");
    if (!sender) {
        warnConnect("stage::connect: the sender is null; not connected");
        return {};
    }
    if (!signal) {
        warnConnect("stage::connect: the signal is null; not connected");
        return {};
    }
    if (warnIfClosed(mailbox.isClosed()))
        return {};
    auto state = std::make_shared<FeedState>(overflow, signalName(signal));
    SignalFeed *feed = FeedState::createFeed(state);
    using Slot = typename FeedSlotFor<T, std::decay_t<Map>, typename Traits::Arguments>::type;
    // A direct connection: the slot runs on the emitting thread, whatever thread that is, and
    // only queues; the feed is the context, so deleting it ends the connection.
    QMetaObject::Connection connection =
        QObject::connect(sender, signal, feed, Slot(MailboxAccess::core(mailbox), state, std::forward<Map>(map)),
                         Qt::DirectConnection);
    if (!connection) {
        warnConnectFailed(state->signal);
        delete feed;
        return {};
    }
    state->attach(connection);
    return FeedConnection(std::move(connection), feed);
}

} // namespace detail

/*!
    Feeds \a mailbox from \a signal of \a sender: every emission, on whatever thread it happens,
    becomes a non-blocking send of the signal's arguments (a single argument is the message, or
    the message is built from them: T(args...) or T{args...}; a signal without arguments sends T{}).
    The QPrivateSignal tag of a private signal (QTimer::timeout) is not an argument.

    \code
    stage::Mailbox<QString> changes(256);
    stage::connect(watcher, &QFileSystemWatcher::fileChanged, changes);   // Overflow::Reject
    stage::connect(producer, &Producer::produced, samples, stage::Overflow::DropOldest);
    \endcode

    Thread: the slot runs on the emitting thread, directly (a Qt::DirectConnection), and only
    queues: no event per emission (the feed's notifications are coalesced) and, except under
    Overflow::Block, no waiting. The consumer receives on its own thread, as for any send. The
    feed (see SignalFeed) lives on the calling thread.
    Overflow: a full bounded mailbox follows \a overflow (see SignalFeed::Overflow; default
    Reject). What is lost at this boundary is only what the policy counts: rejected emissions
    (SignalFeed::rejected()) and, under DropOldest, the messages it discarded
    (SignalFeed::dropped()); a message that was queued keeps the mailbox's at-least-once delivery.
    The sender goes away first: Qt ends the connection with it (nothing queued is touched), the
    feed emits disconnected() and deletes itself.
    The mailbox closes first: the first emission that finds it closed is counted in
    SignalFeed::rejectedClosed() and ends the connection (later emissions racing on other
    threads are counted there too); nothing already queued is lost. The connection keeps the
    mailbox's queue alive until it ends.
    Bad input: a null \a sender or \a signal, a signal that cannot be connected, or a mailbox
    closed already: a warning under stage.connect, and an invalid (false) connection with no feed.
    Returns: the QMetaObject::Connection (QObject::disconnect() ends it) with its feed.
*/
template<typename Sender, typename Signal, typename T>
    requires std::is_base_of_v<QObject, Sender> && std::is_member_function_pointer_v<Signal>
FeedConnection connect(const Sender *sender, Signal signal, const Mailbox<T> &mailbox,
                       SignalFeed::Overflow overflow = SignalFeed::Overflow::Reject)
{
    return detail::connectFeed(sender, signal, mailbox, detail::NoMap{}, overflow);
}

/*!
    As above, but each emission sends \a map(args...) (converted to T). \a map runs on the
    emitting thread, once per emission; it must be thread-safe if several threads emit. An
    exception from it is caught: the emission is counted in SignalFeed::rejected() and logged,
    as is a journaled mailbox's refusal of the message (stage::JournalError, any overload). An
    emission into a journaled mailbox does not wait for the journal's commit (as trySend()).

    \code
    stage::connect(timer, &QTimer::timeout, ticks, [] { return Tick{QDateTime::currentDateTime()}; });
    \endcode
*/
template<typename Sender, typename Signal, typename T, typename Map>
    requires std::is_base_of_v<QObject, Sender> && std::is_member_function_pointer_v<Signal>
             && (!std::is_same_v<std::decay_t<Map>, SignalFeed::Overflow>)
FeedConnection connect(const Sender *sender, Signal signal, const Mailbox<T> &mailbox, Map &&map,
                       SignalFeed::Overflow overflow = SignalFeed::Overflow::Reject)
{
    return detail::connectFeed(sender, signal, mailbox, std::forward<Map>(map), overflow);
}

} // namespace stage

Q_DECLARE_METATYPE(stage::FeedStatistics)
