// Tests of stage::Mailbox<T>, stage::Delivery<T> and the QObject side stage::MailboxBase:
// construction and bad capacities, trySend/send/sendBlocking, FIFO per producer and capacity
// under producer threads, receive as a cancellation point (also while a message is being handed
// over), redelivery after a failure or a stop, dead letters, close, the coalesced notifications,
// the QObject side's destruction, and consumer groups that give up or shut down (nothing lost).
//
// Consumers are free coroutine functions that record what they see in a Log; the test functions
// compare outside the coroutines (QCOMPARE cannot be used inside one).

#include "testutil.h"

#include <stage/stage.h>

#include <QtCore/QElapsedTimer>
#include <QtCore/QLoggingCategory>
#include <QtCore/QPointer>
#include <QtCore/QRegularExpression>
#include <QtTest/QSignalSpy>
#include <QtTest/QTest>

#include <algorithm>
#include <atomic>
#include <climits>
#include <functional>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mailboxtest {

using namespace std::chrono_literals;
using stage::Mailbox;
using stage::SendStatus;
using stagetest::ScopedThread;
using stagetest::Timeout;
using Kind = stage::WorkerExit::Kind;
using GroupState = stage::Group::State;
using Ptr = std::unique_ptr<int>;

constexpr std::chrono::milliseconds kTimeout(Timeout);

/* One delivery as a consumer saw it. */
struct Seen
{
    int value = 0;
    int failures = 0;   // Delivery::failures()
    int previous = 0;   // Delivery::previousDeliveries()
    int countAfter = 0; // Mailbox::count() right after the receive
    QThread *thread = nullptr;
    quint64 worker = 0;
    int generation = 0;
};

/* What the consumers of one test saw. Thread-safe: consumers may run on other threads. */
class Log
{
public:
    void add(const Seen &seen)
    {
        QMutexLocker lock(&m_mutex);
        m_seen.push_back(seen);
    }
    std::vector<Seen> seen() const
    {
        QMutexLocker lock(&m_mutex);
        return m_seen;
    }
    std::vector<int> values() const
    {
        QMutexLocker lock(&m_mutex);
        std::vector<int> v;
        for (const auto &s : m_seen)
            v.push_back(s.value);
        return v;
    }
    int size() const
    {
        QMutexLocker lock(&m_mutex);
        return int(m_seen.size());
    }

    std::atomic<int> entered{0};   // consumer bodies that began
    std::atomic<int> closed{0};    // consumers that got stage::MailboxClosed
    std::atomic<int> cancelled{0}; // consumers that got stage::Cancelled (and rethrew it)
    std::atomic<int> holding{0};   // deliveries held by Act::Hold
    std::atomic<QThread *> home{nullptr}; // Worker::thread() of the last body that began

private:
    mutable QMutex m_mutex;
    std::vector<Seen> m_seen;
};

/* What a consumer does with a message it received. */
enum class Act {
    Ack,                 // nothing: acknowledged when the next iteration begins
    AckAfterSuspending,  // a slow consumer: sleeps 2 ms, then acknowledges
    Fail,                // throws at once, holding it
    FailAfterSuspending, // sleeps 5 ms, then throws, holding it
    Hold,                // sleeps until stopped, holding it
    AckThenFail,         // ack(), then throws
};
using Policy = std::function<Act(int value)>;

std::string failureText(int value)
{
    return "consumer failed on " + std::to_string(value);
}

/* Receives until the mailbox is closed and drained; each message is handled as \a policy says. */
QCoro::Task<> consume(stage::Worker &w, Mailbox<int> mb, Log *log, Policy policy)
{
    log->entered.fetch_add(1);
    log->home.store(w.thread());
    try {
        for (;;) {
            auto d = co_await mb.receive();
            log->add(Seen{*d, d.failures(), d.previousDeliveries(), mb.count(), QThread::currentThread(), w.id(),
                          w.generation()});
            switch (policy ? policy(*d) : Act::Ack) {
            case Act::Ack:
                break;
            case Act::AckAfterSuspending:
                co_await stage::sleep(2ms);
                break;
            case Act::Fail:
                throw std::runtime_error(failureText(*d));
            case Act::FailAfterSuspending:
                co_await stage::sleep(5ms);
                throw std::runtime_error(failureText(*d));
            case Act::Hold:
                log->holding.fetch_add(1);
                co_await stage::sleep(60s);
                break;
            case Act::AckThenFail:
                d.ack();
                throw std::runtime_error(failureText(*d));
            }
        }
    } catch (const stage::MailboxClosed &) {
        log->closed.fetch_add(1);
    } catch (const stage::Cancelled &) {
        log->cancelled.fetch_add(1);
        throw;
    }
}

/* A consumer worker: a handle and the record of its exits. */
struct Consumer
{
    stage::WorkerHandle handle;
    stagetest::ExitRecorder exits{handle};

    bool start(Mailbox<int> mb, Log *log, Policy policy = {}, QThread *thread = nullptr)
    {
        return handle.start([mb, log, policy](stage::Worker &w) { return consume(w, mb, log, policy); }, thread);
    }
    /* Asks a running worker to stop and waits for its end. */
    bool stop()
    {
        if (handle.isRunning())
            handle.requestStop();
        return QTest::qWaitFor([this] { return !handle.isRunning(); }, Timeout);
    }
};

/* Plain coroutines (no worker), run with stage::waitFor(). */
QCoro::Task<int> receiveValue(Mailbox<int> mb)
{
    auto d = co_await mb.receive();
    co_return *d;
}

/* Sends \a value; \a state: 1 queued, 2 MailboxClosed, 3 Cancelled. */
QCoro::Task<> sendValue(Mailbox<int> mb, int value, std::atomic<int> *state, std::atomic<QThread *> *resumedOn)
{
    try {
        co_await mb.send(value);
        if (resumedOn)
            resumedOn->store(QThread::currentThread());
        state->store(1);
    } catch (const stage::MailboxClosed &) {
        state->store(2);
    } catch (const stage::Cancelled &) {
        state->store(3);
        throw;
    }
}

/* The identities that hold once no consumer holds a delivery. */
QString countsAddUp(const stage::MailboxStatistics &s, int count)
{
    QStringList wrong;
    if (s.queued != count + s.acknowledged + s.deadLettered)
        wrong << QStringLiteral("queued %1 != count %2 + acknowledged %3 + deadLettered %4")
                     .arg(s.queued)
                     .arg(count)
                     .arg(s.acknowledged)
                     .arg(s.deadLettered);
    if (s.delivered != s.acknowledged + s.redelivered + s.deadLettered)
        wrong << QStringLiteral("delivered %1 != acknowledged %2 + redelivered %3 + deadLettered %4")
                     .arg(s.delivered)
                     .arg(s.acknowledged)
                     .arg(s.redelivered)
                     .arg(s.deadLettered);
    return wrong.join(QStringLiteral("; "));
}

/* Takes and acknowledges everything queued now; returns how many. */
template<typename T>
int drainAll(const Mailbox<T> &mb)
{
    int n = 0;
    while (auto d = mb.tryReceive()) {
        d->ack();
        ++n;
    }
    return n;
}

using stagetest::spinUntil;

/* Takes and acknowledges everything queued now; returns the values with their failures(). */
std::vector<std::pair<int, int>> drain(const Mailbox<int> &mb)
{
    std::vector<std::pair<int, int>> out;
    while (auto d = mb.tryReceive()) {
        out.emplace_back(**d, d->failures());
        d->ack();
    }
    return out;
}

std::vector<int> range(int from, int to)
{
    std::vector<int> v;
    for (int i = from; i < to; ++i)
        v.push_back(i);
    return v;
}

QString deadLetterWarning(int failures)
{
    return QStringLiteral("Mailbox: a message failed %1 consumer(s) and was moved to the dead letters").arg(failures);
}

/* Row parameters. */
enum class SendKind { TrySend, SendBlocking, SendBlockingTimeout, Send };
enum class CloseWhen { BeforeConsumerStarts, WhileConsumerWaits, WhileConsumerHolds };
enum class Deletion { Parent, ObjectDirectly };
enum class Settle { Ack, Destroy, FailAndRequeue };
enum class GroupEnd { GivesUp, ShutDown };

// ---- the consumer group of group_nothingLost ----

enum class Role { First, Second };

struct GroupLog : Log
{
    int ackFirst = 0;          // the first worker acknowledges this many before its act
    Act firstAct = Act::Fail;  // Fail or Hold
    Act secondAct = Act::Fail; // Fail or Hold
    std::atomic<int> firstAcked{0};
    QMutex roleMutex;
    quint64 firstId = 0;

    Role roleOf(quint64 id)
    {
        QMutexLocker lock(&roleMutex);
        if (!firstId)
            firstId = id;
        return id == firstId ? Role::First : Role::Second;
    }
};

/* The first worker (by id, across restarts) acknowledges ackFirst messages, then fails or holds;
   the others wait until it holds, then fail or hold. */
QCoro::Task<> groupConsumer(stage::Worker &w, Mailbox<int> mb, GroupLog *g)
{
    g->entered.fetch_add(1);
    const Role role = g->roleOf(w.id());
    try {
        while (role == Role::Second && g->holding.load() == 0)
            co_await stage::sleep(1ms);
        for (;;) {
            auto d = co_await mb.receive();
            g->add(Seen{*d, d.failures(), d.previousDeliveries(), mb.count(), QThread::currentThread(), w.id(),
                        w.generation()});
            if (role == Role::First && g->firstAcked.load() < g->ackFirst) {
                g->firstAcked.fetch_add(1);
                continue;
            }
            if ((role == Role::First ? g->firstAct : g->secondAct) == Act::Hold) {
                g->holding.fetch_add(1);
                co_await stage::sleep(60s);
                continue;
            }
            throw std::runtime_error(failureText(*d));
        }
    } catch (const stage::Cancelled &) {
        g->cancelled.fetch_add(1);
        throw;
    }
}

} // namespace mailboxtest

using namespace mailboxtest;

Q_DECLARE_METATYPE(mailboxtest::Act)
Q_DECLARE_METATYPE(mailboxtest::SendKind)
Q_DECLARE_METATYPE(mailboxtest::CloseWhen)
Q_DECLARE_METATYPE(mailboxtest::Deletion)
Q_DECLARE_METATYPE(mailboxtest::Settle)
Q_DECLARE_METATYPE(mailboxtest::GroupEnd)

class tst_Mailbox : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    // construction
    void construct_data();
    void construct();
    void construct_badCapacityWarnsAndUsesOne_data();
    void construct_badCapacityWarnsAndUsesOne();
    void handle_copiesShareOneQueue();
    void setMaxRedeliveries_notifiesOnChangeOnly();
    void setMaxRedeliveries_negativeWarnsAndIsIgnored();
    void destroyed_withQueuedMessagesWarns();
    void maxRedeliveriesChanged_slotMayReadTheMailbox();

    // sending
    void trySend_fullReturnsFullAndKeepsTheValue_data();
    void trySend_fullReturnsFullAndKeepsTheValue();
    void trySend_unboundedIsNeverFull();
    void send_refusedWhenClosed_data();
    void send_refusedWhenClosed();
    void sendBlocking_timeoutReturnsFull_data();
    void sendBlocking_timeoutReturnsFull();
    void sendBlocking_waitsForRoom();
    void sendBlocking_closeWakesBlockedSender();
    void send_waitsWhenFull_data();
    void send_waitsWhenFull();
    void send_cancelledWhileWaitingDoesNotQueue();
    void send_closedWhileWaitingThrowsMailboxClosed();

    // receiving
    void receive_moveOnlyValuesInOrder_data();
    void receive_moveOnlyValuesInOrder();
    void receive_fifoPerProducerFromFourThreads_data();
    void receive_fifoPerProducerFromFourThreads();
    void sendBlocking_slowConsumerMakesProducersWait_data();
    void sendBlocking_slowConsumerMakesProducersWait();
    void receive_onGroupThreadResumesOnHomeThread();
    void receive_isACancellationPoint_data();
    void receive_isACancellationPoint();
    void receive_cancelledWhileMessageHandedOver_data();
    void receive_cancelledWhileMessageHandedOver();
    void tryReceive_data();
    void tryReceive();

    // deliveries
    void delivery_failureRedeliversToNextConsumer_data();
    void delivery_failureRedeliversToNextConsumer();
    void delivery_stoppedWhileHoldingIsRequeuedWithoutFailure_data();
    void delivery_stoppedWhileHoldingIsRequeuedWithoutFailure();
    void delivery_ackBeforeFailingIsNotRedelivered();
    void delivery_failureOutsideAWorkerIsRedelivered();
    void delivery_movedDeliveryIsAcknowledgedOnce();
    void delivery_failureHoldingSeveralKeepsTheirOrder();
    void deadLetter_poisonAfterMaxRedeliveries_data();
    void deadLetter_poisonAfterMaxRedeliveries();
    void deadLetter_moveOnlyValue();
    void deadLetter_reasonSurvivesTheWorkersLaterEnd_data();
    void deadLetter_reasonSurvivesTheWorkersLaterEnd();
    void delivery_otherExceptionAfterAStopIsStillAStop_data();
    void delivery_otherExceptionAfterAStopIsStillAStop();
    void deadLetterLimit_dropsTheOldestAndCountsThem();
    void deadLetterLimit_loweringDropsAtOnce();
    void deadLetterLimit_zeroKeepsNone();
    void deadLetterLimit_dropLogIsThrottled();
    void setDeadLetterLimit_negativeWarnsAndIsIgnored();

    // closing
    void close_drainsThenMailboxClosed_data();
    void close_drainsThenMailboxClosed();
    void close_wakesEveryWaitingConsumerOnce();

    // the QObject side
    void object_propertiesMirrorTheMailbox();
    void object_countChangedIsCoalesced_data();
    void object_countChangedIsCoalesced();
    void object_statisticsChangedReportsTheLastChange_data();
    void object_statisticsChangedReportsTheLastChange();
    void object_deletedClosesMailboxWhileConsumerWaits_data();
    void object_deletedClosesMailboxWhileConsumerWaits();
    void object_deletedWithNotificationPending();
    void object_ownedObjectDiesWithTheLastHandle();

    // consumer groups
    void group_nothingLost_data();
    void group_nothingLost();
    void count_exactAfterBurstsToWaitingConsumers();
};

