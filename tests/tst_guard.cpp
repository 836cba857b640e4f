// stage::guard (any awaitable as a cancellation point) and stage::child (a child coroutine that
// unwinds before its parent).

#include "testutil.h"

#include <QCoro/QCoroTimer>

#include <QtCore/QScopeGuard>
#include <QtCore/QSemaphore>
#include <QtCore/QTimer>
#include <QtTest/QtTest>

using namespace stagetest;

class Emitter : public QObject
{
    Q_OBJECT
public:
    using QObject::QObject;
Q_SIGNALS:
    void none();
    void one(int value);
};

namespace {

struct CustomError
{
    int code;
};

struct GuardProbe : Probe
{
    std::atomic<int> value{-1};
    std::atomic<int> code{-1};
    std::atomic<QThread *> childThread{nullptr};
    std::atomic<int> childResumedAfterForeignAwait{0};
};

// Records the outcome of `co_await awaitable` into \a p; the caller supplies the awaitable.
template<typename A>
QCoro::Task<> guardBody(stage::Worker &, GuardProbe *p, A awaitable)
{
    Sentinel sentinel(p->destroyed);
    p->startThread = QThread::currentThread();
    p->entered.fetch_add(1);
    try {
        if constexpr (std::is_void_v<decltype(stage::guard(std::move(awaitable)).await_resume())>) {
            co_await stage::guard(std::move(awaitable));
            p->value = 0;
        } else {
            p->value = co_await stage::guard(std::move(awaitable));
        }
    } catch (const stage::Cancelled &) {
        p->resumeThread = QThread::currentThread();
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

QCoro::Task<> selfStoppingGuardBody(stage::Worker &, GuardProbe *p, stage::WorkerHandle *handle, ManualAwaitable a)
{
    Sentinel sentinel(p->destroyed);
    handle->requestStop();
    try {
        p->value = co_await stage::guard(a);
    } catch (const stage::Cancelled &) {
        p->cancelled.fetch_add(1);
        throw;
    }
    p->resumed.fetch_add(1);
}

QCoro::Task<int> doublingChild(GuardProbe *p, int x)
{
    co_await stage::sleep(10ms);
    p->childThread = QThread::currentThread();
    if (x < 0)
        throw CustomError{x};
    co_return 2 * x;
}

QCoro::Task<> parentBody(stage::Worker &, GuardProbe *p, int x)
{
    Sentinel sentinel(p->destroyed);
    p->startThread = QThread::currentThread();
    p->entered.fetch_add(1);
    try {
        p->value = co_await stage::child(doublingChild(p, x));
    } catch (const CustomError &e) {
        p->resumeThread = QThread::currentThread();
        p->code = e.code;
        p->errors.fetch_add(1);
        co_return;
    }
    p->resumeThread = QThread::currentThread();
    p->resumed.fetch_add(1);
}

// How the child waits until the stop.
enum class ChildWait {
    StageSleep,                 // a Stage awaitable: unwinds at once
    ForeignThenThrowIfStopped,  // a foreign awaitable, then Worker::throwIfStopRequested()
    ForeignThenStageAwaitable,  // a foreign awaitable, then a Stage awaitable
};

QCoro::Task<> sleepingChild(stage::Worker &w, GuardProbe *p, ChildWait how, ManualAwaitable manual, Emitter *release)
{
    Sentinel sentinel(p->destroyed, &p->log, QStringLiteral("child dtor"));
    p->childThread = QThread::currentThread();
    try {
        switch (how) {
        case ChildWait::StageSleep:
            co_await stage::sleep(60s);
            break;
        case ChildWait::ForeignThenThrowIfStopped:
            co_await manual; // not a cancellation point
            p->childResumedAfterForeignAwait.fetch_add(1);
            w.throwIfStopRequested();
            break;
        case ChildWait::ForeignThenStageAwaitable:
            co_await manual;
            p->childResumedAfterForeignAwait.fetch_add(1);
            // The worker was stopped while the child waited above: this must throw Cancelled.
            co_await stage::signal(release, &Emitter::none);
            p->log.add(QStringLiteral("child passed stage awaitable"));
            break;
        }
    } catch (const stage::Cancelled &) {
        p->log.add(QStringLiteral("child catch"));
        throw;
    }
}

QCoro::Task<> stoppableParentBody(stage::Worker &w, GuardProbe *p, ChildWait how, ManualAwaitable manual,
                                  Emitter *release)
{
    Sentinel sentinel(p->destroyed, &p->log, QStringLiteral("parent dtor"));
    p->startThread = QThread::currentThread();
    p->entered.fetch_add(1);
    try {
        co_await stage::child(sleepingChild(w, p, how, manual, release));
    } catch (const stage::Cancelled &) {
        p->resumeThread = QThread::currentThread();
        p->log.add(QStringLiteral("parent catch"));
        p->cancelled.fetch_add(1);
        throw;
    }
    p->resumed.fetch_add(1);
}

// Starts the child (it suspends in a Stage sleep), then stops the worker, then awaits the child.
QCoro::Task<> stopThenAwaitChildBody(stage::Worker &w, GuardProbe *p, stage::WorkerHandle *handle, Emitter *release)
{
    Sentinel sentinel(p->destroyed, &p->log, QStringLiteral("parent dtor"));
    p->entered.fetch_add(1);
    QCoro::Task<> child = sleepingChild(w, p, ChildWait::StageSleep, ManualAwaitable(), release);
    handle->requestStop();
    try {
        co_await stage::child(std::move(child));
    } catch (const stage::Cancelled &) {
        p->log.add(QStringLiteral("parent catch"));
        p->cancelled.fetch_add(1);
        throw;
    }
    p->resumed.fetch_add(1);
}

void addThreadRows()
{
    QTest::addColumn<bool>("onWorkerThread");
    QTest::newRow("main thread") << false;
    QTest::newRow("worker thread") << true;
}

} // namespace

class tst_Guard : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void guard_qCoroTimerOfOtherThreadResumesOnHomeThread_data();
    void guard_qCoroTimerOfOtherThreadResumesOnHomeThread();
    void guard_thirdPartyAwaitableReturnsValue();
    void guard_rethrowsAwaitableException();
    void guard_cancelledResumesAtOnceAndDiscardsLateResult_data();
    void guard_cancelledResumesAtOnceAndDiscardsLateResult();
    void guard_stoppedBeforeAwaitNeverStartsAwaitable();
    void child_returnsValueOnHomeThread_data();
    void child_returnsValueOnHomeThread();
    void child_exceptionPropagatesToParent();
    void child_stopResumesParentAfterChildUnwound_data();
    void child_stopResumesParentAfterChildUnwound();
    void child_stopBeforeParentAwaitsChildStillWaitsForChild();
    void child_stuckOutsideStageAwaitableKeepsParentWaiting();
    void child_stageAwaitableAfterForeignResumptionIsCancellationPoint();
};

void tst_Guard::guard_qCoroTimerOfOtherThreadResumesOnHomeThread_data()
{
    QTest::addColumn<bool>("homeOnWorkerThread");
    QTest::newRow("home main thread") << false;
    QTest::newRow("home worker thread") << true;
}

void tst_Guard::guard_qCoroTimerOfOtherThreadResumesOnHomeThread()
{
    // QCoro resumes `co_await timer` on the timer's thread; guard() brings the coroutine home.
    QFETCH(bool, homeOnWorkerThread);
    auto timer = std::make_unique<QTimer>();
    ScopedThread timerThread(QStringLiteral("timer"));
    ScopedThread workerThread(QStringLiteral("worker"));
    QThread *home = homeOnWorkerThread ? workerThread.get() : QThread::currentThread();
    std::atomic<QThread *> firedOn{nullptr};
    QTimer *t = timer.get();
    t->setInterval(20ms); // repeating: active whenever the guard looks, so it always suspends
    t->moveToThread(timerThread.get());
    connect(t, &QTimer::timeout, t, [&firedOn]() { firedOn = QThread::currentThread(); }, Qt::DirectConnection);
    auto started = std::make_shared<QSemaphore>();
    QMetaObject::invokeMethod(t, [t, started]() { t->start(); started->release(); }, Qt::QueuedConnection);
    QVERIFY(started->tryAcquire(1, Timeout));
    const auto stopTimer = qScopeGuard([t]() { QMetaObject::invokeMethod(t, &QTimer::stop, Qt::BlockingQueuedConnection); });

    GuardProbe p;
    {
        stage::WorkerHandle handle;
        ExitRecorder exits(handle);
        QVERIFY(handle.start([&p, t](stage::Worker &w) { return guardBody(w, &p, t); }, home));
        QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
        QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed);
    }
    QCOMPARE(firedOn.load(), timerThread.get());
    QCOMPARE(p.value.load(), 0);
    QCOMPARE(p.resumed.load(), 1);
    QCOMPARE(p.startThread.load(), home);
    QCOMPARE(p.resumeThread.load(), home);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Guard::guard_thirdPartyAwaitableReturnsValue()
{
    ManualAwaitable manual;
    GuardProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, manual](stage::Worker &w) { return guardBody(w, &p, manual); }));
    QVERIFY(manual.isSuspended());
    manual.complete(5);
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed);
    QCOMPARE(p.value.load(), 5);
    QCOMPARE(p.resumed.load(), 1);
    QCOMPARE(manual.deliveries(), 1);
    QCOMPARE(p.resumeThread.load(), QThread::currentThread());
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Guard::guard_rethrowsAwaitableException()
{
    ManualAwaitable manual;
    GuardProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, manual](stage::Worker &w) { return guardBody(w, &p, manual); }));
    manual.fail(std::make_exception_ptr(CustomError{11}));
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed); // the body caught CustomError
    QCOMPARE(p.errors.load(), 1);
    QCOMPARE(p.code.load(), 11);
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Guard::guard_cancelledResumesAtOnceAndDiscardsLateResult_data()
{
    addThreadRows();
}

