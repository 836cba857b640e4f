// Mailbox stress: 4 producer std::threads (sendBlocking) feed one bounded stage::Mailbox; two
// consumer groups drain it, one on the main thread and one on a thread of its own (2 workers
// each, Backoff::none()). Consumers throw at random (seeded), always while holding a message:
// sometimes before processing it (it comes back unprocessed), sometimes after (it comes back
// processed, and is processed again: a duplicate). Since a message is recorded before the second
// kind of throw, the counts are exact: no id lost, duplicates == throws after processing,
// redelivered == all throws, acknowledged == messages.

#include "testutil.h"

#include <QtCore/QElapsedTimer>
#include <QtCore/QLoggingCategory>
#include <QtTest/QTest>

#include <atomic>
#include <memory>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

constexpr int Producers = 4;
constexpr quint32 Messages = 200'000; // in total, ids 0 .. Messages - 1 (also under ASan: about 3 s)
constexpr int FaultPerMille = 5; // per delivery, for each kind of throw
constexpr int StressTimeout = 120'000;

struct Shared
{
    Shared() : processed(new std::atomic<int>[Messages]) { std::fill_n(processed.get(), Messages, 0); }
    std::unique_ptr<std::atomic<int>[]> processed; // times each id was processed
    std::atomic<qint64> throwsBefore{0};           // threw holding a message not yet processed
    std::atomic<qint64> throwsAfter{0};            // threw holding a message already processed
    std::atomic<int> sawClosed{0};                 // runs that ended on MailboxClosed
    std::atomic<int> producersDone{0};
    std::atomic<int> sendsRefused{0};
};

// Per group: its workers share one thread, so the generator needs no lock.
struct GroupState
{
    explicit GroupState(quint32 seed) : rng(seed) {}
    std::mt19937 rng;
    std::atomic<qint64> processings{0};
};

QCoro::Task<> consumer(stage::Mailbox<quint32> mailbox, std::shared_ptr<Shared> shared,
                       std::shared_ptr<GroupState> group)
{
    try {
        for (;;) {
            auto message = co_await mailbox.receive();
            const quint32 roll = group->rng() % 1000;
            if (roll < FaultPerMille) {
                ++shared->throwsBefore;
                throw std::runtime_error("fault before processing");
            }
            shared->processed[*message].fetch_add(1, std::memory_order_relaxed);
            ++group->processings;
            if (roll >= 1000 - FaultPerMille) {
                ++shared->throwsAfter;
                throw std::runtime_error("fault after processing");
            }
        } // acknowledged
    } catch (const stage::MailboxClosed &) {
        ++shared->sawClosed; // closed and drained: a normal return, not restarted (Transient)
    }
}

QCoro::Task<> drain(stage::Mailbox<int> mailbox, std::atomic<qint64> *received)
{
    for (;;) {
        co_await mailbox.receive();
        received->fetch_add(1, std::memory_order_relaxed);
    }
}

QCoro::Task<> sendLoop(stage::Mailbox<int> mailbox, std::atomic<qint64> *sent)
{
    for (int i = 0;; ++i) {
        co_await mailbox.send(i);
        sent->fetch_add(1, std::memory_order_relaxed); // queued: counted once
    }
}

QCoro::Task<> asker(stage::Mailbox<stage::Reply<int>> requests, std::atomic<qint64> *answered)
{
    for (;;) {
        auto [reply, answer] = stage::makeReply<int>();
        co_await requests.send(std::move(reply));
        answered->fetch_add(co_await answer, std::memory_order_relaxed);
    }
}

// Runs \a step on a thread of its own, again and again (yielding when it found nothing to do),
// until stop() or destruction: the other side of a mailbox, racing the workers.
class BackgroundLoop
{
public:
    template<typename Step>
    explicit BackgroundLoop(Step step)
        : m_thread([this, step]() mutable {
              while (!m_done.load(std::memory_order_relaxed)) {
                  if (!step())
                      std::this_thread::yield();
              }
          })
    {
    }
    ~BackgroundLoop() { stop(); }
    void stop()
    {
        m_done.store(true, std::memory_order_relaxed);
        if (m_thread.joinable())
            m_thread.join();
    }

private:
    std::atomic<bool> m_done{false};
    std::thread m_thread;
};

