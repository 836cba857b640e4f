// Stress of stage::WorkerHandle: many start/stop cycles of a sleeping worker must each end
// Cancelled, unwind their frame exactly once, and not grow the process.

#include <stage/sleep.h>
#include <stage/worker.h>

#include <QtCore/QElapsedTimer>
#include <QtCore/QEventLoop>
#include <QtCore/QFile>
#include <QtCore/QSemaphore>
#include <QtCore/QThread>
#include <QtCore/QTimer>
#include <QtTest/QTest>

#include <atomic>
#include <malloc.h>

#if defined(__has_feature)
#  if __has_feature(address_sanitizer)
#    define STAGE_TEST_ASAN 1
#  endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#  define STAGE_TEST_ASAN 1
#endif
#ifdef STAGE_TEST_ASAN
#  include <sanitizer/allocator_interface.h>
#endif
#if __has_include(<valgrind/memcheck.h>)
#  include <valgrind/memcheck.h>
#  define STAGE_TEST_VALGRIND 1
#endif

using namespace std::chrono_literals;
using Kind = stage::WorkerExit::Kind;

namespace {

constexpr int kTimeout = 10000; // ms, per cycle

// Allowed growth between the warm-up and the end. The live heap under ASan is exact (0 measured);
// the RSS moves by a few pages (8 KB measured). Under valgrind memoryInUse() is the live heap too.
constexpr qint64 kMaxHeapGrowth = 256 * 1024;
constexpr qint64 kMaxRssGrowth = 2 * 1024 * 1024;
qint64 maxGrowth()
{
#ifdef STAGE_TEST_ASAN
    return kMaxHeapGrowth;
#else
#  ifdef STAGE_TEST_VALGRIND
    if (RUNNING_ON_VALGRIND)
        return kMaxHeapGrowth;
#  endif
    return kMaxRssGrowth;
#endif
}

struct Counters
{
    std::atomic<int> entered{0};
    std::atomic<int> unwound{0};
    QSemaphore enteredSignal; // released by each body before its first suspension
};

struct FrameGuard
{
    Counters *counters;
    ~FrameGuard() { counters->unwound.fetch_add(1, std::memory_order_relaxed); }
};

QCoro::Task<> sleepLong(stage::Worker &, Counters *c)
{
    FrameGuard guard{c};
    c->entered.fetch_add(1, std::memory_order_relaxed);
    c->enteredSignal.release();
    co_await stage::sleep(10s);
}

// Process memory in bytes: VmRSS in a normal build; the live heap under ASan, whose quarantine of
// freed blocks makes the RSS grow by design (leaks there are LSan's job). Under valgrind memcheck
// also the live heap, for the same reason: memcheck holds freed blocks back (--freelist-vol, 20 MB)
// and its shadow memory grows with them (tests/valgrind/run-memcheck measured the RSS growing by
// 28 MB over 9000 cycles); a quick leak check counts every live block, exactly like ASan's count.
qint64 memoryInUse()
{
    malloc_trim(0);
#ifdef STAGE_TEST_VALGRIND
    if (RUNNING_ON_VALGRIND) {
        VALGRIND_DO_QUICK_LEAK_CHECK;
        unsigned long leaked = 0, dubious = 0, reachable = 0, suppressed = 0;
        VALGRIND_COUNT_LEAKS(leaked, dubious, reachable, suppressed);
        return qint64(leaked + dubious + reachable + suppressed);
    }
#endif
#ifdef STAGE_TEST_ASAN
    return qint64(__sanitizer_get_current_allocated_bytes());
#else
    QFile status(QStringLiteral("/proc/self/status"));
    if (!status.open(QIODevice::ReadOnly | QIODevice::Text))
        return -1;
    // /proc files report a size of 0: read until the end instead of testing atEnd().
    const QList<QByteArray> lines = status.readAll().split('\n');
    for (const QByteArray &line : lines) {
        if (line.startsWith("VmRSS:"))
            return line.mid(6).trimmed().split(' ').value(0).toLongLong() * 1024;
    }
    return -1;
#endif
}

// Drives start/stop cycles of one handle and collects how each ended.
class Cycler
{
public:
    Cycler()
    {
        m_failsafe.setSingleShot(true);
        QObject::connect(&m_failsafe, &QTimer::timeout, [this]() {
            if (m_waiting)
                m_waiting->quit();
        });
        QObject::connect(&handle, &stage::WorkerHandle::finished, [this](const stage::WorkerExit &exit) {
            if (exit.kind == Kind::Cancelled)
                ++cancelled;
            if (exit.generation != finished)
                ++outOfOrder;
            ++finished;
            if (m_waiting)
                m_waiting->quit();
        });
    }

