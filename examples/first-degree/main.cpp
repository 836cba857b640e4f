// The seed's first degree, snippets 1.1 to 1.3, on Stage for Qt.
//   1.1  a bare worker coroutine: when it throws, the work silently stops and the client waits
//        forever (here: until its 300 ms timeout).
//   1.2  the same worker in a stage::Group: it is rebuilt from the factory after each failure,
//        and the client, retrying on a broken reply, gets its answer.
//   1.3  Group::scope(): the client runs as the scope's body; when it returns the group is shut
//        down and every worker has ended.
#include "adder.h"

#include <QtCore/QCoreApplication>
#include <QtCore/QVariant>

#include <cstdio>

using namespace std::chrono_literals;

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);
    int status = 0;

    { // 1.1: fire and forget. The first request makes the worker throw; nobody notices.
        auto queue = std::make_shared<adder::Queue>();
        auto counters = std::make_shared<adder::Counters>();
        auto bare = adder::worker(queue, counters); // a QCoro::Task nobody awaits
        QPromise<int> promise;
        QFuture<int> answer = promise.future();
        queue->push(adder::Add{1, 2, std::move(promise)});
        try {
            std::printf("1.1: 1 + 2 = %d\n", stage::waitFor(stage::future(answer), 300ms));
        } catch (const stage::Error &e) {
            std::printf("1.1: no answer: %s (the worker died and nobody restarted it)\n", e.what());
        }
        // Still "waiting": a second request is never served either.
        queue->push(adder::Add{2, 2, QPromise<int>()});
        std::printf("1.1: requests left unserved: %d\n", queue->tryPop() ? 1 : 0);
    }

    { // 1.2: a group restarts the worker; the client retries until it is answered.
        auto queue = std::make_shared<adder::Queue>();
        auto counters = std::make_shared<adder::Counters>();
        stage::Group group;
        group.setSize(2);
        group.spawn([queue, counters] { return adder::worker(queue, counters); });
        const auto [sum, attempts] = stage::waitFor(adder::addWithRetry(queue, 1, 2, 10));
        std::printf("1.2: 1 + 2 = %d after %d attempt(s); the group restarted %lld worker(s)\n", sum, attempts,
                    group.restarted());
        status |= sum == 3 ? 0 : 1;
        stage::waitFor(group.shutdown());
    }

    { // 1.3: the client as the body of a scope: the group ends when the body does.
        auto queue = std::make_shared<adder::Queue>();
        auto counters = std::make_shared<adder::Counters>();
        stage::Group group;
        group.setSize(2);
        group.spawn([queue, counters] { return adder::worker(queue, counters); });
        const auto [sum, attempts] = stage::waitFor(group.scope(adder::addWithRetry(queue, 1, 2, 10)));
        const auto stats = group.statistics();
        std::printf("1.3: 1 + 2 = %d after %d attempt(s); group %s: %d running, %lld started, %lld failed, "
                    "%lld cancelled\n",
                    sum, attempts, qPrintable(QVariant::fromValue(group.state()).toString()), stats.running,
                    stats.started, stats.failed, stats.cancelled);
        status |= (sum == 3 && stats.running == 0 && group.state() == stage::Group::State::Stopped) ? 0 : 1;
    }

    // Degree 1 restarts the worker, but the request it held died with it (its reply broke), so the
    // client had to resend. Degree 2 keeps the request in a stage::Mailbox until a worker gets
    // through it: see examples/second-degree-mailbox.
    std::printf("Degree 1: the request dies with its worker and the client resends; degree 2: the mailbox\n"
                "redelivers it to the restarted worker (examples/second-degree-mailbox).\n");
    return status;
}