// ---- construction ----

void tst_Mailbox::construct_data()
{
    QTest::addColumn<int>("capacity"); // 0: the default constructor
    QTest::addColumn<int>("expected");
    QTest::newRow("unbounded") << 0 << -1;
    QTest::newRow("capacity 1") << 1 << 1;
    QTest::newRow("capacity 16") << 16 << 16;
}

void tst_Mailbox::construct()
{
    QFETCH(int, capacity);
    QFETCH(int, expected);
    const Mailbox<int> mb = capacity ? Mailbox<int>(capacity) : Mailbox<int>();
    QCOMPARE(mb.capacity(), expected);
    QCOMPARE(mb.count(), 0);
    QVERIFY(!mb.isClosed());
    QCOMPARE(mb.maxRedeliveries(), 3);
    QCOMPARE(mb.deadLetterCount(), 0);
    QCOMPARE(mb.deadLetterLimit(), 1000);
    QVERIFY(countsAddUp(mb.statistics(), 0).isEmpty());
    QCOMPARE(mb.statistics().queued, 0);
    QCOMPARE(mb.statistics().deadLettersDropped, 0);
    QVERIFY(mb.object());
    QCOMPARE(mb.object()->capacity(), expected);
    QCOMPARE(mb.object()->property("capacity").toInt(), expected);
    QCOMPARE(mb.object()->property("closed").toBool(), false);
    QCOMPARE(mb.object()->property("maxRedeliveries").toInt(), 3);
    QCOMPARE(mb.object()->property("deadLetterLimit").toInt(), 1000);
    QCOMPARE(mb.object()->property("deadLettersDropped").toLongLong(), 0);
    QCOMPARE(mb.object(), mb.object()); // created once
}

void tst_Mailbox::construct_badCapacityWarnsAndUsesOne_data()
{
    QTest::addColumn<int>("capacity");
    QTest::newRow("0") << 0;
    QTest::newRow("-1") << -1;
    QTest::newRow("-100") << -100;
    QTest::newRow("INT_MIN") << INT_MIN;
}

void tst_Mailbox::construct_badCapacityWarnsAndUsesOne()
{
    QFETCH(int, capacity);
    QTest::ignoreMessage(QtWarningMsg,
                         qPrintable(QStringLiteral("Mailbox: the capacity must be >= 1 (use Mailbox() for an "
                                                   "unbounded one), got %1; using 1")
                                        .arg(capacity)));
    QObject parent;
    const Mailbox<int> mb(capacity, &parent);
    QCOMPARE(mb.capacity(), 1);
    QCOMPARE(mb.object()->capacity(), 1);
    QCOMPARE(mb.object()->parent(), &parent);
    QCOMPARE(mb.trySend(1), SendStatus::Sent);
    QCOMPARE(mb.trySend(2), SendStatus::Full);
    QCOMPARE(mb.count(), 1);
    QCOMPARE(mb.statistics().queued, 1);
    QCOMPARE(drainAll(mb), 1);
}

void tst_Mailbox::handle_copiesShareOneQueue()
{
    const Mailbox<int> a(4);
    const Mailbox<int> b = a; // NOLINT: a copy on purpose
    const Mailbox<int> other(4);
    QVERIFY(a == b);
    QVERIFY(!(a == other));
    QCOMPARE(a.object(), b.object());
    QCOMPARE(a.trySend(1), SendStatus::Sent);
    QCOMPARE(b.trySend(2), SendStatus::Sent);
    QCOMPARE(b.count(), 2);
    QCOMPARE(other.count(), 0);
    QCOMPARE(stage::waitFor(receiveValue(b), kTimeout), 1);
    QCOMPARE(stage::waitFor(receiveValue(a), kTimeout), 2);
    b.close();
    QVERIFY(a.isClosed());
    QVERIFY(!other.isClosed());
}

void tst_Mailbox::setMaxRedeliveries_notifiesOnChangeOnly()
{
    const Mailbox<int> mb;
    QSignalSpy spy(mb.object(), &stage::MailboxBase::maxRedeliveriesChanged);
    mb.setMaxRedeliveries(5);
    mb.setMaxRedeliveries(5); // unchanged: no signal
    mb.object()->setMaxRedeliveries(0);
    QCOMPARE(mb.maxRedeliveries(), 0);
    QCOMPARE(mb.object()->maxRedeliveries(), 0);
    QTRY_COMPARE_WITH_TIMEOUT(spy.count(), 2, Timeout);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(spy.count(), 2);
    QCOMPARE(spy.at(0).at(0).toInt(), 5);
    QCOMPARE(spy.at(1).at(0).toInt(), 0);
}

void tst_Mailbox::setMaxRedeliveries_negativeWarnsAndIsIgnored()
{
    const Mailbox<int> mb;
    mb.setMaxRedeliveries(2);
    QSignalSpy spy(mb.object(), &stage::MailboxBase::maxRedeliveriesChanged);
    QTest::ignoreMessage(QtWarningMsg, "Mailbox::setMaxRedeliveries: the count must be >= 0, got -1; ignored");
    mb.setMaxRedeliveries(-1);
    QTest::ignoreMessage(QtWarningMsg, "Mailbox::setMaxRedeliveries: the count must be >= 0, got -7; ignored");
    mb.object()->setProperty("maxRedeliveries", -7);
    QCOMPARE(mb.maxRedeliveries(), 2);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(spy.count(), 0);
}

void tst_Mailbox::destroyed_withQueuedMessagesWarns()
{
    QTest::ignoreMessage(QtWarningMsg, "Mailbox: destroyed with 3 message(s) still queued");
    {
        const Mailbox<int> mb(8);
        for (int i = 0; i < 3; ++i)
            QCOMPARE(mb.trySend(int(i)), SendStatus::Sent);
    }
    // A drained mailbox goes quietly.
    QTest::failOnWarning(QRegularExpression(QStringLiteral("destroyed with")));
    {
        const Mailbox<int> mb(8);
        QCOMPARE(mb.trySend(1), SendStatus::Sent);
        QCOMPARE(int(drain(mb).size()), 1);
    }
}

void tst_Mailbox::maxRedeliveriesChanged_slotMayReadTheMailbox()
{
    // A slot (or a QML binding) on maxRedeliveriesChanged reads the mailbox, on the object's own
    // thread. This runs on a thread of its own, so that a deadlock fails the test instead of
    // hanging the suite (the deadlocked thread is then leaked on purpose).
    auto *thread = new QThread;
    thread->setObjectName(QStringLiteral("maxRedeliveries"));
    thread->start();
    auto *context = new QObject;
    context->moveToThread(thread);
    auto seen = std::make_shared<std::atomic<int>>(-1); // deadLetterCount() + count, as the slot saw it
    auto done = std::make_shared<std::atomic<bool>>(false);
    QMetaObject::invokeMethod(
        context,
        [seen, done] {
            const Mailbox<int> mb; // its QObject side is created on this thread
            const Mailbox<int> *handle = &mb;
            QObject::connect(mb.object(), &stage::MailboxBase::maxRedeliveriesChanged, mb.object(),
                             [handle, seen](int count) { seen->store(handle->deadLetterCount() + count); });
            mb.setMaxRedeliveries(5);
            stagetest::roundTrip(QThread::currentThread()); // a queued emission arrives meanwhile
            done->store(true);
        },
        Qt::QueuedConnection);
    if (!QTest::qWaitFor([&] { return done->load(); }, Timeout))
        QFAIL("setMaxRedeliveries() did not return: the slot deadlocked on the mailbox (thread leaked)");
    QCOMPARE(seen->load(), 5);
    thread->quit();
    QVERIFY(thread->wait(Timeout));
    delete context;
    delete thread;
}

// ---- sending ----

void tst_Mailbox::trySend_fullReturnsFullAndKeepsTheValue_data()
{
    QTest::addColumn<int>("capacity");
    QTest::newRow("capacity 1") << 1;
    QTest::newRow("capacity 3") << 3;
}

void tst_Mailbox::trySend_fullReturnsFullAndKeepsTheValue()
{
    QFETCH(int, capacity);
    const Mailbox<Ptr> mb(capacity);
    for (int i = 0; i < capacity; ++i) {
        auto p = std::make_unique<int>(i);
        QCOMPARE(mb.trySend(std::move(p)), SendStatus::Sent);
        QVERIFY(!p); // moved from when Sent
    }
    QCOMPARE(mb.count(), capacity);
    auto extra = std::make_unique<int>(99);
    int *const raw = extra.get();
    QCOMPARE(mb.trySend(std::move(extra)), SendStatus::Full);
    QCOMPARE(extra.get(), raw); // still the caller's
    QCOMPARE(*extra, 99);
    QCOMPARE(mb.count(), capacity);
    QCOMPARE(mb.statistics().queued, capacity);

    // Room again after one receive.
    auto first = mb.tryReceive();
    QVERIFY(first);
    QCOMPARE(***first, 0);
    QCOMPARE(mb.trySend(std::move(extra)), SendStatus::Sent);
    QVERIFY(!extra);
    first.reset();
    std::vector<int> rest;
    while (auto d = mb.tryReceive())
        rest.push_back(***d);
    std::vector<int> expected = range(1, capacity);
    expected.push_back(99);
    QCOMPARE(rest, expected);
}

void tst_Mailbox::trySend_unboundedIsNeverFull()
{
    const Mailbox<int> mb;
    for (int i = 0; i < 10000; ++i) {
        if (mb.trySend(int(i)) != SendStatus::Sent)
            QFAIL(qPrintable(QStringLiteral("trySend %1 refused").arg(i)));
    }
    QCOMPARE(mb.count(), 10000);
    const auto all = drain(mb);
    QCOMPARE(int(all.size()), 10000);
    for (int i = 0; i < 10000; ++i)
        QCOMPARE(all[i].first, i);
}

void tst_Mailbox::send_refusedWhenClosed_data()
{
    QTest::addColumn<SendKind>("kind");
    QTest::addColumn<int>("queued"); // messages queued before the close
    QTest::newRow("trySend, empty") << SendKind::TrySend << 0;
    QTest::newRow("trySend, 2 queued") << SendKind::TrySend << 2;
    QTest::newRow("sendBlocking, empty") << SendKind::SendBlocking << 0;
    QTest::newRow("sendBlocking, full") << SendKind::SendBlocking << 2;
    QTest::newRow("sendBlocking with timeout, full") << SendKind::SendBlockingTimeout << 2;
    QTest::newRow("send, empty") << SendKind::Send << 0;
    QTest::newRow("send, full") << SendKind::Send << 2;
}

QCoro::Task<int> sendPtr(Mailbox<Ptr> mb, Ptr value)
{
    try {
        co_await mb.send(std::move(value));
        co_return 1;
    } catch (const stage::MailboxClosed &) {
        co_return 2;
    }
}

