// W3 through an actor (degree 3): the same Add(a, b) round trips as W3's us_per_roundtrip
// (../shared/peers/WORKLOADS.md: 200,000 sequential, each reply checked), asked of a
// stage::Actor on the same thread (Stage's default placement) by a client coroutine with
// ActorRef::ask(): a typed message, the runtime's reply, the actor's default 5 s timeout armed on
// every ask, and the dequeue-time deadline check.
//   us_per_roundtrip_actor   the client coroutine asks (co_await ref.ask(Add{i, 1}))
// Registered as W3 too: the driver runs both files' W3 figures in one run (bench::add chains them).
#include "bench.h"

#include <stage/actor.h>
#include <stage/waitfor.h>

#include <QtCore/QElapsedTimer>

namespace w3actor {

struct Add
{
    int a;
    int b;
};
using AdderProtocol = stage::Protocol<int(Add)>;

QCoro::Task<int> client(stage::ActorRef<AdderProtocol> adder, int rounds)
{
    int wrong = 0;
    for (int i = 0; i < rounds; ++i) {
        if (co_await adder.ask(Add{i, 1}) != i + 1)
            ++wrong;
    }
    co_return wrong;
}

double roundTripActorUs()
{
    constexpr int kRounds = 200'000;
    stage::Actor<AdderProtocol> adder;
    adder.spawn([] { return 0; }, [](int &, const Add &add) { return add.a + add.b; });
    QElapsedTimer timer;
    timer.start();
    const int wrong = stage::waitFor(client(adder.ref(), kRounds), std::chrono::minutes(5));
    const double us = double(timer.nsecsElapsed()) / 1e3 / kRounds;
    if (wrong)
        qFatal("W3 actor: %d wrong replies", wrong);
    stage::waitFor(adder.shutdown());
    return us;
}

} // namespace w3actor

STAGE_BENCHMARK("W3", "Add(a, b) round trips asked of a stage::Actor (ActorRef::ask)", [] {
    return std::vector<bench::Figure>{{"stage", "us_per_roundtrip_actor", w3actor::roundTripActorUs()}};
});
