// The child side of a ProcessGroup: the entry-point registry and runChildProcess().

#include "processprotocol_p.h"

#include <stage/processgroup.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QHash>
#include <QtCore/QMutex>
#include <QtCore/QPointer>
#include <QtCore/QTimer>
#include <QtNetwork/QLocalSocket>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#ifdef Q_OS_LINUX
#  include <signal.h>
#  include <sys/prctl.h>
#endif
#include <unistd.h>

Q_LOGGING_CATEGORY(lcStageProcess, "stage.process", QtInfoMsg)

namespace stage {

const QLoggingCategory &lcProcess()
{
    return lcStageProcess();
}

namespace detail {
HeldMessages::~HeldMessages() = default;
MessageSource::~MessageSource() = default;
} // namespace detail

namespace {

struct Registry
{
    QMutex mutex;
    QHash<QString, detail::RawProcessHandler> entries;
};

Registry &registry()
{
    static Registry r;
    return r;
}

QPointer<QLocalSocket> g_channel;

using namespace detail::process;

/* The child's loop: frames in, handler calls, acknowledgements out. */
class ChildRuntime : public QObject
{
public:
    ChildRuntime(detail::RawProcessHandler handler, QLocalSocket *socket, int heartbeatMs)
        : m_handler(std::move(handler)), m_socket(socket)
    {
        connect(m_socket, &QLocalSocket::readyRead, this, &ChildRuntime::readFrames);
        connect(m_socket, &QLocalSocket::disconnected, this, [this] { finish(ExitStopped); });
        if (heartbeatMs > 0) {
            m_heartbeat.setInterval(std::max(10, heartbeatMs / 4));
            connect(&m_heartbeat, &QTimer::timeout, this, [this] {
                QByteArray out;
                appendEmpty(out, Frame::Heartbeat);
                m_socket->write(out);
                m_socket->flush();
            });
            m_heartbeat.start();
        }
    }

    int exitCode = ExitStopped;

private:
    void finish(int code)
    {
        if (m_finished)
            return;
        m_finished = true;
        exitCode = code;
        m_heartbeat.stop();
        QCoreApplication::exit(code);
    }

    void readFrames()
    {
        if (m_finished)
            return;
        m_input += m_socket->readAll();
        qsizetype pos = 0;
        quint64 lastDone = 0;
        quint64 lastAcked = 0;
        while (!m_finished && m_input.size() - pos >= kHeaderSize + 1) {
            const quint32 length = qFromBigEndian<quint32>(m_input.constData() + pos);
            if (length < 1 || length > kChildMaxFrame) {
                std::fprintf(stderr, "stage: child: bad frame length %u from the parent\n", length);
                finish(ExitUsage);
                return;
            }
            if (m_input.size() - pos < kHeaderSize + qsizetype(length))
                break;
            const char *body = m_input.constData() + pos + kHeaderSize + 1;
            const auto type = Frame(quint8(m_input.at(pos + kHeaderSize)));
            const qsizetype bodySize = qsizetype(length) - 1;
            pos += kHeaderSize + length;
            if (type == Frame::Stop) {
                finish(ExitStopped);
                break;
            }
            if (type != Frame::Deliver || bodySize < 12) {
                std::fprintf(stderr, "stage: child: bad frame from the parent\n");
                finish(ExitUsage);
                return;
            }
            const quint64 id = qFromBigEndian<quint64>(body);
            // One buffer for every message: no allocation per message while the handler keeps
            // no copy of it (a copy it keeps makes data() detach: it is never overwritten).
            const qsizetype size = bodySize - 12;
            if (m_payload.size() != size)
                m_payload.resize(size);
            if (size > 0)
                std::memcpy(m_payload.data(), body + 12, size_t(size));
            try {
                if (std::optional<QByteArray> answer = m_handler(m_payload)) {
                    appendHeader(m_output, quint32(1 + 8 + answer->size()), Frame::Reply);
                    char idBytes[8];
                    qToBigEndian<quint64>(id, idBytes);
                    m_output.append(idBytes, 8);
                    m_output.append(*answer);
                }
            } catch (const std::exception &e) {
                fail(QString::fromUtf8(e.what()), lastDone != lastAcked ? lastDone : 0);
                return;
            } catch (...) {
                fail(QStringLiteral("an exception not derived from std::exception"), lastDone != lastAcked ? lastDone : 0);
                return;
            }
            lastDone = id;
            // A long read is acknowledged in parts, so the parent can refill the window while
            // this child works on the rest.
            if (++m_sinceAck == kAckEvery) {
                m_sinceAck = 0;
                appendAck(m_output, lastDone);
                m_socket->write(m_output);
                m_output.clear();
                m_socket->flush();
                lastAcked = lastDone;
            }
        }
        m_input.remove(0, pos);
        if (lastDone && lastDone != lastAcked) {
            // The replies, then one acknowledgement for every message of this read: each one up
            // to lastDone.
            m_sinceAck = 0;
            appendAck(m_output, lastDone);
            m_socket->write(m_output);
            m_output.clear();
            m_socket->flush();
        }
    }

