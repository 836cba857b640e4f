#include "democontroller.h"

#include <stage/mailbox.h>
#include <stage/processgroup.h>

#include <QtCore/QMetaEnum>
#include <QtQml/QJSEngine>
#include <QtQml/QQmlEngine>

#include <algorithm>

DemoController *DemoController::s_instance = nullptr;

namespace {
QString stateName(stage::Node::State state)
{
    return QString::fromLatin1(QMetaEnum::fromType<stage::Node::State>().valueToKey(int(state)));
}
} // namespace

DemoController::DemoController(DemoWorld *world, QObject *parent)
    : QObject(parent), m_world(world), m_log(new EventLog(this))
{
    Q_ASSERT(!s_instance);
    s_instance = this;
    connect(world, &DemoWorld::note, this, [this](const QString &node, const QString &text) {
        m_log->add(node, QStringLiteral("info"), text);
    });
    connect(world, &DemoWorld::hangBegan, this, &DemoController::onHangBegan);
    watchMailbox(world->paths.object());
    watchMailbox(world->requests.object());
    watchMailbox(world->images.object());
    m_sampler.setInterval(sampleIntervalMs());
    connect(&m_sampler, &QTimer::timeout, this, &DemoController::sample);
    m_sampler.start();
    connect(this, &DemoController::treeChanged, this, &DemoController::updateCan);
    connect(this, &DemoController::sampled, this, &DemoController::updateCan);
}

DemoController::~DemoController()
{
    if (s_instance == this)
        s_instance = nullptr;
}

DemoController *DemoController::create(QQmlEngine *, QJSEngine *)
{
    if (s_instance)
        QJSEngine::setObjectOwnership(s_instance, QJSEngine::CppOwnership);
    else
        qWarning("DemoController: no instance: create the DemoWorld and its DemoController before loading the QML");
    return s_instance;
}

DemoController *DemoController::instance()
{
    return s_instance;
}

// ---- the tree ------------------------------------------------------------------------------

QObject *DemoController::tree() const
{
    return m_root.data();
}

void DemoController::setTree(QObject *tree)
{
    auto *root = qobject_cast<stage::Supervisor *>(tree);
    if (tree && !root) {
        qWarning("DemoController::setTree: %s is not a stage::Supervisor; ignored", tree->metaObject()->className());
        return;
    }
    if (root == m_root)
        return;
    m_root = root;
    if (root)
        watch(root);
    emit treeChanged();
}

stage::Supervisor *DemoController::root() const
{
    return m_root.data();
}

QList<stage::Node *> DemoController::nodes() const
{
    QList<stage::Node *> out;
    std::function<void(stage::Node *)> visit = [&](stage::Node *node) {
        out.append(node);
        if (auto *sv = qobject_cast<stage::Supervisor *>(node))
            for (stage::Node *child : sv->childNodes())
                visit(child);
    };
    if (m_root)
        visit(m_root);
    return out;
}

QStringList DemoController::nodeNames() const
{
    QStringList names;
    for (const stage::Node *node : nodes())
        names.append(node->objectName());
    return names;
}

stage::Node *DemoController::findNode(const QString &name) const
{
    for (stage::Node *node : nodes())
        if (node->objectName() == name)
            return node;
    return nullptr;
}

QString DemoController::workerOf(const stage::Group *group)
{
    const QVariant worker = group->property("worker"); // the QML Group's registered name
    return worker.isValid() && !worker.toString().isEmpty() ? worker.toString() : group->objectName();
}

stage::Group *DemoController::groupRunning(const QString &worker) const
{
    for (stage::Node *node : nodes())
        if (auto *group = qobject_cast<stage::Group *>(node); group && workerOf(group) == worker)
            return group;
    return nullptr;
}

QStringList DemoController::workersUnder(stage::Node *node) const
{
    QStringList workers;
    if (auto *group = qobject_cast<stage::Group *>(node)) {
        if (m_world->faults.has(workerOf(group)))
            workers.append(workerOf(group));
    } else if (auto *sv = qobject_cast<stage::Supervisor *>(node)) {
        for (stage::Node *child : sv->childNodes())
            workers += workersUnder(child);
    }
    return workers;
}

