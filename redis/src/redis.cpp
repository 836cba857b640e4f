// Stage::Redis: a mailbox kept in a Redis stream (see include/stage/redis.h and docs/redis.md).
//
// One RedisClient per RedisConnection, with a thread of its own running a Qt event loop. hiredis's
// asynchronous API runs on it through a small adapter (two QSocketNotifiers per context). The
// client has one "command" context shared by every mailbox (XADD, XACK, XCLAIM, XAUTOCLAIM,
// scripts, trimming: pipelined, answered in order) and one "reader" context per mailbox (its
// XREADGROUP ... BLOCK would hold up everything behind it on a shared connection).
//
// The hooks of the mailbox (any thread, locks held) only queue an operation under the stream's
// mutex and wake the client thread once (a queued call on empty -> non-empty); the client thread
// drains every stream's operations, writes the commands, and settles durability as XADD replies
// arrive (in ticket order: one connection, replies in order).

#include "redis_p.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QDeadlineTimer>
#include <QtCore/QElapsedTimer>
#include <QtCore/QHash>
#include <QtCore/QLoggingCategory>
#include <QtCore/QMetaObject>
#include <QtCore/QPointer>
#include <QtCore/QSocketNotifier>
#include <QtCore/QSysInfo>
#include <QtCore/QThread>
#include <QtCore/QTimer>
#include <QtCore/QUrl>
#include <QtCore/QUrlQuery>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

namespace stage {

Q_LOGGING_CATEGORY(lcRedisCategory, "stage.redis", QtInfoMsg)

const QLoggingCategory &lcRedis()
{
    return lcRedisCategory();
}

namespace detail {

RedisFeed::~RedisFeed() = default;

// -- URLs ----------------------------------------------------------------------------------------

QString redactedUrl(const RedisSettings &s)
{
    QString auth;
    if (!s.user.isEmpty() || !s.password.isEmpty())
        auth = s.user + (s.password.isEmpty() ? QString() : QStringLiteral(":***")) + QLatin1Char('@');
    if (!s.socketPath.isEmpty()) {
        QString url = QStringLiteral("unix://") + s.socketPath;
        QStringList query;
        if (s.database != 0)
            query << QStringLiteral("db=%1").arg(s.database);
        if (!s.user.isEmpty())
            query << QStringLiteral("user=") + s.user;
        if (!s.password.isEmpty())
            query << QStringLiteral("password=***");
        if (!query.isEmpty())
            url += QLatin1Char('?') + query.join(QLatin1Char('&'));
        return url;
    }
    return QStringLiteral("redis://%1%2:%3/%4").arg(auth, s.host).arg(s.port).arg(s.database);
}

ParsedRedisUrl parseRedisUrl(const QString &text)
{
    ParsedRedisUrl r;
    const QUrl url(text, QUrl::StrictMode);
    auto fail = [&](const QString &why) {
        r.error = QStringLiteral("invalid Redis URL: %1").arg(why);
        // Never echo the URL itself: it may carry a password.
        r.redacted = QStringLiteral("<invalid URL>");
        return r;
    };
    if (!url.isValid())
        return fail(QStringLiteral("cannot be parsed"));
    const QString scheme = url.scheme();
    bool ok = true;
    if (scheme == QLatin1String("redis")) {
        if (url.host().isEmpty())
            return fail(QStringLiteral("no host (expected redis://[user:password@]host[:port][/db])"));
        r.settings.host = url.host();
        r.settings.port = url.port(6379);
        if (r.settings.port <= 0 || r.settings.port > 65535)
            return fail(QStringLiteral("port out of range"));
        r.settings.user = url.userName(QUrl::FullyDecoded);
        r.settings.password = url.password(QUrl::FullyDecoded);
        QString path = url.path();
        if (path.startsWith(QLatin1Char('/')))
            path.remove(0, 1);
        if (!path.isEmpty()) {
            r.settings.database = path.toInt(&ok);
            if (!ok || r.settings.database < 0)
                return fail(QStringLiteral("the database must be a number >= 0"));
        }
        if (url.hasQuery())
            return fail(QStringLiteral("redis:// URLs take no query"));
    } else if (scheme == QLatin1String("unix")) {
        if (!url.host().isEmpty())
            return fail(QStringLiteral("a unix URL has no host (expected unix:///path/to/socket)"));
        r.settings.socketPath = url.path(QUrl::FullyDecoded);
        if (r.settings.socketPath.isEmpty() || !r.settings.socketPath.startsWith(QLatin1Char('/')))
            return fail(QStringLiteral("no absolute socket path (expected unix:///path/to/socket)"));
        r.settings.user = url.userName(QUrl::FullyDecoded);
        r.settings.password = url.password(QUrl::FullyDecoded);
        const QUrlQuery query(url);
        for (const auto &[key, value] : query.queryItems(QUrl::FullyDecoded)) {
            if (key == QLatin1String("db")) {
                r.settings.database = value.toInt(&ok);
                if (!ok || r.settings.database < 0)
                    return fail(QStringLiteral("the database must be a number >= 0"));
            } else if (key == QLatin1String("user")) {
                r.settings.user = value;
            } else if (key == QLatin1String("password")) {
                r.settings.password = value;
            } else {
                return fail(QStringLiteral("unknown query item '%1' (db, user, password)").arg(key));
            }
        }
    } else {
        return fail(QStringLiteral("the scheme must be redis or unix, not '%1'").arg(scheme));
    }
    if (!r.settings.user.isEmpty() && r.settings.password.isEmpty())
        return fail(QStringLiteral("a user needs a password"));
    r.redacted = redactedUrl(r.settings);
    return r;
}

// -- the client ------------------------------------------------------------------------------------

namespace {

qint64 nowMs()
{
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

QByteArray replyString(const redisReply *r)
{
    if (r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_ERROR))
        return QByteArray(r->str, int(r->len));
    return QByteArray();
}

// Stream ids "ms-seq" in order.
bool sidLess(const QByteArray &a, const QByteArray &b)
{
    const int da = a.indexOf('-'), db = b.indexOf('-');
    const quint64 ma = a.left(da).toULongLong(), mb = b.left(db).toULongLong();
    if (ma != mb)
        return ma < mb;
    return a.mid(da + 1).toULongLong() < b.mid(db + 1).toULongLong();
}

// Dead-letters one entry if this consumer still holds it: copies its fields into the dead-letter
// stream with the reason and failures, and acknowledges it, atomically.
// KEYS: stream, dead stream. ARGV: group, id, consumer, reason, failures, dead maxlen.
const char *const DeadLetterScript = R"lua(
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
local args = {KEYS[2], 'MAXLEN', '~', ARGV[6], '*', 'id', ARGV[2], 'reason', ARGV[4], 'failures', ARGV[5]}
if #e > 0 then
  local f = e[1][2]
  for i = 1, #f do args[#args + 1] = f[i] end
end
redis.call('XADD', unpack(args))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return 1
)lua";

} // namespace

class RedisClient;

struct Link
{
    RedisClient *client = nullptr;
    RedisStream::Private *stream = nullptr; // null: the command link
    redisAsyncContext *ac = nullptr;
    QSocketNotifier *readNotifier = nullptr;
    QSocketNotifier *writeNotifier = nullptr;
    int handshakeLeft = 0;
    bool ready = false;
    bool closing = false;
};

struct Entry
{
    QByteArray sid;
    QByteArray body;
    bool hasBody = false;
    quint32 count = 1; // Redis's delivery count, this delivery included
};

struct RedisStream::Private
{
    enum class OpKind : quint8 { Add, Ack, Delivered, Dead, Closed };
    struct Op
    {
        OpKind kind;
        quint32 failures = 0;
        quint64 id = 0; // the ticket for Add
        QByteArray bytes;
        QString reason;
        qint64 sinceMs = 0;
    };
    struct Add
    {
        quint64 ticket;
        QByteArray bytes;
        qint64 sinceMs;
    };
    struct Held
    {
        QByteArray sid;
        bool delivered = false;
    };

