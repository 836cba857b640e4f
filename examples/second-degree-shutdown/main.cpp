// The seed's second degree, snippet 2.2, on Stage for Qt: stage::gracefulShutdown gives a worker
// a shutdown handler. The worker sends 1 on a channel, then waits forever; when its group is shut
// down, the wait unwinds and the handler sends 2 (it still has the worker's resources), and the
// channel is closed when the worker's frame ends, as the seed's sender is dropped with it.
// The client receives 1 inside the group's scope, then 2 from the handler, then "closed".
#include <stage/stage.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QStringList>

#include <cstdio>

using namespace std::chrono_literals;

namespace {

// Closes the channel when the worker's frame ends (the seed drops its sender there).
struct CloseOnExit
{
    stage::Mailbox<int> channel;
    ~CloseOnExit() { channel.close(); }
};

QCoro::Task<> sendOneThenWait(stage::Mailbox<int> channel)
{
    co_await channel.send(1);
    co_await stage::sleep(24h); // "forever": a stop resumes it with stage::Cancelled
}

QCoro::Task<> worker(stage::Mailbox<int> channel)
{
    CloseOnExit closer{channel};
    // A capturing lambda coroutine is safe as the handler: gracefulShutdown keeps it alive.
    auto handler = [channel]() -> QCoro::Task<> { co_await channel.send(2); };
    QCoro::Task<> work = sendOneThenWait(channel);
    co_await stage::gracefulShutdown(std::move(work), std::move(handler)); // false: the handler ran
    co_await stage::sleep(24h); // stopping: throws stage::Cancelled, and the frame ends
}

QCoro::Task<int> receiveOne(stage::Mailbox<int> channel)
{
    auto delivery = co_await channel.receive();
    co_return *delivery;
}

} // namespace

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);

    stage::Mailbox<int> channel;
    stage::Group group;
    group.spawn([channel] { return worker(channel); });

    QStringList received;
    try {
        // Inside the scope the client gets the work's value; the scope then shuts the group down,
        // which runs the handler, and returns once the worker has ended.
        const int first = stage::waitFor(group.scope(receiveOne(channel)), 10s);
        std::printf("received %d\n", first);
        received << QString::number(first);
        const int second = *stage::waitFor(channel.receive(), 10s);
        std::printf("received %d (from the shutdown handler)\n", second);
        received << QString::number(second);
        const int third = *stage::waitFor(channel.receive(), 10s);
        std::printf("received %d (unexpected)\n", third);
        received << QString::number(third);
    } catch (const stage::MailboxClosed &) {
        std::printf("channel closed\n");
        received << QStringLiteral("closed");
    } catch (const std::exception &e) {
        std::printf("error: %s\n", e.what());
        received << QStringLiteral("error");
    }

    const QStringList expected{QStringLiteral("1"), QStringLiteral("2"), QStringLiteral("closed")};
    if (received != expected) {
        std::printf("wrong sequence: %s, expected %s\n", qPrintable(received.join(u' ')),
                    qPrintable(expected.join(u' ')));
        return 1;
    }
    return 0;
}
