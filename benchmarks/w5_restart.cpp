// W5: one worker that throws as soon as it starts; its group restarts it with no backoff, 20,000
// times. The whole group machinery is on: statistics, coalesced notifications, and an intensity
// window (a limit of 10,000,000 restarts per second, never reached) so that every restart is
// recorded in it.
#include "bench.h"

#include <stage/stage.h>

#include <QtCore/QElapsedTimer>

namespace {

constexpr int kRestarts = 20'000;

QCoro::Task<> crash()
{
    throw std::runtime_error("crash");
    co_return;
}

std::vector<bench::Figure> run()
{
    stage::Group group;
    group.setRestartType(stage::RestartType::Transient);
    group.setBackoff(stage::Backoff::none());
    group.setMaxRestarts(10'000'000);
    group.setRestartPeriod(1000);
    QElapsedTimer timer;
    timer.start();
    group.spawn(crash);
    while (group.restarted() < kRestarts)
        QCoreApplication::processEvents(QEventLoop::AllEvents);
    const double seconds = double(timer.nsecsElapsed()) / 1e9;
    stage::waitFor(group.shutdown());
    if (!group.statistics().isConsistent() || group.failed() < kRestarts)
        qFatal("W5: inconsistent statistics");
    return {{"stage", "restarts_per_s", kRestarts / seconds}};
}

} // namespace

STAGE_BENCHMARK("W5", "restart rate of a worker that fails at once, no backoff", run);
