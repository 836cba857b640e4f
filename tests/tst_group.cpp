// Tests of stage::Group: the restart policy, backoff, restart intensity, resizing, shutdown,
// destruction (also from inside its own signals and workers), worker threads, statistics, the
// watchdog, scope() and misuse.
//
// Worker bodies are free coroutine functions that record what they see in a Shared record; the
// test functions compare outside the coroutines (QCOMPARE cannot be used inside one).

#include "testutil.h"

#include <stage/stage.h>

#include <QCoro/QCoroSignal>
#include <QCoro/QCoroTimer>

#include <QtCore/QElapsedTimer>
#include <QtCore/QLoggingCategory>
#include <QtCore/QPointer>
#include <QtCore/QRandomGenerator>
#include <QtCore/QRegularExpression>
#include <QtCore/QSet>
#include <QtTest/QSignalSpy>
#include <QtTest/QTest>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

namespace grouptest {

using namespace std::chrono_literals;
using stage::Group;
using stage::WorkerExit;
using stagetest::Sentinel;
using stagetest::Timeout;
using Kind = stage::WorkerExit::Kind;
using State = stage::Group::State;

/* Thrown by value: not derived from std::exception. */
struct CustomError
{
    int code;
};

/* Its std::exception is not at offset 0: the reason must come from the right subobject. */
struct Tagged
{
    virtual ~Tagged() = default;
    int tag = 5;
};
struct OffsetError : Tagged, std::runtime_error
{
    OffsetError() : std::runtime_error("boom at an offset") {}
};

/* Two std::exception bases: catch (const std::exception &) does not match it. */
struct AmbiguousError : std::runtime_error, std::logic_error
{
    AmbiguousError() : std::runtime_error("runtime"), std::logic_error("logic") {}
};

/* std::exception is a private base: catch (const std::exception &) does not match it. */
struct PrivateError : private std::runtime_error
{
    PrivateError() : std::runtime_error("private") {}
};

/* One virtual std::runtime_error under two paths. */
struct DiamondLeft : virtual std::runtime_error
{
    DiamondLeft() : std::runtime_error("unused") {}
};
struct DiamondRight : virtual std::runtime_error
{
    DiamondRight() : std::runtime_error("unused") {}
};
struct DiamondError : DiamondLeft, DiamondRight
{
    DiamondError() : std::runtime_error("boom through a diamond") {}
};

/* A stage::Cancelled thrown by the body itself, with no stop requested: a failure. */
struct OwnCancel : stage::Cancelled
{
};

enum class Ending {
    Return,
    StdException,
    Int,
    Custom,
    OffsetStdException,
    Ambiguous,
    CString,
    CancelledWithoutStop,
    PointerToStdException,
    PrivateBase,
    VirtualDiamond,
};
enum class RawWait { QCoroSleep, QCoroSignal };
enum class Misuse {
    SpawnTwice,
    SpawnEmptyFunction,
    SpawnAfterShutdown,
    SpawnAfterIdleShutdown,
    SpawnFromAnotherThread,
    SetSizeNegative,
    SetThreadCountAfterSpawn,
    SetThreadCountNegative,
    SetMaxRestartsBelowMinusOne,
    SetRestartPeriodZero,
    SetShutdownTimeoutNegative,
    SetHeartbeatTimeoutNegative,
};

/* What the worker bodies of one test saw. Atomics: bodies may run on the group's threads. */
struct Shared
{
    std::atomic<int> entered{0};   // bodies that began
    std::atomic<int> destroyed{0}; // Sentinel destructions: frames that ended
    std::atomic<int> cancelled{0}; // bodies that caught stage::Cancelled (and rethrew it)
    std::atomic<int> heartbeats{0};
    stagetest::EventLog log;
    QElapsedTimer clock;
    std::vector<qint64> startNs; // main-thread bodies only: when each run began
    std::vector<qint64> endNs;   // main-thread bodies only: when a healthy run ended

    Shared() { clock.start(); }
};

/* Everything a group emits, checked as it comes. Declare it after the group. */
class Recorder
{
public:
    explicit Recorder(Group &group) : m_group(&group)
    {
        QObject::connect(&group, &Group::workerFinished, &m_context, [this](const WorkerExit &exit) {
            exits.push_back(exit);
            check();
        });
        QObject::connect(&group, &Group::stateChanged, &m_context, [this](State state, const QString &reason) {
            states.push_back(state);
            reasons.append(reason);
            if (m_group->state() != state)
                ++stateMismatches;
        });
        QObject::connect(&group, &Group::statisticsChanged, &m_context, [this] {
            ++statisticsSignals;
            lastSeen = m_group->statistics();
            check();
        });
        QObject::connect(&group, &Group::gaveUp, &m_context, [this](const QString &reason) {
            order.append(QStringLiteral("failed"));
            failReasons.append(reason);
        });
        QObject::connect(&group, &Group::stopped, &m_context, [this] {
            order.append(QStringLiteral("stopped"));
            ++stoppedCount;
        });
    }

    int count(Kind kind) const
    {
        return int(std::count_if(exits.begin(), exits.end(), [kind](const WorkerExit &e) { return e.kind == kind; }));
    }
    int stateCount(State state) const { return int(std::count(states.begin(), states.end(), state)); }

    std::vector<WorkerExit> exits;
    std::vector<State> states;
    QStringList reasons;
    QStringList order;
    QStringList failReasons;
    int stoppedCount = 0;
    int statisticsSignals = 0;
    int inconsistent = 0;    // emissions at which statistics().isConsistent() was false
    int stateMismatches = 0; // stateChanged(s) while state() != s
    stage::GroupStatistics lastSeen;

private:
    void check()
    {
        if (!m_group->statistics().isConsistent())
            ++inconsistent;
    }

    Group *m_group;
    QObject m_context; // last: disconnects first
};

double ms(qint64 ns)
{
    return double(ns) / 1e6;
}

bool consistentTotals(const Group &g)
{
    const auto s = g.statistics();
    return s.isConsistent() && s.running == 0 && s.started == s.completed + s.failed + s.cancelled + s.abandoned;
}

// ---- worker bodies ----

/* Generation 0 ends as \a ending says (after a suspension if \a suspendFirst); restarts park. */
QCoro::Task<> endOnce(stage::Worker &w, Shared *s, Ending ending, bool suspendFirst)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    if (w.generation() > 0) {
        try {
            co_await stage::sleep(60s);
        } catch (const stage::Cancelled &) {
            s->cancelled.fetch_add(1);
            throw;
        }
        co_return;
    }
    if (suspendFirst)
        co_await stage::sleep(1ms);
    switch (ending) {
    case Ending::Return:
        co_return;
    case Ending::StdException:
        throw std::runtime_error("boom from the body");
    case Ending::Int:
        throw 42;
    case Ending::Custom:
        throw CustomError{7};
    case Ending::OffsetStdException:
        throw OffsetError();
    case Ending::Ambiguous:
        throw AmbiguousError();
    case Ending::CString:
        throw "a C string";
    case Ending::CancelledWithoutStop:
        throw OwnCancel();
    case Ending::PointerToStdException: {
        static std::runtime_error pointed("pointed to");
        throw &pointed; // a pointer: catch (const std::exception &) does not match it
    }
    case Ending::PrivateBase:
        throw PrivateError();
    case Ending::VirtualDiamond:
        throw DiamondError();
    }
}

/* Sleeps until stopped; logs "start <id>" and "end <id>". */
QCoro::Task<> park(stage::Worker &w, Shared *s)
{
    Sentinel sentinel(s->destroyed, &s->log, QStringLiteral("end %1").arg(w.id()));
    s->log.add(QStringLiteral("start %1").arg(w.id()));
    s->entered.fetch_add(1);
    try {
        co_await stage::sleep(60s);
    } catch (const stage::Cancelled &) {
        s->cancelled.fetch_add(1);
        throw;
    }
}

/* The first \a failures runs (by generation) record their start time and throw at once; later ones park. */
QCoro::Task<> failFirst(stage::Worker &w, Shared *s, int failures)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    if (w.generation() >= failures) {
        try {
            co_await stage::sleep(60s);
        } catch (const stage::Cancelled &) {
            s->cancelled.fetch_add(1);
            throw;
        }
        co_return;
    }
    s->startNs.push_back(s->clock.nsecsElapsed());
    throw std::runtime_error("failing at once");
}

/* Throws at once, every run, counting only (a restart storm). */
QCoro::Task<> throwAtOnce(Shared *s)
{
    s->entered.fetch_add(1);
    throw std::runtime_error("storm");
    co_return;
}

/* Fails at once, except generation \a healthy, which runs for \a runFor first; from healthy + 2 on it parks. */
QCoro::Task<> failWithOneHealthyRun(stage::Worker &w, Shared *s, int healthy, std::chrono::milliseconds runFor)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    s->startNs.push_back(s->clock.nsecsElapsed());
    if (w.generation() >= healthy + 2) {
        co_await stage::sleep(60s);
        co_return;
    }
    if (w.generation() == healthy) {
        co_await stage::sleep(runFor);
        s->endNs.push_back(s->clock.nsecsElapsed());
    }
    throw std::runtime_error("fail");
}

/* Sleeps \a runFor, then throws (a worker whose failures are spaced out). */
QCoro::Task<> failAfter(Shared *s, std::chrono::milliseconds runFor)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    co_await stage::sleep(runFor);
    throw std::runtime_error("failing after a while");
}

/* The first worker ever started parks (the keeper); every other run throws at once. */
struct Keeper
{
    quint64 id = 0;
};

QCoro::Task<> keeperOrFail(stage::Worker &w, Shared *s, Keeper *k)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    if (k->id == 0)
        k->id = w.id();
    if (w.id() != k->id) {
        s->log.add(QStringLiteral("fail %1").arg(w.id()));
        throw std::runtime_error("not the keeper");
    }
    co_await stage::sleep(60s);
}

/* Ends at random: throws (three kinds), completes, or runs a while with heartbeats. */
QCoro::Task<> randomBody(stage::Worker &w, Shared *s, quint32 seed)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    const quint32 seeds[] = {seed, quint32(w.id()), quint32(w.generation())};
    QRandomGenerator rng(seeds); // std::seed_seq mixing
    switch (rng.bounded(6)) {
    case 0:
        throw std::runtime_error("random failure at once");
    case 1:
        co_await stage::sleep(std::chrono::milliseconds(rng.bounded(1, 10)));
        throw 13;
    case 2:
        co_await stage::sleep(std::chrono::milliseconds(rng.bounded(1, 10)));
        co_return;
    case 3: {
        const int beats = rng.bounded(1, 5);
        for (int i = 0; i < beats; ++i) {
            co_await stage::sleep(2ms);
            w.heartbeat();
            s->heartbeats.fetch_add(1);
        }
        throw CustomError{3};
    }
    case 4:
        co_await stage::sleep(std::chrono::milliseconds(rng.bounded(20, 60)));
        co_return;
    default:
        co_return;
    }
}

class Emitter : public QObject
{
    Q_OBJECT
Q_SIGNALS:
    void ping();
};

