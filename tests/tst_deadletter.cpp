// Tests of stranded callers (issue #20, item 6) and of the stop rule's watchdog half (item 7):
// a request dead-lettered by its mailbox fails the replies it carries with stage::DeadLettered at
// once, for every message shape Stage knows (Reply, Request, optional, variant, unique_ptr, a
// type with a stageFailReplies() hook), while the letter stays inspectable; the seed's "retry
// until answered" loop against consumers that fail half the time answers every request and
// never hangs; a consumer that hangs on a poison message is stopped as faulty by its group's
// watchdog, and that counts, so the message is dead-lettered instead of looping forever.
//
// Coroutines record what they saw; the test functions compare outside them.

#include "testutil.h"

#include <stage/stage.h>

#include <QtCore/QElapsedTimer>
#include <QtCore/QLoggingCategory>
#include <QtCore/QRegularExpression>
#include <QtTest/QTest>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace deadlettertest {

using namespace std::chrono_literals;
using stage::Mailbox;
using stage::SendStatus;
using stagetest::ScopedThread;
using stagetest::Timeout;
using Kind = stage::WorkerExit::Kind;

constexpr std::chrono::milliseconds kTimeout(Timeout);

QString deadLetterWarning(int failures)
{
    return QStringLiteral("Mailbox: a message failed %1 consumer(s) and was moved to the dead letters").arg(failures);
}

/* Silences the expected noise of a test with many failures (restored at the end of the scope). */
class QuietLogs
{
public:
    QuietLogs() { QLoggingCategory::setFilterRules(QStringLiteral("stage.mailbox.warning=false\nstage.group.info=false")); }
    ~QuietLogs() { QLoggingCategory::setFilterRules(QString()); }
};

/* How one await of a receiver ended. Shared with the awaiting coroutine, which keeps it (and
   the receiver) alive whatever the test does meanwhile. */
struct Awaited
{
    explicit Awaited(stage::ReplyReceiver<int> receiver) : rx(std::move(receiver)) {}
    stage::ReplyReceiver<int> rx;
    std::atomic<int> done{0};
    int value = -1;
    QString error; // "", "deadLettered", "broken", "timeout"
    QString what;
    int failures = -1; // DeadLettered::failures()
    QString reason;    // DeadLettered::reason()
    bool suspended = false;
};

QCoro::Task<> awaitReply(std::shared_ptr<Awaited> a, int timeoutMs)
{
    try {
        a->value = timeoutMs >= 0 ? co_await a->rx.wait(std::chrono::milliseconds(timeoutMs)) : co_await a->rx;
    } catch (const stage::DeadLettered &e) {
        a->error = QStringLiteral("deadLettered");
        a->what = QString::fromUtf8(e.what());
        a->failures = e.failures();
        a->reason = QString::fromUtf8(e.reason());
    } catch (const stage::BrokenReply &) {
        a->error = QStringLiteral("broken");
    } catch (const stage::TimeoutError &) {
        a->error = QStringLiteral("timeout");
    }
    a->done.store(1);
}

/* Starts awaiting \a rx on the calling thread (a detached coroutine); notes whether it suspended. */
std::shared_ptr<Awaited> startAwait(stage::ReplyReceiver<int> rx, int timeoutMs = -1)
{
    auto a = std::make_shared<Awaited>(std::move(rx));
    awaitReply(a, timeoutMs);
    a->suspended = a->done.load() == 0;
    return a;
}

// ---- message shapes ----

struct Query
{
    int id = 0;
    int attempt = 0;
};

using Req = stage::Request<Query, int>;

/* A type of the application's own that opts in with a hidden friend. */
struct Add
{
    int a = 0;
    int b = 0;
    stage::Reply<int> reply;
    friend void stageFailReplies(Add &add, const stage::DeadLettered &why) { add.reply.fail(why); }
};

/* A type without the hook: the mailbox cannot reach its reply. */
struct Opaque
{
    int id = 0;
    stage::Reply<int> reply;
};

/* A request whose payload carries a reply of its own (a progress channel, say). */
struct Job
{
    int id = 0;
    stage::Reply<int> progress;
    friend void stageFailReplies(Job &job, const stage::DeadLettered &why) { job.progress.fail(why); }
};