// Starts 8 workers of \a factory on one group thread, and stops and restarts them from this
// thread as fast as it can for 1.5 s, so that stops race whatever the workers are doing on
// theirs; then shuts the group down and checks its counts.
template<typename Factory>
void stopAndRestartRepeatedly(Factory factory)
{
    stage::Group group;
    group.setThreadCount(1);
    group.setBackoff(stage::Backoff::none());
    group.setShutdownTimeout(StressTimeout);
    group.spawn(std::move(factory));
    QElapsedTimer timer;
    timer.start();
    int cycles = 0;
    while (timer.elapsed() < 1500) {
        group.setSize(0); // requestStop() from this thread, for each worker
        group.setSize(8);
        QCoreApplication::processEvents();
        ++cycles;
    }
    QVERIFY(cycles > 100);
    stage::waitFor(group.shutdown(), std::chrono::milliseconds(StressTimeout));
    QVERIFY(group.statistics().isConsistent());
    QCOMPARE(group.statistics().abandoned, 0);
}

} // namespace

class tst_MailboxStress : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void initTestCase();
    void producersAndFaultyConsumers_loseNothingAndCountExactly_data();
    void producersAndFaultyConsumers_loseNothingAndCountExactly();
    void stopsRacingReceivesThatDoNotSuspend();
    void stopsRacingSendsThatFindRoom();
    void stopsRacingRepliesSettledBeforeSuspending();
};

void tst_MailboxStress::initTestCase()
{
    // About 2,000 expected failures: keep the group's failure log out of the output.
    QLoggingCategory::setFilterRules(QStringLiteral("stage.group.info=false"));
}

void tst_MailboxStress::producersAndFaultyConsumers_loseNothingAndCountExactly_data()
{
    QTest::addColumn<int>("capacity"); // -1: unbounded
    QTest::newRow("bounded 1024") << 1024;
    QTest::newRow("bounded 16 (producers block)") << 16;
    QTest::newRow("unbounded") << -1;
}

void tst_MailboxStress::producersAndFaultyConsumers_loseNothingAndCountExactly()
{
    QFETCH(int, capacity);
    QElapsedTimer timer;
    timer.start();
    auto shared = std::make_shared<Shared>();
    stage::Mailbox<quint32> mailbox = capacity > 0 ? stage::Mailbox<quint32>(capacity) : stage::Mailbox<quint32>();
    mailbox.setMaxRedeliveries(100); // no dead letters: 101 failures in a row cannot happen

    auto mainState = std::make_shared<GroupState>(20240601u);
    auto threadState = std::make_shared<GroupState>(20240602u);
    stage::Group onMain;
    onMain.setSize(2);
    onMain.setBackoff(stage::Backoff::none());
    stage::Group onThread;
    onThread.setThreadCount(1);
    onThread.setSize(2);
    onThread.setBackoff(stage::Backoff::none());
    QVERIFY(onMain.spawn([mailbox, shared, mainState] { return consumer(mailbox, shared, mainState); }));
    QVERIFY(onThread.spawn([mailbox, shared, threadState] { return consumer(mailbox, shared, threadState); }));

    std::vector<std::thread> producers;
    for (int p = 0; p < Producers; ++p) {
        producers.emplace_back([mailbox, shared, p] {
            const quint32 first = quint32(p) * (Messages / Producers);
            const quint32 last = p == Producers - 1 ? Messages : first + Messages / Producers;
            for (quint32 id = first; id < last; ++id) {
                quint32 value = id;
                if (mailbox.sendBlocking(std::move(value)) != stage::SendStatus::Sent)
                    ++shared->sendsRefused;
            }
            ++shared->producersDone;
        });
    }
    QTRY_COMPARE_WITH_TIMEOUT(shared->producersDone.load(), Producers, StressTimeout); // consumers run meanwhile
    for (auto &producer : producers)
        producer.join();
    QCOMPARE(shared->sendsRefused.load(), 0);

    mailbox.close(); // the consumers drain what is left, then return
    QTRY_COMPARE_WITH_TIMEOUT(onMain.running() + onThread.running(), 0, StressTimeout);
    QCOMPARE(shared->sawClosed.load(), 4);
    QCOMPARE(onMain.state(), stage::Group::State::Stopped);
    QCOMPARE(onThread.state(), stage::Group::State::Stopped);

    // Every id processed at least once; every duplicate comes from a throw after processing.
    qint64 missing = 0;
    qint64 duplicates = 0;
    for (quint32 id = 0; id < Messages; ++id) {
        const int times = shared->processed[id].load();
        if (times == 0)
            ++missing;
        else
            duplicates += times - 1;
    }
    const qint64 throwsBefore = shared->throwsBefore.load();
    const qint64 throwsAfter = shared->throwsAfter.load();
    const qint64 throws = throwsBefore + throwsAfter;
    qInfo("%u messages, %lld throws before processing, %lld after, %lld duplicates; processed %lld on the main "
          "thread, %lld on the group's thread; %lld ms",
          Messages, throwsBefore, throwsAfter, duplicates, mainState->processings.load(),
          threadState->processings.load(), qint64(timer.elapsed()));
    QCOMPARE(missing, 0);
    QCOMPARE(duplicates, throwsAfter);
    QCOMPARE(mainState->processings + threadState->processings, qint64(Messages) + throwsAfter);
    QVERIFY(throwsBefore > 0);
    QVERIFY(throwsAfter > 0);
    QVERIFY(mainState->processings > 0);
    QVERIFY(threadState->processings > 0);

    // The mailbox's counters.
    const auto stats = mailbox.statistics();
    QCOMPARE(stats.queued, qint64(Messages));
    QCOMPARE(stats.delivered, qint64(Messages) + throws);
    QCOMPARE(stats.redelivered, throws);
    QCOMPARE(stats.acknowledged, qint64(Messages));
    QCOMPARE(stats.deadLettered, 0);
    QCOMPARE(mailbox.deadLetterCount(), 0);
    QCOMPARE(mailbox.count(), 0);

    // The groups' counters: one failure and one restart per throw, and each slot ended by the close.
    const auto a = onMain.statistics();
    const auto b = onThread.statistics();
    QVERIFY(a.isConsistent());
    QVERIFY(b.isConsistent());
    QCOMPARE(a.failed + b.failed, throws);
    QCOMPARE(a.restarted, a.failed);
    QCOMPARE(b.restarted, b.failed);
    QCOMPARE(a.started, 2 + a.restarted);
    QCOMPARE(b.started, 2 + b.restarted);
    QCOMPARE(a.completed, 2);
    QCOMPARE(b.completed, 2);
    QCOMPARE(a.running + a.cancelled + a.abandoned, 0);
    QCOMPARE(b.running + b.cancelled + b.abandoned, 0);

    stage::waitFor(onMain.shutdown(), std::chrono::milliseconds(stagetest::Timeout));
    stage::waitFor(onThread.shutdown(), std::chrono::milliseconds(stagetest::Timeout));
    QCOMPARE(onMain.running() + onThread.running(), 0);
}

