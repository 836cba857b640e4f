#pragma once

// Stage::Redis: a stage::Mailbox<T> kept in a Redis stream, shared by every process that opens it.

#include <stage/detail/journal.h>
#include <stage/errors.h>
#include <stage/mailbox.h>

#include <QtCore/QByteArray>
#include <QtCore/QDataStream>
#include <QtCore/QIODevice>
#include <QtCore/QObject>
#include <QtCore/QString>

#include <chrono>
#include <memory>
#include <optional>

#if defined(STAGE_STATIC)
#  define STAGE_REDIS_EXPORT
#elif defined(STAGE_BUILDING_REDIS)
#  define STAGE_REDIS_EXPORT Q_DECL_EXPORT
#else
#  define STAGE_REDIS_EXPORT Q_DECL_IMPORT
#endif

namespace stage {

/*! Log category of the Redis backend: \c stage.redis. Passwords never appear in it. */
STAGE_REDIS_EXPORT const QLoggingCategory &lcRedis();

/*!
    Where a RedisConnection connects, when a URL is not enough. The password is kept only in
    memory and is never logged nor shown by RedisConnection::url().
*/
struct RedisSettings
{
    QString host = QStringLiteral("127.0.0.1"); //!< TCP host (ignored when socketPath is set)
    int port = 6379;                            //!< TCP port
    QString socketPath;                         //!< a unix socket path; set: no TCP
    QString user;                               //!< ACL user (empty: AUTH with the password alone)
    QString password;                           //!< empty: no AUTH
    int database = 0;                           //!< SELECTed after connecting, >= 0
};

/*!
    How RedisConnection::mailbox() keeps one mailbox. Every default is stated; a value out of
    range is refused with a warning (stage.redis) and replaced by its default.
*/
struct RedisMailboxOptions
{
    /*! Bounds the in-memory queue of this process (-1: unbounded, the default). A journaled
        mailbox's feed bounds itself by \c prefetch, so sends never wait for room. */
    int capacity = -1;
    /*! At most this many entries read from the stream and not yet acknowledged by this
        process's consumers (default 256). They are pending for this consumer in Redis: another
        process takes them over only once they were idle \c claimMinIdle (this process keeps
        refreshing the ones it holds). 0: this process only sends (it never reads nor takes
        over entries). */
    int prefetch = 256;
    /*! The consumer group (default "stage"); one per mailbox: every process that opens the
        mailbox with the same group shares its messages (each goes to one of them). */
    QString group = QStringLiteral("stage");
    /*! This process's consumer name in the group. Default: "<host>:<pid>:<n>". A stable name
        (one per process role) lets a restarted process take its own pending entries back at
        once instead of after \c claimMinIdle. Two live processes must not share a name. */
    QString consumer;
    /*! Entries another consumer held without refreshing them for this long are taken over
        (XAUTOCLAIM), default 30000 ms, >= 100. Each process refreshes what it holds every third
        of it (XCLAIM ... JUSTID), so only a dead or stalled process loses its entries. */
    std::chrono::milliseconds claimMinIdle{30000};
    /*! Encoded messages larger than this (bytes, default 1 MiB) are refused by send (a
        stage::JournalError) and, when found in the stream (another producer), dead-lettered with
        the reason instead of reaching a consumer. */
    int maxMessageSize = 1 << 20;
    /*! Failures a message survives before it is dead-lettered (the mailbox's maxRedeliveries(),
        default 3). */
    int maxRedeliveries = 3;
    /*! The connection-loss policy for sends: how long an append waits for the connection before
        its send fails with stage::JournalError (default 30000 ms; 0: fail at once while
        disconnected; negative: wait for ever). A send whose XADD was written but not answered
        when the connection dropped is written again after reconnecting (it may then be in the
        stream twice: at-least-once, never lost once acknowledged). */
    std::chrono::milliseconds sendTimeout{30000};
    /*! Trim the stream (XTRIM MINID) below the oldest entry the group still needs, every
        second (default true). */
    bool trim = true;
    /*! The dead-letter stream ("<name>:dead") keeps about this many entries (default 10000). */
    int deadLetterMaxLength = 10000;
};

/*!
    How a T becomes the bytes of a stream entry and back. The default uses QDataStream
    (Qt_6_0 format) with T's operator<< and operator>>; a decode that does not consume every
    byte, or leaves the stream in error, is a failure. Specialize it for another codec; decode
    returns std::nullopt or throws to report an undecodable message (then dead-lettered).
*/
template<typename T>
struct RedisCodec
{
    /*! The bytes sent for \a value (QDataStream, Qt 6.0 format). Throw to refuse it (the send fails). */
    static QByteArray encode(const T &value)
    {
        QByteArray bytes;
        QDataStream out(&bytes, QIODevice::WriteOnly);
        out.setVersion(QDataStream::Qt_6_0);
        out << value;
        return bytes;
    }
    /*! \a bytes back as a T; std::nullopt (or a throw) when they cannot be decoded: the entry is dead-lettered. */
    static std::optional<T> decode(const QByteArray &bytes)
    {
        QDataStream in(bytes);
        in.setVersion(QDataStream::Qt_6_0);
        T value{};
        in >> value;
        if (in.status() != QDataStream::Ok || !in.atEnd())
            return std::nullopt;
        return value;
    }
};

class RedisConnection;

namespace detail {

class RedisClient;
STAGE_REDIS_EXPORT std::shared_ptr<RedisClient> clientOf(const RedisConnection &connection);

/* The typed side of a stream, called on the connection's thread. */
class STAGE_REDIS_EXPORT RedisFeed
{
public:
    enum class Result { Fed, Gone, Undecodable };
    virtual ~RedisFeed();
    /* Decodes \a bytes and queues the message in the mailbox (MailboxAccess::inject()). */
    virtual Result feed(QByteArray &&bytes, quint64 id, quint32 deliveries, quint32 failures, QString &error) = 0;
    /* The mailbox's maxRedeliveries(), or -1 if it is gone. */
    virtual int maxRedeliveries() const = 0;
};

/*
    One mailbox's stream: the type-erased journal. Hooks come from any thread and never block;
    the Redis work is done on the connection's thread. See redis/src/redis_p.h.
*/
class STAGE_REDIS_EXPORT RedisStream
{
public:
    using Settle = void (*)(void *waiter, const QString *error);

