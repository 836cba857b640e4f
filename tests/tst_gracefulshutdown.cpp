// stage::gracefulShutdown(work, makeHandler): the work's value when it completes; on a stop, the
// work unwinds first, then the handler runs with the stop hidden (its own Stage awaitables are not
// cancelled), the result is empty and the caller's next Stage awaitable throws stage::Cancelled.
// Also: a stop that comes before the wrapper is reached, errors from either side, a handler that
// outlasts the shutdown timeout, the worker's home thread, and the seed's snippet 2.2.
//
// Bodies record what they see in a Shared (an ordered EventLog, counters, threads); the test
// functions compare outside the coroutines.

#include "testutil.h"

#include <QtCore/QElapsedTimer>
#include <QtCore/QSemaphore>
#include <QtTest/QTest>

#include <functional>
#include <stdexcept>

using namespace std::chrono_literals;
using stagetest::EventLog;
using stagetest::Sentinel;
using stagetest::Timeout;
using Kind = stage::WorkerExit::Kind;

namespace {

constexpr std::chrono::milliseconds WaitLimit{Timeout};

struct Shared
{
    std::atomic<int> entered{0};       // bodies started
    std::atomic<int> handlerRuns{0};   // handlers started
    std::atomic<int> workDestroyed{0}; // the work's sentinel
    std::atomic<int> bodyDestroyed{0}; // the body's sentinel
    std::atomic<qint64> handlerSleptMs{-1};
    std::atomic<QThread *> home{nullptr};          // Worker::thread()
    std::atomic<QThread *> bodyThread{nullptr};    // where the body started
    std::atomic<QThread *> handlerStart{nullptr};  // where the handler started
    std::atomic<QThread *> handlerResume{nullptr}; // where the handler resumed after its sleep
    std::atomic<QThread *> bodyResume{nullptr};    // where the body resumed after the wrapper
    std::optional<int> value;                      // an int work's result, as the body received it
    QSemaphore gate;                               // what a body may block on before the wrapper
    std::function<void()> beforeWrapper;           // non-Stage work the body does first
    EventLog log;
};
using SharedPtr = std::shared_ptr<Shared>;

// Work: runs until stopped (a Stage sleep), with an RAII sentinel that logs its unwinding.
QCoro::Task<> workUntilStopped(SharedPtr s)
{
    Sentinel sentinel(s->workDestroyed, &s->log, QStringLiteral("work unwound"));
    s->log.add(QStringLiteral("work started"));
    co_await stage::sleep(1h);
    s->log.add(QStringLiteral("work finished"));
}

QCoro::Task<int> intWorkUntilStopped(SharedPtr s)
{
    Sentinel sentinel(s->workDestroyed, &s->log, QStringLiteral("work unwound"));
    s->log.add(QStringLiteral("work started"));
    co_await stage::sleep(1h);
    s->log.add(QStringLiteral("work finished"));
    co_return -1;
}

// Work: completes after one suspension.
QCoro::Task<> workCompletes(SharedPtr s)
{
    Sentinel sentinel(s->workDestroyed, &s->log, QStringLiteral("work unwound"));
    s->log.add(QStringLiteral("work started"));
    co_await stage::sleep(1ms);
    s->log.add(QStringLiteral("work finished"));
}

QCoro::Task<int> intWorkCompletes(SharedPtr s)
{
    Sentinel sentinel(s->workDestroyed, &s->log, QStringLiteral("work unwound"));
    s->log.add(QStringLiteral("work started"));
    co_await stage::sleep(1ms);
    s->log.add(QStringLiteral("work finished"));
    co_return 42;
}

// Work: throws after one suspension.
QCoro::Task<> workThrows(SharedPtr s)
{
    Sentinel sentinel(s->workDestroyed, &s->log, QStringLiteral("work unwound"));
    s->log.add(QStringLiteral("work started"));
    co_await stage::sleep(1ms);
    throw std::runtime_error("the work tripped");
}

// A capturing lambda coroutine as the handler: it reads its captures after its first suspension,
// which is safe only because gracefulShutdown keeps the callable alive until the handler ended.
auto sleepingHandler(SharedPtr s, std::chrono::milliseconds duration)
{
    return [s, duration]() -> QCoro::Task<> {
        ++s->handlerRuns;
        s->handlerStart = QThread::currentThread();
        s->log.add(QStringLiteral("handler started"));
        QElapsedTimer clock;
        clock.start();
        co_await stage::sleep(duration); // not a cancellation point here: the stop is hidden
        s->handlerSleptMs = clock.elapsed();
        s->handlerResume = QThread::currentThread();
        s->log.add(QStringLiteral("handler slept"));
    };
}

auto throwingHandler(SharedPtr s)
{
    return [s]() -> QCoro::Task<> {
        ++s->handlerRuns;
        s->log.add(QStringLiteral("handler started"));
        co_await stage::sleep(1ms);
        throw std::runtime_error("the handler tripped");
    };
}

// After the wrapper: a completed work ends the body; an empty result means the worker is
// stopping, so the body's next Stage awaitable must throw stage::Cancelled.
QCoro::Task<> afterWrapper(SharedPtr s, bool completed)
{
    s->bodyResume = QThread::currentThread();
    s->log.add(completed ? QStringLiteral("result value") : QStringLiteral("result empty"));
    if (completed)
        co_return;
    try {
        co_await stage::sleep(1h);
        s->log.add(QStringLiteral("body slept"));
    } catch (const stage::Cancelled &) {
        s->log.add(QStringLiteral("body cancelled"));
        throw;
    }
}

void enterBody(stage::Worker &worker, const SharedPtr &s)
{
    s->home = worker.thread();
    s->bodyThread = QThread::currentThread();
    ++s->entered;
    if (s->beforeWrapper)
        s->beforeWrapper(); // non-Stage work: the stop may be requested meanwhile
}

template<typename H>
QCoro::Task<> voidBody(stage::Worker &worker, SharedPtr s, QCoro::Task<> (*makeWork)(SharedPtr), H handler)
{
    Sentinel sentinel(s->bodyDestroyed, &s->log, QStringLiteral("body ended"));
    enterBody(worker, s);
    QCoro::Task<> work = makeWork(s);
    bool completed = false;
    try {
        completed = co_await stage::gracefulShutdown(std::move(work), std::move(handler));
    } catch (const std::exception &e) {
        s->log.add(QStringLiteral("body caught: ") + QString::fromUtf8(e.what()));
        throw;
    }
    co_await afterWrapper(s, completed);
}

template<typename H>
QCoro::Task<> intBody(stage::Worker &worker, SharedPtr s, QCoro::Task<int> (*makeWork)(SharedPtr), H handler)
{
    Sentinel sentinel(s->bodyDestroyed, &s->log, QStringLiteral("body ended"));
    enterBody(worker, s);
    QCoro::Task<int> work = makeWork(s);
    std::optional<int> result = co_await stage::gracefulShutdown(std::move(work), std::move(handler));
    s->value = result;
    co_await afterWrapper(s, result.has_value());
}

/* Every workerFinished() of a group. Declare it after the group. */
class ExitLog
{
public:
    explicit ExitLog(stage::Group &group)
    {
        QObject::connect(&group, &stage::Group::workerFinished, &m_context,
                         [this](const stage::WorkerExit &exit) { exits.push_back(exit); });
    }
    int count() const { return int(exits.size()); }
    std::vector<stage::WorkerExit> exits;

private:
    QObject m_context;
};

QStringList events(std::initializer_list<const char *> list)
{
    QStringList result;
    for (const char *event : list)
        result.append(QString::fromUtf8(event));
    return result;
}

// Snippet 2.2 ------------------------------------------------------------------------------------

// Closes the channel when the worker's frame ends, as the seed's sender is dropped with it.
struct CloseOnExit
{
    stage::Mailbox<int> channel;
    ~CloseOnExit() { channel.close(); }
};

QCoro::Task<> sendOneThenWait(stage::Mailbox<int> channel)
{
    co_await channel.send(1);
    co_await stage::sleep(24h); // forever, but a cancellation point
}

QCoro::Task<> snippet22Worker(stage::Mailbox<int> channel)
{
    CloseOnExit closer{channel};
    auto handler = [channel]() -> QCoro::Task<> { co_await channel.send(2); };
    QCoro::Task<> work = sendOneThenWait(channel);
    co_await stage::gracefulShutdown(std::move(work), std::move(handler));
    co_await stage::sleep(24h); // the stop: stage::Cancelled
}

QCoro::Task<int> receiveOne(stage::Mailbox<int> channel)
{
    auto delivery = co_await channel.receive();
    co_return *delivery;
}

} // namespace

