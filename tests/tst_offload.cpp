// stage::offload: results and exceptions from a pool thread, the resume thread, the stop token, and
// cancellation of running and of not yet started work.

#include "testutil.h"

#include <QtCore/QElapsedTimer>
#include <QtCore/QScopeGuard>
#include <QtCore/QSemaphore>
#include <QtCore/QThreadPool>
#include <QtTest/QtTest>

#include <functional>
#include <optional>
#include <stop_token>

using namespace stagetest;

namespace {

struct CustomError
{
    int code;
};

// Touched by the pool thread: shared, so that it outlives a test that fails early.
struct PoolState
{
    QSemaphore gate;    // the function waits on it
    QSemaphore started; // released when the function starts
    std::atomic<int> runs{0};
    std::atomic<int> finishedRuns{0};
    std::atomic<bool> sawStop{false};
    std::atomic<QThread *> runThread{nullptr};
    std::optional<std::stop_callback<std::function<void()>>> onStop; // see offload_resultOf...

    void open() { gate.release(1000); }
    bool waitAtGate() { return gate.tryAcquire(1, 30000); } // failsafe: never block a pool forever
};

struct OffloadProbe : Probe
{
    std::atomic<int> value{-1};
    std::atomic<int> code{-1};
    std::atomic<int> finishedRunsAtEnd{-1}; // PoolState::finishedRuns when the body unwound
};

template<typename F>
QCoro::Task<> offloadBody(stage::Worker &, OffloadProbe *p, std::shared_ptr<PoolState> state, F function,
                          QThreadPool *pool)
{
    Sentinel sentinel(p->destroyed);
    p->startThread = QThread::currentThread();
    p->entered.fetch_add(1);
    try {
        if constexpr (std::is_void_v<decltype(stage::offload(std::move(function), pool).await_resume())>)
            co_await stage::offload(std::move(function), pool);
        else
            p->value = co_await stage::offload(std::move(function), pool);
    } catch (const stage::Cancelled &) {
        p->resumeThread = QThread::currentThread();
        p->finishedRunsAtEnd = state->finishedRuns.load();
        p->cancelled.fetch_add(1);
        throw;
    } catch (const CustomError &e) {
        p->resumeThread = QThread::currentThread();
        p->code = e.code;
        p->errors.fetch_add(1);
        co_return;
    }
    p->resumeThread = QThread::currentThread();
    p->resumed.fetch_add(1);
}

void addThreadRows()
{
    QTest::addColumn<bool>("onWorkerThread");
    QTest::newRow("main thread") << false;
    QTest::newRow("worker thread") << true;
}

} // namespace

class tst_Offload : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void cleanup();
    void offload_returnsValueAndResumesOnHomeThread_data();
    void offload_returnsValueAndResumesOnHomeThread();
    void offload_voidFunction();
    void offload_rethrowsExceptionAsItself();
    void offload_cancelledResumesAtOnceWhileFunctionRuns_data();
    void offload_cancelledResumesAtOnceWhileFunctionRuns();
    void offload_stopTokenIsStoppedOnCancel();
    void offload_resultOfFunctionStoppedByTokenIsDiscarded();
    void offload_notStartedWhenCancelledIsNeverRun();
};

void tst_Offload::cleanup()
{
    QThreadPool::globalInstance()->waitForDone();
}

void tst_Offload::offload_returnsValueAndResumesOnHomeThread_data()
{
    addThreadRows();
}

void tst_Offload::offload_returnsValueAndResumesOnHomeThread()
{
    QFETCH(bool, onWorkerThread);
    ScopedThread thread;
    QThread *home = onWorkerThread ? thread.get() : QThread::currentThread();
    auto state = std::make_shared<PoolState>();
    OffloadProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start(
        [&p, state](stage::Worker &w) {
            auto function = [state]() {
                state->runThread = QThread::currentThread();
                return 6 * 7;
            };
            return offloadBody(w, &p, state, function, QThreadPool::globalInstance());
        },
        home));
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed);
    QCOMPARE(p.value.load(), 42);
    QCOMPARE(p.resumed.load(), 1);
    QCOMPARE(p.startThread.load(), home);
    QCOMPARE(p.resumeThread.load(), home);
    QVERIFY(state->runThread.load() != nullptr);
    QVERIFY(state->runThread.load() != home);
    QVERIFY(state->runThread.load() != QThread::currentThread());
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Offload::offload_voidFunction()
{
    auto state = std::make_shared<PoolState>();
    OffloadProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, state](stage::Worker &w) {
        auto function = [state]() { state->runs.fetch_add(1); };
        return offloadBody(w, &p, state, function, QThreadPool::globalInstance());
    }));
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed);
    QCOMPARE(state->runs.load(), 1);
    QCOMPARE(p.resumed.load(), 1);
    QCOMPARE(p.resumeThread.load(), QThread::currentThread());
}

void tst_Offload::offload_rethrowsExceptionAsItself()
{
    auto state = std::make_shared<PoolState>();
    OffloadProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, state](stage::Worker &w) {
        auto function = []() -> int { throw CustomError{9}; };
        return offloadBody(w, &p, state, function, QThreadPool::globalInstance());
    }));
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed); // the body caught CustomError
    QCOMPARE(p.errors.load(), 1);
    QCOMPARE(p.code.load(), 9);
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.resumeThread.load(), QThread::currentThread());
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Offload::offload_cancelledResumesAtOnceWhileFunctionRuns_data()
{
    addThreadRows();
}

