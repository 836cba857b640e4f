// The adder of main.cpp asked from QML. Its messages are Q_GADGETs (their Q_PROPERTYs are the
// fields), its reference is registered as "adder", and a Button in Main.qml does
// `Stage.ask("adder", "Add", {a: 1, b: 2})`: a Promise whose then() runs on the GUI thread with the
// sum, or with an Error named after the Stage exception (TimeoutError, DeadLettered, ...).
//   third-degree-qml            a window: click the button
//   third-degree-qml --click    clicks it once, headless; exits 0 when the answer is shown
#include <stage/actor.h>
#include <stage/qml.h>

#include <QtCore/QTimer>
#include <QtGui/QGuiApplication>
#include <QtQml/QQmlApplicationEngine>

#include <cstdio>

using namespace std::chrono_literals;

struct Add
{
    Q_GADGET
    Q_PROPERTY(int a MEMBER a)
    Q_PROPERTY(int b MEMBER b)
public:
    int a = 0;
    int b = 0;
};
struct Total
{
    Q_GADGET
};
using AdderProtocol = stage::Protocol<int(Add), int(Total)>;

int main(int argc, char **argv)
{
    QGuiApplication app(argc, argv);
    const bool click = app.arguments().contains(QStringLiteral("--click"));

    stage::Actor<AdderProtocol> adder;
    adder.setObjectName(QStringLiteral("adder"));
    adder.setThreadCount(1); // handlers on the actor's own thread; answers come back to the GUI thread
    adder.spawn([] { return 0; },
                [](int &total, const Add &add) { total += add.a + add.b; return add.a + add.b; },
                [](int &total, const Total &) { return total; });
    stage::registerActor(QStringLiteral("adder"), adder.ref()); // C++ and QML: one address

    QQmlApplicationEngine engine;
    stage::initQml(&engine);
    engine.setInitialProperties({{QStringLiteral("autoClick"), click}});
    engine.load(QUrl(QStringLiteral("qrc:/qt/qml/ThirdDegree/Main.qml")));
    if (engine.rootObjects().isEmpty())
        return 1;
    if (click) { // the failsafe: Main.qml exits with the answer long before
        QTimer::singleShot(10s, &app, [] {
            std::fprintf(stderr, "third-degree-qml: no answer within 10 s\n");
            QCoreApplication::exit(1);
        });
    }
    return app.exec();
}

#include "qml.moc"
