// The parent side of a ProcessGroup: the local server, one ChildLink per child process, and the
// worker coroutine that feeds a child from the mailbox (one Group worker run per child process).

#include "processprotocol_p.h"

#include <stage/errors.h>
#include <stage/processgroup.h>
#include <stage/signal.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QDeadlineTimer>
#include <QtCore/QDir>
#include <QtCore/QElapsedTimer>
#include <QtCore/QFileInfo>
#include <QtCore/QPointer>
#include <QtCore/QProcess>
#include <QtCore/QRandomGenerator>
#include <QtCore/QSet>
#include <QtCore/QThread>
#include <QtCore/QTimer>
#include <QtNetwork/QLocalServer>
#include <QtNetwork/QLocalSocket>

#include <algorithm>
#include <deque>
#include <stdexcept>

#ifdef Q_OS_LINUX
#  include <signal.h>
#  include <sys/prctl.h>
#  include <sys/socket.h>
#endif
#include <unistd.h>

namespace stage {

using namespace detail::process;

namespace {

/* How a child process ended its worker run; the worker's failure reason (what()). */
class ChildFailed : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

QByteArray randomBytes(int n)
{
    QByteArray bytes(n, Qt::Uninitialized);
    QRandomGenerator::system()->fillRange(reinterpret_cast<quint32 *>(bytes.data()), n / 4);
    return bytes;
}

} // namespace

class ChildLink;

class ProcessGroupShared : public QObject
{
public:
    explicit ProcessGroupShared(ProcessGroup *group) : q(group) {}
    ~ProcessGroupShared() override;

    bool listen();
    /* A child for a new worker run: the warm spare if there is one (then another is started). */
    ChildLink *createLink();
    ChildLink *launchLink();
    void startSpare();
    void dropSpare();
    void acceptConnections();
    void readHello(QLocalSocket *socket);
    void refuse(QLocalSocket *socket, const QString &why);
    void noteStatistics()
    {
        if (q)
            q->noteStatistics();
    }
    /* Blocking: asks every child to exit, waits at most \a budget ms, kills the rest. */
    void reapAll(int budgetMs);

    ProcessGroup *q;
    QString entry;
    std::shared_ptr<detail::MessageSource> source;
    QPointer<MailboxBase> mailboxObject;
    QLocalServer *server = nullptr;
    QSet<ChildLink *> links; // every link alive (QObject children of this)
    ChildLink *spare = nullptr; // the warm spare: started ahead, connected, holding nothing
    bool warmSpare = false;
    int maxInFlight = 1;
    int connectTimeout = 10000;
    int maxFrameSize = 16 * 1024 * 1024;
    qint64 refused = 0;
    qint64 processed = 0;
};

/*
    One child process and its connection, for one worker run (or the warm spare, until a run
    takes it). The link feeds its child itself, from its slots: each read of the connection
    acknowledges what the child processed, answers the requests it replied to, and sends as many
    new messages as the window has room for, in one write; the mailbox's coalesced signals wake
    it when its child waits for work. The messages it holds belong to the worker run (see
    HeldMessages). It signals changed() only when the worker run has something to look at: a
    death, a tick (which keeps the group's watchdog fed), the mailbox drained.
*/
class ChildLink : public QObject
{
    Q_OBJECT

public:
    enum class Retire { Ask, Terminate, Kill };

    ChildLink(ProcessGroupShared *shared, int heartbeatMs, int shutdownMs)
        : QObject(shared), m_shared(shared), m_heartbeatMs(heartbeatMs), m_shutdownMs(shutdownMs),
          m_connectMs(shared->connectTimeout), m_maxFrame(shared->maxFrameSize), m_secret(randomBytes(kSecretSize))
    {
        shared->links.insert(this);
        m_tick.setInterval(m_heartbeatMs > 0 ? std::clamp(m_heartbeatMs / 4, 5, 250) : 250);
        connect(&m_tick, &QTimer::timeout, this, &ChildLink::onTick);
    }

    ~ChildLink() override
    {
        m_shared->links.remove(this);
        if (m_process && m_process->state() != QProcess::NotRunning) {
            m_process->disconnect(this);
            m_process->kill();
            m_process->waitForFinished(1000);
        }
    }

