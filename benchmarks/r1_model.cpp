// R1: what a view costs a busy tree. A root supervisor (OneForOne, unlimited restarts,
// Backoff::none()) with 1,000 groups, each running W5's worker (it throws as soon as it starts;
// the group restarts it at once, within an intensity window of 10,000,000 restarts a second that
// is never exceeded, so nothing escalates), restarting as fast as it can.
//
// One tree, measured in 250 ms windows that alternate (A B B A A B B A ...: a drift of the
// machine's load cancels out) between no model and a stage::SupervisionTreeModel showing the
// tree (setRoot() at the start of the window) with a view connected to dataChanged() (a counting
// lambda), flushing every 100 ms. Figures: restarts per second in each kind of window, and the
// GUI thread's busy time inside the model's flushes per second of the model windows (each flush
// timed from its timer event to its return, the signals' delivery included, in thread CPU time;
// the wall-clock time and the setRoot() cost go to stderr).
#include "bench.h"

#include <stage/stage.h>

#include <QtCore/QElapsedTimer>

#include <cstdio>
#include <ctime>
#include <vector>

namespace {

constexpr int kGroups = 1000;
constexpr qint64 kWindowMs = 250;
constexpr int kWindows = 24;

QCoro::Task<> crash()
{
    throw std::runtime_error("crash");
    co_return;
}

qint64 threadCpuNanos()
{
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return qint64(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

/* Times every timer event of the watched model (its flush timer), from delivery to return. */
class FlushClock : public QObject
{
public:
    explicit FlushClock(QObject *model) { model->installEventFilter(this); }
    qint64 cpuNanos = 0;
    qint64 wallNanos = 0;
    int flushes = 0;

protected:
    bool eventFilter(QObject *watched, QEvent *event) override
    {
        if (event->type() != QEvent::Timer || m_inside)
            return false;
        m_inside = true;
        QElapsedTimer wall;
        wall.start();
        const qint64 cpu = threadCpuNanos();
        watched->event(event); // the model's timerEvent(): the flush
        cpuNanos += threadCpuNanos() - cpu;
        wallNanos += wall.nsecsElapsed();
        ++flushes;
        m_inside = false;
        return true;
    }

private:
    bool m_inside = false;
};

std::vector<bench::Figure> run()
{
    stage::Supervisor root(stage::Supervisor::Strategy::OneForOne);
    root.setObjectName(QStringLiteral("root"));
    root.setMaxRestarts(-1);
    root.setBackoff(stage::Backoff::none());
    std::vector<stage::Group *> groups;
    for (int i = 0; i < kGroups; ++i) {
        auto *group = new stage::Group;
        group->setObjectName(QStringLiteral("group %1").arg(i));
        group->setRestartType(stage::RestartType::Transient);
        group->setBackoff(stage::Backoff::none());
        group->setMaxRestarts(10'000'000);
        group->setRestartPeriod(1000);
        root.addChild(group);
        group->spawn(crash);
        groups.push_back(group);
    }
    auto restarts = [&groups] {
        qint64 n = 0;
        for (const stage::Group *g : groups)
            n += g->restarted();
        return n;
    };
    root.start();
    while (root.state() != stage::Node::State::Running)
        QCoreApplication::processEvents(QEventLoop::AllEvents);

    stage::SupervisionTreeModel model;
    model.setFlushInterval(100);
    FlushClock clock(&model);
    qint64 emitted = 0;
    qint64 attachNanos = 0;
    double seconds[2] = {0, 0};
    qint64 restarted[2] = {0, 0};
    for (int w = 0; w < kWindows; ++w) {
        const int withModel = ((w + 1) / 2) % 2;
        QMetaObject::Connection view;
        const qint64 before = restarts();
        QElapsedTimer timer;
        timer.start();
        if (withModel) {
            model.setRoot(&root);
            view = QObject::connect(&model, &QAbstractItemModel::dataChanged, &model, [&emitted] { ++emitted; });
            attachNanos += timer.nsecsElapsed();
        }
        while (timer.elapsed() < kWindowMs)
            QCoreApplication::processEvents(QEventLoop::AllEvents);
        if (withModel) {
            QObject::disconnect(view);
            model.setRoot(nullptr);
        }
        seconds[withModel] += double(timer.nsecsElapsed()) / 1e9;
        restarted[withModel] += restarts() - before;
    }
    const double without = double(restarted[0]) / seconds[0];
    const double with = double(restarted[1]) / seconds[1];
    const double guiMsPerSecond = double(clock.cpuNanos) / 1e6 / seconds[1];
    std::fprintf(stderr,
                 "R1: %.0f restarts/s without a model, %.0f with one (%+.1f%%); %d flushes, %.3f ms each "
                 "(thread CPU; %.3f ms wall), %.1f ms/s; setRoot() of 1,001 rows %.2f ms; %lld dataChanged()\n",
                 without, with, 100.0 * (with - without) / without, clock.flushes,
                 clock.flushes ? double(clock.cpuNanos) / 1e6 / clock.flushes : 0.0,
                 clock.flushes ? double(clock.wallNanos) / 1e6 / clock.flushes : 0.0, guiMsPerSecond,
                 double(attachNanos) / 1e6 / (kWindows / 2), emitted);
    stage::waitFor(root.shutdown());
    return {{"stage", "restarts_per_s_nomodel", without},
            {"stage", "restarts_per_s_model", with},
            {"stage", "gui_ms_per_s", guiMsPerSecond}};
}

} // namespace

STAGE_BENCHMARK("R1", "restarts/s of 1,000 W5 groups under a supervisor, without and with a SupervisionTreeModel", run);