class tst_GracefulShutdown : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void workCompletes_returnsValueAndHandlerNeverRuns_data();
    void workCompletes_returnsValueAndHandlerNeverRuns();
    void stopDuringWork_workUnwindsThenHandlerRunsUncancelled_data();
    void stopDuringWork_workUnwindsThenHandlerRunsUncancelled();
    void stopBeforeWrapper_handlerStillRuns_data();
    void stopBeforeWrapper_handlerStillRuns();
    void workThrows_propagatesAndHandlerNeverRuns();
    void handlerThrows_workerEndsStoppedWithItsReason();
    void handlerOutlastsShutdownTimeout_workerAbandonedThenEnds();
    void workerThread_handlerStartsAndResumesOnHomeThread();
    void snippet22_bodyGetsOneThenHandlersTwoThenClosed();
};

void tst_GracefulShutdown::workCompletes_returnsValueAndHandlerNeverRuns_data()
{
    QTest::addColumn<bool>("nonVoid");
    QTest::newRow("void: true") << false;
    QTest::newRow("std::optional<int>: 42") << true;
}

void tst_GracefulShutdown::workCompletes_returnsValueAndHandlerNeverRuns()
{
    QFETCH(bool, nonVoid);
    auto s = std::make_shared<Shared>();
    stage::Group group;
    ExitLog exits(group);
    QVERIFY(group.spawn([s, nonVoid](stage::Worker &worker) {
        return nonVoid ? intBody(worker, s, &intWorkCompletes, sleepingHandler(s, 20ms))
                       : voidBody(worker, s, &workCompletes, sleepingHandler(s, 20ms));
    }));
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.exits[0].kind, Kind::Completed);
    QCOMPARE(s->log.events(), events({"work started", "work finished", "work unwound", "result value", "body ended"}));
    if (nonVoid)
        QCOMPARE(s->value, std::optional<int>(42));
    QCOMPARE(s->handlerRuns.load(), 0);

    // A shutdown after the end changes nothing: the handler belongs to a run that is over.
    stage::waitFor(group.shutdown(), WaitLimit);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(s->handlerRuns.load(), 0);
    QCOMPARE(s->workDestroyed.load(), 1);
    QCOMPARE(s->bodyDestroyed.load(), 1);
    const auto st = group.statistics();
    QVERIFY(st.isConsistent());
    QCOMPARE(st.completed, 1);
    QCOMPARE(st.cancelled, 0);
    QCOMPARE(st.failed, 0);
    QCOMPARE(st.abandoned, 0);
    QCOMPARE(exits.count(), 1);
}