void DemoController::watch(stage::Node *node)
{
    const QString name = node->objectName();
    m_lastState.insert(node, int(node->state()));
    connect(node, &stage::Node::stateChanged, this, [this, node, name](stage::Node::State state, const QString &reason) {
        const auto previous = stage::Node::State(m_lastState.value(node, int(stage::Node::State::Idle)));
        m_lastState.insert(node, int(state));
        using S = stage::Node::State;
        if (state == S::Starting || state == S::Stopping)
            return; // on the way: the state it reaches is what matters
        if (state == S::Running && (previous == S::Running || previous == S::Idle))
            return;
        QString text = stateName(state).toLower();
        if (state == S::Running && previous != S::Starting)
            text = QStringLiteral("running again");
        auto *group = qobject_cast<stage::Group *>(node);
        if (state == S::Failed && group && group->supervisor())
            text = QStringLiteral("failed; %1 decides").arg(group->supervisor()->objectName()); // the reason: the worker's line
        else if (!reason.isEmpty() && state != S::Running)
            text += QStringLiteral(": ") + reason;
        m_log->add(name, state == S::Failed ? QStringLiteral("failure") : QStringLiteral("state"), text);
    });
    connect(node, &stage::Node::gaveUp, this, [this, node, name](const QString &reason) {
        // A supervised group with no restart budget of its own hands every failure up at once:
        // its "failed" line says so. A supervisor giving up is the escalation worth a line.
        auto *group = qobject_cast<stage::Group *>(node);
        if (group && group->maxRestarts() <= 0 && group->supervisor())
            return;
        m_log->add(name, QStringLiteral("escalation"), QStringLiteral("gave up: ") + reason);
    });
    connect(node, &QObject::destroyed, this, [this, node] { m_lastState.remove(node); });
    if (auto *group = qobject_cast<stage::Group *>(node)) {
        connect(group, &stage::Group::workerFinished, this, [this, name, group](const stage::WorkerExit &exit) {
            if (exit.kind == stage::WorkerExit::Kind::Failed)
                m_log->add(name, QStringLiteral("failure"), QStringLiteral("worker %1 failed: %2").arg(exit.id).arg(exit.reason));
            else if (exit.kind == stage::WorkerExit::Kind::Abandoned)
                m_log->add(name, QStringLiteral("failure"),
                           QStringLiteral("worker %1 abandoned: still stuck %2 ms after its stop (shutdownTimeout)")
                               .arg(exit.id)
                               .arg(group->shutdownTimeout()));
        });
    } else if (auto *sv = qobject_cast<stage::Supervisor *>(node)) {
        connect(sv, &stage::Supervisor::childRestarted, this, [this, sv, name](stage::Node *child) {
            if (sv == m_root)
                ++m_restartedByRoot[child];
            m_log->add(name, QStringLiteral("recovery"), QStringLiteral("restarted %1").arg(child->objectName()));
        });
        connect(sv, &stage::Supervisor::childAdded, this, [this](stage::Node *child) {
            watch(child);
            emit treeChanged();
        });
        connect(sv, &stage::Supervisor::childRemoved, this, &DemoController::treeChanged);
        for (stage::Node *child : sv->childNodes())
            watch(child);
    }
}

void DemoController::watchMailbox(stage::MailboxBase *mailbox)
{
    const QString name = mailbox->objectName();
    connect(mailbox, &stage::MailboxBase::statisticsChanged, this, [this, mailbox, name] {
        const qint64 dead = mailbox->deadLettered();
        if (dead > m_lastDeadLettered.value(name)) {
            const QStringList reasons = mailbox->deadLetterReasons();
            m_log->add(name, QStringLiteral("dead-letter"),
                       QStringLiteral("dead-lettered after %1 failed deliveries: %2")
                           .arg(mailbox->maxRedeliveries() + 1)
                           .arg(reasons.isEmpty() ? QString() : reasons.last()));
            m_lastDeadLettered.insert(name, dead);
        }
        const qint64 redelivered = mailbox->redelivered();
        if (redelivered > m_lastRedelivered.value(name)) {
            m_log->add(name, QStringLiteral("info"),
                       QStringLiteral("%1 message(s) back in the mailbox for redelivery")
                           .arg(redelivered - m_lastRedelivered.value(name)));
            m_lastRedelivered.insert(name, redelivered);
        }
    });
}