static_assert(stage::CarriesReplies<stage::Reply<int>>);
static_assert(stage::CarriesReplies<Req>);
static_assert(stage::CarriesReplies<std::optional<Req>>);
static_assert(stage::CarriesReplies<std::variant<int, Req>>);
static_assert(stage::CarriesReplies<std::unique_ptr<Req>>);
static_assert(stage::CarriesReplies<Add>);
static_assert(!stage::CarriesReplies<Opaque>);
static_assert(!stage::CarriesReplies<int>);

/* A consumer that fails on every message it receives (and counts them). */
template<typename T>
QCoro::Task<> alwaysFails(Mailbox<T> mb, std::atomic<int> *received)
{
    for (;;) {
        auto d = co_await mb.receive();
        received->fetch_add(1);
        throw std::runtime_error("consumer failed");
    }
}

/* A consumer that catches its own failure and goes on (its worker does not end). */
template<typename T>
QCoro::Task<> forgivingConsumer(Mailbox<T> mb, std::atomic<int> *caught)
{
    for (;;) {
        try {
            auto d = co_await mb.receive();
            throw std::runtime_error("cannot digest it");
        } catch (const std::runtime_error &) {
            caught->fetch_add(1);
        }
    }
}

QCoro::Task<> receiveAndThrow(Mailbox<Req> mb)
{
    auto d = co_await mb.receive();
    throw std::runtime_error("plain coroutine failed on " + std::to_string(d->payload.id));
}

// ---- the seed's retry loop ----

constexpr int Requests = 200;

/* What the clients saw, shared by every client and the test. */
struct Ledger
{
    std::atomic<int> next{0};
    std::atomic<int> finished{0}; // requests answered or given up
    std::atomic<int> deadLettered{0};
    std::atomic<int> broken{0};
    std::atomic<int> timeouts{0};
    std::atomic<int> tooManyAttempts{0};
    QMutex mutex;
    std::map<int, int> answers;            // id -> value
    std::map<int, int> givenUp;            // id -> attempts
    std::vector<QString> deadWhats;        // DeadLettered::what(), with the id's expected reason
    std::vector<QString> expectedWhats;
};

/* A digest of (id, attempt, delivery): the consumer fails for about half of them. */
bool failsThisTime(int id, int attempt, int delivery)
{
    quint32 x = quint32(id) * 0x9e3779b9u ^ quint32(attempt) * 0x85ebca6bu ^ quint32(delivery) * 0xc2b2ae35u;
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    return x & 1u;
}

std::string serverFailure(int id)
{
    return "consumer failed on request " + std::to_string(id);
}

QCoro::Task<> server(Mailbox<Req> requests)
{
    for (;;) {
        auto r = co_await requests.receive();
        if (failsThisTime(r->payload.id, r->payload.attempt, r.previousDeliveries()))
            throw std::runtime_error(serverFailure(r->payload.id));
        r->reply.send(r->payload.id * 2 + 1);
    }
}

/* The seed's client: send, await, and retry on BrokenReply until answered. With \a giveUp, a
   request that was dead-lettered is not retried. */
QCoro::Task<> client(Mailbox<Req> requests, std::shared_ptr<Ledger> ledger, bool giveUp)
{
    for (;;) {
        const int id = ledger->next.fetch_add(1);
        if (id >= Requests)
            co_return;
        for (int attempt = 0;; ++attempt) {
            if (attempt == 100) { // failsafe: p = 0.25 per attempt makes 100 out of reach
                ledger->tooManyAttempts.fetch_add(1);
                ledger->finished.fetch_add(1);
                break;
            }
            auto [request, answer] = stage::makeRequest<int>(Query{id, attempt});
            co_await requests.send(std::move(request));
            try {
                const int value = co_await answer.wait(kTimeout);
                QMutexLocker lock(&ledger->mutex);
                ledger->answers[id] = value;
                ledger->finished.fetch_add(1);
                break;
            } catch (const stage::BrokenReply &e) { // the seed's catch
                if (!dynamic_cast<const stage::DeadLettered *>(&e)) {
                    ledger->broken.fetch_add(1);
                    continue;
                }
                ledger->deadLettered.fetch_add(1);
                QMutexLocker lock(&ledger->mutex);
                ledger->deadWhats.push_back(QString::fromUtf8(e.what()));
                ledger->expectedWhats.push_back(QStringLiteral("dead-lettered after 2 failed deliveries: ")
                                                + QString::fromStdString(serverFailure(id)));
                if (giveUp) {
                    ledger->givenUp[id] = attempt + 1;
                    ledger->finished.fetch_add(1);
                    break;
                }
            } catch (const stage::TimeoutError &) {
                ledger->timeouts.fetch_add(1);
                ledger->finished.fetch_add(1);
                break;
            }
        }
    }
}

