// Tests of stage::Reply<T> / stage::ReplyReceiver<T> (stage::makeReply<T>()): the value from any
// thread, a broken reply when the Reply is destroyed unanswered (also while the receiver waits),
// wait(timeout), awaiting twice, sending twice, a reply arriving after a cancelled wait, and
// replies carried in mailbox requests whose consumers fail.
//
// Coroutines record an Outcome; the test functions compare outside them.

#include "testutil.h"

#include <stage/stage.h>

#include <QtCore/QElapsedTimer>
#include <QtCore/QRegularExpression>
#include <QtTest/QSignalSpy>
#include <QtTest/QTest>

#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>

namespace replytest {

using namespace std::chrono_literals;
using stagetest::ScopedThread;
using stagetest::Timeout;
using Kind = stage::WorkerExit::Kind;
using Ptr = std::unique_ptr<int>;

constexpr std::chrono::milliseconds kTimeout(Timeout);
const QString kTwiceWarning = QStringLiteral("Reply::send: the reply was already sent (a reply is one-shot); ignored");

/* How one await of a receiver ended. */
struct Outcome
{
    std::atomic<int> done{0}; // 1 once the await ended (any way)
    int value = -1;
    QString error; // "", "deadLettered", "broken", "timeout", "invalid", "cancelled"
    QString what;  // what() of the exception
    QThread *thread = nullptr;
    qint64 elapsedMs = -1;
    bool suspended = false; // the await did not complete synchronously
};

/* Awaits \a rx (with wait(timeoutMs) if timeoutMs >= 0) and records how it ended. */
QCoro::Task<> awaitReply(const stage::ReplyReceiver<int> *rx, int timeoutMs, Outcome *out)
{
    QElapsedTimer timer;
    timer.start();
    try {
        if (timeoutMs >= 0)
            out->value = co_await rx->wait(std::chrono::milliseconds(timeoutMs));
        else
            out->value = co_await *rx;
    } catch (const stage::DeadLettered &e) {
        out->error = QStringLiteral("deadLettered");
        out->what = QString::fromUtf8(e.what());
    } catch (const stage::BrokenReply &e) {
        out->error = QStringLiteral("broken");
        out->what = QString::fromUtf8(e.what());
    } catch (const stage::TimeoutError &) {
        out->error = QStringLiteral("timeout");
    } catch (const stage::InvalidOperation &) {
        out->error = QStringLiteral("invalid");
    } catch (const stage::Cancelled &) {
        out->error = QStringLiteral("cancelled");
        out->thread = QThread::currentThread();
        out->elapsedMs = timer.elapsed();
        out->done.store(1);
        throw;
    }
    out->thread = QThread::currentThread();
    out->elapsedMs = timer.elapsed();
    out->done.store(1);
}

/* Awaits \a rx and returns its value (for stage::waitFor()). */
QCoro::Task<int> take(const stage::ReplyReceiver<int> *rx)
{
    co_return co_await *rx;
}

/* Starts awaitReply() as a detached coroutine on the calling thread; notes whether it suspended. */
void startAwait(const stage::ReplyReceiver<int> *rx, int timeoutMs, Outcome *out)
{
    awaitReply(rx, timeoutMs, out); // eager: runs up to its first suspension
    out->suspended = out->done.load() == 0;
}

/* A worker that awaits \a rx once. */
void startAwaitingWorker(stage::WorkerHandle &handle, const stage::ReplyReceiver<int> *rx, int timeoutMs,
                         Outcome *out, QThread *thread = nullptr)
{
    handle.start([rx, timeoutMs, out] { return awaitReply(rx, timeoutMs, out); }, thread);
}

// ---- requests through a mailbox ----

struct Add
{
    int a = 0;
    int b = 0;
    stage::Reply<int> reply;
};

/* Answers requests; fails while holding the first request whose a == \a failOn (each time if
   \a always). */
QCoro::Task<> adder(stage::Mailbox<Add> requests, int failOn, bool always, std::atomic<int> *failures)
{
    for (;;) {
        auto request = co_await requests.receive();
        if (request->a == failOn && (always || failures->load() == 0)) {
            failures->fetch_add(1);
            throw std::runtime_error("adder failed on " + std::to_string(request->a));
        }
        request->reply.send(request->a + request->b);
    }
}

/* The same request, opted in: a dead-lettered one fails its caller at once. */
struct AddWithHook
{
    int a = 0;
    int b = 0;
    stage::Reply<int> reply;
    friend void stageFailReplies(AddWithHook &add, const stage::DeadLettered &why) { add.reply.fail(why); }
};

QCoro::Task<> adderWithHook(stage::Mailbox<AddWithHook> requests)
{
    for (;;) {
        auto request = co_await requests.receive();
        if (request->a == 1)
            throw std::runtime_error("adder failed on 1");
        request->reply.send(request->a + request->b);
    }
}

enum class From { MainThreadLater, StdThread, QThreadEventLoop };
enum class Failer { BeforeAwait, WhileWaiting, WhileWaitingWithTimeout, FromStdThread };
enum class Breaker { BeforeAwait, WhileWaiting, WhileWaitingWithTimeout, FromStdThread, MoveAssigned, MailboxDestroyed };
enum class Twice { Sequential, Concurrent };

} // namespace replytest

