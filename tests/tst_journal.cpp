// Tests of journaled mailboxes (the contract in stage/detail/journal.h that Stage::Durable and
// Stage::Redis implement), against a journal of the test's own that records every call and
// commits only when told to: a send waits for its commit and fails with the journal's error;
// trySend() does not wait and flush() does; the hooks come in the documented order with the
// right ids and counts (delivered, acknowledged, requeued with failures, dead-lettered with the
// final reason, removed when taken); the journal's feed (inject) keeps counts, so failures in an
// earlier process count against maxRedeliveries; a journal that does not queue locally only
// appends; an encoding error fails the send and queues nothing.

#include "testutil.h"

#include <stage/stage.h>

#include <QtCore/QLoggingCategory>
#include <QtCore/QTimer>
#include <QtTest/QTest>

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace journaltest {

using namespace std::chrono_literals;
using stage::Mailbox;
using stage::SendStatus;
using stage::detail::MailboxAccess;
using stage::detail::Waiter;
using stagetest::Timeout;

constexpr std::chrono::milliseconds kTimeout(Timeout);

/* A journal that records every hook as a line ("append 1 a", "delivered 1", ...) and commits
   only when commit() is called (or at once with autoCommit). */
class FakeJournal final : public stage::detail::Journal<QString>
{
public:
    explicit FakeJournal(bool local = true) : m_local(local) {}
    ~FakeJournal() override
    {
        destroyed = true;
        failPending(QStringLiteral("journal destroyed"));
    }

    bool queuesLocally() const noexcept override { return m_local; }
    QByteArray encode(const QString &value) override
    {
        if (value == QLatin1String("unencodable"))
            throw stage::JournalError("journal test: this value cannot be encoded");
        return value.toUtf8();
    }
    quint64 append(QByteArray &&bytes, quint64 &ticket) override
    {
        std::lock_guard lock(m_mutex);
        const quint64 id = ++m_lastId;
        ticket = ++m_lastTicket;
        m_log << QStringLiteral("append %1 %2").arg(id).arg(QString::fromUtf8(bytes));
        if (autoCommit)
            m_committed = m_lastTicket;
        return id;
    }
    void delivered(quint64 id) noexcept override { log(QStringLiteral("delivered %1").arg(id)); }
    void acknowledged(quint64 id) noexcept override { log(QStringLiteral("acknowledged %1").arg(id)); }
    void requeued(quint64 id, quint32 failures) noexcept override
    {
        log(QStringLiteral("requeued %1 failures %2").arg(id).arg(failures));
    }
    void dropped(quint64 id) noexcept override { log(QStringLiteral("dropped %1").arg(id)); }
    void deadLettered(quint64 id, quint32 failures, const QString &reason) noexcept override
    {
        log(QStringLiteral("deadLettered %1 failures %2: %3").arg(id).arg(failures).arg(reason));
    }
    void deadLettersRemoved(const std::vector<quint64> &ids) noexcept override
    {
        QStringList names;
        for (quint64 id : ids)
            names << QString::number(id);
        log(QStringLiteral("removed %1").arg(names.join(QLatin1Char(','))));
    }
    void mailboxClosed() noexcept override { log(QStringLiteral("closed")); }

    quint64 lastTicket() const noexcept override
    {
        std::lock_guard lock(m_mutex);
        return m_lastTicket;
    }
    void whenDurable(quint64 ticket, Waiter *waiter) override
    {
        std::unique_lock lock(m_mutex);
        if (ticket <= m_committed) {
            lock.unlock();
            waiter->publish(Waiter::Outcome::Value);
            return;
        }
        waiter->ref();
        m_waiting.emplace(ticket, waiter);
    }
    bool waitDurable(quint64 ticket, std::chrono::steady_clock::time_point deadline) override
    {
        std::unique_lock lock(m_mutex);
        const bool done = m_changed.wait_until(lock, deadline, [&] { return ticket <= m_committed || !m_error.isEmpty(); });
        if (!m_error.isEmpty())
            throw stage::JournalError(m_error.toStdString());
        return done;
    }

    /* Makes every append so far durable. Any thread. */
    void commit()
    {
        std::multimap<quint64, Waiter *> ready;
        {
            std::lock_guard lock(m_mutex);
            m_committed = m_lastTicket;
            ready.swap(m_waiting);
        }
        m_changed.notify_all();
        for (auto &[ticket, waiter] : ready) {
            waiter->publish(Waiter::Outcome::Value);
            waiter->deref();
        }
    }
    /* Fails every pending commit (and later ones) with \a why. */
    void failPending(const QString &why)
    {
        std::multimap<quint64, Waiter *> failed;
        {
            std::lock_guard lock(m_mutex);
            m_error = why;
            failed.swap(m_waiting);
        }
        m_changed.notify_all();
        for (auto &[ticket, waiter] : failed) {
            waiter->publishError(std::make_exception_ptr(stage::JournalError(why.toStdString())));
            waiter->deref();
        }
    }
    QStringList takeLog()
    {
        std::lock_guard lock(m_mutex);
        return std::exchange(m_log, {});
    }
    int waiting() const
    {
        std::lock_guard lock(m_mutex);
        return int(m_waiting.size());
    }

    bool autoCommit = false;
    std::atomic<bool> destroyed{false};

private:
    void log(const QString &line)
    {
        std::lock_guard lock(m_mutex);
        m_log << line;
    }

    const bool m_local;
    mutable std::mutex m_mutex;
    std::condition_variable m_changed;
    QStringList m_log;
    quint64 m_lastId = 0;
    quint64 m_lastTicket = 0;
    quint64 m_committed = 0;
    QString m_error;
    std::multimap<quint64, Waiter *> m_waiting;
};

struct Fixture
{
    explicit Fixture(int capacity = -1, bool local = true)
        : journal(std::make_shared<FakeJournal>(local)),
          mailbox(MailboxAccess::makeJournaled<QString>(capacity, journal))
    {}
    std::shared_ptr<FakeJournal> journal;
    Mailbox<QString> mailbox;
};

/* Sends \a value; \a state: 1 done, 2 JournalError (its text in \a error), 3 MailboxClosed. */
QCoro::Task<> sendOne(Mailbox<QString> mb, QString value, std::atomic<int> *state, QString *error)
{
    try {
        co_await mb.send(std::move(value));
        state->store(1);
    } catch (const stage::JournalError &e) {
        *error = QString::fromUtf8(e.what());
        state->store(2);
    } catch (const stage::MailboxClosed &) {
        state->store(3);
    }
}

QCoro::Task<> flushOne(Mailbox<QString> mb, std::atomic<int> *state)
{
    try {
        co_await mb.flush();
        state->store(1);
    } catch (const stage::JournalError &) {
        state->store(2);
    }
}

QCoro::Task<QString> receiveAndAck(Mailbox<QString> mb)
{
    auto d = co_await mb.receive();
    co_return *d; // acknowledged by the destruction
}

QCoro::Task<> receiveAndThrow(Mailbox<QString> mb)
{
    auto d = co_await mb.receive();
    throw std::runtime_error("boom " + d->toStdString());
}

} // namespace journaltest

