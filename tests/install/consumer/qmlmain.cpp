// Uses the QML module through the installed package only: `import Stage` in two engines, one set
// up by stage::initQml() (the types come from the linked Stage::Qml), one finding the module on
// disk in the prefix (Stage_QML_IMPORT_DIR: the installed plugin and qmldir). A declared tree runs
// a registered worker in each.
#include <stage/qml.h>
#include <stage/stage.h>

#include <QtCore/QElapsedTimer>
#include <QtGui/QGuiApplication>
#include <QtQml/QQmlComponent>
#include <QtQml/QQmlEngine>

#include <atomic>
#include <cstdio>
#include <memory>

static std::atomic<int> runs{0};

static bool runTree(QQmlEngine &engine, const char *label)
{
    QQmlComponent component(&engine);
    component.setData(R"(
        import Stage
        Supervisor {
            objectName: "root"
            running: true
            Group { objectName: "g"; worker: "counter"; size: 2 }
        }
    )", QUrl(QStringLiteral("inline.qml")));
    std::unique_ptr<QObject> root(component.create());
    if (!root) {
        std::fprintf(stderr, "qml consumer (%s): %s\n", label, qPrintable(component.errorString()));
        return false;
    }
    const int before = runs.load();
    QElapsedTimer timer;
    timer.start();
    while (runs.load() < before + 2 && timer.elapsed() < 10000)
        QCoreApplication::processEvents(QEventLoop::AllEvents, 10);
    auto *node = qobject_cast<stage::Node *>(root.get());
    if (!node || runs.load() < before + 2 || node->state() != stage::Node::State::Running) {
        std::fprintf(stderr, "qml consumer (%s): the declared tree did not run (runs %d)\n", label, runs.load() - before);
        return false;
    }
    std::printf("qml consumer (%s): ok, root %s\n", label, qPrintable(node->objectName()));
    return true;
}

int main(int argc, char **argv)
{
    QGuiApplication app(argc, argv);
    stage::registerWorker(QStringLiteral("counter"), []() -> QCoro::Task<> {
        ++runs;
        for (;;)
            co_await stage::sleep(std::chrono::hours(1));
    });
    {
        QQmlEngine engine;
        stage::initQml(&engine);
        if (!runTree(engine, "initQml"))
            return 1;
    }
    {
        QQmlEngine engine;
        engine.addImportPath(QStringLiteral(STAGE_QML_IMPORT_DIR));
        if (!runTree(engine, "import path"))
            return 1;
    }
    return 0;
}