stage::MailboxBase *DemoController::pathsMailbox() const
{
    return m_world->paths.object();
}

stage::MailboxBase *DemoController::requestsMailbox() const
{
    return m_world->requests.object();
}

stage::MailboxBase *DemoController::imagesMailbox() const
{
    return m_world->images.object();
}

void DemoController::setStatus(const QString &status)
{
    if (m_status == status)
        return;
    m_status = status;
    emit statusChanged();
}

void DemoController::setTarget(const QString &target)
{
    if (m_target == target)
        return;
    m_target = target;
    emit targetChanged();
    updateCan();
}

void DemoController::updateCan()
{
    const QVariantMap can = capabilities(m_target);
    if (can == m_can)
        return;
    m_can = can;
    emit canChanged();
}

// ---- faults --------------------------------------------------------------------------------

QVariantMap DemoController::capabilities(const QString &name) const
{
    stage::Node *node = findNode(name);
    auto *group = qobject_cast<stage::Group *>(node);
    const QString worker = group ? workerOf(group) : QString();
    const bool known = group && m_world->faults.has(worker);
    const bool supervised = node && node->supervisor();
    return {{QStringLiteral("throw"), known},
            {QStringLiteral("hang"), known},
            {QStringLiteral("poison"), worker == QLatin1String("indexer") || worker == QLatin1String("fetcher")},
            {QStringLiteral("segfault"), qobject_cast<stage::ProcessGroup *>(node) != nullptr},
            {QStringLiteral("storm"), node && !workersUnder(node).isEmpty() && (supervised || !group)},
            {QStringLiteral("stop"), supervised && node->isRunning()},
            {QStringLiteral("start"), supervised && !node->isRunning()},
            {QStringLiteral("watchdog"), group && group->heartbeatTimeout() > 0}};
}

bool DemoController::act(const QString &action, const QString &node)
{
    if (action == QLatin1String("throw"))
        return injectThrow(node);
    if (action == QLatin1String("hang"))
        return injectHang(node);
    if (action == QLatin1String("poison"))
        return injectPoison(node);
    if (action == QLatin1String("segfault"))
        return injectSegfault(node);
    if (action == QLatin1String("storm"))
        return startStorm(node);
    if (action == QLatin1String("stop"))
        return stopNode(node);
    if (action == QLatin1String("start"))
        return startNode(node);
    qWarning("DemoController::act: unknown action \"%s\"", qPrintable(action));
    return false;
}

bool DemoController::playScenario(int seconds)
{
    struct Step
    {
        double at; // a fraction of the run
        const char *action;
        const char *node;
    };
    static const Step steps[] = {
        {0.06, "throw", "fetcher"}, {0.12, "poison", "indexer"}, {0.18, "hang", "poller"},
        {0.24, "throw", "indexer"}, {0.30, "poison", "fetcher"}, {0.36, "hang", "indexer"},
        {0.40, "segfault", "thumbnailer"}, {0.44, "stop", "network"}, {0.54, "start", "network"},
        {0.60, "storm", "devices"}, {0.70, "throw", "hasher"},
    };
    if (m_scenarioPlaying || seconds <= 0)
        return false;
    m_scenarioPlaying = true;
    emit scenarioPlayingChanged();
    const int count = int(std::size(steps));
    for (int i = 0; i < count; ++i) {
        const Step step = steps[i];
        QTimer::singleShot(int(step.at * seconds * 1000), this, [this, step, i, count] {
            const QString action = QString::fromLatin1(step.action), node = QString::fromLatin1(step.node);
            setTarget(node); // the window shows which node the step aims at
            const bool ok = act(action, node);
            const QString text = QStringLiteral("scenario %1/%2: %3 %4").arg(i + 1).arg(count).arg(action, node);
            setStatus(text);
            emit scenarioStepped(text, ok);
        });
    }
    QTimer::singleShot(seconds * 1000, this, [this] {
        m_scenarioPlaying = false;
        emit scenarioPlayingChanged();
    });
    return true;
}