    std::shared_ptr<RedisClient> client;
    QString name;
    QByteArray key, deadKey, group, consumer;
    RedisMailboxOptions options;

    // Any thread, under mutex.
    std::mutex mutex;
    std::condition_variable resolvedCv;
    std::vector<Op> ops;
    quint64 lastTicket = 0;
    quint64 resolvedTicket = 0;
    std::map<quint64, QString> failedTickets; // the last few failures, by ticket
    std::multimap<quint64, std::pair<Settle, void *>> waits;
    QString permanentError; // set: appends are refused
    bool stopped = false;
    std::atomic<quint64> nextId{0};
    std::atomic<RedisFeed *> feed{nullptr};

    // The client thread only.
    Link *reader = nullptr;
    std::deque<Add> pendingAdds;  // not written yet
    std::deque<Add> inflightAdds; // written, not answered
    std::vector<QByteArray> ackBatch;
    QHash<quint64, Held> held;
    QHash<QByteArray, quint64> bySid;
    std::deque<std::vector<Entry>> awaitingCounts; // entries whose delivery counts are asked
    QByteArray historyCursor = "0";
    QByteArray claimCursor = "0-0";
    int outstanding = 0; // replies due on the command link
    bool groupReady = false;
    bool groupCreating = false;
    bool reading = false;
    bool historyDone = false;
    bool closedLocal = false;
    bool gone = false;
    bool claiming = false;
    bool trimming = false;
    bool removed = false;
    qint64 lastRefreshMs = 0, lastClaimMs = 0, lastTrimMs = 0;
    QByteArray trimLastDelivered;
    bool trimSingleGroup = false;
    quint64 resolvedLocal = 0; // the client thread's view, published in settle()
    std::vector<std::pair<quint64, QString>> newFailures;
};

using StreamP = RedisStream::Private;

class RedisClient : public std::enable_shared_from_this<RedisClient>
{
public:
    RedisClient(const RedisSettings &settings, const QString &redacted, const QString &parseError)
        : m_settings(settings), m_redacted(redacted), m_parseError(parseError)
    {
        if (!m_parseError.isEmpty()) { // Failed at once for the getters; announced from the thread
            m_state.store(int(RedisConnection::State::Failed));
            m_error = m_parseError;
        }
        m_thread = new QThread;
        m_thread->setObjectName(QStringLiteral("stage.redis"));
        m_home = new QObject;
        m_home->moveToThread(m_thread);
        m_thread->start();
    }

    ~RedisClient()
    {
        if (QThread::currentThread() == m_thread) {
            // The last reference was dropped on this very thread (at the top of its event loop:
            // see RedisStream::stop()): finish here and let a helper thread join it.
            shutdownOnThread();
            m_home->deleteLater();
            m_thread->quit();
            QThread *thread = m_thread;
            std::thread([thread] {
                thread->wait();
                delete thread;
            }).detach();
            return;
        }
        QMetaObject::invokeMethod(m_home, [this] {
            shutdownOnThread();
            delete m_home; // its timers and notifiers with it
        }, Qt::BlockingQueuedConnection);
        m_thread->quit();
        m_thread->wait();
        delete m_thread;
    }

    void begin()
    {
        QMetaObject::invokeMethod(m_home, [this] { startOnThread(); }, Qt::QueuedConnection);
    }

    // -- any thread -------------------------------------------------------------------------------

    void setOwner(RedisConnection *owner)
    {
        std::lock_guard lock(m_ownerMutex);
        m_owner = owner;
    }
    RedisConnection::State state() const { return RedisConnection::State(m_state.load()); }
    QString errorString() const
    {
        std::lock_guard lock(m_ownerMutex);
        return m_error;
    }
    QString redacted() const { return m_redacted; }
    int attempts() const { return m_attempts.load(); }
    bool waitForConnected(std::chrono::milliseconds timeout) const
    {
        std::unique_lock lock(m_ownerMutex);
        return m_stateCv.wait_for(lock, timeout, [this] {
            const auto s = state();
            return s == RedisConnection::State::Connected || s == RedisConnection::State::Failed;
        }) && state() == RedisConnection::State::Connected;
    }

    void wake()
    {
        if (!m_wakePending.exchange(true, std::memory_order_acq_rel))
            QMetaObject::invokeMethod(m_home, [this] { drain(); }, Qt::QueuedConnection);
    }
    bool onThread() const { return QThread::currentThread() == m_thread; }
    QObject *home() const { return m_home; }

    void addStream(std::shared_ptr<StreamP> s)
    {
        QMetaObject::invokeMethod(
            m_home, [this, s] { addStreamOnThread(s); }, Qt::QueuedConnection);
    }
    /* Runs \a f on the client thread and waits for it (at once when called there). */
    template<typename F>
    void runBlocking(F f)
    {
        if (onThread())
            f();
        else
            QMetaObject::invokeMethod(m_home, f, Qt::BlockingQueuedConnection);
    }

    // -- the client thread --------------------------------------------------------------------------

    void startOnThread()
    {
        // hiredis writes with write(): a server that went away would raise SIGPIPE, whose default
        // kills the process. Blocked on this thread only, where every write happens: the write
        // fails with EPIPE instead and the link is torn down as lost.
        sigset_t pipe;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
        m_reconnectTimer = new QTimer(m_home);
        m_reconnectTimer->setSingleShot(true);
        QObject::connect(m_reconnectTimer, &QTimer::timeout, m_home, [this] { connectAll(); });
        m_connectTimeout = new QTimer(m_home);
        m_connectTimeout->setSingleShot(true);
        QObject::connect(m_connectTimeout, &QTimer::timeout, m_home, [this] {
            if (state() != RedisConnection::State::Connected)
                teardown(QStringLiteral("no answer within 10 s"), false);
        });
        m_janitor = new QTimer(m_home);
        QObject::connect(m_janitor, &QTimer::timeout, m_home, [this] { janitor(); });
        m_janitor->start(50);
        if (!m_parseError.isEmpty()) {
            setState(RedisConnection::State::Failed, m_parseError, true);
            return;
        }
        connectAll();
    }

    void shutdownOnThread()
    {
        m_shuttingDown = true;
        const auto streams = m_streams;
        for (auto &s : streams)
            removeStreamOnThread(s.get());
        closeAllLinks();
        m_streams.clear();
        m_retired.clear();
        reapLinks();
    }

    void addStreamOnThread(const std::shared_ptr<StreamP> &s)
    {
        if (m_shuttingDown)
            return;
        m_streams.push_back(s);
        drainStream(s.get());
        if (state() == RedisConnection::State::Failed) {
            failStream(s.get(), m_lastError);
            return;
        }
        if (m_cmd && m_cmd->ready) {
            createGroup(s.get());
            connectReader(s.get());
        }
    }

    /* The mailbox is gone: stops reading, and makes what this process read and no consumer
       acknowledged claimable at once by the others (its idle time set far beyond any
       claimMinIdle). */
    void releaseHeld(StreamP *s)
    {
        drainStream(s); // acknowledgements first
        sendPending(s);
        s->closedLocal = true;
        s->feed.store(nullptr);
        if (m_cmd && m_cmd->ready && !s->held.isEmpty()) {
            QList<QByteArray> sids;
            for (const auto &h : std::as_const(s->held))
                sids << h.sid;
            command(s, nullptr, {"XCLAIM", s->key, s->group, s->consumer, "0"}, sids, {"IDLE", "1000000000", "JUSTID"});
        }
        s->held.clear();
        s->bySid.clear();
    }

