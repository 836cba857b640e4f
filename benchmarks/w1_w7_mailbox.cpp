// The mailbox workloads of ../shared/peers/WORKLOADS.md.
//   W1  1 producer std::thread -> Mailbox<qint64>(1024) -> 1 consumer coroutine: 2,000,000 messages
//   W2  4 producer threads, 500,000 each, same consumer; msgs_per_s_signal: each producer emits a
//       Qt signal that stage::connect (Overflow::Block) feeds into the mailbox
//   W3  Add(a, b, reply) round trips between a client coroutine and a server worker (a Group on
//       the same thread, Stage's default placement): 200,000 sequential, each reply checked;
//       us_per_roundtrip_future: the client is slot code (stage::request, then a QFuture::then
//       continuation on the client's thread asks the next); _crossthread: the server on a thread
//       of its own (a Group with threadCount 1)
//   W7  1 producer thread, 200,000 numbered messages, Mailbox(1024), a consumer group whose worker
//       throws the first time it holds each multiple of 1,000: every number processed exactly once
#include "bench.h"

#include <stage/stage.h>

#include <QtCore/QElapsedTimer>
#include <QtCore/QEventLoop>
#include <QtCore/QObject>
#include <QtCore/QThread>
#include <QtCore/QTimer>

#include <functional>
#include <memory>
#include <thread>
#include <vector>

namespace {

// W1 / W2 ----------------------------------------------------------------------------------------

QCoro::Task<std::pair<qint64, qint64>> sumAll(stage::Mailbox<qint64> mailbox)
{
    qint64 sum = 0;
    qint64 count = 0;
    try {
        for (;;) {
            auto message = co_await mailbox.receive();
            sum += *message;
            ++count;
        }
    } catch (const stage::MailboxClosed &) {
    }
    co_return std::make_pair(sum, count);
}

double throughput(int producers)
{
    constexpr qint64 kTotal = 2'000'000;
    stage::Mailbox<qint64> mailbox(1024);
    const qint64 share = kTotal / producers;
    QElapsedTimer timer;
    timer.start();
    std::atomic<int> running{producers};
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
            for (qint64 v = p * share; v < (p + 1) * share; ++v) {
                qint64 value = v;
                mailbox.sendBlocking(std::move(value));
            }
            if (--running == 0)
                mailbox.close(); // the consumer drains, then sees MailboxClosed
        });
    }
    const auto [sum, count] = stage::waitFor(sumAll(mailbox), std::chrono::minutes(5));
    const double seconds = double(timer.nsecsElapsed()) / 1e9;
    for (auto &t : threads)
        t.join();
    if (count != kTotal || sum != kTotal * (kTotal - 1) / 2)
        qFatal("W1/W2: received %lld values summing to %lld", count, sum);
    return kTotal / seconds;
}

// W2's producers as Qt code writes them: a QObject per producer thread emits a signal, and
// stage::connect() turns each emission into a send (Block: the producer threads have no event loop).
class Producer : public QObject
{
    Q_OBJECT
Q_SIGNALS:
    void produced(qint64 value);
};

double throughputSignal(int producers)
{
    constexpr qint64 kTotal = 2'000'000;
    stage::Mailbox<qint64> mailbox(1024);
    const qint64 share = kTotal / producers;
    std::vector<std::unique_ptr<Producer>> senders;
    for (int p = 0; p < producers; ++p) {
        senders.push_back(std::make_unique<Producer>());
        if (!stage::connect(senders.back().get(), &Producer::produced, mailbox, stage::Overflow::Block))
            qFatal("W2 signal: stage::connect failed");
    }
    QElapsedTimer timer;
    timer.start();
    std::atomic<int> running{producers};
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
            Producer *sender = senders[size_t(p)].get();
            for (qint64 v = p * share; v < (p + 1) * share; ++v)
                Q_EMIT sender->produced(v);
            if (--running == 0)
                mailbox.close();
        });
    }
    const auto [sum, count] = stage::waitFor(sumAll(mailbox), std::chrono::minutes(5));
    const double seconds = double(timer.nsecsElapsed()) / 1e9;
    for (auto &t : threads)
        t.join();
    if (count != kTotal || sum != kTotal * (kTotal - 1) / 2)
        qFatal("W2 signal: received %lld values summing to %lld", count, sum);
    return kTotal / seconds;
}

// W3 ---------------------------------------------------------------------------------------------

struct Add
{
    int a;
    int b;
    stage::Reply<int> reply;
};

QCoro::Task<> adder(stage::Mailbox<Add> requests)
{
    for (;;) {
        auto request = co_await requests.receive();
        request->reply.send(request->a + request->b);
    }
}

QCoro::Task<int> client(stage::Mailbox<Add> requests, int rounds)
{
    int wrong = 0;
    for (int i = 0; i < rounds; ++i) {
        auto [reply, answer] = stage::makeReply<int>();
        co_await requests.send(Add{i, 1, std::move(reply)});
        if (co_await answer != i + 1)
            ++wrong;
    }
    co_return wrong;
}

