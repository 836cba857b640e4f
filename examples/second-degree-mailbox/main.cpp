// The seed's second degree, snippet 2.1, on Stage for Qt: the first-degree adder (see
// examples/first-degree) now reads its requests from a stage::Mailbox. The worker throws while
// holding the first request; the group restarts it, the mailbox redelivers the request to the new
// worker, and the client gets its answer from its one and only send.
#include "adder2.h"

#include <QtCore/QCoreApplication>

#include <cstdio>

using namespace std::chrono_literals;

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);

    stage::Mailbox<adder2::Add> requests;
    auto counters = std::make_shared<adder2::Counters>();
    stage::Group group; // one worker, restarted after a failure
    QObject::connect(&group, &stage::Group::workerFinished, [](const stage::WorkerExit &exit) {
        if (exit.isFailure())
            std::printf("2.1: worker %llu failed: %s\n", exit.id, qPrintable(exit.reason));
    });
    group.spawn([requests, counters] { return adder2::worker(requests, counters); });

    int sum = -1;
    try {
        sum = stage::waitFor(adder2::add(requests, counters, 1, 2), 10s);
    } catch (const std::exception &e) {
        std::printf("2.1: no answer: %s\n", e.what());
    }
    const auto stats = requests.statistics();
    std::printf("2.1: 1 + 2 = %d from %d request(s) sent; the group restarted %lld worker(s)\n", sum,
                counters->sent.load(), group.restarted());
    std::printf("2.1: mailbox: %lld queued, %lld delivered, %lld redelivered, %d left\n", stats.queued,
                stats.delivered, stats.redelivered, requests.count());
    std::printf("Degree 1 lost the request with the worker, so its client had to resend; degree 2 keeps\n"
                "it in the mailbox until a worker gets through it.\n");

    stage::waitFor(group.shutdown());
    return (sum == 3 && counters->sent == 1 && stats.redelivered == 1) ? 0 : 1;
}