    void removeStreamOnThread(StreamP *s)
    {
        if (s->removed)
            return;
        releaseHeld(s);
        s->removed = true;
        if (s->reader)
            closeLink(s->reader);
        s->reader = nullptr;
        failAdds(s, QStringLiteral("Redis mailbox %1: destroyed before the message was acknowledged by Redis").arg(s->name));
        settle(s);
        {
            std::lock_guard lock(s->mutex);
            s->permanentError = QStringLiteral("Redis mailbox %1: destroyed").arg(s->name);
        }
        for (auto it = m_streams.begin(); it != m_streams.end(); ++it) {
            if (it->get() == s) {
                m_retired.push_back(*it); // until its replies are in
                m_streams.erase(it);
                break;
            }
        }
    }

    bool allFlushed()
    {
        for (auto &s : m_streams) {
            if (!isFlushed(s.get()))
                return false;
        }
        return true;
    }

    bool isFlushed(StreamP *s)
    {
        drainStream(s);
        sendPending(s);
        std::lock_guard lock(s->mutex);
        return s->ops.empty() && s->pendingAdds.empty() && s->inflightAdds.empty() && s->ackBatch.empty()
               && s->outstanding == 0;
    }

    // Connection management ---------------------------------------------------------------------

    void setState(RedisConnection::State st, const QString &error, bool announce)
    {
        {
            std::lock_guard lock(m_ownerMutex);
            m_state.store(int(st));
            if (!error.isEmpty())
                m_error = error;
            m_stateCv.notify_all();
            if (m_owner) {
                QPointer<RedisConnection> owner(m_owner);
                QMetaObject::invokeMethod(
                    m_owner,
                    [owner, st, error, announce] {
                        if (owner)
                            notifyOwner(owner, st, error, announce);
                    },
                    Qt::QueuedConnection);
            }
        }
    }
    static void notifyOwner(RedisConnection *owner, RedisConnection::State st, const QString &error, bool announce);

    Link *openLink(StreamP *stream)
    {
        auto *link = new Link;
        link->client = this;
        link->stream = stream;
        redisAsyncContext *ac = m_settings.socketPath.isEmpty()
                                    ? redisAsyncConnect(m_settings.host.toUtf8().constData(), m_settings.port)
                                    : redisAsyncConnectUnix(m_settings.socketPath.toUtf8().constData());
        if (!ac || ac->err) {
            const QString why = ac ? QString::fromUtf8(ac->errstr) : QStringLiteral("out of memory");
            if (ac)
                redisAsyncFree(ac);
            delete link;
            m_openError = why;
            return nullptr;
        }
        link->ac = ac;
        ac->data = link;
        ac->ev.data = link;
        ac->ev.addRead = [](void *p) { static_cast<Link *>(p)->readNotifier->setEnabled(true); };
        ac->ev.delRead = [](void *p) { static_cast<Link *>(p)->readNotifier->setEnabled(false); };
        ac->ev.addWrite = [](void *p) { static_cast<Link *>(p)->writeNotifier->setEnabled(true); };
        ac->ev.delWrite = [](void *p) { static_cast<Link *>(p)->writeNotifier->setEnabled(false); };
        ac->ev.cleanup = [](void *p) {
            auto *l = static_cast<Link *>(p);
            for (QSocketNotifier **n : {&l->readNotifier, &l->writeNotifier}) {
                if (*n) {
                    (*n)->setEnabled(false);
                    (*n)->deleteLater();
                    *n = nullptr;
                }
            }
            l->ac = nullptr;
            l->ready = false;
            if (l->client->m_cmd == l)
                l->client->m_cmd = nullptr;
            if (l->stream && l->stream->reader == l)
                l->stream->reader = nullptr;
        };
        link->readNotifier = new QSocketNotifier(ac->c.fd, QSocketNotifier::Read, m_home);
        link->readNotifier->setEnabled(false);
        link->writeNotifier = new QSocketNotifier(ac->c.fd, QSocketNotifier::Write, m_home);
        link->writeNotifier->setEnabled(false);
        QObject::connect(link->readNotifier, &QSocketNotifier::activated, m_home, [this, link] {
            if (link->ac)
                redisAsyncHandleRead(link->ac);
            afterIo();
        });
        QObject::connect(link->writeNotifier, &QSocketNotifier::activated, m_home, [this, link] {
            if (link->ac)
                redisAsyncHandleWrite(link->ac);
            afterIo();
        });
        redisAsyncSetConnectCallback(ac, &RedisClient::onConnect);
        redisAsyncSetDisconnectCallback(ac, &RedisClient::onDisconnect);
        m_links.push_back(link);
        return link;
    }

    void closeLink(Link *link)
    {
        if (!link)
            return;
        link->closing = true;
        link->ready = false;
        if (link->stream && link->stream->reader == link)
            link->stream->reader = nullptr;
        link->stream = nullptr;
        if (link == m_cmd)
            m_cmd = nullptr;
        if (link->ac)
            redisAsyncFree(link->ac); // NULL replies to its callbacks, then cleanup
    }

    void closeAllLinks()
    {
        closeLink(m_cmd);
        m_cmd = nullptr;
        for (auto &s : m_streams) {
            closeLink(s->reader);
            s->reader = nullptr;
        }
    }

    /* Deletes the links whose context is gone (never inside a hiredis callback). */
    void reapLinks()
    {
        for (auto it = m_links.begin(); it != m_links.end();) {
            if (!(*it)->ac) {
                delete *it;
                it = m_links.erase(it);
            } else {
                ++it;
            }
        }
    }

    void connectAll()
    {
        if (m_shuttingDown || state() == RedisConnection::State::Failed)
            return;
        ++m_generation;
        m_attempts.fetch_add(1);
        m_cmd = openLink(nullptr);
        if (!m_cmd) {
            teardown(QStringLiteral("cannot connect to %1: %2").arg(m_redacted, m_openError), false);
            return;
        }
        m_connectTimeout->start(10000);
    }

    void connectReader(StreamP *s)
    {
        if (s->reader || s->removed || s->options.prefetch == 0)
            return;
        s->reader = openLink(s);
        if (!s->reader)
            QMetaObject::invokeMethod(m_home, [this, why = m_openError] {
                teardown(QStringLiteral("cannot connect to %1: %2").arg(m_redacted, why), false);
            }, Qt::QueuedConnection);
    }

    static void onConnect(const redisAsyncContext *ac, int status)
    {
        auto *link = static_cast<Link *>(ac->data);
        RedisClient *self = link->client;
        if (status != REDIS_OK) {
            const QString why = QString::fromUtf8(ac->errstr);
            const int generation = self->m_generation;
            QMetaObject::invokeMethod(self->m_home, [self, why, generation] {
                if (generation == self->m_generation)
                    self->teardown(QStringLiteral("cannot connect to %1: %2").arg(self->m_redacted, why), false);
            }, Qt::QueuedConnection);
            return;
        }
        self->handshake(link);
    }

    static void onDisconnect(const redisAsyncContext *ac, int)
    {
        auto *link = static_cast<Link *>(ac->data);
        if (link->closing)
            return;
        RedisClient *self = link->client;
        const QString why = ac->err ? QString::fromUtf8(ac->errstr) : QStringLiteral("closed by the server");
        const int generation = self->m_generation;
        QMetaObject::invokeMethod(self->m_home, [self, why, generation] {
            if (generation == self->m_generation)
                self->teardown(QStringLiteral("connection to %1 lost: %2").arg(self->m_redacted, why), false);
        }, Qt::QueuedConnection);
    }

    void handshake(Link *link)
    {
        auto send = [&](std::initializer_list<QByteArray> args) {
            std::vector<const char *> argv;
            std::vector<size_t> lens;
            for (const auto &a : args) {
                argv.push_back(a.constData());
                lens.push_back(size_t(a.size()));
            }
            ++link->handshakeLeft;
            redisAsyncCommandArgv(link->ac, &RedisClient::onHandshake, link, int(argv.size()), argv.data(), lens.data());
        };
        if (!m_settings.password.isEmpty()) {
            if (m_settings.user.isEmpty())
                send({"AUTH", m_settings.password.toUtf8()});
            else
                send({"AUTH", m_settings.user.toUtf8(), m_settings.password.toUtf8()});
        }
        if (m_settings.database != 0)
            send({"SELECT", QByteArray::number(m_settings.database)});
        send({"PING"});
    }