    void launch()
    {
        m_process = new QProcess(this);
        m_process->setProgram(QCoreApplication::applicationFilePath());
        m_process->setArguments({QString::fromLatin1(kArgument) + m_shared->entry});
        m_process->setProcessChannelMode(QProcess::ForwardedChannels);
        m_process->setInputChannelMode(QProcess::ForwardedInputChannel);
        QProcessEnvironment env = QProcessEnvironment::systemEnvironment();
        env.insert(QString::fromLatin1(kEnvServer), m_shared->server->fullServerName());
        env.insert(QString::fromLatin1(kEnvSecret), QString::fromLatin1(m_secret.toHex()));
        env.insert(QString::fromLatin1(kEnvParent), QString::number(QCoreApplication::applicationPid()));
        env.insert(QString::fromLatin1(kEnvHeartbeat), QString::number(m_heartbeatMs));
        m_process->setProcessEnvironment(env);
#ifdef Q_OS_LINUX
        // Between fork and exec: async-signal-safe. The child dies with the thread that forked it.
        m_process->setChildProcessModifier([] { ::prctl(PR_SET_PDEATHSIG, SIGKILL); });
#endif
        connect(m_process, &QProcess::finished, this, &ChildLink::onFinished);
        connect(m_process, &QProcess::errorOccurred, this, [this](QProcess::ProcessError error) {
            if (error == QProcess::FailedToStart)
                die(QStringLiteral("failed to start: %1").arg(m_process->errorString()), Retire::Kill);
        });
        m_sinceLaunch.start();
        m_tick.start();
        m_process->start();
        m_pid = m_process->processId();
        m_shared->noteStatistics();
    }

    /* The child's pid, also after it has exited (0 before it started). */
    qint64 pid() const { return m_pid; }
    bool isRunning() const { return m_process && m_process->state() != QProcess::NotRunning; }
    bool isAwaitingHello() const { return !m_socket && !m_dead && !m_retired; }
    const QByteArray &secret() const { return m_secret; }
    bool isConnected() const { return m_socket && !m_dead; }
    bool isDead() const { return m_dead; }
    QString reason() const { return m_reason; }
    quint64 acked() const { return m_acked; }
    bool isSpare() const { return m_spare; }
    void startSpareAfterFirstAck() { m_startSpareOnAck = true; }
    void setSpare(bool spare) { m_spare = spare; }

    /* A worker run takes this child: it feeds it from \a held, \a window messages at most. */
    void adopt(detail::HeldMessages *held, int window)
    {
        m_spare = false;
        m_held = held;
        m_window = std::max(1, window);
        if (MailboxBase *object = m_shared->mailboxObject.data()) {
            connect(object, &MailboxBase::countChanged, this, &ChildLink::pump);
            connect(object, &MailboxBase::closedChanged, this, &ChildLink::pump);
        }
        pump();
    }
    /* The worker run ends: its messages are about to be destroyed; never touch them again. */
    void release()
    {
        m_held = nullptr;
        if (MailboxBase *object = m_shared->mailboxObject.data())
            object->disconnect(this);
    }
    /* Nothing held and the mailbox closed and empty: the worker run is done. */
    bool isFinished() const
    {
        return m_held && m_held->size() == 0 && m_shared->source && m_shared->source->isDrained();
    }

    void attach(QLocalSocket *socket)
    {
        m_socket = socket;
        socket->setParent(this);
        m_sinceLife.start();
        if (m_heartbeatMs <= 0)
            m_tick.stop();
        connect(socket, &QLocalSocket::readyRead, this, &ChildLink::onRead);
        connect(socket, &QLocalSocket::disconnected, this, &ChildLink::onDisconnected);
        qCDebug(lcProcess, "ProcessGroup: child %lld connected", pid());
        onRead();
        pump();
    }

