#pragma once
// The window's view of the demo: the tree it watches, what the work achieved, the accounting of
// every message, the restart chart, the event log, and the fault buttons' actions.

#include "eventlog.h"
#include "world.h"

#include <stage/group.h>
#include <stage/supervisor.h>

#include <QtCore/QPointer>
#include <QtCore/QTimer>
#include <QtCore/QVariantList>
#include <QtQml/qqmlregistration.h>

#include <deque>

class QQmlEngine;
class QJSEngine;

/*
    A QML singleton (StageDemo's DemoController) over one DemoWorld, created by main() before the
    QML is loaded (create() hands out that instance). GUI thread only.

    Faults go through flags the worker bodies read (see Faults): they act at the worker's next
    step, on its own thread. The node names are the tree's objectNames; a group's worker is its
    QML "worker" property (the registered name), or its objectName for a group built in C++.
*/
class DemoController : public QObject
{
    Q_OBJECT
    QML_ELEMENT
    QML_SINGLETON
    Q_PROPERTY(QObject *tree READ tree WRITE setTree NOTIFY treeChanged)
    Q_PROPERTY(QStringList nodeNames READ nodeNames NOTIFY treeChanged)
    Q_PROPERTY(stage::MailboxBase *pathsMailbox READ pathsMailbox CONSTANT)
    Q_PROPERTY(stage::MailboxBase *requestsMailbox READ requestsMailbox CONSTANT)
    Q_PROPERTY(stage::MailboxBase *imagesMailbox READ imagesMailbox CONSTANT)
    Q_PROPERTY(EventLog *eventLog READ log CONSTANT)
    Q_PROPERTY(QVariantMap work READ work NOTIFY sampled)
    Q_PROPERTY(QVariantList accounts READ accounts NOTIFY sampled)
    Q_PROPERTY(int lost READ lost NOTIFY sampled)
    Q_PROPERTY(QVariantList chart READ chart NOTIFY sampled)
    Q_PROPERTY(int sampleIntervalMs READ sampleIntervalMs CONSTANT)
    Q_PROPERTY(int chartSamples READ chartSamples CONSTANT)
    Q_PROPERTY(QString folder READ folder CONSTANT)
    Q_PROPERTY(int serverPort READ serverPort CONSTANT)
    Q_PROPERTY(QString status READ status WRITE setStatus NOTIFY statusChanged)
    Q_PROPERTY(QString target READ target WRITE setTarget NOTIFY targetChanged)
    Q_PROPERTY(QVariantMap can READ can NOTIFY canChanged)
    Q_PROPERTY(bool scenarioPlaying READ isScenarioPlaying NOTIFY scenarioPlayingChanged)

public:
    explicit DemoController(DemoWorld *world, QObject *parent = nullptr);
    ~DemoController() override;

    /* The QML singleton: the instance main() created. */
    static DemoController *create(QQmlEngine *, QJSEngine *);
    static DemoController *instance();

    QObject *tree() const;
    void setTree(QObject *tree);
    stage::Supervisor *root() const;
    /* Every node of the tree, depth first in start order (the root first). */
    QList<stage::Node *> nodes() const;
    QStringList nodeNames() const;
    stage::Node *findNode(const QString &name) const;
    /* The registered worker a group runs. */
    static QString workerOf(const stage::Group *group);

    stage::MailboxBase *pathsMailbox() const;
    stage::MailboxBase *requestsMailbox() const;
    stage::MailboxBase *imagesMailbox() const;
    DemoWorld *world() const { return m_world; }
    EventLog *log() const { return m_log; }
    QVariantMap work() const { return m_work; }
    QVariantList accounts() const { return m_accountsVariant; }
    int lost() const { return m_lost; }
    QVariantList chart() const { return m_chart; }
    int sampleIntervalMs() const { return 500; }
    int chartSamples() const { return 120; }
    QString folder() const { return m_world->feed().folder(); }
    int serverPort() const { return m_world->serverPort(); }
    QString status() const { return m_status; }
    void setStatus(const QString &status);

    /* The node the fault buttons act on (default "indexer"), and what they can do to it now. */
    QString target() const { return m_target; }
    void setTarget(const QString &target);
    QVariantMap can() const { return m_can; }