    static void onHandshake(redisAsyncContext *ac, void *r, void *privdata)
    {
        auto *link = static_cast<Link *>(privdata);
        auto *reply = static_cast<redisReply *>(r);
        if (!reply || link->closing)
            return;
        RedisClient *self = link->client;
        if (reply->type == REDIS_REPLY_ERROR) {
            const QString message = QString::fromUtf8(replyString(reply));
            link->handshakeLeft = -1000; // ignore what follows
            const bool transient = message.startsWith(QLatin1String("LOADING")) || message.startsWith(QLatin1String("BUSY"));
            const int generation = self->m_generation;
            QMetaObject::invokeMethod(self->m_home, [self, message, transient, generation] {
                if (generation != self->m_generation)
                    return;
                self->teardown(transient ? QStringLiteral("%1 is not ready: %2").arg(self->m_redacted, message)
                                         : QStringLiteral("%1 refused the connection: %2").arg(self->m_redacted, message),
                               !transient);
            }, Qt::QueuedConnection);
            return;
        }
        Q_UNUSED(ac);
        if (--link->handshakeLeft == 0) {
            link->ready = true;
            if (!link->stream)
                self->commandLinkReady();
            else
                self->maybeRead(link->stream);
        }
    }

    void commandLinkReady()
    {
        m_connectTimeout->stop();
        m_backoffMs = 100;
        if (m_everLost)
            qCInfo(lcRedisCategory, "connected to %s again", qPrintable(m_redacted));
        m_announced = false;
        setState(RedisConnection::State::Connected, QString(), false);
        for (auto &s : m_streams) {
            createGroup(s.get());
            connectReader(s.get());
            sendPending(s.get());
        }
    }

    /* Closes every link; permanent: Failed, fails every pending send; otherwise retries later. */
    void teardown(const QString &why, bool permanent)
    {
        if (m_shuttingDown || state() == RedisConnection::State::Failed)
            return;
        ++m_generation;
        m_connectTimeout->stop();
        const bool wasConnected = state() == RedisConnection::State::Connected;
        closeAllLinks();
        for (auto &s : m_streams) {
            while (!s->inflightAdds.empty()) { // written, unanswered: written again
                s->pendingAdds.push_front(std::move(s->inflightAdds.back()));
                s->inflightAdds.pop_back();
            }
            s->reading = false;
            s->groupReady = false;
            s->groupCreating = false;
            s->historyDone = false;
            s->historyCursor = "0";
            s->awaitingCounts.clear(); // still pending for us: read again from history
            s->claiming = false;
            s->trimming = false;
        }
        m_lastError = why;
        if (permanent) {
            qCWarning(lcRedisCategory, "%s; not retrying", qPrintable(why));
            setState(RedisConnection::State::Failed, why, true);
            for (auto &s : m_streams)
                failStream(s.get(), why);
            return;
        }
        if (wasConnected || !m_announced) {
            m_everLost = m_everLost || wasConnected;
            qCWarning(lcRedisCategory, "%s; retrying with backoff", qPrintable(why));
            m_announced = true;
            setState(RedisConnection::State::Reconnecting, why, true);
        } else {
            qCDebug(lcRedisCategory, "%s; next attempt in %d ms", qPrintable(why), m_backoffMs);
            setState(RedisConnection::State::Reconnecting, why, false);
        }
        for (auto &s : m_streams) {
            if (s->options.sendTimeout.count() == 0)
                failAdds(s.get(), QStringLiteral("Redis mailbox %1: %2").arg(s->name, why));
            settle(s.get());
        }
        m_reconnectTimer->start(m_backoffMs);
        m_backoffMs = std::min(m_backoffMs * 2, 5000);
    }

    void failStream(StreamP *s, const QString &why)
    {
        {
            std::lock_guard lock(s->mutex);
            s->permanentError = QStringLiteral("Redis mailbox %1: %2").arg(s->name, why);
        }
        drainStream(s);
        failAdds(s, QStringLiteral("Redis mailbox %1: %2").arg(s->name, why));
        settle(s);
    }

    // Commands ------------------------------------------------------------------------------------

    using Callback = void (*)(RedisClient *, StreamP *, redisReply *);
    struct Pending
    {
        RedisClient *client;
        StreamP *stream;
        Callback callback;
    };

    /* Writes a command on the command link; \a cb gets its reply (not called when the link is
       lost: the teardown resets what depends on it). */
    void command(StreamP *s, Callback cb, std::initializer_list<QByteArray> head, const QList<QByteArray> &middle = {},
                 std::initializer_list<QByteArray> tail = {})
    {
        m_argv.clear();
        m_lens.clear();
        for (const auto &a : head) {
            m_argv.push_back(a.constData());
            m_lens.push_back(size_t(a.size()));
        }
        for (const auto &a : middle) {
            m_argv.push_back(a.constData());
            m_lens.push_back(size_t(a.size()));
        }
        for (const auto &a : tail) {
            m_argv.push_back(a.constData());
            m_lens.push_back(size_t(a.size()));
        }
        auto *p = new Pending{this, s, cb};
        ++s->outstanding;
        redisAsyncCommandArgv(m_cmd->ac, &RedisClient::onReply, p, int(m_argv.size()), m_argv.data(), m_lens.data());
    }

    static void onReply(redisAsyncContext *, void *r, void *privdata)
    {
        std::unique_ptr<Pending> p(static_cast<Pending *>(privdata));
        --p->stream->outstanding;
        if (!r)
            return; // the link is gone
        if (p->callback && !p->stream->removed)
            p->callback(p->client, p->stream, static_cast<redisReply *>(r));
    }

    void createGroup(StreamP *s)
    {
        if (s->groupReady || s->groupCreating || !m_cmd || !m_cmd->ready)
            return;
        s->groupCreating = true;
        command(s, [](RedisClient *self, StreamP *s, redisReply *r) {
            s->groupCreating = false;
            const QByteArray text = replyString(r);
            if (r->type == REDIS_REPLY_ERROR && !text.startsWith("BUSYGROUP")) {
                qCWarning(lcRedisCategory, "mailbox %s: XGROUP CREATE failed: %s", qPrintable(s->name), text.constData());
                return; // retried by the janitor
            }
            s->groupReady = true;
            self->maybeRead(s);
        }, {"XGROUP", "CREATE", s->key, s->group, "0", "MKSTREAM"});
    }

    void drain()
    {
        m_wakePending.store(false, std::memory_order_release);
        for (auto &s : m_streams) {
            drainStream(s.get());
            sendPending(s.get());
            maybeRead(s.get());
        }
    }

    void drainStream(StreamP *s)
    {
        std::vector<StreamP::Op> ops;
        {
            std::lock_guard lock(s->mutex);
            ops.swap(s->ops);
        }
        for (auto &op : ops) {
            switch (op.kind) {
            case StreamP::OpKind::Add:
                s->pendingAdds.push_back(StreamP::Add{op.id, std::move(op.bytes), op.sinceMs});
                break;
            case StreamP::OpKind::Ack: {
                auto it = s->held.find(op.id);
                if (it == s->held.end())
                    break; // not ours (any more): nothing is acknowledged twice
                s->ackBatch.push_back(it->sid);
                s->bySid.remove(it->sid);
                s->held.erase(it);
                break;
            }
            case StreamP::OpKind::Delivered: {
                auto it = s->held.find(op.id);
                if (it != s->held.end())
                    it->delivered = true;
                break;
            }
            case StreamP::OpKind::Dead: {
                auto it = s->held.find(op.id);
                if (it == s->held.end())
                    break;
                const QByteArray sid = it->sid;
                s->bySid.remove(sid);
                s->held.erase(it);
                deadLetter(s, sid, op.failures, op.reason, true);
                break;
            }
            case StreamP::OpKind::Closed:
                s->closedLocal = true;
                break;
            }
        }
    }