void tst_Mailbox::send_refusedWhenClosed()
{
    QFETCH(SendKind, kind);
    QFETCH(int, queued);
    const Mailbox<Ptr> mb(2);
    for (int i = 0; i < queued; ++i)
        QCOMPARE(mb.trySend(std::make_unique<int>(i)), SendStatus::Sent);
    QSignalSpy closedSpy(mb.object(), &stage::MailboxBase::closedChanged);
    mb.close();
    QVERIFY(mb.isClosed());

    auto value = std::make_unique<int>(42);
    switch (kind) {
    case SendKind::TrySend:
        QCOMPARE(mb.trySend(std::move(value)), SendStatus::Closed);
        QVERIFY(value); // still the caller's
        break;
    case SendKind::SendBlocking:
        QCOMPARE(mb.sendBlocking(std::move(value)), SendStatus::Closed);
        QVERIFY(value);
        break;
    case SendKind::SendBlockingTimeout:
        QCOMPARE(mb.sendBlocking(std::move(value), 10s), SendStatus::Closed);
        QVERIFY(value);
        break;
    case SendKind::Send:
        QCOMPARE(stage::waitFor(sendPtr(mb, std::move(value)), kTimeout), 2);
        QVERIFY_THROWS_EXCEPTION(stage::MailboxClosed, stage::waitFor(mb.send(std::make_unique<int>(7)), kTimeout));
        break;
    }
    QCOMPARE(mb.count(), queued);
    QCOMPARE(mb.statistics().queued, queued);
    // Nothing queued is lost by closing: what was there is still received, in order.
    std::vector<int> drained;
    while (auto d = mb.tryReceive())
        drained.push_back(***d);
    QCOMPARE(drained, range(0, queued));
    QTRY_COMPARE_WITH_TIMEOUT(closedSpy.count(), 1, Timeout);
    QCOMPARE(closedSpy.at(0).at(0).toBool(), true);
}

void tst_Mailbox::sendBlocking_timeoutReturnsFull_data()
{
    QTest::addColumn<int>("timeoutMs");
    QTest::newRow("0 ms") << 0;
    QTest::newRow("50 ms") << 50;
    QTest::newRow("200 ms") << 200;
}

void tst_Mailbox::sendBlocking_timeoutReturnsFull()
{
    QFETCH(int, timeoutMs);
    const Mailbox<Ptr> mb(1);
    QCOMPARE(mb.trySend(std::make_unique<int>(1)), SendStatus::Sent);
    auto value = std::make_unique<int>(2);
    QElapsedTimer timer;
    timer.start();
    const SendStatus status = mb.sendBlocking(std::move(value), std::chrono::milliseconds(timeoutMs));
    const qint64 elapsed = timer.elapsed();
    QCOMPARE(status, SendStatus::Full);
    QVERIFY(value);
    QCOMPARE(*value, 2);
    QVERIFY2(elapsed >= timeoutMs - 1, qPrintable(QStringLiteral("returned after %1 ms").arg(elapsed)));
    QVERIFY2(elapsed < timeoutMs + 5000, qPrintable(QStringLiteral("returned after %1 ms").arg(elapsed)));
    QCOMPARE(mb.count(), 1);
    QCOMPARE(mb.statistics().queued, 1);
    QCOMPARE(drainAll(mb), 1);
}

void tst_Mailbox::sendBlocking_waitsForRoom()
{
    // The sender thread blocks on a full mailbox; it returns only after the receive made room.
    const Mailbox<int> mb(1);
    QCOMPARE(mb.trySend(1), SendStatus::Sent);
    stagetest::EventLog order;
    std::atomic<bool> calling{false};
    SendStatus status = SendStatus::Full;
    std::thread producer([&] {
        calling = true;
        status = mb.sendBlocking(2);
        order.add(QStringLiteral("sent"));
    });
    QTRY_VERIFY_WITH_TIMEOUT(calling.load(), Timeout);
    QTest::qWait(50); // a chance to return too early (the order below would show it)
    order.add(QStringLiteral("receiving"));
    auto first = mb.tryReceive();
    producer.join();
    QVERIFY(first);
    QCOMPARE(**first, 1);
    QCOMPARE(status, SendStatus::Sent);
    QCOMPARE(order.events(), (QStringList{QStringLiteral("receiving"), QStringLiteral("sent")}));
    QCOMPARE(mb.count(), 1);
    QCOMPARE(stage::waitFor(receiveValue(mb), kTimeout), 2);
}

void tst_Mailbox::sendBlocking_closeWakesBlockedSender()
{
    const Mailbox<Ptr> mb(1);
    QCOMPARE(mb.trySend(std::make_unique<int>(1)), SendStatus::Sent);
    stagetest::EventLog order;
    std::atomic<bool> calling{false};
    SendStatus status = SendStatus::Sent;
    bool kept = false;
    std::thread producer([&] {
        auto value = std::make_unique<int>(2);
        calling = true;
        status = mb.sendBlocking(std::move(value)); // no time limit
        kept = value && *value == 2;
        order.add(QStringLiteral("returned"));
    });
    QTRY_VERIFY_WITH_TIMEOUT(calling.load(), Timeout);
    QTest::qWait(50); // a chance to return too early
    order.add(QStringLiteral("closing"));
    mb.close();
    producer.join();
    QCOMPARE(status, SendStatus::Closed);
    QVERIFY(kept);
    QCOMPARE(order.events(), (QStringList{QStringLiteral("closing"), QStringLiteral("returned")}));
    QCOMPARE(mb.count(), 1); // the queued one is still there
    auto d = mb.tryReceive();
    QVERIFY(d);
    QCOMPARE(***d, 1);
}

void tst_Mailbox::send_waitsWhenFull_data()
{
    QTest::addColumn<bool>("onThread"); // the sender is a worker on another thread
    QTest::newRow("sender on the main thread") << false;
    QTest::newRow("sender worker on a thread") << true;
}

QCoro::Task<> sendingWorker(Mailbox<int> mb, int value, std::atomic<int> *state, std::atomic<QThread *> *resumedOn)
{
    co_await sendValue(mb, value, state, resumedOn);
}

void tst_Mailbox::send_waitsWhenFull()
{
    QFETCH(bool, onThread);
    ScopedThread thread;
    const Mailbox<int> mb(1);
    QCOMPARE(mb.trySend(1), SendStatus::Sent);
    std::atomic<int> state{0};
    std::atomic<QThread *> resumedOn{nullptr};
    stage::WorkerHandle sender;
    stagetest::ExitRecorder exits(sender);
    QThread *home = onThread ? thread.get() : QThread::currentThread();
    sender.start([mb, &state, &resumedOn] { return sendingWorker(mb, 2, &state, &resumedOn); }, home);
    QVERIFY(stagetest::roundTrip(home)); // it has suspended in send()
    QCOMPARE(state.load(), 0);
    QCOMPARE(mb.count(), 1);
    QCOMPARE(mb.statistics().queued, 1);

    auto first = mb.tryReceive(); // makes room: the waiting sender's value goes in
    QVERIFY(first);
    QCOMPARE(**first, 1);
    QTRY_COMPARE_WITH_TIMEOUT(state.load(), 1, Timeout);
    QCOMPARE(resumedOn.load(), home);
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), Kind::Completed);
    QCOMPARE(mb.count(), 1);
    auto second = mb.tryReceive();
    QVERIFY(second);
    QCOMPARE(**second, 2);
    QCOMPARE(mb.statistics().queued, 2);
}

void tst_Mailbox::send_cancelledWhileWaitingDoesNotQueue()
{
    const Mailbox<int> mb(1);
    QCOMPARE(mb.trySend(1), SendStatus::Sent);
    std::atomic<int> state{0};
    stage::WorkerHandle sender;
    stagetest::ExitRecorder exits(sender);
    sender.start([mb, &state] { return sendingWorker(mb, 2, &state, nullptr); });
    QCOMPARE(state.load(), 0); // suspended in send()
    sender.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), Kind::Cancelled);
    QCOMPARE(state.load(), 3);
    // Room now: the cancelled value must not slip in.
    auto first = mb.tryReceive();
    QVERIFY(first);
    QCOMPARE(**first, 1);
    first.reset();
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(mb.count(), 0);
    QVERIFY(!mb.tryReceive());
    QCOMPARE(mb.statistics().queued, 1);
}

void tst_Mailbox::send_closedWhileWaitingThrowsMailboxClosed()
{
    const Mailbox<int> mb(1);
    QCOMPARE(mb.trySend(1), SendStatus::Sent);
    std::atomic<int> state{0};
    stage::WorkerHandle sender;
    stagetest::ExitRecorder exits(sender);
    sender.start([mb, &state] { return sendingWorker(mb, 2, &state, nullptr); });
    QCOMPARE(state.load(), 0);
    mb.close();
    QTRY_COMPARE_WITH_TIMEOUT(state.load(), 2, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), Kind::Completed);
    QCOMPARE(mb.count(), 1);
    QCOMPARE(mb.statistics().queued, 1);
    QCOMPARE(stage::waitFor(receiveValue(mb), kTimeout), 1);
    QVERIFY_THROWS_EXCEPTION(stage::MailboxClosed, stage::waitFor(receiveValue(mb), kTimeout));
}

// ---- receiving ----

void tst_Mailbox::receive_moveOnlyValuesInOrder_data()
{
    QTest::addColumn<int>("capacity"); // 0: unbounded
    QTest::newRow("unbounded") << 0;
    QTest::newRow("capacity 1") << 1;
    QTest::newRow("capacity 4") << 4;
}

QCoro::Task<std::vector<int>> receiveAllPtrs(Mailbox<Ptr> mb)
{
    std::vector<int> values;
    try {
        for (;;) {
            auto d = co_await mb.receive();
            values.push_back(d.value() ? *d.value() : -1);
        }
    } catch (const stage::MailboxClosed &) {
    }
    co_return values;
}

void tst_Mailbox::receive_moveOnlyValuesInOrder()
{
    QFETCH(int, capacity);
    constexpr int kCount = 300;
    const Mailbox<Ptr> mb = capacity ? Mailbox<Ptr>(capacity) : Mailbox<Ptr>();
    std::atomic<int> refused{0};
    std::thread producer([mb, &refused] {
        for (int i = 0; i < kCount; ++i) {
            if (mb.sendBlocking(std::make_unique<int>(i)) != SendStatus::Sent)
                refused.fetch_add(1);
        }
        mb.close();
    });
    const auto values = stage::waitFor(receiveAllPtrs(mb), kTimeout);
    producer.join();
    QCOMPARE(refused.load(), 0);
    QCOMPARE(values, range(0, kCount));
    const auto s = mb.statistics();
    QCOMPARE(s.queued, kCount);
    QCOMPARE(s.delivered, kCount);
    QCOMPARE(s.acknowledged, kCount);
}

void tst_Mailbox::receive_fifoPerProducerFromFourThreads_data()
{
    QTest::addColumn<int>("capacity"); // 0: unbounded
    QTest::newRow("unbounded") << 0;
    QTest::newRow("capacity 1") << 1;
    QTest::newRow("capacity 8") << 8;
    QTest::newRow("capacity 64") << 64;
}

void tst_Mailbox::receive_fifoPerProducerFromFourThreads()
{
    QFETCH(int, capacity);
    constexpr int kProducers = 4;
    constexpr int kEach = 500;
    constexpr int kStride = 100000;
    const Mailbox<int> mb = capacity ? Mailbox<int>(capacity) : Mailbox<int>();
    Log log;
    Consumer consumer;
    QVERIFY(consumer.start(mb, &log));

    std::atomic<int> refused{0};
    std::atomic<int> running{kProducers};
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
        producers.emplace_back([mb, p, &refused, &running] {
            for (int i = 0; i < kEach; ++i) {
                if (mb.sendBlocking(p * kStride + i) != SendStatus::Sent)
                    refused.fetch_add(1);
            }
            if (running.fetch_sub(1) == 1)
                mb.close(); // the consumer drains, then sees MailboxClosed
        });
    }
    QVERIFY(spinUntil([&] { return log.closed.load() == 1; }, Timeout * 3));
    for (auto &t : producers)
        t.join();
    QTRY_COMPARE_WITH_TIMEOUT(consumer.exits.count(), 1, Timeout);
    QCOMPARE(consumer.exits.lastKind(), Kind::Completed);
    QCOMPARE(refused.load(), 0);

    const auto seen = log.seen();
    QCOMPARE(int(seen.size()), kProducers * kEach);
    std::vector<std::vector<int>> perProducer(kProducers);
    int overCapacity = 0;
    for (const auto &s : seen) {
        perProducer[s.value / kStride].push_back(s.value % kStride);
        if (capacity && s.countAfter > capacity)
            ++overCapacity;
    }
    QCOMPARE(overCapacity, 0);
    for (int p = 0; p < kProducers; ++p)
        QCOMPARE(perProducer[p], range(0, kEach));
    const auto s = mb.statistics();
    QCOMPARE(s.queued, kProducers * kEach);
    QCOMPARE(s.delivered, kProducers * kEach);
    QCOMPARE(s.acknowledged, kProducers * kEach);
    QCOMPARE(mb.count(), 0);
}

