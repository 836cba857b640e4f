// stage::signal: results by arity, private signals, the resume thread for a sender on another
// thread, a destroyed or null sender, coalesced emissions, cancellation and late deliveries.

#include "testutil.h"

#include <QtCore/QElapsedTimer>
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
    void two(int number, const QString &text);
};

// What co_await returns, by arity; a private signal's QPrivateSignal tag is dropped.
static_assert(std::is_void_v<decltype(stage::signal(std::declval<Emitter *>(), &Emitter::none).await_resume())>);
static_assert(std::is_same_v<decltype(stage::signal(std::declval<Emitter *>(), &Emitter::one).await_resume()), int>);
static_assert(std::is_same_v<decltype(stage::signal(std::declval<Emitter *>(), &Emitter::two).await_resume()),
                             std::tuple<int, QString>>);
static_assert(std::is_void_v<decltype(stage::signal(std::declval<QTimer *>(), &QTimer::timeout).await_resume())>);

namespace {

struct SignalProbe : Probe
{
    std::atomic<int> step{0};
    std::atomic<int> wrongThread{0}; // resumptions on a thread other than the start thread
    QList<int> values;               // home thread only
    QString text;                    // home thread only
    QString error;                   // home thread only
};

void checkThread(SignalProbe *p)
{
    p->resumeThread = QThread::currentThread();
    if (QThread::currentThread() != p->startThread.load())
        p->wrongThread.fetch_add(1);
}

QCoro::Task<> arityBody(stage::Worker &, SignalProbe *p, Emitter *e)
{
    Sentinel sentinel(p->destroyed);
    p->startThread = QThread::currentThread();
    p->step = 1;
    co_await stage::signal(e, &Emitter::none);
    checkThread(p);
    p->step = 2;
    const int value = co_await stage::signal(e, &Emitter::one);
    checkThread(p);
    p->values << value;
    p->step = 3;
    const auto [number, text] = co_await stage::signal(e, &Emitter::two);
    checkThread(p);
    p->values << number;
    p->text = text;
    p->step = 4;
    p->resumed.fetch_add(1);
}

QCoro::Task<> timerBody(stage::Worker &, SignalProbe *p)
{
    Sentinel sentinel(p->destroyed);
    p->startThread = QThread::currentThread();
    QTimer timer;
    timer.setSingleShot(true);
    timer.start(10ms);
    co_await stage::signal(&timer, &QTimer::timeout);
    checkThread(p);
    p->resumed.fetch_add(1);
}

// Awaits `one` \a count times (forever for -1), recording each value; catches ObjectDestroyed.
QCoro::Task<> valuesBody(stage::Worker &, SignalProbe *p, Emitter *e, int count)
{
    Sentinel sentinel(p->destroyed);
    p->startThread = QThread::currentThread();
    p->entered.fetch_add(1);
    try {
        for (int i = 0; count < 0 || i < count; ++i) {
            p->step = i + 1;
            const int value = co_await stage::signal(e, &Emitter::one);
            checkThread(p);
            p->values << value;
            p->resumed.fetch_add(1);
        }
    } catch (const stage::Cancelled &) {
        checkThread(p);
        p->cancelled.fetch_add(1);
        throw;
    } catch (const stage::ObjectDestroyed &error) {
        checkThread(p);
        p->error = QString::fromUtf8(error.what());
        p->errors.fetch_add(1);
    }
}

} // namespace

class tst_Signal : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void signal_returnsNothingValueOrTuple();
    void signal_privateSignalOfQTimer();
    void signal_senderOnOtherThreadResumesOnHomeThread_data();
    void signal_senderOnOtherThreadResumesOnHomeThread();
    void signal_senderDestroyedThrowsObjectDestroyed_data();
    void signal_senderDestroyedThrowsObjectDestroyed();
    void signal_nullSenderThrowsObjectDestroyedWithoutSuspending();
    void signal_secondEmissionBeforeResumptionIsIgnored_data();
    void signal_secondEmissionBeforeResumptionIsIgnored();
    void signal_cancelledResumesWithCancelled_data();
    void signal_cancelledResumesWithCancelled();
    void signal_deliveryAfterStopIsIgnored();
    void signal_stopRacingEmissionsFromOtherThreadResumesOnce();
};