    void sendPending(StreamP *s)
    {
        if (!m_cmd || !m_cmd->ready || s->removed)
            return;
        if (!s->pendingAdds.empty()) {
            const char *argv[5] = {"XADD", s->key.constData(), "*", "b", nullptr};
            size_t lens[5] = {4, size_t(s->key.size()), 1, 1, 0};
            while (!s->pendingAdds.empty()) {
                auto &add = s->pendingAdds.front();
                argv[4] = add.bytes.constData();
                lens[4] = size_t(add.bytes.size());
                auto *p = new Pending{this, s, nullptr};
                ++s->outstanding;
                redisAsyncCommandArgv(m_cmd->ac, &RedisClient::onAdded, p, 5, argv, lens);
                s->inflightAdds.push_back(std::move(add)); // its bytes kept: written again if the link drops
                s->pendingAdds.pop_front();
            }
        }
        if (!s->ackBatch.empty()) {
            for (std::size_t from = 0; from < s->ackBatch.size(); from += 1000) {
                QList<QByteArray> ids;
                for (std::size_t i = from; i < std::min(s->ackBatch.size(), from + 1000); ++i)
                    ids << s->ackBatch[i];
                command(s, nullptr, {"XACK", s->key, s->group}, ids);
            }
            s->ackBatch.clear();
        }
    }

    static void onAdded(redisAsyncContext *, void *r, void *privdata)
    {
        std::unique_ptr<Pending> p(static_cast<Pending *>(privdata));
        StreamP *s = p->stream;
        --s->outstanding;
        if (!r)
            return; // lost: the teardown writes it again
        if (s->inflightAdds.empty())
            return;
        auto *reply = static_cast<redisReply *>(r);
        const quint64 ticket = s->inflightAdds.front().ticket;
        s->inflightAdds.pop_front();
        if (reply->type == REDIS_REPLY_ERROR)
            s->newFailures.emplace_back(ticket, QStringLiteral("Redis mailbox %1: XADD failed: %2")
                                                    .arg(s->name, QString::fromUtf8(replyString(reply))));
        s->resolvedLocal = ticket;
        p->client->m_settleDue = true;
    }

    void afterIo()
    {
        if (m_settleDue) {
            m_settleDue = false;
            for (auto &s : m_streams)
                settle(s.get());
        }
        if (!m_retired.empty()) {
            m_retired.erase(std::remove_if(m_retired.begin(), m_retired.end(),
                                           [](const auto &s) { return s->outstanding == 0; }),
                            m_retired.end());
        }
        reapLinks();
    }

    /* Publishes the client thread's resolved ticket and settles the waits up to it. */
    void settle(StreamP *s)
    {
        std::vector<std::pair<RedisStream::Settle, void *>> ok;
        std::vector<std::tuple<RedisStream::Settle, void *, QString>> failed;
        {
            std::lock_guard lock(s->mutex);
            for (auto &[ticket, why] : s->newFailures)
                s->failedTickets[ticket] = std::move(why);
            s->newFailures.clear();
            while (s->failedTickets.size() > 4096)
                s->failedTickets.erase(s->failedTickets.begin());
            if (s->resolvedLocal <= s->resolvedTicket)
                return;
            s->resolvedTicket = std::max(s->resolvedTicket, s->resolvedLocal);
            auto end = s->waits.upper_bound(s->resolvedTicket);
            for (auto it = s->waits.begin(); it != end; ++it) {
                auto f = s->failedTickets.find(it->first);
                if (f == s->failedTickets.end())
                    ok.push_back(it->second);
                else
                    failed.emplace_back(it->second.first, it->second.second, f->second);
            }
            s->waits.erase(s->waits.begin(), end);
        }
        s->resolvedCv.notify_all();
        for (auto &[fn, w] : ok)
            fn(w, nullptr);
        for (auto &[fn, w, why] : failed)
            fn(w, &why);
    }

    /* Fails every add not yet answered (in ticket order). */
    void failAdds(StreamP *s, const QString &why, qint64 olderThanMs = -1)
    {
        auto failFront = [&](std::deque<StreamP::Add> &q) {
            while (!q.empty() && (olderThanMs < 0 || q.front().sinceMs <= olderThanMs)) {
                s->newFailures.emplace_back(q.front().ticket, why);
                s->resolvedLocal = std::max(s->resolvedLocal, q.front().ticket);
                q.pop_front();
            }
        };
        failFront(s->inflightAdds);
        if (s->inflightAdds.empty())
            failFront(s->pendingAdds);
    }

    // Reading ---------------------------------------------------------------------------------------

    void maybeRead(StreamP *s)
    {
        if (s->removed || s->reading || s->closedLocal || s->gone || !s->groupReady || !s->reader || !s->reader->ready
            || !s->feed.load())
            return;
        const int room = s->options.prefetch - int(s->held.size());
        if (room <= 0)
            return;
        const QByteArray count = QByteArray::number(room);
        s->reading = true;
        auto *p = new Pending{this, s, nullptr};
        if (!s->historyDone) {
            const char *argv[] = {"XREADGROUP", "GROUP", s->group.constData(), s->consumer.constData(), "COUNT",
                                  count.constData(), "STREAMS", s->key.constData(), s->historyCursor.constData()};
            size_t lens[9];
            for (int i = 0; i < 9; ++i)
                lens[i] = strlen(argv[i]);
            redisAsyncCommandArgv(s->reader->ac, &RedisClient::onRead, p, 9, argv, lens);
        } else {
            const char *argv[] = {"XREADGROUP", "GROUP", s->group.constData(), s->consumer.constData(), "COUNT",
                                  count.constData(), "BLOCK", "1000", "STREAMS", s->key.constData(), ">"};
            size_t lens[11];
            for (int i = 0; i < 11; ++i)
                lens[i] = strlen(argv[i]);
            redisAsyncCommandArgv(s->reader->ac, &RedisClient::onRead, p, 11, argv, lens);
        }
    }

    static std::vector<Entry> parseEntries(const redisReply *entries)
    {
        std::vector<Entry> out;
        if (!entries || entries->type != REDIS_REPLY_ARRAY)
            return out;
        out.reserve(entries->elements);
        for (size_t i = 0; i < entries->elements; ++i) {
            const redisReply *e = entries->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 1)
                continue;
            Entry entry;
            entry.sid = replyString(e->element[0]);
            if (e->elements >= 2 && e->element[1]->type == REDIS_REPLY_ARRAY) {
                const redisReply *f = e->element[1];
                for (size_t k = 0; k + 1 < f->elements; k += 2) {
                    if (f->element[k]->len == 1 && f->element[k]->str[0] == 'b') {
                        entry.body = QByteArray(f->element[k + 1]->str, int(f->element[k + 1]->len));
                        entry.hasBody = true;
                    }
                }
                if (!entry.hasBody)
                    entry.hasBody = false;
                out.push_back(std::move(entry));
            } else {
                entry.count = 0; // deleted (trimmed) while pending: nothing to deliver
                out.push_back(std::move(entry));
            }
        }
        return out;
    }

