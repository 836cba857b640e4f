// Stage::Redis: the URL, the connection (AUTH, errors, backoff, reconnection), the stream journal
// driven directly, and journaled mailboxes across processes. Every test starts its own
// redis-server on a unix socket in a temp directory (redisserver.h) and skips without one.

#include "redis_p.h"
#include "redisserver.h"

#include <stage/redis.h>
#include <stage/stage.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QElapsedTimer>
#include <QtTest/QSignalSpy>
#include <QtTest/QTest>

#include <QtCore/QFile>
#include <QtCore/QProcess>
#include <QtCore/QSet>
#include <QtCore/QTemporaryDir>
#include <QtCore/QTimer>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>

#include <signal.h>

using namespace std::chrono_literals;
using stage::RedisConnection;
using stagetest::RedisServer;

namespace {

constexpr int Timeout = 20000;

#define REQUIRE_SERVER(server, ...)                                                                                    \
    RedisServer server;                                                                                                \
    if (!RedisServer::available())                                                                                     \
        QSKIP("redis-server is not installed");                                                                        \
    QVERIFY2(server.start(__VA_ARGS__), "redis-server did not start")

// A feed that records what the stream hands over (the typed journal's place).
class RecordingFeed : public stage::detail::RedisFeed
{
public:
    Result feed(QByteArray &&bytes, quint64 id, quint32 deliveries, quint32 failures, QString &error) override
    {
        std::lock_guard lock(mutex);
        if (bytes.startsWith("bad")) {
            error = QStringLiteral("undecodable: test refuses it");
            return Result::Undecodable;
        }
        received.push_back({bytes, id, deliveries, failures});
        return Result::Fed;
    }
    int maxRedeliveries() const override { return 3; }
    struct Item
    {
        QByteArray bytes;
        quint64 id;
        quint32 deliveries, failures;
    };
    std::vector<Item> items()
    {
        std::lock_guard lock(mutex);
        return received;
    }
    std::mutex mutex;
    std::vector<Item> received;
};


// Receives until done() (checked after each message), recording each value and how many times it
// was delivered before. Acknowledges each (by the next iteration).
QCoro::Task<> collect(stage::Mailbox<int> box, std::vector<std::pair<int, int>> *got, std::function<bool()> done)
{
    while (!done()) {
        auto message = co_await box.receive();
        got->emplace_back(*message, message.previousDeliveries());
    }
}

// The child of twoProcesses_killedConsumerTakenOver: consumes "jobs" slowly, appending each value
// to \a file once handled (before its acknowledgement), until killed.
QCoro::Task<> slowConsumer(stage::Mailbox<int> box, QFile *file)
{
    for (;;) {
        auto message = co_await box.receive();
        co_await stage::sleep(std::chrono::milliseconds(20));
        file->write(QByteArray::number(*message) + '\n');
        file->flush();
    }
}

int runChildConsumer(int argc, char **argv)
{
    QCoreApplication app(argc, argv);
    RedisConnection redis(QString::fromLocal8Bit(argv[2]));
    if (!redis.waitForConnected(10s))
        return 3;
    stage::RedisMailboxOptions options;
    options.prefetch = 100;
    options.claimMinIdle = 1000ms;
    auto box = redis.mailbox<int>(QStringLiteral("jobs"), options);
    QFile file(QString::fromLocal8Bit(argv[3]));
    if (!file.open(QIODevice::WriteOnly | QIODevice::Append))
        return 4;
    stage::waitFor(slowConsumer(box, &file), std::chrono::minutes(5));
    return 0;
}

QSet<int> linesOf(const QString &path)
{
    QFile file(path);
    QSet<int> values;
    if (file.open(QIODevice::ReadOnly)) {
        for (const QByteArray &line : file.readAll().split('\n'))
            if (!line.isEmpty())
                values.insert(line.toInt());
    }
    return values;
}
} // namespace