    /* The worker run ended: the link is the group's until its process has exited. */
    void retire(Retire how)
    {
        release();
        m_retired = true;
        m_tick.stop();
        if (m_dead && int(m_deathMode) > int(how))
            how = m_deathMode;
        if (!isRunning()) {
            deleteLater();
            return;
        }
        switch (how) {
        case Retire::Ask:
            askToExit();
            break;
        case Retire::Terminate:
            if (m_socket)
                m_socket->abort();
            m_process->terminate();
            break;
        case Retire::Kill:
            if (m_socket)
                m_socket->abort();
            m_process->kill();
            return;
        }
        // Ask (or terminate), wait shutdownTimeout, then kill.
        QTimer::singleShot(std::max(m_shutdownMs, 1), this, [this] {
            if (isRunning()) {
                qCWarning(lcProcess, "ProcessGroup: child %lld did not exit within %d ms; killed", pid(), m_shutdownMs);
                m_process->kill();
            }
        });
    }

    /* ~ProcessGroup: no signals from here on; the process is asked to exit (a Stop frame). */
    void beginReap()
    {
        m_reaping = true;
        m_tick.stop();
        if (!isRunning())
            return;
        askToExit();
    }

    /* A Stop frame to a connected child; SIGTERM to one that is not (yet) connected. */
    void askToExit()
    {
        if (m_socket && m_socket->state() == QLocalSocket::ConnectedState) {
            QByteArray out;
            appendEmpty(out, Frame::Stop);
            m_socket->write(out);
            m_socket->flush();
        } else {
            m_process->terminate();
        }
    }
    void finishReap(const QDeadlineTimer &deadline)
    {
        if (!isRunning())
            return;
        m_process->disconnect(this);
        if (!m_process->waitForFinished(int(std::max<qint64>(deadline.remainingTime(), 0)))) {
            qCWarning(lcProcess, "ProcessGroup: child %lld did not exit in time; killed", pid());
            m_process->kill();
            m_process->waitForFinished(1000);
        }
    }

Q_SIGNALS:
    void changed();

private:
    void die(const QString &reason, Retire mode)
    {
        if (m_dead || m_reaping)
            return;
        m_dead = true;
        m_reason = reason;
        m_deathMode = mode;
        if (m_spare) {
            // A spare no run has taken: nothing is lost; the next run starts a child anew.
            qCDebug(lcProcess, "ProcessGroup: the warm spare %lld ended: %s", pid(), qPrintable(reason));
            m_shared->dropSpare();
            return;
        }
        if (m_retired) {
            retire(mode);
            return;
        }
        Q_EMIT changed();
    }

    /* Sends as many messages as the window has room for, in one write. A message that failed
       before goes alone, once the child holds nothing else. */
    void pump()
    {
        // Nothing more to a child whose process or connection is gone (the acknowledgements it
        // wrote before are still read): it would be held, and counted as failed, for nothing.
        if (!m_held || !isConnected() || m_retired || m_exited || m_socketGone)
            return;
        QByteArray out;
        for (;;) {
            if (m_aloneWaiting) {
                if (m_sent > 0)
                    break;
                appendDeliver(out, m_firstId, quint32(m_held->previousDeliveries(0)), m_held->payload(0));
                m_sent = 1;
                m_aloneWaiting = false;
                m_isolating = true;
                break;
            }
            if (m_isolating || m_sent >= m_window)
                break;
            if (!m_held->take())
                break;
            const qsizetype i = m_sent;
            if (m_held->failures(i) > 0) {
                m_aloneWaiting = true;
                continue;
            }
            const QByteArray payload = m_held->payload(i);
            if (out.isEmpty()) // one allocation per write: room for the window at this size (<= 1 MiB)
                out.reserve(qsizetype(std::min<qint64>(qint64(kHeaderSize + 13 + payload.size()) * (m_window - m_sent),
                                                       1 << 20)));
            appendDeliver(out, m_firstId + quint64(i), quint32(m_held->previousDeliveries(i)), payload);
            ++m_sent;
        }
        if (!out.isEmpty()) {
            m_sentUpTo = m_firstId + quint64(m_sent) - 1;
            m_socket->write(out);
            // Now, not at the next turn of the event loop (QLocalSocket buffers writes until its
            // notifier fires): the child can start on it while this thread goes on.
            m_socket->flush();
            m_shared->noteStatistics();
        }
        if (isFinished())
            Q_EMIT changed(); // closed and drained: the run ends, the child is asked to exit
    }