using namespace journaltest;

class tst_Journal : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void inMemoryMailbox_isNotJournaled();
    void send_waitsForTheCommit();
    void send_commitFailureThrowsTheJournalsError();
    void send_encodingErrorQueuesNothing();
    void send_waitingForRoomThenForTheCommit();
    void trySend_doesNotWait_flushDoes();
    void sendBlocking_andFlushBlocking_waitForTheCommit();
    void hooks_deliveredAcknowledgedInOrder();
    void hooks_failuresRequeueThenDeadLetterWithTheReason();
    void inject_keepsOrderAndCounts();
    void inject_failuresFromAnEarlierProcessCount();
    void injectDeadLetter_isShownAndRemovedWhenTaken();
    void remoteJournal_sendOnlyAppends();
    void connectDropOldest_tellsTheJournal();
    void destroyedMailbox_injectFails_andTheJournalGoes();
};

void tst_Journal::inMemoryMailbox_isNotJournaled()
{
    const Mailbox<QString> mb;
    QVERIFY(!mb.isJournaled());
    QVERIFY(mb.flushBlocking(0ms)); // nothing to wait for
    QVERIFY_THROWS_NO_EXCEPTION(stage::waitFor(mb.flush(), kTimeout));
    Fixture f;
    QVERIFY(f.mailbox.isJournaled());
    QVERIFY(f.mailbox.flushBlocking(0ms)); // nothing appended yet
}

