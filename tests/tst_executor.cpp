// The executor that resumes Stage coroutines on a thread, seen through the public API: how much
// work a turn of the event loop gets done, however the loop is spun (a QEventLoop, QTRY_* and
// QTest::qWait, or QTest::qWaitFor, which processes events once and sleeps 10 ms per round), and
// that it still yields to the rest of the loop.

#include "testutil.h"

#include <QtCore/QElapsedTimer>
#include <QtTest/QtTest>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif

using namespace stagetest;

namespace {

/* Under ASan or valgrind everything runs ten to fifty times slower. */
bool isSlowRun()
{
#if defined(__SANITIZE_ADDRESS__)
    return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return true;
#endif
#endif
#ifdef RUNNING_ON_VALGRIND
    if (RUNNING_ON_VALGRIND)
        return true;
#endif
    return false;
}

enum class Spin {
    EventLoop, //!< QEventLoop::exec(), as an application runs
    TryMacro,  //!< QTRY_VERIFY_WITH_TIMEOUT: QTest::qWait(50) per round
    WaitFor,   //!< QTest::qWaitFor: processEvents() once, then a 10 ms sleep, per round
};

/* Spins the calling thread's events the way \a spin says until \a done() or \a timeoutMs. */
template<typename Predicate>
bool spinUntil(Spin spin, Predicate done, int timeoutMs)
{
    switch (spin) {
    case Spin::EventLoop:
        return stagetest::spinUntil(done, timeoutMs);
    case Spin::TryMacro: {
        [&] { QTRY_VERIFY_WITH_TIMEOUT(done(), timeoutMs); }();
        return done();
    }
    case Spin::WaitFor:
        return QTest::qWaitFor(done, timeoutMs);
    }
    return false;
}

QCoro::Task<> idleBody(stage::Worker &)
{
    co_await stage::sleep(60s); // a cancellation point: a stop resumes it at once
}

/* Yields (a sleep of 0: straight back to the executor's queue) until stopped, counting. */
QCoro::Task<> yieldingBody(stage::Worker &, std::atomic<qint64> *yields)
{
    for (;;) {
        co_await stage::sleep(0ms);
        yields->fetch_add(1, std::memory_order_relaxed);
    }
}

} // namespace

Q_DECLARE_METATYPE(Spin)

class tst_Executor : public QObject
{
    Q_OBJECT

private slots:
    void stop_manyWorkers_endCancelledHoweverTheLoopSpins_data();
    void stop_manyWorkers_endCancelledHoweverTheLoopSpins();
    void busyWorkers_yieldToTheEventLoop();
};

void tst_Executor::stop_manyWorkers_endCancelledHoweverTheLoopSpins_data()
{
    QTest::addColumn<Spin>("spin");
    QTest::newRow("QEventLoop") << Spin::EventLoop;
    QTest::newRow("QTRY_VERIFY") << Spin::TryMacro;
    QTest::newRow("QTest::qWaitFor") << Spin::WaitFor;
}

/*
    20,000 workers wait in a Stage awaitable and are shut down. Each stop resumes its worker, which
    ends at once: every one ends Cancelled, none is reported Abandoned, whether the thread runs a
    real event loop or a test's nested one that sleeps between rounds. The stop's own work takes
    a few milliseconds (about 160 ms under ASan); the shutdown timeout is 1 s (the default 5 s
    under ASan or valgrind). With a turn bounded by 256 resumptions, the qWaitFor row took 1.6 s
    and had 14,656 workers reported abandoned at 1 s (issue #20, item 10).
*/
void tst_Executor::stop_manyWorkers_endCancelledHoweverTheLoopSpins()
{
    QFETCH(Spin, spin);
    constexpr int Workers = 20000;
    stage::Group g;
    g.setSize(Workers);
    if (!isSlowRun())
        g.setShutdownTimeout(1000);
    QElapsedTimer timer;
    timer.start();
    QVERIFY(g.spawn([](stage::Worker &w) { return idleBody(w); }));
    QVERIFY(spinUntil(spin, [&] { return g.running() == Workers; }, 4 * Timeout));
    const qint64 startMs = timer.restart();

    (void)g.shutdown();
    QVERIFY(spinUntil(spin, [&] { return g.state() == stage::Node::State::Stopped; }, 4 * Timeout));
    const qint64 stopMs = timer.elapsed();
    qInfo("%d workers started in %lld ms, stopped in %lld ms", Workers, startMs, stopMs);

    const auto s = g.statistics();
    QCOMPARE(s.running, 0);
    QCOMPARE(s.abandoned, 0);
    QCOMPARE(s.cancelled, Workers);
    QCOMPARE(s.started, Workers);
    QVERIFY(s.isConsistent());
}

/*
    Workers that keep waking each other never leave the executor's queue empty: a turn still ends
    after a few milliseconds and lets the rest of the event loop run (here a 1 ms QTimer, which
    would not tick at all if a turn drained until the queue was empty).
*/
void tst_Executor::busyWorkers_yieldToTheEventLoop()
{
    std::atomic<qint64> yields{0};
    stage::Group g;
    g.setSize(100);
    QVERIFY(g.spawn([&yields](stage::Worker &w) { return yieldingBody(w, &yields); }));

    int ticks = 0;
    QTimer ticker;
    connect(&ticker, &QTimer::timeout, this, [&] { ++ticks; });
    ticker.start(1);
    QVERIFY(spinUntil(Spin::EventLoop, [&] { return ticks >= 20; }, Timeout));
    ticker.stop();
    const qint64 yieldsSeen = yields.load();

    (void)g.shutdown();
    QVERIFY(spinUntil(Spin::EventLoop, [&] { return g.state() == stage::Node::State::Stopped; }, Timeout));
    qInfo("20 ticks of a 1 ms timer among %lld yields", yieldsSeen);
    QVERIFY(yieldsSeen > 0);
    QCOMPARE(g.statistics().cancelled, 100);
    QCOMPARE(g.statistics().abandoned, 0);
}

QTEST_GUILESS_MAIN(tst_Executor)
#include "tst_executor.moc"
