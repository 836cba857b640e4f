// stage::connect(): signal emissions into mailboxes, with counted overflow policies.

#include "testutil.h"

#include <QtCore/QSet>
#include <QtCore/QTimer>
#include <QtTest/QSignalSpy>
#include <QtTest/QTest>

#include <numeric>
#include <thread>
#include <vector>

using namespace stagetest;

class Emitter : public QObject
{
    Q_OBJECT
Q_SIGNALS:
    void value(qint64 v);
    void pair(int a, const QString &b);
    void nothing();
};

struct Pair
{
    int a;
    QString b;
};

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#  if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#  else
constexpr bool kSanitized = false;
#  endif
#else
constexpr bool kSanitized = false;
#endif

std::vector<qint64> drain(const stage::Mailbox<qint64> &mailbox)
{
    std::vector<qint64> values;
    while (auto d = mailbox.tryReceive())
        values.push_back(**d);
    return values;
}

// Deterministic "random" faults: whether delivery \a attempt of \a v throws.
bool transientFault(qint64 v, int attempt)
{
    quint64 x = quint64(v) * 0x9E3779B97F4A7C15ull + quint64(attempt + 1) * 0xBF58476D1CE4E5B9ull;
    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 29;
    return x % 11 == 0;
}
bool poison(qint64 v)
{
    return v % 997 == 0;
}

/* Silences the log lines a storm of faults writes (dead letters, rejections, restarts). */
class QuietLog
{
public:
    QuietLog()
    {
        QLoggingCategory::setFilterRules(QStringLiteral("stage.mailbox.warning=false\nstage.connect.warning=false\n"
                                                        "stage.group.warning=false\nstage.group.info=false\n"
                                                        "stage.connect.info=false"));
    }
    ~QuietLog() { QLoggingCategory::setFilterRules(QString()); }
};

} // namespace

