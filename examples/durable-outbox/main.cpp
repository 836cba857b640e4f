// An outbox that survives kill -9 (Stage::Durable). The app queues 12 uploads in a durable
// mailbox; its uploader works through them one by one. The first run kills itself with SIGKILL
// in the middle of an upload; this example then starts itself again on the same file: the
// uploads not done are still in the outbox, the interrupted one first (counted as a failure:
// "the process ended while a consumer held it"), and the second run finishes them.
// Run without arguments; the runs are this program with --run <file> <kill-after>.
#include <stage/durablestore.h>
#include <stage/stage.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QProcess>
#include <QtCore/QTemporaryDir>

#include <cstdio>
#include <set>

#include <signal.h>

using namespace std::chrono_literals;

constexpr int kUploads = 12;

// The uploader: "uploads" each file (a short sleep), prints it, acknowledges it by moving on.
QCoro::Task<int> uploader(stage::Mailbox<QString> outbox, int killAfter)
{
    int done = 0;
    while (outbox.count() > 0) {
        auto upload = co_await outbox.receive();
        if (upload.previousDeliveries() > 0)
            std::printf("  retrying %s (its last attempt failed %d time(s))\n", qPrintable(*upload),
                        upload.failures());
        co_await stage::sleep(20ms); // the upload
        if (done == killAfter) {
            std::printf("  kill -9 while uploading %s\n", qPrintable(*upload));
            std::fflush(stdout);
            ::raise(SIGKILL); // nothing after this runs: no destructor, no acknowledgement
        }
        std::printf("  uploaded %s\n", qPrintable(*upload));
        std::fflush(stdout);
        ++done;
    }
    co_return done;
}

int runOnce(const QString &file, int killAfter)
{
    stage::DurableStore store(file); // created with mode 0600 on the first run
    if (!store.isOpen()) {
        std::printf("cannot open the outbox: %s\n", qPrintable(store.errorString()));
        return 2;
    }
    stage::Mailbox<QString> outbox = store.mailbox<QString>(QStringLiteral("uploads"));
    if (outbox.count() == 0 && killAfter >= 0) { // the first run queues the work
        for (int i = 1; i <= kUploads; ++i)
            outbox.sendBlocking(QStringLiteral("photo-%1.jpg").arg(i)); // returns once committed
    }
    std::printf("run: the outbox holds %d upload(s)\n", outbox.count());
    const int done = stage::waitFor(uploader(outbox, killAfter), 60s);
    std::printf("run: %d uploaded, %d left\n", done, outbox.count());
    return outbox.count() == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);
    const QStringList args = app.arguments();
    if (args.value(1) == QLatin1String("--run"))
        return runOnce(args.value(2), args.value(3).toInt());

    QTemporaryDir dir;
    const QString file = dir.filePath(QStringLiteral("outbox.stage"));
    auto run = [&](int killAfter) {
        QProcess child;
        child.setProcessChannelMode(QProcess::ForwardedChannels);
        child.start(app.applicationFilePath(), {QStringLiteral("--run"), file, QString::number(killAfter)});
        child.waitForFinished(60000);
        return child.exitStatus() == QProcess::CrashExit ? -1 : child.exitCode();
    };
    const int first = run(5); // killed during its sixth upload
    std::printf("first run: %s\n", first == -1 ? "killed by SIGKILL" : "ended (unexpected)");
    const int second = run(-1); // no kill: finishes the outbox
    std::printf("second run: %s\n", second == 0 ? "the outbox is empty" : "failed");
    return first == -1 && second == 0 ? 0 : 1;
}