using namespace replytest;

Q_DECLARE_METATYPE(replytest::From)
Q_DECLARE_METATYPE(replytest::Breaker)
Q_DECLARE_METATYPE(replytest::Twice)
Q_DECLARE_METATYPE(replytest::Failer)

class tst_Reply : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void send_beforeAwaitIsReadyAtOnce();
    void send_fromAnyThread_data();
    void send_fromAnyThread();
    void send_moveOnlyValue();
    void send_twiceWarnsAndReturnsFalse_data();
    void send_twiceWarnsAndReturnsFalse();
    void isPending_untilSentOrMoved();
    void destroyedUnanswered_breaksTheReply_data();
    void destroyedUnanswered_breaksTheReply();
    void wait_timesOut_data();
    void wait_timesOut();
    void wait_valueInTimeIsNoTimeout();
    void await_twiceIsInvalid_data();
    void await_twiceIsInvalid();
    void cancelledWait_laterReplyCanStillBeAwaited_data();
    void cancelledWait_laterReplyCanStillBeAwaited();
    void mailbox_requestRedeliveredAfterConsumerFailure();
    void mailbox_deadLetteredRequestBreaksWhenDropped();
    void mailbox_deadLetteredRequestFailsAtOnce();
    void fail_resumesTheReceiverWithTheError_data();
    void fail_resumesTheReceiverWithTheError();
    void fail_everyLaterAwaitThrowsAtOnce();
    void fail_afterSendOrFailIsIgnored();
    void deadLettered_isABrokenReplyWithItsReason();
    void makeRequest_answersThroughItsReply();
    void failReplies_reachesEveryReplyAMessageCarries();
};

void tst_Reply::send_beforeAwaitIsReadyAtOnce()
{
    auto replyPair = stage::makeReply<int>();
    auto &reply = replyPair.first;
    auto &rx = replyPair.second;
    QVERIFY(reply.send(5));
    Outcome out;
    startAwait(&rx, -1, &out);
    QVERIFY(!out.suspended); // nothing to wait for
    QCOMPARE(out.done.load(), 1);
    QCOMPARE(out.value, 5);
    QCOMPARE(out.error, QString());
}

void tst_Reply::send_fromAnyThread_data()
{
    QTest::addColumn<From>("from");
    QTest::addColumn<bool>("receiverOnThread"); // the awaiting worker runs on another QThread
    for (bool onThread : {false, true}) {
        const char *where = onThread ? "receiver on a thread" : "receiver on the main thread";
        QTest::addRow("main thread, later (%s)", where) << From::MainThreadLater << onThread;
        QTest::addRow("std::thread (%s)", where) << From::StdThread << onThread;
        QTest::addRow("QThread event loop (%s)", where) << From::QThreadEventLoop << onThread;
    }
}

void tst_Reply::send_fromAnyThread()
{
    QFETCH(From, from);
    QFETCH(bool, receiverOnThread);
    ScopedThread receiverThread(QStringLiteral("receiver"));
    ScopedThread senderThread(QStringLiteral("sender"));
    QThread *home = receiverOnThread ? receiverThread.get() : QThread::currentThread();
    auto replyPair = stage::makeReply<int>();
    auto &reply = replyPair.first;
    auto &rx = replyPair.second;
    Outcome out;
    stage::WorkerHandle handle;
    stagetest::ExitRecorder exits(handle);
    startAwaitingWorker(handle, &rx, -1, &out, home);
    QVERIFY(stagetest::roundTrip(home)); // waiting
    QCOMPARE(out.done.load(), 0);

    std::atomic<int> sent{0};
    switch (from) {
    case From::MainThreadLater:
        QTimer::singleShot(10, &handle, [&] { sent = reply.send(42) ? 1 : 2; });
        break;
    case From::StdThread:
        std::thread([&] { sent = reply.send(42) ? 1 : 2; }).join();
        break;
    case From::QThreadEventLoop:
        QMetaObject::invokeMethod(
            senderThread.context(), [&] { sent = reply.send(42) ? 1 : 2; }, Qt::QueuedConnection);
        break;
    }
    QTRY_COMPARE_WITH_TIMEOUT(out.done.load(), 1, Timeout);
    QCOMPARE(sent.load(), 1);
    QCOMPARE(out.value, 42);
    QCOMPARE(out.error, QString());
    QCOMPARE(out.thread, home); // resumed on its own thread, not the sender's
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), Kind::Completed);
    QVERIFY(!reply.isPending());
}

