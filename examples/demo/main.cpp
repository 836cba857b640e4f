// The Stage demo: a worker that fails is unwound and rebuilt from its factory; a stop unwinds it.
//
// A "sync engine" polls a server on a Stage-owned worker thread. Its second poll throws; the
// frame unwinds (its RAII connection closes), the handle reports the failure, and the worker is
// rebuilt from its factory (generation 1). Then the app asks it to stop in the middle of a
// sleep: stage::Cancelled unwinds the frame at once, on the worker's own thread.
#include <stage/stage.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QElapsedTimer>
#include <QtCore/QThread>
#include <QtCore/QTimer>

#include <cstdarg>
#include <cstdio>

using namespace std::chrono_literals;

namespace {

QElapsedTimer clock_;

[[gnu::format(printf, 1, 2)]] void say(const char *format, ...)
{
    std::printf("[%5lld ms] ", static_cast<long long>(clock_.elapsed()));
    va_list args;
    va_start(args, format);
    std::vprintf(format, args);
    va_end(args);
    std::printf("\n");
    std::fflush(stdout);
}

struct Connection // stands for any resource the worker holds
{
    int generation;
    explicit Connection(int g) : generation(g) { say("  worker g%d: connection opened", generation); }
    ~Connection() { say("  worker g%d: connection closed (frame unwound)", generation); }
};

QCoro::Task<> syncEngine(stage::Worker &worker)
{
    Connection connection(worker.generation());
    for (int poll = 1;; ++poll) {
        co_await stage::sleep(100ms); // a cancellation point: a stop resumes here with stage::Cancelled
        const bool onWorkerThread = QThread::currentThread() == worker.thread();
        say("  worker g%d: poll %d (on its home thread: %s)", worker.generation(), poll, onWorkerThread ? "yes" : "NO");
        if (worker.generation() == 0 && poll == 2)
            throw std::runtime_error("server sent garbage");
    }
}

} // namespace

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);
    clock_.start();
    QThread workerThread;
    workerThread.setObjectName(QStringLiteral("stage-worker"));
    workerThread.start();

    stage::WorkerHandle handle;
    handle.setStopTimeout(1000);
    int exitCode = 1;
    QObject::connect(&handle, &stage::WorkerHandle::started, [](int generation) {
        say("handle: worker started, generation %d", generation);
    });
    QObject::connect(&handle, &stage::WorkerHandle::finished, [&](const stage::WorkerExit &exit) {
        switch (exit.kind) {
        case stage::WorkerExit::Kind::Failed:
            say("handle: worker g%d FAILED: %s -> rebuilding it from its factory", exit.generation, qPrintable(exit.reason));
            handle.restart();
            QTimer::singleShot(250ms, &handle, [&] {
                say("app: asking the worker to stop");
                handle.requestStop();
            });
            break;
        case stage::WorkerExit::Kind::Cancelled:
            say("handle: worker g%d stopped cleanly (%s)", exit.generation, qPrintable(exit.reason));
            exitCode = exit.generation == 1 ? 0 : 1;
            app.quit();
            break;
        default:
            say("handle: unexpected end: %s", qPrintable(exit.reason));
            app.quit();
        }
    });

    handle.start(syncEngine, &workerThread);
    QTimer::singleShot(10s, &app, [&] { say("demo: timed out"); app.quit(); });
    app.exec();

    workerThread.quit();
    workerThread.wait();
    say("%s", exitCode == 0 ? "demo: done" : "demo: FAILED");
    return exitCode;
}