// ---- the watchdog ----

/* Polls its mailbox and beats while it has work or none; hangs (no beat, no end) on 13. */
QCoro::Task<> hangsOnPoison(stage::Worker &w, Mailbox<int> mb, std::atomic<int> *hangs, std::vector<int> *done,
                            QMutex *mutex)
{
    for (;;) {
        w.heartbeat();
        auto d = mb.tryReceive();
        if (!d) {
            co_await stage::sleep(5ms);
            continue;
        }
        if (**d == 13) {
            hangs->fetch_add(1);
            co_await stage::sleep(60s); // stuck: only the watchdog's stop gets it out
        }
        QMutexLocker lock(mutex);
        done->push_back(**d);
    }
}

QCoro::Task<> hangsOnRequest(stage::Worker &w, Mailbox<Req> mb, std::atomic<int> *hangs)
{
    for (;;) {
        w.heartbeat();
        auto d = mb.tryReceive();
        if (!d) {
            co_await stage::sleep(5ms);
            continue;
        }
        hangs->fetch_add(1);
        co_await stage::sleep(60s);
    }
}

enum class Shape { BareReply, Request, OptionalRequest, VariantRequest, UniquePtrRequest, OwnTypeWithHook, NestedReplies };
enum class AwaitWith { NoTimeout, Timeout, AfterTheFailure };

} // namespace deadlettertest

using namespace deadlettertest;

Q_DECLARE_METATYPE(deadlettertest::Shape)
Q_DECLARE_METATYPE(deadlettertest::AwaitWith)

class tst_DeadLetter : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void deadLetter_failsTheRepliesOfEveryShape_data();
    void deadLetter_failsTheRepliesOfEveryShape();
    void deadLetter_typeWithoutHookKeepsItsReplyPendingUntilDropped();
    void deadLetter_answeredReplyKeepsItsAnswer();
    void deadLetter_caughtByTheConsumerFailsTheReplyAtTheNextTurn();
    void deadLetter_outsideAWorkerFailsTheReplyAtOnce();
    void deadLetter_droppedByTheLimitFailsItsReply();
    void retryUntilAnswered_halfTheConsumersFail_data();
    void retryUntilAnswered_halfTheConsumersFail();
    void watchdog_hangingPoisonIsDeadLettered_data();
    void watchdog_hangingPoisonIsDeadLettered();
    void watchdog_hangingRequestFailsItsCaller();
};

// ---- every shape ----

