// W6: a one-for-all supervisor (no backoff, unlimited restarts) with 100 idle children, each a
// group of one worker suspended on a receive from its own mailbox. Each cycle sends a message to
// child k (k varies per cycle); its worker throws; the supervisor stops the 99 others one after
// another in reverse start order and starts all 100 again in start order. A cycle ends when
// every one of the 100 worker bodies has started again (a counter each body increments on entry
// has grown by 100). 200 cycles.
//   us_per_cycle          from the send until the 100th body has started again, averaged; the
//                         children stop by unwinding (StopMode::Unwind, the default)
//   us_per_cycle_destroy  the same with StopMode::Destroy: each idle child's frame is destroyed
//                         in place, as tokio's abort() drops a task, instead of unwinding a throw
#include "bench.h"

#include <stage/stage.h>

#include <QtCore/QElapsedTimer>

#include <memory>

using namespace std::chrono_literals;

namespace {

constexpr int kChildren = 100;
constexpr int kCycles = 200;
qint64 g_bodies = 0; // worker bodies entered (every start and restart)

void spinUntil(qint64 target, const char *what)
{
    QElapsedTimer guard;
    guard.start();
    while (g_bodies < target) {
        QCoreApplication::processEvents(QEventLoop::AllEvents);
        if (guard.elapsed() > 60'000)
            qFatal("W6: %s: only %lld of %lld worker bodies started within 60 s", what, g_bodies, target);
    }
}

double cycle(stage::StopMode mode)
{
    g_bodies = 0;
    auto supervisor = std::make_unique<stage::Supervisor>(stage::Supervisor::Strategy::OneForAll);
    supervisor->setBackoff(stage::Backoff::none());
    supervisor->setMaxRestarts(-1);
    std::vector<stage::Mailbox<int>> mailboxes;
    std::vector<stage::Group *> groups;
    mailboxes.reserve(kChildren);
    for (int i = 0; i < kChildren; ++i) {
        stage::Mailbox<int> box;
        mailboxes.push_back(box);
        auto *group = new stage::Group;
        group->setBackoff(stage::Backoff::none());
        group->setStopMode(mode);
        // Added before spawn(): the supervisor starts it (a group spawned first would start at
        // once, on its own, in spawn order).
        supervisor->addChild(group);
        group->spawn([box](stage::Worker &) -> QCoro::Task<> {
            ++g_bodies;
            auto message = co_await box.receive();
            message.ack(); // not redelivered to the next incarnation: one failure per message
            throw std::runtime_error("W6: told to fail");
        });
        groups.push_back(group);
    }
    supervisor->start();
    spinUntil(kChildren, "start");

    QElapsedTimer timer;
    timer.start();
    for (int cycle = 0; cycle < kCycles; ++cycle) {
        const int k = int((cycle * 37 + 11) % kChildren); // visits every child, in a scattered order
        const qint64 target = g_bodies + kChildren;
        if (mailboxes[size_t(k)].trySend(cycle) != stage::SendStatus::Sent)
            qFatal("W6: cycle %d: the send to child %d was refused", cycle, k);
        spinUntil(target, "restart");
    }
    const double us = double(timer.nsecsElapsed()) / 1e3 / kCycles;

    // Let the supervisor settle (back to Running), then check what it counted.
    QElapsedTimer guard;
    guard.start();
    while (supervisor->state() != stage::Node::State::Running && guard.elapsed() < 10'000)
        QCoreApplication::processEvents(QEventLoop::AllEvents);
    const auto s = supervisor->statistics();
    qint64 started = 0;
    for (stage::Group *group : groups)
        started += group->started();
    if (supervisor->state() != stage::Node::State::Running || s.restarts != kCycles || s.childExits != kCycles
        || s.childFailures != kCycles || s.childrenRestarted != qint64(kCycles) * kChildren
        || s.children != kChildren || s.runningChildren != kChildren || s.escalations != 0
        || started != qint64(kCycles + 1) * kChildren || g_bodies != qint64(kCycles + 1) * kChildren) {
        qFatal("W6: inconsistent: state %d, restarts %lld, exits %lld, failures %lld, children restarted %lld, "
               "children %d, running %d, escalations %lld, worker starts %lld, bodies %lld",
               int(supervisor->state()), s.restarts, s.childExits, s.childFailures, s.childrenRestarted, s.children,
               s.runningChildren, s.escalations, started, g_bodies);
    }
    stage::waitFor(supervisor->shutdown(), 60s);
    if (supervisor->state() != stage::Node::State::Stopped)
        qFatal("W6: the supervisor did not stop (state %d)", int(supervisor->state()));
    return us;
}

std::vector<bench::Figure> run()
{
    const double unwind = cycle(stage::StopMode::Unwind);
    const double destroy = cycle(stage::StopMode::Destroy);
    return {{"stage", "us_per_cycle", unwind}, {"stage", "us_per_cycle_destroy", destroy}};
}

} // namespace

STAGE_BENCHMARK("W6", "one-for-all supervisor, 100 idle children: one fails, all 100 restarted", run);