void tst_GracefulShutdown::stopDuringWork_workUnwindsThenHandlerRunsUncancelled_data()
{
    QTest::addColumn<bool>("nonVoid");
    QTest::newRow("void: false") << false;
    QTest::newRow("std::optional<int>: nullopt") << true;
}

void tst_GracefulShutdown::stopDuringWork_workUnwindsThenHandlerRunsUncancelled()
{
    QFETCH(bool, nonVoid);
    auto s = std::make_shared<Shared>();
    s->value = -1; // overwritten with the result
    stage::Group group;
    ExitLog exits(group);
    QVERIFY(group.spawn([s, nonVoid](stage::Worker &worker) {
        return nonVoid ? intBody(worker, s, &intWorkUntilStopped, sleepingHandler(s, 20ms))
                       : voidBody(worker, s, &workUntilStopped, sleepingHandler(s, 20ms));
    }));
    QTRY_COMPARE_WITH_TIMEOUT(s->log.count(QStringLiteral("work started")), 1, Timeout);
    QCOMPARE(s->handlerRuns.load(), 0);

    stage::waitFor(group.shutdown(), WaitLimit); // ends when the worker has ended, handler included

    // The work's destructors ran exactly once, before the handler started; the handler's own
    // sleep completed; the result was empty; the body's next Stage awaitable threw Cancelled.
    QCOMPARE(s->log.events(), events({"work started", "work unwound", "handler started", "handler slept",
                                      "result empty", "body cancelled", "body ended"}));
    QCOMPARE(s->workDestroyed.load(), 1);
    QCOMPARE(s->handlerRuns.load(), 1);
    QVERIFY2(s->handlerSleptMs.load() >= 19, qPrintable(QString::number(s->handlerSleptMs.load())));
    if (nonVoid)
        QCOMPARE(s->value, std::optional<int>());
    QCOMPARE(s->bodyDestroyed.load(), 1);

    QCOMPARE(group.state(), stage::Group::State::Stopped);
    const auto st = group.statistics();
    QVERIFY(st.isConsistent());
    QCOMPARE(st.started, 1);
    QCOMPARE(st.cancelled, 1);
    QCOMPARE(st.completed, 0);
    QCOMPARE(st.failed, 0);
    QCOMPARE(st.abandoned, 0);
    QCOMPARE(st.restarted, 0);
    QCOMPARE(exits.count(), 1);
    QCOMPARE(exits.exits[0].kind, Kind::Cancelled);
}