    void protocolError(const QString &what)
    {
        qCWarning(lcProcess, "ProcessGroup: child %lld broke the protocol (%s); killed", pid(), qPrintable(what));
        die(QStringLiteral("protocol error: %1").arg(what), Retire::Kill);
        if (m_socket)
            m_socket->abort();
        if (isRunning())
            m_process->kill();
    }

    void onRead()
    {
        if (!m_socket || m_dead || m_retired || !m_socket->isReadable())
            return;
        // What is there, no more: readAll() would also read the closed socket underneath once the
        // connection has dropped (a warning from QIODevice).
        if (const qint64 available = m_socket->bytesAvailable(); available > 0)
            m_input += m_socket->read(available);
        qsizetype pos = 0;
        bool any = false;
        while (m_input.size() - pos >= kHeaderSize) {
            const quint32 length = qFromBigEndian<quint32>(m_input.constData() + pos);
            if (length < 1 || qint64(length) > m_maxFrame) {
                protocolError(QStringLiteral("a frame of %1 bytes (the limit is %2)").arg(length).arg(m_maxFrame));
                return;
            }
            if (m_input.size() - pos < kHeaderSize + qsizetype(length))
                break;
            const auto type = Frame(quint8(m_input.at(pos + kHeaderSize)));
            const char *body = m_input.constData() + pos + kHeaderSize + 1;
            const qsizetype bodySize = qsizetype(length) - 1;
            pos += kHeaderSize + length;
            any = true;
            switch (type) {
            case Frame::Ack: {
                if (length != kAckLength) {
                    protocolError(QStringLiteral("an acknowledgement of %1 bytes").arg(length));
                    return;
                }
                const quint64 id = qFromBigEndian<quint64>(body);
                if (id <= m_acked || id > m_sentUpTo) {
                    protocolError(QStringLiteral("an acknowledgement of message %1, which it does not hold").arg(id));
                    return;
                }
                m_acked = id;
                acknowledge(id);
                break;
            }
            case Frame::Reply: {
                if (length < 1 + 8) {
                    protocolError(QStringLiteral("a reply of %1 bytes").arg(length));
                    return;
                }
                const quint64 id = qFromBigEndian<quint64>(body);
                if (id <= m_acked || id > m_sentUpTo || id <= m_lastReply) {
                    protocolError(QStringLiteral("a reply to message %1, which it does not hold").arg(id));
                    return;
                }
                m_lastReply = id;
                if (m_held && id >= m_firstId) {
                    QString error;
                    if (!m_held->reply(qsizetype(id - m_firstId), QByteArray(body + 8, bodySize - 8), &error)) {
                        // Its acknowledgement, read with it, does not count: the message fails.
                        protocolError(QStringLiteral("a reply to message %1: %2").arg(id).arg(error));
                        return;
                    }
                }
                break;
            }
            case Frame::Heartbeat:
                if (length != 1) {
                    protocolError(QStringLiteral("a heartbeat of %1 bytes").arg(length));
                    return;
                }
                break;
            case Frame::Failed: {
                if (bodySize > kMaxReason) {
                    protocolError(QStringLiteral("a failure report of %1 bytes").arg(bodySize));
                    return;
                }
                const QString text = QString::fromUtf8(body, bodySize).left(1000);
                die(QStringLiteral("entry point threw: %1").arg(text), Retire::Terminate);
                return;
            }
            default:
                protocolError(QStringLiteral("a frame of unknown type %1").arg(int(type)));
                return;
            }
        }
        m_input.remove(0, pos);
        if (any) {
            m_sinceLife.restart();
            pump();
        }
    }

    /* The child processed every message up to \a id: acknowledged in the mailbox. */
    void acknowledge(quint64 id)
    {
        if (!m_held)
            return;
        qint64 n = 0;
        while (m_sent > 0 && m_firstId <= id) {
            m_held->ackFront();
            ++m_firstId;
            --m_sent;
            ++n;
        }
        if (m_sent == 0)
            m_isolating = false;
        m_shared->processed += n;
        if (n)
            m_shared->noteStatistics();
        if (n && m_startSpareOnAck) {
            m_startSpareOnAck = false;
            QTimer::singleShot(0, m_shared, [shared = m_shared] { shared->startSpare(); });
        }
    }

