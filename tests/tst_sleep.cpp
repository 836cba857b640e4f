// stage::sleep, and the stop paths every awaitable shares (a stop before the first suspension, a
// stop requested twice), shown on the simplest awaitable.

#include "testutil.h"

#include <QtCore/QElapsedTimer>
#include <QtTest/QtTest>

#include <algorithm>
#include <numeric>

using namespace stagetest;

namespace {

QCoro::Task<> sleepBody(stage::Worker &w, Probe *p, std::chrono::milliseconds duration, qint64 *elapsedNs,
                        std::atomic<bool> *sawStopToken)
{
    Sentinel sentinel(p->destroyed);
    p->startThread = QThread::currentThread();
    p->entered.fetch_add(1);
    QElapsedTimer timer;
    timer.start();
    try {
        co_await stage::sleep(duration);
    } catch (const stage::Cancelled &) {
        p->resumeThread = QThread::currentThread();
        if (sawStopToken)
            *sawStopToken = w.stopToken().stop_requested() && w.isStopRequested();
        p->cancelled.fetch_add(1);
        throw;
    }
    if (elapsedNs)
        *elapsedNs = timer.nsecsElapsed();
    p->resumeThread = QThread::currentThread();
    p->resumed.fetch_add(1);
}

QCoro::Task<> yieldingBody(stage::Worker &, EventLog *log, QString name, std::chrono::milliseconds duration)
{
    for (int i = 0; i < 3; ++i) {
        log->add(name + QString::number(i));
        co_await stage::sleep(duration);
    }
}

struct OrderSlot
{
    std::chrono::steady_clock::time_point deadline;
};

QCoro::Task<> orderedSleepBody(stage::Worker &, EventLog *log, OrderSlot *slot, int index,
                               std::chrono::milliseconds duration)
{
    slot->deadline = std::chrono::steady_clock::now() + duration;
    co_await stage::sleep(duration);
    log->add(QString::number(index));
}

QCoro::Task<> selfStoppingBody(stage::Worker &, Probe *p, stage::WorkerHandle *handle)
{
    Sentinel sentinel(p->destroyed);
    p->entered.fetch_add(1);
    handle->requestStop();
    try {
        co_await stage::sleep(10s);
    } catch (const stage::Cancelled &) {
        p->cancelled.fetch_add(1);
        throw;
    }
    p->resumed.fetch_add(1);
}

} // namespace

class Reporter : public QObject
{
    Q_OBJECT
public:
    void report() { emit reached(); }
Q_SIGNALS:
    void reached();
};

namespace {

QCoro::Task<> reportingBody(stage::Worker &, Probe *p, Reporter *reporter)
{
    Sentinel sentinel(p->destroyed);
    p->entered.fetch_add(1);
    reporter->report(); // a directly connected slot stops the handle
    try {
        co_await stage::sleep(10s);
    } catch (const stage::Cancelled &) {
        p->cancelled.fetch_add(1);
        throw;
    }
    p->resumed.fetch_add(1);
}

} // namespace

class tst_Sleep : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void sleep_resumesAfterDurationOnHomeThread_data();
    void sleep_resumesAfterDurationOnHomeThread();
    void sleep_zeroOrNegativeYieldsToEventLoop_data();
    void sleep_zeroOrNegativeYieldsToEventLoop();
    void sleep_concurrentSleepsResumeInDeadlineOrder();
    void sleep_cancelledResumesWithCancelled_data();
    void sleep_cancelledResumesWithCancelled();
    void sleep_beyondIntRangeOfMilliseconds();
    void stop_requestedByBodyBeforeFirstSuspension();
    void stop_requestedFromSlotBeforeFirstSuspension();
    void stop_requestedBeforeWorkerThreadStartsBodyNeverRunsIt();
    void stop_requestedTwiceFinishesOnce_data();
    void stop_requestedTwiceFinishesOnce();
};

static void addThreadRows()
{
    QTest::addColumn<bool>("onWorkerThread");
    QTest::newRow("main thread") << false;
    QTest::newRow("worker thread") << true;
}

void tst_Sleep::sleep_resumesAfterDurationOnHomeThread_data()
{
    addThreadRows();
}

void tst_Sleep::sleep_resumesAfterDurationOnHomeThread()
{
    QFETCH(bool, onWorkerThread);
    ScopedThread thread;
    QThread *home = onWorkerThread ? thread.get() : QThread::currentThread();
    Probe p;
    qint64 elapsedNs = -1;
    const auto duration = 100ms;
    {
        stage::WorkerHandle handle;
        ExitRecorder exits(handle);
        QVERIFY(handle.start([&p, &elapsedNs, duration](stage::Worker &w) { return sleepBody(w, &p, duration, &elapsedNs, nullptr); },
                             home));
        QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
        QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed);
    }
    QCOMPARE(p.resumed.load(), 1);
    QCOMPARE(p.cancelled.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
    QCOMPARE(p.startThread.load(), home);
    QCOMPARE(p.resumeThread.load(), home);
    QVERIFY2(elapsedNs >= std::chrono::nanoseconds(duration).count(), qPrintable(QString::number(elapsedNs)));
    QVERIFY2(elapsedNs < std::chrono::nanoseconds(duration + 5s).count(), qPrintable(QString::number(elapsedNs)));
}