QCoro::Task<int> awaitPtr(const stage::ReplyReceiver<Ptr> *rx)
{
    Ptr p = co_await *rx;
    co_return p ? *p : -1;
}

void tst_Reply::send_moveOnlyValue()
{
    auto replyPair = stage::makeReply<Ptr>();
    auto &reply = replyPair.first;
    auto &rx = replyPair.second;
    std::thread([&reply] { reply.send(std::make_unique<int>(17)); }).join();
    QCOMPARE(stage::waitFor(awaitPtr(&rx), kTimeout), 17);
}

void tst_Reply::send_twiceWarnsAndReturnsFalse_data()
{
    QTest::addColumn<bool>("movedFrom"); // the second send goes through a moved-from Reply
    QTest::newRow("same reply") << false;
    QTest::newRow("moved-from reply") << true;
}

void tst_Reply::send_twiceWarnsAndReturnsFalse()
{
    QFETCH(bool, movedFrom);
    auto replyPair = stage::makeReply<int>();
    auto &reply = replyPair.first;
    auto &rx = replyPair.second;
    Outcome out;
    startAwait(&rx, -1, &out);
    QVERIFY(out.suspended);
    QTest::ignoreMessage(QtWarningMsg, qPrintable(kTwiceWarning));
    if (movedFrom) {
        stage::Reply<int> other = std::move(reply);
        QVERIFY(!reply.send(2)); // NOLINT(bugprone-use-after-move): on purpose
        QVERIFY(other.send(1));
    } else {
        QVERIFY(reply.send(1));
        QVERIFY(!reply.send(2));
    }
    QTRY_COMPARE_WITH_TIMEOUT(out.done.load(), 1, Timeout);
    QCOMPARE(out.value, 1); // the first value, once
    QCOMPARE(out.error, QString());
}

void tst_Reply::isPending_untilSentOrMoved()
{
    auto replyPair = stage::makeReply<int>();
    auto &reply = replyPair.first;
    auto &rx = replyPair.second;
    QVERIFY(reply.isPending());
    stage::Reply<int> moved = std::move(reply);
    QVERIFY(!reply.isPending()); // NOLINT(bugprone-use-after-move): on purpose
    QVERIFY(moved.isPending());
    QVERIFY(moved.send(3));
    QVERIFY(!moved.isPending());
    QCOMPARE(stage::waitFor(take(&rx), kTimeout), 3);
}

void tst_Reply::destroyedUnanswered_breaksTheReply_data()
{
    QTest::addColumn<Breaker>("breaker");
    QTest::addColumn<bool>("receiverOnThread");
    for (bool onThread : {false, true}) {
        const char *where = onThread ? "receiver on a thread" : "receiver on the main thread";
        QTest::addRow("destroyed before the await (%s)", where) << Breaker::BeforeAwait << onThread;
        QTest::addRow("destroyed while waiting (%s)", where) << Breaker::WhileWaiting << onThread;
        QTest::addRow("destroyed while waiting with a 60 s timeout (%s)", where)
            << Breaker::WhileWaitingWithTimeout << onThread;
        QTest::addRow("destroyed on a std::thread (%s)", where) << Breaker::FromStdThread << onThread;
        QTest::addRow("move-assigned over (%s)", where) << Breaker::MoveAssigned << onThread;
        QTest::addRow("in a request of a destroyed mailbox (%s)", where) << Breaker::MailboxDestroyed << onThread;
    }
}

