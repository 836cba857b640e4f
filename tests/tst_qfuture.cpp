// QFuture forms: toFuture(), request(), shutdownFuture(), finishedFuture(), and stage::then().

#include "testutil.h"

#include <QtCore/QPointer>
#include <QtCore/QSemaphore>
#include <QtTest/QTest>

#include <map>
#include <thread>
#include <typeindex>

using namespace stagetest;

namespace {

struct Add
{
    int a;
    int b;
    stage::Reply<int> reply;
    friend void stageFailReplies(Add &add, const stage::DeadLettered &why) { add.reply.fail(why); }
};

QCoro::Task<> adder(stage::Mailbox<Add> requests)
{
    for (;;) {
        auto request = co_await requests.receive();
        request->reply.send(request->a + request->b);
    }
}

/* Runs \a f on \a thread (its event loop) and waits, spinning this thread's loop. */
template<typename F>
bool runOn(QThread *thread, F f)
{
    std::atomic<bool> done{false};
    QMetaObject::invokeMethod(thread->eventDispatcher(), [&] { f(); done = true; }, Qt::QueuedConnection);
    return spinUntil([&] { return done.load(); });
}

enum class Api { Qt, Stage };
enum class Order {
    ThenThenReplyHere,        // then() attached, then the reply sent on this thread
    ThenThenReplyElsewhere,   // then() attached, then the reply sent on another thread
    ReplyElsewhereThenThen,   // the reply sent on another thread, then then() attached
    FinishedThenThen,         // the reply sent on another thread and the future finished, then then()
};

} // namespace

Q_DECLARE_METATYPE(Api)
Q_DECLARE_METATYPE(Order)

