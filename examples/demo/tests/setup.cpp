// The C++ side of Stage Demo's Qt Quick Tests: the demo's world and DemoController, as main()
// creates them, before any QML is loaded; `import Stage` and `import StageDemo` linked in.
#include "democontroller.h"
#include "isolated.h"
#include "world.h"

#include <stage/qml.h>

#include <QtQml/QQmlEngine>
#include <QtQml/qqmlextensionplugin.h>
#include <QtQuickTest/quicktest.h>

#include <memory>

Q_IMPORT_QML_PLUGIN(StageDemoPlugin)

class Setup : public QObject
{
    Q_OBJECT

public Q_SLOTS:
    void applicationAvailable()
    {
        DemoWorld::Options options;
        options.seed = 11;
        options.hangMs = 2500; // longer than the operator's 1 s plus the indexer's shutdownTimeout
        options.deviceHangRate = 0; // only the injected hangs: the tests count failures
        m_world = std::make_unique<DemoWorld>(options);
        m_controller = std::make_unique<DemoController>(m_world.get());
        if (!m_world->start())
            qFatal("the demo's world did not start");
    }
    void qmlEngineAvailable(QQmlEngine *engine) { stage::initQml(engine); }
    void cleanupTestCase()
    {
        // The tests shut the tree down and destroyed the window; a hung worker may remain.
        m_world->waitForHangs(10000);
        m_controller.reset();
        m_world.reset();
    }

private:
    std::unique_ptr<DemoWorld> m_world;
    std::unique_ptr<DemoController> m_controller;
};

// QUICK_TEST_MAIN_WITH_SETUP(stage_demo, Setup), with the thumbnailer's children first: they
// are this binary started again (stage::runChildProcess runs them and returns their code).
int main(int argc, char **argv)
{
    isolated::registerEntries();
    if (const auto code = stage::runChildProcess(argc, argv))
        return *code;
    QTEST_SET_MAIN_SOURCE_PATH
    Setup setup;
    return quick_test_main_with_setup(argc, argv, "stage_demo", QUICK_TEST_SOURCE_DIR, &setup);
}

#include "setup.moc"