    void onDisconnected()
    {
        if (m_dead || m_retired)
            return;
        // The exit status says more than the dropped connection: wait for it (onFinished), at
        // most shutdownTimeout (onTick).
        m_socketGone = true;
        m_sinceSocketGone.start();
        m_tick.start();
        if (!isRunning())
            onFinished(m_process->exitCode(), m_process->exitStatus());
    }

    void onFinished(int code, QProcess::ExitStatus status)
    {
        if (m_exited)
            return; // reported already (the wait for the connection's end below re-enters)
        m_exited = true;
        m_tick.stop();
        if (m_socket && !m_dead && !m_retired) {
            // What it wrote before it died still counts (acknowledgements, its failure report):
            // the process is gone, so the rest of the stream and its end are there already (a
            // bounded wait, in case a process it started holds the connection open).
            if (m_socket->state() == QLocalSocket::ConnectedState)
                m_socket->waitForDisconnected(50);
            onRead();
        }
        QString reason;
        if (status == QProcess::CrashExit)
            reason = QStringLiteral("killed by signal %1").arg(code);
        else if (code == ExitUnknownEntry)
            reason = QStringLiteral("exit code %1 (unknown entry point)").arg(code);
        else
            reason = QStringLiteral("exit code %1").arg(code);
        qCDebug(lcProcess, "ProcessGroup: child %lld ended: %s", pid(), qPrintable(reason));
        m_shared->noteStatistics();
        if (m_retired) {
            deleteLater();
            return;
        }
        die(reason, Retire::Ask);
    }

    void onTick()
    {
        if (m_dead || m_retired)
            return;
        if (m_socketGone) {
            if (m_sinceSocketGone.elapsed() > m_shutdownMs)
                die(QStringLiteral("closed its connection"), Retire::Kill);
            return;
        }
        if (!m_socket) {
            if (m_sinceLaunch.elapsed() > m_connectMs) {
                qCWarning(lcProcess, "ProcessGroup: child %lld did not connect within %d ms; killed", pid(), m_connectMs);
                die(QStringLiteral("did not connect within %1 ms").arg(m_connectMs), Retire::Kill);
                return;
            }
        } else if (m_heartbeatMs > 0 && m_sinceLife.elapsed() > m_heartbeatMs) {
            // onRead() first: what is buffered counts as a sign of life.
            onRead();
            if (m_dead || m_sinceLife.elapsed() <= m_heartbeatMs)
                return;
            qCWarning(lcProcess, "ProcessGroup: child %lld missed its heartbeat (%d ms); terminating it", pid(),
                      m_heartbeatMs);
            die(QStringLiteral("missed heartbeat (no sign of life for %1 ms)").arg(m_heartbeatMs), Retire::Terminate);
            return;
        }
        Q_EMIT changed(); // the worker feeds the group's watchdog
    }

