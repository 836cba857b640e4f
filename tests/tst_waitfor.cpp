// stage::waitFor: values, exceptions, timeouts, and tasks that finished before the call.

#include "testutil.h"

#include <QCoro/QCoroFuture>

#include <QtConcurrent/QtConcurrent>
#include <QtCore/QElapsedTimer>
#include <QtTest/QtTest>

using namespace stagetest;

class Emitter : public QObject
{
    Q_OBJECT
public:
    using QObject::QObject;
Q_SIGNALS:
    void one(int value);
};

namespace {

struct CustomError
{
    int code;
};

QCoro::Task<int> delayedValue(int value)
{
    co_await stage::sleep(10ms);
    co_return value;
}

QCoro::Task<> delayedVoid(std::atomic<int> *done)
{
    co_await stage::sleep(10ms);
    done->fetch_add(1);
}

QCoro::Task<int> delayedThrow(int code)
{
    co_await stage::sleep(10ms);
    throw CustomError{code};
}

QCoro::Task<int> immediateValue(int value)
{
    co_return value;
}

QCoro::Task<int> immediateThrow(int code)
{
    throw CustomError{code};
    co_return 0;
}

QCoro::Task<int> signalledValue(Emitter *e, std::shared_ptr<std::atomic<int>> delivered)
{
    const int value = co_await stage::signal(e, &Emitter::one);
    delivered->store(value);
    co_return value;
}

QCoro::Task<> sleepingBody(stage::Worker &, Probe *p)
{
    Sentinel sentinel(p->destroyed);
    p->entered.fetch_add(1);
    co_await stage::sleep(10s);
    p->resumed.fetch_add(1);
}

} // namespace

class tst_WaitFor : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void waitFor_returnsTaskValue();
    void waitFor_voidTask();
    void waitFor_returnsAwaitableValue();
    void waitFor_rethrowsTaskException();
    void waitFor_timeoutThrowsTimeoutError();
    void waitFor_lateOutcomeAfterTimeoutIsDiscarded();
    void waitFor_alreadyFinishedTask();
    void waitFor_alreadyFailedTaskRethrows();
};

void tst_WaitFor::waitFor_returnsTaskValue()
{
    QCOMPARE(stage::waitFor(delayedValue(7)), 7);
    QCoro::Task<int> task = delayedValue(8); // an lvalue task
    QCOMPARE(stage::waitFor(task), 8);
}

void tst_WaitFor::waitFor_voidTask()
{
    std::atomic<int> done{0};
    stage::waitFor(delayedVoid(&done));
    QCOMPARE(done.load(), 1);
}

void tst_WaitFor::waitFor_returnsAwaitableValue()
{
    // A Stage awaitable ...
    Emitter e;
    QTimer::singleShot(10ms, &e, [&e]() { emit e.one(5); });
    QCOMPARE(stage::waitFor(stage::signal(&e, &Emitter::one)), 5);
    // ... and a QCoro awaitable.
    QCOMPARE(stage::waitFor(QtConcurrent::run([]() { return 6; })), 6);
    QThreadPool::globalInstance()->waitForDone();
}

void tst_WaitFor::waitFor_rethrowsTaskException()
{
    int code = -1;
    try {
        stage::waitFor(delayedThrow(4));
    } catch (const CustomError &e) {
        code = e.code;
    }
    QCOMPARE(code, 4);
}

void tst_WaitFor::waitFor_timeoutThrowsTimeoutError()
{
    // The awaited signal comes when a worker ends its 10 s sleep; the wait gives up after 50 ms.
    Probe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p](stage::Worker &w) { return sleepingBody(w, &p); }));
    QElapsedTimer timer;
    timer.start();
    bool timedOut = false;
    QString what;
    try {
        stage::waitFor(stage::signal(&handle, &stage::WorkerHandle::finished), 50ms);
    } catch (const stage::TimeoutError &e) {
        timedOut = true;
        what = QString::fromUtf8(e.what());
    }
    const qint64 elapsed = timer.elapsed();
    QVERIFY(timedOut);
    QVERIFY2(what.contains(QLatin1String("50 ms")), qPrintable(what));
    QVERIFY2(elapsed >= 40, qPrintable(QString::number(elapsed))); // 50 ms, less a coarse timer's slack
    QVERIFY2(elapsed < 5000, qPrintable(QString::number(elapsed)));
    QCOMPARE(exits.count(), 0);
    // Let the abandoned wait end: its late delivery is discarded.
    handle.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_WaitFor::waitFor_lateOutcomeAfterTimeoutIsDiscarded()
{
    Emitter e;
    auto delivered = std::make_shared<std::atomic<int>>(-1);
    bool timedOut = false;
    try {
        stage::waitFor(signalledValue(&e, delivered), 50ms);
    } catch (const stage::TimeoutError &) {
        timedOut = true;
    }
    QVERIFY(timedOut);
    QCOMPARE(delivered->load(), -1);
    emit e.one(3); // the task left running gets its value; nobody waits for it any more
    QTRY_COMPARE_WITH_TIMEOUT(delivered->load(), 3, Timeout);
    // A later wait is not disturbed.
    QCOMPARE(stage::waitFor(delayedValue(9)), 9);
}

void tst_WaitFor::waitFor_alreadyFinishedTask()
{
    QCoro::Task<int> task = immediateValue(11); // finished already: it never suspended
    QCOMPARE(stage::waitFor(std::move(task)), 11);
    QCOMPARE(stage::waitFor(immediateValue(12), 50ms), 12);
}

void tst_WaitFor::waitFor_alreadyFailedTaskRethrows()
{
    QCoro::Task<int> task = immediateThrow(13);
    int code = -1;
    try {
        stage::waitFor(std::move(task));
    } catch (const CustomError &e) {
        code = e.code;
    }
    QCOMPARE(code, 13);
}

QTEST_GUILESS_MAIN(tst_WaitFor)
#include "tst_waitfor.moc"