    RedisStream(std::shared_ptr<RedisClient> client, const QString &name, const RedisMailboxOptions &options);
    ~RedisStream();
    RedisStream(const RedisStream &) = delete;
    RedisStream &operator=(const RedisStream &) = delete;

    /* Starts reading for \a feed (which must outlive stop()). */
    void start(RedisFeed *feed);
    /* Sends what is pending (at most \a timeout), then leaves the connection. Idempotent. */
    void stop(std::chrono::milliseconds timeout);

    QString name() const;
    int maxMessageSize() const;

    quint64 append(QByteArray &&bytes, quint64 &ticket);
    void acknowledged(quint64 id) noexcept;
    void delivered(quint64 id) noexcept;
    void requeued(quint64 id, quint32 failures) noexcept;
    void deadLettered(quint64 id, quint32 failures, const QString &reason) noexcept;
    void closed() noexcept;
    quint64 lastTicket() const noexcept;
    /* \a settle(\a waiter, error or null) once \a ticket is resolved; may run within the call. */
    void whenDurable(quint64 ticket, Settle settle, void *waiter);
    bool waitDurable(quint64 ticket, std::chrono::steady_clock::time_point deadline);

    struct Private;

private:
    std::shared_ptr<Private> d;
};

// Access is MailboxAccess (mailbox.h); a parameter so that its names are looked up when used.
template<typename T, typename Access = MailboxAccess>
class RedisJournal final : public Journal<T>, public RedisFeed
{
public:
    RedisJournal(std::shared_ptr<RedisClient> client, const QString &name, const RedisMailboxOptions &options)
        : m_stream(std::move(client), name, options)
    {}
    ~RedisJournal() override { m_stream.stop(std::chrono::milliseconds(5000)); }

    void attach(std::weak_ptr<MailboxCore<T>> core)
    {
        m_core = std::move(core);
        m_stream.start(this);
    }

    QByteArray encode(const T &value) override
    {
        QByteArray bytes = RedisCodec<T>::encode(value);
        if (bytes.size() > m_stream.maxMessageSize())
            throw JournalError(QStringLiteral("Redis mailbox %1: a message of %2 bytes is larger than maxMessageSize (%3)")
                                   .arg(m_stream.name())
                                   .arg(bytes.size())
                                   .arg(m_stream.maxMessageSize())
                                   .toStdString());
        return bytes;
    }
    bool queuesLocally() const noexcept override { return false; }
    quint64 append(QByteArray &&bytes, quint64 &ticket) override { return m_stream.append(std::move(bytes), ticket); }
    void delivered(quint64 id) noexcept override { m_stream.delivered(id); }
    void acknowledged(quint64 id) noexcept override { m_stream.acknowledged(id); }
    void requeued(quint64 id, quint32 failures) noexcept override { m_stream.requeued(id, failures); }
    void dropped(quint64 id) noexcept override { m_stream.acknowledged(id); }
    void deadLettered(quint64 id, quint32 failures, const QString &reason) noexcept override
    {
        m_stream.deadLettered(id, failures, reason);
    }
    void deadLettersRemoved(const std::vector<quint64> &) noexcept override {}
    void mailboxClosed() noexcept override { m_stream.closed(); }
    quint64 lastTicket() const noexcept override { return m_stream.lastTicket(); }
    void whenDurable(quint64 ticket, Waiter *waiter) override
    {
        waiter->ref();
        m_stream.whenDurable(ticket, &RedisJournal::template settle<Waiter>, waiter);
    }
    bool waitDurable(quint64 ticket, std::chrono::steady_clock::time_point deadline) override
    {
        return m_stream.waitDurable(ticket, deadline);
    }