void tst_Reply::destroyedUnanswered_breaksTheReply()
{
    // The receiver learns at once (not at its 60 s timeout, not never) that no reply will come.
    QFETCH(Breaker, breaker);
    QFETCH(bool, receiverOnThread);
    ScopedThread thread;
    QThread *home = receiverOnThread ? thread.get() : QThread::currentThread();
    auto pair = std::make_unique<std::pair<stage::Reply<int>, stage::ReplyReceiver<int>>>(stage::makeReply<int>());
    auto reply = std::make_unique<stage::Reply<int>>(std::move(pair->first));
    const stage::ReplyReceiver<int> &rx = pair->second;
    std::optional<stage::Mailbox<Add>> requests;
    if (breaker == Breaker::MailboxDestroyed) {
        requests.emplace(4);
        QCOMPARE(requests->trySend(Add{1, 2, std::move(*reply)}), stage::SendStatus::Sent);
        QVERIFY(!reply->isPending());
    }

    Outcome out;
    stage::WorkerHandle handle;
    stagetest::ExitRecorder exits(handle);
    const int timeoutMs = breaker == Breaker::WhileWaitingWithTimeout ? 60000 : -1;
    if (breaker == Breaker::BeforeAwait)
        reply.reset();
    startAwaitingWorker(handle, &rx, timeoutMs, &out, home);
    QVERIFY(stagetest::roundTrip(home));
    switch (breaker) {
    case Breaker::BeforeAwait:
        break;
    case Breaker::WhileWaiting:
    case Breaker::WhileWaitingWithTimeout:
        QCOMPARE(out.done.load(), 0);
        reply.reset();
        break;
    case Breaker::FromStdThread:
        QCOMPARE(out.done.load(), 0);
        std::thread([&reply] { reply.reset(); }).join();
        break;
    case Breaker::MoveAssigned: {
        QCOMPARE(out.done.load(), 0);
        auto otherPair = stage::makeReply<int>();
    auto &other = otherPair.first;
    auto &otherRx = otherPair.second;
        *reply = std::move(other); // the pending one is broken; reply now stands for other
        QVERIFY(reply->isPending());
        QVERIFY(reply->send(1));
        QCOMPARE(stage::waitFor(take(&otherRx), kTimeout), 1);
        break;
    }
    case Breaker::MailboxDestroyed:
        QCOMPARE(out.done.load(), 0);
        QTest::ignoreMessage(QtWarningMsg, "Mailbox: destroyed with 1 message(s) still queued");
        requests.reset();
        break;
    }
    QTRY_COMPARE_WITH_TIMEOUT(out.done.load(), 1, Timeout);
    QCOMPARE(out.error, QStringLiteral("broken"));
    QCOMPARE(out.thread, home);
    QVERIFY2(out.elapsedMs < 5000, qPrintable(QStringLiteral("broken after %1 ms").arg(out.elapsedMs)));
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), Kind::Completed);
}

void tst_Reply::wait_timesOut_data()
{
    QTest::addColumn<int>("timeoutMs");
    QTest::addColumn<bool>("receiverOnThread");
    for (int ms : {0, 20, 150}) {
        QTest::addRow("%d ms", ms) << ms << false;
        QTest::addRow("%d ms, receiver on a thread", ms) << ms << true;
    }
}

void tst_Reply::wait_timesOut()
{
    // wait(timeout) throws stage::TimeoutError; the reply is not spent: a later value can still
    // be awaited, once.
    QFETCH(int, timeoutMs);
    QFETCH(bool, receiverOnThread);
    ScopedThread thread;
    QThread *home = receiverOnThread ? thread.get() : QThread::currentThread();
    auto replyPair = stage::makeReply<int>();
    auto &reply = replyPair.first;
    auto &rx = replyPair.second;
    Outcome out;
    stage::WorkerHandle handle;
    stagetest::ExitRecorder exits(handle);
    startAwaitingWorker(handle, &rx, timeoutMs, &out, home);
    QTRY_COMPARE_WITH_TIMEOUT(out.done.load(), 1, Timeout);
    QCOMPARE(out.error, QStringLiteral("timeout"));
    QCOMPARE(out.thread, home);
    QVERIFY2(out.elapsedMs >= timeoutMs - 1, qPrintable(QStringLiteral("timed out after %1 ms").arg(out.elapsedMs)));
    QVERIFY2(out.elapsedMs < timeoutMs + 5000, qPrintable(QStringLiteral("timed out after %1 ms").arg(out.elapsedMs)));
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), Kind::Completed);

    QVERIFY(reply.isPending());
    QVERIFY(reply.send(8));
    QCOMPARE(stage::waitFor(take(&rx), kTimeout), 8);
    QVERIFY_THROWS_EXCEPTION(stage::InvalidOperation, stage::waitFor(take(&rx), kTimeout));
}

void tst_Reply::wait_valueInTimeIsNoTimeout()
{
    // The value arrives well within the limit; the timeout must not fire later (one outcome).
    auto replyPair = stage::makeReply<int>();
    auto &reply = replyPair.first;
    auto &rx = replyPair.second;
    Outcome out;
    startAwait(&rx, 200, &out);
    QVERIFY(out.suspended);
    QVERIFY(reply.send(4));
    QTRY_COMPARE_WITH_TIMEOUT(out.done.load(), 1, Timeout);
    QCOMPARE(out.value, 4);
    QCOMPARE(out.error, QString());
    QTest::qWait(300); // absence, past the limit: a late timeout must not resume it again (ASan would see it)
    QCOMPARE(out.value, 4);
    QCOMPARE(out.error, QString());
}

