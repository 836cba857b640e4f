// Tests of stage::Actor<P> / stage::ActorRef<P> (degree 3): typed asks and tells, a reference
// that survives restarts, nothing lost (a throwing handler's ask answered by the restarted actor,
// a poison message dead-lettered to its caller), timeouts (the caller's and the actor's default)
// that name the actor, self-asks refused, deferred replies across actors and threads, and asks
// from another QThread, from slot code (askFuture) and from a std::thread (askBlocking).
//
// Coroutines record what they saw; the test functions compare outside them.

#include "testutil.h"

#include <stage/actor.h>

#include <QtCore/QElapsedTimer>
#include <QtCore/QPointer>
#include <QtCore/QRegularExpression>
#include <QtTest/QSignalSpy>
#include <QtTest/QTest>

#include <atomic>
#include <map>
#include <stdexcept>
#include <thread>

using namespace stagetest;
using namespace std::chrono_literals;

namespace {

struct Add
{
    int a = 0;
    int b = 0;
};
struct Total
{};
struct Reset
{};
struct Poison
{};
struct FailOnce
{
    int id = 0;
};
struct Slow
{
    int ms = 0;
    int id = 0;
};
struct AskSelf
{
    bool future = false;
};
using Calc = stage::Protocol<int(Add), int(Total), void(Reset), int(Poison), int(FailOnce), int(Slow), QString(AskSelf)>;

/* What the actor's handlers saw (any thread). */
struct CalcProbe
{
    std::atomic<int> inits{0};
    std::atomic<int> slowEntered{0};
    std::atomic<int> slowFinished{0};
    std::atomic<int> cancelled{0};
    std::atomic<int> adds{0};
    std::atomic<QThread *> handlerThread{nullptr};
    EventLog log; // "add <a>", "slow <id>", ...
    QMutex failedMutex;
    QSet<int> failed; // FailOnce ids that have thrown once
    stage::ActorRef<Calc> self;
};

/* Spawns the calculator on \a actor, its state an int total. */
void spawnCalc(stage::Actor<Calc> &actor, CalcProbe *probe)
{
    probe->self = actor.ref();
    actor.spawn(
        [probe] {
            probe->inits.fetch_add(1);
            return 0;
        },
        [probe](int &total, const Add &m) {
            probe->handlerThread = QThread::currentThread();
            probe->adds.fetch_add(1);
            probe->log.add(QStringLiteral("add %1").arg(m.a));
            total += m.a + m.b;
            return m.a + m.b;
        },
        [](int &total, const Total &) { return total; },
        [](int &total, const Reset &) { total = 0; },
        [](int &, const Poison &) -> int { throw std::runtime_error("poison pill"); },
        [probe](int &, const FailOnce &m) {
            {
                QMutexLocker lock(&probe->failedMutex);
                if (!probe->failed.contains(m.id)) {
                    probe->failed.insert(m.id);
                    throw std::runtime_error("failing once on " + std::to_string(m.id));
                }
            }
            probe->log.add(QStringLiteral("failonce %1").arg(m.id));
            return m.id;
        },
        [probe](int &, const Slow &m) -> QCoro::Task<int> {
            probe->slowEntered.fetch_add(1);
            probe->log.add(QStringLiteral("slow %1 entered").arg(m.id));
            try {
                co_await stage::sleep(std::chrono::milliseconds(m.ms));
            } catch (const stage::Cancelled &) {
                probe->cancelled.fetch_add(1);
                throw;
            }
            probe->slowFinished.fetch_add(1);
            probe->log.add(QStringLiteral("slow %1").arg(m.id));
            co_return m.id;
        },
        [probe](int &, const AskSelf &m) -> QCoro::Task<QString> {
            QElapsedTimer timer;
            timer.start();
            try {
                if (m.future)
                    co_await stage::future(probe->self.askFuture(Total{}));
                else
                    co_await probe->self.ask(Total{});
                co_return QStringLiteral("answered");
            } catch (const stage::InvalidOperation &e) {
                co_return QStringLiteral("invalid after %1 ms: %2").arg(timer.elapsed()).arg(QString::fromUtf8(e.what()));
            } catch (const std::exception &e) {
                co_return QStringLiteral("other: %1").arg(QString::fromUtf8(e.what()));
            }
        });
}

/* The kind of an ask's exception. */
QString kindOf(std::exception_ptr error, QString *what = nullptr)
{
    try {
        std::rethrow_exception(error);
    } catch (const stage::DeadLettered &e) {
        if (what)
            *what = QString::fromUtf8(e.what());
        return QStringLiteral("deadLettered");
    } catch (const stage::BrokenReply &e) {
        if (what)
            *what = QString::fromUtf8(e.what());
        return QStringLiteral("broken");
    } catch (const stage::TimeoutError &e) {
        if (what)
            *what = QString::fromUtf8(e.what());
        return QStringLiteral("timeout");
    } catch (const stage::InvalidOperation &e) {
        if (what)
            *what = QString::fromUtf8(e.what());
        return QStringLiteral("invalid");
    } catch (const stage::MailboxClosed &e) {
        if (what)
            *what = QString::fromUtf8(e.what());
        return QStringLiteral("closed");
    } catch (const std::exception &e) {
        if (what)
            *what = QString::fromUtf8(e.what());
        return QStringLiteral("other");
    }
}

/* How one ask ended. */
struct Outcome
{
    std::atomic<int> ends{0}; // must end exactly once
    int value = -1;
    QString kind; // "" for a value
    QString what;
    QThread *thread = nullptr;
};

template<typename M>
QCoro::Task<> recordAsk(stage::ActorRef<Calc> ref, M message, Outcome *out,
                        std::chrono::milliseconds timeout = std::chrono::milliseconds(-1))
{
    try {
        out->value = co_await ref.ask(std::move(message), timeout);
    } catch (...) {
        out->kind = kindOf(std::current_exception(), &out->what);
    }
    out->thread = QThread::currentThread();
    out->ends.fetch_add(1);
}

/* Runs \a f on \a thread (its event loop) and waits, spinning this thread's loop. */
template<typename F>
bool runOn(QThread *thread, F f)
{
    std::atomic<bool> done{false};
    QMetaObject::invokeMethod(thread->eventDispatcher(), [&] { f(); done = true; }, Qt::QueuedConnection);
    return spinUntil([&] { return done.load(); });
}

// ---- two actors for the deferred reply ----

struct Double
{
    int x = 0;
};
using Doubler = stage::Protocol<int(Double)>;

struct Fetch
{
    int x = 0;
};
struct Ping
{};
using Front = stage::Protocol<int(Fetch), int(Ping)>;

struct AsyncFail
{
    int id = 0;
};
struct ReplyingFail
{
    int id = 0;
};
struct Forget
{};
using Flaky = stage::Protocol<int(AsyncFail), int(ReplyingFail), int(Forget)>;

QCoro::Task<> answerLater(stage::ActorRef<Doubler> doubler, int x, stage::Reply<int> reply, EventLog *log)
{
    try {
        const int doubled = co_await doubler.ask(Double{x});
        log->add(QStringLiteral("doubled"));
        reply.send(doubled);
    } catch (const std::exception &) {
        // the reply breaks when destroyed unanswered: the caller sees stage::BrokenReply
    }
}

// ---- ask cycles: A's handler asks B, whose handler (or the work it deferred) asks A ----

struct Start
{
    int mode = 0; // what B does with the Hop: see Hop
};
struct Hop
{
    int mode = 0; // 0: asks A back from its handler; 1: takes the reply, asks A back later; 2: asks C
};
struct Back
{};
using Cycler = stage::Protocol<QString(Start), QString(Hop), int(Back)>;

/* The three actors' references, set before they are started. */
struct CycleWiring
{
    stage::ActorRef<Cycler> a, b, c;
    std::atomic<int> backs{0}; // Back handled (C's and A's)
};

/* How an ask of A ended, as a text: the value, or "<kind>: <what>". */
template<typename R>
QCoro::Task<QString> askText(stage::ActorRef<Cycler> ref, R message, std::chrono::milliseconds timeout)
{
    try {
        if constexpr (std::is_same_v<R, Back>)
            co_return QString::number(co_await ref.ask(std::move(message), timeout));
        else
            co_return co_await ref.ask(std::move(message), timeout);
    } catch (...) {
        QString what;
        const QString kind = kindOf(std::current_exception(), &what);
        co_return kind + QStringLiteral(": ") + what;
    }
}

/* B's deferred work: after a pause (B's handler has returned by then), asks A back and answers. */
QCoro::Task<> backLater(stage::ActorRef<Cycler> a, stage::Reply<QString> reply)
{
    co_await stage::sleep(30ms);
    reply.send(co_await askText(a, Back{}, 400ms));
}

void spawnCycler(stage::Actor<Cycler> &actor, CycleWiring *wiring)
{
    actor.spawn([] { return 0; },
                [wiring](int &, const Start &m) -> QCoro::Task<QString> {
                    co_return co_await askText(wiring->b, Hop{m.mode}, 5s);
                },
                [wiring](int &, Hop &m, stage::Reply<QString> &reply) -> QCoro::Task<> {
                    if (m.mode == 1) {
                        backLater(wiring->a, std::move(reply)); // noreply: answered later
                        co_return;
                    }
                    reply.send(co_await askText(m.mode == 2 ? wiring->c : wiring->a, Back{}, 400ms));
                },
                [wiring](int &, const Back &) {
                    wiring->backs.fetch_add(1);
                    return 7;
                });
}

} // namespace