void tst_GracefulShutdown::stopBeforeWrapper_handlerStillRuns_data()
{
    QTest::addColumn<int>("threadCount");
    QTest::newRow("group thread, the body's own call stops the group") << 0;
    QTest::newRow("worker thread, stopped while the body blocks") << 1;
}

void tst_GracefulShutdown::stopBeforeWrapper_handlerStillRuns()
{
    QFETCH(int, threadCount);
    auto s = std::make_shared<Shared>();
    stage::Group group;
    group.setThreadCount(threadCount);
    ExitLog exits(group);
    if (threadCount == 0) {
        // Synchronous, non-Stage work of the body itself asks for the stop.
        s->beforeWrapper = [&group, raw = s.get()] {
            group.shutdown();
            raw->log.add(QStringLiteral("stop requested"));
        };
    } else {
        // The body blocks (no Stage awaitable) while the test stops the group from its thread.
        s->beforeWrapper = [raw = s.get()] {
            if (!raw->gate.tryAcquire(1, Timeout))
                raw->log.add(QStringLiteral("gate timed out"));
        };
    }
    QVERIFY(group.spawn([s](stage::Worker &worker) {
        return voidBody(worker, s, &workUntilStopped, sleepingHandler(s, 20ms));
    }));
    QTRY_COMPARE_WITH_TIMEOUT(s->entered.load(), 1, Timeout); // a stop before the start skips the body
    if (threadCount > 0) {
        group.shutdown(); // the stop is requested now; the body is still blocked
        QCOMPARE(group.state(), stage::Group::State::Stopping);
        s->log.add(QStringLiteral("stop requested"));
        s->gate.release();
    }
    stage::waitFor(group.shutdown(), WaitLimit);

    // The work reached its first Stage awaitable already stopped and unwound; the handler ran.
    QCOMPARE(s->log.events(), events({"stop requested", "work started", "work unwound", "handler started",
                                      "handler slept", "result empty", "body cancelled", "body ended"}));
    QCOMPARE(s->entered.load(), 1);
    QCOMPARE(s->handlerRuns.load(), 1);
    QVERIFY2(s->handlerSleptMs.load() >= 19, qPrintable(QString::number(s->handlerSleptMs.load())));
    const auto st = group.statistics();
    QVERIFY(st.isConsistent());
    QCOMPARE(st.started, 1);
    QCOMPARE(st.cancelled, 1);
    QCOMPARE(st.failed, 0);
    QCOMPARE(st.abandoned, 0);
    QCOMPARE(exits.count(), 1);
    QCOMPARE(exits.exits[0].kind, Kind::Cancelled);
}