class tst_QFuture : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    // Continuations run on the context's thread whatever the order of events.
    void request_continuationRunsOnTheContextThread_data()
    {
        QTest::addColumn<Api>("api");
        QTest::addColumn<Order>("order");
        QTest::addColumn<bool>("contextElsewhere");
        const std::pair<Order, const char *> orders[] = {
            {Order::ThenThenReplyHere, "then, reply here"},
            {Order::ThenThenReplyElsewhere, "then, reply from another thread"},
            {Order::ReplyElsewhereThenThen, "reply from another thread, then"},
            {Order::FinishedThenThen, "reply, future finished, then"},
        };
        for (Api api : {Api::Qt, Api::Stage}) {
            for (const auto &[order, name] : orders) {
                for (bool elsewhere : {false, true}) {
                    QTest::addRow("%s: %s; context %s", api == Api::Qt ? "QFuture::then" : "stage::then", name,
                                  elsewhere ? "on another thread" : "here")
                        << api << order << elsewhere;
                }
            }
        }
    }
    void request_continuationRunsOnTheContextThread()
    {
        QFETCH(Api, api);
        QFETCH(Order, order);
        QFETCH(bool, contextElsewhere);
        ScopedThread contextThread(QStringLiteral("context"));
        ScopedThread replier(QStringLiteral("replier"));
        QObject hereContext;
        auto *elsewhereContext = new QObject;
        elsewhereContext->moveToThread(contextThread.get());
        QObject *context = contextElsewhere ? elsewhereContext : &hereContext;

        stage::Mailbox<Add> requests;
        QFuture<int> future = stage::request(requests, [](stage::Reply<int> r) { return Add{20, 22, std::move(r)}; });
        QVERIFY(!future.isFinished());
        auto request = requests.tryReceive(); // the test is the server
        QVERIFY(request);

        std::atomic<int> calls{0};
        std::atomic<int> value{0};
        std::atomic<QThread *> ranOn{nullptr};
        QFuture<void> continued;
        auto attach = [&] {
            auto continuation = [&](int v) {
                value = v;
                ranOn = QThread::currentThread();
                calls.fetch_add(1);
            };
            continued = api == Api::Qt ? future.then(context, continuation) : stage::then(future, context, continuation);
        };
        auto replyElsewhere = [&] { QVERIFY(runOn(replier.get(), [&] { (*request)->reply.send((*request)->a + (*request)->b); })); };
        switch (order) {
        case Order::ThenThenReplyHere:
            attach();
            (*request)->reply.send(42);
            QVERIFY(!future.isFinished()); // never inside the replier's call
            break;
        case Order::ThenThenReplyElsewhere:
            attach();
            replyElsewhere();
            break;
        case Order::ReplyElsewhereThenThen:
            replyElsewhere();
            attach();
            break;
        case Order::FinishedThenThen:
            replyElsewhere();
            QVERIFY(spinUntil([&] { return future.isFinished(); }));
            attach();
            break;
        }
        QVERIFY(spinUntil([&] { return calls.load() == 1 && continued.isFinished(); }));
        QCOMPARE(value.load(), 42);
        QCOMPARE(ranOn.load(), context->thread());
        QVERIFY(roundTrip(contextThread.get()));
        QCOMPARE(calls.load(), 1);
        elsewhereContext->deleteLater();
        QVERIFY(roundTrip(contextThread.get()));
    }

    // Against a real server, on this thread and on a thread of its own.
    void request_toAServer_data()
    {
        QTest::addColumn<int>("serverThreads");
        QTest::newRow("server here") << 0;
        QTest::newRow("server on its own thread") << 1;
    }
    void request_toAServer()
    {
        QFETCH(int, serverThreads);
        stage::Mailbox<Add> requests(8);
        stage::Group server;
        server.setThreadCount(serverThreads);
        server.spawn([requests] { return adder(requests); });
        int answered = 0;
        int wrong = 0;
        std::function<void(int)> ask = [&](int i) {
            stage::request(requests, [i](stage::Reply<int> r) { return Add{i, 1, std::move(r)}; }, 5s)
                .then(this, [&, i](int sum) {
                    if (sum != i + 1 || QThread::currentThread() != thread())
                        ++wrong;
                    ++answered;
                    if (i < 999)
                        ask(i + 1); // the next request from the continuation, as slot code would
                });
        };
        ask(0);
        QVERIFY(spinUntil([&] { return answered == 1000; }));
        QCOMPARE(wrong, 0);
        stage::waitFor(server.shutdown());
    }

    void request_failuresAreTyped_data()
    {
        QTest::addColumn<QString>("failure");
        QTest::newRow("BrokenReply") << QStringLiteral("BrokenReply");
        QTest::newRow("DeadLettered") << QStringLiteral("DeadLettered");
        QTest::newRow("TimeoutError") << QStringLiteral("TimeoutError");
        QTest::newRow("MailboxClosed") << QStringLiteral("MailboxClosed");
        QTest::newRow("makeMessage throws") << QStringLiteral("runtime_error");
    }
    void request_failuresAreTyped()
    {
        QFETCH(QString, failure);
        stage::Mailbox<Add> requests;
        QObject context;
        stage::Group *consumer = nullptr;
        if (failure == QLatin1String("DeadLettered")) {
            requests.setMaxRedeliveries(0);
            consumer = stage::consume(requests, &context, [](Add &) { throw std::runtime_error("no adding today"); });
            QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("moved to the dead letters")));
        }
        if (failure == QLatin1String("MailboxClosed"))
            requests.close();
        const auto timeout = failure == QLatin1String("TimeoutError") ? 20ms : 5000ms;
        QFuture<int> future = stage::request(
            requests,
            [&](stage::Reply<int> r) {
                if (failure == QLatin1String("runtime_error"))
                    throw std::runtime_error("no message");
                return Add{1, 2, std::move(r)};
            },
            timeout);
        std::optional<Add> held; // TimeoutError: the test holds the request and never answers
        if (failure == QLatin1String("BrokenReply"))
            requests.tryReceive(); // taken and dropped: its Reply is destroyed unanswered
        if (failure == QLatin1String("TimeoutError"))
            held.emplace(std::move(**requests.tryReceive()));
        QVERIFY(!future.isFinished());

        int values = 0;
        std::optional<std::type_index> caught;
        QString what;
        QThread *ranOn = nullptr;
        auto done = future.then(&context, [&](int) { ++values; })
                        .onFailed(&context, [&](const std::exception &e) {
                            caught = std::type_index(typeid(e));
                            what = QString::fromUtf8(e.what());
                            ranOn = QThread::currentThread();
                        });
        QVERIFY(spinUntil([&] { return done.isFinished(); }));
        QCOMPARE(values, 0);
        QVERIFY(caught);
        const std::map<QString, std::type_index> expected{
            {QStringLiteral("BrokenReply"), typeid(stage::BrokenReply)},
            {QStringLiteral("DeadLettered"), typeid(stage::DeadLettered)},
            {QStringLiteral("TimeoutError"), typeid(stage::TimeoutError)},
            {QStringLiteral("MailboxClosed"), typeid(stage::MailboxClosed)},
            {QStringLiteral("runtime_error"), typeid(std::runtime_error)},
        };
        QVERIFY2(*caught == expected.at(failure), qPrintable(what));
        QCOMPARE(ranOn, QThread::currentThread());
        // Not a bare cancel: the future holds the exception (Qt marks such a future canceled too).
        bool rethrown = false;
        try {
            future.waitForFinished();
        } catch (const std::exception &e) {
            rethrown = std::type_index(typeid(e)) == expected.at(failure);
        }
        QVERIFY(rethrown);
        if (failure == QLatin1String("DeadLettered"))
            QCOMPARE(what, QStringLiteral("dead-lettered after 1 failed delivery: no adding today"));
        Q_UNUSED(consumer);
    }

    void request_waitsForRoomInAFullMailbox()
    {
        stage::Mailbox<Add> requests(1);
        auto [first, firstAnswer] = stage::makeReply<int>();
        QCOMPARE(requests.trySend(Add{0, 0, std::move(first)}), stage::SendStatus::Sent);
        QFuture<int> future = stage::request(requests, [](stage::Reply<int> r) { return Add{2, 3, std::move(r)}; }, 5s);
        QVERIFY(roundTrip(QThread::currentThread()));
        QCOMPARE(requests.count(), 1); // waiting for room, not dropped
        QVERIFY(!future.isFinished());
        auto one = requests.tryReceive();
        (*one)->reply.send(0);
        QVERIFY(spinUntil([&] { return requests.count() == 1; })); // queued once there was room
        auto two = requests.tryReceive();
        (*two)->reply.send((*two)->a + (*two)->b);
        QVERIFY(spinUntil([&] { return future.isFinished(); }));
        QCOMPARE(future.result(), 5);
    }

    void request_outlivesTheCallersWorker()
    {
        // A request made inside a worker body belongs to no worker: stopping the caller does not
        // cancel it.
        stage::Mailbox<Add> requests;
        QFuture<int> future;
        stage::WorkerHandle handle;
        handle.start([&]() -> QCoro::Task<> {
            future = stage::request(requests, [](stage::Reply<int> r) { return Add{4, 5, std::move(r)}; });
            co_await stage::sleep(10s);
        });
        QVERIFY(future.isValid());
        handle.requestStop();
        QTRY_COMPARE_WITH_TIMEOUT(handle.state(), stage::WorkerHandle::State::Finished, Timeout);
        auto request = requests.tryReceive();
        QVERIFY(request);
        (*request)->reply.send(9);
        QVERIFY(spinUntil([&] { return future.isFinished(); }));
        QCOMPARE(future.result(), 9);
    }

    void request_replyTypeGivenForAGenericLambda()
    {
        stage::Mailbox<Add> requests;
        QFuture<int> future = stage::request<int>(requests, [](auto r) { return Add{1, 1, std::move(r)}; });
        (*requests.tryReceive())->reply.send(2);
        QVERIFY(spinUntil([&] { return future.isFinished(); }));
        QCOMPARE(future.result(), 2);
    }

    // The context goes away while the future is pending: no call, nothing leaks (ASan, LSan).
    void then_contextDestroyedBeforeTheReply_data()
    {
        QTest::addColumn<Api>("api");
        QTest::newRow("stage::then") << Api::Stage;
#ifdef QT_NO_DEBUG
        // Qt 6.4's own then(context) asserts on a destroyed context without QT_NO_DEBUG.
        QTest::newRow("QFuture::then (release build)") << Api::Qt;
#endif
    }
    void then_contextDestroyedBeforeTheReply()
    {
        QFETCH(Api, api);
        stage::Mailbox<Add> requests;
        QFuture<int> future = stage::request(requests, [](stage::Reply<int> r) { return Add{1, 2, std::move(r)}; });
        auto *context = new QObject;
        int calls = 0;
        auto continuation = [&calls](int) { ++calls; };
        QFuture<void> continued = api == Api::Qt ? future.then(context, continuation) : stage::then(future, context, continuation);
        delete context;
        (*requests.tryReceive())->reply.send(3);
        QVERIFY(spinUntil([&] { return future.isFinished() && continued.isFinished(); }));
        QVERIFY(roundTrip(QThread::currentThread()));
        QCOMPARE(calls, 0);
        QCOMPARE(future.result(), 3);
        QVERIFY(continued.isCanceled());
    }

    void then_contextDestroyedBeforeTheQueuedCall()
    {
        // The future finishes here; the continuation is queued to a context on another thread,
        // which is destroyed before its loop delivers the call.
        ScopedThread contextThread;
        auto *context = new QObject;
        context->moveToThread(contextThread.get());
        QPromise<int> promise;
        promise.start();
        std::atomic<int> calls{0};
        QFuture<void> continued = stage::then(promise.future(), context, [&calls](int) { calls.fetch_add(1); });
        QSemaphore blocked, release;
        std::atomic<bool> deleted{false};
        QMetaObject::invokeMethod(contextThread.context(), [&, context] {
            blocked.release();
            release.acquire(); // the continuation gets queued behind this call
            delete context;
            deleted = true;
        }, Qt::QueuedConnection);
        blocked.acquire();
        promise.addResult(1);
        promise.finish(); // queues the continuation to the (blocked) context thread
        release.release();
        QVERIFY(spinUntil([&] { return deleted.load() && continued.isFinished(); }));
        QVERIFY(roundTrip(contextThread.get()));
        QCOMPARE(calls.load(), 0);
        QVERIFY(continued.isCanceled());
    }

    void then_continuationTakingTheFutureSeesFailures()
    {
        QObject context;
        auto [reply, answer] = stage::makeReply<int>();
        QString seen;
        QFuture<int> mapped = stage::then(stage::toFuture(std::move(answer)), &context, [&](QFuture<int> f) {
            try {
                return f.result();
            } catch (const stage::BrokenReply &e) {
                seen = QString::fromUtf8(e.what());
                return -1;
            }
        });
        { auto dropped = std::move(reply); } // destroyed unanswered
        QVERIFY(spinUntil([&] { return mapped.isFinished(); }));
        QCOMPARE(mapped.result(), -1);
        QVERIFY(!seen.isEmpty());
    }

    void then_valueContinuationPassesFailuresOn()
    {
        QObject context;
        auto [reply, answer] = stage::makeReply<int>();
        int values = 0;
        bool failed = false;
        QThread *failedOn = nullptr;
        auto done = stage::then(stage::toFuture(std::move(answer), 10ms), &context, [&](int) { ++values; })
                        .onFailed([&](const stage::TimeoutError &) { // no context: on the thread that finished it
                            failed = true;
                            failedOn = QThread::currentThread();
                        });
        QVERIFY(spinUntil([&] { return done.isFinished(); }));
        QCOMPARE(values, 0);
        QVERIFY(failed);
        QCOMPARE(failedOn, QThread::currentThread());
    }

    void then_nullContext()
    {
        QPromise<int> promise;
        promise.start();
        QTest::ignoreMessage(QtWarningMsg,
                             "stage::then: the context is null; the continuation never runs (the future is cancelled)");
        QFuture<void> continued = stage::then(promise.future(), nullptr, [](int) {});
        QVERIFY(continued.isCanceled());
        QVERIFY(continued.isFinished());
        promise.finish();
    }

    void toFuture_neverFinishedInsideTheCall()
    {
        auto [reply, answer] = stage::makeReply<int>();
        reply.send(7); // answered before toFuture()
        QFuture<int> future = stage::toFuture(std::move(answer));
        QVERIFY(!future.isFinished());
        int calls = 0;
        future.then(this, [&calls](int) { ++calls; });
        QCOMPARE(calls, 0); // not run inside then() either
        QVERIFY(spinUntil([&] { return calls == 1; }));
        QCOMPARE(future.result(), 7);
    }

    void toFuture_replyFromAnotherThread()
    {
        auto [reply, answer] = stage::makeReply<QString>();
        QFuture<QString> future = stage::toFuture(std::move(answer), 10s);
        std::thread replier([r = std::move(reply)]() mutable { r.send(QStringLiteral("from afar")); });
        replier.join();
        QThread *ranOn = nullptr;
        auto done = future.then([&](const QString &) { ranOn = QThread::currentThread(); });
        QVERIFY(spinUntil([&] { return done.isFinished(); }));
        QCOMPARE(ranOn, QThread::currentThread()); // without a context: the calling thread, not the replier's
    }

    void toFuture_lateReplyAfterTheTimeoutIsIgnored()
    {
        auto [reply, answer] = stage::makeReply<int>();
        QFuture<int> future = stage::toFuture(std::move(answer), 10ms);
        QVERIFY(spinUntil([&] { return future.isFinished(); }));
        QVERIFY(reply.send(3)); // the reply is still pending for the replier: it takes the value
        bool timedOut = false;
        try {
            future.waitForFinished();
        } catch (const stage::TimeoutError &e) {
            timedOut = QString::fromUtf8(e.what()).contains(QStringLiteral("10 ms"));
        }
        QVERIFY(timedOut);
        QCOMPARE(future.resultCount(), 0);
    }

    void toFuture_callingThreadEndsFirst_futureCancelled()
    {
        // The thread that asked ends before the answer: its future can never be finished there,
        // so it is cancelled (not left hanging), and nothing leaks (ASan).
        auto [reply, answer] = stage::makeReply<int>();
        QFuture<int> future;
        QThread asker;
        QObject::connect(&asker, &QThread::started, &asker, [&, a = std::move(answer)]() mutable {
            future = stage::toFuture(std::move(a));
            QThread::currentThread()->quit(); // its event loop ends at once
        }, Qt::DirectConnection);
        asker.start();
        QVERIFY(asker.wait(10000));
        QVERIFY(future.isStarted());
        reply.send(9); // the asker is gone: the settle is dropped with its executor
        QVERIFY(spinUntil([&] { return future.isFinished(); }));
        QVERIFY(future.isCanceled());
        QCOMPARE(future.resultCount(), 0);
    }

    void shutdownFuture_group()
    {
        stage::Group group;
        group.setSize(3);
        std::atomic<int> unwound{0};
        group.spawn([&unwound]() -> QCoro::Task<> {
            Sentinel s(unwound);
            co_await stage::sleep(1h);
        });
        QTRY_COMPARE_WITH_TIMEOUT(group.state(), stage::Node::State::Running, Timeout); // the bodies are suspended
        QFuture<void> future = stage::shutdownFuture(&group);
        QVERIFY(!future.isFinished());
        QThread *ranOn = nullptr;
        auto done = future.then(this, [&] { ranOn = QThread::currentThread(); });
        QVERIFY(spinUntil([&] { return done.isFinished(); }));
        QCOMPARE(unwound.load(), 3);
        QCOMPARE(group.state(), stage::Node::State::Stopped);
        QCOMPARE(ranOn, QThread::currentThread());
        // Already stopped: finishes (from the event loop) at once.
        QFuture<void> again = stage::shutdownFuture(&group);
        QVERIFY(!again.isFinished());
        QVERIFY(spinUntil([&] { return again.isFinished(); }));
        QVERIFY(!again.isCanceled());
    }

    void shutdownFuture_supervisor()
    {
        stage::Supervisor root;
        auto *a = new stage::Group;
        auto *b = new stage::Group;
        root.addChild(a);
        root.addChild(b);
        a->spawn([]() -> QCoro::Task<> { co_await stage::sleep(1h); });
        b->spawn([]() -> QCoro::Task<> { co_await stage::sleep(1h); });
        QVERIFY(root.start());
        QTRY_COMPARE_WITH_TIMEOUT(root.state(), stage::Node::State::Running, Timeout);
        QFuture<void> future = stage::shutdownFuture(&root);
        bool continued = false;
        QFuture<int> next = stage::then(future, this, [&] { continued = true; return 1; });
        QVERIFY(spinUntil([&] { return next.isFinished(); }));
        QVERIFY(!future.isCanceled());
        QVERIFY(continued);
        QCOMPARE(next.result(), 1);
        QCOMPARE(root.state(), stage::Node::State::Stopped);
        QCOMPARE(a->state(), stage::Node::State::Stopped);
        QCOMPARE(b->state(), stage::Node::State::Stopped);
    }

    void shutdownFuture_nodeDeletedFirst()
    {
        auto *group = new stage::Group;
        group->spawn([]() -> QCoro::Task<> { co_await stage::sleep(1h); });
        QTRY_COMPARE_WITH_TIMEOUT(group->state(), stage::Node::State::Running, Timeout);
        QFuture<void> future = stage::shutdownFuture(group);
        delete group; // stops it on the way: the future finishes, normally
        QVERIFY(spinUntil([&] { return future.isFinished(); }));
        QVERIFY(!future.isCanceled());
    }

    void shutdownFuture_badInput()
    {
        auto expectInvalid = [](QFuture<void> future, const char *what) {
            QVERIFY(!future.isFinished());
            QVERIFY(spinUntil([&] { return future.isFinished(); }));
            QString message;
            try {
                future.waitForFinished();
            } catch (const stage::InvalidOperation &e) {
                message = QString::fromUtf8(e.what());
            }
            QCOMPARE(message, QString::fromUtf8(what));
        };
        QTest::ignoreMessage(QtWarningMsg, "stage::shutdownFuture: the node is null");
        expectInvalid(stage::shutdownFuture(nullptr), "stage::shutdownFuture: the node is null");

        ScopedThread thread;
        auto *elsewhere = new stage::Group;
        elsewhere->moveToThread(thread.get());
        QTest::ignoreMessage(QtWarningMsg, "stage::shutdownFuture: called from a thread other than the node's");
        expectInvalid(stage::shutdownFuture(elsewhere), "stage::shutdownFuture: called from a thread other than the node's");
        elsewhere->deleteLater();
        QVERIFY(roundTrip(thread.get()));
    }

    void finishedFuture_reportsTheRunsEnd()
    {
        stage::WorkerHandle handle;
        handle.start([]() -> QCoro::Task<> { co_await stage::sleep(1h); });
        QFuture<stage::WorkerExit> future = stage::finishedFuture(&handle);
        QVERIFY(!future.isFinished());
        handle.requestStop();
        QVERIFY(spinUntil([&] { return future.isFinished(); }));
        QCOMPARE(future.result().kind, stage::WorkerExit::Kind::Cancelled);
        // Finished already: lastExit(), from the event loop.
        QFuture<stage::WorkerExit> again = stage::finishedFuture(&handle);
        QVERIFY(!again.isFinished());
        QVERIFY(spinUntil([&] { return again.isFinished(); }));
        QCOMPARE(again.result().kind, stage::WorkerExit::Kind::Cancelled);
    }

    void finishedFuture_failedRun()
    {
        stage::WorkerHandle handle;
        handle.start([]() -> QCoro::Task<> {
            co_await stage::sleep(0ms);
            throw std::runtime_error("boom");
        });
        QFuture<stage::WorkerExit> future = stage::finishedFuture(&handle);
        QVERIFY(spinUntil([&] { return future.isFinished(); }));
        QCOMPARE(future.result().kind, stage::WorkerExit::Kind::Failed);
        QCOMPARE(future.result().reason, QStringLiteral("boom"));
    }

    void finishedFuture_handleDestroyedFirst()
    {
        auto *handle = new stage::WorkerHandle;
        handle->start([]() -> QCoro::Task<> { co_await stage::sleep(1h); });
        QFuture<stage::WorkerExit> future = stage::finishedFuture(handle);
        delete handle;
        QVERIFY(spinUntil([&] { return future.isFinished(); }));
        bool destroyed = false;
        try {
            future.waitForFinished();
        } catch (const stage::ObjectDestroyed &) {
            destroyed = true;
        }
        QVERIFY(destroyed);
    }

    void finishedFuture_badInput()
    {
        auto expectInvalid = [](QFuture<stage::WorkerExit> future) {
            QVERIFY(spinUntil([&] { return future.isFinished(); }));
            bool invalid = false;
            try {
                future.waitForFinished();
            } catch (const stage::InvalidOperation &) {
                invalid = true;
            }
            QVERIFY(invalid);
        };
        QTest::ignoreMessage(QtWarningMsg, "stage::finishedFuture: the handle is null");
        expectInvalid(stage::finishedFuture(nullptr));
        stage::WorkerHandle idle;
        QTest::ignoreMessage(QtWarningMsg, "stage::finishedFuture: the handle was never started");
        expectInvalid(stage::finishedFuture(&idle));
    }
};

QTEST_GUILESS_MAIN(tst_QFuture)
#include "tst_qfuture.moc"