void tst_Journal::send_waitsForTheCommit()
{
    Fixture f;
    std::atomic<int> state{0};
    QString error;
    auto task = sendOne(f.mailbox, QStringLiteral("a"), &state, &error);
    // Queued (a consumer could take it now), but the send is not done before the commit.
    QTRY_COMPARE_WITH_TIMEOUT(f.journal->waiting(), 1, Timeout);
    QCOMPARE(f.mailbox.count(), 1);
    QTest::qWait(50);
    QCOMPARE(state.load(), 0);
    f.journal->commit();
    QTRY_COMPARE_WITH_TIMEOUT(state.load(), 1, Timeout);
    QCOMPARE(f.journal->takeLog(), QStringList{QStringLiteral("append 1 a")});
}

void tst_Journal::send_commitFailureThrowsTheJournalsError()
{
    Fixture f;
    std::atomic<int> state{0};
    QString error;
    auto task = sendOne(f.mailbox, QStringLiteral("a"), &state, &error);
    QTRY_COMPARE_WITH_TIMEOUT(f.journal->waiting(), 1, Timeout);
    f.journal->failPending(QStringLiteral("disk full"));
    QTRY_COMPARE_WITH_TIMEOUT(state.load(), 2, Timeout);
    QCOMPARE(error, QStringLiteral("disk full"));
}

void tst_Journal::send_encodingErrorQueuesNothing()
{
    Fixture f;
    std::atomic<int> state{0};
    QString error;
    stage::waitFor(sendOne(f.mailbox, QStringLiteral("unencodable"), &state, &error), kTimeout);
    QCOMPARE(state.load(), 2);
    QCOMPARE(error, QStringLiteral("journal test: this value cannot be encoded"));
    QVERIFY_THROWS_EXCEPTION(stage::JournalError, f.mailbox.trySend(QStringLiteral("unencodable")));
    QVERIFY_THROWS_EXCEPTION(stage::JournalError, f.mailbox.sendBlocking(QStringLiteral("unencodable")));
    QCOMPARE(f.mailbox.count(), 0);
    QCOMPARE(f.mailbox.statistics().queued, 0);
    QCOMPARE(f.journal->takeLog(), QStringList{});
}

void tst_Journal::send_waitingForRoomThenForTheCommit()
{
    Fixture f(1);
    f.journal->autoCommit = true;
    QCOMPARE(f.mailbox.trySend(QStringLiteral("a")), SendStatus::Sent);
    f.journal->autoCommit = false;
    std::atomic<int> state{0};
    QString error;
    auto task = sendOne(f.mailbox, QStringLiteral("b"), &state, &error);
    QTest::qWait(50);
    QCOMPARE(state.load(), 0); // full
    QCOMPARE(f.journal->takeLog(), QStringList{QStringLiteral("append 1 a")});
    {
        auto d = f.mailbox.tryReceive(); // makes room: b is appended (first) and queued, not yet durable
        QVERIFY(d);
        QCOMPARE(**d, QStringLiteral("a"));
    }
    QTRY_COMPARE_WITH_TIMEOUT(f.journal->waiting(), 1, Timeout);
    QCOMPARE(f.mailbox.count(), 1);
    QTest::qWait(50);
    QCOMPARE(state.load(), 0);
    f.journal->commit();
    QTRY_COMPARE_WITH_TIMEOUT(state.load(), 1, Timeout);
    QCOMPARE(f.journal->takeLog(),
             (QStringList{QStringLiteral("append 2 b"), QStringLiteral("delivered 1"), QStringLiteral("acknowledged 1")}));
}