void tst_Mailbox::sendBlocking_slowConsumerMakesProducersWait_data()
{
    QTest::addColumn<int>("capacity");
    QTest::newRow("capacity 1") << 1;
    QTest::newRow("capacity 4") << 4;
}

void tst_Mailbox::sendBlocking_slowConsumerMakesProducersWait()
{
    // A consumer taking ~2 ms a message; 4 producer threads, 10 messages each. Once the last send
    // has returned, at most `capacity` messages are queued and one is in the consumer's hands, so
    // the consumer must have taken (and logged, lagging by at most one) total - capacity - 1.
    QFETCH(int, capacity);
    constexpr int kProducers = 4;
    constexpr int kEach = 10;
    constexpr int kTotal = kProducers * kEach;
    const Mailbox<int> mb(capacity);
    Log log;
    Consumer consumer;
    QVERIFY(consumer.start(mb, &log, [](int) { return Act::AckAfterSuspending; }));

    std::atomic<int> loggedWhenDone{0};
    std::atomic<int> refused{0};
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
        producers.emplace_back([mb, p, &log, &loggedWhenDone, &refused] {
            for (int i = 0; i < kEach; ++i) {
                if (mb.sendBlocking(p * 1000 + i) != SendStatus::Sent)
                    refused.fetch_add(1);
            }
            const int logged = log.size();
            int seen = loggedWhenDone.load();
            while (logged > seen && !loggedWhenDone.compare_exchange_weak(seen, logged)) {
            }
        });
    }
    QVERIFY(spinUntil([&] { return log.size() == kTotal; }, Timeout * 3));
    for (auto &t : producers)
        t.join();
    QCOMPARE(refused.load(), 0);
    QVERIFY2(loggedWhenDone.load() >= kTotal - capacity - 1,
             qPrintable(QStringLiteral("the last send returned when the consumer had taken only %1 of %2")
                            .arg(loggedWhenDone.load())
                            .arg(kTotal)));
    int overCapacity = 0;
    for (const auto &s : log.seen())
        overCapacity += s.countAfter > capacity ? 1 : 0;
    QCOMPARE(overCapacity, 0);
    mb.close();
    QTRY_COMPARE_WITH_TIMEOUT(log.closed.load(), 1, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(consumer.exits.count(), 1, Timeout);
    QCOMPARE(mb.statistics().acknowledged, kTotal);
}

void tst_Mailbox::receive_onGroupThreadResumesOnHomeThread()
{
    constexpr int kProducers = 4;
    constexpr int kEach = 200;
    const Mailbox<int> mb(16);
    Log log;
    stage::Group group;
    group.setThreadCount(1);
    QVERIFY(group.spawn([mb, &log](stage::Worker &w) { return consume(w, mb, &log, {}); }));
    QTRY_COMPARE_WITH_TIMEOUT(log.entered.load(), 1, Timeout);
    QThread *home = log.home.load();
    QVERIFY(home);
    QVERIFY(home != QThread::currentThread());

    std::atomic<int> running{kProducers};
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
        producers.emplace_back([mb, p, &running] {
            for (int i = 0; i < kEach; ++i)
                mb.sendBlocking(p * 1000 + i);
            if (running.fetch_sub(1) == 1)
                mb.close();
        });
    }
    QTRY_COMPARE_WITH_TIMEOUT(log.closed.load(), 1, Timeout * 3);
    for (auto &t : producers)
        t.join();
    QTRY_COMPARE_WITH_TIMEOUT(group.completed(), 1, Timeout);

    const auto seen = log.seen();
    QCOMPARE(int(seen.size()), kProducers * kEach);
    int elsewhere = 0;
    std::vector<std::vector<int>> perProducer(kProducers);
    for (const auto &s : seen) {
        if (s.thread != home)
            ++elsewhere;
        perProducer[s.value / 1000].push_back(s.value % 1000);
    }
    QCOMPARE(elsewhere, 0);
    for (int p = 0; p < kProducers; ++p)
        QCOMPARE(perProducer[p], range(0, kEach));
    QCOMPARE(group.started(), 1);
    QCOMPARE(group.failed(), 0);
    stage::waitFor(group.shutdown(), kTimeout);
}

void tst_Mailbox::receive_isACancellationPoint_data()
{
    QTest::addColumn<bool>("onThread");
    QTest::newRow("consumer on the main thread") << false;
    QTest::newRow("consumer on a thread") << true;
}

void tst_Mailbox::receive_isACancellationPoint()
{
    QFETCH(bool, onThread);
    ScopedThread thread;
    QThread *home = onThread ? thread.get() : QThread::currentThread();
    const Mailbox<int> mb(4);
    Log first;
    Consumer a;
    QVERIFY(a.start(mb, &first, {}, home));
    QVERIFY(stagetest::roundTrip(home)); // waiting in receive()
    a.handle.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(a.exits.count(), 1, Timeout);
    QCOMPARE(a.exits.lastKind(), Kind::Cancelled);
    QCOMPARE(first.cancelled.load(), 1);
    QCOMPARE(first.size(), 0);

    // The stopped waiter is gone: a message sent now stays for the next consumer.
    QCOMPARE(mb.trySend(5), SendStatus::Sent);
    QCOMPARE(mb.count(), 1);
    Log second;
    Consumer b;
    QVERIFY(b.start(mb, &second, {}, home));
    QTRY_COMPARE_WITH_TIMEOUT(second.size(), 1, Timeout);
    QCOMPARE(second.values(), std::vector<int>{5});
    QCOMPARE(second.seen().front().previous, 0);
    QVERIFY(b.stop());
    QCOMPARE(first.size(), 0);
    const auto s = mb.statistics();
    QCOMPARE(s.delivered, 1);
    QCOMPARE(s.acknowledged, 1);
    QCOMPARE(s.redelivered, 0);
}

void tst_Mailbox::receive_cancelledWhileMessageHandedOver_data()
{
    QTest::addColumn<bool>("sendFirst");   // trySend before requestStop (else after), in one block
    QTest::addColumn<bool>("onThread");    // the consumers run on another thread
    QTest::addColumn<bool>("otherWaits");  // a second consumer already waits (else: started later)
    for (bool onThread : {false, true}) {
        for (bool sendFirst : {true, false}) {
            for (bool otherWaits : {false, true}) {
                QTest::addRow("%s, %s, %s", sendFirst ? "send then stop" : "stop then send",
                              onThread ? "thread" : "main thread", otherWaits ? "other waiting" : "other later")
                    << sendFirst << onThread << otherWaits;
            }
        }
    }
}