/* Waits on something that is not a Stage awaitable, so a stop cannot reach it. */
QCoro::Task<> rawWaiter(Shared *s, RawWait how, Emitter *emitter)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    if (how == RawWait::QCoroSleep)
        co_await QCoro::sleepFor(700ms);
    else
        co_await qCoro(emitter, &Emitter::ping);
    s->log.add(QStringLiteral("raw wait over"));
}

/* The first worker deletes its own group (before or after a suspension); the others park. */
struct GroupHolder
{
    Group *group = nullptr;
};

QCoro::Task<> deleteOwnGroup(Shared *s, GroupHolder *holder, bool suspendFirst)
{
    const bool first = s->entered.fetch_add(1) == 0;
    Sentinel sentinel(s->destroyed, &s->log, first ? QStringLiteral("deleter end") : QStringLiteral("other end"));
    if (!first) {
        try {
            co_await stage::sleep(60s);
        } catch (const stage::Cancelled &) {
            s->log.add(QStringLiteral("other cancelled"));
            throw;
        }
        co_return;
    }
    if (suspendFirst)
        co_await stage::sleep(20ms);
    delete std::exchange(holder->group, nullptr);
    s->log.add(QStringLiteral("group deleted"));
    try {
        co_await stage::sleep(10ms);
        s->log.add(QStringLiteral("deleter slept on"));
    } catch (const stage::Cancelled &) {
        s->log.add(QStringLiteral("deleter cancelled"));
        throw;
    }
}

/* The first worker throws after a short sleep; the others park. */
QCoro::Task<> throwFirstParkOthers(Shared *s)
{
    const bool first = s->entered.fetch_add(1) == 0;
    Sentinel sentinel(s->destroyed, &s->log, first ? QStringLiteral("thrower end") : QStringLiteral("other end"));
    if (first) {
        co_await stage::sleep(10ms);
        throw std::runtime_error("the first worker fails");
    }
    try {
        co_await stage::sleep(60s);
    } catch (const stage::Cancelled &) {
        s->log.add(QStringLiteral("other cancelled"));
        throw;
    }
}

/* Parks; on its stop logs "cleanup" before rethrowing. */
QCoro::Task<> parkWithCleanup(Shared *s)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    try {
        co_await stage::sleep(60s);
    } catch (const stage::Cancelled &) {
        s->cancelled.fetch_add(1);
        s->log.add(QStringLiteral("cleanup"));
        throw;
    }
}

/* The threads a run started and resumed on. */
struct ThreadLog
{
    QMutex mutex;
    std::vector<std::pair<QThread *, QThread *>> pairs; // (start, after the first co_await)
    int notHome = 0;       // started on a thread other than Worker::thread()
    int movedOnCancel = 0; // resumed with stage::Cancelled on another thread than it started on
};

QCoro::Task<> threadBody(stage::Worker &w, Shared *s, ThreadLog *t)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    QThread *const before = QThread::currentThread();
    co_await stage::sleep(5ms);
    QThread *const after = QThread::currentThread();
    {
        QMutexLocker lock(&t->mutex);
        t->pairs.emplace_back(before, after);
        if (before != w.thread())
            ++t->notHome;
    }
    if (w.generation() == 0)
        throw std::runtime_error("failing on a group thread");
    try {
        co_await stage::sleep(60s);
    } catch (const stage::Cancelled &) {
        s->cancelled.fetch_add(1);
        if (QThread::currentThread() != before) {
            QMutexLocker lock(&t->mutex);
            ++t->movedOnCancel;
        }
        throw;
    }
}

QCoro::Task<> heartbeatLoop(stage::Worker &w, Shared *s)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    for (;;) {
        co_await stage::sleep(10ms);
        w.heartbeat();
        s->heartbeats.fetch_add(1);
    }
}

/* Generation 0: three heartbeats, then silence inside a Stage sleep. Later runs beat steadily. */
QCoro::Task<> goesSilent(stage::Worker &w, Shared *s)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    if (w.generation() == 0) {
        for (int i = 0; i < 3; ++i) {
            co_await stage::sleep(10ms);
            w.heartbeat();
            s->heartbeats.fetch_add(1);
        }
        try {
            co_await stage::sleep(60s);
        } catch (const stage::Cancelled &) {
            s->cancelled.fetch_add(1);
            throw;
        }
        co_return;
    }
    for (;;) {
        co_await stage::sleep(10ms);
        w.heartbeat();
        s->heartbeats.fetch_add(1);
    }
}

/* Generation 0 hangs in a raw QCoro sleep (no heartbeat, no cancellation point); later runs beat. */
QCoro::Task<> hangsOnce(stage::Worker &w, Shared *s)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    if (w.generation() == 0) {
        co_await QCoro::sleepFor(600ms);
        s->log.add(QStringLiteral("hung run ended"));
        co_return;
    }
    for (;;) {
        co_await stage::sleep(10ms);
        w.heartbeat();
        s->heartbeats.fetch_add(1);
    }
}

struct ShutdownView
{
    State state = State::Idle;
    int running = -1;
    int destroyed = -1;
};

QCoro::Task<ShutdownView> shutDownAndLook(Group *g, Shared *s)
{
    co_await g->shutdown();
    co_return ShutdownView{g->state(), g->running(), s->destroyed.load()};
}

/* A worker (of another group) that awaits \a target's shutdown. */
QCoro::Task<> awaitOtherShutdown(Shared *s, Group *target)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    try {
        co_await target->shutdown();
        s->log.add(QStringLiteral("shutdown awaited"));
    } catch (const stage::Cancelled &) {
        s->cancelled.fetch_add(1);
        s->log.add(QStringLiteral("awaiting worker cancelled"));
        throw;
    }
}

/* Ignores cancellation for 300 ms (a raw QCoro sleep), then ends. */
QCoro::Task<> slowToStop(Shared *s)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    co_await QCoro::sleepFor(300ms);
    s->log.add(QStringLiteral("slow worker ended"));
}

QCoro::Task<int> answerAfterSleep(Shared *s)
{
    co_await stage::sleep(20ms);
    s->log.add(QStringLiteral("body done: %1 frames ended").arg(s->destroyed.load()));
    co_return 42;
}

QCoro::Task<int> throwAfterSleep()
{
    co_await stage::sleep(20ms);
    throw std::runtime_error("scope body failed");
}

QCoro::Task<> voidBody(Shared *s)
{
    co_await stage::sleep(5ms);
    s->log.add(QStringLiteral("void body done"));
}

struct Settings
{
    int size;
    stage::RestartType restartType;
    stage::Backoff backoff;
    int maxRestarts;
    int restartPeriod;
    int threadCount;
    int shutdownTimeout;
    int heartbeatTimeout;
    State state;
    qint64 started;

    static Settings of(const Group &g)
    {
        return {g.size(), g.restartType(), g.backoff(), g.maxRestarts(), g.restartPeriod(), g.threadCount(),
                g.shutdownTimeout(), g.heartbeatTimeout(), g.state(), g.started()};
    }
    bool operator==(const Settings &) const = default;
};

/* Runs the event loop for \a duration (with a failsafe): for measuring what runs meanwhile. */
void spin(std::chrono::milliseconds duration)
{
    QEventLoop loop;
    QTimer::singleShot(duration, Qt::PreciseTimer, &loop, &QEventLoop::quit);
    QTimer failsafe;
    failsafe.setSingleShot(true);
    QObject::connect(&failsafe, &QTimer::timeout, &loop, &QEventLoop::quit);
    failsafe.start(Timeout);
    loop.exec();
}

/* What abandonedOnThread() saw: a worker holding a message in a foreign (non-Stage) wait. */
struct ForeignHang
{
    std::atomic<int> holding{0};
    std::atomic<int> ended{0};
    QPointer<QThread> thread; // written before holding is set
};

QCoro::Task<> holdInForeignWait(ForeignHang *h, stage::Mailbox<int> box)
{
    auto delivery = co_await box.receive();
    h->thread = QThread::currentThread();
    h->holding.store(1);
    co_await QCoro::sleepFor(300ms); // no cancellation point: a stop cannot end it
    h->ended.store(1);
} // the delivery is acknowledged here

} // namespace grouptest

Q_DECLARE_METATYPE(grouptest::Ending)
Q_DECLARE_METATYPE(grouptest::RawWait)
Q_DECLARE_METATYPE(grouptest::Misuse)

using namespace grouptest;

class tst_Group : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void setSizeZero_fromWorkerFinishedSlot_data();
    void setSizeZero_fromWorkerFinishedSlot();
    void deleteFromOwnStateChanged_data();
    void deleteFromOwnStateChanged();
    void deletedWhileWorkerHangs_lateEndIsReported_data();
    void deletedWhileWorkerHangs_lateEndIsReported();
    void restart_byTypeAndEnding_data();
    void restart_byTypeAndEnding();
    void restart_keepsIdAndCountsGenerations();

    void backoff_delay_data();
    void backoff_delay();
    void backoff_jitterStaysInBounds_data();
    void backoff_jitterStaysInBounds();
    void backoff_defaultsAndClamps();
    void backoff_gapsGrowExponentially();
    void backoff_streakResetsAfterHealthyRun();

    void intensity_exceededFailsTheGroup();
    void intensity_zeroFailsAtFirstRestart();
    void intensity_windowSlides();

    void resize_upStartsNewWorkers();
    void resize_downStopsNewestGracefully();
    void resize_downRemovesWorkerInBackoff();
    void resize_toZeroAndBack();
    void resize_beforeSpawn();
    void resize_negativeIsRefused();
    void resize_repeatedlyWhileFailingAtRandom_data();
    void resize_repeatedlyWhileFailingAtRandom();

    void shutdown_duringBackoffRestartsNothing();
    void shutdown_duringRestartStorm();
    void shutdown_awaitedFromCoroutine();
    void shutdown_awaitIsCancellationPoint();
    void shutdown_twiceIsHarmless();
    void shutdown_beforeSpawnStops();
    void shutdown_workerIgnoringCancellationIsAbandoned_data();
    void shutdown_workerIgnoringCancellationIsAbandoned();

    void destroy_fromWorkerFinishedSlot();
    void destroy_fromInsideWorkerBody_data();
    void destroy_fromInsideWorkerBody();
    void destroy_runningGroupShutsDown_data();
    void destroy_runningGroupShutsDown();
    void destroy_threadedGroupKeepsThreadOfAbandonedWorker();

    void threads_workersRunAndResumeOnGroupThreads();

    void statistics_consistentUnderRandomFaults_data();
    void statistics_consistentUnderRandomFaults();
    void statistics_signalIsCoalesced();
    void storm_doesNotStarveTheEventLoop();

    void watchdog_heartbeatingWorkerSurvives();
    void watchdog_silentWorkerIsRestarted();
    void watchdog_hungWorkerIsAbandonedAndRestarted();

    void scope_returnsBodyValue();
    void scope_rethrowsBodyException();
    void scope_voidBody();

    void misuse_isRefusedWithWarning_data();
    void misuse_isRefusedWithWarning();

    void state_transitionsAreSignalled();
};

// ---- restart policy ----