namespace deadlettertest {

/* What one shape's run saw, compared by the test function. */
struct ShapeRun
{
    QString error;
    QString what;
    QString reason;
    int failures = -1;
    bool suspended = false;
    bool secondError = false; // a second reply in the message (NestedReplies) failed too
    int letters = -1;
    int letterId = -1;        // read back from the dead letter's value
    QString letterReason;
    int letterFailures = -1;
    bool letterReplyPending = true;
    Kind exit = Kind::Completed;
};

template<typename T, typename Make, typename Inspect>
ShapeRun runShape(AwaitWith awaitWith, bool onThread, Make make, Inspect inspect)
{
    ScopedThread thread;
    ShapeRun run;
    const Mailbox<T> mb(4);
    mb.setMaxRedeliveries(0);
    auto [reply, rx] = stage::makeReply<int>();
    auto [second, secondRx] = stage::makeReply<int>();
    std::shared_ptr<Awaited> out;
    if (awaitWith != AwaitWith::AfterTheFailure)
        out = startAwait(std::move(rx), awaitWith == AwaitWith::Timeout ? Timeout : -1);
    const auto secondOut = startAwait(std::move(secondRx));
    QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(1)));
    std::atomic<int> received{0};
    stage::WorkerHandle handle;
    stagetest::ExitRecorder exits(handle);
    handle.start([mb, &received] { return alwaysFails<T>(mb, &received); }, onThread ? thread.get() : nullptr);
    if (mb.trySend(make(std::move(reply), std::move(second))) != SendStatus::Sent)
        return run;
    if (!QTest::qWaitFor([&] { return exits.count() == 1; }, Timeout))
        return run;
    run.exit = exits.lastKind();
    if (awaitWith == AwaitWith::AfterTheFailure)
        out = startAwait(std::move(rx));
    if (!QTest::qWaitFor([&] { return out->done.load() == 1; }, Timeout))
        return run;
    run.error = out->error;
    run.what = out->what;
    run.reason = out->reason;
    run.failures = out->failures;
    run.suspended = out->suspended;
    if (!QTest::qWaitFor([&] { return secondOut->done.load() == 1; }, Timeout))
        return run;
    run.secondError = secondOut->error == QStringLiteral("deadLettered");
    auto letters = mb.takeDeadLetters();
    run.letters = int(letters.size());
    if (!letters.empty()) {
        run.letterId = inspect(letters[0].value, run.letterReplyPending);
        run.letterReason = letters[0].reason;
        run.letterFailures = letters[0].failures;
    }
    return run;
}

} // namespace deadlettertest

void tst_DeadLetter::deadLetter_failsTheRepliesOfEveryShape_data()
{
    QTest::addColumn<Shape>("shape");
    QTest::addColumn<AwaitWith>("awaitWith");
    QTest::addColumn<bool>("onThread");
    const std::pair<Shape, const char *> shapes[] = {
        {Shape::BareReply, "Reply<int>"},
        {Shape::Request, "Request<Query, int>"},
        {Shape::OptionalRequest, "optional<Request>"},
        {Shape::VariantRequest, "variant<int, Request>"},
        {Shape::UniquePtrRequest, "unique_ptr<Request>"},
        {Shape::OwnTypeWithHook, "own type with stageFailReplies"},
        {Shape::NestedReplies, "Request<Job, int>, Job with a reply"},
    };
    for (const auto &[shape, name] : shapes) {
        QTest::addRow("%s, awaited", name) << shape << AwaitWith::NoTimeout << false;
        QTest::addRow("%s, awaited with a timeout", name) << shape << AwaitWith::Timeout << false;
        QTest::addRow("%s, awaited after", name) << shape << AwaitWith::AfterTheFailure << false;
        QTest::addRow("%s, consumer on a thread", name) << shape << AwaitWith::NoTimeout << true;
    }
}

