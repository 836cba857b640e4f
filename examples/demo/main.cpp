// Stage Demo: a Qt Quick app whose background work (an indexer on worker threads, a fetcher over
// real TCP to a flaky local server, a device poller with a watchdog, hashing on the thread pool)
// runs in one supervision tree declared in Main.qml, and heals itself in front of you. The
// thumbnailer runs a fragile image codec in child processes (a stage::ProcessGroup): when it
// segfaults, a child dies, never the app. Those children are this binary started again.
//
// The worker bodies are C++ coroutines (workers.cpp), registered by name before the QML is
// loaded; Main.qml declares the tree that runs them and the window that watches it.
//
//   stage-demo                        the window, until it is closed
//   stage-demo --headless [--seconds N] [--screenshot FILE] [--seed S]
//                                     a scripted scenario of faults, a screenshot and a summary;
//                                     exit status 1 if a message was lost or the tree did not recover
//   stage-demo --check-image FILE     is FILE a screenshot with something on it (status 1 if blank)
#include "democontroller.h"
#include "headless.h"
#include "isolated.h"
#include "world.h"

#include <stage/qml.h>

#include <QtCore/QCommandLineParser>
#include <QtCore/QLoggingCategory>
#include <QtGui/QGuiApplication>
#include <QtQml/QQmlApplicationEngine>
#include <QtQml/qqmlextensionplugin.h>
#include <QtQuick/QQuickWindow>

#include <cstdio>
#include <memory>

Q_IMPORT_QML_PLUGIN(StageDemoPlugin)

int main(int argc, char **argv)
{
    // First: in a child process of the thumbnailer (a stage::ProcessGroup), run its entry point
    // and exit; nothing below (no window, no QML) runs there.
    isolated::registerEntries();
    if (const auto code = stage::runChildProcess(argc, argv))
        return *code;

    // No display: the offscreen platform and Qt Quick's software renderer (scripts/stage demo
    // prefers Xvfb when it is installed). Decided before the application exists.
    const bool noDisplay = qEnvironmentVariableIsEmpty("DISPLAY") && qEnvironmentVariableIsEmpty("WAYLAND_DISPLAY");
    if (noDisplay && qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM"))
        qputenv("QT_QPA_PLATFORM", "offscreen");
    if (qgetenv("QT_QPA_PLATFORM") == "offscreen")
        QQuickWindow::setGraphicsApi(QSGRendererInterface::Software);

    QGuiApplication app(argc, argv);
    app.setApplicationName(QStringLiteral("Stage Demo"));
    QCommandLineParser parser;
    parser.setApplicationDescription(QStringLiteral("Stage Demo: background work that heals itself"));
    parser.addHelpOption();
    const QCommandLineOption headlessOption(QStringLiteral("headless"),
                                            QStringLiteral("Play the scripted scenario, print a summary and exit."));
    const QCommandLineOption secondsOption(QStringLiteral("seconds"), QStringLiteral("Length of the scenario (default 20)."),
                                           QStringLiteral("N"), QStringLiteral("20"));
    const QCommandLineOption screenshotOption(QStringLiteral("screenshot"),
                                              QStringLiteral("Save the window to FILE at the end (implies --headless)."),
                                              QStringLiteral("FILE"));
    const QCommandLineOption seedOption(QStringLiteral("seed"), QStringLiteral("Seed of every random choice (default 1)."),
                                        QStringLiteral("S"), QStringLiteral("1"));
    const QCommandLineOption checkOption(QStringLiteral("check-image"),
                                         QStringLiteral("Check that FILE is not a blank screenshot, and exit."),
                                         QStringLiteral("FILE"));
    parser.addOptions({headlessOption, secondsOption, screenshotOption, seedOption, checkOption});
    parser.process(app);

    if (parser.isSet(checkOption)) {
        const ImageCheck check = checkImage(QImage(parser.value(checkOption)));
        std::printf("%s: %s%s\n", qPrintable(parser.value(checkOption)), qPrintable(check.describe()),
                    check.blank() ? " BLANK" : "");
        return check.blank() ? 1 : 0;
    }

    const bool headless = parser.isSet(headlessOption) || parser.isSet(screenshotOption) || noDisplay;
    HeadlessRun::Options run;
    run.seconds = std::max(6, parser.value(secondsOption).toInt());
    run.seed = parser.value(seedOption).toUInt();
    run.screenshot = parser.value(screenshotOption);
    if (headless) {
        if (run.screenshot.isEmpty())
            run.screenshot = QStringLiteral("build/demo.png");
        // The event log in the window says what happened; the terminal gets the summary.
        QLoggingCategory::setFilterRules(QStringLiteral("stage.*.warning=false\nstage.*.info=false"));
    }

    DemoWorld::Options options;
    options.seed = run.seed;
    DemoWorld world(options);
    DemoController controller(&world);
    if (!world.start())
        return 2;

    int status = 0;
    {
        QQmlApplicationEngine engine;
        stage::initQml(&engine); // import Stage: the types linked in, and qrc:/qt/qml searched
        engine.load(QUrl(QStringLiteral("qrc:/qt/qml/StageDemo/Main.qml")));
        if (engine.rootObjects().isEmpty())
            return 2;
        if (!controller.tree()) {
            qWarning("stage-demo: Main.qml declared no tree (DemoController.tree is not set)");
            return 2;
        }
        auto *window = qobject_cast<QQuickWindow *>(engine.rootObjects().constFirst());
        std::unique_ptr<HeadlessRun> driver;
        if (headless) {
            driver = std::make_unique<HeadlessRun>(&controller, &world, window, run);
            driver->start();
        }
        status = app.exec();
        if (driver)
            status = driver->exitCode();
        // The engine deletes the tree here: each node stops on its way, within its shutdownTimeout.
    }
    // A worker hung in a call a stop cannot interrupt still refers to the world: let it end.
    world.waitForHangs(10000);
    return status;
}