void tst_Group::restart_byTypeAndEnding_data()
{
    QTest::addColumn<stage::RestartType>("type");
    QTest::addColumn<Ending>("ending");
    QTest::addColumn<bool>("suspendFirst");
    QTest::addColumn<bool>("restarts");
    QTest::addColumn<QString>("reason");

    const struct
    {
        const char *name;
        stage::RestartType type;
    } types[] = {{"permanent", stage::RestartType::Permanent},
                 {"transient", stage::RestartType::Transient},
                 {"temporary", stage::RestartType::Temporary}};
    const struct
    {
        const char *name;
        Ending ending;
        const char *reason;
    } endings[] = {{"return", Ending::Return, ""},
                   {"std_exception", Ending::StdException, "boom from the body"},
                   {"int", Ending::Int, "an exception of type int: 42"},
                   {"custom", Ending::Custom, "an exception not derived from std::exception"},
                   {"offset_std_exception", Ending::OffsetStdException, "boom at an offset"},
                   {"ambiguous", Ending::Ambiguous, "an exception not derived from std::exception"},
                   {"c_string", Ending::CString, "a C string"},
                   {"cancelled_without_stop", Ending::CancelledWithoutStop,
                    "stage::Cancelled was thrown without a stop request"},
                   {"pointer_to_std_exception", Ending::PointerToStdException,
                    "an exception not derived from std::exception"},
                   {"private_base", Ending::PrivateBase, "an exception not derived from std::exception"},
                   {"virtual_diamond", Ending::VirtualDiamond, "boom through a diamond"}};
    for (const auto &t : types) {
        for (const auto &e : endings) {
            for (bool suspendFirst : {false, true}) {
                const bool failure = e.ending != Ending::Return;
                const bool restarts = t.type == stage::RestartType::Permanent
                    || (t.type == stage::RestartType::Transient && failure);
                QTest::addRow("%s_%s_%s", t.name, e.name, suspendFirst ? "afterSuspension" : "atOnce")
                    << t.type << e.ending << suspendFirst << restarts << QString::fromUtf8(e.reason);
            }
        }
    }
}

void tst_Group::restart_byTypeAndEnding()
{
    QFETCH(stage::RestartType, type);
    QFETCH(Ending, ending);
    QFETCH(bool, suspendFirst);
    QFETCH(bool, restarts);
    QFETCH(QString, reason);
    const bool failure = ending != Ending::Return;

    Shared s;
    Group g;
    g.setRestartType(type);
    g.setBackoff(stage::Backoff::none());
    Recorder rec(g);
    QVERIFY(g.spawn([&s, ending, suspendFirst](stage::Worker &w) { return endOnce(w, &s, ending, suspendFirst); }));

    QTRY_COMPARE_WITH_TIMEOUT(int(rec.exits.size()), 1, Timeout);
    const WorkerExit first = rec.exits.front();
    QCOMPARE(first.kind, failure ? Kind::Failed : Kind::Completed);
    QCOMPARE(first.reason, reason);
    QCOMPARE(first.generation, 0);
    QVERIFY(first.id != 0);
    QCOMPARE(bool(first.error), failure);
    QCOMPARE(first.isFailure(), failure);

    if (restarts) {
        QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 2, Timeout);
        QCOMPARE(g.restarted(), 1);
        QCOMPARE(g.started(), 2);
        QCOMPARE(g.running(), 1);
        QCOMPARE(g.state(), State::Running);
        QCOMPARE(rec.stoppedCount, 0);
    } else {
        QTRY_COMPARE_WITH_TIMEOUT(g.state(), State::Stopped, Timeout);
        QCOMPARE(rec.stoppedCount, 1);
        QVERIFY2(g.stateReason().contains(QStringLiteral("ended for good")), qPrintable(g.stateReason()));
        QVERIFY(stagetest::roundTrip(QThread::currentThread()));
        QCOMPARE(s.entered.load(), 1); // nothing restarted it
        QCOMPARE(g.restarted(), 0);
        QCOMPARE(g.started(), 1);
        QCOMPARE(g.running(), 0);
    }
    QCOMPARE(g.completed(), failure ? 0 : 1);
    QCOMPARE(g.failed(), failure ? 1 : 0);

    stage::waitFor(g.shutdown());
    QCOMPARE(g.state(), State::Stopped);
    QCOMPARE(rec.stoppedCount, 1);
    QVERIFY(consistentTotals(g));
    QCOMPARE(g.cancelled(), restarts ? 1 : 0);
    QCOMPARE(s.cancelled.load(), restarts ? 1 : 0);
    QCOMPARE(int(rec.exits.size()), restarts ? 2 : 1);
    if (restarts) {
        QCOMPARE(rec.exits[1].kind, Kind::Cancelled);
        QCOMPARE(rec.exits[1].generation, 1);
        QCOMPARE(rec.exits[1].id, first.id);
    }
    QCOMPARE(s.destroyed.load(), s.entered.load());
    QCOMPARE(rec.inconsistent, 0);
    QCOMPARE(rec.stateMismatches, 0);
}

void tst_Group::restart_keepsIdAndCountsGenerations()
{
    Shared s;
    Group g;
    g.setSize(2);
    g.setBackoff(stage::Backoff::none());
    Recorder rec(g);
    g.spawn([&s](stage::Worker &w) { return failFirst(w, &s, 3); });

    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 8, Timeout); // 2 x (3 failures + 1 parked run)
    QCOMPARE(int(rec.exits.size()), 6);
    QCOMPARE(g.restarted(), 6);
    QCOMPARE(g.failed(), 6);
    QCOMPARE(g.running(), 2);
    QSet<quint64> ids;
    for (const auto &e : rec.exits)
        ids.insert(e.id);
    QCOMPARE(ids.size(), 2);
    for (quint64 id : ids) {
        QList<int> generations;
        for (const auto &e : rec.exits)
            if (e.id == id)
                generations.append(e.generation);
        QCOMPARE(generations, (QList<int>{0, 1, 2}));
    }
    stage::waitFor(g.shutdown());
    QVERIFY(consistentTotals(g));
    QCOMPARE(g.cancelled(), 2);
}

// ---- backoff ----

void tst_Group::backoff_delay_data()
{
    QTest::addColumn<stage::Backoff>("backoff");
    QTest::addColumn<int>("streak");
    QTest::addColumn<double>("random");
    QTest::addColumn<int>("expected");

    const auto exp = stage::Backoff::exponential(20ms, 200ms, 2.0, 0.0);
    QTest::newRow("none_streak1") << stage::Backoff::none() << 1 << 0.5 << 0;
    QTest::newRow("none_streak10") << stage::Backoff::none() << 10 << 0.0 << 0;
    QTest::newRow("streak0") << exp << 0 << 0.0 << 0;
    QTest::newRow("streak1_immediate") << exp << 1 << 0.0 << 0;
    QTest::newRow("streak2_initial") << exp << 2 << 0.0 << 20;
    QTest::newRow("streak3") << exp << 3 << 0.0 << 40;
    QTest::newRow("streak4") << exp << 4 << 0.0 << 80;
    QTest::newRow("streak5") << exp << 5 << 0.0 << 160;
    QTest::newRow("streak6_capped") << exp << 6 << 0.0 << 200;
    QTest::newRow("streak50_capped") << exp << 50 << 0.0 << 200;
    QTest::newRow("streak100000_capped") << exp << 100000 << 0.0 << 200;
    QTest::newRow("zeroJitter_ignoresRandom") << exp << 3 << 0.99 << 40;
    const auto tripling = stage::Backoff::exponential(10ms, 1000ms, 3.0, 0.0);
    QTest::newRow("multiplier3") << tripling << 4 << 0.0 << 90;
    const auto half = stage::Backoff::exponential(20ms, 200ms, 2.0, 0.5);
    QTest::newRow("jitter_random0_full") << half << 2 << 0.0 << 20;
    QTest::newRow("jitter_random05") << half << 2 << 0.5 << 15;
    QTest::newRow("jitter_randomNear1_half") << half << 2 << 0.999999 << 10;
    QTest::newRow("jitter_streak1_still0") << half << 1 << 0.7 << 0;
    QTest::newRow("default_streak2") << stage::Backoff() << 2 << 0.0 << 10;
    QTest::newRow("default_capAt5000") << stage::Backoff() << 40 << 0.0 << 5000;
}

void tst_Group::backoff_delay()
{
    QFETCH(stage::Backoff, backoff);
    QFETCH(int, streak);
    QFETCH(double, random);
    QFETCH(int, expected);
    QCOMPARE(int(backoff.delay(streak, random).count()), expected);
}

void tst_Group::backoff_jitterStaysInBounds_data()
{
    QTest::addColumn<double>("jitter");
    QTest::newRow("0.1") << 0.1;
    QTest::newRow("0.2") << 0.2;
    QTest::newRow("0.5") << 0.5;
    QTest::newRow("1.0") << 1.0;
}

void tst_Group::backoff_jitterStaysInBounds()
{
    QFETCH(double, jitter);
    const auto b = stage::Backoff::exponential(100ms, 1000ms, 2.0, jitter);
    QRandomGenerator rng(1234);
    for (int streak = 2; streak <= 8; ++streak) {
        const double nominal = std::min(100.0 * std::pow(2.0, streak - 2), 1000.0);
        const int low = int(std::floor(nominal * (1.0 - jitter)));
        const int high = int(std::ceil(nominal));
        int minSeen = INT_MAX;
        int maxSeen = 0;
        for (int i = 0; i < 2000; ++i) {
            const int d = int(b.delay(streak, rng.generateDouble()).count());
            QVERIFY2(d >= low && d <= high, qPrintable(QStringLiteral("streak %1: %2 not in [%3, %4]")
                                                           .arg(streak).arg(d).arg(low).arg(high)));
            minSeen = std::min(minSeen, d);
            maxSeen = std::max(maxSeen, d);
        }
        // The draws spread over the range: jitter is applied, not ignored.
        QVERIFY2(maxSeen - minSeen >= int((high - low) * 0.8), qPrintable(QStringLiteral("streak %1: [%2, %3]")
                                                                              .arg(streak).arg(minSeen).arg(maxSeen)));
    }
}

void tst_Group::backoff_defaultsAndClamps()
{
    const stage::Backoff def;
    QVERIFY(!def.isNone());
    QCOMPARE(def.initialMs(), 10);
    QCOMPARE(def.maximumMs(), 5000);
    QCOMPARE(def.multiplier(), 2.0);
    QCOMPARE(def.jitter(), 0.2);
    QCOMPARE(def.resetAfter(), 5000ms);
    QVERIFY(def == stage::Backoff::exponential());
    QVERIFY(stage::Backoff::none().isNone());
    QVERIFY(!(stage::Backoff::none() == def));

    const auto clamped = stage::Backoff::exponential(-5ms, -10ms, 0.5, 2.0, -1ms);
    QCOMPARE(clamped.initialMs(), 0);
    QCOMPARE(clamped.maximumMs(), 0);
    QCOMPARE(clamped.multiplier(), 1.0);
    QCOMPARE(clamped.jitter(), 1.0);
    QCOMPARE(clamped.resetAfter(), 0ms);
    const auto maxBelowInitial = stage::Backoff::exponential(50ms, 10ms, 2.0, -1.0);
    QCOMPARE(maxBelowInitial.maximumMs(), 50);
    QCOMPARE(maxBelowInitial.jitter(), 0.0);
    QCOMPARE(int(maxBelowInitial.delay(5, 0.5).count()), 50);

    Group g;
    QCOMPARE(g.backoff(), def);
    QSignalSpy changed(&g, &Group::backoffChanged);
    g.setBackoff(def);
    QCOMPARE(changed.count(), 0); // unchanged: no signal
    g.setBackoff(stage::Backoff::none());
    QCOMPARE(changed.count(), 1);
    QVERIFY(g.backoff().isNone());
}