void tst_Reply::await_twiceIsInvalid_data()
{
    QTest::addColumn<Twice>("twice");
    QTest::newRow("after taking the value") << Twice::Sequential;
    QTest::newRow("while the first await waits") << Twice::Concurrent;
}

void tst_Reply::await_twiceIsInvalid()
{
    QFETCH(Twice, twice);
    auto replyPair = stage::makeReply<int>();
    auto &reply = replyPair.first;
    auto &rx = replyPair.second;
    Outcome first;
    Outcome second;
    if (twice == Twice::Sequential) {
        QVERIFY(reply.send(6));
        startAwait(&rx, -1, &first);
        QCOMPARE(first.value, 6);
        startAwait(&rx, -1, &second);
        QVERIFY(!second.suspended);
        QCOMPARE(second.error, QStringLiteral("invalid"));
        return;
    }
    startAwait(&rx, -1, &first);
    QVERIFY(first.suspended);
    startAwait(&rx, -1, &second);
    QTRY_COMPARE_WITH_TIMEOUT(second.done.load(), 1, Timeout); // at once, without a value
    QCOMPARE(second.error, QStringLiteral("invalid"));
    QCOMPARE(first.done.load(), 0);
    QVERIFY(reply.send(6));
    QTRY_COMPARE_WITH_TIMEOUT(first.done.load(), 1, Timeout);
    QCOMPARE(first.value, 6); // the first await is unharmed
    QCOMPARE(first.error, QString());
}

void tst_Reply::cancelledWait_laterReplyCanStillBeAwaited_data()
{
    QTest::addColumn<bool>("receiverOnThread");
    QTest::addColumn<bool>("breakInstead"); // the Reply is destroyed instead of answered
    QTest::newRow("main thread") << false << false;
    QTest::newRow("receiver on a thread") << true << false;
    QTest::newRow("main thread, then broken") << false << true;
}

void tst_Reply::cancelledWait_laterReplyCanStillBeAwaited()
{
    QFETCH(bool, receiverOnThread);
    QFETCH(bool, breakInstead);
    ScopedThread thread;
    QThread *home = receiverOnThread ? thread.get() : QThread::currentThread();
    auto pair = stage::makeReply<int>();
    auto reply = std::make_unique<stage::Reply<int>>(std::move(pair.first));
    const stage::ReplyReceiver<int> &rx = pair.second;
    Outcome out;
    stage::WorkerHandle handle;
    stagetest::ExitRecorder exits(handle);
    startAwaitingWorker(handle, &rx, -1, &out, home);
    QVERIFY(stagetest::roundTrip(home));
    QCOMPARE(out.done.load(), 0);
    handle.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), Kind::Cancelled);
    QCOMPARE(out.error, QStringLiteral("cancelled"));
    QCOMPARE(out.thread, home);

    // The reply arrives after the wait was abandoned: it is kept for the next await.
    if (breakInstead) {
        reply.reset();
        QVERIFY_THROWS_EXCEPTION(stage::BrokenReply, stage::waitFor(take(&rx), kTimeout));
        return;
    }
    std::thread([&reply] { reply->send(9); }).join();
    QCOMPARE(stage::waitFor(take(&rx), kTimeout), 9);
}

void tst_Reply::mailbox_requestRedeliveredAfterConsumerFailure()
{
    // The adder fails while holding request 1: the request (and the Reply inside it) goes back to
    // the mailbox, the restarted adder answers it; the client gets exactly one answer.
    stage::Mailbox<Add> requests(8);
    std::atomic<int> failures{0};
    stage::Group server;
    server.setBackoff(stage::Backoff::none());
    QVERIFY(server.spawn([requests, &failures] { return adder(requests, 1, false, &failures); }));
    auto reply1Pair = stage::makeReply<int>();
    auto &reply1 = reply1Pair.first;
    auto &rx1 = reply1Pair.second;
    auto reply2Pair = stage::makeReply<int>();
    auto &reply2 = reply2Pair.first;
    auto &rx2 = reply2Pair.second;
    QCOMPARE(requests.trySend(Add{1, 10, std::move(reply1)}), stage::SendStatus::Sent);
    QCOMPARE(requests.trySend(Add{2, 20, std::move(reply2)}), stage::SendStatus::Sent);
    QCOMPARE(stage::waitFor(take(&rx1), kTimeout), 11);
    QCOMPARE(stage::waitFor(take(&rx2), kTimeout), 22);
    QCOMPARE(failures.load(), 1);
    QCOMPARE(server.failed(), 1);
    QCOMPARE(requests.statistics().redelivered, 1);
    stage::waitFor(server.shutdown(), kTimeout);
}

