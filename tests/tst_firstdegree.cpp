// The first-degree tutorial (examples/first-degree, the seed's snippets 1.1-1.3) as a test:
//   1.1  a bare worker coroutine dies at its first failure and the request queue is not served;
//   1.2  the same worker in a stage::Group of 2 is rebuilt after each failure, and a client that
//        retries on a broken reply gets its answer;
//   1.3  Group::scope() runs the client as its body and leaves the group stopped.

#include "adder.h"
#include "testutil.h"

#include <QtCore/QVariant>
#include <QtTest/QTest>

#include <memory>

using namespace std::chrono_literals;
using stagetest::Timeout;

class tst_FirstDegree : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void bareWorker_diesAtFirstFailureAndLeavesQueueUnserved();
    void group_restartsWorkersUntilClientIsAnswered();
    void scope_returnsAnswerAndStopsGroup();
};

void tst_FirstDegree::bareWorker_diesAtFirstFailureAndLeavesQueueUnserved()
{
    auto queue = std::make_shared<adder::Queue>();
    auto counters = std::make_shared<adder::Counters>();
    auto bare = adder::worker(queue, counters); // a QCoro::Task nobody awaits
    QVERIFY(!bare.isReady());                    // waiting for its first request

    QPromise<int> promise;
    QFuture<int> answer = promise.future();
    queue->push(adder::Add{1, 2, std::move(promise)});
    bool answered = false;
    bool gotError = false;
    try {
        stage::waitFor(stage::future(answer), 300ms);
        answered = true;
    } catch (const stage::Error &) {
        gotError = true; // the reply broke (or timed out): no answer either way
    }
    QVERIFY(!answered);
    QVERIFY(gotError);
    QCOMPARE(counters->taken, 1);
    QCOMPARE(counters->failedOnPurpose, 1);
    QCOMPARE(counters->served, 0);
    QVERIFY(bare.isReady()); // the worker is gone, its exception stored in a task nobody awaits

    // Nobody restarts it: a second request stays in the queue.
    queue->push(adder::Add{2, 2, QPromise<int>()});
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QTest::qWait(50); // absence: give a (wrongly) living worker time to take it
    QCOMPARE(counters->taken, 1);
    const auto left = queue->tryPop();
    QVERIFY(left.has_value());
    QCOMPARE(left->a, 2);
    QCOMPARE(left->b, 2);
    QVERIFY(!queue->tryPop().has_value());
}

void tst_FirstDegree::group_restartsWorkersUntilClientIsAnswered()
{
    auto queue = std::make_shared<adder::Queue>();
    auto counters = std::make_shared<adder::Counters>();
    QCOMPARE(counters->failFirst, 2);
    stage::Group group;
    group.setSize(2);
    QVERIFY(group.spawn([queue, counters] { return adder::worker(queue, counters); }));

    const auto [sum, attempts] = stage::waitFor(adder::addWithRetry(queue, 1, 2, 10), std::chrono::milliseconds(Timeout));
    QCOMPARE(sum, 3);
    QCOMPARE(attempts, 3); // two broken replies, then the answer
    QCOMPARE(counters->taken, 3);
    QCOMPARE(counters->failedOnPurpose, 2);
    QCOMPARE(counters->served, 1);
    QTRY_COMPARE_WITH_TIMEOUT(group.restarted(), 2, Timeout);
    QCOMPARE(group.failed(), 2);
    QTRY_COMPARE_WITH_TIMEOUT(group.running(), 2, Timeout);
    QCOMPARE(group.started(), 4);
    QVERIFY(group.isRunning());

    stage::waitFor(group.shutdown(), std::chrono::milliseconds(Timeout));
    QCOMPARE(group.state(), stage::Group::State::Stopped);
    const auto st = group.statistics();
    QVERIFY(st.isConsistent());
    QCOMPARE(st.running, 0);
    QCOMPARE(st.cancelled, 2);
    QCOMPARE(st.started, st.failed + st.cancelled + st.completed);
}

void tst_FirstDegree::scope_returnsAnswerAndStopsGroup()
{
    auto queue = std::make_shared<adder::Queue>();
    auto counters = std::make_shared<adder::Counters>();
    stage::Group group;
    group.setSize(2);
    QVERIFY(group.spawn([queue, counters] { return adder::worker(queue, counters); }));

    const auto result = stage::waitFor(group.scope(adder::addWithRetry(queue, 1, 2, 10)),
                                       std::chrono::milliseconds(Timeout));
    QCOMPARE(result, std::make_pair(3, 3));
    QCOMPARE(group.state(), stage::Group::State::Stopped);
    QCOMPARE(QVariant::fromValue(group.state()).toString(), QStringLiteral("Stopped"));
    const auto st = group.statistics();
    QCOMPARE(st.running, 0);
    QCOMPARE(st.started, st.failed + st.cancelled + st.completed);
    QCOMPARE(st.failed, 2);
    QCOMPARE(st.restarted, 2);
    QCOMPARE(st.cancelled, 2); // the two live workers were stopped when the body ended
    QCOMPARE(st.completed, 0);
    QCOMPARE(st.abandoned, 0);
    QCOMPARE(counters->served, 1);
    QVERIFY(!queue->tryPop().has_value()); // nothing left behind
}

QTEST_GUILESS_MAIN(tst_FirstDegree)
#include "tst_firstdegree.moc"