double roundTripUs()
{
    constexpr int kRounds = 200'000;
    stage::Mailbox<Add> requests(1024);
    stage::Group server;
    server.spawn([requests] { return adder(requests); });
    QElapsedTimer timer;
    timer.start();
    const int wrong = stage::waitFor(client(requests, kRounds), std::chrono::minutes(5));
    const double us = double(timer.nsecsElapsed()) / 1e3 / kRounds;
    if (wrong)
        qFatal("W3: %d wrong replies", wrong);
    stage::waitFor(server.shutdown());
    return us;
}

// W3 from slot code: no coroutine on the client side. Each answer's continuation (on the client's
// thread) checks it and asks the next question.
double roundTripFutureUs(int serverThreads)
{
    constexpr int kRounds = 200'000;
    stage::Mailbox<Add> requests(1024);
    stage::Group server;
    server.setThreadCount(serverThreads);
    server.spawn([requests] { return adder(requests); });
    QObject client;
    QEventLoop loop;
    int answered = 0;
    int wrong = 0;
    std::function<void(int)> ask = [&](int i) {
        stage::request(requests, [i](stage::Reply<int> reply) { return Add{i, 1, std::move(reply)}; })
            .then(&client, [&, i](int sum) {
                if (sum != i + 1 || QThread::currentThread() != client.thread())
                    ++wrong;
                if (++answered < kRounds)
                    ask(answered);
                else
                    loop.quit();
            });
    };
    QElapsedTimer timer;
    timer.start();
    ask(0);
    QTimer::singleShot(std::chrono::minutes(5), &loop, [&] { qFatal("W3 future: stuck after %d answers", answered); });
    loop.exec();
    const double us = double(timer.nsecsElapsed()) / 1e3 / kRounds;
    if (wrong)
        qFatal("W3 future: %d wrong replies", wrong);
    stage::waitFor(server.shutdown());
    return us;
}

// W7 ---------------------------------------------------------------------------------------------

struct W7State
{
    std::vector<quint8> processed; // times each number was processed
    std::vector<quint8> failedOnce;
    qint64 done = 0;
};

QCoro::Task<> faultyConsumer(stage::Mailbox<qint64> mailbox, W7State *state)
{
    for (;;) {
        auto message = co_await mailbox.receive();
        const qint64 n = *message;
        if (n % 1000 == 0 && !state->failedOnce[n]) {
            state->failedOnce[n] = 1;
            throw std::runtime_error("transient fault"); // while holding message n
        }
        ++state->processed[n];
        ++state->done;
    }
}

std::vector<bench::Figure> reliable()
{
    constexpr qint64 kMessages = 200'000;
    stage::Mailbox<qint64> mailbox(1024);
    mailbox.setMaxRedeliveries(10);
    W7State state;
    state.processed.assign(kMessages + 1, 0);
    state.failedOnce.assign(kMessages + 1, 0);
    stage::Group consumers;
    consumers.setBackoff(stage::Backoff::none());
    QElapsedTimer timer;
    timer.start();
    consumers.spawn([mailbox, &state] { return faultyConsumer(mailbox, &state); });
    std::thread producer([&] {
        for (qint64 n = 1; n <= kMessages; ++n) {
            qint64 value = n;
            mailbox.sendBlocking(std::move(value));
        }
    });
    while (state.done < kMessages)
        QCoreApplication::processEvents(QEventLoop::AllEvents);
    const double seconds = double(timer.nsecsElapsed()) / 1e9;
    producer.join();
    stage::waitFor(consumers.shutdown());
    qint64 lost = 0;
    for (qint64 n = 1; n <= kMessages; ++n) {
        if (state.processed[n] != 1)
            ++lost;
    }
    if (consumers.failed() != kMessages / 1000)
        qFatal("W7: %lld failures, expected %lld", consumers.failed(), kMessages / 1000);
    return {{"stage", "msgs_per_s", kMessages / seconds}, {"stage", "lost", double(lost)}};
}

} // namespace

STAGE_BENCHMARK("W1", "1 producer thread -> Mailbox(1024) -> 1 consumer coroutine",
                [] { return std::vector<bench::Figure>{{"stage", "msgs_per_s", throughput(1)}}; });
STAGE_BENCHMARK("W2", "4 producer threads -> Mailbox(1024) -> 1 consumer coroutine (and through stage::connect)", [] {
    return std::vector<bench::Figure>{{"stage", "msgs_per_s", throughput(4)},
                                      {"stage", "msgs_per_s_signal", throughputSignal(4)}};
});
STAGE_BENCHMARK("W3", "Add(a, b, reply) round trips to a server worker (and from slot code through QFuture)", [] {
    return std::vector<bench::Figure>{{"stage", "us_per_roundtrip", roundTripUs()},
                                      {"stage", "us_per_roundtrip_future", roundTripFutureUs(0)},
                                      {"stage", "us_per_roundtrip_future_crossthread", roundTripFutureUs(1)}};
});
STAGE_BENCHMARK("W7", "at-least-once delivery under faults", reliable);

#include "w1_w7_mailbox.moc"