    // One cycle: start, wait for the body to be suspended, stop, wait for finished. False on a
    // refusal or a timeout.
    bool cycle(QThread *thread)
    {
        Counters *c = &counters;
        const int target = finished + 1;
        if (!handle.start([c](stage::Worker &w) { return sleepLong(w, c); }, thread))
            return false;
        if (!counters.enteredSignal.tryAcquire(1, kTimeout))
            return false;
        handle.requestStop();
        if (finished < target) {
            QEventLoop loop;
            m_waiting = &loop;
            m_failsafe.start(kTimeout);
            loop.exec();
            m_failsafe.stop();
            m_waiting = nullptr;
        }
        return finished == target;
    }

    stage::WorkerHandle handle;
    Counters counters;
    int finished = 0;
    int cancelled = 0;
    int outOfOrder = 0; // exits whose generation is not the run's index

private:
    QTimer m_failsafe;
    QEventLoop *m_waiting = nullptr;
};

} // namespace

class tst_WorkerStress : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void startStop_data();
    void startStop();
};

void tst_WorkerStress::startStop_data()
{
    QTest::addColumn<bool>("onWorkerThread");
    QTest::addColumn<int>("warmup");
    QTest::addColumn<int>("cycles");

    QTest::newRow("handle's thread") << false << 1000 << 10000;
    QTest::newRow("worker QThread") << true << 500 << 5000;
}

void tst_WorkerStress::startStop()
{
    QFETCH(bool, onWorkerThread);
    QFETCH(int, warmup);
    QFETCH(int, cycles);

    QThread thread;
    thread.start();
    struct Stopper
    {
        QThread &t;
        ~Stopper()
        {
            t.quit();
            t.wait();
        }
    } stopper{thread};

    Cycler cycler;
    QElapsedTimer clock;
    clock.start();
    qint64 afterWarmup = -1;
    int done = 0;
    for (; done < cycles; ++done) {
        if (!cycler.cycle(onWorkerThread ? &thread : nullptr))
            break;
        if (done + 1 == warmup)
            afterWarmup = memoryInUse();
    }
    const qint64 atEnd = memoryInUse();
    const qint64 elapsed = clock.elapsed();
    qInfo("%d cycles in %lld ms; memory %lld -> %lld bytes (growth %lld)", done, elapsed, afterWarmup, atEnd,
          atEnd - afterWarmup);

    QCOMPARE(done, cycles);
    QCOMPARE(cycler.finished, cycles);
    QCOMPARE(cycler.cancelled, cycles);
    QCOMPARE(cycler.outOfOrder, 0);
    QCOMPARE(cycler.counters.entered.load(), cycles);
    QCOMPARE(cycler.counters.unwound.load(), cycles);
    QCOMPARE(cycler.handle.generation(), cycles - 1);
    QVERIFY(afterWarmup > 0 && atEnd > 0);
    QVERIFY2(atEnd - afterWarmup < maxGrowth(),
             qPrintable(QStringLiteral("grew by %1 bytes over %2 cycles").arg(atEnd - afterWarmup).arg(cycles - warmup)));
}

QTEST_GUILESS_MAIN(tst_WorkerStress)
#include "tst_workerstress.moc"