    ProcessGroupShared *m_shared;
    QProcess *m_process = nullptr;
    QLocalSocket *m_socket = nullptr;
    const int m_heartbeatMs;
    const int m_shutdownMs;
    const int m_connectMs;
    const int m_maxFrame;
    const QByteArray m_secret;
    QByteArray m_input;
    QTimer m_tick;
    QElapsedTimer m_sinceLaunch;
    QElapsedTimer m_sinceLife;
    QElapsedTimer m_sinceSocketGone;
    quint64 m_acked = 0;
    quint64 m_sentUpTo = 0;
    quint64 m_lastReply = 0;
    // The worker run's messages: m_held[i] for i < m_sent was sent as id m_firstId + i; one more
    // may wait at the back (m_aloneWaiting) until the child holds nothing else.
    detail::HeldMessages *m_held = nullptr;
    quint64 m_firstId = 1;
    qsizetype m_sent = 0;
    int m_window = 1;
    bool m_aloneWaiting = false;
    bool m_isolating = false;
    bool m_spare = false;
    bool m_startSpareOnAck = false;
    QString m_reason;
    Retire m_deathMode = Retire::Ask;
    bool m_dead = false;
    bool m_retired = false;
    bool m_reaping = false;
    bool m_socketGone = false;
    bool m_exited = false;
    qint64 m_pid = 0;
};

// ProcessGroupShared

ProcessGroupShared::~ProcessGroupShared()
{
    // Each link kills a process still running (nothing normally), while links is alive.
    const auto all = links.values();
    qDeleteAll(all);
    delete server;
}

bool ProcessGroupShared::listen()
{
    if (server)
        return true;
    server = new QLocalServer;
    server->setSocketOptions(QLocalServer::UserAccessOption);
    QString name = QStringLiteral("stage-%1-%2")
                       .arg(QCoreApplication::applicationPid())
                       .arg(QString::fromLatin1(randomBytes(16).toHex()));
    const QByteArray runtimeDir = qgetenv("XDG_RUNTIME_DIR");
    if (!runtimeDir.isEmpty() && QFileInfo(QString::fromLocal8Bit(runtimeDir)).isWritable())
        name = QDir(QString::fromLocal8Bit(runtimeDir)).filePath(name);
    if (!server->listen(name)) {
        qCWarning(lcProcess, "ProcessGroup: cannot listen on %s: %s", qPrintable(name), qPrintable(server->errorString()));
        delete server;
        server = nullptr;
        return false;
    }
    QObject::connect(server, &QLocalServer::newConnection, this, [this] { acceptConnections(); });
    return true;
}

ChildLink *ProcessGroupShared::launchLink()
{
    auto *link = new ChildLink(this, q ? q->heartbeatTimeout() : 0, q ? q->shutdownTimeout() : 5000);
    link->launch();
    return link;
}

ChildLink *ProcessGroupShared::createLink()
{
    ChildLink *link = std::exchange(spare, nullptr);
    if (link && (link->isDead() || !link->isRunning())) {
        link->retire(ChildLink::Retire::Kill);
        link = nullptr;
    }
    if (link) {
        link->setSpare(false);
        // The next spare starts once the replacement has acknowledged its first message (or
        // after 100 ms): starting a process takes a core for a few ms, which the replacement
        // should have first.
        link->startSpareAfterFirstAck();
        QTimer::singleShot(100, this, [this] { startSpare(); });
    } else {
        link = launchLink();
        if (warmSpare)
            QTimer::singleShot(0, this, [this] { startSpare(); });
    }
    return link;
}

void ProcessGroupShared::startSpare()
{
    if (spare || !warmSpare || !source || !q || q->state() == Node::State::Stopped)
        return;
    spare = launchLink();
    spare->setSpare(true);
}

void ProcessGroupShared::dropSpare()
{
    ChildLink *link = std::exchange(spare, nullptr);
    if (link)
        link->retire(ChildLink::Retire::Kill);
}

void ProcessGroupShared::acceptConnections()
{
    while (QLocalSocket *socket = server->nextPendingConnection()) {
        socket->setParent(this);
        QObject::connect(socket, &QLocalSocket::readyRead, this, [this, socket] { readHello(socket); });
        QObject::connect(socket, &QLocalSocket::disconnected, socket, &QObject::deleteLater);
        QTimer::singleShot(connectTimeout, socket, [this, socket] {
            if (socket->parent() == this)
                refuse(socket, QStringLiteral("no hello within %1 ms").arg(connectTimeout));
        });
        readHello(socket);
    }
}

void ProcessGroupShared::readHello(QLocalSocket *socket)
{
    if (socket->parent() != this)
        return; // handed over or refused already
    const QByteArray head = socket->peek(kHeaderSize + kHelloLength);
    if (head.size() >= kHeaderSize + 1) {
        const quint32 length = qFromBigEndian<quint32>(head.constData());
        if (length != kHelloLength || Frame(quint8(head.at(kHeaderSize))) != Frame::Hello) {
            refuse(socket, QStringLiteral("its first frame is not a hello"));
            return;
        }
    }
    if (head.size() < kHeaderSize + qsizetype(kHelloLength))
        return;
    if (std::memcmp(head.constData() + kHeaderSize + 1, kMagic, 4) != 0) {
        refuse(socket, QStringLiteral("a hello of another protocol"));
        return;
    }
    const char *secret = head.constData() + kHeaderSize + 1 + 4;
    ChildLink *match = nullptr;
    bool late = false;
    for (ChildLink *link : std::as_const(links)) {
        // Every candidate is compared in full: the time taken does not tell which came close.
        if (sameSecret(secret, link->secret())) {
            if (link->isAwaitingHello())
                match = link;
            else
                late = true;
        }
    }
    if (!match && late) {
        // Our own child, whose worker run ended before it connected (a stop, a failure): it
        // gets nothing and exits when the connection closes. Not a refusal.
        qCDebug(lcProcess, "ProcessGroup: dropped the late connection of a retired child");
        socket->disconnect(this);
        socket->setParent(nullptr);
        socket->abort();
        socket->deleteLater();
        return;
    }
    if (!match) {
        refuse(socket, QStringLiteral("it did not present a child's secret"));
        return;
    }
#ifdef Q_OS_LINUX
    ucred peer{};
    socklen_t size = sizeof peer;
    if (::getsockopt(int(socket->socketDescriptor()), SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0
        || qint64(peer.pid) != match->pid()) {
        refuse(socket, QStringLiteral("it presented a child's secret from process %1, not the child").arg(peer.pid));
        return;
    }
#endif
    socket->read(kHeaderSize + kHelloLength);
    socket->disconnect(this);
    QObject::disconnect(socket, &QLocalSocket::disconnected, socket, &QObject::deleteLater);
    match->attach(socket);
}

void ProcessGroupShared::refuse(QLocalSocket *socket, const QString &why)
{
    qCWarning(lcProcess, "ProcessGroup: refused a connection: %s", qPrintable(why));
    ++refused;
    noteStatistics();
    socket->disconnect(this);
    socket->setParent(nullptr);
    socket->abort();
    socket->deleteLater();
}

void ProcessGroupShared::reapAll(int budgetMs)
{
    const QDeadlineTimer deadline(budgetMs);
    const auto all = links.values();
    for (ChildLink *link : all)
        link->beginReap();
    for (ChildLink *link : all)
        link->finishReap(deadline);
}

namespace {

/* One worker run: one child process, fed from the mailbox (by its link) until it fails or is
   stopped, or the mailbox is closed and drained. */
QCoro::Task<> runChild(Worker &worker, std::shared_ptr<ProcessGroupShared> shared)
{
    ChildLink *link = shared->createLink();
    struct RetireOnExit
    {
        ChildLink *link;
        ChildLink::Retire how = ChildLink::Retire::Ask;
        ~RetireOnExit() { link->retire(how); }
    } retireOnExit{link};
    // Destroyed before retireOnExit: while this run unwinds after a failure, each message goes
    // back to the mailbox counted against it (a stop: uncounted), with this run's reason.
    const std::unique_ptr<detail::HeldMessages> held = shared->source->createHeld();
    // Destroyed first: the link lets go of the messages before they are.
    struct ReleaseOnExit
    {
        ChildLink *link;
        ~ReleaseOnExit() { link->release(); }
    } releaseOnExit{link};
    link->adopt(held.get(), shared->maxInFlight);
    try {
        for (;;) {
            worker.heartbeat();
            if (link->isDead())
                throw ChildFailed(link->reason().toStdString());
            if (link->isFinished())
                co_return; // closed and drained: the child is asked to exit
            co_await stage::signal(link, &ChildLink::changed);
        }
    } catch (const Cancelled &) {
        // Stopped as faulty by the group's watchdog (this thread was starved): terminate.
        if (detail::isStoppedAsFaulty(detail::currentWorker()))
            retireOnExit.how = ChildLink::Retire::Terminate;
        throw;
    }
}

} // namespace

// ProcessGroup

ProcessGroup::ProcessGroup(QObject *parent) : Group(parent), s(std::make_shared<ProcessGroupShared>(this))
{
    // A group that stops, or gives up, keeps no spare.
    connect(this, &Node::stateChanged, s.get(), [shared = s.get()](Node::State state) {
        if (state == Node::State::Stopping || state == Node::State::Stopped || state == Node::State::Failed)
            shared->dropSpare();
    });
}

ProcessGroup::~ProcessGroup()
{
    // The processes first, while nothing runs their links' signals: asked to exit, waited for
    // (at most shutdownTimeout in all), killed. Then ~Group stops the workers, whose messages
    // go back to the mailbox uncounted.
    s->reapAll(shutdownTimeout());
    s->q = nullptr;
    delete s->server;
    s->server = nullptr;
}

bool ProcessGroup::spawnSource(const QString &entryPoint, std::shared_ptr<detail::MessageSource> source,
                               MailboxBase *object)
{
    if (QThread::currentThread() != thread()) {
        qCWarning(lcProcess, "ProcessGroup::spawn: called from a thread other than the group's; ignored");
        return false;
    }
    if (!isProcessEntryRegistered(entryPoint)) {
        qCWarning(lcProcess, "ProcessGroup::spawn: no entry point \"%s\" is registered (stage::registerProcessEntry()); ignored",
                  qPrintable(entryPoint));
        return false;
    }
    if (s->source) {
        qCWarning(lcProcess, "ProcessGroup::spawn: the group already has an entry point; ignored");
        return false;
    }
    if (!s->listen())
        return false;
    s->entry = entryPoint;
    s->source = std::move(source);
    s->mailboxObject = object;
    setMailbox(object);
    auto shared = s;
    const bool ok = Group::spawn([shared](Worker &worker) { return runChild(worker, shared); });
    if (!ok) {
        s->source.reset();
        s->entry.clear();
        return false;
    }
    Q_EMIT entryPointChanged(s->entry);
    return true;
}

void ProcessGroup::noteStatistics()
{
    markDirty();
}

QString ProcessGroup::entryPoint() const
{
    return s->entry;
}

int ProcessGroup::maxInFlight() const
{
    return s->maxInFlight;
}

namespace {
// A setter's common part: \a value below \a minimum is refused with a warning naming \a function
// and \a rule; true if \a member changed (then the caller emits its NOTIFY signal).
bool acceptSetting(int &member, int value, int minimum, const char *function, const char *rule)
{
    if (value < minimum) {
        qCWarning(lcProcess, "ProcessGroup::%s: %s, got %d; ignored", function, rule, value);
        return false;
    }
    if (member == value)
        return false;
    member = value;
    return true;
}
} // namespace

void ProcessGroup::setMaxInFlight(int count)
{
    if (acceptSetting(s->maxInFlight, count, 1, "setMaxInFlight", "the count must be >= 1"))
        Q_EMIT maxInFlightChanged(count);
}

bool ProcessGroup::hasWarmSpare() const
{
    return s->warmSpare;
}

void ProcessGroup::setWarmSpare(bool on)
{
    if (s->warmSpare == on)
        return;
    s->warmSpare = on;
    if (!on)
        s->dropSpare();
    else if (s->q && (state() == State::Running || state() == State::Restarting || state() == State::Starting))
        s->startSpare();
    Q_EMIT warmSpareChanged(on);
}

bool ProcessGroup::isSpareReady() const
{
    return s->spare && s->spare->isConnected();
}

int ProcessGroup::connectTimeout() const
{
    return s->connectTimeout;
}

void ProcessGroup::setConnectTimeout(int milliseconds)
{
    if (acceptSetting(s->connectTimeout, milliseconds, 1, "setConnectTimeout", "the timeout must be > 0 ms"))
        Q_EMIT connectTimeoutChanged(milliseconds);
}

int ProcessGroup::maxFrameSize() const
{
    return s->maxFrameSize;
}

void ProcessGroup::setMaxFrameSize(int bytes)
{
    if (acceptSetting(s->maxFrameSize, bytes, 1024, "setMaxFrameSize", "the size must be >= 1024 bytes"))
        Q_EMIT maxFrameSizeChanged(bytes);
}

int ProcessGroup::processCount() const
{
    int n = 0;
    for (ChildLink *link : std::as_const(s->links))
        n += link->isRunning() ? 1 : 0;
    return n;
}

qint64 ProcessGroup::refusedConnections() const
{
    return s->refused;
}

qint64 ProcessGroup::processedMessages() const
{
    return s->processed;
}

QString ProcessGroup::serverName() const
{
    return s->server ? s->server->fullServerName() : QString();
}

} // namespace stage

#include "processgroup.moc"