void tst_DeadLetter::deadLetter_failsTheRepliesOfEveryShape()
{
    // One message, one consumer that fails on it, maxRedeliveries 0: the message is dead-lettered
    // with its reply still inside; the caller awaiting that reply gets DeadLettered at once (with
    // the consumer's what() as the reason), and the letter can still be read.
    QFETCH(Shape, shape);
    QFETCH(AwaitWith, awaitWith);
    QFETCH(bool, onThread);
    using R = stage::Reply<int>;
    ShapeRun run;
    bool nested = false;
    switch (shape) {
    case Shape::BareReply:
        run = runShape<R>(awaitWith, onThread, [](R reply, R) { return reply; },
                          [](R &r, bool &pending) { pending = r.isPending(); return 0; });
        break;
    case Shape::Request:
        run = runShape<Req>(awaitWith, onThread, [](R reply, R) { return Req{Query{7, 0}, std::move(reply)}; },
                            [](Req &r, bool &pending) { pending = r.reply.isPending(); return r.payload.id; });
        break;
    case Shape::OptionalRequest:
        run = runShape<std::optional<Req>>(
            awaitWith, onThread, [](R reply, R) { return std::optional<Req>(Req{Query{7, 0}, std::move(reply)}); },
            [](std::optional<Req> &r, bool &pending) { pending = r->reply.isPending(); return r->payload.id; });
        break;
    case Shape::VariantRequest: {
        using V = std::variant<int, Req>;
        run = runShape<V>(
            awaitWith, onThread, [](R reply, R) { return V(Req{Query{7, 0}, std::move(reply)}); },
            [](V &v, bool &pending) {
                pending = std::get<Req>(v).reply.isPending();
                return std::get<Req>(v).payload.id;
            });
        break;
    }
    case Shape::UniquePtrRequest: {
        using P = std::unique_ptr<Req>;
        run = runShape<P>(
            awaitWith, onThread, [](R reply, R) { return std::make_unique<Req>(Req{Query{7, 0}, std::move(reply)}); },
            [](P &p, bool &pending) { pending = p->reply.isPending(); return p->payload.id; });
        break;
    }
    case Shape::OwnTypeWithHook:
        run = runShape<Add>(awaitWith, onThread, [](R reply, R) { return Add{7, 1, std::move(reply)}; },
                            [](Add &a, bool &pending) { pending = a.reply.isPending(); return a.a; });
        break;
    case Shape::NestedReplies: {
        using J = stage::Request<Job, int>;
        nested = true;
        run = runShape<J>(
            awaitWith, onThread, [](R reply, R second) { return J{Job{7, std::move(second)}, std::move(reply)}; },
            [](J &j, bool &pending) { pending = j.reply.isPending() || j.payload.progress.isPending(); return j.payload.id; });
        break;
    }
    }
    QCOMPARE(run.exit, Kind::Failed);
    QCOMPARE(run.error, QStringLiteral("deadLettered"));
    QCOMPARE(run.what, QStringLiteral("dead-lettered after 1 failed delivery: consumer failed"));
    QCOMPARE(run.reason, QStringLiteral("consumer failed"));
    QCOMPARE(run.failures, 1);
    QCOMPARE(run.suspended, awaitWith != AwaitWith::AfterTheFailure); // a failed reply is ready
    QCOMPARE(run.secondError, nested);
    QCOMPARE(run.letters, 1);
    QCOMPARE(run.letterId, shape == Shape::BareReply ? 0 : 7); // the letter is intact
    QCOMPARE(run.letterReason, QStringLiteral("consumer failed"));
    QCOMPARE(run.letterFailures, 1);
    QVERIFY(!run.letterReplyPending); // spent
}

void tst_DeadLetter::deadLetter_typeWithoutHookKeepsItsReplyPendingUntilDropped()
{
    // The documented limit: a type the mailbox cannot see into keeps its reply pending among the
    // dead letters; dropping the letter breaks it (BrokenReply, not DeadLettered).
    const Mailbox<Opaque> mb(4);
    mb.setMaxRedeliveries(0);
    auto [reply, rx] = stage::makeReply<int>();
    const auto out = startAwait(std::move(rx));
    QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(1)));
    std::atomic<int> received{0};
    stage::WorkerHandle handle;
    stagetest::ExitRecorder exits(handle);
    handle.start([mb, &received] { return alwaysFails<Opaque>(mb, &received); });
    QCOMPARE(mb.trySend(Opaque{3, std::move(reply)}), SendStatus::Sent);
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
    QCOMPARE(out->done.load(), 0);
    {
        auto letters = mb.takeDeadLetters();
        QCOMPARE(int(letters.size()), 1);
        QVERIFY(letters[0].value.reply.isPending());
    }
    QTRY_COMPARE_WITH_TIMEOUT(out->done.load(), 1, Timeout);
    QCOMPARE(out->error, QStringLiteral("broken"));
}

namespace deadlettertest {
/* Answers, then fails while still holding the request: it is dead-lettered with its reply spent. */
QCoro::Task<> answersThenFails(Mailbox<Req> mb)
{
    auto r = co_await mb.receive();
    r->reply.send(42);
    throw std::runtime_error("failed after answering");
}
} // namespace deadlettertest

void tst_DeadLetter::deadLetter_answeredReplyKeepsItsAnswer()
{
    const Mailbox<Req> mb(4);
    mb.setMaxRedeliveries(0);
    auto [request, rx] = stage::makeRequest<int>(Query{5, 0});
    QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(1)));
    QCOMPARE(mb.trySend(std::move(request)), SendStatus::Sent);
    stage::WorkerHandle handle;
    stagetest::ExitRecorder exits(handle);
    handle.start([mb] { return answersThenFails(mb); });
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(mb.deadLetterCount(), 1);
    const auto out = startAwait(std::move(rx));
    QVERIFY(!out->suspended);
    QCOMPARE(out->error, QString());
    QCOMPARE(out->value, 42);
}