void tst_Guard::guard_cancelledResumesAtOnceAndDiscardsLateResult()
{
    QFETCH(bool, onWorkerThread);
    ScopedThread thread;
    QThread *home = onWorkerThread ? thread.get() : QThread::currentThread();
    ManualAwaitable manual;
    GuardProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, manual](stage::Worker &w) { return guardBody(w, &p, manual); }, home));
    QTRY_COMPARE_WITH_TIMEOUT(p.entered.load(), 1, Timeout);
    QVERIFY(roundTrip(home));
    QVERIFY(manual.isSuspended());
    handle.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.cancelled.load(), 1);
    QCOMPARE(p.resumeThread.load(), home);
    QCOMPARE(p.destroyed.load(), 1);
    // The awaitable is still waiting in the background ...
    QVERIFY(manual.isSuspended());
    QCOMPARE(manual.deliveries(), 0);
    // ... and its late result is discarded.
    manual.complete(9);
    QCOMPARE(manual.deliveries(), 1);
    QVERIFY(roundTrip(home));
    QCOMPARE(exits.count(), 1);
    QCOMPARE(p.value.load(), -1);
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Guard::guard_stoppedBeforeAwaitNeverStartsAwaitable()
{
    ManualAwaitable manual;
    GuardProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start(
        [&p, &handle, manual](stage::Worker &w) { return selfStoppingGuardBody(w, &p, &handle, manual); }));
    QCOMPARE(p.cancelled.load(), 1); // at once, inside start()
    QCOMPARE(p.destroyed.load(), 1);
    QCOMPARE(manual.suspensions(), 0);
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.resumed.load(), 0);
}