void tst_Mailbox::receive_cancelledWhileMessageHandedOver()
{
    // A consumer waits in receive(); in one synchronous block a message arrives and the consumer
    // is stopped. The message is neither lost nor duplicated: exactly one later receive gets it,
    // as never delivered before.
    QFETCH(bool, sendFirst);
    QFETCH(bool, onThread);
    QFETCH(bool, otherWaits);
    ScopedThread thread;
    QThread *home = onThread ? thread.get() : QThread::currentThread();
    const Mailbox<int> mb(4);
    Log log;
    Consumer a;
    Consumer b;
    QVERIFY(a.start(mb, &log, {}, home));
    QVERIFY(stagetest::roundTrip(home)); // a waits in receive()
    if (otherWaits) {
        QVERIFY(b.start(mb, &log, {}, home));
        QVERIFY(stagetest::roundTrip(home)); // b waits behind a
    }

    // The consumers' thread is held during the block: otherwise it may resume a with the message
    // before the stop is requested (seen once on a loaded machine), and a processes it.
    auto release = std::make_shared<QSemaphore>();
    SendStatus sent;
    {
        struct Hold // released however the block is left
        {
            std::shared_ptr<QSemaphore> release;
            ~Hold() { release->release(); }
        } hold{release};
        if (onThread) {
            QSemaphore held;
            QMetaObject::invokeMethod(thread.context(), [&held, release] { held.release(); release->acquire(); },
                                      Qt::QueuedConnection);
            held.acquire();
        }
        if (sendFirst) {
            sent = mb.trySend(42);
            a.handle.requestStop();
        } else {
            a.handle.requestStop();
            sent = mb.trySend(42);
        }
    }
    QCOMPARE(sent, SendStatus::Sent);

    QTRY_COMPARE_WITH_TIMEOUT(a.exits.count(), 1, Timeout);
    QCOMPARE(a.exits.lastKind(), Kind::Cancelled);
    if (!otherWaits) {
        QCOMPARE(mb.count(), 1);
        QCOMPARE(log.size(), 0);
        QVERIFY(b.start(mb, &log, {}, home));
    }
    QTRY_COMPARE_WITH_TIMEOUT(log.size(), 1, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(mb.statistics().acknowledged, 1, Timeout); // b waits again
    QVERIFY(stagetest::roundTrip(home));
    const auto seen = log.seen();
    QCOMPARE(int(seen.size()), 1);
    QCOMPARE(seen[0].value, 42);
    QCOMPARE(seen[0].worker, b.handle.id());
    QCOMPARE(seen[0].previous, 0);
    QCOMPARE(seen[0].failures, 0);
    QCOMPARE(seen[0].thread, home);
    QCOMPARE(mb.count(), 0);
    const auto s = mb.statistics();
    QCOMPARE(s.queued, 1);
    QCOMPARE(s.delivered, 1);
    QCOMPARE(s.redelivered, 0);
    QVERIFY2(countsAddUp(s, mb.count()).isEmpty(), qPrintable(countsAddUp(s, mb.count())));
    QVERIFY(b.stop());
    QCOMPARE(log.cancelled.load(), 2);
}

void tst_Mailbox::tryReceive_data()
{
    QTest::addColumn<int>("queued");
    QTest::addColumn<bool>("closed");
    QTest::newRow("empty") << 0 << false;
    QTest::newRow("3 queued") << 3 << false;
    QTest::newRow("empty, closed") << 0 << true;
    QTest::newRow("3 queued, closed") << 3 << true;
}

void tst_Mailbox::tryReceive()
{
    QFETCH(int, queued);
    QFETCH(bool, closed);
    const Mailbox<int> mb(8);
    for (int i = 0; i < queued; ++i)
        QCOMPARE(mb.trySend(int(i)), SendStatus::Sent);
    if (closed)
        mb.close();
    std::vector<int> got;
    while (auto d = mb.tryReceive()) {
        QCOMPARE(d->previousDeliveries(), 0);
        QVERIFY(!d->isAcknowledged());
        got.push_back(**d);
    }
    QCOMPARE(got, range(0, queued));
    QVERIFY(!mb.tryReceive());
    const auto s = mb.statistics();
    QCOMPARE(s.delivered, queued);
    QCOMPARE(s.acknowledged, queued);
}

// ---- deliveries ----

void tst_Mailbox::delivery_failureRedeliversToNextConsumer_data()
{
    QTest::addColumn<Act>("act");        // how A fails
    QTest::addColumn<bool>("bWaiting");  // B waits in receive() when A fails (else: started later)
    QTest::addColumn<bool>("onThreads"); // A and B on two other threads
    for (bool onThreads : {false, true}) {
        for (Act act : {Act::Fail, Act::FailAfterSuspending}) {
            for (bool bWaiting : {true, false}) {
                QTest::addRow("%s, %s, %s", act == Act::Fail ? "fails at once" : "fails after suspending",
                              bWaiting ? "B waiting" : "B later", onThreads ? "threads" : "main thread")
                    << act << bWaiting << onThreads;
            }
        }
    }
}

void tst_Mailbox::delivery_failureRedeliversToNextConsumer()
{
    // A receives 10 and fails while holding it: 10 goes back to the FRONT (before 11 and 12) and
    // the next consumer, B, gets it, with failures() == 1 and previousDeliveries() == 1.
    QFETCH(Act, act);
    QFETCH(bool, bWaiting);
    QFETCH(bool, onThreads);
    ScopedThread threadA;
    ScopedThread threadB;
    QThread *homeA = onThreads ? threadA.get() : QThread::currentThread();
    QThread *homeB = onThreads ? threadB.get() : QThread::currentThread();
    const Mailbox<int> mb(8);
    Log logA;
    Log logB;
    Consumer a;
    Consumer b;
    QVERIFY(a.start(mb, &logA, [act](int v) { return v == 10 ? act : Act::Ack; }, homeA));
    QVERIFY(stagetest::roundTrip(homeA)); // A waits first
    if (bWaiting) {
        QVERIFY(b.start(mb, &logB, {}, homeB));
        QVERIFY(stagetest::roundTrip(homeB)); // then B
    }
    QCOMPARE(mb.trySend(10), SendStatus::Sent); // handed to A
    QTRY_COMPARE_WITH_TIMEOUT(a.exits.count(), 1, Timeout);
    QCOMPARE(a.exits.lastKind(), Kind::Failed);
    QCOMPARE(a.exits.lastReason(), QString::fromStdString(failureText(10)));
    QCOMPARE(mb.trySend(11), SendStatus::Sent);
    QCOMPARE(mb.trySend(12), SendStatus::Sent);
    if (!bWaiting)
        QVERIFY(b.start(mb, &logB, {}, homeB));
    QTRY_COMPARE_WITH_TIMEOUT(logB.size(), 3, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(mb.statistics().acknowledged, 3, Timeout);

    QCOMPARE(logA.values(), std::vector<int>{10});
    QCOMPARE(logB.values(), (std::vector<int>{10, 11, 12}));
    const auto seen = logB.seen();
    QCOMPARE(seen[0].failures, 1);
    QCOMPARE(seen[0].previous, 1);
    QCOMPARE(seen[0].thread, homeB);
    QCOMPARE(seen[1].failures, 0);
    QCOMPARE(seen[1].previous, 0);
    const auto s = mb.statistics();
    QCOMPARE(s.queued, 3);
    QCOMPARE(s.delivered, 4);
    QCOMPARE(s.redelivered, 1);
    QCOMPARE(s.deadLettered, 0);
    QCOMPARE(mb.deadLetterCount(), 0);
    QVERIFY2(countsAddUp(s, mb.count()).isEmpty(), qPrintable(countsAddUp(s, mb.count())));
    QVERIFY(b.stop());
}

void tst_Mailbox::delivery_stoppedWhileHoldingIsRequeuedWithoutFailure_data()
{
    QTest::addColumn<bool>("onThread");
    QTest::newRow("main thread") << false;
    QTest::newRow("thread") << true;
}

void tst_Mailbox::delivery_stoppedWhileHoldingIsRequeuedWithoutFailure()
{
    QFETCH(bool, onThread);
    ScopedThread thread;
    QThread *home = onThread ? thread.get() : QThread::currentThread();
    const Mailbox<int> mb(8);
    mb.setMaxRedeliveries(0); // a stop must not count: with 0, one failure would dead-letter it
    QCOMPARE(mb.trySend(10), SendStatus::Sent);
    QCOMPARE(mb.trySend(11), SendStatus::Sent);
    Log logA;
    Consumer a;
    QVERIFY(a.start(mb, &logA, [](int) { return Act::Hold; }, home));
    QTRY_COMPARE_WITH_TIMEOUT(logA.holding.load(), 1, Timeout);
    QCOMPARE(mb.count(), 1);
    a.handle.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(a.exits.count(), 1, Timeout);
    QCOMPARE(a.exits.lastKind(), Kind::Cancelled);
    QCOMPARE(mb.count(), 2);
    QCOMPARE(mb.deadLetterCount(), 0);

    Log logB;
    Consumer b;
    QVERIFY(b.start(mb, &logB, {}, home));
    QTRY_COMPARE_WITH_TIMEOUT(logB.size(), 2, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(mb.statistics().acknowledged, 2, Timeout);
    QCOMPARE(logB.values(), (std::vector<int>{10, 11}));
    QCOMPARE(logB.seen()[0].failures, 0);
    QCOMPARE(logB.seen()[0].previous, 1);
    const auto s = mb.statistics();
    QCOMPARE(s.delivered, 3);
    QCOMPARE(s.redelivered, 1);
    QCOMPARE(s.deadLettered, 0);
    QVERIFY2(countsAddUp(s, mb.count()).isEmpty(), qPrintable(countsAddUp(s, mb.count())));
    QVERIFY(b.stop());
}

void tst_Mailbox::delivery_ackBeforeFailingIsNotRedelivered()
{
    const Mailbox<int> mb(8);
    QCOMPARE(mb.trySend(10), SendStatus::Sent);
    QCOMPARE(mb.trySend(11), SendStatus::Sent);
    Log logA;
    Consumer a;
    QVERIFY(a.start(mb, &logA, [](int) { return Act::AckThenFail; }));
    QTRY_COMPARE_WITH_TIMEOUT(a.exits.count(), 1, Timeout);
    QCOMPARE(a.exits.lastKind(), Kind::Failed);
    QCOMPARE(mb.count(), 1);
    Log logB;
    Consumer b;
    QVERIFY(b.start(mb, &logB));
    QTRY_COMPARE_WITH_TIMEOUT(mb.statistics().acknowledged, 2, Timeout);
    QCOMPARE(logA.values(), std::vector<int>{10});
    QCOMPARE(logB.values(), std::vector<int>{11});
    const auto s = mb.statistics();
    QCOMPARE(s.delivered, 2);
    QCOMPARE(s.redelivered, 0);
    QVERIFY(b.stop());
}

QCoro::Task<> receiveAndThrow(Mailbox<int> mb)
{
    auto d = co_await mb.receive();
    throw std::runtime_error(failureText(*d));
}

void tst_Mailbox::delivery_failureOutsideAWorkerIsRedelivered()
{
    // A plain coroutine (no worker) failing while holding a message: it goes back too.
    const Mailbox<int> mb(8);
    QCOMPARE(mb.trySend(10), SendStatus::Sent);
    QCOMPARE(mb.trySend(11), SendStatus::Sent);
    QVERIFY_THROWS_EXCEPTION(std::runtime_error, stage::waitFor(receiveAndThrow(mb), kTimeout));
    QCOMPARE(mb.count(), 2);
    auto d = mb.tryReceive();
    QVERIFY(d);
    QCOMPARE(**d, 10);
    QCOMPARE(d->failures(), 1);
    QCOMPARE(d->previousDeliveries(), 1);
    d.reset();
    QCOMPARE(mb.statistics().redelivered, 1);
    QCOMPARE(drainAll(mb), 1);
}

QCoro::Task<std::vector<int>> moveDeliveries(Mailbox<int> mb)
{
    std::vector<int> out;
    auto a = co_await mb.receive();
    auto b = co_await mb.receive();
    stage::Delivery<int> moved(std::move(a)); // a no longer owns it
    out.push_back(*moved);
    moved = std::move(b); // the first is acknowledged here, once
    out.push_back(*moved);
    out.push_back(int(mb.statistics().acknowledged));
    moved.ack();
    out.push_back(moved.isAcknowledged() ? 1 : 0);
    moved.ack(); // idempotent
    out.push_back(int(mb.statistics().acknowledged));
    co_return out;
}

void tst_Mailbox::delivery_movedDeliveryIsAcknowledgedOnce()
{
    const Mailbox<int> mb(8);
    QCOMPARE(mb.trySend(1), SendStatus::Sent);
    QCOMPARE(mb.trySend(2), SendStatus::Sent);
    QCOMPARE(stage::waitFor(moveDeliveries(mb), kTimeout), (std::vector<int>{1, 2, 1, 1, 2}));
    const auto s = mb.statistics();
    QCOMPARE(s.delivered, 2);
    QCOMPARE(s.acknowledged, 2);
    QCOMPARE(s.redelivered, 0);
}

QCoro::Task<std::vector<int>> holdTwoAndThrow(Mailbox<int> mb)
{
    std::vector<int> held;
    auto a = co_await mb.receive();
    auto b = co_await mb.receive();
    held.push_back(*a);
    held.push_back(*b);
    throw std::runtime_error("failed holding two");
}

void tst_Mailbox::delivery_failureHoldingSeveralKeepsTheirOrder()
{
    // A consumer holding 1 and 2 fails: both go back to the front, still in order (before 3).
    const Mailbox<int> mb(8);
    for (int v : {1, 2, 3})
        QCOMPARE(mb.trySend(int(v)), SendStatus::Sent);
    QVERIFY_THROWS_EXCEPTION(std::runtime_error, stage::waitFor(holdTwoAndThrow(mb), kTimeout));
    QCOMPARE(mb.count(), 3);
    std::vector<int> values;
    std::vector<int> failures;
    while (auto d = mb.tryReceive()) {
        values.push_back(**d);
        failures.push_back(d->failures());
    }
    QCOMPARE(values, (std::vector<int>{1, 2, 3}));
    QCOMPARE(failures, (std::vector<int>{1, 1, 0}));
    QCOMPARE(mb.statistics().redelivered, 2);
}

void tst_Mailbox::deadLetter_poisonAfterMaxRedeliveries_data()
{
    QTest::addColumn<int>("maxRedeliveries"); // -1: the default (3)
    QTest::addColumn<bool>("onThread");       // the group runs its worker on a thread
    for (int n : {0, 1, -1, 5})
        for (bool onThread : {false, true})
            QTest::addRow("max %d%s", n, onThread ? ", thread" : "") << n << onThread;
}

void tst_Mailbox::deadLetter_poisonAfterMaxRedeliveries()
{
    // 13 fails every consumer; after maxRedeliveries + 1 failures it goes to the dead letters with
    // the last failure's what() as reason; 14 and 15 are then consumed normally.
    QFETCH(int, maxRedeliveries);
    QFETCH(bool, onThread);
    const int n = maxRedeliveries < 0 ? 3 : maxRedeliveries;
    const Mailbox<int> mb(8);
    if (maxRedeliveries >= 0)
        mb.setMaxRedeliveries(maxRedeliveries);
    QCOMPARE(mb.maxRedeliveries(), n);
    for (int v : {13, 14, 15})
        QCOMPARE(mb.trySend(int(v)), SendStatus::Sent);
    QSignalSpy statsSpy(mb.object(), &stage::MailboxBase::statisticsChanged);
    QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(n + 1)));

    Log log;
    stage::Group group;
    group.setBackoff(stage::Backoff::none());
    group.setThreadCount(onThread ? 1 : 0);
    QVERIFY(group.spawn([mb, &log](stage::Worker &w) {
        return consume(w, mb, &log, [](int v) { return v == 13 ? Act::Fail : Act::Ack; });
    }));
    QTRY_COMPARE_WITH_TIMEOUT(log.size(), n + 3, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(mb.statistics().acknowledged, 2, Timeout);

    const auto seen = log.seen();
    for (int i = 0; i <= n; ++i) {
        QCOMPARE(seen[i].value, 13);
        QCOMPARE(seen[i].failures, i);
        QCOMPARE(seen[i].previous, i);
        QCOMPARE(seen[i].generation, i);
    }
    QCOMPARE(seen[n + 1].value, 14);
    QCOMPARE(seen[n + 1].failures, 0);
    QCOMPARE(seen[n + 2].value, 15);
    QCOMPARE(group.failed(), n + 1);

    QCOMPARE(mb.deadLetterCount(), 1);
    QCOMPARE(mb.object()->deadLetterCount(), 1);
    QTRY_VERIFY_WITH_TIMEOUT(statsSpy.count() >= 1, Timeout);
    const auto s = mb.statistics();
    QCOMPARE(s.queued, 3);
    QCOMPARE(s.delivered, n + 3);
    QCOMPARE(s.redelivered, n);
    QCOMPARE(s.deadLettered, 1);
    QCOMPARE(s.acknowledged, 2);
    QVERIFY2(countsAddUp(s, mb.count()).isEmpty(), qPrintable(countsAddUp(s, mb.count())));
    QCOMPARE(mb.object()->deadLettered(), 1);

    auto letters = mb.takeDeadLetters();
    QCOMPARE(int(letters.size()), 1);
    QCOMPARE(letters[0].value, 13);
    QCOMPARE(letters[0].failures, n + 1);
    QCOMPARE(letters[0].reason, QString::fromStdString(failureText(13)));
    QCOMPARE(mb.deadLetterCount(), 0);
    QVERIFY(mb.takeDeadLetters().empty());
    QCOMPARE(mb.statistics().deadLettered, 1); // a counter, not the current number

    stage::waitFor(group.shutdown(), kTimeout);
    QCOMPARE(log.cancelled.load(), 1);
}

QCoro::Task<> holdPtrAndThrow(Mailbox<Ptr> mb, std::atomic<int> *received)
{
    auto d = co_await mb.receive();
    received->fetch_add(1);
    throw std::runtime_error("unique_ptr consumer failed on " + std::to_string(**d));
}

void tst_Mailbox::deadLetter_moveOnlyValue()
{
    const Mailbox<Ptr> mb(4);
    mb.setMaxRedeliveries(1);
    QCOMPARE(mb.trySend(std::make_unique<int>(7)), SendStatus::Sent);
    QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(2)));
    std::atomic<int> received{0};
    stage::WorkerHandle handle;
    stagetest::ExitRecorder exits(handle);
    handle.start([mb, &received] { return holdPtrAndThrow(mb, &received); });
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(mb.count(), 1); // redelivered once
    QVERIFY(handle.restart());
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 2, Timeout);
    QCOMPARE(exits.lastKind(), Kind::Failed);
    QCOMPARE(received.load(), 2);
    QCOMPARE(mb.count(), 0);
    auto letters = mb.takeDeadLetters();
    QCOMPARE(int(letters.size()), 1);
    QVERIFY(letters[0].value);
    QCOMPARE(*letters[0].value, 7);
    QCOMPARE(letters[0].failures, 2);
    QCOMPARE(letters[0].reason, QStringLiteral("unique_ptr consumer failed on 7"));
}

