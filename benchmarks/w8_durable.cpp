// W8: a durable queue through stage::DurableStore (Stage::Durable), as ../shared/peers/WORKLOADS.md
// describes it and the sqlite peer measures its ceiling.
//
//   msgs_per_s  1 producer std::thread sends 200,000 messages (a W8Message: a sequence number and
//               64 payload bytes, encoded by the default QDataStream codec) into a durable
//               Mailbox<W8Message> kept in one file on local disk (WAL, synchronous=NORMAL: the
//               store's default). It keeps at most 1,024 sends in flight: trySend() 1,024, then
//               flushBlocking() until they are committed (as the peer's transactions of 1,024).
//               1 consumer coroutine on the main thread receives and acknowledges each message,
//               checking the sequence (in order, nothing missing) and the payload. The clock runs
//               from the first send until the last acknowledgement is committed
//               (DurableStore::flushBlocking()); then the file must hold nothing.
//   rows_per_msg  rows the writer thread inserted, updated or deleted per message: the store
//               groups what arrives during one commit, and a message acknowledged before its
//               transaction began never reaches the file (the peer writes 2 per message).
//
// The file lives in a fresh directory under ${PEERS_DISK_DIR:-/var/tmp}, as the peer's (/tmp may
// be tmpfs), removed afterwards.
#include "bench.h"

#include <stage/durablestore.h>
#include <stage/stage.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QDataStream>
#include <QtCore/QElapsedTimer>
#include <QtCore/QTemporaryDir>

#include <atomic>
#include <thread>

namespace {

constexpr quint64 kMessages = 200'000;
constexpr quint64 kInFlight = 1'024;
constexpr int kPayloadSize = 64;

struct W8Message
{
    quint64 seq = 0;
    QByteArray payload;
    friend QDataStream &operator<<(QDataStream &s, const W8Message &m) { return s << m.seq << m.payload; }
    friend QDataStream &operator>>(QDataStream &s, W8Message &m) { return s >> m.seq >> m.payload; }
};

QByteArray payloadOf(quint64 seq)
{
    QByteArray p(kPayloadSize, Qt::Uninitialized);
    for (int i = 0; i < kPayloadSize; ++i)
        p[i] = char(seq * 131 + quint64(i));
    return p;
}

QCoro::Task<quint64> consume(stage::Mailbox<W8Message> box)
{
    quint64 last = 0;
    while (last < kMessages) {
        auto message = co_await box.receive();
        if (message->seq != last + 1)
            qFatal("W8: received %llu after %llu", static_cast<unsigned long long>(message->seq),
                   static_cast<unsigned long long>(last));
        if (message->payload != payloadOf(message->seq))
            qFatal("W8: payload of %llu", static_cast<unsigned long long>(message->seq));
        last = message->seq;
    } // each acknowledged by the next iteration (the last by the frame's end)
    co_return last;
}

std::vector<bench::Figure> run()
{
    QTemporaryDir dir(qEnvironmentVariable("PEERS_DISK_DIR", QStringLiteral("/var/tmp")) + QStringLiteral("/stage-w8.XXXXXX"));
    if (!dir.isValid())
        qFatal("W8: cannot make a directory under PEERS_DISK_DIR");
    stage::DurableStore store(dir.filePath(QStringLiteral("w8.stage")));
    if (!store.isOpen())
        qFatal("W8: %s", qPrintable(store.errorString()));
    double seconds = 0;
    double rowsPerMessage = 0;
    {
        stage::Mailbox<W8Message> box = store.mailbox<W8Message>(QStringLiteral("w8"));
        QElapsedTimer timer;
        timer.start();
        std::thread producer([box] {
            for (quint64 seq = 1; seq <= kMessages;) {
                const quint64 end = std::min(seq + kInFlight, kMessages + 1);
                for (; seq < end; ++seq) {
                    if (box.trySend(W8Message{seq, payloadOf(seq)}) != stage::SendStatus::Sent)
                        qFatal("W8: trySend refused");
                }
                if (!box.flushBlocking(std::chrono::minutes(2)))
                    qFatal("W8: sends not committed within 2 minutes");
            }
        });
        const quint64 last = stage::waitFor(consume(box), std::chrono::minutes(5));
        if (!store.flushBlocking(std::chrono::minutes(2))) // the acknowledgements are durable
            qFatal("W8: acknowledgements not committed");
        seconds = double(timer.nsecsElapsed()) / 1e9;
        producer.join();
        if (last != kMessages || box.count() != 0)
            qFatal("W8: %llu received, %d left", static_cast<unsigned long long>(last), box.count());
        rowsPerMessage = double(store.rowsWritten()) / double(kMessages);
    }
    // Nothing may be left in the file: a reopen finds the mailbox empty.
    {
        stage::Mailbox<W8Message> again = store.mailbox<W8Message>(QStringLiteral("w8"));
        if (again.count() != 0 || again.deadLetterCount() != 0)
            qFatal("W8: %d messages left in the file", again.count());
    }
    return {{"stage", "msgs_per_s", double(kMessages) / seconds}, {"stage", "rows_per_msg", rowsPerMessage}};
}

} // namespace

STAGE_BENCHMARK("W8", "durable queue: 200,000 messages through a DurableStore mailbox, 1,024 sends in flight", run);