void tst_Journal::trySend_doesNotWait_flushDoes()
{
    Fixture f;
    for (const char *v : {"a", "b", "c"})
        QCOMPARE(f.mailbox.trySend(QString::fromLatin1(v)), SendStatus::Sent);
    QCOMPARE(f.mailbox.count(), 3);
    std::atomic<int> flushed{0};
    auto task = flushOne(f.mailbox, &flushed);
    QTRY_COMPARE_WITH_TIMEOUT(f.journal->waiting(), 1, Timeout);
    QTest::qWait(50);
    QCOMPARE(flushed.load(), 0);
    f.journal->commit();
    QTRY_COMPARE_WITH_TIMEOUT(flushed.load(), 1, Timeout);
    // A failed commit fails the flush.
    QCOMPARE(f.mailbox.trySend(QStringLiteral("d")), SendStatus::Sent);
    std::atomic<int> failed{0};
    auto task2 = flushOne(f.mailbox, &failed);
    QTRY_COMPARE_WITH_TIMEOUT(f.journal->waiting(), 1, Timeout);
    f.journal->failPending(QStringLiteral("gone"));
    QTRY_COMPARE_WITH_TIMEOUT(failed.load(), 2, Timeout);
}

void tst_Journal::sendBlocking_andFlushBlocking_waitForTheCommit()
{
    Fixture f;
    QCOMPARE(f.mailbox.trySend(QStringLiteral("a")), SendStatus::Sent);
    QVERIFY(!f.mailbox.flushBlocking(30ms)); // not committed: the timeout
    std::thread committer([&] {
        std::this_thread::sleep_for(50ms);
        f.journal->commit(); // a's commit; b's comes below
        std::this_thread::sleep_for(50ms);
        f.journal->commit();
    });
    QVERIFY(f.mailbox.flushBlocking(kTimeout));
    QCOMPARE(f.mailbox.sendBlocking(QStringLiteral("b")), SendStatus::Sent); // returns after the second commit
    committer.join();
    QCOMPARE(f.journal->lastTicket(), quint64(2));
    f.journal->failPending(QStringLiteral("read-only file system"));
    QVERIFY_THROWS_EXCEPTION(stage::JournalError, f.mailbox.sendBlocking(QStringLiteral("c")));
    QCOMPARE(f.mailbox.count(), 3); // queued, but its send reported that it is not durable
}

void tst_Journal::hooks_deliveredAcknowledgedInOrder()
{
    Fixture f;
    f.journal->autoCommit = true;
    QCOMPARE(f.mailbox.trySend(QStringLiteral("a")), SendStatus::Sent);
    QCOMPARE(f.mailbox.trySend(QStringLiteral("b")), SendStatus::Sent);
    QCOMPARE(stage::waitFor(receiveAndAck(f.mailbox), kTimeout), QStringLiteral("a"));
    {
        auto d = f.mailbox.tryReceive();
        QVERIFY(d);
        d->ack();
        d->ack(); // once
    }
    f.mailbox.close();
    QCOMPARE(f.journal->takeLog(),
             (QStringList{QStringLiteral("append 1 a"), QStringLiteral("append 2 b"), QStringLiteral("delivered 1"),
                          QStringLiteral("acknowledged 1"), QStringLiteral("delivered 2"), QStringLiteral("acknowledged 2"),
                          QStringLiteral("closed")}));
    QCOMPARE(f.mailbox.trySend(QStringLiteral("c")), SendStatus::Closed);
    QCOMPARE(f.journal->takeLog(), QStringList{});
}

void tst_Journal::hooks_failuresRequeueThenDeadLetterWithTheReason()
{
    // A worker that fails on every message: the journal hears each requeue with its failure
    // count, then the dead letter with the final reason (the failure's what()), then its removal.
    QLoggingCategory::setFilterRules(QStringLiteral("stage.mailbox.warning=false\nstage.group.info=false\nstage.group.warning=false"));
    Fixture f;
    f.journal->autoCommit = true;
    f.mailbox.setMaxRedeliveries(1);
    QCOMPARE(f.mailbox.trySend(QStringLiteral("x")), SendStatus::Sent);
    stage::Group group;
    const Mailbox<QString> mb = f.mailbox;
    QVERIFY(group.spawn([mb](stage::Worker &) -> QCoro::Task<> {
        for (;;) {
            auto d = co_await mb.receive();
            throw std::runtime_error("boom " + d->toStdString());
        }
    }));
    QTRY_COMPARE_WITH_TIMEOUT(f.mailbox.deadLetterCount(), 1, Timeout);
    QStringList log;
    QTRY_VERIFY_WITH_TIMEOUT((log << f.journal->takeLog(), log.size() >= 5), Timeout);
    QCOMPARE(log, (QStringList{QStringLiteral("append 1 x"), QStringLiteral("delivered 1"),
                               QStringLiteral("requeued 1 failures 1"), QStringLiteral("delivered 1"),
                               QStringLiteral("deadLettered 1 failures 2: boom x")}));
    const auto letters = f.mailbox.takeDeadLetters();
    QCOMPARE(letters.size(), std::size_t(1));
    QCOMPARE(letters[0].value, QStringLiteral("x"));
    QCOMPARE(letters[0].reason, QStringLiteral("boom x"));
    QCOMPARE(f.journal->takeLog(), QStringList{QStringLiteral("removed 1")});
    QLoggingCategory::setFilterRules(QString());
}

