#pragma once

// A redis-server of a test's own (also used by the W9 benchmark and the redis-shared example):
// started on a unix socket in a fresh temp directory (--port 0: no TCP), stopped and removed by
// the destructor. Header-only; needs hiredis (the synchronous API, for set-up and checks).

#include <hiredis/hiredis.h>

#include <QtCore/QByteArray>
#include <QtCore/QDeadlineTimer>
#include <QtCore/QDir>
#include <QtCore/QFile>
#include <QtCore/QList>
#include <QtCore/QProcess>
#include <QtCore/QStandardPaths>
#include <QtCore/QStringList>
#include <QtCore/QTemporaryDir>
#include <QtCore/QThread>

#include <memory>
#include <signal.h>
#include <sys/prctl.h>
#include <vector>

namespace stagetest {

class RedisServer
{
public:
    RedisServer() : m_dir(QStringLiteral("/tmp/stage-redis-XXXXXX")) {} // short: a socket path has <= 107 bytes
    ~RedisServer() { stop(); }
    RedisServer(const RedisServer &) = delete;
    RedisServer &operator=(const RedisServer &) = delete;

    static QString executable() { return QStandardPaths::findExecutable(QStringLiteral("redis-server")); }
    static bool available() { return !executable().isEmpty(); }

    /* Starts the server with \a extra arguments (e.g. AOF, requirepass); true once it answers PING. */
    bool start(const QStringList &extra = {})
    {
        m_extra = extra;
        return startAgain();
    }
    /* Starts it again with the same arguments and directory (after kill()/stop()). */
    bool startAgain()
    {
        if (!m_dir.isValid() || executable().isEmpty())
            return false;
        QStringList args{QStringLiteral("--port"), QStringLiteral("0"), QStringLiteral("--unixsocket"), socketPath(),
                         QStringLiteral("--unixsocketperm"), QStringLiteral("700"), QStringLiteral("--dir"), m_dir.path(),
                         QStringLiteral("--save"), QString(), QStringLiteral("--logfile"),
                         m_dir.filePath(QStringLiteral("redis.log")), QStringLiteral("--daemonize"), QStringLiteral("no")};
        if (!m_extra.contains(QStringLiteral("--appendonly")))
            args << QStringLiteral("--appendonly") << QStringLiteral("no");
        args << m_extra;
        m_process = std::make_unique<QProcess>();
        m_process->setProcessChannelMode(QProcess::ForwardedErrorChannel);
        // Dies with this process, also when a test crashes (no orphaned server).
        m_process->setChildProcessModifier([] { ::prctl(PR_SET_PDEATHSIG, SIGKILL); });
        m_process->start(executable(), args);
        if (!m_process->waitForStarted(5000))
            return false;
        QDeadlineTimer deadline(10000);
        while (!deadline.hasExpired()) {
            if (m_process->state() != QProcess::Running)
                return false;
            redisContext *c = redisConnectUnix(socketPath().toUtf8().constData());
            if (c && !c->err) {
                auto *r = static_cast<redisReply *>(redisCommand(c, "PING"));
                const bool ok = r && (r->type == REDIS_REPLY_STATUS || (r->type == REDIS_REPLY_ERROR
                                                                        && QByteArray(r->str).startsWith("NOAUTH")));
                if (r)
                    freeReplyObject(r);
                redisFree(c);
                if (ok)
                    return true;
            } else if (c) {
                redisFree(c);
            }
            QThread::msleep(20);
        }
        return false;
    }
    /* SIGKILL, as a crash. */
    void kill()
    {
        if (m_process) {
            m_process->kill();
            m_process->waitForFinished(5000);
            m_process.reset();
        }
    }
    void stop()
    {
        if (m_process) {
            m_process->terminate();
            if (!m_process->waitForFinished(5000)) {
                m_process->kill();
                m_process->waitForFinished(5000);
            }
            m_process.reset();
        }
    }
    QString socketPath() const { return m_dir.filePath(QStringLiteral("redis.sock")); }
    QString url() const { return QStringLiteral("unix://") + socketPath(); }
    QString dir() const { return m_dir.path(); }

    /* One command on a connection of its own (set-up and checks); null on failure. */
    struct Reply
    {
        int type = 0;
        long long integer = 0;
        QByteArray string;
        std::vector<Reply> elements;
    };
    Reply command(const QList<QByteArray> &args, const QByteArray &password = QByteArray())
    {
        Reply out;
        redisContext *c = redisConnectUnix(socketPath().toUtf8().constData());
        if (!c || c->err) {
            if (c)
                redisFree(c);
            out.type = -1;
            return out;
        }
        if (!password.isEmpty())
            freeReplyObject(redisCommand(c, "AUTH %b", password.constData(), size_t(password.size())));
        std::vector<const char *> argv;
        std::vector<size_t> lens;
        for (const auto &a : args) {
            argv.push_back(a.constData());
            lens.push_back(size_t(a.size()));
        }
        auto *r = static_cast<redisReply *>(redisCommandArgv(c, int(argv.size()), argv.data(), lens.data()));
        if (r) {
            out = convert(r);
            freeReplyObject(r);
        } else {
            out.type = -1;
        }
        redisFree(c);
        return out;
    }
    long long integer(const QList<QByteArray> &args) { return command(args).integer; }

private:
    static Reply convert(const redisReply *r)
    {
        Reply out;
        out.type = r->type;
        out.integer = r->integer;
        if (r->str)
            out.string = QByteArray(r->str, int(r->len));
        for (size_t i = 0; i < r->elements; ++i)
            out.elements.push_back(convert(r->element[i]));
        return out;
    }

    QTemporaryDir m_dir;
    QStringList m_extra;
    std::unique_ptr<QProcess> m_process;
};

} // namespace stagetest