void tst_Reply::mailbox_deadLetteredRequestBreaksWhenDropped()
{
    // A poison request of a type the mailbox cannot see into (no stageFailReplies hook) goes to
    // the dead letters with its Reply still pending; dropping the dead letters breaks it, so the
    // client does not wait forever. (With the hook, see mailbox_deadLetteredRequestFailsAtOnce.)
    stage::Mailbox<Add> requests(8);
    requests.setMaxRedeliveries(0);
    std::atomic<int> failures{0};
    QTest::ignoreMessage(QtWarningMsg, "Mailbox: a message failed 1 consumer(s) and was moved to the dead letters");
    stage::Group server;
    server.setBackoff(stage::Backoff::none());
    QVERIFY(server.spawn([requests, &failures] { return adder(requests, 1, true, &failures); }));
    auto replyPair = stage::makeReply<int>();
    auto &reply = replyPair.first;
    auto &rx = replyPair.second;
    Outcome out;
    startAwait(&rx, -1, &out);
    QVERIFY(out.suspended);
    QCOMPARE(requests.trySend(Add{1, 10, std::move(reply)}), stage::SendStatus::Sent);
    QTRY_COMPARE_WITH_TIMEOUT(requests.deadLetterCount(), 1, Timeout);
    QCOMPARE(out.done.load(), 0); // still pending: the letter holds the Reply
    {
        auto letters = requests.takeDeadLetters();
        QCOMPARE(int(letters.size()), 1);
        QVERIFY(letters[0].value.reply.isPending());
        QCOMPARE(letters[0].reason, QStringLiteral("adder failed on 1"));
    }
    QTRY_COMPARE_WITH_TIMEOUT(out.done.load(), 1, Timeout);
    QCOMPARE(out.error, QStringLiteral("broken"));
    stage::waitFor(server.shutdown(), kTimeout);
}

void tst_Reply::mailbox_deadLetteredRequestFailsAtOnce()
{
    // The same poison request, of a type with the hook: the client hears DeadLettered as soon as
    // the request is dead-lettered, with the adder's failure as the reason; the letter is intact.
    stage::Mailbox<AddWithHook> requests(8);
    requests.setMaxRedeliveries(0);
    QTest::ignoreMessage(QtWarningMsg, "Mailbox: a message failed 1 consumer(s) and was moved to the dead letters");
    stage::Group server;
    server.setBackoff(stage::Backoff::none());
    QVERIFY(server.spawn([requests] { return adderWithHook(requests); }));
    auto replyPair = stage::makeReply<int>();
    auto &reply = replyPair.first;
    auto &rx = replyPair.second;
    Outcome out;
    startAwait(&rx, -1, &out);
    QVERIFY(out.suspended);
    QCOMPARE(requests.trySend(AddWithHook{1, 10, std::move(reply)}), stage::SendStatus::Sent);
    QTRY_COMPARE_WITH_TIMEOUT(out.done.load(), 1, Timeout);
    QCOMPARE(out.error, QStringLiteral("deadLettered"));
    QCOMPARE(out.what, QStringLiteral("dead-lettered after 1 failed delivery: adder failed on 1"));
    QCOMPARE(out.thread, QThread::currentThread());
    QCOMPARE(requests.deadLetterCount(), 1);
    auto letters = requests.takeDeadLetters();
    QCOMPARE(int(letters.size()), 1);
    QCOMPARE(letters[0].value.a, 1);
    QCOMPARE(letters[0].value.b, 10);
    QVERIFY(!letters[0].value.reply.isPending());
    QCOMPARE(letters[0].reason, QStringLiteral("adder failed on 1"));
    // The adder goes on with the next request.
    auto next = stage::makeReply<int>();
    QCOMPARE(requests.trySend(AddWithHook{2, 20, std::move(next.first)}), stage::SendStatus::Sent);
    QCOMPARE(stage::waitFor(take(&next.second), kTimeout), 22);
    stage::waitFor(server.shutdown(), kTimeout);
}