void tst_Journal::inject_keepsOrderAndCounts()
{
    Fixture f;
    const auto core = MailboxAccess::weakCore(f.mailbox);
    QVERIFY(MailboxAccess::inject(core, QStringLiteral("p"), 7, 2, 1));
    QVERIFY(MailboxAccess::inject(core, QStringLiteral("q"), 9, 0, 0));
    QCOMPARE(f.mailbox.count(), 2);
    auto d = f.mailbox.tryReceive();
    QVERIFY(d);
    QCOMPARE(**d, QStringLiteral("p"));
    QCOMPARE(d->previousDeliveries(), 2);
    QCOMPARE(d->failures(), 1);
    d.reset();
    QCOMPARE(stage::waitFor(receiveAndAck(f.mailbox), kTimeout), QStringLiteral("q"));
    QCOMPARE(f.journal->takeLog(), (QStringList{QStringLiteral("delivered 7"), QStringLiteral("acknowledged 7"),
                                                QStringLiteral("delivered 9"), QStringLiteral("acknowledged 9")}));
    // A consumer waiting gets an injected message handed over.
    auto waiting = receiveAndAck(f.mailbox);
    QVERIFY(MailboxAccess::inject(core, QStringLiteral("r"), 10, 0, 0));
    QCOMPARE(stage::waitFor(std::move(waiting), kTimeout), QStringLiteral("r"));
    f.mailbox.close();
    QVERIFY(!MailboxAccess::inject(core, QStringLiteral("s"), 11, 0, 0)); // closed: stays the journal's
}

void tst_Journal::inject_failuresFromAnEarlierProcessCount()
{
    QLoggingCategory::setFilterRules(QStringLiteral("stage.mailbox.warning=false"));
    Fixture f;
    f.mailbox.setMaxRedeliveries(2);
    QVERIFY(MailboxAccess::inject(MailboxAccess::weakCore(f.mailbox), QStringLiteral("poison"), 5, 2, 2));
    QVERIFY_THROWS_EXCEPTION(std::runtime_error, stage::waitFor(receiveAndThrow(f.mailbox), kTimeout));
    QCOMPARE(f.mailbox.deadLetterCount(), 1); // its third failure, the first in this process
    QCOMPARE(f.mailbox.count(), 0);
    const QStringList log = f.journal->takeLog();
    QCOMPARE(log.value(0), QStringLiteral("delivered 5"));
    // Outside a worker the failure's text is not known: the letter gets the general reason.
    QCOMPARE(log.value(1), QStringLiteral("deadLettered 5 failures 3: its consumer failed while holding it"));
    QCOMPARE(log.size(), 2);
    QLoggingCategory::setFilterRules(QString());
}