void tst_GracefulShutdown::workThrows_propagatesAndHandlerNeverRuns()
{
    auto s = std::make_shared<Shared>();
    stage::Group group;
    group.setRestartType(stage::RestartType::Temporary); // one run, no restart
    ExitLog exits(group);
    QVERIFY(group.spawn([s](stage::Worker &worker) {
        return voidBody(worker, s, &workThrows, sleepingHandler(s, 20ms));
    }));
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.exits[0].kind, Kind::Failed);
    QCOMPARE(exits.exits[0].reason, QStringLiteral("the work tripped"));
    QCOMPARE(s->log.events(),
             events({"work started", "work unwound", "body caught: the work tripped", "body ended"}));

    stage::waitFor(group.shutdown(), WaitLimit);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(s->handlerRuns.load(), 0);
    const auto st = group.statistics();
    QVERIFY(st.isConsistent());
    QCOMPARE(st.started, 1);
    QCOMPARE(st.failed, 1);
    QCOMPARE(st.cancelled, 0);
    QCOMPARE(st.restarted, 0);
    QCOMPARE(exits.count(), 1);
}

void tst_GracefulShutdown::handlerThrows_workerEndsStoppedWithItsReason()
{
    auto s = std::make_shared<Shared>();
    stage::Group group;
    ExitLog exits(group);
    QVERIFY(group.spawn([s](stage::Worker &worker) {
        return voidBody(worker, s, &workUntilStopped, throwingHandler(s));
    }));
    QTRY_COMPARE_WITH_TIMEOUT(s->log.count(QStringLiteral("work started")), 1, Timeout);

    stage::waitFor(group.shutdown(), WaitLimit);
    QCOMPARE(exits.count(), 1);
    // Once a stop is requested, however the body ends is a stop; the exception's text is kept.
    QCOMPARE(exits.exits[0].kind, Kind::Cancelled);
    QCOMPARE(exits.exits[0].reason, QStringLiteral("stopped; while unwinding it threw: the handler tripped"));
    QCOMPARE(s->log.events(), events({"work started", "work unwound", "handler started",
                                      "body caught: the handler tripped", "body ended"}));
    QCOMPARE(s->handlerRuns.load(), 1);
    const auto st = group.statistics();
    QVERIFY(st.isConsistent());
    QCOMPARE(st.started, 1);
    QCOMPARE(st.failed, 0);
    QCOMPARE(st.cancelled, 1);
    QCOMPARE(st.restarted, 0); // never after a shutdown
    QCOMPARE(group.state(), stage::Group::State::Stopped);
}