void tst_Sleep::sleep_zeroOrNegativeYieldsToEventLoop_data()
{
    QTest::addColumn<int>("milliseconds");
    QTest::newRow("zero") << 0;
    QTest::newRow("negative") << -5;
}

void tst_Sleep::sleep_zeroOrNegativeYieldsToEventLoop()
{
    QFETCH(int, milliseconds);
    const auto duration = std::chrono::milliseconds(milliseconds);
    EventLog log;
    stage::WorkerHandle a;
    stage::WorkerHandle b;
    ExitRecorder exitsA(a);
    ExitRecorder exitsB(b);
    QVERIFY(a.start([&log, duration](stage::Worker &w) { return yieldingBody(w, &log, QStringLiteral("a"), duration); }));
    // The body ran up to its first sleep inside start() and suspended there: it did not go on.
    QCOMPARE(log.events(), QStringList{QStringLiteral("a0")});
    QVERIFY(b.start([&log, duration](stage::Worker &w) { return yieldingBody(w, &log, QStringLiteral("b"), duration); }));
    QCOMPARE(log.events(), (QStringList{QStringLiteral("a0"), QStringLiteral("b0")}));
    QTRY_COMPARE_WITH_TIMEOUT(exitsA.count() + exitsB.count(), 2, Timeout);
    // Each yield let the other worker run once.
    QCOMPARE(log.events(), (QStringList{QStringLiteral("a0"), QStringLiteral("b0"), QStringLiteral("a1"),
                                        QStringLiteral("b1"), QStringLiteral("a2"), QStringLiteral("b2")}));
    QCOMPARE(exitsA.lastKind(), stage::WorkerExit::Kind::Completed);
    QCOMPARE(exitsB.lastKind(), stage::WorkerExit::Kind::Completed);
}

void tst_Sleep::sleep_concurrentSleepsResumeInDeadlineOrder()
{
    // Started in a scrambled order; deadlines 25 ms apart. Each body records its own deadline, so
    // the expected order holds even if the machine stalls between two starts.
    const std::vector<int> ranks = {7, 2, 11, 0, 5, 9, 1, 10, 3, 8, 4, 6};
    const int n = int(ranks.size());
    EventLog log;
    std::vector<OrderSlot> deadlines(n);
    std::vector<std::unique_ptr<stage::WorkerHandle>> handles;
    std::vector<std::unique_ptr<ExitRecorder>> exits;
    for (int i = 0; i < n; ++i) {
        const auto duration = 40ms + 25ms * ranks[i];
        handles.push_back(std::make_unique<stage::WorkerHandle>());
        exits.push_back(std::make_unique<ExitRecorder>(*handles.back()));
        OrderSlot *slot = &deadlines[i];
        QVERIFY(handles.back()->start(
            [&log, slot, i, duration](stage::Worker &w) { return orderedSleepBody(w, &log, slot, i, duration); }));
    }
    QTRY_COMPARE_WITH_TIMEOUT(int(log.events().size()), n, Timeout);
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int l, int r) { return deadlines[l].deadline < deadlines[r].deadline; });
    QStringList expected;
    for (int i : order)
        expected << QString::number(i);
    QCOMPARE(log.events(), expected);
    for (const auto &e : exits)
        QTRY_COMPARE_WITH_TIMEOUT(e->count(), 1, Timeout);
}

void tst_Sleep::sleep_cancelledResumesWithCancelled_data()
{
    addThreadRows();
}

void tst_Sleep::sleep_cancelledResumesWithCancelled()
{
    QFETCH(bool, onWorkerThread);
    ScopedThread thread;
    QThread *home = onWorkerThread ? thread.get() : QThread::currentThread();
    Probe p;
    std::atomic<bool> sawStopToken{false};
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QElapsedTimer timer;
    timer.start();
    QVERIFY(handle.start(
        [&p, &sawStopToken](stage::Worker &w) { return sleepBody(w, &p, 10s, nullptr, &sawStopToken); }, home));
    QTRY_COMPARE_WITH_TIMEOUT(p.entered.load(), 1, Timeout);
    handle.requestStop(); // from the main thread, also for a worker on the worker thread
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QVERIFY(timer.elapsed() < 9000); // did not wait for the sleep to end
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.cancelled.load(), 1);
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
    QCOMPARE(p.resumeThread.load(), home);
    QVERIFY(sawStopToken.load());
    QVERIFY(roundTrip(home));
    QCOMPARE(exits.count(), 1);
    QCOMPARE(p.destroyed.load(), 1);
    QCOMPARE(handle.state(), stage::WorkerHandle::State::Finished);
}