void tst_Journal::injectDeadLetter_isShownAndRemovedWhenTaken()
{
    Fixture f;
    QVERIFY(MailboxAccess::injectDeadLetter(MailboxAccess::weakCore(f.mailbox), QStringLiteral("old"), 3, 4,
                                            QStringLiteral("the process ended while a consumer held it")));
    QCOMPARE(f.mailbox.deadLetterCount(), 1);
    QCOMPARE(f.mailbox.object()->deadLetterReasons(),
             QStringList{QStringLiteral("the process ended while a consumer held it")});
    QCOMPARE(f.journal->takeLog(), QStringList{}); // nothing to record: the journal told us
    const auto letters = f.mailbox.takeDeadLetters();
    QCOMPARE(letters.size(), std::size_t(1));
    QCOMPARE(letters[0].value, QStringLiteral("old"));
    QCOMPARE(letters[0].failures, 4);
    QCOMPARE(f.journal->takeLog(), QStringList{QStringLiteral("removed 3")});
    // Dropped beyond the limit: removed too.
    const auto core = MailboxAccess::weakCore(f.mailbox);
    QVERIFY(MailboxAccess::injectDeadLetter(core, QStringLiteral("d1"), 4, 1, QStringLiteral("r")));
    QVERIFY(MailboxAccess::injectDeadLetter(core, QStringLiteral("d2"), 5, 1, QStringLiteral("r")));
    f.mailbox.setDeadLetterLimit(1);
    QCOMPARE(f.mailbox.deadLetterCount(), 1);
    QCOMPARE(f.journal->takeLog(), QStringList{QStringLiteral("removed 4")});
}

void tst_Journal::remoteJournal_sendOnlyAppends()
{
    Fixture f(1, false);
    f.journal->autoCommit = true;
    // Never full: nothing is queued here by a send (capacity bounds what the feed injects).
    QCOMPARE(f.mailbox.trySend(QStringLiteral("a")), SendStatus::Sent);
    QCOMPARE(f.mailbox.trySend(QStringLiteral("b")), SendStatus::Sent);
    QCOMPARE(f.mailbox.sendBlocking(QStringLiteral("c")), SendStatus::Sent);
    std::atomic<int> state{0};
    QString error;
    stage::waitFor(sendOne(f.mailbox, QStringLiteral("d"), &state, &error), kTimeout);
    QCOMPARE(state.load(), 1);
    QCOMPARE(f.mailbox.count(), 0);
    QVERIFY(!f.mailbox.tryReceive());
    QCOMPARE(f.journal->takeLog(), (QStringList{QStringLiteral("append 1 a"), QStringLiteral("append 2 b"),
                                                QStringLiteral("append 3 c"), QStringLiteral("append 4 d")}));
    QVERIFY(MailboxAccess::inject(MailboxAccess::weakCore(f.mailbox), QStringLiteral("a"), 1, 0, 0));
    QCOMPARE(stage::waitFor(receiveAndAck(f.mailbox), kTimeout), QStringLiteral("a"));
    QCOMPARE(f.journal->takeLog(), (QStringList{QStringLiteral("delivered 1"), QStringLiteral("acknowledged 1")}));
}

void tst_Journal::connectDropOldest_tellsTheJournal()
{
    Fixture f(1);
    f.journal->autoCommit = true;
    QTimer timer;
    auto connection = stage::connect(&timer, &QTimer::objectNameChanged, f.mailbox,
                                     stage::SignalFeed::Overflow::DropOldest);
    timer.setObjectName(QStringLiteral("one"));
    timer.setObjectName(QStringLiteral("two")); // full: "one" is dropped for it
    QCOMPARE(f.mailbox.count(), 1);
    QCOMPARE(f.journal->takeLog(),
             (QStringList{QStringLiteral("append 1 one"), QStringLiteral("dropped 1"), QStringLiteral("append 2 two")}));
    // An unencodable emission is counted, not thrown into the emitter.
    timer.setObjectName(QStringLiteral("unencodable"));
    QCOMPARE(f.mailbox.count(), 1);
    QCOMPARE(connection.feed()->rejected(), 1);
}

void tst_Journal::destroyedMailbox_injectFails_andTheJournalGoes()
{
    auto journal = std::make_shared<FakeJournal>();
    std::weak_ptr<FakeJournal> weakJournal = journal;
    std::weak_ptr<stage::detail::MailboxCore<QString>> core;
    {
        auto mb = MailboxAccess::makeJournaled<QString>(-1, std::move(journal));
        core = MailboxAccess::weakCore(mb);
        QCOMPARE(mb.trySend(QStringLiteral("kept by the journal")), SendStatus::Sent);
    } // no "destroyed with messages still queued" warning: the journal keeps them
    QVERIFY(weakJournal.expired());
    QVERIFY(!MailboxAccess::inject(core, QStringLiteral("late"), 1, 0, 0));
}

QTEST_GUILESS_MAIN(tst_Journal)
#include "tst_journal.moc"