void tst_DeadLetter::deadLetter_caughtByTheConsumerFailsTheReplyAtTheNextTurn()
{
    // The consumer catches its failure and goes on: its worker does not end, so its failure's
    // text never reaches the mailbox. The caller still hears at once (the next turn of the
    // consumer's loop), with the letter's own reason; the worker keeps running.
    const Mailbox<Req> mb(4);
    mb.setMaxRedeliveries(0);
    auto [request, rx] = stage::makeRequest<int>(Query{9, 0});
    const auto out = startAwait(std::move(rx));
    QVERIFY(out->suspended);
    QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(1)));
    std::atomic<int> caught{0};
    stage::WorkerHandle handle;
    stagetest::ExitRecorder exits(handle);
    handle.start([mb, &caught] { return forgivingConsumer<Req>(mb, &caught); });
    QCOMPARE(mb.trySend(std::move(request)), SendStatus::Sent);
    QTRY_COMPARE_WITH_TIMEOUT(out->done.load(), 1, Timeout);
    QCOMPARE(caught.load(), 1);
    QCOMPARE(out->error, QStringLiteral("deadLettered"));
    QCOMPARE(out->what, QStringLiteral("dead-lettered after 1 failed delivery: its consumer failed while holding it"));
    QCOMPARE(exits.count(), 0);
    QVERIFY(handle.isRunning());
    auto letters = mb.takeDeadLetters();
    QCOMPARE(int(letters.size()), 1);
    QCOMPARE(letters[0].value.payload.id, 9);
    QCOMPARE(letters[0].reason, out->reason); // the letter keeps the reason its caller got
    handle.requestStop();
    QTRY_COMPARE_WITH_TIMEOUT(exits.count(), 1, Timeout);
    QCOMPARE(exits.lastKind(), Kind::Cancelled);
}

void tst_DeadLetter::deadLetter_outsideAWorkerFailsTheReplyAtOnce()
{
    // A plain coroutine (no worker, no end to wait for): the reply has failed by the time the
    // exception reaches the caller.
    const Mailbox<Req> mb(4);
    mb.setMaxRedeliveries(0);
    auto [request, rx] = stage::makeRequest<int>(Query{4, 0});
    QCOMPARE(mb.trySend(std::move(request)), SendStatus::Sent);
    QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(1)));
    QVERIFY_THROWS_EXCEPTION(std::runtime_error, stage::waitFor(receiveAndThrow(mb), kTimeout));
    const auto out = startAwait(std::move(rx));
    QVERIFY(!out->suspended);
    QCOMPARE(out->error, QStringLiteral("deadLettered"));
    QCOMPARE(out->what, QStringLiteral("dead-lettered after 1 failed delivery: its consumer failed while holding it"));
    QCOMPARE(mb.deadLetterCount(), 1);
}

void tst_DeadLetter::deadLetter_droppedByTheLimitFailsItsReply()
{
    // A limit of 0 keeps no letter: the request is dropped at once, its caller told why, the drop
    // counted.
    const Mailbox<Req> mb(4);
    mb.setMaxRedeliveries(0);
    mb.setDeadLetterLimit(0);
    auto [request, rx] = stage::makeRequest<int>(Query{4, 0});
    QCOMPARE(mb.trySend(std::move(request)), SendStatus::Sent);
    QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(1)));
    QTest::ignoreMessage(QtWarningMsg, "Mailbox: dropped 1 of the oldest dead letter(s) to keep at most 0 (1 dropped in all)");
    QVERIFY_THROWS_EXCEPTION(std::runtime_error, stage::waitFor(receiveAndThrow(mb), kTimeout));
    const auto out = startAwait(std::move(rx));
    QVERIFY(!out->suspended);
    QCOMPARE(out->error, QStringLiteral("deadLettered"));
    QCOMPARE(mb.deadLetterCount(), 0);
    const auto s = mb.statistics();
    QCOMPARE(s.deadLettered, 1);
    QCOMPARE(s.deadLettersDropped, 1);
}

// ---- the seed's loop ----

