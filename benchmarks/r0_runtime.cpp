// R0: the raw costs of the runtime core, next to plain QCoro measured in the same process.
//   start_cancel_ns  WorkerHandle start of a worker that suspends on stage::sleep(1h), requestStop,
//                    unwind (stage::Cancelled through the frame), finished() delivered; per cycle
//   resume_ns        one co_await stage::sleep(0ms) (a yield resumed from the event loop)
//   qcoro resume_ns  one co_await QCoro::sleepFor(0ms), for comparison
#include "bench.h"

#include <stage/stage.h>

#include <QCoro/QCoroTimer>

#include <QtCore/QElapsedTimer>

using namespace std::chrono_literals;

namespace {

constexpr int kCycles = 50'000;
constexpr int kResumes = 200'000;

QCoro::Task<> sleepForever(stage::Worker &)
{
    co_await stage::sleep(1h);
}

double startCancelNs()
{
    stage::WorkerHandle handle;
    int cycles = 0;
    QObject::connect(&handle, &stage::WorkerHandle::finished, &handle, [&](const stage::WorkerExit &exit) {
        if (exit.kind != stage::WorkerExit::Kind::Cancelled)
            qFatal("R0: unexpected exit %s", qPrintable(exit.reason));
        if (++cycles < kCycles) {
            handle.restart();
            handle.requestStop();
        }
    });
    QElapsedTimer timer;
    timer.start();
    handle.start(sleepForever);
    handle.requestStop();
    while (cycles < kCycles)
        QCoreApplication::processEvents(QEventLoop::AllEvents);
    return double(timer.nsecsElapsed()) / kCycles;
}

QCoro::Task<> stageYields(int n)
{
    for (int i = 0; i < n; ++i)
        co_await stage::sleep(0ms);
}

QCoro::Task<> qcoroYields(int n)
{
    for (int i = 0; i < n; ++i)
        co_await QCoro::sleepFor(0ms);
}

template<typename F>
double perResumeNs(F body)
{
    QElapsedTimer timer;
    timer.start();
    stage::waitFor(body(kResumes), std::chrono::minutes(5));
    return double(timer.nsecsElapsed()) / kResumes;
}

std::vector<bench::Figure> run()
{
    return {
        {"stage", "start_cancel_ns", startCancelNs()},
        {"stage", "resume_ns", perResumeNs(stageYields)},
        {"qcoro", "resume_ns", perResumeNs(qcoroYields)},
    };
}

} // namespace

STAGE_BENCHMARK("R0", "runtime core: start+cancel+unwind of a suspended worker, one resumption", run);