    static void onRead(redisAsyncContext *, void *r, void *privdata)
    {
        std::unique_ptr<Pending> pending(static_cast<Pending *>(privdata));
        if (!r)
            return;
        RedisClient *self = pending->client;
        StreamP *s = pending->stream;
        s->reading = false;
        if (s->removed)
            return;
        auto *reply = static_cast<redisReply *>(r);
        if (reply->type == REDIS_REPLY_ERROR) {
            const QByteArray text = replyString(reply);
            if (text.startsWith("NOGROUP")) {
                s->groupReady = false;
                self->createGroup(s);
            } else {
                qCWarning(lcRedisCategory, "mailbox %s: XREADGROUP failed: %s", qPrintable(s->name), text.constData());
            }
            return; // the janitor reads again
        }
        std::vector<Entry> entries;
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 && reply->element[0]->type == REDIS_REPLY_ARRAY
            && reply->element[0]->elements == 2)
            entries = parseEntries(reply->element[0]->element[1]);
        if (!s->historyDone) {
            if (entries.empty()) {
                s->historyDone = true;
            } else {
                s->historyCursor = entries.back().sid;
                std::vector<Entry> unknown;
                QList<QByteArray> gone;
                for (auto &e : entries) {
                    if (s->bySid.contains(e.sid))
                        continue; // held already (a reconnection)
                    if (e.count == 0)
                        gone << e.sid;
                    else
                        unknown.push_back(std::move(e));
                }
                if (!gone.isEmpty() && self->m_cmd && self->m_cmd->ready)
                    self->command(s, nullptr, {"XACK", s->key, s->group}, gone);
                self->askCounts(s, std::move(unknown));
            }
        } else {
            for (auto &e : entries) {
                if (!self->feedEntry(s, std::move(e)))
                    break;
            }
        }
        self->maybeRead(s);
    }

    /* Entries from history or a takeover: their delivery counts first (XPENDING), then fed. */
    void askCounts(StreamP *s, std::vector<Entry> entries)
    {
        if (entries.empty())
            return;
        if (!m_cmd || !m_cmd->ready)
            return; // read again after reconnecting
        QByteArray first = entries.front().sid, last = entries.front().sid;
        for (const auto &e : entries) {
            if (sidLess(e.sid, first))
                first = e.sid;
            if (sidLess(last, e.sid))
                last = e.sid;
        }
        s->awaitingCounts.push_back(std::move(entries));
        command(s, [](RedisClient *self, StreamP *s, redisReply *r) {
            if (s->awaitingCounts.empty())
                return;
            std::vector<Entry> batch = std::move(s->awaitingCounts.front());
            s->awaitingCounts.pop_front();
            QHash<QByteArray, quint32> counts;
            if (r->type == REDIS_REPLY_ARRAY) {
                for (size_t i = 0; i < r->elements; ++i) {
                    const redisReply *p = r->element[i];
                    if (p->type == REDIS_REPLY_ARRAY && p->elements >= 4 && replyString(p->element[1]) == s->consumer)
                        counts.insert(replyString(p->element[0]), quint32(p->element[3]->integer));
                }
            }
            for (auto &e : batch) {
                auto it = counts.constFind(e.sid);
                if (it == counts.cend())
                    continue; // not ours any more
                e.count = *it;
                if (!self->feedEntry(s, std::move(e)))
                    break;
            }
            self->maybeRead(s);
        }, {"XPENDING", s->key, s->group, first, last, "100000", s->consumer});
    }

    /* Hands one entry to the mailbox, or dead-letters it. False: stop (the mailbox is gone). */
    bool feedEntry(StreamP *s, Entry &&e)
    {
        RedisFeed *feed = s->feed.load();
        if (!feed || s->removed || s->bySid.contains(e.sid))
            return feed && !s->removed;
        const quint32 before = e.count > 0 ? e.count - 1 : 0;
        const quint32 failures = before; // Redis cannot tell a crash from a clean exit: both count
        const int maxRedeliveries = feed->maxRedeliveries();
        if (maxRedeliveries < 0) {
            s->gone = true;
            return false;
        }
        QString reason;
        if (!e.hasBody)
            reason = QStringLiteral("undecodable: the entry has no 'b' field");
        else if (e.body.size() > s->options.maxMessageSize)
            reason = QStringLiteral("too large: %1 bytes, more than maxMessageSize (%2)")
                         .arg(e.body.size())
                         .arg(s->options.maxMessageSize);
        else if (int(failures) > maxRedeliveries)
            reason = QStringLiteral("delivered %1 times without an acknowledgement (its consumers failed or died)")
                         .arg(before);
        if (!reason.isEmpty()) {
            deadLetter(s, e.sid, failures, reason);
            return true;
        }
        const quint64 id = s->nextId.fetch_add(1) + 1;
        s->held.insert(id, StreamP::Held{e.sid});
        s->bySid.insert(e.sid, id);
        const QByteArray sid = e.sid;
        const auto result = feed->feed(std::move(e.body), id, before, failures, reason);
        if (s->removed)
            return false; // the mailbox was destroyed inside the feed
        switch (result) {
        case RedisFeed::Result::Fed:
            return true;
        case RedisFeed::Result::Undecodable:
            s->held.remove(id);
            s->bySid.remove(sid);
            deadLetter(s, sid, failures, reason);
            return true;
        case RedisFeed::Result::Gone:
            s->held.remove(id);
            s->bySid.remove(sid);
            s->gone = true;
            return false;
        }
        return true;
    }

    /* \a byMailbox: the mailbox dead-lettered it (and warned); otherwise the journal did (an
       entry no consumer may see), which warns here. */
    void deadLetter(StreamP *s, const QByteArray &sid, quint32 failures, const QString &reason, bool byMailbox = false)
    {
        if (byMailbox)
            qCDebug(lcRedisCategory, "mailbox %s: entry %s dead-lettered: %s", qPrintable(s->name), sid.constData(),
                    qPrintable(reason));
        else
            qCWarning(lcRedisCategory, "mailbox %s: entry %s dead-lettered: %s", qPrintable(s->name), sid.constData(),
                      qPrintable(reason));
        if (!m_cmd || !m_cmd->ready)
            return; // stays pending: dead-lettered again when taken over
        command(s, nullptr,
                {"EVAL", DeadLetterScript, "2", s->key, s->deadKey, s->group, sid, s->consumer, reason.toUtf8(),
                 QByteArray::number(failures), QByteArray::number(s->options.deadLetterMaxLength)});
    }

    // The janitor: refreshes what this process holds, takes over what dead consumers held, trims,
    // and applies the send timeout while disconnected. ----------------------------------------------

    void janitor()
    {
        const qint64 now = nowMs();
        const bool connected = m_cmd && m_cmd->ready;
        for (auto &sp : m_streams) {
            StreamP *s = sp.get();
            if (!connected) {
                const auto timeout = s->options.sendTimeout.count();
                if (timeout >= 0 && (!s->pendingAdds.empty() || !s->inflightAdds.empty())) {
                    failAdds(s, QStringLiteral("Redis mailbox %1: not acknowledged by Redis within sendTimeout (%2 ms): %3")
                                    .arg(s->name)
                                    .arg(timeout)
                                    .arg(m_lastError),
                             now - timeout);
                    settle(s);
                }
                continue;
            }
            drainStream(s);
            sendPending(s);
            if (!s->groupReady) {
                createGroup(s);
                continue;
            }
            maybeRead(s);
            const qint64 idle = s->options.claimMinIdle.count();
            if (!s->held.isEmpty() && now - s->lastRefreshMs >= idle / 3) {
                s->lastRefreshMs = now;
                QList<QByteArray> sids;
                for (const auto &h : std::as_const(s->held)) {
                    sids << h.sid;
                    if (sids.size() == 1000) {
                        command(s, nullptr, {"XCLAIM", s->key, s->group, s->consumer, "0"}, sids, {"JUSTID"});
                        sids.clear();
                    }
                }
                if (!sids.isEmpty())
                    command(s, nullptr, {"XCLAIM", s->key, s->group, s->consumer, "0"}, sids, {"JUSTID"});
            }
            if (!s->claiming && !s->closedLocal && !s->gone && s->historyDone && now - s->lastClaimMs >= idle / 2
                && int(s->held.size()) < s->options.prefetch) {
                s->lastClaimMs = now;
                claim(s);
            }
            if (s->options.trim && !s->trimming && now - s->lastTrimMs >= 1000) {
                s->lastTrimMs = now;
                trim(s);
            }
        }
        m_retired.erase(std::remove_if(m_retired.begin(), m_retired.end(),
                                       [](const auto &s) { return s->outstanding == 0; }),
                        m_retired.end());
        reapLinks();
    }

    void claim(StreamP *s)
    {
        s->claiming = true;
        const int room = std::min(100, s->options.prefetch - int(s->held.size()));
        command(s, [](RedisClient *self, StreamP *s, redisReply *r) {
            s->claiming = false;
            if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
                if (r->type == REDIS_REPLY_ERROR)
                    qCWarning(lcRedisCategory, "mailbox %s: XAUTOCLAIM failed: %s", qPrintable(s->name),
                              replyString(r).constData());
                return;
            }
            s->claimCursor = replyString(r->element[0]);
            if (s->claimCursor.isEmpty())
                s->claimCursor = "0-0";
            else if (s->claimCursor != "0-0")
                s->lastClaimMs = 0; // more to look at: again at the next tick
            std::vector<Entry> entries = parseEntries(r->element[1]);
            std::vector<Entry> mine;
            for (auto &e : entries) {
                if (s->bySid.contains(e.sid) || e.count == 0)
                    continue; // held here already, or deleted
                mine.push_back(std::move(e));
            }
            if (!mine.empty())
                qCInfo(lcRedisCategory, "mailbox %s: took over %d entries idle for %lld ms or more", qPrintable(s->name),
                       int(mine.size()), qlonglong(s->options.claimMinIdle.count()));
            self->askCounts(s, std::move(mine));
        }, {"XAUTOCLAIM", s->key, s->group, s->consumer, QByteArray::number(qint64(s->options.claimMinIdle.count())),
            s->claimCursor, "COUNT", QByteArray::number(std::max(room, 1))});
    }

    void trim(StreamP *s)
    {
        s->trimming = true;
        command(s, [](RedisClient *, StreamP *s, redisReply *r) {
            s->trimLastDelivered.clear();
            s->trimSingleGroup = false;
            if (r->type != REDIS_REPLY_ARRAY || r->elements != 1)
                return; // none, or several groups: not ours alone to trim
            const redisReply *g = r->element[0];
            for (size_t k = 0; k + 1 < g->elements; k += 2) {
                if (replyString(g->element[k]) == "last-delivered-id")
                    s->trimLastDelivered = replyString(g->element[k + 1]);
            }
            s->trimSingleGroup = replyString(g->elements > 1 ? g->element[1] : nullptr) == s->group;
        }, {"XINFO", "GROUPS", s->key});
        command(s, [](RedisClient *self, StreamP *s, redisReply *r) {
            if (!s->trimSingleGroup || s->trimLastDelivered.isEmpty() || r->type != REDIS_REPLY_ARRAY
                || r->elements < 2) {
                s->trimming = false;
                return;
            }
            QByteArray minId = s->trimLastDelivered;
            if (r->element[0]->integer > 0) {
                const QByteArray oldestPending = replyString(r->element[1]);
                if (!oldestPending.isEmpty() && sidLess(oldestPending, minId))
                    minId = oldestPending;
            }
            // Everything below minId was delivered and acknowledged.
            if (!self->m_cmd || !self->m_cmd->ready) {
                s->trimming = false;
                return;
            }
            self->command(s, [](RedisClient *, StreamP *s, redisReply *) { s->trimming = false; },
                          {"XTRIM", s->key, "MINID", minId});
        }, {"XPENDING", s->key, s->group});
    }

    // State ---------------------------------------------------------------------------------------

    RedisSettings m_settings;
    QString m_redacted;
    QString m_parseError;
    QThread *m_thread = nullptr;
    QObject *m_home = nullptr;

    mutable std::mutex m_ownerMutex;
    mutable std::condition_variable m_stateCv;
    RedisConnection *m_owner = nullptr;
    QString m_error;
    std::atomic<int> m_state{int(RedisConnection::State::Connecting)};
    std::atomic<int> m_attempts{0};
    std::atomic<bool> m_wakePending{false};

    // The client thread only.
    Link *m_cmd = nullptr;
    std::vector<Link *> m_links;
    std::vector<std::shared_ptr<StreamP>> m_streams;
    std::vector<std::shared_ptr<StreamP>> m_retired;
    QTimer *m_reconnectTimer = nullptr;
    QTimer *m_connectTimeout = nullptr;
    QTimer *m_janitor = nullptr;
    int m_backoffMs = 100;
    int m_generation = 0;
    bool m_shuttingDown = false;
    bool m_announced = false;
    bool m_everLost = false;
    bool m_settleDue = false;
    QString m_lastError;
    QString m_openError;
    std::vector<const char *> m_argv;
    std::vector<size_t> m_lens;
};

