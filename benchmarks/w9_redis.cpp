// W9: a distributed queue through a Redis mailbox (Stage::Redis), as ../shared/peers/WORKLOADS.md
// describes it and the redis peer measures its ceiling.
//
//   msgs_per_s  1 producer std::thread sends 200,000 messages (a W9Message: a sequence number and
//               64 payload bytes, encoded by the default QDataStream codec) into a
//               Mailbox<W9Message> kept in a Redis stream (RedisConnection::mailbox). It keeps at
//               most 1,024 sends in flight: trySend() 1,024, then flushBlocking() until Redis has
//               acknowledged every XADD. 1 consumer coroutine on the main thread receives and
//               acknowledges each message (XREADGROUP in the mailbox's consumer group, XACK),
//               checking the sequence (in order, nothing missing) and the payload. The clock runs
//               from the first send until the last XACK was answered
//               (RedisConnection::flushBlocking()); then nothing may be pending in the group and
//               the group must have read all 200,000.
//
// The benchmark starts its own redis-server (unix socket in a fresh temp directory, no RDB, no
// AOF: as the peer) once per process and stops it at exit; each run uses a new stream.
#include "bench.h"

#include "redisserver.h" // redis/tests: the tests' own redis-server

#include <stage/redis.h>
#include <stage/stage.h>

#include <QtCore/QDataStream>
#include <QtCore/QElapsedTimer>

#include <atomic>
#include <memory>
#include <thread>

namespace {

constexpr quint64 kMessages = 200'000;
constexpr quint64 kInFlight = 1'024;
constexpr int kPayloadSize = 64;

struct W9Message
{
    quint64 seq = 0;
    QByteArray payload;
    friend QDataStream &operator<<(QDataStream &s, const W9Message &m) { return s << m.seq << m.payload; }
    friend QDataStream &operator>>(QDataStream &s, W9Message &m) { return s >> m.seq >> m.payload; }
};

QByteArray payloadOf(quint64 seq)
{
    QByteArray p(kPayloadSize, Qt::Uninitialized);
    for (int i = 0; i < kPayloadSize; ++i)
        p[i] = char(seq * 131 + quint64(i));
    return p;
}

QCoro::Task<quint64> consume(stage::Mailbox<W9Message> box)
{
    quint64 last = 0;
    while (last < kMessages) {
        auto message = co_await box.receive();
        if (message->seq != last + 1)
            qFatal("W9: received %llu after %llu", static_cast<unsigned long long>(message->seq),
                   static_cast<unsigned long long>(last));
        if (message->payload != payloadOf(message->seq))
            qFatal("W9: payload of %llu", static_cast<unsigned long long>(message->seq));
        last = message->seq;
    } // each acknowledged by the next iteration (the last by the frame's end)
    co_return last;
}

stagetest::RedisServer &server()
{
    static std::unique_ptr<stagetest::RedisServer> instance = [] {
        auto s = std::make_unique<stagetest::RedisServer>();
        if (!stagetest::RedisServer::available())
            qFatal("W9: redis-server is not installed (scripts/stage deps)");
        if (!s->start())
            qFatal("W9: redis-server did not start");
        return s;
    }();
    return *instance;
}

std::vector<bench::Figure> run()
{
    static int runs = 0;
    const QByteArray stream = "w9-" + QByteArray::number(++runs);
    stage::RedisConnection redis(server().url());
    if (!redis.waitForConnected(std::chrono::seconds(10)))
        qFatal("W9: %s", qPrintable(redis.errorString()));
    double seconds = 0;
    {
        stage::RedisMailboxOptions options;
        options.prefetch = 1024;
        stage::Mailbox<W9Message> box = redis.mailbox<W9Message>(QString::fromLatin1(stream), options);
        QElapsedTimer timer;
        timer.start();
        std::thread producer([box] {
            for (quint64 seq = 1; seq <= kMessages;) {
                const quint64 end = std::min(seq + kInFlight, kMessages + 1);
                for (; seq < end; ++seq) {
                    if (box.trySend(W9Message{seq, payloadOf(seq)}) != stage::SendStatus::Sent)
                        qFatal("W9: trySend refused");
                }
                if (!box.flushBlocking(std::chrono::minutes(2)))
                    qFatal("W9: sends not acknowledged by Redis within 2 minutes");
            }
        });
        const quint64 last = stage::waitFor(consume(box), std::chrono::minutes(5));
        if (!redis.flushBlocking(std::chrono::minutes(2))) // the last XACKs are answered
            qFatal("W9: acknowledgements not answered");
        seconds = double(timer.nsecsElapsed()) / 1e9;
        producer.join();
        if (last != kMessages || box.count() != 0)
            qFatal("W9: %llu received, %d left", static_cast<unsigned long long>(last), box.count());
    }
    // Everything was read by the group and acknowledged.
    const auto pending = server().command({"XPENDING", stream, "stage"});
    if (pending.elements.empty() || pending.elements[0].integer != 0)
        qFatal("W9: messages left pending");
    const auto groups = server().command({"XINFO", "GROUPS", stream});
    long long read = -1;
    if (groups.elements.size() == 1) {
        const auto &g = groups.elements[0].elements;
        for (std::size_t i = 0; i + 1 < g.size(); i += 2)
            if (g[i].string == "entries-read")
                read = g[i + 1].integer;
    }
    if (read != qint64(kMessages))
        qFatal("W9: the group read %lld entries", read);
    server().command({"DEL", stream, stream + ":dead"}); // free the server's memory
    return {{"stage", "msgs_per_s", double(kMessages) / seconds}};
}

} // namespace

STAGE_BENCHMARK("W9", "distributed queue: 200,000 messages through a Redis mailbox, 1,024 sends in flight", run);
