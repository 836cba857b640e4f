// Stage inspector: a supervision tree declared in QML (Main.qml) whose workers are registered
// here by name, shown live in SupervisorView.
//   stage-qml-inspector                      a window, until closed
//   stage-qml-inspector --seconds 4 --screenshot out.png [--select uploader]
//                                            runs 4 s, saves the window, exits
#include <stage/qml.h>
#include <stage/stage.h>

#include <QtCore/QCommandLineParser>
#include <QtCore/QElapsedTimer>
#include <QtCore/QRandomGenerator>
#include <QtCore/QTimer>
#include <QtGui/QGuiApplication>
#include <QtQml/QQmlApplicationEngine>
#include <QtQuick/QQuickWindow>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

using namespace std::chrono_literals;

int main(int argc, char **argv)
{
    QGuiApplication app(argc, argv);
    QCommandLineParser parser;
    parser.addHelpOption();
    const QCommandLineOption secondsOption(QStringLiteral("seconds"), QStringLiteral("Run N seconds, then quit."),
                                           QStringLiteral("N"));
    const QCommandLineOption screenshotOption(QStringLiteral("screenshot"),
                                              QStringLiteral("Save the window to FILE before quitting."),
                                              QStringLiteral("FILE"));
    const QCommandLineOption selectOption(QStringLiteral("select"), QStringLiteral("Select node NAME in the view."),
                                          QStringLiteral("NAME"), QStringLiteral("devices"));
    const QCommandLineOption stressOption(
        QStringLiteral("stress"),
        QStringLiteral("Add a supervisor of N groups whose worker fails at once, restarting continuously; prints how "
                       "responsive the window stayed (frames per second, the worst lateness of a 10 ms timer)."),
        QStringLiteral("N"));
    parser.addOptions({secondsOption, screenshotOption, selectOption, stressOption});
    parser.process(app);

    // The jobs the uploader consumes; every 40th is poison (dead-lettered after its redeliveries).
    stage::Mailbox<int> jobs(100, &app);
    jobs.setMaxRedeliveries(2);
    stage::registerMailbox(QStringLiteral("jobs"), jobs);
    int next = 0;
    QTimer producer;
    QObject::connect(&producer, &QTimer::timeout, [&] { jobs.trySend(++next); });
    producer.start(50);

    // "flaky": works, and throws every failEvery ms (give or take).
    stage::registerWorker(QStringLiteral("flaky"), [](stage::Worker &worker, const QVariantMap &args) -> QCoro::Task<> {
        const int every = args.value(QStringLiteral("failEvery"), 2000).toInt();
        const auto lifetime = std::chrono::milliseconds(every / 2 + QRandomGenerator::global()->bounded(every));
        const auto start = std::chrono::steady_clock::now();
        while (std::chrono::steady_clock::now() - start < lifetime) {
            co_await stage::sleep(100ms);
            worker.heartbeat();
        }
        throw std::runtime_error("lost the connection to the server");
    });
    // "consumer": takes jobs; a poison job throws.
    stage::registerWorker(QStringLiteral("consumer"), [jobs]() -> QCoro::Task<> {
        for (;;) {
            auto job = co_await jobs.receive();
            if (*job % 40 == 0)
                throw std::runtime_error(qPrintable(QStringLiteral("job %1 is malformed").arg(*job)));
            co_await stage::sleep(20ms);
        }
    });
    // "crasher": fails at once (the stress subtree restarts it continuously).
    stage::registerWorker(QStringLiteral("crasher"), []() -> QCoro::Task<> {
        co_await stage::sleep(1ms);
        throw std::runtime_error("crashed on purpose");
    });
    // "steady": runs until stopped.
    stage::registerWorker(QStringLiteral("steady"), [](stage::Worker &worker) -> QCoro::Task<> {
        for (;;) {
            co_await stage::sleep(200ms);
            worker.heartbeat();
        }
    });

    QQmlApplicationEngine engine;
    stage::initQml(&engine);
    engine.load(QUrl(QStringLiteral("qrc:/qt/qml/StageInspector/Main.qml")));
    if (engine.rootObjects().isEmpty())
        return 1;
    auto *window = qobject_cast<QQuickWindow *>(engine.rootObjects().constFirst());

    // Responsiveness: frames rendered, and how late a 10 ms timer fires on the GUI thread.
    int frames = 0;
    qint64 worstLateness = 0;
    QElapsedTimer tick;
    QTimer probe;
    if (parser.isSet(stressOption)) {
        QMetaObject::invokeMethod(engine.rootObjects().constFirst(), "addStress",
                                  Q_ARG(QVariant, parser.value(stressOption).toInt()));
        QObject::connect(window, &QQuickWindow::frameSwapped, [&] { ++frames; });
        tick.start();
        QObject::connect(&probe, &QTimer::timeout, [&] {
            worstLateness = std::max(worstLateness, tick.restart() - 10);
            window->update(); // keep rendering: count what the GUI thread can still draw
        });
        probe.setTimerType(Qt::PreciseTimer);
        probe.start(10);
    }

    if (parser.isSet(secondsOption)) {
        const int seconds = parser.value(secondsOption).toInt();
        QTimer::singleShot(300, window, [&] {
            QObject *view = window->findChild<QObject *>(QStringLiteral("inspector"));
            auto *node = window->findChild<stage::Node *>(parser.value(selectOption));
            if (view && node)
                QMetaObject::invokeMethod(view, "select", Q_ARG(QVariant, QVariant::fromValue<QObject *>(node)));
        });
        QTimer::singleShot(seconds * 1000, window, [&] {
            if (parser.isSet(screenshotOption)) {
                const QString file = parser.value(screenshotOption);
                const QImage image = window->grabWindow();
                if (image.isNull() || !image.save(file)) {
                    std::fprintf(stderr, "could not save the screenshot to %s\n", qPrintable(file));
                    QCoreApplication::exit(1);
                    return;
                }
                std::printf("screenshot: %s (%dx%d)\n", qPrintable(file), image.width(), image.height());
            }
            if (parser.isSet(stressOption)) {
                auto *stress = window->findChild<stage::Supervisor *>(QStringLiteral("stress"));
                std::printf("stress: %s groups, %lld restarts in %d s (%.0f/s), %.1f frames/s, worst 10 ms timer "
                            "lateness %lld ms\n",
                            qPrintable(parser.value(stressOption)), stress ? (long long)stress->restarts() : -1LL,
                            seconds, stress ? double(stress->restarts()) / seconds : 0.0, double(frames) / seconds,
                            (long long)worstLateness);
            }
            QCoreApplication::quit();
        });
    }
    return app.exec();
}