void tst_DeadLetter::retryUntilAnswered_halfTheConsumersFail_data()
{
    QTest::addColumn<bool>("onThreads"); // the consumers run on 2 worker threads
    QTest::addColumn<bool>("giveUp");    // the client stops at DeadLettered (else: the seed retries)
    QTest::newRow("seed loop retries, main thread") << false << false;
    QTest::newRow("seed loop retries, threads") << true << false;
    QTest::newRow("gives up when dead-lettered, main thread") << false << true;
    QTest::newRow("gives up when dead-lettered, threads") << true << true;
}

void tst_DeadLetter::retryUntilAnswered_halfTheConsumersFail()
{
    // 8 clients send 200 requests to 4 consumers that throw for about half of the deliveries;
    // maxRedeliveries 1, so about a quarter of the attempts is dead-lettered. Before, each of
    // those stranded its client forever. Now every request is answered (the seed's loop retries
    // on BrokenReply, and DeadLettered is one) or, for a client that stops there, failed with
    // DeadLettered, whose reason is the last consumer's what(); no wait times out.
    QFETCH(bool, onThreads);
    QFETCH(bool, giveUp);
    QuietLogs quiet;
    Mailbox<Req> requests(16);
    requests.setMaxRedeliveries(1);
    auto ledger = std::make_shared<Ledger>();

    stage::Group servers;
    servers.setBackoff(stage::Backoff::none());
    servers.setSize(4);
    servers.setThreadCount(onThreads ? 2 : 0);
    QVERIFY(servers.spawn([requests] { return server(requests); }));
    stage::Group clients;
    clients.setRestartType(stage::RestartType::Temporary);
    clients.setSize(8);
    QVERIFY(clients.spawn([requests, ledger, giveUp] { return client(requests, ledger, giveUp); }));

    QTRY_COMPARE_WITH_TIMEOUT(ledger->finished.load(), Requests, 4 * Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(clients.completed(), 8, Timeout);
    stage::waitFor(servers.shutdown(), kTimeout);
    stage::waitFor(clients.shutdown(), kTimeout);

    QCOMPARE(ledger->timeouts.load(), 0);
    QCOMPARE(ledger->tooManyAttempts.load(), 0);
    QCOMPARE(ledger->broken.load(), 0); // a failing consumer puts the request back: no reply breaks
    QMutexLocker lock(&ledger->mutex);
    QCOMPARE(int(ledger->answers.size() + ledger->givenUp.size()), Requests);
    if (!giveUp)
        QCOMPARE(int(ledger->answers.size()), Requests);
    for (const auto &[id, value] : ledger->answers) {
        QVERIFY2(!ledger->givenUp.count(id), qPrintable(QString::number(id)));
        QCOMPARE(value, id * 2 + 1);
    }
    QVERIFY(ledger->deadLettered.load() > 0); // p = 0.25 per attempt: none in ~250 is out of reach
    QCOMPARE(ledger->deadWhats, ledger->expectedWhats);
    const auto s = requests.statistics();
    QCOMPARE(s.deadLettered, qint64(ledger->deadLettered.load())); // each letter failed one caller
    QCOMPARE(requests.deadLetterCount(), ledger->deadLettered.load());
    QCOMPARE(s.deadLettersDropped, 0);
    QCOMPARE(s.acknowledged, qint64(ledger->answers.size()));
    QCOMPARE(requests.count(), 0);
    for (const auto &letter : requests.takeDeadLetters()) {
        QCOMPARE(letter.failures, 2);
        QCOMPARE(letter.reason, QString::fromStdString(serverFailure(letter.value.payload.id)));
        QVERIFY(!letter.value.reply.isPending());
    }
}

// ---- the watchdog ----

void tst_DeadLetter::watchdog_hangingPoisonIsDeadLettered_data()
{
    QTest::addColumn<int>("maxRedeliveries");
    QTest::addColumn<bool>("onThread");
    QTest::newRow("max 0") << 0 << false;
    QTest::newRow("max 1") << 1 << false;
    QTest::newRow("max 1, thread") << 1 << true;
    QTest::newRow("max 2") << 2 << false;
}

void tst_DeadLetter::watchdog_hangingPoisonIsDeadLettered()
{
    // 13 hangs every consumer (no heartbeat, no end): the group's watchdog stops it as faulty,
    // which is a failure for the group AND for the message. After maxRedeliveries + 1 hangs, 13
    // is dead-lettered instead of hanging a fresh worker forever; 14 and 15 then go through.
    QFETCH(int, maxRedeliveries);
    QFETCH(bool, onThread);
    const int hangsExpected = maxRedeliveries + 1;
    const Mailbox<int> mb(8);
    mb.setMaxRedeliveries(maxRedeliveries);
    for (int v : {13, 14, 15})
        QCOMPARE(mb.trySend(int(v)), SendStatus::Sent);
    for (int i = 0; i < hangsExpected; ++i)
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("missed its heartbeat deadline \\(100 ms\\)")));
    QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(hangsExpected)));
    std::atomic<int> hangs{0};
    QMutex mutex;
    std::vector<int> done;
    stage::Group group;
    group.setBackoff(stage::Backoff::none());
    group.setHeartbeatTimeout(100);
    group.setThreadCount(onThread ? 1 : 0);
    QVERIFY(group.spawn([mb, &hangs, &done, &mutex](stage::Worker &w) {
        return hangsOnPoison(w, mb, &hangs, &done, &mutex);
    }));
    // Fails fast if the hangs do not count (13 would hang fresh workers forever).
    QTRY_VERIFY_WITH_TIMEOUT(mb.statistics().acknowledged == 2 || hangs.load() > hangsExpected, 2 * Timeout);
    QCOMPARE(hangs.load(), hangsExpected);
    QCOMPARE(mb.statistics().acknowledged, 2);
    QCOMPARE(group.failed(), hangsExpected);
    QCOMPARE(group.restarted(), hangsExpected);
    {
        QMutexLocker lock(&mutex);
        QCOMPARE(done, (std::vector<int>{14, 15}));
    }
    const auto s = mb.statistics();
    QCOMPARE(s.deadLettered, 1);
    QCOMPARE(s.redelivered, maxRedeliveries);
    QCOMPARE(s.delivered, hangsExpected + 2);
    auto letters = mb.takeDeadLetters();
    QCOMPARE(int(letters.size()), 1);
    QCOMPARE(letters[0].value, 13);
    QCOMPARE(letters[0].failures, hangsExpected);
    QCOMPARE(letters[0].reason, QStringLiteral("its consumer was stopped as faulty while holding it"));
    stage::waitFor(group.shutdown(), kTimeout);
    QCOMPARE(group.failed(), hangsExpected); // the shutdown is a stop, not one more failure
}