// Found in review: a deadline more than INT_MAX ms away (about 24.8 days) overflowed the int
// of the executor's QBasicTimer, which refused it with a warning and kept firing the old interval.
void tst_Sleep::sleep_beyondIntRangeOfMilliseconds()
{
    static std::atomic<int> warnings{0};
    warnings = 0;
    const QtMessageHandler previous = qInstallMessageHandler([](QtMsgType type, const QMessageLogContext &, const QString &) {
        if (type != QtDebugMsg && type != QtInfoMsg)
            ++warnings;
    });
    Probe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p](stage::Worker &w) { return sleepBody(w, &p, std::chrono::hours(24 * 30), nullptr, nullptr); }));
    QTRY_COMPARE_WITH_TIMEOUT(p.entered.load(), 1, Timeout);
    // A short sleep elsewhere on the same executor still fires on time, then the long one waits.
    Probe q;
    stage::WorkerHandle other;
    qint64 elapsedNs = 0;
    QVERIFY(other.start([&q, &elapsedNs](stage::Worker &w) { return sleepBody(w, &q, 20ms, &elapsedNs, nullptr); }));
    QTRY_COMPARE_WITH_TIMEOUT(q.resumed.load(), 1, Timeout);
    QTest::qWait(100);
    qInstallMessageHandler(previous);
    QCOMPARE(warnings.load(), 0);
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.cancelled.load(), 0);
    handle.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(p.cancelled.load(), 1);
}

void tst_Sleep::stop_requestedByBodyBeforeFirstSuspension()
{
    Probe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, &handle](stage::Worker &w) { return selfStoppingBody(w, &p, &handle); }));
    // The sleep did not suspend: the body unwound inside start(); finished() comes later.
    QCOMPARE(p.cancelled.load(), 1);
    QCOMPARE(p.destroyed.load(), 1);
    QCOMPARE(exits.count(), 0);
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QVERIFY(roundTrip(QThread::currentThread()));
    QCOMPARE(exits.count(), 1);
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Sleep::stop_requestedFromSlotBeforeFirstSuspension()
{
    Probe p;
    Reporter reporter;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    connect(&reporter, &Reporter::reached, &handle, &stage::WorkerHandle::requestStop);
    QVERIFY(handle.start([&p, &reporter](stage::Worker &w) { return reportingBody(w, &p, &reporter); }));
    QCOMPARE(p.entered.load(), 1);
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QVERIFY(roundTrip(QThread::currentThread()));
    QCOMPARE(exits.count(), 1);
    QCOMPARE(p.cancelled.load(), 1);
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Sleep::stop_requestedBeforeWorkerThreadStartsBodyNeverRunsIt()
{
    ScopedThread thread;
    // Keep the worker thread busy so that the start cannot run before the stop.
    auto gate = std::make_shared<QSemaphore>();
    auto blocked = std::make_shared<QSemaphore>();
    QMetaObject::invokeMethod(
        thread.context(),
        [gate, blocked]() {
            blocked->release();
            gate->tryAcquire(1, 30000);
        },
        Qt::QueuedConnection);
    QVERIFY(blocked->tryAcquire(1, Timeout));

    Probe p;
    std::atomic<int> factoryCalls{0};
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start(
        [&p, &factoryCalls](stage::Worker &w) {
            factoryCalls.fetch_add(1);
            return sleepBody(w, &p, 10s, nullptr, nullptr);
        },
        thread.get()));
    handle.requestStop();
    gate->release();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QVERIFY(roundTrip(thread.get()));
    QCOMPARE(exits.count(), 1);
    QCOMPARE(factoryCalls.load(), 0);
    QCOMPARE(p.entered.load(), 0);
    QCOMPARE(p.destroyed.load(), 0);
}

void tst_Sleep::stop_requestedTwiceFinishesOnce_data()
{
    addThreadRows();
}

void tst_Sleep::stop_requestedTwiceFinishesOnce()
{
    QFETCH(bool, onWorkerThread);
    ScopedThread thread;
    QThread *home = onWorkerThread ? thread.get() : QThread::currentThread();
    Probe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p](stage::Worker &w) { return sleepBody(w, &p, 10s, nullptr, nullptr); }, home));
    QTRY_COMPARE_WITH_TIMEOUT(p.entered.load(), 1, Timeout);
    handle.requestStop();
    handle.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    handle.requestStop(); // after the end: a no-op
    QVERIFY(roundTrip(home));
    QCOMPARE(exits.count(), 1);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.cancelled.load(), 1);
    QCOMPARE(p.destroyed.load(), 1);
    QCOMPARE(handle.state(), stage::WorkerHandle::State::Finished);
}

QTEST_GUILESS_MAIN(tst_Sleep)
#include "tst_sleep.moc"