void tst_Group::backoff_gapsGrowExponentially()
{
    Shared s;
    Group g;
    g.setBackoff(stage::Backoff::exponential(20ms, 200ms, 2.0, 0.0));
    g.spawn([&s](stage::Worker &w) { return failFirst(w, &s, INT_MAX); });

    QTRY_VERIFY_WITH_TIMEOUT(s.startNs.size() >= 7, Timeout);
    g.shutdown();
    QTRY_COMPARE_WITH_TIMEOUT(g.state(), State::Stopped, Timeout);

    // Streak 1 restarts at once, then 20, 40, 80, 160 and the 200 ms cap.
    const double expected[] = {0, 20, 40, 80, 160, 200};
    QString gaps;
    for (size_t i = 0; i + 1 < s.startNs.size(); ++i)
        gaps += QStringLiteral("%1 ").arg(ms(s.startNs[i + 1] - s.startNs[i]), 0, 'f', 1);
    for (size_t i = 0; i < std::size(expected); ++i) {
        const double gap = ms(s.startNs[i + 1] - s.startNs[i]);
        QVERIFY2(gap >= expected[i] - 1.0, qPrintable(QStringLiteral("gap %1 too short; gaps: %2").arg(i).arg(gaps)));
        QVERIFY2(gap <= expected[i] + 1500.0, qPrintable(QStringLiteral("gap %1 too long; gaps: %2").arg(i).arg(gaps)));
    }
    QCOMPARE(g.failed(), qint64(s.startNs.size()));
    QVERIFY(g.restarted() >= 6);
    QVERIFY(consistentTotals(g));
}

void tst_Group::backoff_streakResetsAfterHealthyRun()
{
    // Generations 0-2 fail at once (gaps 0, 200, 400); generation 3 runs 300 ms (> resetAfter 250)
    // and fails: the streak resets, so generation 4 starts at once (not after 800 ms); generation 4
    // fails at once: streak 2 again, 200 ms (not 1600); generation 5 parks.
    Shared s;
    Group g;
    g.setBackoff(stage::Backoff::exponential(200ms, 5000ms, 2.0, 0.0, 250ms));
    g.spawn([&s](stage::Worker &w) { return failWithOneHealthyRun(w, &s, 3, 300ms); });

    QTRY_COMPARE_WITH_TIMEOUT(int(s.startNs.size()), 6, Timeout);
    QCOMPARE(int(s.endNs.size()), 1);
    const auto &t = s.startNs;
    const QString all = QStringLiteral("gaps %1 %2 %3, after healthy %4, then %5")
                            .arg(ms(t[1] - t[0]))
                            .arg(ms(t[2] - t[1]))
                            .arg(ms(t[3] - t[2]))
                            .arg(ms(t[4] - s.endNs[0]))
                            .arg(ms(t[5] - t[4]));
    QVERIFY2(ms(t[1] - t[0]) < 1000, qPrintable(all));
    QVERIFY2(ms(t[2] - t[1]) >= 199, qPrintable(all));
    QVERIFY2(ms(t[3] - t[2]) >= 399, qPrintable(all));
    QVERIFY2(ms(t[4] - s.endNs[0]) < 400, qPrintable(all)); // 800 without the reset
    QVERIFY2(ms(t[5] - t[4]) >= 199, qPrintable(all));
    QVERIFY2(ms(t[5] - t[4]) < 1000, qPrintable(all)); // 1600 without the reset
    QCOMPARE(g.restarted(), 5);
    stage::waitFor(g.shutdown());
    QVERIFY(consistentTotals(g));
}

// ---- restart intensity ----

void tst_Group::intensity_exceededFailsTheGroup()
{
    Shared s;
    Group g;
    g.setBackoff(stage::Backoff::none());
    g.setMaxRestarts(3);
    g.setRestartPeriod(5000);
    Recorder rec(g);
    QSignalSpy failedSpy(&g, &Group::gaveUp);
    QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("giving up: more than 3 restart")));
    g.spawn([&s](stage::Worker &w) { return failFirst(w, &s, INT_MAX); });

    QTRY_COMPARE_WITH_TIMEOUT(g.state(), State::Failed, Timeout);
    QCOMPARE(failedSpy.count(), 1);
    const QString reason = failedSpy.at(0).at(0).toString();
    QVERIFY2(reason.contains(QStringLiteral("more than 3 restart(s) within 5000 ms")), qPrintable(reason));
    QVERIFY2(reason.contains(QStringLiteral("failing at once")), qPrintable(reason)); // the last failure
    QCOMPARE(g.stateReason(), reason);
    QCOMPARE(rec.order, (QStringList{QStringLiteral("failed"), QStringLiteral("stopped")}));
    QCOMPARE(rec.states, (std::vector<State>{State::Starting, State::Running, State::Stopping, State::Failed}));
    QVERIFY(!g.isRunning());
    QCOMPARE(g.started(), 4); // the first run and 3 restarts; the 4th restart was refused
    QCOMPARE(g.failed(), 4);
    QCOMPARE(g.restarted(), 3);
    QVERIFY(consistentTotals(g));

    QTest::qWait(200); // absence: nothing starts any more
    QCOMPARE(g.started(), 4);
    QCOMPARE(s.entered.load(), 4);
    QCOMPARE(failedSpy.count(), 1);
    QCOMPARE(rec.stoppedCount, 1);

    // Shutting down a failed group changes nothing.
    stage::waitFor(g.shutdown());
    QCOMPARE(g.state(), State::Failed);
    QCOMPARE(rec.stoppedCount, 1);
    QCOMPARE(rec.inconsistent, 0);
}

void tst_Group::intensity_zeroFailsAtFirstRestart()
{
    Shared s;
    Group g;
    g.setMaxRestarts(0);
    QSignalSpy failedSpy(&g, &Group::gaveUp);
    QSignalSpy stoppedSpy(&g, &Group::stopped);
    QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("giving up: more than 0 restart")));
    g.spawn([&s](stage::Worker &w) { return failFirst(w, &s, INT_MAX); });
    QTRY_COMPARE_WITH_TIMEOUT(g.state(), State::Failed, Timeout);
    QCOMPARE(failedSpy.count(), 1);
    QCOMPARE(stoppedSpy.count(), 1);
    QCOMPARE(g.started(), 1);
    QCOMPARE(g.restarted(), 0);
}

void tst_Group::intensity_windowSlides()
{
    // Each run lives 120 ms, so two restarts are never within the 50 ms period: never too many.
    Shared s;
    Group g;
    g.setBackoff(stage::Backoff::none());
    g.setMaxRestarts(1);
    g.setRestartPeriod(50);
    QSignalSpy failedSpy(&g, &Group::gaveUp);
    g.spawn([&s] { return failAfter(&s, 120ms); });
    QTRY_VERIFY_WITH_TIMEOUT(g.restarted() >= 4, Timeout);
    QCOMPARE(failedSpy.count(), 0);
    QVERIFY(g.isRunning());
    stage::waitFor(g.shutdown());
    QCOMPARE(g.state(), State::Stopped);
    QVERIFY(consistentTotals(g));
}

// ---- resizing ----

void tst_Group::resize_upStartsNewWorkers()
{
    Shared s;
    Group g;
    QCOMPARE(g.size(), 1);
    QSignalSpy sizeSpy(&g, &Group::sizeChanged);
    g.spawn([&s](stage::Worker &w) { return park(w, &s); });
    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 1, Timeout);

    g.setSize(3);
    QCOMPARE(g.size(), 3);
    QCOMPARE(sizeSpy.count(), 1);
    QCOMPARE(sizeSpy.at(0).at(0).toInt(), 3);
    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 3, Timeout);
    QCOMPARE(g.started(), 3);
    QCOMPARE(g.running(), 3);
    QCOMPARE(g.restarted(), 0); // new workers are not restarts
    QCOMPARE(g.state(), State::Running);

    g.setSize(3); // unchanged: no signal
    QCOMPARE(sizeSpy.count(), 1);

    stage::waitFor(g.shutdown());
    QCOMPARE(s.destroyed.load(), 3);
    QCOMPARE(g.cancelled(), 3);
    QVERIFY(consistentTotals(g));
}

void tst_Group::resize_downStopsNewestGracefully()
{
    Shared s;
    Group g;
    g.setSize(4);
    Recorder rec(g);
    g.spawn([&s](stage::Worker &w) { return park(w, &s); });
    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 4, Timeout);
    QList<quint64> ids;
    for (const QString &e : s.log.events())
        ids.append(e.section(QLatin1Char(' '), 1).toULongLong());
    QCOMPARE(ids.size(), 4);
    QVERIFY(std::is_sorted(ids.begin(), ids.end())); // started oldest first

    g.setSize(1);
    QTRY_COMPARE_WITH_TIMEOUT(s.destroyed.load(), 3, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(g.running(), 1, Timeout);
    QCOMPARE(g.cancelled(), 3);
    QCOMPARE(s.cancelled.load(), 3); // each unwound through stage::Cancelled
    QCOMPARE(rec.count(Kind::Cancelled), 3);
    QSet<quint64> stoppedIds;
    for (const auto &e : rec.exits)
        stoppedIds.insert(e.id);
    QCOMPARE(stoppedIds, (QSet<quint64>{ids[1], ids[2], ids[3]})); // the newest three
    QCOMPARE(s.log.count(QStringLiteral("end %1").arg(ids[0])), 0);  // the oldest runs on
    QCOMPARE(g.state(), State::Running);
    QCOMPARE(g.restarted(), 0);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(s.entered.load(), 4); // nothing was restarted

    stage::waitFor(g.shutdown());
    QCOMPARE(s.log.count(QStringLiteral("end %1").arg(ids[0])), 1);
    QVERIFY(consistentTotals(g));
    QCOMPARE(rec.inconsistent, 0);
}

void tst_Group::resize_downRemovesWorkerInBackoff()
{
    Shared s;
    Keeper k;
    Group g;
    g.setSize(2);
    g.setBackoff(stage::Backoff::exponential(300ms, 5000ms, 2.0, 0.0));
    g.spawn([&s, &k](stage::Worker &w) { return keeperOrFail(w, &s, &k); });
    QTRY_COMPARE_WITH_TIMEOUT(g.state(), State::Restarting, Timeout); // the second worker waits 300 ms
    QCOMPARE(s.entered.load(), 3); // keeper, failure, immediate restart's failure
    g.setSize(1);
    QCOMPARE(g.state(), State::Running); // nothing waits for a restart any more
    QTest::qWait(600);                   // absence: the removed worker is not restarted
    QCOMPARE(s.entered.load(), 3);
    QCOMPARE(g.started(), 3);
    QCOMPARE(g.running(), 1);
    stage::waitFor(g.shutdown());
    QVERIFY(consistentTotals(g));
}

