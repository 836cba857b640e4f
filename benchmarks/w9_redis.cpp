// W9: a distributed queue through a Redis mailbox (Stage::Redis), as ../shared/peers/WORKLOADS.md
// describes it and the redis peer measures its ceiling.
//
//   msgs_per_s  1 producer std::thread sends 200,000 messages (a Message: a sequence number and
//               64 payload bytes, encoded by the default QDataStream codec) into a
//               Mailbox<Message> kept in a Redis stream (RedisConnection::mailbox). It keeps at
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
#include "queueworkload.h"

#include "redisserver.h" // redis/tests: the tests' own redis-server

#include <stage/redis.h>
#include <stage/stage.h>

#include <QtCore/QDataStream>
#include <QtCore/QElapsedTimer>

#include <atomic>
#include <memory>
#include <thread>

namespace {

using bench::queue::Message;
using bench::queue::kMessages;

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
        stage::Mailbox<Message> box = redis.mailbox<Message>(QString::fromLatin1(stream), options);
        QElapsedTimer timer;
        timer.start();
        bench::queue::produceAndConsume(box, "W9");
        if (!redis.flushBlocking(std::chrono::minutes(2))) // the last XACKs are answered
            qFatal("W9: acknowledgements not answered");
        seconds = double(timer.nsecsElapsed()) / 1e9;
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