class tst_Connect : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void connect_queuesEachEmission()
    {
        Emitter emitter;
        stage::Mailbox<qint64> mailbox;
        stage::FeedConnection c = stage::connect(&emitter, &Emitter::value, mailbox);
        QVERIFY(c);
        QVERIFY(c.feed());
        QCOMPARE(c.feed()->overflow(), stage::Overflow::Reject);
        QVERIFY(c.feed()->isConnected());
        QCOMPARE(c.feed()->thread(), QThread::currentThread());
        for (qint64 v = 0; v < 5; ++v)
            Q_EMIT emitter.value(v);
        QCOMPARE(drain(mailbox), (std::vector<qint64>{0, 1, 2, 3, 4}));
        QCOMPARE(c.feed()->sent(), 5);
        QCOMPARE(c.feed()->statistics().emitted(), 5);
        QCOMPARE(mailbox.statistics().queued, 5);
    }

    void connect_buildsTheMessage()
    {
        Emitter emitter;
        // Several arguments: T{args...}.
        stage::Mailbox<Pair> pairs;
        QVERIFY(stage::connect(&emitter, &Emitter::pair, pairs));
        Q_EMIT emitter.pair(7, QStringLiteral("seven"));
        auto p = pairs.tryReceive();
        QVERIFY(p);
        QCOMPARE((*p)->a, 7);
        QCOMPARE((*p)->b, QStringLiteral("seven"));
        // A map, with the signal's arguments.
        stage::Mailbox<QString> strings;
        QVERIFY(stage::connect(&emitter, &Emitter::pair, strings,
                               [](int a, const QString &b) { return b + QString::number(a); }));
        Q_EMIT emitter.pair(3, QStringLiteral("x"));
        auto s = strings.tryReceive();
        QVERIFY(s);
        QCOMPARE(**s, QStringLiteral("x3"));
        // No arguments: T{}; and a private signal (QTimer::timeout's QPrivateSignal is no argument).
        stage::Mailbox<int> ticks;
        QVERIFY(stage::connect(&emitter, &Emitter::nothing, ticks));
        Q_EMIT emitter.nothing();
        QCOMPARE(ticks.count(), 1);
        QTimer timer;
        stage::Mailbox<QString> timeouts;
        QVERIFY(stage::connect(&timer, &QTimer::timeout, timeouts, [] { return QStringLiteral("tick"); }));
        timer.start(1);
        QTRY_COMPARE_WITH_TIMEOUT(timeouts.count() > 0, true, Timeout);
        timer.stop();
    }

    void connect_overflow_data()
    {
        QTest::addColumn<stage::Overflow>("overflow");
        QTest::addColumn<std::vector<qint64>>("kept");
        QTest::addColumn<qint64>("sent");
        QTest::addColumn<qint64>("rejected");
        QTest::addColumn<qint64>("dropped");
        QTest::newRow("Reject") << stage::Overflow::Reject << std::vector<qint64>{0, 1, 2, 3} << qint64(4)
                                << qint64(6) << qint64(0);
        QTest::newRow("DropOldest") << stage::Overflow::DropOldest << std::vector<qint64>{6, 7, 8, 9} << qint64(10)
                                    << qint64(0) << qint64(6);
    }
    void connect_overflow()
    {
        QFETCH(stage::Overflow, overflow);
        QFETCH(std::vector<qint64>, kept);
        QFETCH(qint64, sent);
        QFETCH(qint64, rejected);
        QFETCH(qint64, dropped);
        Emitter emitter;
        stage::Mailbox<qint64> mailbox(4);
        auto c = stage::connect(&emitter, &Emitter::value, mailbox, overflow);
        QVERIFY(c);
        QPointer<stage::SignalFeed> feed = c.feed();
        QSignalSpy overflowed(feed.data(), &stage::SignalFeed::overflowed);
        QSignalSpy changed(feed.data(), &stage::SignalFeed::statisticsChanged);
        if (overflow == stage::Overflow::Reject)
            QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral(
                "stage::connect: the mailbox fed by Emitter::value\\(qlonglong\\) is full; 1 emission\\(s\\) rejected "
                "\\(Reject policy; 1 rejected in all\\)")));
        else
            QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral(
                "stage::connect: the mailbox fed by Emitter::value\\(qlonglong\\) is full; 1 of its oldest message\\(s\\) "
                "dropped to make room \\(DropOldest policy; 1 dropped in all\\)")));
        for (qint64 v = 0; v < 10; ++v)
            Q_EMIT emitter.value(v); // one log line: the next ones come at most a second later
        QCOMPARE(feed->sent(), sent);
        QCOMPARE(feed->rejected(), rejected);
        QCOMPARE(feed->dropped(), dropped);
        QCOMPARE(feed->statistics().emitted(), 10);
        // Coalesced: one overflowed() for the six, from the event loop.
        QCOMPARE(overflowed.count(), 0);
        QTRY_COMPARE_WITH_TIMEOUT(overflowed.count(), 1, Timeout);
        QCOMPARE(overflowed.at(0).at(0).toLongLong(), 6);
        QCOMPARE(changed.count(), 1);
        QCOMPARE(drain(mailbox), kept);
        QCOMPARE(mailbox.statistics().queued, sent);
        QCOMPARE(mailbox.statistics().delivered, 4); // dropped messages were never delivered
        QVERIFY(roundTrip(QThread::currentThread()));
        QCOMPARE(overflowed.count(), 1);
    }

    void connect_dropOldestBreaksTheReplyOfWhatItDrops()
    {
        struct Ask
        {
            qint64 n;
            stage::Reply<int> reply;
        };
        Emitter emitter;
        stage::Mailbox<Ask> mailbox(1);
        std::vector<stage::ReplyReceiver<int>> answers;
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("1 of its oldest message")));
        QVERIFY(stage::connect(&emitter, &Emitter::value, mailbox,
                               [&answers](qint64 n) {
                                   auto [reply, answer] = stage::makeReply<int>();
                                   answers.push_back(std::move(answer));
                                   return Ask{n, std::move(reply)};
                               },
                               stage::Overflow::DropOldest));
        Q_EMIT emitter.value(1);
        Q_EMIT emitter.value(2); // drops 1: its Reply is destroyed unanswered
        QCOMPARE(mailbox.count(), 1);
        bool broken = false;
        try {
            stage::waitFor(answers.front().wait(0ms));
        } catch (const stage::BrokenReply &) {
            broken = true;
        } catch (const stage::TimeoutError &) {
        }
        QVERIFY(broken);
        QVERIFY(mailbox.tryReceive()); // 2 is still there
    }

    void connect_blockWaitsOnAThreadWithoutEventLoop()
    {
        Emitter emitter;
        stage::Mailbox<qint64> mailbox(2);
        auto c = stage::connect(&emitter, &Emitter::value, mailbox, stage::Overflow::Block);
        QVERIFY(c);
        std::atomic<qint64> emitted{0};
        constexpr qint64 kCount = 200;
        std::thread producer([&] {
            for (qint64 v = 0; v < kCount; ++v) {
                Q_EMIT emitter.value(v); // waits while the mailbox is full
                emitted.fetch_add(1);
            }
        });
        std::vector<qint64> received;
        QVERIFY(spinUntil([&] {
            while (auto d = mailbox.tryReceive())
                received.push_back(**d);
            return qint64(received.size()) == kCount;
        }));
        producer.join();
        std::vector<qint64> expected(kCount);
        std::iota(expected.begin(), expected.end(), 0);
        QCOMPARE(received, expected);
        QCOMPARE(c.feed()->sent(), kCount);
        QCOMPARE(c.feed()->rejected(), 0);
    }

    void connect_blockRefusedOnAThreadWithAnEventLoop_data()
    {
        QTest::addColumn<bool>("mainThread");
        QTest::newRow("main thread") << true;
        QTest::newRow("QThread running exec()") << false;
    }
    void connect_blockRefusedOnAThreadWithAnEventLoop()
    {
        QFETCH(bool, mainThread);
        Emitter emitter;
        stage::Mailbox<qint64> mailbox(1);
        auto c = stage::connect(&emitter, &Emitter::value, mailbox, stage::Overflow::Block);
        QVERIFY(c);
        QTest::ignoreMessage(
            QtWarningMsg,
            QRegularExpression(QStringLiteral("stage::connect: Block refused: Emitter::value\\(qlonglong\\) was emitted on a "
                                              "thread with an event loop \\(%1\\)")
                                   .arg(mainThread ? QStringLiteral("the main thread")
                                                   : QStringLiteral("a QThread running exec\\(\\)"))));
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("is full; 1 emission\\(s\\) rejected \\(Block policy")));
        auto emitThree = [&] {
            for (qint64 v = 0; v < 3; ++v)
                Q_EMIT emitter.value(v); // never blocks: as under Reject
        };
        if (mainThread) {
            emitThree();
        } else {
            ScopedThread thread;
            std::atomic<bool> done{false};
            QMetaObject::invokeMethod(thread.context(), [&] { emitThree(); done = true; }, Qt::QueuedConnection);
            QVERIFY(spinUntil([&] { return done.load(); }));
        }
        QCOMPARE(c.feed()->sent(), 1);
        QCOMPARE(c.feed()->rejected(), 2);
        QCOMPARE(drain(mailbox), std::vector<qint64>{0});
    }

    void connect_endsWhenTheSenderIsDestroyed()
    {
        auto *emitter = new Emitter;
        stage::Mailbox<qint64> mailbox;
        auto c = stage::connect(emitter, &Emitter::value, mailbox);
        QPointer<stage::SignalFeed> feed = c.feed();
        QSignalSpy disconnected(feed.data(), &stage::SignalFeed::disconnected);
        Q_EMIT emitter->value(1);
        delete emitter;
        QVERIFY(!feed->isConnected());
        QTRY_VERIFY_WITH_TIMEOUT(feed.isNull(), Timeout); // disconnected(), then deleteLater()
        QCOMPARE(disconnected.count(), 1);
        QCOMPARE(drain(mailbox), std::vector<qint64>{1}); // what was queued stays
    }

    void connect_endsWhenTheMailboxCloses()
    {
        Emitter emitter;
        stage::Mailbox<qint64> mailbox;
        auto c = stage::connect(&emitter, &Emitter::value, mailbox);
        QPointer<stage::SignalFeed> feed = c.feed();
        QSignalSpy disconnected(feed.data(), &stage::SignalFeed::disconnected);
        Q_EMIT emitter.value(1);
        mailbox.close();
        Q_EMIT emitter.value(2); // finds it closed: counted, and the connection ends
        QCOMPARE(feed->rejectedClosed(), 1);
        QVERIFY(!feed->isConnected());
        Q_EMIT emitter.value(3); // not connected any more: not seen
        QCOMPARE(feed->rejectedClosed(), 1);
        QCOMPARE(feed->statistics().emitted(), 2);
        QTRY_VERIFY_WITH_TIMEOUT(feed.isNull(), Timeout);
        QCOMPARE(disconnected.count(), 1);
        QCOMPARE(drain(mailbox), std::vector<qint64>{1}); // nothing queued is lost by the close
    }

    void connect_deletingTheFeedDisconnects()
    {
        Emitter emitter;
        stage::Mailbox<qint64> mailbox;
        auto c = stage::connect(&emitter, &Emitter::value, mailbox);
        Q_EMIT emitter.value(1);
        delete c.feed();
        QVERIFY(!c.feed());
        Q_EMIT emitter.value(2);
        QCOMPARE(drain(mailbox), std::vector<qint64>{1});
        QVERIFY(roundTrip(QThread::currentThread())); // nothing posted to the dead feed is delivered
    }

    void connect_qobjectDisconnectEndsIt()
    {
        Emitter emitter;
        stage::Mailbox<qint64> mailbox;
        auto c = stage::connect(&emitter, &Emitter::value, mailbox);
        QPointer<stage::SignalFeed> feed = c.feed();
        QVERIFY(QObject::disconnect(c));
        Q_EMIT emitter.value(1);
        QCOMPARE(mailbox.count(), 0);
        QTRY_VERIFY_WITH_TIMEOUT(feed.isNull(), Timeout);
    }

    void connect_mapThatThrows()
    {
        Emitter emitter;
        stage::Mailbox<qint64> mailbox;
        auto c = stage::connect(&emitter, &Emitter::value, mailbox, [](qint64 v) -> qint64 {
            if (v < 0)
                throw std::runtime_error("negative");
            return v;
        });
        QTest::ignoreMessage(QtWarningMsg,
                             "stage::connect: the map of Emitter::value(qlonglong) threw (negative); the emission was "
                             "not queued (counted in rejected)");
        Q_EMIT emitter.value(-1);
        Q_EMIT emitter.value(1);
        QCOMPARE(c.feed()->rejected(), 1);
        QCOMPARE(c.feed()->sent(), 1);
        QCOMPARE(drain(mailbox), std::vector<qint64>{1});
    }

    void connect_badInput()
    {
        stage::Mailbox<qint64> mailbox;
        const Emitter *nullEmitter = nullptr;
        QTest::ignoreMessage(QtWarningMsg, "stage::connect: the sender is null; not connected");
        auto c1 = stage::connect(nullEmitter, &Emitter::value, mailbox);
        QVERIFY(!c1);
        QVERIFY(!c1.feed());

        Emitter emitter;
        void (Emitter::*noSignal)(qint64) = nullptr;
        QTest::ignoreMessage(QtWarningMsg, "stage::connect: the signal is null; not connected");
        QVERIFY(!stage::connect(&emitter, noSignal, mailbox));

        stage::Mailbox<qint64> closed;
        closed.close();
        QTest::ignoreMessage(QtWarningMsg, "stage::connect: the mailbox is closed; not connected");
        auto c2 = stage::connect(&emitter, &Emitter::value, closed);
        QVERIFY(!c2);
        QVERIFY(!c2.feed());
        Q_EMIT emitter.value(1); // nothing connected
        QCOMPARE(mailbox.count(), 0);
    }

    // The issue's accounting: four threads emit at full speed into one bounded mailbox through
    // stage::connect, and a consumer (stage::consume) throws at random and on poison messages.
    // Every emission is acknowledged after being processed once, counted by the overflow policy,
    // or dead-lettered; nothing else.
    void connect_fourThreadsExactAccounting_data()
    {
        QTest::addColumn<stage::Overflow>("overflow");
        QTest::addColumn<bool>("sharedSender");
        for (auto overflow : {stage::Overflow::Reject, stage::Overflow::DropOldest, stage::Overflow::Block}) {
            const char *name = overflow == stage::Overflow::Reject       ? "Reject"
                             : overflow == stage::Overflow::DropOldest ? "DropOldest"
                                                                        : "Block";
            QTest::addRow("%s, a sender per thread", name) << overflow << false;
            QTest::addRow("%s, one sender for all four", name) << overflow << true;
        }
    }
    void connect_fourThreadsExactAccounting()
    {
        QFETCH(stage::Overflow, overflow);
        QFETCH(bool, sharedSender);
        QuietLog quiet;
        constexpr int kThreads = 4;
        const qint64 kPerThread = kSanitized ? 4000 : 20000;
        const qint64 kTotal = kThreads * kPerThread;

        stage::Mailbox<qint64> mailbox(64);
        mailbox.setMaxRedeliveries(2);
        QObject context;
        QSet<qint64> processed;
        qint64 duplicates = 0;
        qint64 outOfRange = 0;
        stage::Group *consumer = stage::consume(mailbox, &context, [&](stage::Delivery<qint64> &d) {
            const qint64 v = *d;
            if (poison(v))
                throw std::runtime_error("poison");
            if (transientFault(v, d.previousDeliveries()))
                throw std::runtime_error("transient");
            if (v < 0 || v >= kTotal)
                ++outOfRange;
            if (processed.contains(v))
                ++duplicates;
            processed.insert(v);
        });
        QVERIFY(consumer);
        consumer->setBackoff(stage::Backoff::none());

        std::vector<std::unique_ptr<Emitter>> emitters;
        std::vector<QPointer<stage::SignalFeed>> feeds;
        for (int i = 0; i < (sharedSender ? 1 : kThreads); ++i) {
            emitters.push_back(std::make_unique<Emitter>());
            auto c = stage::connect(emitters.back().get(), &Emitter::value, mailbox, overflow);
            QVERIFY(c);
            feeds.push_back(c.feed());
        }
        std::atomic<int> finished{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < kThreads; ++t) {
            Emitter *emitter = emitters[sharedSender ? 0 : t].get();
            threads.emplace_back([emitter, t, kPerThread, &finished] {
                for (qint64 i = 0; i < kPerThread; ++i)
                    Q_EMIT emitter->value(t * kPerThread + i);
                finished.fetch_add(1);
            });
        }
        // The consumer runs on this thread: keep its loop running while they emit (Block waits on it).
        QVERIFY(spinUntil([&] { return finished.load() == kThreads; }, 120000));
        for (auto &t : threads)
            t.join();

        qint64 sent = 0, rejected = 0, dropped = 0, rejectedClosed = 0;
        for (const auto &feed : feeds) {
            QVERIFY(feed);
            sent += feed->sent();
            rejected += feed->rejected();
            dropped += feed->dropped();
            rejectedClosed += feed->rejectedClosed();
        }
        QCOMPARE(sent + rejected + rejectedClosed, kTotal); // every emission seen once
        QCOMPARE(rejectedClosed, 0);
        if (overflow == stage::Overflow::Block)
            QCOMPARE(rejected, 0); // it waits (DropOldest may, in theory, lose 1024 rounds: counted)
        if (overflow != stage::Overflow::DropOldest)
            QCOMPARE(dropped, 0);

        // Everything queued ends acknowledged or dead-lettered (or was dropped by DropOldest).
        QVERIFY2(spinUntil([&] {
                     const auto s = mailbox.statistics();
                     return s.acknowledged + s.deadLettered + dropped == sent && mailbox.count() == 0;
                 }, 120000),
                 qPrintable(QStringLiteral("sent %1, acknowledged %2, dead-lettered %3, dropped %4, queued %5")
                                .arg(sent).arg(mailbox.statistics().acknowledged)
                                .arg(mailbox.statistics().deadLettered).arg(dropped).arg(mailbox.count())));
        const auto stats = mailbox.statistics();
        QCOMPARE(duplicates, 0);
        QCOMPARE(outOfRange, 0);
        QCOMPARE(qint64(processed.size()), stats.acknowledged);
        QCOMPARE(stats.queued, sent);
        QSet<qint64> dead;
        for (auto &letter : mailbox.takeDeadLetters()) {
            QVERIFY(!processed.contains(letter.value));
            // Only a message that failed every one of its deliveries is dead-lettered.
            QVERIFY2(poison(letter.value)
                         || (transientFault(letter.value, 0) && transientFault(letter.value, 1)
                             && transientFault(letter.value, 2)),
                     qPrintable(QString::number(letter.value)));
            dead.insert(letter.value);
        }
        QCOMPARE(qint64(dead.size()), stats.deadLettered);
        QCOMPARE(qint64(processed.size()) + qint64(dead.size()) + dropped + rejected, kTotal);
        QVERIFY(consumer->statistics().isConsistent());
        QCOMPARE(consumer->failed(), stats.redelivered + stats.deadLettered);
        qInfo("sent %lld, rejected %lld, dropped %lld, processed %lld, dead-lettered %lld, consumer restarts %lld",
              sent, rejected, dropped, qint64(processed.size()), qint64(dead.size()), consumer->restarted());
    }
};

QTEST_GUILESS_MAIN(tst_Connect)
#include "tst_connect.moc"
