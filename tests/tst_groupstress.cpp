// Stress test of stage::Group: four groups (two of them on worker threads of their own) whose
// workers fail, complete, heartbeat and sleep at random for about two seconds while the groups
// are resized at random; then every group is shut down and every counter is checked.

#include "testutil.h"

#include <stage/stage.h>

#include <QtCore/QElapsedTimer>
#include <QtCore/QLoggingCategory>
#include <QtCore/QRandomGenerator>
#include <QtTest/QTest>

#include <algorithm>
#include <atomic>
#include <memory>
#include <stdexcept>
#include <vector>

namespace groupstress {

using namespace std::chrono_literals;
using stage::Group;
using stage::WorkerExit;
using stagetest::Sentinel;
using stagetest::Timeout;
using Kind = stage::WorkerExit::Kind;

struct CustomError
{
    int code;
};

/* What the bodies of one group saw (any thread). */
struct Shared
{
    std::atomic<int> entered{0};
    std::atomic<int> destroyed{0};
    std::atomic<int> cancelled{0}; // caught stage::Cancelled and rethrew it
    std::atomic<int> heartbeats{0};
    std::atomic<int> offHome{0};   // resumed on a thread other than Worker::thread()
};

/* Ends at random; \a completeOneIn makes normal returns rarer (for a Transient group). */
QCoro::Task<> randomBody(stage::Worker &w, Shared *s, quint32 seed, int completeOneIn)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    const quint32 seeds[] = {seed, quint32(w.id()), quint32(w.generation())};
    QRandomGenerator rng(seeds); // std::seed_seq mixing
    try {
        switch (rng.bounded(7)) {
        case 0:
            throw std::runtime_error("random failure at once");
        case 1:
            co_await stage::sleep(std::chrono::milliseconds(rng.bounded(1, 15)));
            throw 13;
        case 2: {
            const int beats = rng.bounded(1, 8);
            for (int i = 0; i < beats; ++i) {
                co_await stage::sleep(std::chrono::milliseconds(rng.bounded(1, 4)));
                if (QThread::currentThread() != w.thread())
                    s->offHome.fetch_add(1);
                w.heartbeat();
                s->heartbeats.fetch_add(1);
            }
            throw CustomError{3};
        }
        case 3:
            co_await stage::sleep(std::chrono::milliseconds(rng.bounded(20, 120)));
            if (QThread::currentThread() != w.thread())
                s->offHome.fetch_add(1);
            if (rng.bounded(completeOneIn) == 0)
                co_return;
            throw std::logic_error("failure after a long run");
        case 4:
            co_await stage::sleep(std::chrono::milliseconds(rng.bounded(1, 10)));
            if (rng.bounded(completeOneIn) == 0)
                co_return;
            throw std::runtime_error("failure after a short run");
        case 5:
            w.throwIfStopRequested();
            co_await stage::sleep(0ms);
            if (rng.bounded(completeOneIn) == 0)
                co_return;
            throw 5;
        default:
            if (rng.bounded(completeOneIn) == 0)
                co_return;
            throw std::runtime_error("failure at once, late branch");
        }
    } catch (const stage::Cancelled &) {
        s->cancelled.fetch_add(1);
        throw;
    }
}

/* One group under stress and everything it emitted. */
struct Rig
{
    explicit Rig(int index, int threadCount, stage::RestartType type, const stage::Backoff &backoff, quint32 seed,
                 int completeOneIn)
        : index(index)
    {
        group = std::make_unique<Group>();
        group->setObjectName(QStringLiteral("stress-%1").arg(index));
        group->setThreadCount(threadCount);
        group->setRestartType(type);
        group->setBackoff(backoff);
        group->setSize(3);
        Group *g = group.get();
        QObject::connect(g, &Group::workerFinished, &context, [this, g](const WorkerExit &exit) {
            ++exits[int(exit.kind)];
            check(g);
        });
        QObject::connect(g, &Group::statisticsChanged, &context, [this, g] {
            ++statisticsSignals;
            check(g);
        });
        QObject::connect(g, &Group::stopped, &context, [this, g] {
            ++stoppedCount;
            check(g);
        });
        QObject::connect(g, &Group::stateChanged, &context, [this, g] { check(g); });
        Shared *s = &shared;
        g->spawn([s, seed, completeOneIn](stage::Worker &w) { return randomBody(w, s, seed, completeOneIn); });
    }

    void check(Group *g)
    {
        if (!g->statistics().isConsistent())
            ++inconsistent;
        if (QThread::currentThread() != g->thread())
            ++offThreadSignals;
    }
    qint64 exitCount() const { return exits[0] + exits[1] + exits[2] + exits[3]; }

    const int index;
    Shared shared;
    std::unique_ptr<Group> group;
    qint64 exits[4] = {0, 0, 0, 0}; // by WorkerExit::Kind
    int statisticsSignals = 0;
    int stoppedCount = 0;
    int inconsistent = 0;
    int offThreadSignals = 0;
    QObject context; // destroyed before the group: disconnects
};

} // namespace groupstress

using namespace groupstress;