void tst_Reply::fail_resumesTheReceiverWithTheError_data()
{
    QTest::addColumn<Failer>("failer");
    QTest::addColumn<bool>("receiverOnThread");
    for (bool onThread : {false, true}) {
        const char *where = onThread ? "receiver on a thread" : "receiver on the main thread";
        QTest::addRow("failed before the await (%s)", where) << Failer::BeforeAwait << onThread;
        QTest::addRow("failed while waiting (%s)", where) << Failer::WhileWaiting << onThread;
        QTest::addRow("failed while waiting with a 60 s timeout (%s)", where)
            << Failer::WhileWaitingWithTimeout << onThread;
        QTest::addRow("failed on a std::thread (%s)", where) << Failer::FromStdThread << onThread;
    }
}

void tst_Reply::fail_resumesTheReceiverWithTheError()
{
    // Reply::fail() resumes the receiver at once, on its own thread, with the very error given:
    // not at its 60 s timeout, and not as a plain BrokenReply.
    QFETCH(Failer, failer);
    QFETCH(bool, receiverOnThread);
    ScopedThread thread;
    QThread *home = receiverOnThread ? thread.get() : QThread::currentThread();
    auto replyPair = stage::makeReply<int>();
    auto &reply = replyPair.first;
    auto &rx = replyPair.second;
    const stage::DeadLettered why(3, "poison");
    if (failer == Failer::BeforeAwait)
        QVERIFY(reply.fail(why));
    Outcome out;
    stage::WorkerHandle handle;
    stagetest::ExitRecorder exits(handle);
    startAwaitingWorker(handle, &rx, failer == Failer::WhileWaitingWithTimeout ? 60000 : -1, &out, home);
    if (failer != Failer::BeforeAwait) {
        QVERIFY(stagetest::roundTrip(home)); // waiting
        QCOMPARE(out.done.load(), 0);
        if (failer == Failer::FromStdThread)
            std::thread([&reply, &why] { reply.fail(why); }).join();
        else
            QVERIFY(reply.fail(why));
    }
    QTRY_COMPARE_WITH_TIMEOUT(out.done.load(), 1, Timeout);
    QCOMPARE(out.error, QStringLiteral("deadLettered"));
    QCOMPARE(out.what, QStringLiteral("dead-lettered after 3 failed deliveries: poison"));
    QCOMPARE(out.thread, home);
    QVERIFY(out.elapsedMs < 30000);
    QVERIFY(!reply.isPending());
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), Kind::Completed);
}

void tst_Reply::fail_everyLaterAwaitThrowsAtOnce()
{
    auto replyPair = stage::makeReply<int>();
    auto &reply = replyPair.first;
    auto &rx = replyPair.second;
    QVERIFY(reply.fail(stage::DeadLettered(1, "gone")));
    for (int i = 0; i < 2; ++i) {
        Outcome out;
        startAwait(&rx, i == 0 ? -1 : 60000, &out);
        QVERIFY(!out.suspended); // known already: no suspension
        QCOMPARE(out.error, QStringLiteral("deadLettered"));
        QCOMPARE(out.what, QStringLiteral("dead-lettered after 1 failed delivery: gone"));
    }
}

void tst_Reply::fail_afterSendOrFailIsIgnored()
{
    // A reply settles once: a later fail() (or send()) changes nothing; fail() is silent about it
    // (a mailbox fails whatever its dead letters carry, answered or not).
    {
        auto replyPair = stage::makeReply<int>();
        QVERIFY(replyPair.first.send(7));
        QVERIFY(!replyPair.first.fail(stage::DeadLettered(1, "late")));
        QCOMPARE(stage::waitFor(take(&replyPair.second), kTimeout), 7);
    }
    {
        auto replyPair = stage::makeReply<int>();
        QVERIFY(replyPair.first.fail(stage::DeadLettered(1, "first")));
        QVERIFY(!replyPair.first.isPending());
        QVERIFY(!replyPair.first.fail(stage::DeadLettered(2, "second")));
        QTest::ignoreMessage(QtWarningMsg, qPrintable(kTwiceWarning));
        QVERIFY(!replyPair.first.send(1));
        { stage::Reply<int> gone = std::move(replyPair.first); } // destroying a failed reply: no BrokenReply
        Outcome out;
        startAwait(&replyPair.second, -1, &out);
        QCOMPARE(out.error, QStringLiteral("deadLettered"));
        QCOMPARE(out.what, QStringLiteral("dead-lettered after 1 failed delivery: first"));
    }
    {
        auto replyPair = stage::makeReply<int>();
        QVERIFY(replyPair.first.fail(stage::BrokenReply("the actor stopped"))); // any BrokenReply
        Outcome out;
        startAwait(&replyPair.second, -1, &out);
        QCOMPARE(out.error, QStringLiteral("broken"));
        QCOMPARE(out.what, QStringLiteral("the actor stopped"));
    }
}