    Result feed(QByteArray &&bytes, quint64 id, quint32 deliveries, quint32 failures, QString &error) override
    {
        std::optional<T> value;
        try {
            value = RedisCodec<T>::decode(bytes);
            if (!value)
                error = QStringLiteral("undecodable: the codec refused %1 bytes").arg(bytes.size());
        } catch (const std::exception &e) {
            error = QStringLiteral("undecodable: %1").arg(QString::fromUtf8(e.what()));
        } catch (...) {
            error = QStringLiteral("undecodable: the codec threw");
        }
        if (!value)
            return Result::Undecodable;
        return Access::inject(m_core, std::move(*value), id, deliveries, failures) ? Result::Fed : Result::Gone;
    }
    int maxRedeliveries() const override
    {
        auto core = m_core.lock();
        return core ? core->maxRedeliveries() : -1;
    }

private:
    template<typename W>
    static void settle(void *w, const QString *error)
    {
        auto *waiter = static_cast<W *>(w);
        if (error)
            waiter->publishError(std::make_exception_ptr(JournalError(error->toStdString())));
        else
            waiter->publish(Waiter::Outcome::Value);
        waiter->deref();
    }

    RedisStream m_stream;
    std::weak_ptr<MailboxCore<T>> m_core;
};

} // namespace detail

/*!
    A connection to one Redis server (7.0 or later), with the mailboxes kept there.

    \code
    stage::RedisConnection redis(QStringLiteral("unix:///run/redis/redis.sock"));
    // or "redis://user:secret@host:6379/0"
    stage::Mailbox<Job> jobs = redis.mailbox<Job>(QStringLiteral("jobs"));
    co_await jobs.send(Job{...});        // resumes once Redis acknowledged the XADD
    auto job = co_await jobs.receive();  // from this process's share of the stream
    \endcode

    URLs: \c redis://[[user]:password@]host[:port][/db] (port 6379, db 0 by default) and
    \c unix:///path/to/socket[?db=N&user=U&password=P] (or \c unix://[user:password@]/path).
    With a password, the connection sends AUTH (with the user: an ACL user) first; the password
    is never logged and url() shows it as "***".

    Threads: the connection does all its Redis work on a thread of its own, through hiredis's
    asynchronous API on that thread's Qt event loop; nothing blocks the thread that created it
    (its properties and signals live there). Its mailboxes are ordinary stage::Mailbox handles,
    usable from any thread. The getters (state(), errorString(), url(), connectAttempts()) may
    be called from any thread and read the live values; the NOTIFY signals follow on the
    creating thread's event loop. The destructor waits (briefly) for the connection's thread
    only when no mailbox made from it is left.

    Errors come through state() (NOTIFY stateChanged), errorString() (NOTIFY
    errorStringChanged) and errorOccurred(), on the creating thread:
    \list
    \li A URL that cannot be parsed: state() is Failed at once, no attempt is made.
    \li A refused AUTH or SELECT (wrong password, unknown user, bad database): Failed after the
        first attempt; no retry. Sends then fail at once with stage::JournalError.
    \li Connection lost, or the server not reachable (yet): Reconnecting, retrying with an
        exponential backoff from 100 ms doubling to 5 s (never faster: no retry storm), logged
        once per loss; Connected again when it succeeds. Sends wait per
        RedisMailboxOptions::sendTimeout.
    \endlist
    Deleting the connection while mailboxes made from it live keeps the connection open for
    them (they share it); it closes once the last mailbox is destroyed.
*/
class STAGE_REDIS_EXPORT RedisConnection : public QObject
{
    Q_OBJECT
    Q_PROPERTY(State state READ state NOTIFY stateChanged)
    Q_PROPERTY(QString errorString READ errorString NOTIFY errorStringChanged)
    Q_PROPERTY(QString url READ url CONSTANT)
    Q_PROPERTY(int connectAttempts READ connectAttempts NOTIFY stateChanged)

public:
    /*! Where the connection stands (state()). */
    enum class State {
        Connecting,   //!< the first attempt is under way
        Connected,    //!< connected and authenticated
        Reconnecting, //!< the connection was lost or not made yet; retrying with backoff
        Failed,       //!< a permanent error (bad URL, refused AUTH or SELECT): no more attempts
    };
    Q_ENUM(State)