void tst_Offload::offload_cancelledResumesAtOnceWhileFunctionRuns()
{
    QFETCH(bool, onWorkerThread);
    ScopedThread thread;
    QThread *home = onWorkerThread ? thread.get() : QThread::currentThread();
    auto state = std::make_shared<PoolState>();
    const auto openGate = qScopeGuard([state]() { state->open(); });
    OffloadProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start(
        [&p, state](stage::Worker &w) {
            auto function = [state]() {
                state->runs.fetch_add(1);
                state->started.release();
                state->waitAtGate();
                state->finishedRuns.fetch_add(1);
                return 1;
            };
            return offloadBody(w, &p, state, function, QThreadPool::globalInstance());
        },
        home));
    QVERIFY(state->started.tryAcquire(1, Timeout));
    handle.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.finishedRunsAtEnd.load(), 0); // resumed while the function still ran
    QCOMPARE(p.cancelled.load(), 1);
    QCOMPARE(p.resumeThread.load(), home);
    QCOMPARE(p.destroyed.load(), 1);
    state->open();
    QThreadPool::globalInstance()->waitForDone();
    QCOMPARE(state->finishedRuns.load(), 1);
    QVERIFY(roundTrip(home));
    QCOMPARE(exits.count(), 1);
    QCOMPARE(p.value.load(), -1); // the late result was discarded
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Offload::offload_stopTokenIsStoppedOnCancel()
{
    auto state = std::make_shared<PoolState>();
    const auto openGate = qScopeGuard([state]() { state->open(); });
    OffloadProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, state](stage::Worker &w) {
        auto function = [state](std::stop_token token) {
            state->started.release();
            QElapsedTimer failsafe;
            failsafe.start();
            while (!token.stop_requested() && failsafe.elapsed() < 30000)
                QThread::yieldCurrentThread();
            state->sawStop = token.stop_requested();
            state->waitAtGate(); // returns only after the test looked (see offload_resultOf...)
            state->finishedRuns.fetch_add(1);
        };
        return offloadBody(w, &p, state, function, QThreadPool::globalInstance());
    }));
    QVERIFY(state->started.tryAcquire(1, Timeout));
    QVERIFY(!state->sawStop.load());
    handle.requestStop();
    QTRY_VERIFY_WITH_TIMEOUT(state->sawStop.load(), Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.cancelled.load(), 1);
    QCOMPARE(p.destroyed.load(), 1);
    state->open();
    QThreadPool::globalInstance()->waitForDone();
    QCOMPARE(state->finishedRuns.load(), 1);
}

void tst_Offload::offload_resultOfFunctionStoppedByTokenIsDiscarded()
{
    // A function that returns early because its stop_token says so must not hand its (partial)
    // result to the coroutine: offload() documents "its result is discarded". std::stop_source
    // sets the flag before it runs the callbacks, so the pool thread can see the stop and settle
    // the wait before the awaitable's own stop callback does. The function makes that happen every
    // time: its own callback (libstdc++ runs the newest first) holds the stopping thread until the
    // pool is done.
    auto state = std::make_shared<PoolState>();
    QThreadPool pool;
    OffloadProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QThreadPool *poolPtr = &pool;
    QVERIFY(handle.start([&p, state, poolPtr](stage::Worker &w) {
        auto function = [raw = state.get(), poolPtr](std::stop_token token) {
            raw->onStop.emplace(token, std::function<void()>([poolPtr]() { poolPtr->waitForDone(30000); }));
            raw->started.release();
            QElapsedTimer failsafe;
            failsafe.start();
            while (!token.stop_requested() && failsafe.elapsed() < 30000)
                QThread::yieldCurrentThread();
            raw->sawStop = token.stop_requested();
            return 7; // a partial result
        };
        return offloadBody(w, &p, state, function, poolPtr);
    }));
    QVERIFY(state->started.tryAcquire(1, Timeout));
    handle.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QVERIFY(pool.waitForDone(Timeout));
    state->onStop.reset();
    QVERIFY(state->sawStop.load());
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.value.load(), -1); // the partial result was not delivered
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.cancelled.load(), 1);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Offload::offload_notStartedWhenCancelledIsNeverRun()
{
    auto state = std::make_shared<PoolState>();
    auto blocker = std::make_shared<PoolState>();
    const auto openGates = qScopeGuard([state, blocker]() {
        state->open();
        blocker->open();
    });
    QThreadPool pool;
    pool.setMaxThreadCount(1);
    // Occupy the only pool thread.
    pool.start([blocker]() {
        blocker->started.release();
        blocker->waitAtGate();
    });
    QVERIFY(blocker->started.tryAcquire(1, Timeout));

    OffloadProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, state, &pool](stage::Worker &w) {
        auto function = [state]() { state->runs.fetch_add(1); };
        return offloadBody(w, &p, state, function, &pool);
    }));
    QCOMPARE(p.entered.load(), 1);
    handle.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.cancelled.load(), 1);
    QCOMPARE(p.destroyed.load(), 1);
    blocker->open();
    QVERIFY(pool.waitForDone(Timeout));
    QCOMPARE(state->runs.load(), 0);
}

QTEST_GUILESS_MAIN(tst_Offload)
#include "tst_offload.moc"