bool DemoController::injectThrow(const QString &name)
{
    auto *group = qobject_cast<stage::Group *>(findNode(name));
    if (!group || !m_world->faults.has(workerOf(group)))
        return false;
    m_world->faults.injectThrow(workerOf(group));
    ++m_faults.throws;
    m_log->add(name, QStringLiteral("fault"), QStringLiteral("throw: its next step throws"));
    return true;
}

bool DemoController::injectHang(const QString &name)
{
    auto *group = qobject_cast<stage::Group *>(findNode(name));
    if (!group || !m_world->faults.has(workerOf(group)))
        return false;
    m_world->faults.injectHang(workerOf(group));
    ++m_faults.hangs;
    m_log->add(name, QStringLiteral("fault"),
               group->heartbeatTimeout() > 0
                   ? QStringLiteral("hang: its next step hangs; the watchdog (%1 ms) will catch it").arg(group->heartbeatTimeout())
                   : QStringLiteral("hang: its next step hangs in a call a stop cannot interrupt"));
    return true;
}

void DemoController::onHangBegan(const QString &worker)
{
    stage::Group *group = groupRunning(worker);
    if (!group || group->heartbeatTimeout() > 0 || !group->supervisor())
        return;
    const QString name = group->objectName();
    m_log->add(name, QStringLiteral("info"),
               QStringLiteral("hung, and no watchdog: the operator restarts it in 1 s; the stuck worker gets "
                              "%1 ms (shutdownTimeout) to stop")
                   .arg(group->shutdownTimeout()));
    QPointer<stage::Group> target(group);
    QTimer::singleShot(1000, this, [this, target, name] {
        if (target && target->supervisor() && target->supervisor()->restartChild(target))
            m_log->add(name, QStringLiteral("info"), QStringLiteral("operator: restart"));
    });
}

bool DemoController::injectPoison(const QString &name)
{
    auto *group = qobject_cast<stage::Group *>(findNode(name));
    if (!group)
        return false;
    const QString worker = workerOf(group);
    if (worker == QLatin1String("indexer")) {
        const QString file = m_world->writeCorruptFile();
        m_log->add(name, QStringLiteral("fault"), QStringLiteral("poison: wrote %1, a file it fails on every time").arg(file));
    } else if (worker == QLatin1String("fetcher")) {
        m_world->sendPoisonRequest();
        m_log->add(name, QStringLiteral("fault"), QStringLiteral("poison: a request the server always answers with garbage"));
    } else {
        return false;
    }
    ++m_faults.poisons;
    return true;
}

bool DemoController::injectSegfault(const QString &name)
{
    auto *group = qobject_cast<stage::ProcessGroup *>(findNode(name));
    if (!group)
        return false;
    m_world->sendPoisonImage();
    ++m_faults.segfaults;
    m_log->add(name, QStringLiteral("fault"),
               QStringLiteral("segfault: an image its codec crashes on, in a child process; the app carries on"));
    return true;
}

bool DemoController::startStorm(const QString &name)
{
    stage::Node *node = findNode(name);
    if (!node)
        return false;
    auto *target = qobject_cast<stage::Supervisor *>(node);
    if (!target)
        target = node->supervisor();
    const QStringList workers = workersUnder(node);
    if (!target || workers.isEmpty())
        return false;
    for (const QString &worker : workers)
        m_world->faults.setStorm(worker, true);
    ++m_faults.storms;
    m_storms.append(Storm{name, target->objectName()});
    const int index = int(m_storms.size()) - 1;
    m_log->add(name, QStringLiteral("fault"),
               QStringLiteral("restart storm: every run of %1 fails as it starts, until %2 exceeds its intensity "
                              "(%3 restarts in %4 ms)")
                   .arg(workers.join(QStringLiteral(", ")), target->objectName())
                   .arg(target->maxRestarts())
                   .arg(target->restartPeriod()));
    QPointer<stage::Supervisor> guardTarget(target);
    auto connection = std::make_shared<QMetaObject::Connection>();
    *connection = connect(target, &stage::Node::gaveUp, this, [this, index, connection, guardTarget] {
        disconnect(*connection);
        endStorm(index, true);
        if (guardTarget && !guardTarget->supervisor()) {
            // A root that gave up is the application's to restart.
            QTimer::singleShot(500, this, [this, guardTarget] {
                if (guardTarget && guardTarget->start())
                    m_log->add(guardTarget->objectName(), QStringLiteral("recovery"),
                               QStringLiteral("the application starts the root again"));
            });
        }
    });
    // A storm that cannot escalate (the target's intensity is unlimited) ends after 20 s.
    QTimer::singleShot(20000, this, [this, index, connection] {
        if (!m_storms[index].ended) {
            disconnect(*connection);
            endStorm(index, false);
        }
    });
    return true;
}