void tst_GracefulShutdown::handlerOutlastsShutdownTimeout_workerAbandonedThenEnds()
{
    auto s = std::make_shared<Shared>();
    stage::Group group;
    group.setShutdownTimeout(100);
    ExitLog exits(group);
    QVERIFY(group.spawn([s](stage::Worker &worker) {
        return voidBody(worker, s, &workUntilStopped, sleepingHandler(s, 2000ms));
    }));
    QTRY_COMPARE_WITH_TIMEOUT(s->log.count(QStringLiteral("work started")), 1, Timeout);

    QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("did not stop within 100 ms; abandoned")));
    QElapsedTimer clock;
    clock.start();
    stage::waitFor(group.shutdown(), WaitLimit);
    const qint64 took = clock.elapsed();
    QVERIFY2(took >= 99 && took < 1900, qPrintable(QString::number(took)));
    QCOMPARE(group.abandoned(), 1);
    QCOMPARE(group.cancelled(), 0);
    QCOMPARE(group.running(), 0);
    QCOMPARE(exits.count(), 1);
    QCOMPARE(exits.exits[0].kind, Kind::Abandoned);
    QCOMPARE(s->handlerRuns.load(), 1);
    QCOMPARE(s->bodyDestroyed.load(), 0); // still in the handler

    // The handler's sleep is not cut short by the abandonment; then the frame ends on its own.
    QTRY_COMPARE_WITH_TIMEOUT(s->bodyDestroyed.load(), 1, Timeout);
    QCOMPARE(s->log.events(), events({"work started", "work unwound", "handler started", "handler slept",
                                      "result empty", "body cancelled", "body ended"}));
    QVERIFY2(s->handlerSleptMs.load() >= 1999, qPrintable(QString::number(s->handlerSleptMs.load())));
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    // The late end is logged, not reported as a second exit nor counted again.
    QCOMPARE(exits.count(), 1);
    QCOMPARE(group.abandoned(), 1);
    QCOMPARE(group.cancelled(), 0);
    QVERIFY(group.statistics().isConsistent());
}

void tst_GracefulShutdown::workerThread_handlerStartsAndResumesOnHomeThread()
{
    auto s = std::make_shared<Shared>();
    stage::Group group;
    group.setThreadCount(1);
    ExitLog exits(group);
    QVERIFY(group.spawn([s](stage::Worker &worker) {
        return voidBody(worker, s, &workUntilStopped, sleepingHandler(s, 20ms));
    }));
    QTRY_COMPARE_WITH_TIMEOUT(s->log.count(QStringLiteral("work started")), 1, Timeout);

    stage::waitFor(group.shutdown(), WaitLimit);
    QCOMPARE(s->log.events(), events({"work started", "work unwound", "handler started", "handler slept",
                                      "result empty", "body cancelled", "body ended"}));
    QThread *home = s->home.load();
    QVERIFY(home);
    QVERIFY(home != QThread::currentThread());
    QCOMPARE(s->bodyThread.load(), home);
    QCOMPARE(s->handlerStart.load(), home);
    QCOMPARE(s->handlerResume.load(), home);
    QCOMPARE(s->bodyResume.load(), home);
    QCOMPARE(s->handlerRuns.load(), 1);
    QCOMPARE(group.cancelled(), 1);
    QCOMPARE(exits.count(), 1);
    QCOMPARE(exits.exits[0].kind, Kind::Cancelled);
}

void tst_GracefulShutdown::snippet22_bodyGetsOneThenHandlersTwoThenClosed()
{
    stage::Mailbox<int> channel;
    stage::Group group;
    ExitLog exits(group);
    QVERIFY(group.spawn([channel] { return snippet22Worker(channel); }));

    // The client: inside the scope, one value; the scope then shuts the group down.
    const int first = stage::waitFor(group.scope(receiveOne(channel)), WaitLimit);
    QCOMPARE(first, 1);
    QCOMPARE(group.state(), stage::Group::State::Stopped);
    QCOMPARE(exits.count(), 1);
    QCOMPARE(exits.exits[0].kind, Kind::Cancelled);

    // After the scope: the handler's value, then the channel is closed (the worker's frame ended).
    QVERIFY(channel.isClosed());
    auto second = stage::waitFor(channel.receive(), WaitLimit);
    QCOMPARE(*second, 2);
    QVERIFY_THROWS_EXCEPTION(stage::MailboxClosed, stage::waitFor(channel.receive(), WaitLimit));
    QCOMPARE(channel.statistics().queued, 2);
    QCOMPARE(channel.statistics().delivered, 2);
}

QTEST_GUILESS_MAIN(tst_GracefulShutdown)
#include "tst_gracefulshutdown.moc"