    /*! Connects to \a url (see the class doc) at once, in the background. */
    explicit RedisConnection(const QString &url, QObject *parent = nullptr);
    /*! Connects per \a settings at once, in the background. */
    explicit RedisConnection(const RedisSettings &settings, QObject *parent = nullptr);
    ~RedisConnection() override;

    /*! Where the connection stands now (NOTIFY stateChanged()). Thread: any (the live value). */
    State state() const;
    /*! The last error (empty before any); stays until the next error. Never contains a password. */
    QString errorString() const;
    /*! The URL with its password replaced by "***". */
    QString url() const;
    /*! How many connection attempts were made so far (for monitoring a backoff). */
    int connectAttempts() const;

    /*!
        Blocks the calling thread until the connection is Connected (true), Failed or \a timeout
        passed (false). For threads without an event loop, tests and examples.
    */
    bool waitForConnected(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) const;

    /*!
        Blocks the calling thread until everything the mailboxes of this connection queued
        before the call (sends, acknowledgements, dead letters) was answered by Redis (true), or
        \a timeout passed or the connection is not Connected (false). Use it before exiting so
        that the last acknowledgements are not left to a takeover. Thread: any but the
        connection's own.
    */
    bool flushBlocking(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) const;

    /*!
        The mailbox kept in the stream \a name (created if missing, with its consumer group
        \a options.group), with this process as one consumer of the group.

        Guarantees (at-least-once across processes):
        \list
        \li A send completes (co_await send(), sendBlocking(), flush()) once Redis acknowledged
            its XADD; how long it survives then is the server's persistence (AOF with
            appendfsync always: a server crash; everysec: up to a second lost).
        \li Each entry goes to one consumer of the group. This process reads at most
            \c prefetch entries ahead. Entries a dead process held are taken over after
            \c claimMinIdle, with their delivery counts; every earlier unacknowledged delivery
            counts as a failure (Redis cannot tell a crash from a clean exit), and a message
            with more than maxRedeliveries failures is dead-lettered instead of delivered.
        \li Acknowledging (Delivery::ack or its end) sends XACK; dead letters go to the stream
            "<name>:dead" with their reason and failures, and are acknowledged in the same
            script. An entry that does not decode or is larger than maxMessageSize never
            reaches a consumer: it is dead-lettered with the reason.
        \li Nothing is acknowledged twice: an XACK for an entry no longer pending is a no-op.
        \endlist
        The mailbox's takeDeadLetters() holds the letters dead-lettered in this process; the
        dead-letter stream holds everyone's. Closing the mailbox stops this process reading;
        destroying the last handle sends what is pending (5 s at most) and leaves what this
        process had read but not delivered pending, to be taken over by the others after
        claimMinIdle (or by this process at once if it reopens with the same consumer name).
        Thread: any. The name must be non-empty (a warning and "stage" otherwise).
    */
    template<typename T, typename Access = detail::MailboxAccess>
    Mailbox<T> mailbox(const QString &name, const RedisMailboxOptions &options = RedisMailboxOptions()) const
    {
        auto journal = std::make_shared<detail::RedisJournal<T, Access>>(client(), name, options);
        const int capacity = options.capacity == 0 || options.capacity < -1 ? -1 : options.capacity;
        Mailbox<T> box = Access::template makeJournaled<T>(capacity, journal);
        box.setMaxRedeliveries(options.maxRedeliveries >= 0 ? options.maxRedeliveries : 3);
        journal->attach(Access::weakCore(box));
        return box;
    }

Q_SIGNALS:
    /*! state() changed to \a state. */
    void stateChanged(stage::RedisConnection::State state);
    /*! errorString() changed to \a errorString. */
    void errorStringChanged(const QString &errorString);
    /*! A new error (\a message as errorString()). Emitted once per loss, not per retry. */
    void errorOccurred(const QString &message);

private:
    friend std::shared_ptr<detail::RedisClient> detail::clientOf(const RedisConnection &connection);
    friend class detail::RedisClient;
    std::shared_ptr<detail::RedisClient> client() const;
    void init(const RedisSettings &settings, const QString &error);
    void publishFromClient();

    std::shared_ptr<detail::RedisClient> d;
    State m_state = State::Connecting;
    QString m_errorString;
};

} // namespace stage
