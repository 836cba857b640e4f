// The seed's adder (snippets 1.1/1.2) as a degree-3 actor. The first-degree client had to retry
// on a broken reply, the second-degree one built a Reply into its request; here the client only
// asks: `co_await adder.ask(Add{1, 2})`. The actor throws while handling the first Add; the
// runtime puts the ask back (its reply intact), the actor restarts with a fresh state from its
// init, and the one ask is answered. The same reference keeps working across the restart, from a
// coroutine, from slot code (askFuture) and from a plain std::thread (askBlocking).
#include <stage/actor.h>
#include <stage/waitfor.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QEventLoop>
#include <QtCore/QTimer>

#include <atomic>
#include <cstdio>
#include <stdexcept>
#include <thread>

using namespace std::chrono_literals;

struct Add
{
    int a = 0;
    int b = 0;
};
struct Total
{};
using AdderProtocol = stage::Protocol<int(Add), int(Total)>; // checked at compile time

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);
    std::atomic<int> inits{0};
    bool tripped = false;

    stage::Actor<AdderProtocol> adder;
    adder.setObjectName(QStringLiteral("adder"));
    adder.setBackoff(stage::Backoff::none());
    adder.spawn([&inits] { ++inits; return 0; },  // init: the state, a running total
                [&tripped](int &total, const Add &add) {
                    if (!std::exchange(tripped, true))
                        throw std::runtime_error("the adder tripped over a request");
                    total += add.a + add.b;
                    return add.a + add.b;
                },
                [](int &total, const Total &) { return total; });
    const stage::ActorRef<AdderProtocol> ref = adder.ref(); // one address for the actor's whole life

    const int sum = stage::waitFor(ref.ask(Add{1, 2}), 10s);
    std::printf("3: 1 + 2 = %d, asked once; the actor failed %lld time(s) and ran init %d time(s)\n", sum,
                adder.failed(), inits.load());

    int fromSlot = -1;
    QEventLoop loop;
    stage::then(ref.askFuture(Add{20, 22}), &app, [&](int value) {
        fromSlot = value;
        loop.quit();
    });
    QTimer::singleShot(10s, &loop, &QEventLoop::quit);
    loop.exec();
    std::printf("3: from slot code, 20 + 22 = %d\n", fromSlot);

    int fromThread = -1;
    std::atomic<bool> threadDone{false};
    std::thread plain([&] {
        fromThread = ref.askBlocking(Add{100, 1});
        threadDone = true;
    });
    while (!threadDone) // the actor lives on this thread: keep its loop running
        QCoreApplication::processEvents(QEventLoop::AllEvents, 10);
    plain.join();
    std::printf("3: from a std::thread, 100 + 1 = %d\n", fromThread);

    const int total = stage::waitFor(ref.ask(Total{}), 10s);
    std::printf("3: total since the restart: %d\n", total);
    std::printf("Degree 2 needed a Reply inside the request; degree 3 is a typed ask whose answer\n"
                "survives the actor's failure, and whose address survives its restart.\n");

    stage::waitFor(adder.shutdown());
    return (sum == 3 && fromSlot == 42 && fromThread == 101 && total == 3 + 42 + 101 && inits == 2) ? 0 : 1;
}