/* Catches its own failures and keeps going: a poison message still unwinds its delivery. Ends
   when the mailbox is closed (Completed) or when stopped (Cancelled). */
QCoro::Task<> forgivingConsumer(Mailbox<int> mb, std::atomic<int> *caught)
{
    try {
        for (;;) {
            try {
                auto d = co_await mb.receive();
                if (*d == 13)
                    throw std::runtime_error("cannot digest 13");
            } catch (const stage::MailboxClosed &) {
                throw; // (a std::runtime_error too)
            } catch (const std::runtime_error &) {
                caught->fetch_add(1);
            }
        }
    } catch (const stage::MailboxClosed &) {
    }
}

void tst_Mailbox::deadLetter_reasonSurvivesTheWorkersLaterEnd_data()
{
    QTest::addColumn<bool>("stopped"); // the worker ends by a stop (else: completes on close)
    QTest::newRow("worker later stopped") << true;
    QTest::newRow("worker later completes") << false;
}

void tst_Mailbox::deadLetter_reasonSurvivesTheWorkersLaterEnd()
{
    // 13 is dead-lettered by a failure the consumer caught itself; the worker goes on and ends
    // much later for an unrelated reason. The letter's reason must still describe its failure,
    // not the worker's later exit ("cancelled", or the empty reason of a normal completion).
    QFETCH(bool, stopped);
    const Mailbox<int> mb(8);
    mb.setMaxRedeliveries(0);
    QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(1)));
    std::atomic<int> caught{0};
    stage::WorkerHandle handle;
    stagetest::ExitRecorder exits(handle);
    handle.start([mb, &caught] { return forgivingConsumer(mb, &caught); });
    QCOMPARE(mb.trySend(13), SendStatus::Sent);
    QCOMPARE(mb.trySend(14), SendStatus::Sent);
    QTRY_COMPARE_WITH_TIMEOUT(mb.statistics().acknowledged, 1, Timeout);
    QCOMPARE(caught.load(), 1);
    QCOMPARE(mb.deadLetterCount(), 1);
    if (stopped)
        handle.requestStop();
    else
        mb.close();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), stopped ? Kind::Cancelled : Kind::Completed);
    const auto letters = mb.takeDeadLetters();
    QCOMPARE(int(letters.size()), 1);
    QCOMPARE(letters[0].value, 13);
    QCOMPARE(letters[0].failures, 1);
    const QStringList acceptable{QStringLiteral("cannot digest 13"),
                                 QStringLiteral("its consumer failed while holding it")};
    QVERIFY2(acceptable.contains(letters[0].reason),
             qPrintable(QStringLiteral("reason \"%1\" (the worker's exit: \"%2\")")
                            .arg(letters[0].reason, exits.lastReason())));
}

// ---- the stop rule ----

/* Holds one message until stopped, then throws something else than stage::Cancelled on the
   way out (a cleanup that fails). */
QCoro::Task<> holdThenThrowWhenStopped(stage::Worker &w, Mailbox<int> mb, Log *log)
{
    log->entered.fetch_add(1);
    auto d = co_await mb.receive();
    log->add(Seen{*d, d.failures(), d.previousDeliveries(), mb.count(), QThread::currentThread(), w.id(),
                  w.generation()});
    log->holding.fetch_add(1);
    try {
        co_await stage::sleep(60s);
    } catch (const stage::Cancelled &) {
        log->cancelled.fetch_add(1);
        throw std::runtime_error("cleanup failed");
    }
}

enum class StopBy { Handle, GroupShutdown, GroupResize };
Q_DECLARE_METATYPE(StopBy)

void tst_Mailbox::delivery_otherExceptionAfterAStopIsStillAStop_data()
{
    QTest::addColumn<StopBy>("stopBy");
    QTest::addColumn<bool>("onThread");
    for (bool onThread : {false, true}) {
        const char *where = onThread ? ", thread" : "";
        QTest::addRow("WorkerHandle::requestStop%s", where) << StopBy::Handle << onThread;
        QTest::addRow("Group::shutdown%s", where) << StopBy::GroupShutdown << onThread;
        QTest::addRow("Group::setSize smaller%s", where) << StopBy::GroupResize << onThread;
    }
}

void tst_Mailbox::delivery_otherExceptionAfterAStopIsStillAStop()
{
    // Once a worker's stop is requested, however its body ends is a stop: here it throws a
    // std::runtime_error while unwinding from stage::Cancelled. Its exit is Cancelled (the text
    // kept in the reason), not Failed, and the message it held goes back uncounted: with
    // maxRedeliveries 0, one counted failure would have dead-lettered it.
    QFETCH(StopBy, stopBy);
    QFETCH(bool, onThread);
    ScopedThread thread;
    const Mailbox<int> mb(8);
    mb.setMaxRedeliveries(0);
    QCOMPARE(mb.trySend(10), SendStatus::Sent);
    QCOMPARE(mb.trySend(11), SendStatus::Sent);
    Log log;
    std::vector<stage::WorkerExit> exits;
    stage::WorkerHandle handle;
    stage::Group group;
    QObject context;
    if (stopBy == StopBy::Handle) {
        QObject::connect(&handle, &stage::WorkerHandle::finished, &context,
                         [&exits](const stage::WorkerExit &exit) { exits.push_back(exit); });
        QVERIFY(handle.start([mb, &log](stage::Worker &w) { return holdThenThrowWhenStopped(w, mb, &log); },
                             onThread ? thread.get() : nullptr));
    } else {
        QObject::connect(&group, &stage::Group::workerFinished, &context,
                         [&exits](const stage::WorkerExit &exit) { exits.push_back(exit); });
        group.setThreadCount(onThread ? 1 : 0);
        group.setBackoff(stage::Backoff::none());
        QVERIFY(group.spawn([mb, &log](stage::Worker &w) { return holdThenThrowWhenStopped(w, mb, &log); }));
    }
    QTRY_COMPARE_WITH_TIMEOUT(log.holding.load(), 1, Timeout);
    QCOMPARE(mb.count(), 1);
    switch (stopBy) {
    case StopBy::Handle:
        handle.requestStop();
        break;
    case StopBy::GroupShutdown:
        stage::waitFor(group.shutdown(), kTimeout);
        break;
    case StopBy::GroupResize:
        group.setSize(0);
        break;
    }
    QTRY_COMPARE_WITH_TIMEOUT(int(exits.size()), 1, Timeout);
    QCOMPARE(exits[0].kind, Kind::Cancelled);
    QCOMPARE(exits[0].reason, QStringLiteral("stopped; while unwinding it threw: cleanup failed"));
    QVERIFY(!exits[0].error);
    QCOMPARE(log.cancelled.load(), 1);
    QCOMPARE(mb.count(), 2);
    QCOMPARE(mb.deadLetterCount(), 0);
    auto s = mb.statistics();
    QCOMPARE(s.redelivered, 1);
    QCOMPARE(s.deadLettered, 0);
    if (stopBy != StopBy::Handle) {
        QCOMPARE(group.failed(), 0);
        QCOMPARE(group.cancelled(), 1);
        QCOMPARE(group.restarted(), 0);
    }
    const auto seen = drain(mb);
    QCOMPARE(seen, (std::vector<std::pair<int, int>>{{10, 0}, {11, 0}})); // no failure counted
    QVERIFY(stagetest::roundTrip(onThread ? thread.get() : QThread::currentThread()));
    QCOMPARE(int(exits.size()), 1);
}

// ---- the dead letters' limit ----

QString dropWarning(int count, int limit, int total)
{
    return QStringLiteral("Mailbox: dropped %1 of the oldest dead letter(s) to keep at most %2 (%3 dropped in all)")
        .arg(count)
        .arg(limit)
        .arg(total);
}

/* Dead-letters the next \a n queued messages (maxRedeliveries 0, no worker: at once). */
bool deadLetterNext(const Mailbox<int> &mb, int n)
{
    for (int i = 0; i < n; ++i) {
        try {
            stage::waitFor(receiveAndThrow(mb), kTimeout);
            return false;
        } catch (const std::runtime_error &) {
        }
    }
    return true;
}

void tst_Mailbox::deadLetterLimit_dropsTheOldestAndCountsThem()
{
    // Limit 2, five poison messages: the three oldest letters are dropped as the newer ones come,
    // counted, and noted once in the log (the next drops fall within its second).
    const Mailbox<int> mb(8);
    mb.setMaxRedeliveries(0);
    mb.setDeadLetterLimit(2);
    QCOMPARE(mb.deadLetterLimit(), 2);
    QCOMPARE(mb.object()->property("deadLetterLimit").toInt(), 2);
    for (int v = 1; v <= 5; ++v)
        QCOMPARE(mb.trySend(int(v)), SendStatus::Sent);
    for (int i = 0; i < 5; ++i)
        QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(1)));
    QTest::ignoreMessage(QtWarningMsg, qPrintable(dropWarning(1, 2, 1)));
    QTest::failOnWarning(QRegularExpression(QStringLiteral("dropped [2-9]")));
    QSignalSpy statsSpy(mb.object(), &stage::MailboxBase::statisticsChanged);
    QVERIFY(deadLetterNext(mb, 5));
    QCOMPARE(mb.count(), 0);
    QCOMPARE(mb.deadLetterCount(), 2);
    auto s = mb.statistics();
    QCOMPARE(s.deadLettered, 5);
    QCOMPARE(s.deadLettersDropped, 3);
    QCOMPARE(s.redelivered, 0);
    QCOMPARE(mb.object()->deadLettersDropped(), 3);
    QCOMPARE(mb.object()->property("deadLettersDropped").toLongLong(), 3);
    QTRY_VERIFY_WITH_TIMEOUT(statsSpy.count() >= 1, Timeout);
    auto letters = mb.takeDeadLetters();
    QCOMPARE(int(letters.size()), 2);
    QCOMPARE(letters[0].value, 4); // the newest two, oldest first
    QCOMPARE(letters[1].value, 5);
    QCOMPARE(letters[0].failures, 1);
    QCOMPARE(mb.statistics().deadLettersDropped, 3); // taking is not dropping
}

void tst_Mailbox::deadLetterLimit_loweringDropsAtOnce()
{
    const Mailbox<int> mb(8);
    mb.setMaxRedeliveries(0);
    for (int v = 1; v <= 3; ++v)
        QCOMPARE(mb.trySend(int(v)), SendStatus::Sent);
    for (int i = 0; i < 3; ++i)
        QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(1)));
    QVERIFY(deadLetterNext(mb, 3));
    QCOMPARE(mb.deadLetterCount(), 3);
    QSignalSpy spy(mb.object(), &stage::MailboxBase::deadLetterLimitChanged);
    QTest::ignoreMessage(QtWarningMsg, qPrintable(dropWarning(2, 1, 2)));
    mb.setDeadLetterLimit(1);
    mb.setDeadLetterLimit(1); // unchanged: no signal, nothing dropped
    QCOMPARE(mb.deadLetterCount(), 1);
    QCOMPARE(mb.statistics().deadLettersDropped, 2);
    mb.object()->setProperty("deadLetterLimit", 10); // raising drops nothing
    QCOMPARE(mb.deadLetterLimit(), 10);
    QCOMPARE(spy.count(), 2);
    QCOMPARE(spy.at(0).at(0).toInt(), 1);
    QCOMPARE(spy.at(1).at(0).toInt(), 10);
    auto letters = mb.takeDeadLetters();
    QCOMPARE(int(letters.size()), 1);
    QCOMPARE(letters[0].value, 3);
    QCOMPARE(mb.statistics().deadLettersDropped, 2);
}