void tst_DeadLetter::watchdog_hangingRequestFailsItsCaller()
{
    // The caller of a request that hangs its consumer: told DeadLettered after one hang
    // (maxRedeliveries 0), instead of waiting on a consumer that will never answer.
    const Mailbox<Req> mb(8);
    mb.setMaxRedeliveries(0);
    QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("missed its heartbeat deadline \\(100 ms\\)")));
    QTest::ignoreMessage(QtWarningMsg, qPrintable(deadLetterWarning(1)));
    auto [request, rx] = stage::makeRequest<int>(Query{8, 0});
    const auto out = startAwait(std::move(rx));
    std::atomic<int> hangs{0};
    stage::Group group;
    group.setBackoff(stage::Backoff::none());
    group.setHeartbeatTimeout(100);
    QVERIFY(group.spawn([mb, &hangs](stage::Worker &w) { return hangsOnRequest(w, mb, &hangs); }));
    QCOMPARE(mb.trySend(std::move(request)), SendStatus::Sent);
    QTRY_VERIFY_WITH_TIMEOUT(out->done.load() == 1 || hangs.load() > 1, 2 * Timeout);
    QCOMPARE(out->done.load(), 1);
    QCOMPARE(out->error, QStringLiteral("deadLettered"));
    QCOMPARE(out->what,
             QStringLiteral("dead-lettered after 1 failed delivery: its consumer was stopped as faulty while holding it"));
    QCOMPARE(hangs.load(), 1);
    QTRY_COMPARE_WITH_TIMEOUT(group.failed(), 1, Timeout);
    stage::waitFor(group.shutdown(), kTimeout);
    QCOMPARE(mb.deadLetterCount(), 1);
}

QTEST_GUILESS_MAIN(tst_DeadLetter)
#include "tst_deadletter.moc"