// Found by stage-fuzz (an ASan double free, a threaded group shut down): a receive whose
// await_suspend() lists its waiter for the worker's stop but does not suspend (a message arrived
// meanwhile) drops the waiter on the worker's thread; a stop requested from the group's thread
// just after its last reference went, before ~Waiter() unlisted it, took a reference from zero
// and freed it a second time. A race, so a stress: a producer keeps the queue nearly empty (a
// consumer finds it empty, then a message at the last moment) while the main thread stops and
// restarts the worker as fast as it can.
void tst_MailboxStress::stopsRacingReceivesThatDoNotSuspend()
{
    stage::Mailbox<int> box;
    std::atomic<qint64> received{0};
    BackgroundLoop producer([&box, i = 0]() mutable {
        if (box.count() >= 4)
            return false;
        box.trySend(i++);
        return true;
    });
    stopAndRestartRepeatedly([box, &received] { return drain(box, &received); });
    producer.stop();
    if (QTest::currentTestFailed())
        return;
    QVERIFY(received.load() > 0);
}

// The same race on the producer side (found in review of the fix for the one above): a send
// that finds room when it looks again in await_suspend queues its value and does not suspend,
// unless a stop claimed its waiter since; before the fix both happened, and the frame was
// resumed twice (a use-after-free in 2 of 20 runs under TSan). Every send that returned was
// queued exactly once, and a stopped one not at all.
void tst_MailboxStress::stopsRacingSendsThatFindRoom()
{
    stage::Mailbox<int> box(2);
    std::atomic<qint64> sent{0};
    std::atomic<qint64> received{0};
    BackgroundLoop consumer([&] {
        if (!box.tryReceive())
            return false;
        received.fetch_add(1, std::memory_order_relaxed);
        return true;
    });
    stopAndRestartRepeatedly([box, &sent] { return sendLoop(box, &sent); });
    consumer.stop();
    if (QTest::currentTestFailed())
        return;
    qint64 left = 0;
    while (box.tryReceive())
        ++left;
    QVERIFY(sent.load() > 0);
    QCOMPARE(received.load() + left, sent.load());
}

// And for a reply settled between await_ready() and await_suspend() (a smaller window: a
// regression guard rather than a reproduction).
void tst_MailboxStress::stopsRacingRepliesSettledBeforeSuspending()
{
    stage::Mailbox<stage::Reply<int>> requests;
    std::atomic<qint64> answered{0};
    BackgroundLoop answerer([&] {
        auto request = requests.tryReceive();
        if (!request)
            return false;
        (**request).send(1);
        return true;
    });
    stopAndRestartRepeatedly([requests, &answered] { return asker(requests, &answered); });
    answerer.stop();
    if (QTest::currentTestFailed())
        return;
    QVERIFY(answered.load() > 0);
}

QTEST_GUILESS_MAIN(tst_MailboxStress)
#include "tst_mailboxstress.moc"