void tst_Mailbox::deadLetterLimit_zeroKeepsNone()
{
    const Mailbox<int> mb(8);
    mb.setMaxRedeliveries(0);
    mb.setDeadLetterLimit(0);
    QCOMPARE(mb.trySend(1), SendStatus::Sent);
    QCOMPARE(mb.trySend(2), SendStatus::Sent);
    QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(1)));
    QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(1)));
    QTest::ignoreMessage(QtWarningMsg, qPrintable(dropWarning(1, 0, 1)));
    QVERIFY(deadLetterNext(mb, 2));
    QCOMPARE(mb.deadLetterCount(), 0);
    QVERIFY(mb.takeDeadLetters().empty());
    const auto s = mb.statistics();
    QCOMPARE(s.deadLettered, 2);
    QCOMPARE(s.deadLettersDropped, 2);
    QVERIFY2(countsAddUp(s, mb.count()).isEmpty(), qPrintable(countsAddUp(s, mb.count())));
}

void tst_Mailbox::deadLetterLimit_dropLogIsThrottled()
{
    // A flood of drops writes one line, not one per drop: 50 drops in well under a second.
    const Mailbox<int> mb(64);
    mb.setMaxRedeliveries(0);
    mb.setDeadLetterLimit(1);
    for (int v = 0; v < 51; ++v)
        QCOMPARE(mb.trySend(int(v)), SendStatus::Sent);
    QLoggingCategory::setFilterRules(QStringLiteral("stage.mailbox.warning=false")); // the 51 dead-letter lines
    QElapsedTimer timer;
    timer.start();
    const bool ok = deadLetterNext(mb, 51);
    const qint64 elapsed = timer.elapsed();
    QLoggingCategory::setFilterRules(QString());
    QVERIFY(ok);
    QCOMPARE(mb.statistics().deadLettersDropped, 50);
    QCOMPARE(mb.deadLetterCount(), 1);
    if (elapsed >= 900)
        QSKIP("the machine is too slow to drop 50 letters within the log's second");
    // The next drop, still within that second, is counted but not written.
    QCOMPARE(mb.trySend(99), SendStatus::Sent);
    QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(1)));
    QTest::failOnWarning(QRegularExpression(QStringLiteral("dropped")));
    QVERIFY(deadLetterNext(mb, 1));
    QCOMPARE(mb.statistics().deadLettersDropped, 51);
}

void tst_Mailbox::setDeadLetterLimit_negativeWarnsAndIsIgnored()
{
    const Mailbox<int> mb;
    mb.setDeadLetterLimit(5);
    QSignalSpy spy(mb.object(), &stage::MailboxBase::deadLetterLimitChanged);
    QTest::ignoreMessage(QtWarningMsg, "Mailbox::setDeadLetterLimit: the limit must be >= 0, got -1; ignored");
    mb.setDeadLetterLimit(-1);
    QTest::ignoreMessage(QtWarningMsg, "Mailbox::setDeadLetterLimit: the limit must be >= 0, got -1000; ignored");
    mb.object()->setProperty("deadLetterLimit", -1000);
    QTest::ignoreMessage(QtWarningMsg,
                         qPrintable(QStringLiteral("Mailbox::setDeadLetterLimit: the limit must be >= 0, got %1; ignored")
                                        .arg(INT_MIN)));
    mb.object()->setDeadLetterLimit(INT_MIN);
    QCOMPARE(mb.deadLetterLimit(), 5);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(spy.count(), 0);
}

// ---- closing ----

void tst_Mailbox::close_drainsThenMailboxClosed_data()
{
    QTest::addColumn<CloseWhen>("when");
    QTest::addColumn<bool>("onThread");
    for (bool onThread : {false, true}) {
        const char *where = onThread ? "thread" : "main thread";
        QTest::addRow("queued, closed, then consumed (%s)", where) << CloseWhen::BeforeConsumerStarts << onThread;
        QTest::addRow("closed while the consumer waits (%s)", where) << CloseWhen::WhileConsumerWaits << onThread;
        QTest::addRow("closed while the consumer holds (%s)", where) << CloseWhen::WhileConsumerHolds << onThread;
    }
}

void tst_Mailbox::close_drainsThenMailboxClosed()
{
    QFETCH(CloseWhen, when);
    QFETCH(bool, onThread);
    ScopedThread thread;
    QThread *home = onThread ? thread.get() : QThread::currentThread();
    const Mailbox<int> mb(8);
    Log log;
    Consumer consumer;
    std::vector<int> expected;
    switch (when) {
    case CloseWhen::BeforeConsumerStarts:
        for (int i = 0; i < 5; ++i)
            QCOMPARE(mb.trySend(int(i)), SendStatus::Sent);
        mb.close();
        QVERIFY(consumer.start(mb, &log, {}, home));
        expected = range(0, 5);
        break;
    case CloseWhen::WhileConsumerWaits:
        QVERIFY(consumer.start(mb, &log, {}, home));
        QVERIFY(stagetest::roundTrip(home));
        mb.close();
        break;
    case CloseWhen::WhileConsumerHolds: {
        // Holds 0 for ~20 ms (a slow consumer), while 1..4 are queued and the mailbox closed.
        QVERIFY(consumer.start(mb, &log, [](int v) { return v == 0 ? Act::AckAfterSuspending : Act::Ack; }, home));
        QVERIFY(stagetest::roundTrip(home));
        for (int i = 0; i < 5; ++i)
            QCOMPARE(mb.trySend(int(i)), SendStatus::Sent);
        mb.close();
        expected = range(0, 5);
        break;
    }
    }
    QCOMPARE(mb.trySend(99), SendStatus::Closed);
    QTRY_COMPARE_WITH_TIMEOUT(log.closed.load(), 1, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(consumer.exits.count(), 1, Timeout);
    QCOMPARE(consumer.exits.lastKind(), Kind::Completed);
    QCOMPARE(log.values(), expected);
    const auto s = mb.statistics();
    QCOMPARE(s.queued, qint64(expected.size()));
    QCOMPARE(s.acknowledged, qint64(expected.size()));
    QCOMPARE(mb.count(), 0);
    QVERIFY2(countsAddUp(s, 0).isEmpty(), qPrintable(countsAddUp(s, 0)));
}

void tst_Mailbox::close_wakesEveryWaitingConsumerOnce()
{
    ScopedThread thread;
    const Mailbox<int> mb(8);
    Log log;
    Consumer c[4];
    for (int i = 0; i < 4; ++i)
        QVERIFY(c[i].start(mb, &log, {}, i == 3 ? thread.get() : nullptr));
    QVERIFY(stagetest::roundTrip(thread.get()));
    QSignalSpy closedSpy(mb.object(), &stage::MailboxBase::closedChanged);
    mb.object()->close(); // the QObject side's close, as QML would call it
    mb.close();           // idempotent
    QVERIFY(QMetaObject::invokeMethod(mb.object(), "close"));
    QVERIFY(mb.isClosed());
    QVERIFY(mb.object()->isClosed());
    QTRY_COMPARE_WITH_TIMEOUT(log.closed.load(), 4, Timeout);
    for (auto &consumer : c) {
        QTRY_COMPARE_WITH_TIMEOUT(consumer.exits.count(), 1, Timeout);
        QCOMPARE(consumer.exits.lastKind(), Kind::Completed);
    }
    QVERIFY(stagetest::roundTrip(thread.get()));
    QCOMPARE(closedSpy.count(), 1);
    QCOMPARE(closedSpy.at(0).at(0).toBool(), true);
    QCOMPARE(log.size(), 0);
}

// ---- the QObject side ----

void tst_Mailbox::object_propertiesMirrorTheMailbox()
{
    const Mailbox<int> mb(4);
    mb.setMaxRedeliveries(0);
    QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(1)));
    for (int i = 0; i < 4; ++i)
        QCOMPARE(mb.trySend(int(i)), SendStatus::Sent);
    QVERIFY_THROWS_EXCEPTION(std::runtime_error, stage::waitFor(receiveAndThrow(mb), kTimeout)); // 0: dead letter
    QCOMPARE(stage::waitFor(receiveValue(mb), kTimeout), 1);
    QObject *o = mb.object();
    QCOMPARE(o->property("count").toInt(), 2);
    QCOMPARE(o->property("capacity").toInt(), 4);
    QCOMPARE(o->property("closed").toBool(), false);
    QCOMPARE(o->property("maxRedeliveries").toInt(), 0);
    QCOMPARE(o->property("deadLetterCount").toInt(), 1);
    QCOMPARE(o->property("queued").toLongLong(), 4);
    QCOMPARE(o->property("delivered").toLongLong(), 2);
    QCOMPARE(o->property("acknowledged").toLongLong(), 1);
    QCOMPARE(o->property("redelivered").toLongLong(), 0);
    QCOMPARE(o->property("deadLettered").toLongLong(), 1);
    const auto s = mb.object()->statistics();
    QCOMPARE(s.queued, 4);
    QCOMPARE(s.deadLettered, 1);
    QVERIFY2(countsAddUp(s, mb.count()).isEmpty(), qPrintable(countsAddUp(s, mb.count())));
    mb.close();
    QCOMPARE(o->property("closed").toBool(), true);
    QCOMPARE(drainAll(mb), 2);
}

void tst_Mailbox::object_countChangedIsCoalesced_data()
{
    QTest::addColumn<bool>("fromThread"); // the 1000 sends come from a std::thread (joined before
                                          // the event loop runs again)
    QTest::newRow("main thread") << false;
    QTest::newRow("std::thread") << true;
}

void tst_Mailbox::object_countChangedIsCoalesced()
{
    QFETCH(bool, fromThread);
    constexpr int kCount = 1000;
    const Mailbox<int> mb;
    QObject context;
    std::vector<int> counts;
    int offThread = 0;
    QObject::connect(mb.object(), &stage::MailboxBase::countChanged, &context, [&](int count) {
        counts.push_back(count);
        if (QThread::currentThread() != context.thread())
            ++offThread;
    });
    QSignalSpy statsSpy(mb.object(), &stage::MailboxBase::statisticsChanged);
    auto sendAll = [mb] {
        for (int i = 0; i < kCount; ++i)
            mb.trySend(int(i));
    };
    if (fromThread)
        std::thread(sendAll).join();
    else
        sendAll();
    QCOMPARE(mb.count(), kCount);
    QCOMPARE(mb.object()->count(), kCount);
    QTRY_COMPARE_WITH_TIMEOUT(int(counts.size()), 1, Timeout);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(counts, std::vector<int>{kCount}); // one emission for 1000 sends, with the last value
    QCOMPARE(statsSpy.count(), 1);

    // Draining in one go: one more, with 0.
    QCOMPARE(int(drain(mb).size()), kCount);
    QTRY_COMPARE_WITH_TIMEOUT(int(counts.size()), 2, Timeout);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(counts, (std::vector<int>{kCount, 0}));
    QCOMPARE(statsSpy.count(), 2);
    QCOMPARE(offThread, 0);
    QCOMPARE(mb.object()->acknowledged(), kCount);
}

void tst_Mailbox::object_statisticsChangedReportsTheLastChange_data()
{
    QTest::addColumn<Settle>("settle");
    QTest::newRow("ack()") << Settle::Ack;
    QTest::newRow("destroyed normally") << Settle::Destroy;
    QTest::newRow("failed and requeued") << Settle::FailAndRequeue;
}

void tst_Mailbox::object_statisticsChangedReportsTheLastChange()
{
    // "A change may be skipped, the last one never is": once a delivery is settled, and nothing
    // else happens, a statisticsChanged() must follow that shows it.
    QFETCH(Settle, settle);
    const Mailbox<int> mb(4);
    QObject context;
    std::vector<stage::MailboxStatistics> seen;
    QObject::connect(mb.object(), &stage::MailboxBase::statisticsChanged, &context,
                     [&] { seen.push_back(mb.object()->statistics()); });
    QCOMPARE(mb.trySend(1), SendStatus::Sent);
    if (settle == Settle::FailAndRequeue) {
        QVERIFY_THROWS_EXCEPTION(std::runtime_error, stage::waitFor(receiveAndThrow(mb), kTimeout));
        QTRY_VERIFY_WITH_TIMEOUT(!seen.empty() && seen.back().redelivered == 1, Timeout);
        QCOMPARE(mb.count(), 1);
        QCOMPARE(seen.back().acknowledged, 0);
        QCOMPARE(drainAll(mb), 1);
        return;
    }
    auto d = mb.tryReceive();
    QVERIFY(d);
    QTRY_VERIFY_WITH_TIMEOUT(!seen.empty() && seen.back().delivered == 1, Timeout);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(seen.back().acknowledged, 0);
    if (settle == Settle::Ack)
        d->ack();
    else
        d.reset();
    QCOMPARE(mb.statistics().acknowledged, 1);
    QTRY_COMPARE_WITH_TIMEOUT(seen.back().acknowledged, 1, Timeout);
}