void tst_Guard::child_returnsValueOnHomeThread_data()
{
    addThreadRows();
}

void tst_Guard::child_returnsValueOnHomeThread()
{
    QFETCH(bool, onWorkerThread);
    ScopedThread thread;
    QThread *home = onWorkerThread ? thread.get() : QThread::currentThread();
    GuardProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p](stage::Worker &w) { return parentBody(w, &p, 21); }, home));
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed);
    QCOMPARE(p.value.load(), 42);
    QCOMPARE(p.resumed.load(), 1);
    QCOMPARE(p.childThread.load(), home);
    QCOMPARE(p.resumeThread.load(), home);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Guard::child_exceptionPropagatesToParent()
{
    GuardProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p](stage::Worker &w) { return parentBody(w, &p, -3); }));
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed); // the parent caught it
    QCOMPARE(p.errors.load(), 1);
    QCOMPARE(p.code.load(), -3);
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.resumeThread.load(), QThread::currentThread());
}

void tst_Guard::child_stopResumesParentAfterChildUnwound_data()
{
    addThreadRows();
}

void tst_Guard::child_stopResumesParentAfterChildUnwound()
{
    QFETCH(bool, onWorkerThread);
    Emitter release;
    ScopedThread thread;
    QThread *home = onWorkerThread ? thread.get() : QThread::currentThread();
    GuardProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start(
        [&p, &release](stage::Worker &w) {
            return stoppableParentBody(w, &p, ChildWait::StageSleep, ManualAwaitable(), &release);
        },
        home));
    QTRY_COMPARE_WITH_TIMEOUT(p.entered.load(), 1, Timeout);
    QVERIFY(roundTrip(home)); // the parent is suspended on its child (see child_stopBeforeParentAwaits...)
    handle.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.log.events(), (QStringList{QStringLiteral("child catch"), QStringLiteral("child dtor"),
                                          QStringLiteral("parent catch"), QStringLiteral("parent dtor")}));
    QCOMPARE(p.childThread.load(), home);
    QCOMPARE(p.resumeThread.load(), home);
    QCOMPARE(p.destroyed.load(), 2); // child and parent, once each
    QVERIFY(roundTrip(home));
    QCOMPARE(exits.count(), 1);
    QCOMPARE(p.destroyed.load(), 2);
}

