// W4: 100,000 idle workers in one group, each suspended on a receive from its own mailbox; then
// shut them all down and wait until all ended.
//   spawn_us_per_worker  from spawn() until every body has reached its suspension
//   bytes_per_worker     VmRSS delta over that span / 100,000 (malloc_trim first)
//   shutdown_ms          from shutdown() until every worker has unwound
#include "bench.h"

#include <stage/stage.h>

#include <QtCore/QElapsedTimer>

using namespace std::chrono_literals;

namespace {

constexpr int kWorkers = 100'000;
int g_suspended = 0;

QCoro::Task<> idle()
{
    stage::Mailbox<qint64> own;
    ++g_suspended;
    co_await own.receive();
}

std::vector<bench::Figure> run()
{
    bench::trimMemory();
    g_suspended = 0;
    const long long before = bench::residentBytes();
    QElapsedTimer timer;
    timer.start();
    auto *group = new stage::Group;
    group->setSize(kWorkers);
    group->setShutdownTimeout(60'000);
    group->spawn(idle);
    while (g_suspended < kWorkers)
        QCoreApplication::processEvents(QEventLoop::AllEvents);
    const double spawnUs = double(timer.nsecsElapsed()) / 1e3 / kWorkers;
    const double bytes = double(bench::residentBytes() - before) / kWorkers;

    timer.restart();
    stage::waitFor(group->shutdown(), 5min);
    const double shutdownMs = double(timer.nsecsElapsed()) / 1e6;
    if (group->cancelled() != kWorkers)
        qFatal("W4: %lld of %d workers cancelled", group->cancelled(), kWorkers);
    delete group;
    return {{"stage", "spawn_us_per_worker", spawnUs}, {"stage", "bytes_per_worker", bytes},
            {"stage", "shutdown_ms", shutdownMs}};
}

} // namespace

STAGE_BENCHMARK("W4", "100,000 idle workers: spawn, memory, shutdown", run);