void tst_Group::resize_toZeroAndBack()
{
    Shared s;
    Group g;
    g.setSize(2);
    g.spawn([&s](stage::Worker &w) { return park(w, &s); });
    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 2, Timeout);
    g.setSize(0);
    QTRY_COMPARE_WITH_TIMEOUT(g.running(), 0, Timeout);
    QCOMPARE(s.destroyed.load(), 2);
    QVERIFY(g.isRunning()); // an empty group is not a stopped one
    g.setSize(2);
    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 4, Timeout);
    QCOMPARE(g.running(), 2);
    stage::waitFor(g.shutdown());
    QCOMPARE(s.destroyed.load(), 4);
    QCOMPARE(g.cancelled(), 4);
    QVERIFY(consistentTotals(g));
}

void tst_Group::resize_beforeSpawn()
{
    Shared s;
    Group g;
    g.setSize(3);
    QCOMPARE(g.started(), 0);
    g.spawn([&s](stage::Worker &w) { return park(w, &s); });
    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 3, Timeout);
    QCOMPARE(g.running(), 3);
    QCOMPARE(g.started(), 3);
    stage::waitFor(g.shutdown());
}

void tst_Group::resize_negativeIsRefused()
{
    Shared s;
    Group g;
    g.setSize(2);
    g.spawn([&s](stage::Worker &w) { return park(w, &s); });
    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 2, Timeout);

    QTest::ignoreMessage(QtWarningMsg, "Group::setSize: the size must be >= 0, got -1; ignored");
    QSignalSpy sizeSpy(&g, &Group::sizeChanged);
    g.setSize(-1);
    QCOMPARE(g.size(), 2);
    QCOMPARE(sizeSpy.count(), 0);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(g.running(), 2);
    QCOMPARE(s.destroyed.load(), 0); // nobody was stopped
    stage::waitFor(g.shutdown());
}

void tst_Group::resize_repeatedlyWhileFailingAtRandom_data()
{
    QTest::addColumn<quint32>("seed");
    QTest::newRow("seed1") << 1u;
    QTest::newRow("seed42") << 42u;
    QTest::newRow("seed20240601") << 20240601u;
}

void tst_Group::resize_repeatedlyWhileFailingAtRandom()
{
    QFETCH(quint32, seed);
    QRandomGenerator rng(seed);
    Shared s;
    Group g;
    g.setRestartType(stage::RestartType::Permanent);
    g.setBackoff(stage::Backoff::exponential(1ms, 10ms, 2.0, 0.5, 50ms));
    Recorder rec(g);
    g.spawn([&s, seed](stage::Worker &w) { return randomBody(w, &s, seed); });
    for (int i = 0; i < 40; ++i) {
        g.setSize(rng.bounded(0, 6));
        QTest::qWait(rng.bounded(1, 15));
        QVERIFY(g.statistics().isConsistent());
    }
    g.setSize(3);
    QVERIFY(g.isRunning());
    stage::waitFor(g.shutdown());

    QCOMPARE(g.state(), State::Stopped);
    QVERIFY(consistentTotals(g));
    QCOMPARE(g.abandoned(), 0);
    QCOMPARE(rec.inconsistent, 0);
    QCOMPARE(qint64(rec.exits.size()), g.started()); // one workerFinished per run
    QCOMPARE(qint64(rec.count(Kind::Cancelled)), g.cancelled());
    QCOMPARE(qint64(rec.count(Kind::Failed)), g.failed());
    QCOMPARE(qint64(rec.count(Kind::Completed)), g.completed());
    QVERIFY(g.failed() > 0);
    QVERIFY(g.completed() > 0);
    QVERIFY(g.cancelled() > 0);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(s.destroyed.load(), s.entered.load()); // every frame unwound
    QCOMPARE(g.iterations(), qint64(s.heartbeats.load()));
}

// ---- shutdown ----

void tst_Group::shutdown_duringBackoffRestartsNothing()
{
    Shared s;
    Group g;
    g.setBackoff(stage::Backoff::exponential(300ms, 5000ms, 2.0, 0.0));
    Recorder rec(g);
    g.spawn([&s](stage::Worker &w) { return failFirst(w, &s, INT_MAX); });
    QTRY_COMPARE_WITH_TIMEOUT(g.state(), State::Restarting, Timeout);
    QCOMPARE(s.entered.load(), 2); // the first restart is immediate, the second waits

    g.shutdown();
    QCOMPARE(g.state(), State::Stopped); // nothing was running: stopped at once
    QCOMPARE(rec.stoppedCount, 1);
    QTest::qWait(600); // absence: the pending restart never happens
    QCOMPARE(s.entered.load(), 2);
    QCOMPARE(g.started(), 2);
    QCOMPARE(g.state(), State::Stopped);
    QVERIFY(consistentTotals(g));
}

void tst_Group::shutdown_duringRestartStorm()
{
    Shared s;
    Group g;
    g.setSize(3);
    g.setBackoff(stage::Backoff::none());
    Recorder rec(g);
    g.spawn([&s] { return throwAtOnce(&s); });
    QTRY_VERIFY_WITH_TIMEOUT(g.restarted() >= 100, Timeout);

    g.shutdown();
    QTRY_COMPARE_WITH_TIMEOUT(g.state(), State::Stopped, Timeout);
    QCOMPARE(rec.stoppedCount, 1);
    const qint64 started = g.started();
    const int entered = s.entered.load();
    QTest::qWait(100); // absence
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(g.started(), started);
    QCOMPARE(s.entered.load(), entered);
    QVERIFY(consistentTotals(g));
    QCOMPARE(rec.inconsistent, 0);
    QCOMPARE(qint64(rec.exits.size()), g.started());
}

void tst_Group::shutdown_awaitedFromCoroutine()
{
    Shared s;
    Group g;
    g.setSize(3);
    g.spawn([&s](stage::Worker &w) { return park(w, &s); });
    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 3, Timeout);
    QCOMPARE(g.running(), 3);

    const ShutdownView view = stage::waitFor(shutDownAndLook(&g, &s), std::chrono::milliseconds(Timeout));
    QCOMPARE(view.state, State::Stopped); // as seen at the resumption
    QCOMPARE(view.running, 0);
    QCOMPARE(view.destroyed, 3); // every worker had unwound when the await resumed
    QCOMPARE(g.cancelled(), 3);

    // Awaiting it again does not suspend.
    const ShutdownView again = stage::waitFor(shutDownAndLook(&g, &s), std::chrono::milliseconds(Timeout));
    QCOMPARE(again.state, State::Stopped);
}

void tst_Group::shutdown_awaitIsCancellationPoint()
{
    // Group a's worker takes 300 ms to stop; a worker of group b awaits a's shutdown and is
    // stopped meanwhile: it unwinds at once, and a's shutdown goes on.
    Shared sa;
    Shared sb;
    Group a;
    Group b;
    a.spawn([&sa] { return slowToStop(&sa); });
    QTRY_COMPARE_WITH_TIMEOUT(sa.entered.load(), 1, Timeout);
    b.spawn([&sb, &a] { return awaitOtherShutdown(&sb, &a); });
    QTRY_COMPARE_WITH_TIMEOUT(a.state(), State::Stopping, Timeout);

    stage::waitFor(b.shutdown(), std::chrono::milliseconds(Timeout));
    QCOMPARE(b.state(), State::Stopped);
    QCOMPARE(sb.cancelled.load(), 1);
    QCOMPARE(sb.destroyed.load(), 1);
    QCOMPARE(b.cancelled(), 1);
    QCOMPARE(a.state(), State::Stopping); // a is still waiting for its slow worker
    QCOMPARE(sb.log.events(), QStringList{QStringLiteral("awaiting worker cancelled")});

    QTRY_COMPARE_WITH_TIMEOUT(a.state(), State::Stopped, Timeout);
    QCOMPARE(sa.log.events(), QStringList{QStringLiteral("slow worker ended")});
    QCOMPARE(a.cancelled(), 1); // returned after its stop request: cancelled, not abandoned
    QCOMPARE(a.abandoned(), 0);
}

void tst_Group::shutdown_twiceIsHarmless()
{
    Shared s;
    Group g;
    g.setSize(2);
    Recorder rec(g);
    g.spawn([&s](stage::Worker &w) { return park(w, &s); });
    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 2, Timeout);
    g.shutdown();
    g.shutdown();
    QTRY_COMPARE_WITH_TIMEOUT(g.state(), State::Stopped, Timeout);
    stage::waitFor(g.shutdown());
    g.shutdown();
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(rec.stoppedCount, 1);
    QCOMPARE(rec.stateCount(State::Stopping), 1);
    QCOMPARE(rec.stateCount(State::Stopped), 1);
    QCOMPARE(g.cancelled(), 2);
    QCOMPARE(s.destroyed.load(), 2);
    QVERIFY(consistentTotals(g));
}

void tst_Group::shutdown_beforeSpawnStops()
{
    Group g;
    Recorder rec(g);
    QCOMPARE(g.state(), State::Idle);
    g.shutdown();
    QCOMPARE(g.state(), State::Stopped);
    QCOMPARE(rec.stoppedCount, 1);
    QVERIFY(!g.stateReason().isEmpty());
    stage::waitFor(g.shutdown(), std::chrono::milliseconds(Timeout)); // ready at once
    QCOMPARE(rec.stoppedCount, 1);

    Shared s;
    QTest::ignoreMessage(QtWarningMsg, "Group::spawn: the group has been shut down; ignored");
    QVERIFY(!g.spawn([&s](stage::Worker &w) { return park(w, &s); }));
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(s.entered.load(), 0);
    QCOMPARE(g.started(), 0);
    QCOMPARE(g.state(), State::Stopped);
}

void tst_Group::shutdown_workerIgnoringCancellationIsAbandoned_data()
{
    QTest::addColumn<RawWait>("how");
    QTest::addColumn<bool>("destroyGroupFirst");
    QTest::newRow("qcoroSleep") << RawWait::QCoroSleep << false;
    QTest::newRow("qcoroSignal") << RawWait::QCoroSignal << false;
    QTest::newRow("qcoroSleep_groupDestroyedBeforeFrameEnds") << RawWait::QCoroSleep << true;
    QTest::newRow("qcoroSignal_groupDestroyedBeforeFrameEnds") << RawWait::QCoroSignal << true;
}

