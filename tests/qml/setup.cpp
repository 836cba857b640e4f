// The C++ side of the QML tests: test workers registered by name, and a Probe singleton through
// which a test commands them and reads what they did.
#include <stage/mailbox.h>
#include <stage/qml.h>
#include <stage/registry.h>
#include <stage/sleep.h>
#include <stage/worker.h>

#include <QtCore/QMutex>
#include <QtCore/QObject>
#include <QtQml/QQmlEngine>
#include <QtQuickTest/quicktest.h>
#include <qcorotimer.h>

#include <map>
#include <stdexcept>

using namespace std::chrono_literals;

namespace {

enum Command { Fail = 1, Return = 2 };

/* What the workers did, and their command mailboxes (one per name). Thread: any. */
class Probe : public QObject
{
    Q_OBJECT

public:
    Q_INVOKABLE QStringList events() const
    {
        QMutexLocker lock(&m_mutex);
        return m_events;
    }
    Q_INVOKABLE int eventCount() const
    {
        QMutexLocker lock(&m_mutex);
        return int(m_events.size());
    }
    Q_INVOKABLE void clear()
    {
        QMutexLocker lock(&m_mutex);
        m_events.clear();
    }
    /* The worker named \a name throws (once: the command is consumed). */
    Q_INVOKABLE void fail(const QString &name) { box(name).trySend(Fail); }
    /* The worker named \a name returns normally. */
    Q_INVOKABLE void finish(const QString &name) { box(name).trySend(Return); }
    /* Sends \a value to the "inbox" mailbox (13 is poison: its consumer throws). */
    Q_INVOKABLE void post(int value) { inbox.trySend(value); }

    void log(const QString &event)
    {
        QMutexLocker lock(&m_mutex);
        m_events.append(event);
    }
    stage::Mailbox<int> box(const QString &name)
    {
        QMutexLocker lock(&m_mutex);
        return m_boxes[name];
    }

    stage::Mailbox<int> inbox;

private:
    mutable QMutex m_mutex;
    QStringList m_events;
    std::map<QString, stage::Mailbox<int>> m_boxes;
};

Probe *probe()
{
    static Probe *instance = new Probe;
    return instance;
}

/* "probe": logs "start <name>" and "stop <name>", obeys the commands of its mailbox. */
QCoro::Task<> probeWorker(stage::Worker &, QVariantMap arguments)
{
    const QString name = arguments.value(QStringLiteral("name")).toString();
    Probe *p = probe();
    stage::Mailbox<int> commands = p->box(name);
    p->log(QStringLiteral("start ") + name);
    struct Stop
    {
        Probe *p;
        QString name;
        ~Stop() { p->log(QStringLiteral("stop ") + name); }
    } stop{p, name};
    for (;;) {
        auto command = co_await commands.receive();
        const int c = *command;
        command.ack();
        if (c == Fail)
            throw std::runtime_error(qPrintable(name + QStringLiteral(" was told to fail")));
        if (c == Return)
            co_return;
    }
}

/* "consumer": reads the inbox; 13 is poison. */
QCoro::Task<> consumerWorker(stage::Worker &)
{
    for (;;) {
        auto message = co_await probe()->inbox.receive();
        if (*message == 13)
            throw std::runtime_error("poison message 13");
        probe()->log(QStringLiteral("consumed %1").arg(*message));
    }
}

} // namespace

class Setup : public QObject
{
    Q_OBJECT
    stage::Mailbox<QString> outbox;

public Q_SLOTS:
    void applicationAvailable()
    {
        stage::registerWorker(QStringLiteral("probe"), [](stage::Worker &w, const QVariantMap &args) {
            return probeWorker(w, args);
        });
        stage::registerWorker(QStringLiteral("consumer"), [](stage::Worker &w) { return consumerWorker(w); });
        // "stubborn": waits in a QTimer (not a Stage awaitable): a stop cannot reach it, so its
        // group abandons it after shutdownTimeout.
        stage::registerWorker(QStringLiteral("stubborn"), []() -> QCoro::Task<> {
            probe()->log(QStringLiteral("start stubborn"));
            co_await QCoro::sleepFor(800ms); // then ends, after its group is gone (logged, not lost)
            probe()->log(QStringLiteral("stubborn ended"));
        });
        stage::registerWorker(QStringLiteral("idle"), []() -> QCoro::Task<> {
            for (;;)
                co_await stage::sleep(1h);
        });
        // The README's QML section, as written (tst_readme.qml).
        for (const char *name : {"indexer", "poller", "uploader"}) {
            stage::registerWorker(QString::fromLatin1(name), [name](stage::Worker &) -> QCoro::Task<> {
                probe()->log(QStringLiteral("readme ") + QString::fromLatin1(name));
                for (;;)
                    co_await stage::sleep(1h);
            });
        }
        stage::registerMailbox(QStringLiteral("outbox"), outbox);
        probe()->inbox.setMaxRedeliveries(1);
        stage::registerMailbox(QStringLiteral("inbox"), probe()->inbox);
    }
    void qmlEngineAvailable(QQmlEngine *engine)
    {
        stage::initQml(engine);
        static const int type = qmlRegisterSingletonInstance("StageTest", 1, 0, "Probe", probe());
        Q_UNUSED(type);
    }
};

QUICK_TEST_MAIN_WITH_SETUP(tst_qml, Setup)

#include "setup.moc"

// The actor tests (tst_actor.qml): an "adder" actor with Q_GADGET messages, registered when the
// application starts (actorsetup.h).
#include "actorsetup.h"
#include "moc_actorsetup.cpp"

static void registerActorTests()
{
    actortest::registerTestActors();
}
Q_COREAPP_STARTUP_FUNCTION(registerActorTests)