void tst_Guard::child_stopBeforeParentAwaitsChildStillWaitsForChild()
{
    // The child is suspended in a Stage awaitable when the stop comes, before the parent reached
    // `co_await stage::child(...)`: the parent must still wait for the child to unwind.
    Emitter release;
    GuardProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start(
        [&p, &handle, &release](stage::Worker &w) { return stopThenAwaitChildBody(w, &p, &handle, &release); }));
    QCOMPARE(p.entered.load(), 1);
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(p.destroyed.load(), 2, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.log.events(), (QStringList{QStringLiteral("child catch"), QStringLiteral("child dtor"),
                                          QStringLiteral("parent catch"), QStringLiteral("parent dtor")}));
    QCOMPARE(p.cancelled.load(), 1);
}

void tst_Guard::child_stuckOutsideStageAwaitableKeepsParentWaiting()
{
    Emitter release;
    ManualAwaitable manual;
    GuardProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, manual, &release](stage::Worker &w) {
        return stoppableParentBody(w, &p, ChildWait::ForeignThenThrowIfStopped, manual, &release);
    }));
    QVERIFY(manual.isSuspended());
    handle.requestStop();
    QVERIFY(roundTrip(QThread::currentThread()));
    QCOMPARE(handle.state(), stage::WorkerHandle::State::Stopping);
    QCOMPARE(p.cancelled.load(), 0); // the parent waits for its child
    QVERIFY(p.log.events().isEmpty());
    manual.complete(1); // the child goes on, sees the stop, unwinds; then the parent
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.childResumedAfterForeignAwait.load(), 1);
    QCOMPARE(p.log.events(), (QStringList{QStringLiteral("child catch"), QStringLiteral("child dtor"),
                                          QStringLiteral("parent catch"), QStringLiteral("parent dtor")}));
    QCOMPARE(p.destroyed.load(), 2);
}

void tst_Guard::child_stageAwaitableAfterForeignResumptionIsCancellationPoint()
{
    // A child (or a body) resumed by a foreign awaitable runs outside Stage's resumption; its next
    // Stage awaitable must still belong to the worker and throw Cancelled once the stop was asked.
    Emitter release;
    ManualAwaitable manual;
    GuardProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    handle.setStopTimeout(600000); // a failure must not turn into Abandoned while we wait
    QVERIFY(handle.start([&p, manual, &release](stage::Worker &w) {
        return stoppableParentBody(w, &p, ChildWait::ForeignThenStageAwaitable, manual, &release);
    }));
    QVERIFY(manual.isSuspended());
    handle.requestStop();
    manual.complete(1);
    QCOMPARE(p.childResumedAfterForeignAwait.load(), 1);
    const bool unwound = QTest::qWaitFor([&]() { return exits.count() == 1; }, Timeout);
    if (!unwound) {
        emit release.none(); // let the frames end, so that a failure leaves nothing behind
        QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    }
    QVERIFY2(unwound, "the Stage awaitable after a foreign resumption ignored the stop request");
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.log.events(), (QStringList{QStringLiteral("child catch"), QStringLiteral("child dtor"),
                                          QStringLiteral("parent catch"), QStringLiteral("parent dtor")}));
    QCOMPARE(p.destroyed.load(), 2);
}

QTEST_GUILESS_MAIN(tst_Guard)
#include "tst_guard.moc"
