// stage::future: results, stored exceptions, canceled futures, the ready path, cancellation and
// the resume thread.

#include "testutil.h"

#include <QtConcurrent/QtConcurrent>
#include <QtCore/QException>
#include <QtCore/QPromise>
#include <QtTest/QtTest>

using namespace stagetest;

namespace {

class TestException : public QException
{
public:
    explicit TestException(int code) : code(code) {}
    void raise() const override { throw *this; }
    TestException *clone() const override { return new TestException(*this); }
    int code;
};

struct FutureProbe : Probe
{
    std::atomic<int> value{-1};
    std::atomic<int> code{-1};
    std::atomic<QThread *> runThread{nullptr};
    QString error; // home thread only
};

template<typename T>
QCoro::Task<> futureBody(stage::Worker &, FutureProbe *p, QFuture<T> future)
{
    Sentinel sentinel(p->destroyed);
    p->startThread = QThread::currentThread();
    p->entered.fetch_add(1);
    try {
        if constexpr (std::is_void_v<T>)
            co_await stage::future(future);
        else
            p->value = co_await stage::future(future);
    } catch (const stage::Cancelled &) {
        p->resumeThread = QThread::currentThread();
        p->cancelled.fetch_add(1);
        throw;
    } catch (const TestException &e) {
        p->resumeThread = QThread::currentThread();
        p->code = e.code;
        p->errors.fetch_add(1);
        co_return;
    } catch (const stage::Error &e) {
        p->resumeThread = QThread::currentThread();
        p->error = QString::fromUtf8(e.what());
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

class tst_Future : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void cleanup();
    void future_returnsResultOfConcurrentRunOnHomeThread_data();
    void future_returnsResultOfConcurrentRunOnHomeThread();
    void future_voidFutureResumesWhenFinished();
    void future_rethrowsExceptionStoredInFuture();
    void future_canceledFutureThrowsError_data();
    void future_canceledFutureThrowsError();
    void future_alreadyFinishedDoesNotSuspend();
    void future_cancelledResumesWithCancelled_data();
    void future_cancelledResumesWithCancelled();
};

void tst_Future::cleanup()
{
    QThreadPool::globalInstance()->waitForDone();
}

void tst_Future::future_returnsResultOfConcurrentRunOnHomeThread_data()
{
    addThreadRows();
}

void tst_Future::future_returnsResultOfConcurrentRunOnHomeThread()
{
    QFETCH(bool, onWorkerThread);
    ScopedThread thread;
    QThread *home = onWorkerThread ? thread.get() : QThread::currentThread();
    FutureProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start(
        [&p](stage::Worker &w) {
            QFuture<int> future = QtConcurrent::run([&p]() {
                p.runThread = QThread::currentThread();
                return 42;
            });
            return futureBody<int>(w, &p, std::move(future));
        },
        home));
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed);
    QCOMPARE(p.value.load(), 42);
    QCOMPARE(p.resumed.load(), 1);
    QCOMPARE(p.startThread.load(), home);
    QCOMPARE(p.resumeThread.load(), home);
    QVERIFY(p.runThread.load() != nullptr);
    QVERIFY(p.runThread.load() != home);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Future::future_voidFutureResumesWhenFinished()
{
    FutureProbe p;
    QPromise<void> promise;
    promise.start();
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, future = promise.future()](stage::Worker &w) { return futureBody<void>(w, &p, future); }));
    QCOMPARE(p.entered.load(), 1);
    QVERIFY(roundTrip(QThread::currentThread()));
    QCOMPARE(p.resumed.load(), 0); // still waiting
    promise.finish();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed);
    QCOMPARE(p.resumed.load(), 1);
    QCOMPARE(p.errors.load(), 0);
    QCOMPARE(p.resumeThread.load(), QThread::currentThread());
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Future::future_rethrowsExceptionStoredInFuture()
{
    FutureProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p](stage::Worker &w) {
        QFuture<int> future = QtConcurrent::run([]() -> int { throw TestException(7); });
        return futureBody<int>(w, &p, std::move(future));
    }));
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed); // the body caught it
    QCOMPARE(p.errors.load(), 1);
    QCOMPARE(p.code.load(), 7);
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.resumeThread.load(), QThread::currentThread());
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Future::future_canceledFutureThrowsError_data()
{
    QTest::addColumn<bool>("isVoid");
    QTest::newRow("QFuture<int>") << false;
    QTest::newRow("QFuture<void>") << true;
}

void tst_Future::future_canceledFutureThrowsError()
{
    QFETCH(bool, isVoid);
    FutureProbe p;
    QPromise<int> intPromise;
    QPromise<void> voidPromise;
    intPromise.start();
    voidPromise.start();
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    if (isVoid)
        QVERIFY(handle.start([&p, f = voidPromise.future()](stage::Worker &w) { return futureBody<void>(w, &p, f); }));
    else
        QVERIFY(handle.start([&p, f = intPromise.future()](stage::Worker &w) { return futureBody<int>(w, &p, f); }));
    QCOMPARE(p.entered.load(), 1);
    if (isVoid) {
        voidPromise.future().cancel();
        voidPromise.finish();
    } else {
        intPromise.future().cancel();
        intPromise.finish();
    }
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed); // the body caught stage::Error
    QCOMPARE(p.errors.load(), 1);
    QCOMPARE(p.cancelled.load(), 0); // a canceled future is not a stop
    QVERIFY2(p.error.contains(QLatin1String("canceled")), qPrintable(p.error));
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Future::future_alreadyFinishedDoesNotSuspend()
{
    FutureProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start(
        [&p](stage::Worker &w) { return futureBody<int>(w, &p, QtFuture::makeReadyFuture(7)); }));
    // The body ran to its end inside start(): the co_await did not suspend.
    QCOMPARE(p.value.load(), 7);
    QCOMPARE(p.resumed.load(), 1);
    QCOMPARE(p.destroyed.load(), 1);
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed);
}

void tst_Future::future_cancelledResumesWithCancelled_data()
{
    addThreadRows();
}

void tst_Future::future_cancelledResumesWithCancelled()
{
    QFETCH(bool, onWorkerThread);
    ScopedThread thread;
    QThread *home = onWorkerThread ? thread.get() : QThread::currentThread();
    FutureProbe p;
    QPromise<int> promise;
    promise.start();
    const QFuture<int> future = promise.future();
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, future](stage::Worker &w) { return futureBody<int>(w, &p, future); }, home));
    QTRY_COMPARE_WITH_TIMEOUT(p.entered.load(), 1, Timeout);
    handle.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.cancelled.load(), 1);
    QCOMPARE(p.resumeThread.load(), home);
    QCOMPARE(p.destroyed.load(), 1);
    QVERIFY(!future.isCanceled()); // left running, as documented
    // A late result is ignored.
    promise.addResult(5);
    promise.finish();
    QVERIFY(roundTrip(home));
    QCOMPARE(exits.count(), 1);
    QCOMPARE(p.value.load(), -1);
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
}

QTEST_GUILESS_MAIN(tst_Future)
#include "tst_future.moc"