void tst_Signal::signal_returnsNothingValueOrTuple()
{
    SignalProbe p;
    Emitter e;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, &e](stage::Worker &w) { return arityBody(w, &p, &e); }));
    QCOMPARE(p.step.load(), 1);
    emit e.one(99); // not awaited yet: ignored
    emit e.none();
    QTRY_COMPARE_WITH_TIMEOUT(p.step.load(), 2, Timeout);
    emit e.one(7);
    QTRY_COMPARE_WITH_TIMEOUT(p.step.load(), 3, Timeout);
    emit e.two(8, QStringLiteral("eight"));
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed);
    QCOMPARE(p.step.load(), 4);
    QCOMPARE(p.values, (QList<int>{7, 8}));
    QCOMPARE(p.text, QStringLiteral("eight"));
    QCOMPARE(p.wrongThread.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Signal::signal_privateSignalOfQTimer()
{
    SignalProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p](stage::Worker &w) { return timerBody(w, &p); }));
    QCOMPARE(p.resumed.load(), 0);
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed);
    QCOMPARE(p.resumed.load(), 1);
    QCOMPARE(p.resumeThread.load(), QThread::currentThread());
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Signal::signal_senderOnOtherThreadResumesOnHomeThread_data()
{
    QTest::addColumn<bool>("homeOnWorkerThread");
    QTest::newRow("home main thread") << false;
    QTest::newRow("home worker thread") << true;
}

void tst_Signal::signal_senderOnOtherThreadResumesOnHomeThread()
{
    QFETCH(bool, homeOnWorkerThread);
    auto emitter = std::make_unique<Emitter>();
    ScopedThread senderThread(QStringLiteral("sender"));
    ScopedThread workerThread(QStringLiteral("worker"));
    emitter->moveToThread(senderThread.get());
    QThread *home = homeOnWorkerThread ? workerThread.get() : QThread::currentThread();
    SignalProbe p;
    std::atomic<QThread *> emittedOn{nullptr};
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    Emitter *e = emitter.get();
    QVERIFY(handle.start([&p, e](stage::Worker &w) { return valuesBody(w, &p, e, 1); }, home));
    QTRY_COMPARE_WITH_TIMEOUT(p.entered.load(), 1, Timeout);
    QVERIFY(roundTrip(home)); // the start job has returned: the body is suspended and connected
    QMetaObject::invokeMethod(
        e,
        [e, &emittedOn]() {
            emittedOn = QThread::currentThread();
            emit e->one(42);
        },
        Qt::QueuedConnection);
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed);
    QCOMPARE(emittedOn.load(), senderThread.get());
    QCOMPARE(p.values, QList<int>{42});
    QCOMPARE(p.startThread.load(), home);
    QCOMPARE(p.resumeThread.load(), home);
    QCOMPARE(p.wrongThread.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Signal::signal_senderDestroyedThrowsObjectDestroyed_data()
{
    QTest::addColumn<bool>("senderOnOtherThread");
    QTest::newRow("same thread, deleted") << false;
    QTest::newRow("other thread, deleteLater") << true;
}

void tst_Signal::signal_senderDestroyedThrowsObjectDestroyed()
{
    QFETCH(bool, senderOnOtherThread);
    ScopedThread senderThread(QStringLiteral("sender"));
    auto *e = new Emitter;
    if (senderOnOtherThread)
        e->moveToThread(senderThread.get());
    SignalProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, e](stage::Worker &w) { return valuesBody(w, &p, e, 1); }));
    QCOMPARE(p.entered.load(), 1);
    if (senderOnOtherThread)
        e->deleteLater();
    else
        delete e;
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout); // never a hang
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed); // the body caught it
    QCOMPARE(p.errors.load(), 1);
    QVERIFY2(p.error.contains(QLatin1String("destroyed")), qPrintable(p.error));
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.wrongThread.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Signal::signal_nullSenderThrowsObjectDestroyedWithoutSuspending()
{
    SignalProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p](stage::Worker &w) { return valuesBody(w, &p, static_cast<Emitter *>(nullptr), 1); }));
    // Thrown at once, inside start().
    QCOMPARE(p.errors.load(), 1);
    QCOMPARE(p.destroyed.load(), 1);
    QVERIFY2(p.error.contains(QLatin1String("null")), qPrintable(p.error));
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed);
}

void tst_Signal::signal_secondEmissionBeforeResumptionIsIgnored_data()
{
    QTest::addColumn<bool>("senderOnOtherThread");
    QTest::newRow("same thread") << false;
    QTest::newRow("other thread") << true;
}

