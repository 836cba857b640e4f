// stage::consume(): a slot-style consumer with a coroutine consumer's delivery semantics.

#include "testutil.h"

#include <QtCore/QPointer>
#include <QtTest/QSignalSpy>
#include <QtTest/QTest>

using namespace stagetest;

namespace {

struct Request
{
    int n;
    stage::Reply<int> reply;
    friend void stageFailReplies(Request &r, const stage::DeadLettered &why) { r.reply.fail(why); }
};

class Sink : public QObject
{
    Q_OBJECT
public:
    QStringList seen;
public Q_SLOTS:
    void take(const QString &message) { seen.append(message); }
};

} // namespace

class tst_Consume : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void consume_callsOnTheContextThreadInOrder()
    {
        stage::Mailbox<int> mailbox(16);
        QObject context;
        context.setObjectName(QStringLiteral("ui"));
        QList<int> seen;
        QList<QThread *> threads;
        stage::Group *consumer = stage::consume(mailbox, &context, [&](int n) {
            seen.append(n);
            threads.append(QThread::currentThread());
        });
        QVERIFY(consumer);
        QCOMPARE(consumer->objectName(), QStringLiteral("consume: QObject ui"));
        QCOMPARE(consumer->thread(), QThread::currentThread());
        QCOMPARE(consumer->mailbox(), mailbox.object());
        for (int n = 0; n < 5; ++n)
            QCOMPARE(mailbox.trySend(n), stage::SendStatus::Sent);
        QCOMPARE(seen.size(), 0); // never inside consume() or trySend()
        QTRY_COMPARE_WITH_TIMEOUT(seen.size(), 5, Timeout);
        QCOMPARE(seen, (QList<int>{0, 1, 2, 3, 4}));
        QVERIFY(std::all_of(threads.begin(), threads.end(), [](QThread *t) { return t == QThread::currentThread(); }));
        QTRY_COMPARE_WITH_TIMEOUT(mailbox.statistics().acknowledged, 5, Timeout);
        QCOMPARE(consumer->iterations(), 5);
        QCOMPARE(consumer->state(), stage::Node::State::Running);
    }

    void consume_onAContextOfAnotherThread()
    {
        ScopedThread thread;
        stage::Mailbox<int> mailbox;
        auto *context = new QObject;
        context->moveToThread(thread.get());
        std::atomic<int> seen{0};
        std::atomic<int> offThread{0};
        QPointer<stage::Group> consumer = stage::consume(mailbox, context, [&](int) {
            if (QThread::currentThread() != thread.get())
                offThread.fetch_add(1);
            seen.fetch_add(1);
        });
        QVERIFY(consumer);
        QCOMPARE(consumer->thread(), thread.get());
        QVERIFY(!consumer->mailbox()); // its QObject side lives here: not shown
        for (int n = 0; n < 100; ++n)
            mailbox.trySend(n);
        QTRY_COMPARE_WITH_TIMEOUT(seen.load(), 100, Timeout);
        QCOMPARE(offThread.load(), 0);
        // Destroyed on its thread: the consumer goes with it.
        QMetaObject::invokeMethod(thread.context(), [context] { delete context; }, Qt::QueuedConnection);
        QTRY_VERIFY_WITH_TIMEOUT(consumer.isNull(), Timeout);
    }

    void consume_aThrowRedeliversTheMessage()
    {
        stage::Mailbox<int> mailbox;
        QObject context;
        QList<int> attempts;
        QList<int> done;
        stage::Group *consumer = stage::consume(mailbox, &context, [&](stage::Delivery<int> &d) {
            attempts.append(*d);
            if (*d == 2 && d.previousDeliveries() == 0)
                throw std::runtime_error("first try of 2");
            done.append(*d);
        });
        consumer->setBackoff(stage::Backoff::none());
        for (int n = 1; n <= 3; ++n)
            mailbox.trySend(n);
        QTRY_COMPARE_WITH_TIMEOUT(done.size(), 3, Timeout);
        QCOMPARE(attempts, (QList<int>{1, 2, 2, 3})); // back at the front, for the restarted worker
        QCOMPARE(done, (QList<int>{1, 2, 3}));
        QCOMPARE(consumer->failed(), 1);
        QCOMPARE(consumer->restarted(), 1);
        QCOMPARE(mailbox.statistics().redelivered, 1);
        QTRY_COMPARE_WITH_TIMEOUT(mailbox.statistics().acknowledged, 3, Timeout);
    }

    void consume_deadLettersAfterMaxRedeliveries()
    {
        stage::Mailbox<Request> mailbox;
        mailbox.setMaxRedeliveries(2);
        QObject context;
        int calls = 0;
        QList<int> answered;
        stage::Group *consumer = stage::consume(mailbox, &context, [&](Request &r) {
            ++calls;
            if (r.n == 13)
                throw std::runtime_error("unlucky");
            answered.append(r.n);
            r.reply.send(r.n * 2);
        });
        consumer->setBackoff(stage::Backoff::none());
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("moved to the dead letters")));
        auto future13 = stage::request(mailbox, [](stage::Reply<int> r) { return Request{13, std::move(r)}; });
        auto future7 = stage::request(mailbox, [](stage::Reply<int> r) { return Request{7, std::move(r)}; });
        QTRY_VERIFY_WITH_TIMEOUT(future13.isFinished() && future7.isFinished(), Timeout);
        QCOMPARE(future7.result(), 14);
        QString why;
        try {
            future13.waitForFinished();
        } catch (const stage::DeadLettered &e) {
            why = QString::fromUtf8(e.what());
        }
        QCOMPARE(why, QStringLiteral("dead-lettered after 3 failed deliveries: unlucky"));
        QCOMPARE(calls, 4); // 13 three times, 7 once
        QCOMPARE(answered, QList<int>{7});
        QCOMPARE(consumer->failed(), 3);
        auto letters = mailbox.takeDeadLetters();
        QCOMPARE(letters.size(), size_t(1));
        QCOMPARE(letters.front().value.n, 13);
    }

    void consume_contextDestroyedStopsIt()
    {
        stage::Mailbox<int> mailbox;
        auto *context = new QObject;
        int calls = 0;
        QPointer<stage::Group> consumer = stage::consume(mailbox, context, [&](int) { ++calls; });
        mailbox.trySend(1);
        QTRY_COMPARE_WITH_TIMEOUT(calls, 1, Timeout);
        mailbox.trySend(2);
        mailbox.trySend(3);
        delete context; // before the loop hands 2 over
        QVERIFY(consumer.isNull());
        QVERIFY(roundTrip(QThread::currentThread()));
        QCOMPARE(calls, 1); // never called after
        QCOMPARE(mailbox.count(), 2); // nothing lost: 2 and 3 wait for another consumer
        QCOMPARE(mailbox.statistics().redelivered, 0);
        while (mailbox.tryReceive()) {
        }
    }

    void consume_contextDestroyedWhileItRestarts()
    {
        stage::Mailbox<int> mailbox;
        auto *context = new QObject;
        int calls = 0;
        QPointer<stage::Group> consumer = stage::consume(mailbox, context, [&](int) {
            ++calls;
            throw std::runtime_error("always");
        });
        consumer->setBackoff(stage::Backoff::exponential()); // the restart waits 10 ms and more
        mailbox.setMaxRedeliveries(100);
        mailbox.trySend(1);
        QTRY_VERIFY_WITH_TIMEOUT(calls >= 2, Timeout);
        delete context;
        QVERIFY(consumer.isNull());
        const int before = calls;
        QVERIFY(roundTrip(QThread::currentThread())); // its backoff timer went with the group
        QCOMPARE(calls, before);
        QCOMPARE(mailbox.count(), 1); // back in the mailbox
        while (mailbox.tryReceive()) {
        }
    }

    void consume_callbackDeletesItsOwnContext()
    {
        stage::Mailbox<int> mailbox;
        auto *context = new QObject;
        QList<int> seen;
        QPointer<stage::Group> consumer = stage::consume(mailbox, context, [&](int n) {
            seen.append(n);
            if (n == 2)
                delete context; // deletes the consumer too, from inside its own callback
        });
        for (int n = 1; n <= 4; ++n)
            mailbox.trySend(n);
        QTRY_VERIFY_WITH_TIMEOUT(consumer.isNull(), Timeout);
        QVERIFY(roundTrip(QThread::currentThread()));
        QCOMPARE(seen, (QList<int>{1, 2})); // no call after the one that deleted it
        QCOMPARE(mailbox.statistics().acknowledged, 2); // 2 returned normally: acknowledged
        QCOMPARE(mailbox.count(), 2);                   // 3 and 4 were not touched
        QCOMPARE(mailbox.statistics().redelivered, 0);
        while (mailbox.tryReceive()) {
        }
    }

    void consume_callbackDeletesItsContextAndThrows()
    {
        stage::Mailbox<int> mailbox;
        auto *context = new QObject;
        int calls = 0;
        QPointer<stage::Group> consumer = stage::consume(mailbox, context, [&](int) {
            ++calls;
            delete context;
            throw std::runtime_error("after the delete");
        });
        mailbox.trySend(1);
        QTRY_VERIFY_WITH_TIMEOUT(consumer.isNull(), Timeout);
        QVERIFY(roundTrip(QThread::currentThread()));
        QCOMPARE(calls, 1);
        // Its worker was stopped by the delete: the message goes back, uncounted.
        QCOMPARE(mailbox.count(), 1);
        QCOMPARE(mailbox.deadLetterCount(), 0);
        while (mailbox.tryReceive()) {
        }
    }

    void consume_isASupervisorsChild()
    {
        stage::Supervisor root(stage::Supervisor::Strategy::OneForOne);
        root.setBackoff(stage::Backoff::none());
        root.setMaxRestarts(10);
        stage::Mailbox<int> mailbox;
        QObject context;
        QList<int> done;
        stage::Group *consumer = stage::consume(mailbox, &context, [&](stage::Delivery<int> &d) {
            if (*d == 5 && d.previousDeliveries() == 0)
                throw std::runtime_error("escalated to the supervisor");
            done.append(*d);
        });
        QVERIFY(root.addChild(consumer, stage::RestartType::Transient));
        QVERIFY(root.start());
        stage::SupervisionTreeModel model;
        model.setRoot(&root);
        QCOMPARE(model.rowCount(model.index(0, 0)), 1);
        QCOMPARE(model.index(0, 0, model.index(0, 0)).data(stage::SupervisionTreeModel::NameRole).toString(),
                 QStringLiteral("consume: QObject"));
        QCOMPARE(model.index(0, 0, model.index(0, 0)).data(stage::SupervisionTreeModel::HasMailboxRole).toBool(), true);
        for (int n = 1; n <= 10; ++n)
            mailbox.trySend(n);
        QTRY_COMPARE_WITH_TIMEOUT(done.size(), 10, Timeout);
        QCOMPARE(done, (QList<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
        QCOMPARE(root.childFailures(), 1); // a supervised group escalates its failure
        QCOMPARE(root.restarts(), 1);
        QTRY_COMPARE_WITH_TIMEOUT(consumer->state(), stage::Node::State::Running, Timeout);
        stage::waitFor(root.shutdown(), 10s);
        QCOMPARE(consumer->state(), stage::Node::State::Stopped);
    }

    void consume_mailboxClosedDrainsThenStops()
    {
        stage::Mailbox<int> mailbox;
        QObject context;
        QList<int> seen;
        stage::Group *consumer = stage::consume(mailbox, &context, [&](int n) { seen.append(n); });
        QSignalSpy stopped(consumer, &stage::Node::stopped);
        mailbox.trySend(1);
        mailbox.trySend(2);
        mailbox.close();
        QTRY_COMPARE_WITH_TIMEOUT(consumer->state(), stage::Node::State::Stopped, Timeout);
        QCOMPARE(seen, (QList<int>{1, 2}));
        QCOMPARE(consumer->completed(), 1);
        QCOMPARE(consumer->restarted(), 0);
    }

    void consume_deliveryAckedEarlyIsNotRedelivered()
    {
        stage::Mailbox<int> mailbox;
        QObject context;
        int calls = 0;
        stage::Group *consumer = stage::consume(mailbox, &context, [&](stage::Delivery<int> &d) {
            ++calls;
            d.ack();
            throw std::runtime_error("after the ack");
        });
        consumer->setBackoff(stage::Backoff::none());
        mailbox.trySend(1);
        QTRY_COMPARE_WITH_TIMEOUT(consumer->failed(), 1, Timeout);
        QVERIFY(roundTrip(QThread::currentThread()));
        QCOMPARE(calls, 1);
        QCOMPARE(mailbox.statistics().acknowledged, 1);
        QCOMPARE(mailbox.statistics().redelivered, 0);
    }

    void consume_aSlotOfTheContext()
    {
        stage::Mailbox<QString> mailbox;
        Sink sink;
        stage::Group *consumer = stage::consume(mailbox, &sink, &Sink::take);
        QVERIFY(consumer);
        QCOMPARE(consumer->objectName(), QStringLiteral("consume: Sink"));
        mailbox.trySend(QStringLiteral("a"));
        mailbox.trySend(QStringLiteral("b"));
        QTRY_COMPARE_WITH_TIMEOUT(sink.seen, (QStringList{QStringLiteral("a"), QStringLiteral("b")}), Timeout);

        QObject notASink;
        QTest::ignoreMessage(QtWarningMsg, "stage::consume: the context is not an object of the callback's class; "
                                           "nothing consumes the mailbox");
        QVERIFY(!stage::consume(mailbox, &notASink, &Sink::take));
    }

    void consume_badInput()
    {
        stage::Mailbox<int> mailbox;
        QTest::ignoreMessage(QtWarningMsg, "stage::consume: the context is null; nothing consumes the mailbox");
        QVERIFY(!stage::consume(mailbox, nullptr, [](int) {}));

        stage::Mailbox<int> closed;
        closed.trySend(1);
        closed.close();
        QObject context;
        QList<int> seen;
        QTest::ignoreMessage(QtWarningMsg,
                             "stage::consume: the mailbox is closed; the consumer drains the 1 message(s) left, then stops");
        stage::Group *consumer = stage::consume(closed, &context, [&](int n) { seen.append(n); });
        QVERIFY(consumer);
        QTRY_COMPARE_WITH_TIMEOUT(consumer->state(), stage::Node::State::Stopped, Timeout);
        QCOMPARE(seen, QList<int>{1});

        QThread finished;
        finished.start();
        finished.quit();
        finished.wait();
        QObject orphan;
        orphan.moveToThread(&finished);
        QTest::ignoreMessage(QtWarningMsg, "stage::consume: the context's thread has finished; nothing consumes the mailbox");
        QVERIFY(!stage::consume(mailbox, &orphan, [](int) {}));
    }
};

QTEST_GUILESS_MAIN(tst_Consume)
#include "tst_consume.moc"