    /* What the fault buttons can do to \a name: {throw, hang, poison, segfault, storm, stop, start: bool}. */
    Q_INVOKABLE QVariantMap capabilities(const QString &name) const;
    Q_INVOKABLE QObject *node(const QString &name) const { return findNode(name); }
    /* The next step of the group's worker throws (while holding a message, if it reads one). */
    Q_INVOKABLE bool injectThrow(const QString &name);
    /* The group's next step hangs: its watchdog catches it, or (no watchdog) the operator
       restarts it after a second and the shutdown timeout reports the stuck worker abandoned. */
    Q_INVOKABLE bool injectHang(const QString &name);
    /* A message its consumer fails on every time: dead-lettered after its redeliveries. */
    Q_INVOKABLE bool injectPoison(const QString &name);
    /* An image the thumbnailer's codec segfaults on (a process group's child): its children
       crash on it until it is dead-lettered ("killed by signal 11"); the app carries on. */
    Q_INVOKABLE bool injectSegfault(const QString &name);
    /* Every run of the node's workers fails as it starts until the supervisor above them (the
       node itself, for a supervisor) exceeds its intensity and gives up. */
    Q_INVOKABLE bool startStorm(const QString &name);
    /* Stops a subtree (Supervisor::terminateChild) / starts it again (restartChild). */
    Q_INVOKABLE bool stopNode(const QString &name);
    Q_INVOKABLE bool startNode(const QString &name);

    /*
        Plays the scripted scenario over \a seconds: every fault button once, at fixed fractions
        of the run (throw fetcher, poison indexer, hang poller, throw indexer, poison fetcher,
        hang indexer, segfault thumbnailer, stop network, start network, storm devices, throw
        hasher), each step aiming
        the fault panel at its node first. Refused while a scenario plays.
    */
    Q_INVOKABLE bool playScenario(int seconds = 20);
    bool isScenarioPlaying() const { return m_scenarioPlaying; }
    /* Performs \a action ("throw", "hang", "poison", "segfault", "storm", "stop", "start") on \a node. */
    Q_INVOKABLE bool act(const QString &action, const QString &node);

    /* One mailbox's accounting. lost = sent - acknowledged - deadLettered - queued - held. */
    struct Account
    {
        QString name;
        qint64 sent = 0, acknowledged = 0, duplicates = 0, redelivered = 0, deadLettered = 0, queued = 0, held = 0;
        qint64 lost() const { return sent - acknowledged - deadLettered - queued - held; }
    };
    QList<Account> accountsNow() const;

    struct Storm
    {
        QString node;   // where it was injected
        QString target; // the supervisor that must give up
        bool escalated = false;
        bool recovered = false;
        bool ended = false;
    };
    const QList<Storm> &storms() const { return m_storms; }
    struct FaultCounts
    {
        int throws = 0, hangs = 0, poisons = 0, segfaults = 0, storms = 0, stops = 0, starts = 0;
    };
    FaultCounts faultCounts() const { return m_faults; }
    /* Restarts in the whole tree (groups' worker restarts + supervisors' restart decisions). */
    qint64 totalRestarts() const;

    /* Samples the counters now (the timer does it every sampleIntervalMs). */
    void sample();

Q_SIGNALS:
    void treeChanged();
    void sampled();
    void statusChanged();
    void targetChanged();
    void canChanged();
    void scenarioPlayingChanged();
    /* A step of the scenario was played; \a ok is false if the action was refused. */
    void scenarioStepped(const QString &text, bool ok);

private:
    void watch(stage::Node *node);
    void watchMailbox(stage::MailboxBase *mailbox);
    void endStorm(int index, bool escalated);
    void onHangBegan(const QString &worker);
    stage::Group *groupRunning(const QString &worker) const;
    QStringList workersUnder(stage::Node *node) const;
    static qint64 restartsOf(const stage::Node *node);
    qint64 subtreeRestarts(const stage::Node *node) const;

    DemoWorld *m_world;
    EventLog *m_log;
    QPointer<stage::Supervisor> m_root;
    QTimer m_sampler;
    QString m_status;
    QString m_target = QStringLiteral("indexer");
    QVariantMap m_can;
    bool m_scenarioPlaying = false;
    void updateCan();

    QVariantMap m_work;
    QVariantList m_accountsVariant;
    int m_lost = 0;
    std::deque<QList<Account>> m_recentAccounts; // the lost counter is the minimum over these
    QVariantList m_chart;
    QHash<QString, std::deque<int>> m_series;  // per top-level subtree: restarts per sample
    QHash<QString, qint64> m_lastRestarts;
    QHash<const stage::Node *, qint64> m_restartedByRoot;
    QHash<const stage::Node *, int> m_lastState;
    QHash<QString, qint64> m_lastDeadLettered, m_lastRedelivered;

    QList<Storm> m_storms;
    FaultCounts m_faults;

    static DemoController *s_instance;
};