void tst_Signal::signal_secondEmissionBeforeResumptionIsIgnored()
{
    QFETCH(bool, senderOnOtherThread);
    auto emitter = std::make_unique<Emitter>();
    ScopedThread senderThread(QStringLiteral("sender"));
    if (senderOnOtherThread)
        emitter->moveToThread(senderThread.get());
    Emitter *e = emitter.get();
    SignalProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, e](stage::Worker &w) { return valuesBody(w, &p, e, 2); }));
    QCOMPARE(p.step.load(), 1);
    auto emitTwice = [e]() {
        emit e->one(1);
        emit e->one(2); // before the coroutine resumed: dropped, not kept for the next wait
    };
    if (senderOnOtherThread) {
        auto done = std::make_shared<QSemaphore>();
        QMetaObject::invokeMethod(e, [emitTwice, done]() { emitTwice(); done->release(); }, Qt::QueuedConnection);
        QVERIFY(done->tryAcquire(1, Timeout));
    } else {
        emitTwice();
    }
    QTRY_COMPARE_WITH_TIMEOUT(p.step.load(), 2, Timeout);
    QVERIFY(roundTrip(QThread::currentThread()));
    QCOMPARE(p.resumed.load(), 1);
    QCOMPARE(p.values, QList<int>{1});
    QMetaObject::invokeMethod(e, [e]() { emit e->one(3); }, Qt::QueuedConnection);
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Completed);
    QCOMPARE(p.values, (QList<int>{1, 3}));
    QCOMPARE(p.resumed.load(), 2);
    QCOMPARE(p.wrongThread.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Signal::signal_cancelledResumesWithCancelled_data()
{
    QTest::addColumn<bool>("onWorkerThread");
    QTest::newRow("main thread") << false;
    QTest::newRow("worker thread") << true;
}

void tst_Signal::signal_cancelledResumesWithCancelled()
{
    QFETCH(bool, onWorkerThread);
    Emitter e;
    ScopedThread thread;
    QThread *home = onWorkerThread ? thread.get() : QThread::currentThread();
    SignalProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, &e](stage::Worker &w) { return valuesBody(w, &p, &e, -1); }, home));
    QTRY_COMPARE_WITH_TIMEOUT(p.entered.load(), 1, Timeout);
    handle.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.cancelled.load(), 1);
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
    QCOMPARE(p.resumeThread.load(), home);
    emit e.one(5); // nobody listens any more
    QVERIFY(roundTrip(home));
    QCOMPARE(exits.count(), 1);
    QCOMPARE(p.resumed.load(), 0);
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Signal::signal_deliveryAfterStopIsIgnored()
{
    Emitter e;
    SignalProbe p;
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, &e](stage::Worker &w) { return valuesBody(w, &p, &e, -1); }));
    QCOMPARE(p.entered.load(), 1);
    handle.requestStop();
    emit e.one(5); // the stop has settled the wait already; this value is dropped
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.cancelled.load(), 1);
    QCOMPARE(p.resumed.load(), 0);
    QVERIFY(p.values.isEmpty());
    QCOMPARE(p.destroyed.load(), 1);
}

void tst_Signal::signal_stopRacingEmissionsFromOtherThreadResumesOnce()
{
    auto emitter = std::make_unique<Emitter>();
    ScopedThread senderThread(QStringLiteral("sender"));
    emitter->moveToThread(senderThread.get());
    Emitter *e = emitter.get();
    SignalProbe p;
    auto keepEmitting = std::make_shared<std::atomic<bool>>(true);
    auto emitterDone = std::make_shared<QSemaphore>();
    const auto stopEmitting = qScopeGuard([keepEmitting]() { keepEmitting->store(false); });
    stage::WorkerHandle handle;
    ExitRecorder exits(handle);
    QVERIFY(handle.start([&p, e](stage::Worker &w) { return valuesBody(w, &p, e, -1); }));
    QMetaObject::invokeMethod(
        e,
        [e, keepEmitting, emitterDone]() {
            QElapsedTimer failsafe;
            failsafe.start();
            for (int i = 0; keepEmitting->load() && failsafe.elapsed() < 30000; ++i)
                emit e->one(i);
            emitterDone->release();
        },
        Qt::QueuedConnection);
    QTRY_VERIFY_WITH_TIMEOUT(p.resumed.load() >= 20, Timeout);
    handle.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QVERIFY(roundTrip(QThread::currentThread()));
    keepEmitting->store(false);
    QVERIFY(emitterDone->tryAcquire(1, Timeout));
    QCOMPARE(exits.count(), 1);
    QCOMPARE(exits.lastKind(), stage::WorkerExit::Kind::Cancelled);
    QCOMPARE(p.cancelled.load(), 1);
    QCOMPARE(p.destroyed.load(), 1);
    QCOMPARE(p.wrongThread.load(), 0);
    QCOMPARE(int(p.values.size()), p.resumed.load());
    for (qsizetype i = 1; i < p.values.size(); ++i)
        QVERIFY(p.values[i - 1] < p.values[i]);
}

QTEST_GUILESS_MAIN(tst_Signal)
#include "tst_signal.moc"