void tst_Group::shutdown_workerIgnoringCancellationIsAbandoned()
{
    QFETCH(RawWait, how);
    QFETCH(bool, destroyGroupFirst);
    Shared s;
    Emitter emitter;
    auto g = std::make_unique<Group>();
    g->setShutdownTimeout(100);
    Recorder rec(*g);
    g->spawn([&s, how, &emitter] { return rawWaiter(&s, how, &emitter); });
    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 1, Timeout);

    QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("did not stop within 100 ms; abandoned")));
    QElapsedTimer elapsed;
    elapsed.start();
    g->shutdown();
    QCOMPARE(g->state(), State::Stopping);
    QTRY_COMPARE_WITH_TIMEOUT(rec.stoppedCount, 1, Timeout);
    const qint64 took = elapsed.elapsed();
    QVERIFY2(took >= 99, qPrintable(QString::number(took)));
    QVERIFY2(took < 5000, qPrintable(QString::number(took)));
    QCOMPARE(g->state(), State::Stopped);
    QCOMPARE(g->abandoned(), 1);
    QCOMPARE(g->running(), 0);
    QCOMPARE(g->lingering(), 1); // abandoned, not ended
    QVERIFY(consistentTotals(*g));
    QCOMPARE(int(rec.exits.size()), 1);
    QCOMPARE(rec.exits[0].kind, Kind::Abandoned);
    QSignalSpy statistics(g.get(), &Group::statisticsChanged);
    QVERIFY2(rec.exits[0].reason.contains(QStringLiteral("100 ms")), qPrintable(rec.exits[0].reason));
    if (how == RawWait::QCoroSignal)
        QCOMPARE(s.destroyed.load(), 0); // the frame is still alive

    if (destroyGroupFirst)
        g.reset();
    if (how == RawWait::QCoroSignal)
        emit emitter.ping();
    // The frame ends on its own, before the test does.
    QTRY_COMPARE_WITH_TIMEOUT(s.destroyed.load(), 1, Timeout);
    QCOMPARE(s.log.events(), QStringList{QStringLiteral("raw wait over")});
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    if (g) {
        // The late end is not counted a second time; it is no longer lingering, and says so.
        QTRY_COMPARE_WITH_TIMEOUT(g->lingering(), 0, Timeout);
        QTRY_VERIFY_WITH_TIMEOUT(statistics.count() > 0, Timeout);
        QCOMPARE(g->abandoned(), 1);
        QCOMPARE(g->cancelled(), 0);
        QVERIFY(consistentTotals(*g));
        QCOMPARE(int(rec.exits.size()), 1);
    }
}

// ---- destruction ----

void tst_Group::destroy_fromWorkerFinishedSlot()
{
    Shared s;
    auto *g = new Group;
    g->setSize(2);
    g->setBackoff(stage::Backoff::none());
    QPointer<Group> alive(g);
    QObject context;
    int slotCalls = 0;
    QObject::connect(g, &Group::workerFinished, &context, [&](const WorkerExit &exit) {
        ++slotCalls;
        s.log.add(QStringLiteral("finished %1").arg(int(exit.kind)));
        delete g;
        s.log.add(QStringLiteral("group deleted"));
    });
    g->spawn([&s] { return throwFirstParkOthers(&s); });

    QTRY_VERIFY_WITH_TIMEOUT(!alive, Timeout);
    QCOMPARE(slotCalls, 1);
    QCOMPARE(s.log.events(),
             (QStringList{QStringLiteral("thrower end"), QStringLiteral("finished %1").arg(int(Kind::Failed)),
                          QStringLiteral("other cancelled"), QStringLiteral("other end"),
                          QStringLiteral("group deleted")}));
    QCOMPARE(s.destroyed.load(), 2);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(s.entered.load(), 2); // no restart after the deletion
    QCOMPARE(slotCalls, 1);
}

void tst_Group::destroy_fromInsideWorkerBody_data()
{
    QTest::addColumn<bool>("suspendFirst");
    QTest::newRow("beforeFirstSuspension") << false;
    QTest::newRow("afterSuspension") << true;
}

void tst_Group::destroy_fromInsideWorkerBody()
{
    QFETCH(bool, suspendFirst);
    Shared s;
    GroupHolder holder;
    holder.group = new Group;
    holder.group->setSize(2);
    QPointer<Group> alive(holder.group);
    holder.group->spawn([&s, &holder, suspendFirst] { return deleteOwnGroup(&s, &holder, suspendFirst); });

    QTRY_VERIFY_WITH_TIMEOUT(!alive, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(s.destroyed.load(), s.entered.load(), Timeout);
    QStringList expected;
    if (suspendFirst) {
        // The other worker unwound inside ~Group; the deleter could not, and unwinds afterwards.
        expected << QStringLiteral("other cancelled") << QStringLiteral("other end");
    }
    expected << QStringLiteral("group deleted") << QStringLiteral("deleter cancelled") << QStringLiteral("deleter end");
    QCOMPARE(s.log.events(), expected);
    QCOMPARE(s.entered.load(), suspendFirst ? 2 : 1); // the other worker never started
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(s.entered.load(), suspendFirst ? 2 : 1);
}

void tst_Group::destroy_runningGroupShutsDown_data()
{
    QTest::addColumn<bool>("started");
    QTest::newRow("workersRunning") << true;
    QTest::newRow("workersNotStartedYet") << false;
}

void tst_Group::destroy_runningGroupShutsDown()
{
    QFETCH(bool, started);
    Shared s;
    auto *g = new Group;
    g->setSize(3);
    g->spawn([&s] { return parkWithCleanup(&s); });
    if (started)
        QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 3, Timeout);
    delete g;
    // Synchronously: every frame on the group's thread unwound before ~Group returned.
    QCOMPARE(s.entered.load(), started ? 3 : 0);
    QCOMPARE(s.destroyed.load(), started ? 3 : 0);
    QCOMPARE(s.cancelled.load(), started ? 3 : 0);
    QCOMPARE(s.log.count(QStringLiteral("cleanup")), started ? 3 : 0);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(s.entered.load(), started ? 3 : 0); // nothing starts after the destruction
}

// Found by stage-fuzz: deleting a group with worker threads quit their event loops even when an
// abandoned worker was suspended on a foreign awaitable there, so its frame never resumed: leaked,
// with the message it held neither acknowledged nor put back.
void tst_Group::destroy_threadedGroupKeepsThreadOfAbandonedWorker()
{
    ForeignHang h;
    stage::Mailbox<int> box;
    auto *g = new Group;
    g->setThreadCount(1);
    g->setShutdownTimeout(10);
    g->spawn([&h, box] { return holdInForeignWait(&h, box); });
    QCOMPARE(box.trySend(7), stage::SendStatus::Sent);
    QTRY_COMPARE_WITH_TIMEOUT(h.holding.load(), 1, Timeout);
    QPointer<QThread> thread = h.thread;
    QVERIFY(thread);
    delete g; // the worker is abandoned after 10 ms
    QCOMPARE(h.ended.load(), 0);
    // Its thread runs on until the frame has ended; then it goes.
    QTRY_COMPARE_WITH_TIMEOUT(h.ended.load(), 1, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(box.statistics().acknowledged, 1, Timeout);
    QTRY_VERIFY_WITH_TIMEOUT(thread.isNull(), Timeout);
    QCOMPARE(box.count(), 0);
}

// ---- threads ----

void tst_Group::threads_workersRunAndResumeOnGroupThreads()
{
    Shared s;
    ThreadLog t;
    auto g = std::make_unique<Group>();
    g->setThreadCount(2);
    g->setSize(4);
    g->setBackoff(stage::Backoff::none());
    Recorder rec(*g);
    g->spawn([&s, &t](stage::Worker &w) { return threadBody(w, &s, &t); });

    // Each of the 4 workers: a failing run and a restarted run, both past their first co_await.
    QTRY_VERIFY_WITH_TIMEOUT([&] { QMutexLocker lock(&t.mutex); return t.pairs.size() >= 8; }(), Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(g->restarted(), 4, Timeout);
    QCOMPARE(g->failed(), 4);
    QCOMPARE(g->running(), 4);
    QSet<QThread *> threads;
    QList<QPointer<QThread>> threadPointers;
    {
        QMutexLocker lock(&t.mutex);
        QCOMPARE(int(t.pairs.size()), 8);
        for (const auto &[before, after] : t.pairs) {
            QCOMPARE(after, before); // resumed on its home thread
            if (!threads.contains(before))
                threadPointers.append(QPointer<QThread>(before));
            threads.insert(before);
        }
        QCOMPARE(t.notHome, 0);
    }
    QCOMPARE(threads.size(), 2);
    QVERIFY(!threads.contains(QThread::currentThread()));
    for (QThread *thread : std::as_const(threads))
        QVERIFY2(thread->objectName().startsWith(QStringLiteral("stage-group-")), qPrintable(thread->objectName()));
    for (const auto &e : rec.exits)
        QCOMPARE(e.kind, Kind::Failed);

    stage::waitFor(g->shutdown(), std::chrono::milliseconds(Timeout));
    QCOMPARE(g->state(), State::Stopped);
    QCOMPARE(s.destroyed.load(), 8);
    QCOMPARE(s.cancelled.load(), 4);
    QCOMPARE(g->cancelled(), 4);
    QCOMPARE(t.movedOnCancel, 0);
    QVERIFY(consistentTotals(*g));
    QCOMPARE(rec.inconsistent, 0);
    g.reset();
    for (const auto &p : threadPointers)
        QVERIFY(p.isNull()); // the group's threads ended with it
}

// ---- statistics ----

void tst_Group::statistics_consistentUnderRandomFaults_data()
{
    QTest::addColumn<quint32>("seed");
    QTest::addColumn<int>("threadCount");
    QTest::newRow("seed7_groupThread") << 7u << 0;
    QTest::newRow("seed99_groupThread") << 99u << 0;
    QTest::newRow("seed7_twoThreads") << 7u << 2;
}

void tst_Group::statistics_consistentUnderRandomFaults()
{
    QFETCH(quint32, seed);
    QFETCH(int, threadCount);
    Shared s;
    Group g;
    g.setSize(4);
    g.setThreadCount(threadCount);
    g.setRestartType(stage::RestartType::Permanent);
    g.setBackoff(stage::Backoff::exponential(1ms, 10ms, 2.0, 0.5, 20ms));
    Recorder rec(g);
    g.spawn([&s, seed](stage::Worker &w) { return randomBody(w, &s, seed); });
    spin(400ms);
    // At least a few of each ending before the shutdown, however slow the machine (ctest -j2
    // beside a sanitizer run once saw fewer than 10 failures in 400 ms).
    QTRY_VERIFY_WITH_TIMEOUT(g.failed() > 10 && g.completed() > 10, Timeout);
    stage::waitFor(g.shutdown(), std::chrono::milliseconds(Timeout));

    QVERIFY(rec.statisticsSignals > 0);
    QCOMPARE(rec.inconsistent, 0);
    QVERIFY(consistentTotals(g));
    QCOMPARE(g.abandoned(), 0);
    const auto st = g.statistics();
    QVERIFY(st.failed > 10);
    QVERIFY(st.completed > 10);
    // Permanent, fixed size: every run but the first 4 is a restart; a restart decided while the
    // worker waited in backoff at shutdown never started.
    QVERIFY2(st.started <= 4 + st.restarted && st.started >= st.restarted,
             qPrintable(QStringLiteral("started %1 restarted %2").arg(st.started).arg(st.restarted)));
    QCOMPARE(qint64(rec.exits.size()), st.started);
    QCOMPARE(qint64(rec.count(Kind::Failed)), st.failed);
    QCOMPARE(qint64(rec.count(Kind::Completed)), st.completed);
    QCOMPARE(qint64(rec.count(Kind::Cancelled)), st.cancelled);
    QCOMPARE(st.iterations, qint64(s.heartbeats.load()));
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(s.destroyed.load(), s.entered.load());
    // The last change was signalled: the last emission saw the final numbers.
    QTRY_COMPARE_WITH_TIMEOUT(rec.lastSeen.started, st.started, Timeout);
    QCOMPARE(rec.lastSeen.running, 0);
    QCOMPARE(rec.lastSeen.failed, st.failed);
    QCOMPARE(rec.lastSeen.cancelled, st.cancelled);
}

void tst_Group::statistics_signalIsCoalesced()
{
    Shared s;
    Group g;
    g.setBackoff(stage::Backoff::none());
    Recorder rec(g);
    g.spawn([&s] { return throwAtOnce(&s); });
    spin(100ms);
    g.shutdown();
    QTRY_COMPARE_WITH_TIMEOUT(g.state(), State::Stopped, Timeout);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    const qint64 failures = g.failed();
    QVERIFY2(failures >= 100, qPrintable(QString::number(failures)));
    QVERIFY(rec.statisticsSignals >= 1);
    QVERIFY2(rec.statisticsSignals * 10 <= failures,
             qPrintable(QStringLiteral("%1 emissions for %2 failures").arg(rec.statisticsSignals).arg(failures)));
    QCOMPARE(rec.lastSeen.failed, failures); // the last change is always signalled
    QCOMPARE(rec.lastSeen.running, 0);
    QCOMPARE(rec.inconsistent, 0);
}

void tst_Group::storm_doesNotStarveTheEventLoop()
{
    // W5: a worker restarted as fast as it can fail, and a 10 ms timer on the same thread.
    Shared s;
    Group g;
    g.setBackoff(stage::Backoff::none());
    QCOMPARE(g.maxRestarts(), -1);
    g.spawn([&s] { return throwAtOnce(&s); });
    int ticks = 0;
    QTimer timer;
    timer.setTimerType(Qt::PreciseTimer);
    QObject::connect(&timer, &QTimer::timeout, [&ticks] { ++ticks; });
    timer.start(10);
    spin(300ms);
    const int ticksDuringStorm = ticks;
    const qint64 restartsDuringStorm = g.restarted();
    QVERIFY2(ticksDuringStorm >= 10, qPrintable(QStringLiteral("%1 ticks, %2 restarts").arg(ticksDuringStorm)
                                                    .arg(restartsDuringStorm)));
    QTRY_VERIFY2_WITH_TIMEOUT(g.restarted() > 1000, qPrintable(QString::number(g.restarted())), Timeout);
    QVERIFY(g.isRunning());
    timer.stop();
    stage::waitFor(g.shutdown(), std::chrono::milliseconds(Timeout));
    QVERIFY(consistentTotals(g));
    qInfo("storm: %d ticks and %lld restarts in 300 ms", ticksDuringStorm, restartsDuringStorm);
}

// ---- watchdog ----

void tst_Group::watchdog_heartbeatingWorkerSurvives()
{
    Shared s;
    Group g;
    g.setHeartbeatTimeout(100);
    Recorder rec(g);
    g.spawn([&s](stage::Worker &w) { return heartbeatLoop(w, &s); });
    QTRY_VERIFY_WITH_TIMEOUT(s.heartbeats.load() >= 40, Timeout); // >= 4 heartbeat timeouts
    QCOMPARE(g.failed(), 0);
    QCOMPARE(g.started(), 1);
    QCOMPARE(int(rec.exits.size()), 0);
    QCOMPARE(g.iterations(), qint64(s.heartbeats.load())); // same thread: no beat in between
    stage::waitFor(g.shutdown());
    QCOMPARE(g.cancelled(), 1);
    QCOMPARE(g.iterations(), qint64(s.heartbeats.load()));
    QVERIFY(consistentTotals(g));
}

void tst_Group::watchdog_silentWorkerIsRestarted()
{
    Shared s;
    Group g;
    g.setHeartbeatTimeout(100);
    g.setBackoff(stage::Backoff::none());
    Recorder rec(g);
    QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("missed its heartbeat deadline \\(100 ms\\)")));
    g.spawn([&s](stage::Worker &w) { return goesSilent(w, &s); });

    QTRY_VERIFY_WITH_TIMEOUT(!rec.exits.empty(), Timeout);
    QCOMPARE(rec.exits[0].kind, Kind::Failed);
    QCOMPARE(rec.exits[0].generation, 0);
    QVERIFY2(rec.exits[0].reason.contains(QStringLiteral("heartbeat")), qPrintable(rec.exits[0].reason));
    QCOMPARE(s.cancelled.load(), 1); // it was stopped through its token: it unwound gracefully
    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 2, Timeout);
    QCOMPARE(g.restarted(), 1);
    QCOMPARE(g.failed(), 1);
    QTRY_VERIFY_WITH_TIMEOUT(s.heartbeats.load() >= 3 + 10, Timeout); // the new run beats
    QCOMPARE(g.failed(), 1);
    QCOMPARE(g.started(), 2);
    stage::waitFor(g.shutdown());
    QCOMPARE(g.iterations(), qint64(s.heartbeats.load()));
    QVERIFY(consistentTotals(g));
}