// -- RedisStream -----------------------------------------------------------------------------------

namespace {
std::atomic<int> g_consumerCounter{0};
}

RedisStream::RedisStream(std::shared_ptr<RedisClient> client, const QString &name, const RedisMailboxOptions &options)
    : d(std::make_shared<Private>())
{
    d->client = std::move(client);
    d->options = options;
    const RedisMailboxOptions defaults;
    d->name = name;
    if (name.isEmpty()) {
        qCWarning(lcRedisCategory, "RedisConnection::mailbox: the name must not be empty; using \"stage\"");
        d->name = QStringLiteral("stage");
    }
    auto check = [&](bool bad, const char *what, auto &field, auto fallback) {
        if (bad) {
            qCWarning(lcRedisCategory, "RedisConnection::mailbox: %s is out of range; using the default", what);
            field = fallback;
        }
    };
    check(options.capacity == 0 || options.capacity < -1, "capacity", d->options.capacity, defaults.capacity);
    check(options.prefetch < 0, "prefetch", d->options.prefetch, defaults.prefetch);
    check(options.claimMinIdle.count() < 100, "claimMinIdle", d->options.claimMinIdle, defaults.claimMinIdle);
    check(options.maxMessageSize < 1, "maxMessageSize", d->options.maxMessageSize, defaults.maxMessageSize);
    check(options.maxRedeliveries < 0, "maxRedeliveries", d->options.maxRedeliveries, defaults.maxRedeliveries);
    check(options.deadLetterMaxLength < 1, "deadLetterMaxLength", d->options.deadLetterMaxLength,
          defaults.deadLetterMaxLength);
    check(options.group.isEmpty(), "group", d->options.group, defaults.group);
    d->key = d->name.toUtf8();
    d->deadKey = d->key + ":dead";
    d->group = d->options.group.toUtf8();
    d->consumer = d->options.consumer.isEmpty()
                      ? QStringLiteral("%1:%2:%3")
                            .arg(QSysInfo::machineHostName())
                            .arg(qint64(::getpid()))
                            .arg(g_consumerCounter.fetch_add(1) + 1)
                            .toUtf8()
                      : d->options.consumer.toUtf8();
    if (d->client->state() == RedisConnection::State::Failed)
        d->permanentError = QStringLiteral("Redis mailbox %1: %2").arg(d->name, d->client->errorString());
}

RedisStream::~RedisStream()
{
    stop(std::chrono::milliseconds(0));
}

void RedisStream::start(RedisFeed *feed)
{
    d->feed.store(feed);
    d->client->addStream(d);
}

void RedisStream::stop(std::chrono::milliseconds timeout)
{
    {
        std::lock_guard lock(d->mutex);
        if (d->stopped)
            return;
        d->stopped = true;
    }
    RedisClient *client = d->client.get();
    auto s = d;
    client->runBlocking([client, s] { client->releaseHeld(s.get()); });
    if (!client->onThread()) {
        // Send what is pending, bounded; only worth waiting for while connected.
        QDeadlineTimer deadline(timeout);
        for (;;) {
            bool flushed = true;
            client->runBlocking([client, s, &flushed] { flushed = client->isFlushed(s.get()); });
            if (flushed || deadline.hasExpired() || client->state() != RedisConnection::State::Connected)
                break;
            QThread::msleep(5);
        }
    }
    client->runBlocking([client, s] { client->removeStreamOnThread(s.get()); });
    // The client may die with this reference. On its own thread (this mailbox died inside a
    // feed) that must wait for the top of its event loop: nothing of it may be on the stack.
    std::shared_ptr<RedisClient> keep;
    {
        std::lock_guard lock(d->mutex);
        keep = std::move(d->client);
    }
    if (client->onThread())
        QMetaObject::invokeMethod(client->home(), [keep = std::move(keep)] {}, Qt::QueuedConnection);
}

