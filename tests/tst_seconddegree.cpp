// The second-degree tutorial (examples/second-degree-mailbox, the seed's snippet 2.1) as a test:
// the adder reads Add(a, b, reply) requests from a stage::Mailbox in a stage::Group and throws
// while holding the first one it takes. The request is redelivered (with one worker: to the
// restarted one; with two: to whichever receives first), and the client, which sends exactly
// once, gets 3. Run on the group's thread and on a thread of its own.

#include "../examples/second-degree-mailbox/adder2.h"
#include "testutil.h"

#include <QtTest/QTest>

#include <memory>

using namespace std::chrono_literals;
using stagetest::Timeout;

class tst_SecondDegree : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void heldRequest_isRedeliveredAndClientSendsOnce_data();
    void heldRequest_isRedeliveredAndClientSendsOnce();
};

void tst_SecondDegree::heldRequest_isRedeliveredAndClientSendsOnce_data()
{
    QTest::addColumn<int>("threadCount");
    QTest::addColumn<int>("size");
    QTest::newRow("group thread, 1 worker") << 0 << 1;
    QTest::newRow("group thread, 2 workers") << 0 << 2;
    QTest::newRow("own thread, 1 worker") << 1 << 1;
    QTest::newRow("own thread, 2 workers") << 1 << 2;
}

void tst_SecondDegree::heldRequest_isRedeliveredAndClientSendsOnce()
{
    QFETCH(int, threadCount);
    QFETCH(int, size);

    stage::Mailbox<adder2::Add> requests;
    auto counters = std::make_shared<adder2::Counters>();
    QCOMPARE(counters->failFirst.load(), 1);
    stage::Group group;
    group.setThreadCount(threadCount);
    group.setSize(size);
    QVERIFY(group.spawn([requests, counters] { return adder2::worker(requests, counters); }));

    const int sum = stage::waitFor(adder2::add(requests, counters, 1, 2), std::chrono::milliseconds(Timeout));
    QCOMPARE(sum, 3);
    QCOMPARE(counters->sent.load(), 1); // no resend
    QCOMPARE(counters->taken.load(), 2);  // the first take failed, the redelivery was served
    QCOMPARE(counters->served.load(), 1);
    QTRY_COMPARE_WITH_TIMEOUT(group.restarted(), 1, Timeout);
    QCOMPARE(group.failed(), 1);
    QTRY_COMPARE_WITH_TIMEOUT(group.running(), size, Timeout);
    QCOMPARE(group.started(), size + 1);

    QTRY_COMPARE_WITH_TIMEOUT(requests.statistics().acknowledged, 1, Timeout); // when the served iteration ends
    const auto stats = requests.statistics();
    QCOMPARE(stats.queued, 1);
    QCOMPARE(stats.delivered, 2);
    QCOMPARE(stats.redelivered, 1);
    QCOMPARE(stats.acknowledged, 1);
    QCOMPARE(stats.deadLettered, 0);
    QCOMPARE(requests.count(), 0);
    QCOMPARE(requests.deadLetterCount(), 0);

    stage::waitFor(group.shutdown(), std::chrono::milliseconds(Timeout));
    QCOMPARE(group.state(), stage::Group::State::Stopped);
    const auto st = group.statistics();
    QVERIFY(st.isConsistent());
    QCOMPARE(st.running, 0);
    QCOMPARE(st.failed, 1);
    QCOMPARE(st.cancelled, qint64(size)); // every worker ended, waiting in receive()
    QCOMPARE(st.completed, 0);
    QCOMPARE(st.abandoned, 0);
    // Stopping the waiting workers took nothing from the mailbox.
    QCOMPARE(requests.statistics().delivered, 2);
    QCOMPARE(requests.count(), 0);
}

QTEST_GUILESS_MAIN(tst_SecondDegree)
#include "tst_seconddegree.moc"
