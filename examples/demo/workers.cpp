// The worker bodies the QML tree names: indexer, hasher, fetcher, requester, poller.
//
// Each body is a coroutine function taking its parameters by value (never a capturing lambda
// coroutine: its captures would die at the first suspension). The registered lambdas only call
// them. Where each body runs is decided by its group in Main.qml: the indexer on two threads of
// its own, the fetcher on one, the others on the GUI thread.
#include "lineexchange.h"
#include "world.h"

#include <stage/errors.h>
#include <stage/offload.h>
#include <stage/registry.h>
#include <stage/signal.h>
#include <stage/sleep.h>

#include <qcoro/qcorotimer.h>

#include <QtCore/QCryptographicHash>
#include <QtCore/QFile>
#include <QtCore/QFileInfo>

#include <cmath>

using namespace std::chrono_literals;

namespace {

/*
    An injected hang in a call that a stop cannot interrupt (a foreign, non-Stage wait): the
    group reports the worker abandoned after its shutdownTimeout if it is stopped meanwhile. The
    count lets the app wait for such frames before it exits; it drops when the frame unwinds.
*/
class ForeignHang
{
public:
    ForeignHang(DemoWorld *world, const QString &worker) : m_world(world), m_worker(worker) {}
    ~ForeignHang() { end(); }
    void begin()
    {
        m_active = true;
        m_world->noteHangBegan(m_worker);
    }
    void end()
    {
        if (std::exchange(m_active, false))
            m_world->noteHangEnded();
    }

private:
    DemoWorld *m_world;
    QString m_worker;
    bool m_active = false;
};

// Hangs the calling body for options.hangMs in a QCoro timer, which Stage cannot cancel.
#define STAGE_DEMO_MAYBE_HANG(world, worker, name, hang)                                                        \
    if ((world)->faults.takeHang(name)) {                                                                      \
        (hang).begin();                                                                                        \
        co_await QCoro::sleepFor(std::chrono::milliseconds((world)->options.hangMs));                          \
        (hang).end();                                                                                          \
        (worker).throwIfStopRequested(); /* stopped meanwhile: unwind, putting back what it holds */           \
    }

qint64 countWords(const QString &path)
{
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly))
        throw std::runtime_error("cannot open " + QFileInfo(path).fileName().toStdString());
    const QByteArray bytes = file.readAll();
    if (bytes.startsWith("\x7f" "CORRUPT"))
        throw std::runtime_error("corrupt file " + QFileInfo(path).fileName().toStdString() + ": not text");
    qint64 words = 0;
    bool inWord = false;
    for (char c : bytes) {
        const bool space = c == ' ' || c == '\n' || c == '\t' || c == '\r';
        words += !space && !inWord;
        inWord = !space;
    }
    return words;
}

/* Reads "paths" on a worker thread, counts each file's words, publishes them to the index. */
QCoro::Task<> indexer(DemoWorld *world, stage::Worker &worker)
{
    const QString name = QStringLiteral("indexer");
    ForeignHang hang(world, name);
    const stage::Mailbox<PathMessage> paths = world->paths;
    for (;;) {
        world->faults.throwIfStorm(name); // never while holding a message
        auto message = co_await paths.receive(); // a Delivery: back to the mailbox if we throw
        worker.heartbeat();
        STAGE_DEMO_MAYBE_HANG(world, worker, name, hang)
        world->faults.throwIfInjected(name, "while holding a message");
        const qint64 words = countWords(message->path); // a corrupt file throws, every time
        world->index.addFile(message->path, words);
        message.ack();
        world->pathsLedger.noteDone(message->id);
    }
}

/* Every half second, hashes the indexed files that have no hash yet, on the thread pool. */
QCoro::Task<> hasher(DemoWorld *world, stage::Worker &worker)
{
    const QString name = QStringLiteral("hasher");
    ForeignHang hang(world, name);
    world->faults.throwIfStorm(name);
    for (;;) {
        co_await stage::sleep(500ms);
        worker.heartbeat();
        STAGE_DEMO_MAYBE_HANG(world, worker, name, hang)
        world->faults.throwIfStorm(name);
        world->faults.throwIfInjected(name, "between two batches");
        const QStringList batch = world->index.unhashed(32);
        if (batch.isEmpty())
            continue;
        // CPU work off the GUI thread; the body resumes here, on the GUI thread. A stop skips the
        // job if it has not started and tells a running one through its stop_token.
        auto job = [batch](std::stop_token stop) {
            QHash<QString, QByteArray> hashes;
            for (const QString &path : batch) {
                if (stop.stop_requested())
                    break;
                QFile file(path);
                if (file.open(QIODevice::ReadOnly))
                    hashes.insert(path, QCryptographicHash::hash(file.readAll(), QCryptographicHash::Sha256));
            }
            return hashes;
        };
        const QHash<QString, QByteArray> hashes = co_await stage::offload(std::move(job));
        world->index.setHashes(hashes);
    }
}

QString parseAnswer(const QByteArray &key, const QByteArray &line)
{
    // "OK <key> <value> <crc>"
    const QList<QByteArray> parts = line.split(' ');
    if (parts.size() != 4 || parts[0] != "OK" || parts[1] != key
        || parts[3] != FlakyServer::checksum(parts[1], parts[2]))
        throw std::runtime_error("garbage from the server: \"" + line.left(24).toStdString() + "\"");
    return QString::fromLatin1(parts[2]);
}