void tst_Group::watchdog_hungWorkerIsAbandonedAndRestarted()
{
    Shared s;
    Group g;
    g.setHeartbeatTimeout(100);
    g.setShutdownTimeout(100);
    g.setBackoff(stage::Backoff::none());
    Recorder rec(g);
    QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("missed its heartbeat deadline \\(100 ms\\)")));
    QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("did not stop within 100 ms; abandoned")));
    g.spawn([&s](stage::Worker &w) { return hangsOnce(w, &s); });

    QTRY_VERIFY_WITH_TIMEOUT(!rec.exits.empty(), Timeout);
    QCOMPARE(rec.exits[0].kind, Kind::Abandoned);
    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 2, Timeout);
    QCOMPARE(g.restarted(), 1);
    QCOMPARE(g.abandoned(), 1);
    QCOMPARE(g.started(), 2);
    QVERIFY(g.statistics().isConsistent());
    // The hung frame ends on its own, before the test does, and is not counted again.
    QTRY_COMPARE_WITH_TIMEOUT(s.log.count(QStringLiteral("hung run ended")), 1, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(s.destroyed.load(), 1, Timeout);
    QCOMPARE(g.abandoned(), 1);
    stage::waitFor(g.shutdown());
    QCOMPARE(g.cancelled(), 1);
    QVERIFY(consistentTotals(g));
    QCOMPARE(s.destroyed.load(), 2);
}

// ---- scope ----

void tst_Group::scope_returnsBodyValue()
{
    Shared s;
    Group g;
    g.setSize(2);
    g.spawn([&s] { return parkWithCleanup(&s); });
    const int value = stage::waitFor(g.scope(answerAfterSleep(&s)), std::chrono::milliseconds(Timeout));
    QCOMPARE(value, 42);
    QCOMPARE(g.state(), State::Stopped);
    QCOMPARE(g.running(), 0);
    QCOMPARE(s.destroyed.load(), 2);
    QCOMPARE(g.cancelled(), 2);
    // The body ran while the workers were alive.
    QCOMPARE(s.log.count(QStringLiteral("body done: 0 frames ended")), 1);
    QVERIFY(consistentTotals(g));
}

void tst_Group::scope_rethrowsBodyException()
{
    Shared s;
    Group g;
    g.setSize(2);
    g.spawn([&s] { return parkWithCleanup(&s); });
    QString caught;
    try {
        stage::waitFor(g.scope(throwAfterSleep()), std::chrono::milliseconds(Timeout));
    } catch (const std::runtime_error &e) {
        caught = QString::fromUtf8(e.what());
    }
    QCOMPARE(caught, QStringLiteral("scope body failed"));
    QCOMPARE(g.state(), State::Stopped);
    QCOMPARE(g.running(), 0);
    QCOMPARE(s.destroyed.load(), 2);
    QVERIFY(consistentTotals(g));
}

void tst_Group::scope_voidBody()
{
    Shared s;
    Group g;
    g.spawn([&s] { return parkWithCleanup(&s); });
    stage::waitFor(g.scope(voidBody(&s)), std::chrono::milliseconds(Timeout));
    QCOMPARE(s.log.count(QStringLiteral("void body done")), 1);
    QCOMPARE(g.state(), State::Stopped);
    QCOMPARE(g.running(), 0);
    QCOMPARE(s.destroyed.load(), 1);
}

// ---- misuse ----

void tst_Group::misuse_isRefusedWithWarning_data()
{
    QTest::addColumn<Misuse>("misuse");
    QTest::addColumn<bool>("spawnFirst");
    QTest::addColumn<QString>("warning");

    QTest::newRow("spawnTwice") << Misuse::SpawnTwice << true
                                << "Group::spawn: the group already has a factory (one factory per group); ignored";
    QTest::newRow("spawnEmptyFunction") << Misuse::SpawnEmptyFunction << false
                                        << "Group::spawn: the factory is empty; ignored";
    QTest::newRow("spawnAfterShutdown") << Misuse::SpawnAfterShutdown << true
                                        << "Group::spawn: the group already has a factory (one factory per group); ignored";
    QTest::newRow("spawnAfterIdleShutdown") << Misuse::SpawnAfterIdleShutdown << false
                                            << "Group::spawn: the group has been shut down; ignored";
    QTest::newRow("spawnFromAnotherThread") << Misuse::SpawnFromAnotherThread << false
                                            << "Group::spawn: called from a thread other than the group's; ignored";
    QTest::newRow("setSizeNegative") << Misuse::SetSizeNegative << true
                                     << "Group::setSize: the size must be >= 0, got -3; ignored";
    QTest::newRow("setThreadCountAfterSpawn")
        << Misuse::SetThreadCountAfterSpawn << true
        << "Group::setThreadCount: the placement is fixed once spawn() has been called; ignored";
    QTest::newRow("setThreadCountNegative") << Misuse::SetThreadCountNegative << false
                                            << "Group::setThreadCount: the count must be >= 0, got -1; ignored";
    QTest::newRow("setMaxRestartsMinus2")
        << Misuse::SetMaxRestartsBelowMinusOne << false
        << "Group::setMaxRestarts: the count must be >= 0 (or -1: unlimited), got -2; ignored";
    QTest::newRow("setRestartPeriodZero") << Misuse::SetRestartPeriodZero << false
                                          << "Group::setRestartPeriod: the period must be > 0 ms, got 0; ignored";
    QTest::newRow("setShutdownTimeoutNegative")
        << Misuse::SetShutdownTimeoutNegative << false
        << "Group::setShutdownTimeout: the timeout must be >= 0 ms, got -1; ignored";
    QTest::newRow("setHeartbeatTimeoutNegative")
        << Misuse::SetHeartbeatTimeoutNegative << true
        << "Group::setHeartbeatTimeout: the timeout must be >= 0 ms (0: off), got -1; ignored";
}