void tst_Mailbox::object_deletedClosesMailboxWhileConsumerWaits_data()
{
    QTest::addColumn<Deletion>("deletion");
    QTest::addColumn<bool>("onThread");
    QTest::addColumn<int>("queued"); // queued before the deletion; the consumer starts after it
    for (bool onThread : {false, true}) {
        const char *where = onThread ? "thread" : "main thread";
        QTest::addRow("parent deleted, consumer waiting (%s)", where) << Deletion::Parent << onThread << 0;
        QTest::addRow("object deleted, consumer waiting (%s)", where) << Deletion::ObjectDirectly << onThread << 0;
        QTest::addRow("parent deleted, 3 queued (%s)", where) << Deletion::Parent << onThread << 3;
    }
}

void tst_Mailbox::object_deletedClosesMailboxWhileConsumerWaits()
{
    QFETCH(Deletion, deletion);
    QFETCH(bool, onThread);
    QFETCH(int, queued);
    ScopedThread thread;
    QThread *home = onThread ? thread.get() : QThread::currentThread();
    auto parent = std::make_unique<QObject>();
    const Mailbox<int> mb = deletion == Deletion::Parent ? Mailbox<int>(8, parent.get()) : Mailbox<int>(8);
    QPointer<stage::MailboxBase> object = mb.object();
    QVERIFY(object);
    QCOMPARE(object->parent(), deletion == Deletion::Parent ? parent.get() : nullptr);
    for (int i = 0; i < queued; ++i)
        QCOMPARE(mb.trySend(int(i)), SendStatus::Sent);
    Log log;
    Consumer consumer;
    if (!queued) {
        QVERIFY(consumer.start(mb, &log, {}, home));
        QVERIFY(stagetest::roundTrip(home)); // waits in receive()
    }

    if (deletion == Deletion::Parent)
        parent.reset();
    else
        delete object.data();
    QVERIFY(!object);
    QVERIFY(mb.isClosed());
    QVERIFY(!mb.object()); // not recreated
    QCOMPARE(mb.trySend(99), SendStatus::Closed);
    if (queued)
        QVERIFY(consumer.start(mb, &log, {}, home)); // the handles still drain

    QTRY_COMPARE_WITH_TIMEOUT(log.closed.load(), 1, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(consumer.exits.count(), 1, Timeout);
    QCOMPARE(consumer.exits.lastKind(), Kind::Completed);
    QCOMPARE(log.values(), range(0, queued));
    QCOMPARE(mb.statistics().acknowledged, queued);
}

void tst_Mailbox::object_deletedWithNotificationPending()
{
    // A notification is posted (connected spy, a send), then the object goes before it is
    // delivered; later sends must not touch it. ASan would see a use after free.
    auto *parent = new QObject;
    const Mailbox<int> mb(8, parent);
    QSignalSpy spy(mb.object(), &stage::MailboxBase::countChanged);
    QCOMPARE(mb.trySend(1), SendStatus::Sent);
    delete parent;
    QCOMPARE(mb.trySend(2), SendStatus::Closed);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(spy.count(), 0);
    QCOMPARE(stage::waitFor(receiveValue(mb), kTimeout), 1);
    QVERIFY(!mb.tryReceive());
}

void tst_Mailbox::object_ownedObjectDiesWithTheLastHandle()
{
    QPointer<stage::MailboxBase> object;
    {
        const Mailbox<int> mb(2);
        object = mb.object(); // created on first use, owned by the mailbox
        QVERIFY(object);
        QVERIFY(!object->parent());
    }
    QVERIFY(!object);
}

// ---- consumer groups ----

void tst_Mailbox::group_nothingLost_data()
{
    QTest::addColumn<GroupEnd>("end");
    QTest::addColumn<int>("size");
    QTest::addColumn<int>("threads");
    QTest::addColumn<int>("maxRedeliveries");
    QTest::addColumn<Act>("firstAct");
    QTest::addColumn<Act>("secondAct");
    QTest::addColumn<int>("ackFirst");
    // Expected: the values left in the mailbox, in order, with their failures(); the dead letters.
    QTest::addColumn<std::vector<int>>("left");
    QTest::addColumn<std::vector<int>>("leftFailures");
    QTest::addColumn<std::vector<int>>("dead");

    constexpr int N = 10;
    auto failuresAt = [](int size, int index, int failures) {
        std::vector<int> f(size, 0);
        if (index >= 0)
            f[index] = failures;
        return f;
    };
    for (int threads : {0, 1}) {
        const char *where = threads ? ", threads" : "";
        const int t = threads; // 0 or one thread per worker
        // One consumer that always fails (after acknowledging 0 and 1): 2 fails twice, the group gives up.
        QTest::addRow("gives up, one consumer%s", where)
            << GroupEnd::GivesUp << 1 << t << 3 << Act::Fail << Act::Fail << 2 << range(2, N)
            << failuresAt(N - 2, 0, 2) << std::vector<int>{};
        // The first acknowledges 0..2 and holds 3; the second fails twice on 4; the group gives
        // up and stops the holder: 3 goes back to the front, before 4.
        QTest::addRow("gives up while another holds%s", where)
            << GroupEnd::GivesUp << 2 << 2 * t << 3 << Act::Hold << Act::Fail << 3 << range(3, N)
            << failuresAt(N - 3, 1, 2) << std::vector<int>{};
        // The same with maxRedeliveries 1: 4 is dead-lettered at its second failure.
        std::vector<int> left{3};
        for (int v = 5; v < N; ++v)
            left.push_back(v);
        QTest::addRow("gives up while another holds, poison dead-lettered%s", where)
            << GroupEnd::GivesUp << 2 << 2 * t << 1 << Act::Hold << Act::Fail << 3 << left
            << failuresAt(N - 4, -1, 0) << std::vector<int>{4};
        // Shut down while both hold (3 and 4) and 5..9 are queued: both go back to the front.
        QTest::addRow("shut down while holding%s", where)
            << GroupEnd::ShutDown << 2 << 2 * t << 3 << Act::Hold << Act::Hold << 3 << range(3, N)
            << failuresAt(N - 3, -1, 0) << std::vector<int>{};
    }
}

QCoro::Task<> countingConsumer(Mailbox<int> mb, std::atomic<int> *processed)
{
    for (;;) {
        auto d = co_await mb.receive();
        processed->fetch_add(1);
    }
}

// Bursts into a bounded mailbox with several consumers waiting on two threads: messages are
// handed over to waiting consumers, taken on the fast path and on the await path. Each must count
// as taken: afterwards count() is 0 and the whole capacity is free again.
void tst_Mailbox::count_exactAfterBurstsToWaitingConsumers()
{
    constexpr int kCapacity = 16;
    constexpr int kRounds = 300;
    constexpr int kBurst = 12;
    Mailbox<int> mb(kCapacity);
    std::atomic<int> processed{0};
    auto group = std::make_unique<stage::Group>();
    group->setThreadCount(2);
    group->setSize(4);
    group->spawn([mb, &processed] { return countingConsumer(mb, &processed); });
    QTRY_COMPARE_WITH_TIMEOUT(group->running(), 4, Timeout);
    for (int round = 0; round < kRounds; ++round) {
        for (int i = 0; i < kBurst; ++i)
            QCOMPARE(mb.trySend(i), SendStatus::Sent);
        QElapsedTimer waited;
        waited.start();
        while (processed.load() < (round + 1) * kBurst && waited.elapsed() < Timeout)
            QCoreApplication::processEvents(QEventLoop::AllEvents, 1);
        QCOMPARE(processed.load(), (round + 1) * kBurst);
    }
    QTRY_COMPARE_WITH_TIMEOUT(mb.count(), 0, Timeout);
    stage::waitFor(group->shutdown(), std::chrono::milliseconds(Timeout));
    QCOMPARE(mb.count(), 0);
    QCOMPARE(mb.statistics().delivered, qint64(kRounds * kBurst));
    for (int i = 0; i < kCapacity; ++i)
        QCOMPARE(mb.trySend(i), SendStatus::Sent);
    QCOMPARE(mb.trySend(0), SendStatus::Full);
    QCOMPARE(mb.count(), kCapacity);
    QTest::ignoreMessage(QtWarningMsg, "Mailbox: destroyed with 16 message(s) still queued");
    group.reset();
    mb = Mailbox<int>(1);
}

void tst_Mailbox::group_nothingLost()
{
    // A consumer group gives up for good (restart intensity exceeded) or is shut down while a
    // worker holds a message and more are queued: every message is still in the mailbox or among
    // the dead letters (with its reason), and the counts add up.
    QFETCH(GroupEnd, end);
    QFETCH(int, size);
    QFETCH(int, threads);
    QFETCH(int, maxRedeliveries);
    QFETCH(Act, firstAct);
    QFETCH(Act, secondAct);
    QFETCH(int, ackFirst);
    QFETCH(std::vector<int>, left);
    QFETCH(std::vector<int>, leftFailures);
    QFETCH(std::vector<int>, dead);
    constexpr int N = 10;

    const Mailbox<int> mb;
    mb.setMaxRedeliveries(maxRedeliveries);
    for (int i = 0; i < N; ++i)
        QCOMPARE(mb.trySend(int(i)), SendStatus::Sent);
    GroupLog g;
    g.ackFirst = ackFirst;
    g.firstAct = firstAct;
    g.secondAct = secondAct;
    if (end == GroupEnd::GivesUp)
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("Group: giving up: more than 1 restart")));
    if (!dead.empty())
        QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(maxRedeliveries + 1)));

    stage::Group group;
    group.setBackoff(stage::Backoff::none());
    group.setMaxRestarts(1);
    group.setRestartPeriod(60000);
    group.setThreadCount(threads);
    group.setSize(size);
    QSignalSpy gaveUp(&group, &stage::Group::gaveUp);
    QSignalSpy stopped(&group, &stage::Group::stopped);
    QVERIFY(group.spawn([mb, &g](stage::Worker &w) { return groupConsumer(w, mb, &g); }));

    if (end == GroupEnd::ShutDown) {
        QTRY_COMPARE_WITH_TIMEOUT(g.holding.load(), 2, Timeout);
        group.shutdown();
    }
    QTRY_COMPARE_WITH_TIMEOUT(stopped.count(), 1, Timeout);
    QCOMPARE(group.state(), end == GroupEnd::GivesUp ? GroupState::Failed : GroupState::Stopped);
    QCOMPARE(gaveUp.count(), end == GroupEnd::GivesUp ? 1 : 0);
    QCOMPARE(group.running(), 0);
    if (end == GroupEnd::GivesUp) {
        QCOMPARE(group.failed(), 2);
        QCOMPARE(group.restarted(), 1);
    } else {
        QCOMPARE(group.failed(), 0);
    }
    QCOMPARE(g.cancelled.load(), group.cancelled());
    QCOMPARE(g.firstAcked.load(), ackFirst);

    // Nobody holds a delivery now: the counts add up.
    const auto s = mb.statistics();
    QVERIFY2(countsAddUp(s, mb.count()).isEmpty(), qPrintable(countsAddUp(s, mb.count())));
    QCOMPARE(s.queued, N);
    QCOMPARE(s.acknowledged, ackFirst);
    QCOMPARE(s.deadLettered, qint64(dead.size()));
    QCOMPARE(mb.count(), int(left.size()));

    // And every message is accounted for, exactly once.
    const auto letters = mb.takeDeadLetters();
    std::vector<int> deadValues;
    for (const auto &letter : letters) {
        deadValues.push_back(letter.value);
        QCOMPARE(letter.reason, QString::fromStdString(failureText(letter.value)));
        QCOMPARE(letter.failures, maxRedeliveries + 1);
    }
    QCOMPARE(deadValues, dead);
    const auto drained = drain(mb);
    std::vector<int> values;
    std::vector<int> failures;
    for (const auto &[value, f] : drained) {
        values.push_back(value);
        failures.push_back(f);
    }
    if (end == GroupEnd::ShutDown && size == 2 && values.size() >= 2 && values[0] == 4 && values[1] == 3)
        std::swap(values[0], values[1]); // the two holders may be stopped in either order
    QCOMPARE(values, left);
    QCOMPARE(failures, leftFailures);
    std::multiset<int> all(values.begin(), values.end());
    all.insert(deadValues.begin(), deadValues.end());
    for (int v = 0; v < ackFirst; ++v)
        all.insert(v);
    const std::vector<int> sent = range(0, N);
    QCOMPARE(all, std::multiset<int>(sent.begin(), sent.end()));
}

QTEST_GUILESS_MAIN(tst_Mailbox)
#include "tst_mailbox.moc"