/*
    Answers "requests" on its own thread over real TCP: reconnects when the server drops the
    connection or is too slow (up to 4 attempts), and fails (throws, so the request is
    redelivered) when the server sends garbage. The reply is sent from this thread.
*/
QCoro::Task<> fetcher(DemoWorld *world, stage::Worker &worker)
{
    const QString name = QStringLiteral("fetcher");
    ForeignHang hang(world, name);
    const stage::Mailbox<FetchRequest> requests = world->requests;
    const quint16 port = world->serverPort();
    const int timeoutMs = world->options.fetchTimeoutMs;
    for (;;) {
        world->faults.throwIfStorm(name); // never while holding a message
        auto request = co_await requests.receive();
        worker.heartbeat();
        STAGE_DEMO_MAYBE_HANG(world, worker, name, hang)
        world->faults.throwIfInjected(name, "while holding a request");
        const QByteArray key = request->payload.key.toUtf8();
        FetchAnswer answer{request->payload.id, request->payload.key, {}, 0};
        for (;;) {
            ++answer.attempts;
            world->fetchAttempts.fetch_add(1);
            LineExchange exchange(port, "GET " + key, timeoutMs);
            if (!exchange.isFinished())
                co_await stage::signal(&exchange, &LineExchange::finished); // a cancellation point
            if (exchange.outcome() == LineExchange::Outcome::Answered) {
                answer.value = parseAnswer(key, exchange.answer()); // garbage throws
                break;
            }
            if (answer.attempts == 4)
                throw std::runtime_error("the server dropped or stalled 4 connections in a row");
            co_await stage::sleep(std::chrono::milliseconds(20 * answer.attempts));
        }
        const quint64 id = request->payload.id;
        request->reply.send(std::move(answer));
        request.ack();
        world->requestsLedger.noteDone(id);
    }
}

/* Asks the fetcher for a reading every requestIntervalMs, and waits for the answer. */
QCoro::Task<> requester(DemoWorld *world, stage::Worker &worker)
{
    static const char *const keys[] = {"lisbon", "oslo", "kyoto", "lima", "nairobi", "quito", "perth", "riga"};
    const QString name = QStringLiteral("requester");
    ForeignHang hang(world, name);
    world->faults.throwIfStorm(name);
    const stage::Mailbox<FetchRequest> requests = world->requests;
    for (int i = 0;; ++i) {
        co_await stage::sleep(std::chrono::milliseconds(world->options.requestIntervalMs));
        worker.heartbeat();
        STAGE_DEMO_MAYBE_HANG(world, worker, name, hang)
        world->faults.throwIfStorm(name);
        world->faults.throwIfInjected(name, "between two requests");
        if (!world->isProducing())
            continue;
        const quint64 id = world->nextRequestId();
        const QString key = QString::fromLatin1(keys[(id + quint64(i)) % std::size(keys)]);
        auto [request, answer] = stage::makeRequest<FetchAnswer>(FetchQuery{id, key});
        world->requestsLedger.noteSent(id);
        if (requests.trySend(std::move(request)) != stage::SendStatus::Sent) {
            world->requestsLedger.takeBack(id);
            continue;
        }
        world->requestsSent.fetch_add(1);
        try {
            const FetchAnswer result = co_await answer.wait(10s);
            if (result.id == id)
                world->requestsAnswered.fetch_add(1);
        } catch (const stage::DeadLettered &) {
            world->requestsDeadLettered.fetch_add(1);
        } catch (const stage::TimeoutError &) {
            world->requestsTimedOut.fetch_add(1); // still in the mailbox: answered later, not lost
        }
    }
}

/*
    Polls a simulated device on the GUI thread and beats the group's watchdog after every
    reading. The device sometimes hangs (a read that never returns): no heartbeat, so the
    watchdog stops the worker as faulty and the supervisor restarts it.
*/
QCoro::Task<> poller(DemoWorld *world, stage::Worker &worker)
{
    const QString name = QStringLiteral("poller");
    world->faults.throwIfStorm(name);
    QRandomGenerator device(world->options.seed * 31u + quint32(worker.generation()));
    for (double t = 0;; t += 0.1) {
        co_await stage::sleep(std::chrono::milliseconds(world->options.pollIntervalMs));
        const bool injected = world->faults.takeHang(name);
        if (injected || device.generateDouble() < world->options.deviceHangRate) {
            world->post(name, injected ? QStringLiteral("device hangs (injected): no heartbeat from now on")
                                       : QStringLiteral("device hangs: no heartbeat from now on"));
            co_await stage::sleep(std::chrono::hours(1)); // the watchdog's stop resumes it with Cancelled
        }
        world->faults.throwIfStorm(name);
        world->faults.throwIfInjected(name, "after a reading");
        const double celsius = 21.0 + 2.5 * std::sin(t) + device.generateDouble() * 0.4;
        world->lastReadingCentis.store(int(std::lround(celsius * 100)));
        world->readings.fetch_add(1);
        worker.heartbeat();
    }
}

} // namespace

void DemoWorld::registerWorkers()
{
    stage::registerWorker(QStringLiteral("indexer"), [this](stage::Worker &w) { return indexer(this, w); });
    stage::registerWorker(QStringLiteral("hasher"), [this](stage::Worker &w) { return hasher(this, w); });
    stage::registerWorker(QStringLiteral("fetcher"), [this](stage::Worker &w) { return fetcher(this, w); });
    stage::registerWorker(QStringLiteral("requester"), [this](stage::Worker &w) { return requester(this, w); });
    stage::registerWorker(QStringLiteral("poller"), [this](stage::Worker &w) { return poller(this, w); });
}