void tst_Reply::deadLettered_isABrokenReplyWithItsReason()
{
    const stage::DeadLettered one(1, "poison");
    QCOMPARE(QString::fromUtf8(one.what()), QStringLiteral("dead-lettered after 1 failed delivery: poison"));
    QCOMPARE(QString::fromUtf8(one.reason()), QStringLiteral("poison"));
    QCOMPARE(one.failures(), 1);
    const stage::DeadLettered four(4, "");
    QCOMPARE(QString::fromUtf8(four.what()), QStringLiteral("dead-lettered after 4 failed deliveries: "));
    QCOMPARE(QString::fromUtf8(four.reason()), QString());
    const stage::DeadLettered copy = one; // noexcept copy, reason still in place
    QCOMPARE(QString::fromUtf8(copy.reason()), QStringLiteral("poison"));
    static_assert(std::is_nothrow_copy_constructible_v<stage::DeadLettered>);
    bool caught = false;
    try {
        throw stage::DeadLettered(2, "x");
    } catch (const stage::BrokenReply &e) { // the seed's catch sees it
        caught = QString::fromUtf8(e.what()).startsWith(QStringLiteral("dead-lettered after 2 failed deliveries"));
    }
    QVERIFY(caught);
}

void tst_Reply::makeRequest_answersThroughItsReply()
{
    auto [request, answer] = stage::makeRequest<int>(std::string("six"));
    QCOMPARE(request.payload, std::string("six"));
    QVERIFY(request.reply.isPending());
    stage::Request<std::string, int> moved = std::move(request);
    std::thread([&moved] { moved.reply.send(6); }).join();
    QCOMPARE(stage::waitFor(take(&answer), kTimeout), 6);
}

void tst_Reply::failReplies_reachesEveryReplyAMessageCarries()
{
    // stage::failReplies() on each shape, without a mailbox: which replies it reaches.
    const stage::DeadLettered why(1, "r");
    using Req = stage::Request<int, int>;
    auto settled = [](stage::ReplyReceiver<int> &rx) { // only for a reply known to be settled
        Outcome out;
        startAwait(&rx, -1, &out);
        return out.suspended ? QStringLiteral("suspended") : out.error;
    };
    {
        auto [reply, rx] = stage::makeReply<int>();
        stage::failReplies(reply, why);
        QCOMPARE(settled(rx), QStringLiteral("deadLettered"));
    }
    {
        auto [request, rx] = stage::makeRequest<int>(5);
        std::optional<Req> some(std::move(request));
        std::optional<Req> none;
        stage::failReplies(none, why); // nothing to reach, no crash
        stage::failReplies(some, why);
        QCOMPARE(settled(rx), QStringLiteral("deadLettered"));
        QCOMPARE(some->payload, 5);
    }
    {
        auto [request, rx] = stage::makeRequest<int>(5);
        std::variant<int, Req> active(std::move(request));
        std::variant<int, Req> other(3);
        stage::failReplies(other, why);
        stage::failReplies(active, why);
        QCOMPARE(settled(rx), QStringLiteral("deadLettered"));
    }
    {
        auto [request, rx] = stage::makeRequest<int>(5);
        auto boxed = std::make_unique<Req>(std::move(request));
        std::unique_ptr<Req> empty;
        stage::failReplies(empty, why);
        stage::failReplies(boxed, why);
        QCOMPARE(settled(rx), QStringLiteral("deadLettered"));
    }
    {
        // Nested: a request whose payload is a request; both replies fail.
        auto [inner, innerRx] = stage::makeRequest<int>(1);
        auto [outer, outerRx] = stage::makeRequest<int>(std::move(inner));
        stage::failReplies(outer, why);
        QCOMPARE(settled(innerRx), QStringLiteral("deadLettered"));
        QCOMPARE(settled(outerRx), QStringLiteral("deadLettered"));
    }
    {
        auto [reply, rx] = stage::makeReply<int>();
        AddWithHook add{1, 2, std::move(reply)};
        stage::failReplies(add, why);
        QCOMPARE(settled(rx), QStringLiteral("deadLettered"));
    }
    {
        auto [reply, rx] = stage::makeReply<int>();
        Add opaque{1, 2, std::move(reply)};
        stage::failReplies(opaque, why); // no hook: left alone
        QVERIFY(opaque.reply.isPending());
        opaque.reply.send(3);
        QCOMPARE(stage::waitFor(take(&rx), kTimeout), 3);
    }
    int plain = 4;
    stage::failReplies(plain, why); // compiles, does nothing
    QCOMPARE(plain, 4);
}

QTEST_GUILESS_MAIN(tst_Reply)
#include "tst_reply.moc"