class tst_GroupStress : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void initTestCase();
    void randomFaultsAndResizes_data();
    void randomFaultsAndResizes();
};

void tst_GroupStress::initTestCase()
{
    // Thousands of failures: keep the (already throttled) failure log out of the test output.
    QLoggingCategory::setFilterRules(QStringLiteral("stage.group.info=false"));
}

void tst_GroupStress::randomFaultsAndResizes_data()
{
    QTest::addColumn<quint32>("seed");
    QTest::newRow("seed2024") << 2024u;
    QTest::newRow("seed77") << 77u;
}

void tst_GroupStress::randomFaultsAndResizes()
{
    QFETCH(quint32, seed);
    QRandomGenerator rng(seed);

    std::vector<std::unique_ptr<Rig>> rigs;
    rigs.push_back(std::make_unique<Rig>(0, 0, stage::RestartType::Permanent, stage::Backoff::none(), seed, 3));
    rigs.push_back(std::make_unique<Rig>(1, 0, stage::RestartType::Transient,
                                         stage::Backoff::exponential(1ms, 20ms, 2.0, 0.5, 30ms), seed + 1, 50));
    rigs.push_back(std::make_unique<Rig>(2, 1, stage::RestartType::Permanent,
                                         stage::Backoff::exponential(1ms, 10ms, 2.0, 0.2, 30ms), seed + 2, 3));
    rigs.push_back(std::make_unique<Rig>(3, 2, stage::RestartType::Permanent, stage::Backoff::none(), seed + 3, 4));

    // About two seconds of random resizing while the workers fail and complete.
    int resizes = 0;
    QTimer resizer;
    QObject::connect(&resizer, &QTimer::timeout, [&] {
        Rig &rig = *rigs[size_t(rng.bounded(int(rigs.size())))];
        rig.group->setSize(rng.bounded(0, 7));
        resizer.setInterval(rng.bounded(5, 40));
        ++resizes;
    });
    resizer.start(10);
    QElapsedTimer elapsed;
    elapsed.start();
    QEventLoop loop;
    QTimer::singleShot(2000ms, Qt::PreciseTimer, &loop, &QEventLoop::quit);
    QTimer failsafe;
    failsafe.setSingleShot(true);
    QObject::connect(&failsafe, &QTimer::timeout, &loop, &QEventLoop::quit);
    failsafe.start(Timeout);
    loop.exec();
    resizer.stop();
    QVERIFY2(elapsed.elapsed() >= 1990, qPrintable(QString::number(elapsed.elapsed())));
    QVERIFY(resizes >= 10);

    for (auto &rig : rigs) {
        rig->group->setSize(3);
        rig->group->shutdown();
    }
    for (auto &rig : rigs)
        QTRY_VERIFY_WITH_TIMEOUT(!rig->group->isRunning() && rig->group->state() != Group::State::Stopping, Timeout);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));

    qint64 totalFailed = 0;
    qint64 totalStarted = 0;
    for (auto &rig : rigs) {
        Group &g = *rig->group;
        const auto st = g.statistics();
        const QByteArray who = QByteArray::number(rig->index);
        qInfo("group %d: started %lld completed %lld failed %lld cancelled %lld restarted %lld iterations %lld, "
              "%d statisticsChanged",
              rig->index, st.started, st.completed, st.failed, st.cancelled, st.restarted, st.iterations,
              rig->statisticsSignals);
        QVERIFY2(g.state() == Group::State::Stopped, who.constData());
        QCOMPARE(rig->stoppedCount, 1);
        QCOMPARE(g.running(), 0);
        QVERIFY2(st.isConsistent(), who.constData());
        QCOMPARE(st.started, st.completed + st.failed + st.cancelled + st.abandoned);
        QCOMPARE(st.abandoned, 0);
        QVERIFY2(st.started >= 3, who.constData());
        QVERIFY2(st.restarted <= st.started, who.constData());
        QCOMPARE(rig->inconsistent, 0);
        QCOMPARE(rig->offThreadSignals, 0);
        // One workerFinished per run, of the kind counted.
        QCOMPARE(rig->exitCount(), st.started);
        QCOMPARE(rig->exits[int(Kind::Completed)], st.completed);
        QCOMPARE(rig->exits[int(Kind::Failed)], st.failed);
        QCOMPARE(rig->exits[int(Kind::Cancelled)], st.cancelled);
        // Every frame unwound; a body that caught stage::Cancelled ended as cancelled.
        QCOMPARE(rig->shared.destroyed.load(), rig->shared.entered.load());
        QVERIFY2(rig->shared.cancelled.load() <= st.cancelled, who.constData());
        QCOMPARE(rig->shared.offHome.load(), 0);
        QCOMPARE(st.iterations, qint64(rig->shared.heartbeats.load()));
        totalFailed += st.failed;
        totalStarted += st.started;
    }
    QVERIFY2(totalFailed >= 100, qPrintable(QString::number(totalFailed)));
    QVERIFY(totalStarted > totalFailed);

    // Destroying the stopped groups (and their threads) is clean.
    rigs.clear();
}

QTEST_GUILESS_MAIN(tst_GroupStress)
#include "tst_groupstress.moc"