QString RedisStream::name() const
{
    return d->name;
}

int RedisStream::maxMessageSize() const
{
    return d->options.maxMessageSize;
}

quint64 RedisStream::append(QByteArray &&bytes, quint64 &ticket)
{
    bool wake = false;
    quint64 id;
    {
        std::lock_guard lock(d->mutex);
        if (!d->permanentError.isEmpty())
            throw JournalError(d->permanentError.toStdString());
        if (!d->client)
            throw JournalError(QStringLiteral("Redis mailbox %1: destroyed").arg(d->name).toStdString());
        if (d->options.sendTimeout.count() == 0 && d->client->state() != RedisConnection::State::Connected)
            throw JournalError(QStringLiteral("Redis mailbox %1: not connected (sendTimeout 0): %2")
                                   .arg(d->name, d->client->errorString())
                                   .toStdString());
        ticket = ++d->lastTicket;
        id = d->nextId.fetch_add(1) + 1;
        wake = d->ops.empty();
        d->ops.push_back(Private::Op{Private::OpKind::Add, 0, ticket, std::move(bytes), QString(), nowMs()});
    }
    if (wake)
        d->client->wake();
    return id;
}

namespace {
void pushOp(const std::shared_ptr<RedisStream::Private> &d, RedisStream::Private::Op &&op) noexcept
{
    bool wake;
    try {
        std::lock_guard lock(d->mutex);
        if (!d->client)
            return; // stopped
        wake = d->ops.empty();
        d->ops.push_back(std::move(op));
    } catch (...) {
        return; // out of memory: the entry stays pending and is taken over later
    }
    if (wake)
        d->client->wake(); // the client outlives every hook call: stop() comes after the last
}
} // namespace

void RedisStream::acknowledged(quint64 id) noexcept
{
    pushOp(d, Private::Op{Private::OpKind::Ack, 0, id, {}, {}, 0});
}

void RedisStream::delivered(quint64 id) noexcept
{
    pushOp(d, Private::Op{Private::OpKind::Delivered, 0, id, {}, {}, 0});
}

void RedisStream::requeued(quint64, quint32) noexcept
{
    // Still held by this process (back in its queue): nothing changes in Redis.
}

void RedisStream::deadLettered(quint64 id, quint32 failures, const QString &reason) noexcept
{
    pushOp(d, Private::Op{Private::OpKind::Dead, failures, id, {}, reason, 0});
}

void RedisStream::closed() noexcept
{
    pushOp(d, Private::Op{Private::OpKind::Closed, 0, 0, {}, {}, 0});
}

quint64 RedisStream::lastTicket() const noexcept
{
    std::lock_guard lock(d->mutex);
    return d->lastTicket;
}

void RedisStream::whenDurable(quint64 ticket, Settle settle, void *waiter)
{
    QString error;
    bool failed = false;
    {
        std::lock_guard lock(d->mutex);
        if (ticket > d->resolvedTicket && !d->stopped) {
            d->waits.emplace(ticket, std::make_pair(settle, waiter));
            return;
        }
        auto f = d->failedTickets.find(ticket);
        if (f != d->failedTickets.end()) {
            failed = true;
            error = f->second;
        } else if (ticket > d->resolvedTicket) {
            failed = true;
            error = QStringLiteral("Redis mailbox %1: destroyed").arg(d->name);
        }
    }
    settle(waiter, failed ? &error : nullptr);
}

bool RedisStream::waitDurable(quint64 ticket, std::chrono::steady_clock::time_point deadline)
{
    std::unique_lock lock(d->mutex);
    if (!d->resolvedCv.wait_until(lock, deadline, [&] { return d->resolvedTicket >= ticket || d->stopped; }))
        return false;
    auto f = d->failedTickets.find(ticket);
    if (f != d->failedTickets.end())
        throw JournalError(f->second.toStdString());
    if (d->resolvedTicket < ticket)
        throw JournalError(QStringLiteral("Redis mailbox %1: destroyed").arg(d->name).toStdString());
    return true;
}

} // namespace detail

// -- RedisConnection -------------------------------------------------------------------------------

void detail::RedisClient::notifyOwner(RedisConnection *owner, RedisConnection::State st, const QString &error,
                                       bool announce)
{
    owner->publishFromClient();
    if (announce && !error.isEmpty())
        Q_EMIT owner->errorOccurred(error);
}

RedisConnection::RedisConnection(const QString &url, QObject *parent) : QObject(parent)
{
    const auto parsed = detail::parseRedisUrl(url);
    if (!parsed.error.isEmpty())
        qCWarning(lcRedisCategory, "RedisConnection: %s", qPrintable(parsed.error));
    init(parsed.settings, parsed.error);
}

RedisConnection::RedisConnection(const RedisSettings &settings, QObject *parent) : QObject(parent)
{
    QString error;
    if (settings.socketPath.isEmpty() && settings.host.isEmpty())
        error = QStringLiteral("invalid Redis settings: no host and no socket path");
    else if (settings.socketPath.isEmpty() && (settings.port <= 0 || settings.port > 65535))
        error = QStringLiteral("invalid Redis settings: port %1 out of range").arg(settings.port);
    else if (settings.database < 0)
        error = QStringLiteral("invalid Redis settings: database %1 < 0").arg(settings.database);
    else if (!settings.user.isEmpty() && settings.password.isEmpty())
        error = QStringLiteral("invalid Redis settings: a user needs a password");
    if (!error.isEmpty())
        qCWarning(lcRedisCategory, "RedisConnection: %s", qPrintable(error));
    init(settings, error);
}

void RedisConnection::init(const RedisSettings &settings, const QString &error)
{
    d = std::make_shared<detail::RedisClient>(settings, error.isEmpty() ? detail::redactedUrl(settings)
                                                                         : QStringLiteral("<invalid URL>"),
                                              error);
    d->setOwner(this);
    d->begin();
}

RedisConnection::~RedisConnection()
{
    d->setOwner(nullptr);
}

RedisConnection::State RedisConnection::state() const
{
    return d->state();
}

QString RedisConnection::errorString() const
{
    return d->errorString();
}

QString RedisConnection::url() const
{
    return d->redacted();
}

int RedisConnection::connectAttempts() const
{
    return d->attempts();
}

bool RedisConnection::waitForConnected(std::chrono::milliseconds timeout) const
{
    return d->waitForConnected(timeout);
}

bool RedisConnection::flushBlocking(std::chrono::milliseconds timeout) const
{
    if (d->onThread()) {
        qCWarning(lcRedisCategory, "RedisConnection::flushBlocking: called on the connection's own thread");
        return false;
    }
    QDeadlineTimer deadline(timeout);
    for (;;) {
        if (d->state() != State::Connected)
            return false;
        bool flushed = false;
        auto *client = d.get();
        client->runBlocking([client, &flushed] { flushed = client->allFlushed(); });
        if (flushed)
            return true;
        if (deadline.hasExpired())
            return false;
        QThread::usleep(200);
    }
}

std::shared_ptr<detail::RedisClient> RedisConnection::client() const
{
    return d;
}

std::shared_ptr<detail::RedisClient> detail::clientOf(const RedisConnection &connection)
{
    return connection.d;
}

void RedisConnection::publishFromClient()
{
    const State st = d->state();
    const QString error = d->errorString();
    if (error != m_errorString) {
        m_errorString = error;
        Q_EMIT errorStringChanged(m_errorString);
    }
    if (st != m_state) {
        m_state = st;
        Q_EMIT stateChanged(m_state);
    }
}

} // namespace stage