void DemoController::endStorm(int index, bool escalated)
{
    Storm &storm = m_storms[index];
    if (storm.ended)
        return;
    storm.ended = true;
    storm.escalated = escalated;
    bool stillStorming = false;
    for (const Storm &other : std::as_const(m_storms))
        stillStorming = stillStorming || !other.ended;
    if (!stillStorming)
        for (const QString &worker : DemoWorld::workerNames())
            m_world->faults.setStorm(worker, false);
    if (!escalated)
        m_log->add(storm.node, QStringLiteral("info"), QStringLiteral("the restart storm ended without an escalation"));
}

bool DemoController::stopNode(const QString &name)
{
    stage::Node *node = findNode(name);
    if (!node || !node->supervisor() || !node->supervisor()->terminateChild(node))
        return false;
    ++m_faults.stops;
    m_log->add(name, QStringLiteral("fault"), QStringLiteral("stop: its supervisor stops it, and will not restart it"));
    return true;
}

bool DemoController::startNode(const QString &name)
{
    stage::Node *node = findNode(name);
    if (!node || !node->supervisor() || !node->supervisor()->restartChild(node))
        return false;
    ++m_faults.starts;
    m_log->add(name, QStringLiteral("fault"), QStringLiteral("start: its supervisor starts it again"));
    return true;
}

// ---- sampling ------------------------------------------------------------------------------

qint64 DemoController::restartsOf(const stage::Node *node)
{
    if (auto *group = qobject_cast<const stage::Group *>(node))
        return group->restarted();
    if (auto *sv = qobject_cast<const stage::Supervisor *>(node))
        return sv->restarts();
    return 0;
}

qint64 DemoController::subtreeRestarts(const stage::Node *node) const
{
    qint64 total = restartsOf(node) + m_restartedByRoot.value(node);
    if (auto *sv = qobject_cast<const stage::Supervisor *>(node))
        for (const stage::Node *child : sv->childNodes())
            total += subtreeRestarts(child);
    return total;
}

qint64 DemoController::totalRestarts() const
{
    qint64 total = 0;
    for (const stage::Node *node : nodes())
        total += restartsOf(node);
    return total;
}

QList<DemoController::Account> DemoController::accountsNow() const
{
    auto account = [](const QString &name, const Ledger &ledger, const stage::MailboxStatistics &s, int count) {
        const Ledger::Counts counts = ledger.counts();
        Account a;
        a.name = name;
        a.sent = counts.sent;
        a.acknowledged = counts.done;
        a.duplicates = counts.duplicates;
        a.redelivered = s.redelivered;
        a.deadLettered = s.deadLettered;
        a.queued = count;
        a.held = s.delivered - s.acknowledged - s.redelivered - s.deadLettered; // in consumers' hands now
        return a;
    };
    // In-flight messages first, the ledgers last: a message moving on between the reads is counted
    // twice rather than missed (only a redelivery, moving back, can be missed for one sample).
    const int pathsCount = m_world->paths.count();
    const int requestsCount = m_world->requests.count();
    const int imagesCount = m_world->images.count();
    const auto pathsStats = m_world->paths.statistics();
    const auto requestsStats = m_world->requests.statistics();
    const auto imagesStats = m_world->images.statistics();
    return {account(QStringLiteral("paths"), m_world->pathsLedger, pathsStats, pathsCount),
            account(QStringLiteral("requests"), m_world->requestsLedger, requestsStats, requestsCount),
            account(QStringLiteral("images"), m_world->imagesLedger, imagesStats, imagesCount)};
}

