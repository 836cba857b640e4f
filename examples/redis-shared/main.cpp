// Two processes share one Redis mailbox: this program starts its own redis-server, then itself
// again as a worker. Both consume "orders" (one consumer group: each order goes to one of them)
// and answer on "done"; the parent sends 60 orders and prints who handled how many.
// Run by ctest; without a redis-server it says so and exits 77 (skipped).
#include "redisserver.h" // redis/tests: a redis-server on a unix socket in a temp directory

#include <stage/redis.h>
#include <stage/stage.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QProcess>

#include <cstdio>
#include <map>

using namespace std::chrono_literals;

constexpr int kOrders = 60;

// Handles orders until a negative one; answers each on `done` with who handled it.
QCoro::Task<> work(stage::Mailbox<int> orders, stage::Mailbox<QString> done, QString who)
{
    for (;;) {
        auto order = co_await orders.receive();
        if (*order < 0)
            co_return;
        co_await stage::sleep(5ms); // the work
        co_await done.send(QStringLiteral("%1 %2").arg(who).arg(*order)); // once Redis has it
    }
}

QCoro::Task<> collect(stage::Mailbox<QString> done, std::map<QString, int> *handled)
{
    for (int n = 0; n < kOrders; ++n) {
        auto line = co_await done.receive();
        ++(*handled)[line->section(QLatin1Char(' '), 0, 0)];
    }
}

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);
    stage::RedisMailboxOptions shared;
    shared.prefetch = 1;        // one order at a time: a fair share between the two
    shared.claimMinIdle = 2s;   // what a dead process held is taken over after 2 s
    stage::RedisMailboxOptions sendOnly;
    sendOnly.prefetch = 0;
    if (argc == 3 && qstrcmp(argv[1], "--worker") == 0) {
        stage::RedisConnection redis(QString::fromLocal8Bit(argv[2]));
        auto orders = redis.mailbox<int>(QStringLiteral("orders"), shared);
        auto done = redis.mailbox<QString>(QStringLiteral("done"), sendOnly);
        stage::waitFor(work(orders, done, QStringLiteral("worker")), 2min);
        return redis.flushBlocking() ? 0 : 1; // the last acknowledgement reaches Redis first
    }

    stagetest::RedisServer server;
    if (!stagetest::RedisServer::available() || !server.start()) {
        std::puts("redis-shared: no redis-server here, skipped");
        return 77;
    }
    stage::RedisConnection redis(server.url());
    QProcess worker; // the second process: this program again
    worker.setProcessChannelMode(QProcess::ForwardedChannels);
    worker.start(QCoreApplication::applicationFilePath(), {QStringLiteral("--worker"), server.url()});
    std::map<QString, int> handled;
    {
        auto orders = redis.mailbox<int>(QStringLiteral("orders"), shared);
        auto done = redis.mailbox<QString>(QStringLiteral("done"));
        for (int i = 1; i <= kOrders; ++i)
            orders.sendBlocking(int(i)); // returns once Redis has it
        stage::Group parent; // this process works too
        parent.spawn([orders, done] { return work(orders, done, QStringLiteral("parent")); });
        stage::waitFor(collect(done, &handled), 2min);
        stage::waitFor(parent.shutdown(), 10s);
    } // an order read here and not handled is released to the worker at once
    redis.mailbox<int>(QStringLiteral("orders"), sendOnly).sendBlocking(-1); // the worker's stop
    const bool workerOk = worker.waitForFinished(30000) && worker.exitCode() == 0;
    int total = 0;
    for (const auto &[who, count] : handled) {
        std::printf("%s handled %d orders\n", qPrintable(who), count);
        total += count;
    }
    return total == kOrders && handled.count(QStringLiteral("worker")) && workerOk ? 0 : 1;
}