class TestRedis : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void initTestCase() { qRegisterMetaType<RedisConnection::State>(); }

    void parseUrl_data()
    {
        QTest::addColumn<QString>("url");
        QTest::addColumn<bool>("valid");
        QTest::addColumn<QString>("socket");
        QTest::addColumn<QString>("host");
        QTest::addColumn<int>("port");
        QTest::addColumn<int>("db");
        QTest::addColumn<QString>("user");
        QTest::addColumn<QString>("password");
        QTest::addColumn<QString>("redacted");
        QTest::newRow("tcp") << "redis://example.org" << true << "" << "example.org" << 6379 << 0 << "" << ""
                             << "redis://example.org:6379/0";
        QTest::newRow("tcp full") << "redis://alice:s%40cret@10.0.0.1:7000/3" << true << "" << "10.0.0.1" << 7000 << 3
                                  << "alice" << "s@cret" << "redis://alice:***@10.0.0.1:7000/3";
        QTest::newRow("password only") << "redis://:pw@h/1" << true << "" << "h" << 6379 << 1 << "" << "pw"
                                       << "redis://:***@h:6379/1";
        QTest::newRow("unix") << "unix:///tmp/r.sock" << true << "/tmp/r.sock" << "127.0.0.1" << 6379 << 0 << "" << ""
                              << "unix:///tmp/r.sock";
        QTest::newRow("unix query") << "unix:///tmp/r.sock?db=2&user=bob&password=x%26y" << true << "/tmp/r.sock"
                                    << "127.0.0.1" << 6379 << 2 << "bob" << "x&y"
                                    << "unix:///tmp/r.sock?db=2&user=bob&password=***";
        QTest::newRow("bad scheme") << "http://h" << false << "" << "" << 0 << 0 << "" << "" << "<invalid URL>";
        QTest::newRow("no host") << "redis:///0" << false << "" << "" << 0 << 0 << "" << "" << "<invalid URL>";
        QTest::newRow("bad db") << "redis://h/x" << false << "" << "" << 0 << 0 << "" << "" << "<invalid URL>";
        QTest::newRow("negative db") << "unix:///s?db=-1" << false << "" << "" << 0 << 0 << "" << "" << "<invalid URL>";
        QTest::newRow("unknown query") << "unix:///s?pass=1" << false << "" << "" << 0 << 0 << "" << "" << "<invalid URL>";
        QTest::newRow("user without password") << "unix:///s?user=u" << false << "" << "" << 0 << 0 << "" << ""
                                               << "<invalid URL>";
        QTest::newRow("relative socket") << "unix:s.sock" << false << "" << "" << 0 << 0 << "" << "" << "<invalid URL>";
        QTest::newRow("garbage") << "::::" << false << "" << "" << 0 << 0 << "" << "" << "<invalid URL>";
    }
    void parseUrl()
    {
        QFETCH(QString, url);
        QFETCH(bool, valid);
        const auto parsed = stage::detail::parseRedisUrl(url);
        QCOMPARE(parsed.error.isEmpty(), valid);
        QTEST(parsed.redacted, "redacted");
        if (!valid) {
            QVERIFY(parsed.error.startsWith(QLatin1String("invalid Redis URL: ")));
            return;
        }
        QTEST(parsed.settings.socketPath, "socket");
        if (parsed.settings.socketPath.isEmpty()) {
            QTEST(parsed.settings.host, "host");
            QTEST(parsed.settings.port, "port");
        }
        QTEST(parsed.settings.database, "db");
        QTEST(parsed.settings.user, "user");
        QTEST(parsed.settings.password, "password");
    }

    void connect_unixSocket()
    {
        REQUIRE_SERVER(server);
        RedisConnection redis(server.url());
        QSignalSpy states(&redis, &RedisConnection::stateChanged);
        QVERIFY(redis.waitForConnected(10s));
        QTRY_COMPARE_WITH_TIMEOUT(states.size(), 1, Timeout);
        QCOMPARE(states.at(0).at(0).value<RedisConnection::State>(), RedisConnection::State::Connected);
        QCOMPARE(redis.state(), RedisConnection::State::Connected);
        QCOMPARE(redis.connectAttempts(), 1);
        QCOMPARE(redis.url(), server.url());
        QVERIFY(redis.errorString().isEmpty());
    }

    void connect_settingsAndDatabase()
    {
        REQUIRE_SERVER(server);
        stage::RedisSettings settings;
        settings.socketPath = server.socketPath();
        settings.database = 2;
        RedisConnection redis(settings);
        QVERIFY(redis.waitForConnected(10s));
        QVERIFY(redis.url().endsWith(QLatin1String("?db=2")));
    }

    void badUrl_failsAtOnceWithoutAttempts()
    {
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("invalid Redis URL")));
        RedisConnection redis(QStringLiteral("http://secret@host"));
        QCOMPARE(redis.state(), RedisConnection::State::Failed); // at once, before the thread starts
        QVERIFY(redis.errorString().contains(QLatin1String("scheme")));
        QSignalSpy errors(&redis, &RedisConnection::errorOccurred);
        QTRY_COMPARE_WITH_TIMEOUT(errors.size(), 1, Timeout);
        QCOMPARE(redis.state(), RedisConnection::State::Failed);
        QVERIFY(redis.errorString().contains(QLatin1String("scheme")));
        QVERIFY(!redis.errorString().contains(QLatin1String("secret")));
        QCOMPARE(redis.connectAttempts(), 0);
        QVERIFY(!redis.waitForConnected(100ms));
    }

    void wrongPassword_failsOnceNoRetry_data()
    {
        QTest::addColumn<QString>("query");
        QTest::addColumn<QString>("expected");
        QTest::newRow("wrong password") << QStringLiteral("?password=hunter2") << QStringLiteral("WRONGPASS");
        QTest::newRow("no password") << QString() << QStringLiteral("NOAUTH");
        QTest::newRow("unknown user") << QStringLiteral("?user=mallory&password=hunter2") << QStringLiteral("WRONGPASS");
    }
    void wrongPassword_failsOnceNoRetry()
    {
        QFETCH(QString, query);
        QFETCH(QString, expected);
        REQUIRE_SERVER(server, {QStringLiteral("--requirepass"), QStringLiteral("right")});
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("refused the connection.*not retrying")));
        RedisConnection redis(server.url() + query);
        QSignalSpy errors(&redis, &RedisConnection::errorOccurred);
        QTRY_COMPARE_WITH_TIMEOUT(errors.size(), 1, Timeout);
        QCOMPARE(redis.state(), RedisConnection::State::Failed);
        QVERIFY2(redis.errorString().contains(expected), qPrintable(redis.errorString()));
        QVERIFY(!redis.errorString().contains(QLatin1String("hunter2")));
        QVERIFY(!redis.url().contains(QLatin1String("hunter2")));
        // No retry storm: no second attempt, no second error.
        QTest::qWait(1500);
        QCOMPARE(redis.connectAttempts(), 1);
        QCOMPARE(errors.size(), 1);
        // A send fails at once with the reason.
        auto box = redis.mailbox<int>(QStringLiteral("m"));
        bool threw = false;
        try {
            box.sendBlocking(1, 1s);
        } catch (const stage::JournalError &e) {
            threw = QString::fromUtf8(e.what()).contains(expected);
        }
        QVERIFY(threw);
    }

    void aclUser_connects()
    {
        REQUIRE_SERVER(server);
        const auto r = server.command({"ACL", "SETUSER", "alice", "on", ">s3cret", "~*", "+@all"});
        QCOMPARE(r.type, REDIS_REPLY_STATUS);
        RedisConnection redis(server.url() + QStringLiteral("?user=alice&password=s3cret"));
        QVERIFY(redis.waitForConnected(10s));
        QCOMPARE(redis.url(), server.url() + QStringLiteral("?user=alice&password=***"));
    }

    void unreachable_retriesWithBackoff()
    {
        QTemporaryDir dir;
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("cannot connect.*retrying with backoff")));
        RedisConnection redis(QStringLiteral("unix://") + dir.filePath(QStringLiteral("none.sock")));
        QSignalSpy errors(&redis, &RedisConnection::errorOccurred);
        QElapsedTimer clock;
        clock.start();
        QTRY_COMPARE_WITH_TIMEOUT(redis.state(), RedisConnection::State::Reconnecting, Timeout);
        QTest::qWait(3000 - int(clock.elapsed()));
        // 100, 200, 400, 800, 1600 ms apart: 5 or 6 attempts in 3 s (a storm would be thousands).
        const int attempts = redis.connectAttempts();
        QVERIFY2(attempts >= 3 && attempts <= 6, qPrintable(QString::number(attempts)));
        QCOMPARE(errors.size(), 1); // announced once, not per attempt
        QVERIFY(redis.errorString().contains(QLatin1String("cannot connect")));
    }

    void serverRestart_reconnects()
    {
        REQUIRE_SERVER(server);
        RedisConnection redis(server.url());
        QVERIFY(redis.waitForConnected(10s));
        QSignalSpy errors(&redis, &RedisConnection::errorOccurred);
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("lost.*retrying with backoff")));
        server.kill();
        QTRY_COMPARE_WITH_TIMEOUT(errors.size(), 1, Timeout);
        QCOMPARE(redis.state(), RedisConnection::State::Reconnecting);
        QVERIFY(server.startAgain());
        QTRY_COMPARE_WITH_TIMEOUT(redis.state(), RedisConnection::State::Connected, Timeout);
        QVERIFY(redis.connectAttempts() >= 2);
    }

    // The stream journal driven directly: appends become durable in order, reach the feed, are
    // acknowledged; an undecodable entry goes to the dead-letter stream with its reason.
    void stream_appendFeedAck()
    {
        REQUIRE_SERVER(server);
        RedisConnection redis(server.url());
        RecordingFeed feed;
        stage::RedisMailboxOptions options;
        options.prefetch = 64;
        {
            stage::detail::RedisStream stream(stage::detail::clientOf(redis), QStringLiteral("jobs"), options);
            stream.start(&feed);
            constexpr int N = 1000;
            quint64 ticket = 0;
            for (int i = 0; i < N; ++i)
                stream.append(QByteArray::number(i), ticket);
            QCOMPARE(ticket, quint64(N));
            QVERIFY(stream.waitDurable(ticket, std::chrono::steady_clock::now() + 20s));
            QCOMPARE(server.integer({"XLEN", "jobs"}), N);
            // The feed stops at the prefetch until acknowledged.
            QTRY_COMPARE_WITH_TIMEOUT(int(feed.items().size()), 64, Timeout);
            QTest::qWait(200);
            QCOMPARE(int(feed.items().size()), 64);
            int acked = 0;
            while (acked < N) {
                const auto items = feed.items();
                for (; acked < int(items.size()); ++acked) {
                    QCOMPARE(items[acked].bytes, QByteArray::number(acked)); // in order
                    QCOMPARE(items[acked].deliveries, 0u);
                    stream.acknowledged(items[acked].id);
                }
                QTRY_VERIFY_WITH_TIMEOUT(int(feed.items().size()) > acked || acked == N, Timeout);
            }
            QTRY_COMPARE_WITH_TIMEOUT(server.command({"XPENDING", "jobs", "stage"}).elements.at(0).integer, 0LL, Timeout);

            // Undecodable: dead-lettered with the reason, never fed.
            QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("dead-lettered: undecodable")));
            stream.append(QByteArray("bad bytes"), ticket);
            QVERIFY(stream.waitDurable(ticket, std::chrono::steady_clock::now() + 20s));
            QTRY_COMPARE_WITH_TIMEOUT(server.integer({"XLEN", "jobs:dead"}), 1LL, Timeout);
            const auto dead = server.command({"XRANGE", "jobs:dead", "-", "+"});
            const auto &fields = dead.elements.at(0).elements.at(1).elements;
            QHash<QByteArray, QByteArray> map;
            for (std::size_t i = 0; i + 1 < fields.size(); i += 2)
                map.insert(fields[i].string, fields[i + 1].string);
            QCOMPARE(map.value("reason"), QByteArray("undecodable: test refuses it"));
            QCOMPARE(map.value("b"), QByteArray("bad bytes"));
            QCOMPARE(int(feed.items().size()), N);
            QTRY_COMPARE_WITH_TIMEOUT(server.command({"XPENDING", "jobs", "stage"}).elements.at(0).integer, 0LL, Timeout);
            // Trimmed below what the group still needs: everything was acknowledged.
            QTRY_VERIFY_WITH_TIMEOUT(server.integer({"XLEN", "jobs"}) <= 1, Timeout);
            stream.stop(1s);
        }
    }

    // A consumer that read entries and died (never refreshed them): taken over after claimMinIdle
    // with its delivery counted (a failure); one delivered too often is dead-lettered instead.
    void stream_takesOverDeadConsumer()
    {
        REQUIRE_SERVER(server);
        QCOMPARE(server.command({"XGROUP", "CREATE", "jobs", "stage", "0", "MKSTREAM"}).type, REDIS_REPLY_STATUS);
        for (int i = 0; i < 5; ++i)
            server.command({"XADD", "jobs", "*", "b", QByteArray::number(i)});
        // "dead" reads all five; then one of them is delivered 4 more times (XCLAIM counts).
        const auto read = server.command({"XREADGROUP", "GROUP", "stage", "dead", "COUNT", "10", "STREAMS", "jobs", ">"});
        const QByteArray poison = read.elements.at(0).elements.at(1).elements.at(4).elements.at(0).string;
        for (int i = 0; i < 4; ++i)
            server.command({"XCLAIM", "jobs", "stage", "dead", "0", poison});
        RedisConnection redis(server.url());
        RecordingFeed feed;
        stage::RedisMailboxOptions options;
        options.claimMinIdle = 300ms;
        stage::detail::RedisStream stream(stage::detail::clientOf(redis), QStringLiteral("jobs"), options);
        QTest::ignoreMessage(QtInfoMsg, QRegularExpression(QStringLiteral("took over 5 entries")));
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("dead-lettered: delivered 5 times")));
        stream.start(&feed);
        QTRY_COMPARE_WITH_TIMEOUT(int(feed.items().size()), 4, Timeout);
        QTRY_COMPARE_WITH_TIMEOUT(server.integer({"XLEN", "jobs:dead"}), 1LL, Timeout);
        const auto items = feed.items();
        for (int i = 0; i < 4; ++i) {
            QCOMPARE(items[i].bytes, QByteArray::number(i));
            QCOMPARE(items[i].deliveries, 1u);
            QCOMPARE(items[i].failures, 1u);
        }
        // Now ours: held, refreshed, not taken over again by this stream's janitor.
        const auto pending = server.command({"XPENDING", "jobs", "stage", "-", "+", "10"});
        QCOMPARE(int(pending.elements.size()), 4);
        QTest::qWait(700);
        QCOMPARE(int(feed.items().size()), 4);
        for (const auto &p : server.command({"XPENDING", "jobs", "stage", "-", "+", "10"}).elements) {
            QVERIFY(p.elements.at(1).string != "dead"); // still ours
            QVERIFY2(p.elements.at(2).integer < 2000, "held entries are refreshed");
        }
        for (const auto &item : items)
            stream.acknowledged(item.id);
        QTRY_COMPARE_WITH_TIMEOUT(server.command({"XPENDING", "jobs", "stage"}).elements.at(0).integer, 0LL, Timeout);
        stream.stop(1s);
    }

    // A restarted process with a stable consumer name gets its own pending entries back at once.
    void stream_ownHistoryFirst()
    {
        REQUIRE_SERVER(server);
        QCOMPARE(server.command({"XGROUP", "CREATE", "jobs", "stage", "0", "MKSTREAM"}).type, REDIS_REPLY_STATUS);
        for (int i = 0; i < 3; ++i)
            server.command({"XADD", "jobs", "*", "b", QByteArray::number(i)});
        server.command({"XREADGROUP", "GROUP", "stage", "me", "COUNT", "2", "STREAMS", "jobs", ">"});
        RedisConnection redis(server.url());
        RecordingFeed feed;
        stage::RedisMailboxOptions options;
        options.consumer = QStringLiteral("me");
        stage::detail::RedisStream stream(stage::detail::clientOf(redis), QStringLiteral("jobs"), options);
        stream.start(&feed);
        QTRY_COMPARE_WITH_TIMEOUT(int(feed.items().size()), 3, Timeout);
        const auto items = feed.items();
        QCOMPARE(items[0].bytes, QByteArray("0"));
        QCOMPARE(items[0].deliveries, 1u); // read once by "me" before
        QCOMPARE(items[1].deliveries, 1u);
        QCOMPARE(items[2].bytes, QByteArray("2"));
        QCOMPARE(items[2].deliveries, 0u);
        stream.stop(1s);
        // Stopped with all three held and none acknowledged: made claimable at once.
        const auto pending = server.command({"XPENDING", "jobs", "stage", "-", "+", "10"});
        QCOMPARE(int(pending.elements.size()), 3);
        for (const auto &p : pending.elements)
            QVERIFY(p.elements.at(2).integer > 1000000);
    }

    // A Mailbox<int> on Redis: sends complete once Redis has them, each value is received once in
    // order, acknowledgements reach Redis; the statistics are the mailbox's as always.
    void mailbox_sendReceiveAck()
    {
        REQUIRE_SERVER(server);
        RedisConnection redis(server.url());
        auto box = redis.mailbox<int>(QStringLiteral("jobs"));
        constexpr int N = 500;
        std::thread producer([box] {
            for (int i = 0; i < N; ++i)
                box.sendBlocking(int(i));
        });
        std::vector<std::pair<int, int>> got;
        stage::waitFor(collect(box, &got, [&] { return int(got.size()) == N; }), 30s);
        producer.join();
        QCOMPARE(int(got.size()), N);
        for (int i = 0; i < N; ++i) {
            QCOMPARE(got[i].first, i);
            QCOMPARE(got[i].second, 0);
        }
        QVERIFY(redis.flushBlocking(10s));
        QCOMPARE(server.command({"XPENDING", "jobs", "stage"}).elements.at(0).integer, 0LL);
        QCOMPARE(box.statistics().delivered, N);
        QCOMPARE(box.statistics().acknowledged, N);
    }

    // A message that does not decode, or is larger than maxMessageSize, never reaches a consumer:
    // dead-lettered with the reason. A send larger than the limit fails with JournalError.
    void mailbox_undecodableAndOversizeDeadLettered()
    {
        REQUIRE_SERVER(server);
        RedisConnection redis(server.url());
        stage::RedisMailboxOptions options;
        options.maxMessageSize = 64;
        auto box = redis.mailbox<QByteArray>(QStringLiteral("jobs"), options);
        bool threw = false;
        try {
            box.sendBlocking(QByteArray(100, 'x'), 5s);
        } catch (const stage::JournalError &e) {
            threw = QByteArray(e.what()).contains("larger than maxMessageSize");
        }
        QVERIFY(threw);
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("dead-lettered: undecodable")));
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("dead-lettered: too large")));
        server.command({"XADD", "jobs", "*", "b", "\x01\x02"});        // not a QDataStream QByteArray
        server.command({"XADD", "jobs", "*", "b", QByteArray(200, 'y')}); // too large
        QVERIFY(box.sendBlocking(QByteArray("good"), 5s) == stage::SendStatus::Sent);
        std::vector<QByteArray> got;
        auto task = [](stage::Mailbox<QByteArray> b, std::vector<QByteArray> *out) -> QCoro::Task<> {
            auto m = co_await b.receive();
            out->push_back(*m);
        };
        stage::waitFor(task(box, &got), 20s);
        QCOMPARE(got, std::vector<QByteArray>{QByteArray("good")});
        QTRY_COMPARE_WITH_TIMEOUT(server.integer({"XLEN", "jobs:dead"}), 2LL, Timeout);
        const auto dead = server.command({"XRANGE", "jobs:dead", "-", "+"});
        QStringList reasons;
        for (const auto &e : dead.elements) {
            const auto &f = e.elements.at(1).elements;
            for (std::size_t i = 0; i + 1 < f.size(); i += 2)
                if (f[i].string == "reason")
                    reasons << QString::fromUtf8(f[i + 1].string);
        }
        QCOMPARE(reasons.size(), 2);
        QVERIFY2(reasons[0].startsWith(QLatin1String("undecodable")), qPrintable(reasons[0]));
        QVERIFY2(reasons[1].startsWith(QLatin1String("too large: 200 bytes")), qPrintable(reasons[1]));
        QTRY_COMPARE_WITH_TIMEOUT(server.command({"XPENDING", "jobs", "stage"}).elements.at(0).integer, 0LL, Timeout);
    }

    // Two processes consume one mailbox; one is killed -9 while it holds messages: the other
    // takes them over after claimMinIdle. Lost 0 (duplicates only for what the dead one held).
    void twoProcesses_killedConsumerTakenOver()
    {
        REQUIRE_SERVER(server);
        QTemporaryDir dir;
        const QString file = dir.filePath(QStringLiteral("child.txt"));
        RedisConnection redis(server.url());
        stage::RedisMailboxOptions options;
        options.prefetch = 20;
        options.claimMinIdle = 1000ms;
        auto box = redis.mailbox<int>(QStringLiteral("jobs"), options);
        constexpr int N = 400;
        for (int i = 0; i < N; ++i)
            QVERIFY(box.trySend(int(i)) == stage::SendStatus::Sent);
        QVERIFY(box.flushBlocking(10s));
        // The child starts first and takes 100 (its prefetch); this process is not reading yet
        // (its receive comes later, and its own prefetch is 20).
        QProcess child;
        child.setProcessChannelMode(QProcess::ForwardedChannels);
        child.start(QCoreApplication::applicationFilePath(), {QStringLiteral("--redis-consumer"), server.url(), file});
        QVERIFY(child.waitForStarted(5000));
        QTRY_VERIFY_WITH_TIMEOUT(linesOf(file).size() >= 10, Timeout);
        ::kill(pid_t(child.processId()), SIGKILL);
        QVERIFY(child.waitForFinished(5000));
        const QSet<int> childDone = linesOf(file);
        std::vector<std::pair<int, int>> got;
        QSet<int> all = childDone;
        QTest::ignoreMessage(QtInfoMsg, QRegularExpression(QStringLiteral("took over")));
        stage::waitFor(collect(box, &got,
                               [&] {
                                   if (!got.empty())
                                       all.insert(got.back().first);
                                   return all.size() == N;
                               }),
                       60s);
        QCOMPARE(all.size(), N); // lost 0
        int takenOver = 0;
        QSet<int> mine;
        for (const auto &[value, before] : got) {
            QVERIFY2(!mine.contains(value), "delivered twice to this process");
            mine.insert(value);
            takenOver += before > 0 ? 1 : 0;
        }
        QVERIFY2(takenOver >= 50, qPrintable(QString::number(takenOver))); // the child held ~100
        // Duplicates only for what the child held when it died.
        QVERIFY((mine & childDone).size() <= 2);
        QVERIFY(redis.flushBlocking(10s));
        QTRY_COMPARE_WITH_TIMEOUT(server.command({"XPENDING", "jobs", "stage"}).elements.at(0).integer, 0LL, Timeout);
    }

    // redis-server killed -9 and restarted (AOF, appendfsync always) while a producer sends and a
    // consumer receives: both resume once it is back; every acknowledged send is received.
    void serverRestart_consumersResumeLostNothing()
    {
        REQUIRE_SERVER(server, {QStringLiteral("--appendonly"), QStringLiteral("yes"), QStringLiteral("--appendfsync"),
                                QStringLiteral("always")});
        RedisConnection redis(server.url());
        QVERIFY(redis.waitForConnected(10s));
        auto box = redis.mailbox<int>(QStringLiteral("jobs"));
        constexpr int N = 2000;
        std::atomic<int> received{0};
        std::atomic<int> sent{0};
        std::atomic<bool> sendFailed{false};
        std::thread producer([&, box] {
            for (int i = 0; i < N; ++i) {
                try {
                    box.sendBlocking(int(i));
                    ++sent;
                } catch (const stage::JournalError &) {
                    sendFailed = true;
                    return;
                }
            }
        });
        // The server's QProcess belongs to this thread: the kill and the restart happen here.
        QTimer chaos;
        int phase = 0;
        QObject::connect(&chaos, &QTimer::timeout, [&] {
            if (phase == 0 && received.load() >= N / 4) {
                server.kill();
                phase = 1;
                chaos.setInterval(300);
            } else if (phase == 1) {
                QVERIFY(server.startAgain());
                phase = 2;
                chaos.stop();
            }
        });
        chaos.start(1);
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("lost.*retrying with backoff")));
        std::vector<std::pair<int, int>> got;
        QSet<int> values;
        stage::waitFor(collect(box, &got,
                               [&] {
                                   if (!got.empty())
                                       values.insert(got.back().first);
                                   received = int(got.size());
                                   return values.size() == N;
                               }),
                       60s);
        producer.join();
        QCOMPARE(phase, 2);
        QVERIFY(!sendFailed);
        QCOMPARE(sent.load(), N);
        QCOMPARE(values.size(), N); // lost 0
        QVERIFY(redis.connectAttempts() >= 2);
        QVERIFY(redis.flushBlocking(10s));
        QTRY_COMPARE_WITH_TIMEOUT(server.command({"XPENDING", "jobs", "stage"}).elements.at(0).integer, 0LL, Timeout);
    }

    // A consumer failing on a message more than maxRedeliveries times: the mailbox dead-letters it
    // (takeDeadLetters), and the dead-letter stream has it with the reason.
    void mailbox_failedConsumerDeadLettersToStream()
    {
        REQUIRE_SERVER(server);
        RedisConnection redis(server.url());
        stage::RedisMailboxOptions options;
        options.maxRedeliveries = 1;
        auto box = redis.mailbox<int>(QStringLiteral("jobs"), options);
        QVERIFY(box.sendBlocking(7, 5s) == stage::SendStatus::Sent);
        QVERIFY(box.sendBlocking(8, 5s) == stage::SendStatus::Sent);
        std::atomic<int> done{0};
        stage::Group group;
        group.setBackoff(stage::Backoff::none());
        QVERIFY(group.spawn([box, &done](stage::Worker &) -> QCoro::Task<> {
            for (;;) {
                auto m = co_await box.receive();
                if (*m == 7)
                    throw std::runtime_error("seven is poison");
                ++done;
            }
        }));
        QTRY_COMPARE_WITH_TIMEOUT(box.deadLetterCount(), 1, Timeout);
        QTRY_COMPARE_WITH_TIMEOUT(done.load(), 1, Timeout);
        QTRY_COMPARE_WITH_TIMEOUT(server.integer({"XLEN", "jobs:dead"}), 1LL, Timeout);
        const auto dead = server.command({"XRANGE", "jobs:dead", "-", "+"});
        QByteArray reason;
        const auto &f = dead.elements.at(0).elements.at(1).elements;
        for (std::size_t i = 0; i + 1 < f.size(); i += 2)
            if (f[i].string == "reason")
                reason = f[i + 1].string;
        QVERIFY2(reason.contains("seven is poison"), reason.constData());
        stage::waitFor(group.shutdown(), 10s);
        QTRY_COMPARE_WITH_TIMEOUT(server.command({"XPENDING", "jobs", "stage"}).elements.at(0).integer, 0LL, Timeout);
    }

    // The connection-loss policy: a send waits up to sendTimeout for the connection, then fails
    // with JournalError (never written later); sendTimeout 0 fails at once; once reconnected,
    // sends complete again.
    void sendTimeout_policyWhileDisconnected()
    {
        REQUIRE_SERVER(server);
        RedisConnection redis(server.url());
        QVERIFY(redis.waitForConnected(10s));
        stage::RedisMailboxOptions waitHalfSecond;
        waitHalfSecond.sendTimeout = 500ms;
        waitHalfSecond.prefetch = 0;
        stage::RedisMailboxOptions failAtOnce;
        failAtOnce.sendTimeout = 0ms;
        failAtOnce.prefetch = 0;
        auto waiting = redis.mailbox<int>(QStringLiteral("a"), waitHalfSecond);
        auto failing = redis.mailbox<int>(QStringLiteral("b"), failAtOnce);
        QVERIFY(waiting.sendBlocking(1, 10s) == stage::SendStatus::Sent);
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("lost.*retrying with backoff")));
        server.kill();
        QTRY_COMPARE_WITH_TIMEOUT(redis.state(), RedisConnection::State::Reconnecting, Timeout);
        QElapsedTimer clock;
        clock.start();
        QString error;
        try {
            waiting.sendBlocking(2, 10s);
        } catch (const stage::JournalError &e) {
            error = QString::fromUtf8(e.what());
        }
        const qint64 waited = clock.elapsed();
        QVERIFY2(error.contains(QLatin1String("sendTimeout (500 ms)")), qPrintable(error));
        QVERIFY2(waited >= 400 && waited < 5000, qPrintable(QString::number(waited)));
        error.clear();
        clock.restart();
        try {
            failing.sendBlocking(3, 10s);
        } catch (const stage::JournalError &e) {
            error = QString::fromUtf8(e.what());
        }
        QVERIFY2(error.contains(QLatin1String("not connected")), qPrintable(error));
        QVERIFY(clock.elapsed() < 400);
        QVERIFY(server.startAgain());
        QTRY_COMPARE_WITH_TIMEOUT(redis.state(), RedisConnection::State::Connected, Timeout);
        QVERIFY(waiting.sendBlocking(4, 10s) == stage::SendStatus::Sent);
        QVERIFY(failing.sendBlocking(5, 10s) == stage::SendStatus::Sent);
        // The failed sends were never written: "a" holds 4 only (no persistence: 1 died with the
        // server), "b" holds 5.
        QCOMPARE(server.integer({"XLEN", "a"}), 1LL);
        QCOMPARE(server.integer({"XLEN", "b"}), 1LL);
    }
};

int main(int argc, char **argv)
{
    if (argc >= 4 && qstrcmp(argv[1], "--redis-consumer") == 0)
        return runChildConsumer(argc, argv);
    QCoreApplication app(argc, argv);
    TestRedis test;
    return QTest::qExec(&test, argc, argv);
}

#include "tst_redis.moc"