void DemoController::sample()
{
    // Accounts: "lost" is the smallest value over the last three samples (1.5 s), so a message
    // caught between two counters for an instant is not reported; a real loss stays.
    const QList<Account> now = accountsNow();
    m_recentAccounts.push_back(now);
    while (m_recentAccounts.size() > 3)
        m_recentAccounts.pop_front();
    m_accountsVariant.clear();
    m_lost = 0;
    for (int i = 0; i < now.size(); ++i) {
        qint64 lost = now[i].lost();
        for (const auto &earlier : m_recentAccounts)
            lost = std::min(lost, earlier[i].lost());
        lost = std::max<qint64>(lost, 0);
        m_lost += int(lost);
        const Account &a = now[i];
        m_accountsVariant.append(QVariantMap{{QStringLiteral("name"), a.name},
                                             {QStringLiteral("sent"), a.sent},
                                             {QStringLiteral("acknowledged"), a.acknowledged},
                                             {QStringLiteral("redelivered"), a.redelivered},
                                             {QStringLiteral("deadLettered"), a.deadLettered},
                                             {QStringLiteral("queued"), a.queued},
                                             {QStringLiteral("held"), a.held},
                                             {QStringLiteral("lost"), lost}});
    }

    const Index::Totals index = m_world->index.totals();
    const FlakyServer::Stats server = m_world->server().stats();
    m_work = QVariantMap{{QStringLiteral("filesWritten"), m_world->feed().filesWritten()},
                         {QStringLiteral("filesIndexed"), index.files},
                         {QStringLiteral("words"), index.words},
                         {QStringLiteral("filesHashed"), index.hashed},
                         {QStringLiteral("requestsSent"), m_world->requestsSent.load()},
                         {QStringLiteral("requestsAnswered"), m_world->requestsAnswered.load()},
                         {QStringLiteral("requestsDeadLettered"), m_world->requestsDeadLettered.load()},
                         {QStringLiteral("requestsTimedOut"), m_world->requestsTimedOut.load()},
                         {QStringLiteral("fetchAttempts"), m_world->fetchAttempts.load()},
                         {QStringLiteral("serverDropped"), server.dropped},
                         {QStringLiteral("serverSlow"), server.slow},
                         {QStringLiteral("serverGarbage"), server.garbage},
                         {QStringLiteral("readings"), m_world->readings.load()},
                         {QStringLiteral("thumbnails"), m_world->thumbnails.load()},
                         {QStringLiteral("imagesSent"), m_world->imagesSent.load()},
                         {QStringLiteral("imagesDeadLettered"), m_world->imagesDeadLettered.load()},
                         {QStringLiteral("thumbnailProcesses"), qint64(m_world->thumbnailPids.size())},
                         {QStringLiteral("lastReading"), m_world->lastReadingCentis.load() / 100.0},
                         {QStringLiteral("restarts"), totalRestarts()}};

    // The chart: restarts per sample in each top-level subtree.
    m_chart.clear();
    if (m_root) {
        for (const stage::Node *child : m_root->childNodes()) {
            const QString name = child->objectName();
            const qint64 total = subtreeRestarts(child);
            auto &series = m_series[name];
            const qint64 last = m_lastRestarts.value(name, total);
            series.push_back(int(std::max<qint64>(0, total - last)));
            m_lastRestarts.insert(name, total);
            while (int(series.size()) > chartSamples())
                series.pop_front();
            QVariantList values;
            for (int v : series)
                values.append(v);
            m_chart.append(QVariantMap{{QStringLiteral("name"), name}, {QStringLiteral("values"), values}});
        }
    }

    // Storms that escalated: recovered once their supervisor runs again.
    for (Storm &storm : m_storms) {
        if (!storm.escalated || storm.recovered)
            continue;
        stage::Node *target = findNode(storm.target);
        if (target && target->state() == stage::Node::State::Running) {
            storm.recovered = true;
            m_log->add(storm.target, QStringLiteral("recovery"),
                       QStringLiteral("recovered from the restart storm: running again"));
        }
    }
    emit sampled();
}
