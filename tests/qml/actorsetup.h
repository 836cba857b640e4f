#pragma once

// The actor side of the QML tests (tst_actor.qml): an "adder" actor on a thread of its own whose
// messages are Q_GADGETs, a "plain" actor whose message is not, both registered with
// stage::registerActor() when the application starts; and the StageTest.ActorProbe singleton that
// reads what the handlers did. Included by setup.cpp (its AUTOMOC output: moc_actorsetup.cpp).
#include <stage/actor.h>
#include <stage/qml.h>
#include <stage/sleep.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QMutex>
#include <QtCore/QObject>
#include <QtCore/QThread>
#include <QtQml/QQmlComponent>
#include <QtQml/QQmlContext>
#include <QtQml/QQmlEngine>
#include <QtQml/qqml.h>

#include <stdexcept>

namespace actortest {

struct Add
{
    Q_GADGET
    Q_PROPERTY(int a MEMBER a)
    Q_PROPERTY(int b MEMBER b)
public:
    int a = 0;
    int b = 0;
};

struct Divide
{
    Q_GADGET
    Q_PROPERTY(int a MEMBER a)
    Q_PROPERTY(int b MEMBER b)
public:
    int a = 0;
    int b = 0;
};

struct QuotRem
{
    Q_GADGET
    Q_PROPERTY(int quotient MEMBER quotient)
    Q_PROPERTY(int remainder MEMBER remainder)
public:
    int quotient = 0;
    int remainder = 0;
};

/* Sleeps ms on the actor, then answers ms. */
struct Slow
{
    Q_GADGET
    Q_PROPERTY(int ms MEMBER ms)
public:
    int ms = 0;
};

struct Total
{
    Q_GADGET
};

struct Reset
{
    Q_GADGET
};

struct Label
{
    Q_GADGET
    Q_PROPERTY(QString text MEMBER text)
    Q_PROPERTY(double scale MEMBER scale)
public:
    QString text;
    double scale = 1;
};

struct Hidden // not a gadget: C++ only
{
    int x = 0;
};

using AdderProtocol =
    stage::Protocol<int(Add), QuotRem(Divide), int(Slow), int(Total), void(Reset), QString(Label), int(Hidden)>;

/* What the actors' handlers did, in order. Thread: any. */
class ActorProbe : public QObject
{
    Q_OBJECT

public:
    Q_INVOKABLE QStringList events() const
    {
        QMutexLocker lock(&m_mutex);
        return m_events;
    }
    Q_INVOKABLE void clear()
    {
        QMutexLocker lock(&m_mutex);
        m_events.clear();
    }
    Q_INVOKABLE bool onGuiThread() const { return QThread::currentThread() == QCoreApplication::instance()->thread(); }

    /*
        Makes an engine of its own whose QML asks "adder" for Slow{ms} (and would log "settled ..."
        here on the answer), then destroys that engine at once, before the answer. False if the
        QML did not load.
    */
    Q_INVOKABLE bool askFromDoomedEngine(int ms)
    {
        auto *engine = new QQmlEngine;
        stage::initQml(engine);
        engine->rootContext()->setContextProperty(QStringLiteral("doomedProbe"), this);
        QQmlComponent component(engine);
        component.setData(QStringLiteral("import QtQml\nimport Stage\nQtObject {\n"
                                          "    Component.onCompleted: Stage.ask(\"adder\", \"Slow\", {ms: %1}).then(\n"
                                          "        v => doomedProbe.log(\"settled \" + v), e => doomedProbe.log(\"settled \" + e))\n"
                                          "}\n")
                              .arg(ms)
                              .toUtf8(),
                          QUrl(QStringLiteral("qrc:/doomed.qml")));
        QObject *object = component.create();
        const bool created = object != nullptr;
        if (!created)
            log(QStringLiteral("doomed engine: ") + component.errorString());
        delete object;
        delete engine;
        return created;
    }

    Q_INVOKABLE void log(const QString &event)
    {
        QMutexLocker lock(&m_mutex);
        m_events.append(event);
    }

private:
    mutable QMutex m_mutex;
    QStringList m_events;
};

inline ActorProbe *actorProbe()
{
    static ActorProbe *instance = new ActorProbe; // reachable until exit: not a leak
    return instance;
}

inline QString where()
{
    return actorProbe()->onGuiThread() ? QStringLiteral("on the GUI thread") : QStringLiteral("on the actor's thread");
}

inline stage::ActorBase *&adderActor()
{
    static stage::ActorBase *actor = nullptr;
    return actor;
}

inline stage::ActorBase *&plainActor()
{
    static stage::ActorBase *actor = nullptr;
    return actor;
}

inline QCoro::Task<int> slowHandler(int &, const Slow &slow)
{
    const int ms = slow.ms;
    actorProbe()->log(QStringLiteral("Slow %1").arg(ms));
    co_await stage::sleep(std::chrono::milliseconds(ms));
    actorProbe()->log(QStringLiteral("Slow %1 done").arg(ms));
    co_return ms;
}

/* At application start (Q_COREAPP_STARTUP_FUNCTION in setup.cpp); destroyed at its end. */
inline void registerTestActors()
{
    auto *adder = new stage::Actor<AdderProtocol>;
    adder->setObjectName(QStringLiteral("adder"));
    adder->setBackoff(stage::Backoff::none());
    adder->setMaxRedeliveries(1); // a poison message: 2 failures, then DeadLettered
    adder->setThreadCount(1);     // handlers on a thread of the actor's own
    adder->spawn([] { return 0; },
                 [](int &total, const Add &m) {
                     actorProbe()->log(QStringLiteral("Add %1 %2 ").arg(m.a).arg(m.b) + where());
                     total += m.a + m.b;
                     return m.a + m.b;
                 },
                 [](int &, const Divide &m) {
                     actorProbe()->log(QStringLiteral("Divide %1 %2").arg(m.a).arg(m.b));
                     if (m.b == 0)
                         throw std::domain_error("division by zero");
                     return QuotRem{m.a / m.b, m.a % m.b};
                 },
                 slowHandler, [](int &total, const Total &) {
                     actorProbe()->log(QStringLiteral("Total"));
                     return total;
                 },
                 [](int &total, const Reset &) {
                     actorProbe()->log(QStringLiteral("Reset"));
                     total = 0;
                 },
                 [](int &, const Label &m) {
                     actorProbe()->log(QStringLiteral("Label"));
                     return m.text + QStringLiteral(" x") + QString::number(m.scale);
                 },
                 [](int &, const Hidden &m) { return m.x; });
    stage::registerActor(QStringLiteral("adder"), adder->ref());
    adderActor() = adder;

    auto *plain = new stage::Actor<stage::Protocol<int(Hidden)>>;
    plain->setObjectName(QStringLiteral("plain"));
    plain->spawn([] { return 0; }, [](int &, const Hidden &m) { return m.x; });
    stage::registerActor(QStringLiteral("plain"), plain->ref());
    plainActor() = plain;

    qmlRegisterSingletonInstance("StageTest", 1, 0, "ActorProbe", actorProbe());
    qAddPostRoutine([] {
        delete adderActor();
        delete plainActor();
    });
}

} // namespace actortest