void tst_Group::misuse_isRefusedWithWarning()
{
    QFETCH(Misuse, misuse);
    QFETCH(bool, spawnFirst);
    QFETCH(QString, warning);

    Shared first;
    Shared second;
    Group g;
    g.setSize(2);
    if (spawnFirst) {
        QVERIFY(g.spawn([&first](stage::Worker &w) { return park(w, &first); }));
        QTRY_COMPARE_WITH_TIMEOUT(first.entered.load(), 2, Timeout);
    }
    if (misuse == Misuse::SpawnAfterShutdown) {
        stage::waitFor(g.shutdown());
        QCOMPARE(g.state(), State::Stopped);
    }
    if (misuse == Misuse::SpawnAfterIdleShutdown)
        g.shutdown();

    const Settings before = Settings::of(g);
    QSignalSpy sizeSpy(&g, &Group::sizeChanged);
    QSignalSpy stateSpy(&g, &Group::stateChanged);
    QSignalSpy threadSpy(&g, &Group::threadCountChanged);
    QSignalSpy maxSpy(&g, &Group::maxRestartsChanged);
    QSignalSpy periodSpy(&g, &Group::restartPeriodChanged);
    QSignalSpy shutdownSpy(&g, &Group::shutdownTimeoutChanged);
    QSignalSpy heartbeatSpy(&g, &Group::heartbeatTimeoutChanged);

    QTest::ignoreMessage(QtWarningMsg, qPrintable(warning));
    bool spawned = false;
    const auto factory = [&second](stage::Worker &w) { return park(w, &second); };
    switch (misuse) {
    case Misuse::SpawnTwice:
    case Misuse::SpawnAfterShutdown:
    case Misuse::SpawnAfterIdleShutdown:
        spawned = g.spawn(factory);
        break;
    case Misuse::SpawnEmptyFunction:
        spawned = g.spawn(stage::WorkerFactory());
        break;
    case Misuse::SpawnFromAnotherThread: {
        std::thread other([&] { spawned = g.spawn(factory); });
        other.join();
        break;
    }
    case Misuse::SetSizeNegative:
        g.setSize(-3);
        break;
    case Misuse::SetThreadCountAfterSpawn:
        g.setThreadCount(2);
        break;
    case Misuse::SetThreadCountNegative:
        g.setThreadCount(-1);
        break;
    case Misuse::SetMaxRestartsBelowMinusOne:
        g.setMaxRestarts(-2);
        break;
    case Misuse::SetRestartPeriodZero:
        g.setRestartPeriod(0);
        break;
    case Misuse::SetShutdownTimeoutNegative:
        g.setShutdownTimeout(-1);
        break;
    case Misuse::SetHeartbeatTimeoutNegative:
        g.setHeartbeatTimeout(-1);
        break;
    }
    QVERIFY(!spawned);
    QVERIFY(Settings::of(g) == before);
    QCOMPARE(sizeSpy.count() + stateSpy.count() + threadSpy.count() + maxSpy.count() + periodSpy.count()
                 + shutdownSpy.count() + heartbeatSpy.count(),
             0);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(second.entered.load(), 0); // a refused factory never runs
    QCOMPARE(first.entered.load(), spawnFirst ? 2 : 0);
    QCOMPARE(g.started(), before.started);
    stage::waitFor(g.shutdown());
    QCOMPARE(first.destroyed.load(), first.entered.load());
}

// ---- state machine ----

void tst_Group::state_transitionsAreSignalled()
{
    // Generations 0 and 1 fail at once: the first restart is immediate, the second waits 100 ms
    // (Restarting); generation 2 runs until shutdown.
    Shared s;
    Group g;
    g.setBackoff(stage::Backoff::exponential(100ms, 1000ms, 2.0, 0.0));
    Recorder rec(g);
    QCOMPARE(g.state(), State::Idle);
    QVERIFY(!g.isRunning());
    g.spawn([&s](stage::Worker &w) { return failFirst(w, &s, 2); });
    // Started (Running) once its start has run to the worker's first suspension or end, and
    // that end has been decided (generation 0 failed and generation 1 was launched at once).
    QCOMPARE(rec.states, (std::vector<State>{State::Starting}));
    QVERIFY(g.isRunning());
    QTRY_COMPARE_WITH_TIMEOUT(int(rec.states.size()), 4, Timeout);
    QCOMPARE(rec.states, (std::vector<State>{State::Starting, State::Running, State::Restarting, State::Running}));
    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 3, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(g.running(), 1, Timeout);
    QCOMPARE(g.state(), State::Running);
    g.shutdown();
    QCOMPARE(g.state(), State::Stopping);
    QVERIFY(!g.isRunning());
    QTRY_COMPARE_WITH_TIMEOUT(g.state(), State::Stopped, Timeout);

    const std::vector<State> expected{State::Starting, State::Running, State::Restarting,
                                      State::Running,  State::Stopping, State::Stopped};
    QCOMPARE(rec.states, expected);
    QCOMPARE(rec.stateMismatches, 0);
    QVERIFY2(rec.reasons[2].contains(QStringLiteral("restart")), qPrintable(rec.reasons[2]));
    QVERIFY2(rec.reasons[4].contains(QStringLiteral("shut down")), qPrintable(rec.reasons[4]));
    QVERIFY2(rec.reasons[5].contains(QStringLiteral("shut down")), qPrintable(rec.reasons[5]));
    QCOMPARE(g.stateReason(), rec.reasons[5]);
    QCOMPARE(rec.stoppedCount, 1);
    QCOMPARE(g.restarted(), 2);
}


// ---- issue #20: slots that delete or drive the group that signalled them ----

namespace {
/* Parks every worker until stopped. */
QCoro::Task<> parkForever(Shared *s)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    co_await stage::sleep(60s);
}

/* Fails at once. */
QCoro::Task<> failAtOnce(Shared *s)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    co_await stage::sleep(1ms);
    throw std::runtime_error("boom");
}

/* Waits in a foreign (non-Stage) awaitable that a stop cannot interrupt. */
QCoro::Task<> hangInForeignAwait(Shared *s)
{
    Sentinel sentinel(s->destroyed);
    s->entered.fetch_add(1);
    co_await QCoro::sleepFor(400ms); // no cancellation point: a stop cannot end it
}

QtMessageHandler g_previousHandler = nullptr;
std::atomic<int> g_lateEnds{0};
void countLateEnds(QtMsgType type, const QMessageLogContext &context, const QString &message)
{
    if (message.contains(QStringLiteral("ended after all")))
        g_lateEnds.fetch_add(1);
    g_previousHandler(type, context, message);
}
} // namespace

void tst_Group::setSizeZero_fromWorkerFinishedSlot_data()
{
    QTest::addColumn<int>("threadCount");
    QTest::newRow("mainThread") << 0;
    QTest::newRow("groupThreads") << 2;
}

void tst_Group::setSizeZero_fromWorkerFinishedSlot()
{
    // The resize retires (and frees) the slot of the worker that just ended; the group must not
    // decide anything for it afterwards (was a heap-use-after-free).
    QFETCH(int, threadCount);
    Shared s;
    Group g;
    g.setThreadCount(threadCount);
    g.setSize(3);
    g.setBackoff(stage::Backoff::none());
    int calls = 0;
    QObject context;
    QObject::connect(&g, &Group::workerFinished, &context, [&](const WorkerExit &) {
        if (calls++ == 0)
            g.setSize(0);
    });
    g.spawn([&s] { return throwFirstParkOthers(&s); });
    QTRY_COMPARE_WITH_TIMEOUT(s.destroyed.load(), 3, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(g.running(), 0, Timeout);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(calls, 3);
    QCOMPARE(g.size(), 0);
    QCOMPARE(s.entered.load(), 3); // nothing restarted
    const stage::GroupStatistics st = g.statistics();
    QCOMPARE(st.started, 3);
    QCOMPARE(st.failed + st.cancelled, 3);
    QCOMPARE(st.restarted, 0);
    stage::waitFor(g.shutdown(), std::chrono::milliseconds(Timeout));
    QCOMPARE(g.state(), State::Stopped);
}

void tst_Group::deleteFromOwnStateChanged_data()
{
    QTest::addColumn<bool>("fail");
    QTest::addColumn<int>("threadCount");
    QTest::newRow("Stopped/mainThread") << false << 0;
    QTest::newRow("Stopped/groupThreads") << false << 2;
    QTest::newRow("Failed/mainThread") << true << 0;
    QTest::newRow("Failed/groupThreads") << true << 2;
}

void tst_Group::deleteFromOwnStateChanged()
{
    QFETCH(bool, fail);
    QFETCH(int, threadCount);
    Shared s;
    auto *g = new Group;
    g->setThreadCount(threadCount);
    g->setSize(2);
    g->setMaxRestarts(0);
    g->setBackoff(stage::Backoff::none());
    QPointer<Group> alive(g);
    QObject context;
    int deletes = 0;
    QList<State> seen;
    QObject::connect(g, &stage::Node::stateChanged, &context, [&](State state, const QString &) {
        seen.append(state);
        if (state == State::Stopped || state == State::Failed) {
            ++deletes;
            delete g;
        }
    });
    if (fail)
        g->spawn([&s] { return throwFirstParkOthers(&s); });
    else
        g->spawn([&s] { return parkForever(&s); });
    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 2, Timeout);
    if (!fail)
        g->shutdown();
    QTRY_VERIFY_WITH_TIMEOUT(!alive, Timeout);
    QCOMPARE(deletes, 1);
    QCOMPARE(seen.last(), fail ? State::Failed : State::Stopped);
    QTRY_COMPARE_WITH_TIMEOUT(s.destroyed.load(), 2, Timeout);
}

void tst_Group::deletedWhileWorkerHangs_lateEndIsReported_data()
{
    QTest::addColumn<int>("threadCount");
    QTest::newRow("mainThread") << 0;
    QTest::newRow("groupThreads") << 1;
}

void tst_Group::deletedWhileWorkerHangs_lateEndIsReported()
{
    // The worker waits in a QTimer the stop cannot interrupt: the group's destructor abandons it
    // after shutdownTimeout(); when the timer fires the frame ends, and that is reported.
    QFETCH(int, threadCount);
    QLoggingCategory::setFilterRules(QStringLiteral("stage.group.info=true\nstage.group.warning=false"));
    g_lateEnds = 0;
    g_previousHandler = qInstallMessageHandler(countLateEnds);
    Shared s;
    auto *g = new Group;
    g->setThreadCount(threadCount);
    g->setShutdownTimeout(50);
    g->spawn([&s] { return hangInForeignAwait(&s); });
    QTRY_COMPARE_WITH_TIMEOUT(s.entered.load(), 1, Timeout);
    delete g;
    QCOMPARE(s.destroyed.load(), 0);
    QTRY_COMPARE_WITH_TIMEOUT(s.destroyed.load(), 1, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(g_lateEnds.load(), 1, Timeout);
    qInstallMessageHandler(g_previousHandler);
    QLoggingCategory::setFilterRules(QString());
}

QTEST_GUILESS_MAIN(tst_Group)
#include "tst_group.moc"