class tst_Actor : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void ask_answersWithTheHandlersValue()
    {
        CalcProbe probe;
        stage::Actor<Calc> actor;
        actor.setObjectName(QStringLiteral("calc"));
        spawnCalc(actor, &probe);
        auto ref = actor.ref();
        QCOMPARE(ref.name(), QStringLiteral("calc"));
        QCOMPARE(stage::waitFor(ref.ask(Add{1, 2}), 10s), 3);
        QCOMPARE(stage::waitFor(ref.ask(Add{10, 20}), 10s), 30);
        QCOMPARE(stage::waitFor(ref.ask(Total{}), 10s), 33);
        stage::waitFor(ref.ask(Reset{}), 10s); // a void reply: completes once handled
        QCOMPARE(stage::waitFor(ref.ask(Total{}), 10s), 0);
        QCOMPARE(probe.inits.load(), 1);
        QCOMPARE(probe.handlerThread.load(), QThread::currentThread());
        QCOMPARE(actor.size(), 1);
        QVERIFY(qobject_cast<stage::Group *>(&actor)); // a node: a group of one
    }

    void tell_isQueuedAndReturnsAStatus()
    {
        CalcProbe probe;
        stage::Actor<Calc> actor;
        spawnCalc(actor, &probe);
        auto ref = actor.ref();
        for (int i = 1; i <= 10; ++i)
            QCOMPARE(ref.tell(Add{i, 0}), stage::SendStatus::Sent);
        QCOMPARE(stage::waitFor(ref.ask(Total{}), 10s), 55); // FIFO: the tells came first
        QCOMPARE(probe.adds.load(), 10);

        // A bounded mailbox: Full when full, never blocks.
        stage::Actor<Calc> bounded(2);
        auto boundedRef = bounded.ref();
        QCOMPARE(boundedRef.tell(Add{1, 0}), stage::SendStatus::Sent);
        QCOMPARE(boundedRef.tell(Add{2, 0}), stage::SendStatus::Sent);
        QCOMPARE(boundedRef.tell(Add{3, 0}), stage::SendStatus::Full);
        QCOMPARE(boundedRef.count(), 2);
    }

    void restart_afterAFailureAnswersEveryQueuedAskOnce()
    {
        CalcProbe probe;
        stage::Actor<Calc> actor;
        actor.setBackoff(stage::Backoff::none());
        spawnCalc(actor, &probe);
        auto ref = actor.ref();
        QCOMPARE(stage::waitFor(ref.ask(Add{100, 0}), 10s), 100); // state 100, then lost by the restart
        constexpr int kAsks = 40;
        std::vector<std::unique_ptr<Outcome>> outcomes;
        Outcome failing;
        recordAsk(ref, FailOnce{7}, &failing); // thrown on once, while the 40 below are queued
        for (int i = 0; i < kAsks; ++i) {
            outcomes.push_back(std::make_unique<Outcome>());
            recordAsk(ref, Add{i, 1}, outcomes.back().get());
        }
        QTRY_VERIFY_WITH_TIMEOUT(failing.ends.load() == 1 && outcomes.back()->ends.load() == 1, Timeout);
        QCOMPARE(failing.kind, QString());
        QCOMPARE(failing.value, 7); // answered by the restarted actor
        for (int i = 0; i < kAsks; ++i) {
            QCOMPARE(outcomes[i]->ends.load(), 1);
            QCOMPARE(outcomes[i]->kind, QString());
            QCOMPARE(outcomes[i]->value, i + 1);
        }
        QCOMPARE(probe.inits.load(), 2); // state rebuilt by init
        QCOMPARE(actor.failed(), 1);
        QCOMPARE(stage::waitFor(ref.ask(Total{}), 10s), kAsks * (kAsks + 1) / 2); // 100 was lost
        // Each Add handled once, in order, after the retried FailOnce.
        QStringList expected{QStringLiteral("add 100"), QStringLiteral("failonce 7")};
        for (int i = 0; i < kAsks; ++i)
            expected << QStringLiteral("add %1").arg(i);
        QCOMPARE(probe.log.events(), expected);
        QVERIFY(roundTrip(QThread::currentThread()));
        QCOMPARE(failing.ends.load(), 1);
    }

    void restart_whileAHandlerRunsAnswersItAndTheQueuedOnesOnce()
    {
        CalcProbe probe;
        stage::Actor<Calc> actor;
        actor.setBackoff(stage::Backoff::none());
        actor.setThreadCount(1); // the handlers on a thread of their own
        spawnCalc(actor, &probe);
        auto ref = actor.ref();
        Outcome slow;
        recordAsk(ref, Slow{300, 1}, &slow);
        std::vector<std::unique_ptr<Outcome>> outcomes;
        for (int i = 0; i < 20; ++i) {
            outcomes.push_back(std::make_unique<Outcome>());
            recordAsk(ref, Add{i, 0}, outcomes.back().get());
        }
        QTRY_COMPARE_WITH_TIMEOUT(probe.slowEntered.load(), 1, Timeout);
        QSignalSpy stopped(&actor, &stage::Node::stateChanged);
        QVERIFY(actor.restart()); // not queued behind the 20 asks: the running handler is interrupted
        QTRY_VERIFY_WITH_TIMEOUT(slow.ends.load() == 1 && outcomes.back()->ends.load() == 1, Timeout);
        QCOMPARE(probe.cancelled.load(), 1);   // the first run's handler was stopped...
        QCOMPARE(probe.slowEntered.load(), 2); // ...and its message handled again by the new run
        QCOMPARE(probe.slowFinished.load(), 1);
        QCOMPARE(slow.kind, QString());
        QCOMPARE(slow.value, 1);
        for (int i = 0; i < 20; ++i) {
            QCOMPARE(outcomes[i]->ends.load(), 1);
            QCOMPARE(outcomes[i]->value, i);
        }
        QCOMPARE(probe.inits.load(), 2);
        QCOMPARE(probe.adds.load(), 20); // none twice
        QCOMPARE(actor.ref(), ref);      // the same address
        // A stop is not a failure: nothing counted against the message.
        QCOMPARE(actor.deadLetterCount(), 0);
    }

    void poisonMessage_failsItsCallerWithDeadLetteredAndLaterAsksAreServed()
    {
        CalcProbe probe;
        stage::Actor<Calc> actor;
        actor.setObjectName(QStringLiteral("calc"));
        actor.setBackoff(stage::Backoff::none());
        actor.setMaxRedeliveries(2);
        spawnCalc(actor, &probe);
        auto ref = actor.ref();
        Outcome poison;
        Outcome after;
        recordAsk(ref, Poison{}, &poison);
        recordAsk(ref, Add{2, 3}, &after);
        QTRY_VERIFY_WITH_TIMEOUT(poison.ends.load() == 1 && after.ends.load() == 1, Timeout);
        QCOMPARE(poison.kind, QStringLiteral("deadLettered"));
        QVERIFY2(poison.what.contains(QStringLiteral("poison pill")), qPrintable(poison.what));
        QVERIFY2(poison.what.contains(QStringLiteral("3 failed deliveries")), qPrintable(poison.what));
        QCOMPARE(after.kind, QString());
        QCOMPARE(after.value, 5);
        QCOMPARE(actor.deadLetterCount(), 1);
        QCOMPARE(probe.inits.load(), 4); // three failures, three restarts
        auto letters = actor.takeDeadLetters();
        QCOMPARE(int(letters.size()), 1);
        QCOMPARE(letters.front().reason, QStringLiteral("poison pill"));
        QVERIFY((std::holds_alternative<stage::detail::ActorLetter<Poison, int>>(letters.front().value.letter)));
        // A dead-lettered tell: no caller to fail; the actor serves on.
        QCOMPARE(ref.tell(Poison{}), stage::SendStatus::Sent);
        QCOMPARE(stage::waitFor(ref.ask(Add{1, 1}), 10s), 2);
        QCOMPARE(actor.deadLetterCount(), 1);
    }

    void timeout_callersAndDefaultNameTheActorAndAreDroppedUnprocessed()
    {
        CalcProbe probe;
        stage::Actor<Calc> actor;
        actor.setObjectName(QStringLiteral("calc"));
        QSignalSpy timeoutChanged(&actor, &stage::ActorBase::askTimeoutChanged);
        actor.setAskTimeout(150);
        QCOMPARE(actor.askTimeout(), 150);
        QCOMPARE(timeoutChanged.count(), 1);
        spawnCalc(actor, &probe);
        auto ref = actor.ref();
        Outcome slow;
        Outcome callers;
        Outcome byDefault;
        recordAsk(ref, Slow{2000, 1}, &slow, 10s);
        QElapsedTimer timer;
        timer.start();
        recordAsk(ref, Add{1, 0}, &callers, 60ms);
        recordAsk(ref, Add{2, 0}, &byDefault);
        QTRY_VERIFY_WITH_TIMEOUT(callers.ends.load() == 1 && byDefault.ends.load() == 1, Timeout);
        const qint64 elapsed = timer.elapsed();
        QCOMPARE(callers.kind, QStringLiteral("timeout"));
        QCOMPARE(callers.what, QStringLiteral("stage::Actor: actor 'calc' did not answer (anonymous namespace)::Add within 60 ms"));
        QCOMPARE(byDefault.kind, QStringLiteral("timeout"));
        QVERIFY2(byDefault.what.endsWith(QStringLiteral("within 150 ms")), qPrintable(byDefault.what));
        QVERIFY2(elapsed < 1900, qPrintable(QString::number(elapsed))); // not held up by the slow handler
        QTRY_COMPARE_WITH_TIMEOUT(slow.ends.load(), 1, Timeout);
        QCOMPARE(slow.value, 1);
        QTRY_COMPARE_WITH_TIMEOUT(actor.expiredAsks(), qint64(2), Timeout);
        QCOMPARE(probe.adds.load(), 0); // dropped when dequeued, not processed
        QCOMPARE(stage::waitFor(ref.ask(Total{}), 10s), 0);
    }

    void selfAsk_failsFastWithInvalidOperation_data()
    {
        QTest::addColumn<bool>("future");
        QTest::newRow("ask") << false;
        QTest::newRow("askFuture") << true;
    }
    void selfAsk_failsFastWithInvalidOperation()
    {
        QFETCH(bool, future);
        CalcProbe probe;
        stage::Actor<Calc> actor;
        actor.setObjectName(QStringLiteral("calc"));
        spawnCalc(actor, &probe);
        auto ref = actor.ref();
        QElapsedTimer timer;
        timer.start();
        const QString result = stage::waitFor(ref.ask(AskSelf{future}, 10s), 20s);
        QVERIFY2(result.startsWith(QStringLiteral("invalid after ")), qPrintable(result));
        QVERIFY2(result.contains(QStringLiteral("actor 'calc' asked itself")), qPrintable(result));
        QVERIFY2(timer.elapsed() < 2000, qPrintable(QString::number(timer.elapsed()))); // not the 5 s timeout
        QCOMPARE(stage::waitFor(ref.ask(Add{1, 2}), 10s), 3); // still serving
    }

    void deferredReply_acrossTwoActorsOnDifferentThreads()
    {
        EventLog log;
        stage::Actor<Doubler> doubler;
        doubler.setThreadCount(1);
        doubler.spawn([] { return 0; },
                      [&log](int &, const Double &m) -> QCoro::Task<int> {
                          co_await stage::sleep(200ms); // long enough for the front to serve a ping
                          log.add(QStringLiteral("double"));
                          co_return 2 * m.x;
                      });
        stage::Actor<Front> front;
        front.setThreadCount(1);
        auto doublerRef = doubler.ref();
        std::atomic<QThread *> frontThread{nullptr};
        std::atomic<QThread *> doublerThread{nullptr};
        front.spawn([] { return 0; },
                    [&, doublerRef](int &, Fetch &m, stage::Reply<int> &reply) {
                        frontThread = QThread::currentThread();
                        log.add(QStringLiteral("fetch"));
                        // noreply: the handler returns at once; the answer comes later.
                        answerLater(doublerRef, m.x, std::move(reply), &log);
                    },
                    [&log](int &pings, const Ping &) {
                        log.add(QStringLiteral("ping"));
                        return ++pings;
                    });
        auto frontRef = front.ref();
        Outcome fetched;
        Outcome pinged;
        // Fetch first, then Ping: the ping is answered while the fetch waits for the doubler.
        auto fetchTask = [](stage::ActorRef<Front> ref, Outcome *out) -> QCoro::Task<> {
            try {
                out->value = co_await ref.ask(Fetch{21});
            } catch (...) {
                out->kind = kindOf(std::current_exception(), &out->what);
            }
            out->ends.fetch_add(1);
        };
        auto pingTask = [](stage::ActorRef<Front> ref, Outcome *out) -> QCoro::Task<> {
            try {
                out->value = co_await ref.ask(Ping{});
            } catch (...) {
                out->kind = kindOf(std::current_exception(), &out->what);
            }
            out->ends.fetch_add(1);
        };
        fetchTask(frontRef, &fetched);
        pingTask(frontRef, &pinged);
        QTRY_VERIFY_WITH_TIMEOUT(fetched.ends.load() == 1 && pinged.ends.load() == 1, Timeout);
        QCOMPARE(fetched.kind, QString());
        QCOMPARE(fetched.value, 42);
        QCOMPARE(pinged.value, 1);
        QCOMPARE(log.events(),
                 (QStringList{QStringLiteral("fetch"), QStringLiteral("ping"), QStringLiteral("double"),
                              QStringLiteral("doubled")}));
        QVERIFY(frontThread.load() != QThread::currentThread());
        Q_UNUSED(doublerThread);
    }

    void ask_fromAnotherThread()
    {
        CalcProbe probe;
        stage::Actor<Calc> actor;
        spawnCalc(actor, &probe);
        auto ref = actor.ref();
        ScopedThread caller(QStringLiteral("caller"));
        constexpr int kAsks = 200;
        std::vector<std::unique_ptr<Outcome>> outcomes;
        for (int i = 0; i < kAsks; ++i)
            outcomes.push_back(std::make_unique<Outcome>());
        QVERIFY(runOn(caller.get(), [&] {
            for (int i = 0; i < kAsks; ++i)
                recordAsk(ref, Add{i, i}, outcomes[i].get());
        }));
        QTRY_VERIFY_WITH_TIMEOUT(outcomes.back()->ends.load() == 1, Timeout);
        for (int i = 0; i < kAsks; ++i) {
            QCOMPARE(outcomes[i]->ends.load(), 1);
            QCOMPARE(outcomes[i]->value, 2 * i);
            QCOMPARE(outcomes[i]->thread, caller.get()); // resumed on the caller's thread
        }
        QCOMPARE(probe.handlerThread.load(), QThread::currentThread());
    }

    void askFuture_continuationRunsOnTheContextThread_data()
    {
        QTest::addColumn<bool>("contextElsewhere");
        QTest::addColumn<int>("actorThreads");
        QTest::newRow("context here, actor here") << false << 0;
        QTest::newRow("context here, actor on its thread") << false << 1;
        QTest::newRow("context elsewhere, actor on its thread") << true << 1;
    }
    void askFuture_continuationRunsOnTheContextThread()
    {
        QFETCH(bool, contextElsewhere);
        QFETCH(int, actorThreads);
        CalcProbe probe;
        stage::Actor<Calc> actor;
        actor.setThreadCount(actorThreads);
        spawnCalc(actor, &probe);
        auto ref = actor.ref();
        ScopedThread contextThread(QStringLiteral("context"));
        QObject here;
        auto *elsewhere = new QObject;
        elsewhere->moveToThread(contextThread.get());
        QObject *context = contextElsewhere ? elsewhere : &here;
        std::atomic<int> calls{0};
        std::atomic<int> value{0};
        std::atomic<QThread *> ranOn{nullptr};
        QFuture<int> future = ref.askFuture(Add{40, 2});
        QVERIFY(!future.isFinished()); // never inside the call
        auto continued = stage::then(future, context, [&](int v) {
            value = v;
            ranOn = QThread::currentThread();
            calls.fetch_add(1);
        });
        QVERIFY(spinUntil([&] { return calls.load() == 1 && continued.isFinished(); }));
        QCOMPARE(value.load(), 42);
        QCOMPARE(ranOn.load(), context->thread());
        // A void reply, and Qt's own then(context, ...).
        QFuture<void> reset = ref.askFuture(Reset{});
        std::atomic<int> resets{0};
        auto afterReset = reset.then(&here, [&] { resets.fetch_add(1); });
        QVERIFY(spinUntil([&] { return afterReset.isFinished(); }));
        QCOMPARE(resets.load(), 1);
        QCOMPARE(stage::waitFor(ref.ask(Total{}), 10s), 0);
        elsewhere->deleteLater();
        QVERIFY(roundTrip(contextThread.get()));
    }

    void askFuture_failuresAreTyped()
    {
        CalcProbe probe;
        stage::Actor<Calc> actor;
        actor.setObjectName(QStringLiteral("calc"));
        actor.setBackoff(stage::Backoff::none());
        actor.setMaxRedeliveries(0);
        spawnCalc(actor, &probe);
        auto ref = actor.ref();
        auto failureOf = [](auto future) {
            QString what;
            QString kind;
            if (!spinUntil([&] { return future.isFinished(); }))
                return QStringLiteral("unfinished");
            try {
                future.waitForFinished();
                return QStringLiteral("value");
            } catch (...) {
                kind = kindOf(std::current_exception(), &what);
            }
            return kind + QStringLiteral(": ") + what;
        };
        QString poisoned = failureOf(ref.askFuture(Poison{}));
        QVERIFY2(poisoned.startsWith(QStringLiteral("deadLettered: ")) && poisoned.contains(QStringLiteral("poison pill")),
                 qPrintable(poisoned));
        // A timeout names the actor, the message and the duration, as ask()'s does.
        ref.tell(Slow{500, 1});
        QString timedOut = failureOf(ref.askFuture(Add{1, 1}, 50ms));
        QCOMPARE(timedOut, QStringLiteral("timeout: stage::Actor: actor 'calc' did not answer (anonymous namespace)::Add within 50 ms"));
        QString zero = failureOf(ref.askFuture(Add{1, 1}, 0ms));
        QVERIFY2(zero.startsWith(QStringLiteral("invalid: stage::ActorRef::askFuture: the timeout must be positive")),
                 qPrintable(zero));
        QString null = failureOf(stage::ActorRef<Calc>().askFuture(Add{1, 1}));
        QVERIFY2(null.startsWith(QStringLiteral("invalid: stage::ActorRef::askFuture: the reference is null")),
                 qPrintable(null));
        QTRY_COMPARE_WITH_TIMEOUT(actor.expiredAsks(), qint64(1), Timeout);
    }

    void askBlocking_fromAStdThread()
    {
        CalcProbe probe;
        stage::Actor<Calc> actor;
        actor.setObjectName(QStringLiteral("calc"));
        spawnCalc(actor, &probe);
        auto ref = actor.ref();
        constexpr int kAsks = 200;
        std::atomic<int> right{0};
        std::atomic<int> wrong{0};
        QString timeoutWhat;
        std::atomic<bool> finished{false};
        std::thread caller([&] {
            for (int i = 0; i < kAsks; ++i) {
                try {
                    if (ref.askBlocking(Add{i, 1}) == i + 1)
                        right.fetch_add(1);
                    else
                        wrong.fetch_add(1);
                } catch (...) {
                    wrong.fetch_add(1);
                }
            }
            ref.tell(Slow{400, 9});
            try {
                ref.askBlocking(Add{0, 0}, 50ms);
            } catch (const stage::TimeoutError &e) {
                timeoutWhat = QString::fromUtf8(e.what());
            }
            finished = true;
        });
        QVERIFY(spinUntil([&] { return finished.load(); }));
        caller.join();
        QCOMPARE(right.load(), kAsks);
        QCOMPARE(wrong.load(), 0);
        QCOMPARE(timeoutWhat, QStringLiteral("stage::Actor: actor 'calc' did not answer (anonymous namespace)::Add within 50 ms"));
        // On the actor's own thread it would wait for itself.
        QString what;
        try {
            ref.askBlocking(Total{});
        } catch (...) {
            QCOMPARE(kindOf(std::current_exception(), &what), QStringLiteral("invalid"));
        }
        QVERIFY2(what.contains(QStringLiteral("called on the thread of actor 'calc'")), qPrintable(what));
    }

    void badInput_isRefusedThroughTheDocumentedChannel()
    {
        // A null reference.
        stage::ActorRef<Calc> null;
        QVERIFY(null.isNull());
        QTest::ignoreMessage(QtWarningMsg,
                             "stage::ActorRef::tell: the reference is null (default-constructed); the message is dropped");
        QCOMPARE(null.tell(Add{1, 1}), stage::SendStatus::Closed);
        QString what;
        try {
            stage::waitFor(null.ask(Add{1, 1}), 10s);
        } catch (...) {
            QCOMPARE(kindOf(std::current_exception(), &what), QStringLiteral("invalid"));
        }
        QVERIFY2(what.startsWith(QStringLiteral("stage::ActorRef::ask: the reference is null")), qPrintable(what));
        try {
            null.askBlocking(Add{1, 1});
        } catch (...) {
            QCOMPARE(kindOf(std::current_exception(), &what), QStringLiteral("invalid"));
        }
        QVERIFY2(what.startsWith(QStringLiteral("stage::ActorRef::askBlocking: the reference is null")), qPrintable(what));

        CalcProbe probe;
        stage::Actor<Calc> actor;
        spawnCalc(actor, &probe);
        auto ref = actor.ref();
        // A zero timeout.
        try {
            stage::waitFor(ref.ask(Add{1, 1}, 0ms), 10s);
        } catch (...) {
            QCOMPARE(kindOf(std::current_exception(), &what), QStringLiteral("invalid"));
        }
        QVERIFY2(what.contains(QStringLiteral("the timeout must be positive")), qPrintable(what));
        // Setters.
        QTest::ignoreMessage(QtWarningMsg, "Actor::setAskTimeout: the timeout must be >= 1 ms, got 0; ignored");
        actor.setAskTimeout(0);
        QCOMPARE(actor.askTimeout(), 5000);
        QTest::ignoreMessage(QtWarningMsg, "Actor::setSize: an actor has exactly one worker, got 3; ignored");
        actor.setSize(3);
        QCOMPARE(actor.size(), 1);
        QTest::ignoreMessage(QtWarningMsg, "Actor::setSize: an actor has exactly one worker, got 2; set back to 1");
        QVERIFY(actor.setProperty("size", 2)); // through the meta-object (QML)
        QCOMPARE(actor.size(), 1);
        QTest::ignoreMessage(QtWarningMsg,
                             "Group::spawn: the group already has a factory (one factory per group); ignored");
        QVERIFY(!actor.spawn([] { return 0; }, [](int &, const Add &) { return 0; }, [](int &, const Total &) { return 0; },
                             [](int &, const Reset &) {}, [](int &, const Poison &) { return 0; },
                             [](int &, const FailOnce &) { return 0; }, [](int &, const Slow &) { return 0; },
                             [](int &, const AskSelf &) { return QString(); }));
        QCOMPARE(stage::waitFor(ref.ask(Add{1, 1}), 10s), 2); // unharmed
    }

    void destroyedActor_failsQueuedAsksAtOnceAndRefusesLaterOnes()
    {
        CalcProbe probe;
        auto *actor = new stage::Actor<Calc>;
        actor->setShutdownTimeout(2000);
        spawnCalc(*actor, &probe);
        auto ref = actor->ref();
        Outcome slow;
        Outcome queued;
        recordAsk(ref, Slow{5000, 1}, &slow, 20s);
        recordAsk(ref, Add{1, 1}, &queued, 20s);
        QTRY_COMPARE_WITH_TIMEOUT(probe.slowEntered.load(), 1, Timeout);
        QElapsedTimer timer;
        timer.start();
        delete actor;
        QTRY_VERIFY_WITH_TIMEOUT(slow.ends.load() == 1 && queued.ends.load() == 1, Timeout);
        QVERIFY2(timer.elapsed() < 3000, qPrintable(QString::number(timer.elapsed()))); // not their timeouts
        QCOMPARE(slow.kind, QStringLiteral("broken"));
        QCOMPARE(queued.kind, QStringLiteral("broken"));
        QCOMPARE(ref.tell(Add{1, 1}), stage::SendStatus::Closed);
        Outcome later;
        recordAsk(ref, Add{1, 1}, &later);
        QTRY_COMPARE_WITH_TIMEOUT(later.ends.load(), 1, Timeout);
        QCOMPARE(later.kind, QStringLiteral("closed"));
    }

    void supervised_restartedBySupervisorKeepsItsAddress()
    {
        CalcProbe probe;
        stage::Supervisor supervisor;
        supervisor.setBackoff(stage::Backoff::none());
        supervisor.setMaxRestarts(10);
        auto *actor = new stage::Actor<Calc>;
        actor->setObjectName(QStringLiteral("calc"));
        QVERIFY(supervisor.addChild(actor));
        spawnCalc(*actor, &probe);
        QVERIFY(supervisor.start());
        auto ref = actor->ref();
        QCOMPARE(stage::waitFor(ref.ask(Add{1, 2}), 10s), 3);
        Outcome failing;
        recordAsk(ref, FailOnce{1}, &failing);
        QTRY_COMPARE_WITH_TIMEOUT(failing.ends.load(), 1, Timeout);
        QCOMPARE(failing.value, 1); // answered by the incarnation the supervisor started
        QCOMPARE(probe.inits.load(), 2);
        QCOMPARE(supervisor.restarts(), qint64(1));
        QCOMPARE(stage::waitFor(ref.ask(Total{}), 10s), 0); // fresh state
        QCOMPARE(actor->statistics().failed, qint64(1));
        QVERIFY(actor->statistics().isConsistent());
        // A row of the tree model, like any group.
        stage::SupervisionTreeModel model;
        model.setRoot(&supervisor);
        model.flush();
        const QModelIndex row = model.indexOf(actor);
        QVERIFY(row.isValid());
        QCOMPARE(row.parent(), model.indexOf(&supervisor));
        QCOMPARE(model.data(row, stage::SupervisionTreeModel::NameRole).toString(), QStringLiteral("calc"));
        QCOMPARE(model.data(row, stage::SupervisionTreeModel::KindRole).toString(), QStringLiteral("Actor"));
        QCOMPARE(model.nodeAt(row), static_cast<stage::Node *>(actor));
        stage::waitFor(supervisor.shutdown());
    }

    void monitor_firesOncePerFailureWithTheReason()
    {
        CalcProbe probe;
        auto *actor = new stage::Actor<Calc>;
        actor->setBackoff(stage::Backoff::none());
        spawnCalc(*actor, &probe);
        auto ref = actor->ref();
        ScopedThread watcherThread(QStringLiteral("watcher"));
        QObject here;
        auto *elsewhere = new QObject;
        elsewhere->moveToThread(watcherThread.get());
        EventLog seenHere;
        EventLog seenElsewhere;
        std::atomic<QThread *> elsewhereRanOn{nullptr};
        QVERIFY(stage::monitor(ref, &here, [&](const QString &reason) { seenHere.add(reason); }));
        QVERIFY(stage::monitor(ref, elsewhere, [&](const QString &reason) {
            elsewhereRanOn = QThread::currentThread();
            seenElsewhere.add(reason);
        }));
        QSignalSpy down(actor, &stage::ActorBase::down);
        QCOMPARE(stage::waitFor(ref.ask(Add{1, 1}), 10s), 2); // no failure, no down
        QCOMPARE(stage::waitFor(ref.ask(FailOnce{1}), 10s), 1);
        QCOMPARE(stage::waitFor(ref.ask(FailOnce{2}), 10s), 2);
        QTRY_COMPARE_WITH_TIMEOUT(seenElsewhere.events().size(), 2, Timeout);
        const QStringList expected{QStringLiteral("failing once on 1"), QStringLiteral("failing once on 2")};
        QCOMPARE(seenHere.events(), expected);
        QCOMPARE(seenElsewhere.events(), expected);
        QCOMPARE(elsewhereRanOn.load(), watcherThread.get());
        QCOMPARE(down.count(), 2);
        // A restart asked for is not a failure.
        QVERIFY(actor->restart());
        QCOMPARE(stage::waitFor(ref.ask(Total{}), 10s), 0);
        QVERIFY(roundTrip(watcherThread.get()));
        QCOMPARE(seenHere.events().size(), 2);
        // Destroyed: one last down.
        delete actor;
        QCOMPARE(seenHere.events().size(), 3);
        QCOMPARE(seenHere.events().last(), QStringLiteral("destroyed"));
        QTRY_COMPARE_WITH_TIMEOUT(seenElsewhere.events().size(), 3, Timeout);
        // Bad input.
        QTest::ignoreMessage(QtWarningMsg, "stage::monitor: the actor has been destroyed; nothing is monitored");
        QVERIFY(!stage::monitor(ref, &here, [](const QString &) {}));
        QTest::ignoreMessage(QtWarningMsg, "stage::monitor: the reference is null (default-constructed); nothing is monitored");
        QVERIFY(!stage::monitor(stage::ActorRef<Calc>(), &here, [](const QString &) {}));
        stage::Actor<Calc> alive;
        QTest::ignoreMessage(QtWarningMsg, "stage::monitor: the context is null; nothing is monitored");
        QVERIFY(!stage::monitor(alive.ref(), nullptr, [](const QString &) {}));
        elsewhere->deleteLater();
        QVERIFY(roundTrip(watcherThread.get()));
    }

    void registry_findsTheActorByNameAcrossRestarts()
    {
        CalcProbe probe;
        auto *actor = new stage::Actor<Calc>;
        actor->setBackoff(stage::Backoff::none());
        spawnCalc(*actor, &probe);
        QVERIFY(stage::registerActor(QStringLiteral("tst_actor.calc"), actor->ref()));
        QVERIFY(stage::registeredActors().contains(QStringLiteral("tst_actor.calc")));
        auto found = stage::registeredActor<Calc>(QStringLiteral("tst_actor.calc"));
        QVERIFY(!found.isNull());
        QCOMPARE(found, actor->ref());
        QCOMPARE(stage::waitFor(found.ask(Add{2, 2}), 10s), 4);
        QCOMPARE(stage::waitFor(found.ask(FailOnce{5}), 10s), 5); // a failure and a restart
        QCOMPARE(probe.inits.load(), 2);
        auto again = stage::registeredActor<Calc>(QStringLiteral("tst_actor.calc"));
        QCOMPARE(again, found); // the same reference after the restart
        QCOMPARE(stage::waitFor(again.ask(Total{}), 10s), 0);
        // Another protocol: refused.
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral(
            "stage::registeredActor: actor tst_actor.calc has the protocol .*, not .*; a null reference is returned")));
        QVERIFY(stage::registeredActor<Doubler>(QStringLiteral("tst_actor.calc")).isNull());
        QVERIFY(stage::registeredActor<Calc>(QStringLiteral("tst_actor.none")).isNull());
        // Bad input.
        QTest::ignoreMessage(QtWarningMsg, "stage::registerActor: the name is empty; nothing is registered");
        QVERIFY(!stage::registerActor(QString(), actor->ref()));
        QTest::ignoreMessage(QtWarningMsg,
                             "stage::registerActor: the reference is null (default-constructed); nothing is registered as x");
        QVERIFY(!stage::registerActor(QStringLiteral("x"), stage::ActorRef<Calc>()));
        // Destroyed: unregistered.
        delete actor;
        QVERIFY(stage::registeredActor<Calc>(QStringLiteral("tst_actor.calc")).isNull());
        QVERIFY(!stage::registeredActors().contains(QStringLiteral("tst_actor.calc")));
        QVERIFY(!stage::unregisterActor(QStringLiteral("tst_actor.calc")));
        stage::Actor<Calc> other;
        QVERIFY(stage::registerActor(QStringLiteral("tst_actor.other"), other.ref()));
        QVERIFY(stage::unregisterActor(QStringLiteral("tst_actor.other")));
        QVERIFY(stage::registeredActor<Calc>(QStringLiteral("tst_actor.other")).isNull());
    }

    void stop_isNotQueuedBehindTheMessages()
    {
        CalcProbe probe;
        stage::Actor<Calc> actor;
        spawnCalc(actor, &probe);
        auto ref = actor.ref();
        QCOMPARE(ref.tell(Slow{400, 1}), stage::SendStatus::Sent);
        for (int i = 0; i < 100; ++i)
            QCOMPARE(ref.tell(Add{1, 0}), stage::SendStatus::Sent);
        QTRY_COMPARE_WITH_TIMEOUT(probe.slowEntered.load(), 1, Timeout);
        QVERIFY(actor.stop()); // a root: shuts down now, not after the 100 adds
        QTRY_COMPARE_WITH_TIMEOUT(actor.state(), stage::Node::State::Stopped, Timeout);
        QCOMPARE(probe.cancelled.load(), 1);
        QCOMPARE(probe.adds.load(), 0);
        QCOMPARE(ref.count(), 101); // the interrupted message is back, first
        QCOMPARE(ref.tell(Add{1, 0}), stage::SendStatus::Sent); // a stopped actor still takes mail
        QVERIFY(actor.start());
        QCOMPARE(stage::waitFor(ref.ask(Total{}, 10s), 20s), 101);
        QCOMPARE(probe.slowFinished.load(), 1);
        QCOMPARE(probe.inits.load(), 2);
    }

    void ask_waitsForRoomInABoundedMailbox()
    {
        CalcProbe probe;
        stage::Actor<Calc> actor(1);
        auto ref = actor.ref();
        QCOMPARE(ref.tell(Add{5, 0}), stage::SendStatus::Sent); // full: nobody consumes yet
        QCOMPARE(ref.tell(Add{6, 0}), stage::SendStatus::Full);
        Outcome waiting;
        recordAsk(ref, Add{1, 1}, &waiting, 10s);
        QVERIFY(roundTrip(QThread::currentThread()));
        QCOMPARE(waiting.ends.load(), 0); // waits for room, not refused
        spawnCalc(actor, &probe);
        QTRY_COMPARE_WITH_TIMEOUT(waiting.ends.load(), 1, Timeout);
        QCOMPARE(waiting.kind, QString());
        QCOMPARE(waiting.value, 2);
        QCOMPARE(stage::waitFor(ref.ask(Total{}), 10s), 7);
    }

    void replyTypes_areTheProtocols()
    {
        // Compile-time: each message's reply type, for every form (a message outside the
        // protocol is a static_assert, "the actor does not handle this message type").
        stage::ActorRef<Calc> ref;
        static_assert(std::is_same_v<decltype(ref.ask(Add{})), QCoro::Task<int>>);
        static_assert(std::is_same_v<decltype(ref.ask(Reset{})), QCoro::Task<void>>);
        static_assert(std::is_same_v<decltype(ref.ask(AskSelf{})), QCoro::Task<QString>>);
        static_assert(std::is_same_v<decltype(ref.askFuture(Add{})), QFuture<int>>);
        static_assert(std::is_same_v<decltype(ref.askFuture(Reset{})), QFuture<void>>);
        static_assert(std::is_same_v<decltype(ref.askBlocking(Total{})), int>);
        static_assert(std::is_same_v<decltype(ref.tell(Add{})), stage::SendStatus>);
        static_assert(stage::detail::ProtocolTraits<Calc>::accepts<Add>);
        static_assert(!stage::detail::ProtocolTraits<Calc>::accepts<Double>);
        QVERIFY(ref.isNull());
    }

    void restart_landingAsAnAsyncHandlerReturns_doesNotHandleItTwice()
    {
        // The handler asks for its actor's restart and returns without another suspension: the
        // stop is reported to the run after the handler has answered. The message is handled
        // once (acknowledged), answered once, and the restarted actor serves the next one.
        stage::Actor<Doubler> actor;
        actor.setBackoff(stage::Backoff::none());
        std::atomic<int> inits{0};
        std::atomic<int> entries{0};
        std::atomic<bool> restarted{false};
        actor.spawn([&inits] { return inits.fetch_add(1); },
                    [&](int &, const Double &m) -> QCoro::Task<int> {
                        entries.fetch_add(1);
                        co_await stage::sleep(1ms);
                        if (m.x == 1 && !restarted.exchange(true))
                            actor.restart();
                        co_return 2 * m.x;
                    });
        auto ref = actor.ref();
        QCOMPARE(stage::waitFor(ref.ask(Double{1}), 10s), 2);
        QCOMPARE(stage::waitFor(ref.ask(Double{5}), 10s), 10);
        QTRY_COMPARE_WITH_TIMEOUT(inits.load(), 2, Timeout);
        QCOMPARE(entries.load(), 2); // Double{1} once, Double{5} once
        QCOMPARE(actor.statistics().failed, qint64(0));
        QCOMPARE(actor.deadLetterCount(), 0);
    }

    void askCycle_endsInTheTimeoutAndTheWarningNamesTheCycle_data()
    {
        QTest::addColumn<int>("mode");
        QTest::newRow("from B's handler") << 0;
        QTest::newRow("from B's deferred reply") << 1;
    }
    void askCycle_endsInTheTimeoutAndTheWarningNamesTheCycle()
    {
        QFETCH(int, mode);
        CycleWiring wiring;
        stage::Actor<Cycler> a;
        stage::Actor<Cycler> b;
        a.setObjectName(QStringLiteral("cycleA"));
        b.setObjectName(QStringLiteral("cycleB"));
        a.setThreadCount(1); // each on its own thread: the chain travels with the asks
        b.setThreadCount(1);
        wiring.a = a.ref();
        wiring.b = b.ref();
        spawnCycler(a, &wiring);
        spawnCycler(b, &wiring);
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral(
            "^stage::ActorRef::ask: ask cycle: cycleA -> cycleB -> cycleA: actor cycleA is still in the handler that "
            "waits for this ask \\(.*Back\\), which will end in its timeout$")));
        QElapsedTimer timer;
        timer.start();
        const QString answer = stage::waitFor(askText(wiring.a, Start{mode}, 10s), 20s);
        // B's ask of A ended in its own timeout (400 ms), which names the cycle; A answered with it.
        QVERIFY2(answer.startsWith(QStringLiteral("timeout: stage::Actor: actor 'cycleA' did not answer ")), qPrintable(answer));
        QVERIFY2(answer.endsWith(QStringLiteral(" within 400 ms (ask cycle: cycleA -> cycleB -> cycleA)")), qPrintable(answer));
        QVERIFY(timer.elapsed() >= 390);
        // The Back queued behind A's Start was dropped unprocessed once A was free (its caller gone).
        QTRY_COMPARE_WITH_TIMEOUT(a.expiredAsks(), qint64(1), Timeout);
        QCOMPARE(wiring.backs.load(), 0);
        // No cycle any more: A is free, and the same asks are answered.
        QCOMPARE(stage::waitFor(askText(wiring.a, Back{}, 5s), 10s), QStringLiteral("7"));
    }

    void askCycle_chainsWithoutACycleAreNotWarned()
    {
        QTest::failOnWarning(QRegularExpression(QStringLiteral("ask cycle")));
        CycleWiring wiring;
        stage::Actor<Cycler> a;
        stage::Actor<Cycler> b;
        stage::Actor<Cycler> c;
        a.setObjectName(QStringLiteral("chainA"));
        b.setObjectName(QStringLiteral("chainB"));
        c.setObjectName(QStringLiteral("chainC"));
        b.setThreadCount(1);
        wiring.a = a.ref();
        wiring.b = b.ref();
        wiring.c = c.ref();
        spawnCycler(a, &wiring);
        spawnCycler(b, &wiring);
        spawnCycler(c, &wiring);
        // A -> B -> C: a chain, no cycle.
        QCOMPARE(stage::waitFor(askText(wiring.a, Start{2}, 5s), 10s), QStringLiteral("7"));
        // B asks A while A is idle (asked from outside, not from A's handler): no cycle either.
        QCOMPARE(stage::waitFor(askText(wiring.b, Hop{0}, 5s), 10s), QStringLiteral("7"));
        QCOMPARE(stage::waitFor(askText(wiring.b, Hop{1}, 5s), 10s), QStringLiteral("7"));
        QCOMPARE(wiring.backs.load(), 3);
        QCOMPARE(a.expiredAsks(), qint64(0));
    }

    void registry_scopedToASupervisorSubtree()
    {
        CalcProbe probe1, probe2;
        stage::Supervisor root;
        root.setBackoff(stage::Backoff::none());
        auto *left = new stage::Supervisor;
        auto *right = new stage::Supervisor;
        left->setMaxRestarts(10);
        QVERIFY(root.addChild(left));
        QVERIFY(root.addChild(right));
        auto *leftNames = new stage::Registry(left);
        leftNames->setObjectName(QStringLiteral("left"));
        auto *rightNames = new stage::Registry(right);
        QSignalSpy leftChanged(leftNames, &stage::Registry::namesChanged);
        auto *calc1 = new stage::Actor<Calc>;
        auto *calc2 = new stage::Actor<Calc>;
        calc1->setObjectName(QStringLiteral("calc1"));
        calc2->setObjectName(QStringLiteral("calc2"));
        QVERIFY(left->addChild(calc1));
        QVERIFY(right->addChild(calc2));
        spawnCalc(*calc1, &probe1);
        spawnCalc(*calc2, &probe2);
        auto *leftGroup = new stage::Group;
        QVERIFY(left->addChild(leftGroup));
        QVERIFY(root.start());

        // The nearest registry: the one attached to the node's supervisor, else the global one.
        QCOMPARE(stage::Registry::nearest(calc1), leftNames);
        QCOMPARE(stage::Registry::nearest(leftGroup), leftNames);
        QCOMPARE(stage::Registry::nearest(calc2), rightNames);
        QCOMPARE(stage::Registry::nearest(&root), stage::Registry::global());
        QCOMPARE(stage::Registry::nearest(leftNames), leftNames);
        QCOMPARE(stage::Registry::nearest(nullptr), stage::Registry::global());

        // One name per registry, the same name in two subtrees.
        QVERIFY(stage::Registry::nearest(calc1)->add(QStringLiteral("calc"), calc1->ref()));
        QVERIFY(rightNames->add(QStringLiteral("calc"), calc2->ref()));
        QVERIFY(leftNames->add(QStringLiteral("calc"), calc1->ref())); // the same actor again: a no-op
        QTest::ignoreMessage(QtWarningMsg,
                             "stage::Registry::add: the name calc is taken in registry \"left\" by actor 'calc1'; actor "
                             "'calc2' is not registered (remove the name first)");
        QVERIFY(!leftNames->add(QStringLiteral("calc"), calc2->ref()));
        QCOMPARE(leftNames->find<Calc>(QStringLiteral("calc")), calc1->ref());
        QCOMPARE(leftNames->names(), QStringList{QStringLiteral("calc")});
        QCOMPARE(leftNames->count(), 1);
        QTRY_COMPARE_WITH_TIMEOUT(leftChanged.size(), 1, Timeout);

        // Lookup walks up: the nearest registry, the ones above, then the global one.
        QCOMPARE(stage::Registry::lookup<Calc>(leftGroup, QStringLiteral("calc")), calc1->ref());
        QCOMPARE(stage::Registry::lookup<Calc>(calc2, QStringLiteral("calc")), calc2->ref());
        QVERIFY(stage::Registry::lookup<Calc>(&root, QStringLiteral("calc")).isNull());
        QVERIFY(stage::registerActor(QStringLiteral("tst_actor.scoped"), calc2->ref()));
        QCOMPARE(stage::Registry::lookup<Calc>(leftGroup, QStringLiteral("tst_actor.scoped")), calc2->ref());
        QCOMPARE(stage::Registry::lookup<Calc>(nullptr, QStringLiteral("tst_actor.scoped")), calc2->ref());
        QTest::ignoreMessage(QtWarningMsg,
                             "stage::registerActor: the name tst_actor.scoped is taken in registry \"global\" by actor "
                             "'calc2'; actor 'calc1' is not registered (remove the name first)");
        QVERIFY(!stage::registerActor(QStringLiteral("tst_actor.scoped"), calc1->ref()));
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral(
            "^stage::Registry::lookup: actor calc has the protocol stage::Protocol<.*Add.*>, not "
            "stage::Protocol<int \\(.*Double\\)>; a null reference is returned$")));
        QVERIFY(stage::Registry::lookup<Doubler>(leftGroup, QStringLiteral("calc")).isNull());

        // The reference survives restarts: the supervisor restarts calc1 after a failure.
        auto found = stage::Registry::lookup<Calc>(leftGroup, QStringLiteral("calc"));
        QCOMPARE(stage::waitFor(found.ask(Add{3, 4}), 10s), 7);
        QCOMPARE(stage::waitFor(found.ask(FailOnce{9}), 10s), 9);
        QVERIFY(left->restartChild(calc1));
        QCOMPARE(stage::waitFor(found.ask(Add{1, 1}), 10s), 2);
        QCOMPARE(probe1.inits.load(), 3);
        QCOMPARE(stage::Registry::lookup<Calc>(leftGroup, QStringLiteral("calc")), found);
        QCOMPARE(stage::waitFor(stage::Registry::lookup<Calc>(leftGroup, QStringLiteral("calc")).ask(Total{}), 10s), 2);

        // Bad input.
        QTest::ignoreMessage(QtWarningMsg, "stage::Registry::add: the name is empty; nothing is registered");
        QVERIFY(!leftNames->add(QString(), calc1->ref()));
        QTest::ignoreMessage(QtWarningMsg,
                             "stage::Registry::add: the reference is null (default-constructed); nothing is registered as y");
        QVERIFY(!leftNames->add(QStringLiteral("y"), stage::ActorRef<Calc>()));
        QVERIFY(!leftNames->remove(QStringLiteral("y")));

        // Destroyed: removed from every registry that held it.
        QVERIFY(leftNames->add(QStringLiteral("calc-again"), calc1->ref()));
        QTRY_COMPARE_WITH_TIMEOUT(leftChanged.size(), 2, Timeout);
        delete calc1;
        QCOMPARE(leftNames->count(), 0);
        QVERIFY(!leftNames->contains(QStringLiteral("calc")));
        QVERIFY(stage::Registry::lookup<Calc>(leftGroup, QStringLiteral("calc")).isNull());
        QTRY_COMPARE_WITH_TIMEOUT(leftChanged.size(), 3, Timeout); // one change for both names
        QVERIFY(rightNames->remove(QStringLiteral("calc")));
        QVERIFY(stage::unregisterActor(QStringLiteral("tst_actor.scoped")));
        QCOMPARE(rightNames->count(), 0);
        stage::waitFor(root.shutdown());
    }

    void throwingAsyncAndReplyingHandlers_keepTheReplyForTheRestartedActor()
    {
        std::atomic<int> inits{0};
        QMutex mutex;
        QSet<QString> thrown;
        auto throwOnce = [&](const QString &key) {
            QMutexLocker lock(&mutex);
            if (!thrown.contains(key)) {
                thrown.insert(key);
                throw std::runtime_error(key.toStdString());
            }
        };
        stage::Actor<Flaky> actor;
        actor.setObjectName(QStringLiteral("flaky"));
        actor.setBackoff(stage::Backoff::none());
        actor.spawn([&inits] { return inits.fetch_add(1) + 1; },
                    [&](int &, const AsyncFail &m) -> QCoro::Task<int> {
                        co_await stage::sleep(5ms); // throws after a suspension
                        throwOnce(QStringLiteral("async %1").arg(m.id));
                        co_return m.id;
                    },
                    [&](int &, ReplyingFail &m, stage::Reply<int> &reply) {
                        throwOnce(QStringLiteral("replying %1").arg(m.id)); // before answering: the reply stays
                        reply.send(m.id * 10);
                    },
                    [](int &, Forget &, stage::Reply<int> &) {}); // neither answers nor takes it
        auto ref = actor.ref();
        QCOMPARE(stage::waitFor(ref.ask(AsyncFail{3}), 10s), 3);
        QCOMPARE(stage::waitFor(ref.ask(ReplyingFail{4}), 10s), 40);
        QCOMPARE(inits.load(), 3); // two failures, two restarts
        QCOMPARE(actor.failed(), qint64(2));
        // A replying handler that drops its reply: a warning, and the caller knows at once.
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral(
            "stage::Actor: the handler of .*Forget in actor 'flaky' returned without answering its stage::Reply or taking "
            "it; the caller gets stage::BrokenReply")));
        QString what;
        try {
            stage::waitFor(ref.ask(Forget{}), 10s);
        } catch (...) {
            QCOMPARE(kindOf(std::current_exception(), &what), QStringLiteral("broken"));
        }
        QVERIFY2(!what.isEmpty(), "the ask did not fail");
        QCOMPARE(actor.failed(), qint64(2)); // not a failure of the actor
    }
};

QTEST_GUILESS_MAIN(tst_Actor)
#include "tst_actor.moc"