    void fail(const QString &reason, quint64 lastDone)
    {
        QByteArray out = std::exchange(m_output, {}); // the replies of messages handled before
        if (lastDone)
            appendAck(out, lastDone); // and their acknowledgement: only the failing one fails
        const QByteArray text = reason.toUtf8().left(kMaxReason);
        appendHeader(out, quint32(1 + text.size()), Frame::Failed);
        out.append(text);
        m_socket->write(out);
        m_socket->flush();
        m_socket->waitForBytesWritten(1000);
        finish(ExitEntryThrew);
    }

    detail::RawProcessHandler m_handler;
    QByteArray m_output;
    QLocalSocket *m_socket;
    QTimer m_heartbeat;
    QByteArray m_input;
    QByteArray m_payload;
    static constexpr int kAckEvery = 128;
    int m_sinceAck = 0;
    bool m_finished = false;
};

} // namespace

QLocalSocket *detail::processChannel()
{
    return g_channel.data();
}

bool registerProcessEntry(const QString &name, ProcessHandler handler)
{
    if (!handler) {
        qCWarning(lcStageProcess, "stage::registerProcessEntry: an empty name or handler; ignored");
        return false;
    }
    return detail::registerRawProcessEntry(name, [h = std::move(handler)](const QByteArray &bytes) {
        h(bytes);
        return std::optional<QByteArray>();
    });
}

bool detail::registerRawProcessEntry(const QString &name, RawProcessHandler handler)
{
    if (name.isEmpty() || !handler) {
        qCWarning(lcStageProcess, "stage::registerProcessEntry: an empty name or handler; ignored");
        return false;
    }
    Registry &r = registry();
    QMutexLocker lock(&r.mutex);
    if (r.entries.contains(name)) {
        qCWarning(lcStageProcess, "stage::registerProcessEntry: %s is registered already; ignored", qPrintable(name));
        return false;
    }
    r.entries.insert(name, std::move(handler));
    return true;
}

bool isProcessEntryRegistered(const QString &name)
{
    Registry &r = registry();
    QMutexLocker lock(&r.mutex);
    return r.entries.contains(name);
}

std::optional<int> runChildProcess(int &argc, char **argv)
{
    const size_t prefix = std::strlen(kArgument);
    QString entry;
    bool found = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strncmp(argv[i], kArgument, prefix) == 0) {
            entry = QString::fromLocal8Bit(argv[i] + prefix);
            found = true;
            break;
        }
    }
    if (!found)
        return std::nullopt;

#ifdef Q_OS_LINUX
    // Die with the parent; set again here (the parent sets it between fork and exec too), then
    // check that the parent did not die before: we would have been reparented already.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
    const QByteArray parent = qgetenv(kEnvParent);
    const QByteArray server = qgetenv(kEnvServer);
    const QByteArray secretHex = qgetenv(kEnvSecret);
    const int heartbeatMs = qEnvironmentVariableIntValue(kEnvHeartbeat);
    // Nothing the entry point starts inherits them.
    qunsetenv(kEnvSecret);
    qunsetenv(kEnvServer);
    qunsetenv(kEnvParent);
    qunsetenv(kEnvHeartbeat);
    if (parent.isEmpty() || server.isEmpty() || secretHex.size() != 2 * kSecretSize) {
        std::fprintf(stderr, "stage: %s is started by a stage::ProcessGroup, not by hand\n", kArgument);
        return ExitUsage;
    }
    if (qint64(::getppid()) != parent.toLongLong()) {
        std::fprintf(stderr, "stage: child: the parent process is gone\n");
        return ExitStopped;
    }
    detail::RawProcessHandler handler;
    {
        Registry &r = registry();
        QMutexLocker lock(&r.mutex);
        handler = r.entries.value(entry);
    }
    if (!handler) {
        std::fprintf(stderr, "stage: child: unknown entry point \"%s\"\n", qPrintable(entry));
        return ExitUnknownEntry;
    }

    std::optional<QCoreApplication> app;
    if (!QCoreApplication::instance())
        app.emplace(argc, argv);

    QLocalSocket socket;
    socket.connectToServer(QString::fromLocal8Bit(server));
    if (!socket.waitForConnected(10000)) {
        std::fprintf(stderr, "stage: child: cannot connect to the parent: %s\n",
                     qPrintable(socket.errorString()));
        return ExitStopped;
    }
    g_channel = &socket;
    QByteArray hello;
    appendHello(hello, QByteArray::fromHex(secretHex));
    socket.write(hello);
    socket.flush();
    int code;
    {
        ChildRuntime runtime(std::move(handler), &socket, heartbeatMs);
        code = QCoreApplication::exec();
        socket.flush();
    }
    g_channel = nullptr;
    return code;
}

} // namespace stage
