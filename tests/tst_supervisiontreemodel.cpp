// stage::SupervisionTreeModel: rows that follow a live tree at once (children added, removed,
// deleted, also from slots and while Stage holds its signals back), roles that describe the
// nodes, status coalesced into a few dataChanged() a second, nothing at all without a view, and
// a churning tree under QAbstractItemModelTester (Fatal).

#include "testutil.h"

#include <QtCore/QElapsedTimer>
#include <QtCore/QLoggingCategory>
#include <QtCore/QPointer>
#include <QtCore/QRandomGenerator>
#include <QtTest/QAbstractItemModelTester>
#include <QtTest/QSignalSpy>
#include <QtTest/QTest>

#include <memory>
#include <random>
#include <vector>

using namespace std::chrono_literals;
using stage::Group;
using stage::Node;
using stage::Supervisor;
using stage::SupervisionTreeModel;
using stagetest::Timeout;
using Model = stage::SupervisionTreeModel;
using State = stage::Node::State;
using Tester = QAbstractItemModelTester;

namespace {

QCoro::Task<> crash()
{
    throw std::runtime_error("crash");
    co_return;
}

QCoro::Task<> idle()
{
    for (;;)
        co_await stage::sleep(1h);
}

QCoro::Task<> failTwiceThenIdle(std::shared_ptr<std::atomic<int>> runs)
{
    if (runs->fetch_add(1) < 2)
        throw std::runtime_error("boom");
    for (;;)
        co_await stage::sleep(1h);
}

/*
    A group named \a name under \a supervisor, running \a body (started by the supervisor).
    Note: a group that escalates every failure (the default under a supervisor) and fails at once
    on every start keeps the start sequence of its OneForOne supervisor at itself (its restart
    is decided before the next start): the children after it never start. The crash loops here
    are W5's groups, which restart their worker themselves (selfRestarting()).
*/
template<typename Body>
Group *addGroup(Supervisor *supervisor, const QString &name, Body body)
{
    auto *group = new Group;
    group->setObjectName(name);
    group->setBackoff(stage::Backoff::none());
    supervisor->addChild(group);
    group->spawn(body);
    return group;
}

/* W5's group: restarts its own worker, at once, without ever failing to its supervisor. */
template<typename Body>
Group *selfRestarting(Supervisor *supervisor, const QString &name, Body body)
{
    Group *group = addGroup(supervisor, name, body);
    group->setMaxRestarts(10'000'000);
    group->setRestartPeriod(1000);
    return group;
}

Supervisor *newSupervisor(const QString &name)
{
    auto *s = new Supervisor(Supervisor::Strategy::OneForOne);
    s->setObjectName(name);
    s->setMaxRestarts(-1);
    s->setBackoff(stage::Backoff::none());
    return s;
}

QString nameOf(const Node *node)
{
    return node ? node->objectName() : QStringLiteral("(null)");
}

/* Where the rows under \a index differ from \a node's subtree; empty if they match. */
QString mismatchBelow(const Model &model, Node *node, const QModelIndex &index)
{
    if (model.nodeAt(index) != node)
        return QStringLiteral("row %1 shows %2, not %3").arg(index.row()).arg(nameOf(model.nodeAt(index)), nameOf(node));
    if (model.indexOf(node) != index)
        return QStringLiteral("indexOf(%1) is not its row").arg(nameOf(node));
    auto *supervisor = qobject_cast<Supervisor *>(node);
    const QList<Node *> children = supervisor ? supervisor->childNodes() : QList<Node *>();
    if (model.rowCount(index) != children.size())
        return QStringLiteral("%1 has %2 rows for %3 children").arg(nameOf(node)).arg(model.rowCount(index)).arg(children.size());
    if (model.data(index, Model::ChildCountRole).toInt() != children.size())
        return QStringLiteral("%1: childCount role is not its row count").arg(nameOf(node));
    for (int i = 0; i < children.size(); ++i) {
        const QModelIndex child = model.index(i, 0, index);
        if (model.parent(child) != index)
            return QStringLiteral("row %1 under %2 has another parent").arg(i).arg(nameOf(node));
        const QString below = mismatchBelow(model, children[i], child);
        if (!below.isEmpty())
            return below;
    }
    return QString();
}

QString mismatch(const Model &model, const QList<Node *> &roots)
{
    if (model.rowCount() != roots.size())
        return QStringLiteral("%1 top-level rows for %2 roots").arg(model.rowCount()).arg(roots.size());
    if (model.roots() != roots)
        return QStringLiteral("roots() differ");
    for (int i = 0; i < roots.size(); ++i) {
        const QString below = mismatchBelow(model, roots[i], model.index(i, 0));
        if (!below.isEmpty())
            return below;
    }
    return QString();
}

/* Counts the timer events the model receives: a flush timer that runs shows up here. */
class TimerCounter : public QObject
{
public:
    explicit TimerCounter(QObject *watched) { watched->installEventFilter(this); }
    int count = 0;

protected:
    bool eventFilter(QObject *, QEvent *event) override
    {
        if (event->type() == QEvent::Timer)
            ++count;
        return false;
    }
};

/* The values a row must show for \a node (the polled roles), compared right at a dataChanged(). */
QString rowDiffers(const Model &model, const QModelIndex &index, Node *node)
{
    auto differs = [&](Model::Role role, const QVariant &expected) -> QString {
        const QVariant shown = model.data(index, role);
        if (shown != expected)
            return QStringLiteral("%1: role %2 shows %3, the node has %4")
                .arg(nameOf(node), QString::fromLatin1(QMetaEnum::fromType<Model::Role>().valueToKey(role)),
                     shown.toString(), expected.toString());
        return QString();
    };
    QStringList out;
    out << differs(Model::StateRole, int(node->state())) << differs(Model::StateReasonRole, node->stateReason());
    if (auto *g = qobject_cast<Group *>(node)) {
        out << differs(Model::RestartsRole, qlonglong(g->restarted())) << differs(Model::StartedRole, qlonglong(g->started()))
            << differs(Model::FailedRole, qlonglong(g->failed())) << differs(Model::RunningRole, g->running())
            << differs(Model::SizeRole, g->size());
    } else if (auto *s = qobject_cast<Supervisor *>(node)) {
        const auto st = s->statistics();
        out << differs(Model::RestartsRole, qlonglong(st.restarts))
            << differs(Model::StartedRole, qlonglong(st.childrenRestarted))
            << differs(Model::FailedRole, qlonglong(st.childFailures)) << differs(Model::RunningRole, st.runningChildren)
            << differs(Model::SizeRole, st.children) << differs(Model::RecentRestartsRole, s->recentRestarts());
    }
    out.removeAll(QString());
    return out.join(QStringLiteral("; "));
}

} // namespace

class tst_SupervisionTreeModel : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void initTestCase();
    void cleanup();

    void rows_matchTheTree();
    void roleNames_areTheQmlNames();
    void roles_describeTheNodes();
    void roles_restartBudget();
    void roles_uptimeHistoryAndLastExit();
    void roles_mailbox();
    void roles_sparklineCountsTheRestarts();
    void display_perColumn();

    void addChild_insertsRowsAtOnce();
    void addSubtree_appearsWithItsChildren();
    void removeChild_removesRowsAtOnce();
    void deleteChild_removesItsRow();
    void deleteSupervisor_removesItsSubtree();
    void deleteRoot_emptiesTheModel();
    void deferredSignals_rowsFollowTheTree();
    void changesFromSlots_keepTheModelConsistent();
    void deleteModel_fromASlot_data();
    void deleteModel_fromASlot();

    void restartingTree_coalescesDataChanged();
    void noView_noTimerAndNoSignals();
    void flushInterval_defaultAndBadInput();
    void flushInterval_zeroFlushesOnlyOnRequest();
    void roots_severalAndBadInput();
    void root_adoptedByAShownSupervisorMovesUnderIt();

    void churn_staysConsistentUnderTheTester();

private:
    std::mt19937 m_random;
};

void tst_SupervisionTreeModel::initTestCase()
{
    // A crash loop logs a line per failure.
    QLoggingCategory::setFilterRules(QStringLiteral("stage.*.info=false"));
}

void tst_SupervisionTreeModel::cleanup()
{
    // What the deletions of a test posted (Stage's own jobs, deleteLater()) runs before the next.
    QCoreApplication::sendPostedEvents(nullptr, QEvent::DeferredDelete);
    QVERIFY(stagetest::roundTrip(QThread::currentThread()));
}

void tst_SupervisionTreeModel::rows_matchTheTree()
{
    Supervisor root(Supervisor::Strategy::OneForAll);
    root.setObjectName(QStringLiteral("root"));
    addGroup(&root, QStringLiteral("a"), idle);
    Supervisor *sub = newSupervisor(QStringLiteral("sub"));
    root.addChild(sub);
    addGroup(sub, QStringLiteral("b"), idle);
    addGroup(sub, QStringLiteral("c"), idle);
    addGroup(&root, QStringLiteral("d"), idle);

    Model model;
    Tester tester(&model, Tester::FailureReportingMode::Fatal);
    QSignalSpy rootChanged(&model, &Model::rootChanged);
    model.setRoot(&root);
    QCOMPARE(rootChanged.size(), 1);
    QCOMPARE(model.root(), &root);
    QCOMPARE(mismatch(model, {&root}), QString());
    QCOMPARE(model.columnCount(), int(Model::ColumnCount));
    QCOMPARE(model.rowCount(model.index(0, 0)), 3);
    QCOMPARE(model.rowCount(model.index(0, 1)), 0); // only column 0 has children
    const QModelIndex subIndex = model.indexOf(sub);
    QCOMPARE(subIndex.row(), 1);
    QCOMPARE(model.nodeAt(model.indexOf(sub, Model::StateColumn)), sub);
    QVERIFY(!model.indexOf(sub, Model::ColumnCount).isValid());
    QVERIFY(!model.indexOf(nullptr).isValid());
    QVERIFY(model.flags(model.indexOf(root.childNodes().first())).testFlag(Qt::ItemNeverHasChildren));
    QVERIFY(!model.flags(subIndex).testFlag(Qt::ItemNeverHasChildren));
    QCOMPARE(model.headerData(Model::BudgetColumn, Qt::Horizontal).toString(), QStringLiteral("Budget"));

    root.start();
    QTRY_COMPARE_WITH_TIMEOUT(root.state(), State::Running, Timeout);
    QCOMPARE(mismatch(model, {&root}), QString());
}

void tst_SupervisionTreeModel::roleNames_areTheQmlNames()
{
    const Model model;
    const QHash<int, QByteArray> names = model.roleNames();
    const QList<QByteArray> expected = {"node", "name", "kind", "state", "stateText", "stateReason", "strategy", "size",
                                        "running", "started", "failed", "restarts", "recentRestarts", "maxRestarts",
                                        "restartBudget", "uptime", "lastExitReason", "history", "hasMailbox",
                                        "mailboxDepth", "deadLetters", "deadLetterReasons", "restartSparkline", "childCount"};
    for (int i = 0; i < expected.size(); ++i)
        QCOMPARE(names.value(Model::NodeRole + i), expected[i]);
    QCOMPARE(names.value(Qt::DisplayRole), QByteArray("display"));
}

void tst_SupervisionTreeModel::roles_describeTheNodes()
{
    Supervisor root(Supervisor::Strategy::RestForOne);
    root.setObjectName(QStringLiteral("root"));
    root.setMaxRestarts(-1);
    root.setBackoff(stage::Backoff::none());
    auto runs = std::make_shared<std::atomic<int>>(0);
    Group *flaky = addGroup(&root, QStringLiteral("flaky"), [runs] { return failTwiceThenIdle(runs); });
    flaky->setSize(1);
    Group *steady = addGroup(&root, QStringLiteral("steady"), idle);
    steady->setSize(3);

    Model model;
    model.setRoot(&root);
    const QModelIndex r = model.indexOf(&root);
    const QModelIndex f = model.indexOf(flaky);
    const QModelIndex s = model.indexOf(steady);
    QCOMPARE(model.data(r, Model::NodeRole).value<Node *>(), &root);
    QCOMPARE(model.data(r, Model::NameRole).toString(), QStringLiteral("root"));
    QCOMPARE(model.data(r, Model::KindRole).toString(), QStringLiteral("Supervisor"));
    QCOMPARE(model.data(f, Model::KindRole).toString(), QStringLiteral("Group"));
    QCOMPARE(model.data(r, Model::StrategyRole).toString(), QStringLiteral("RestForOne"));
    QCOMPARE(model.data(f, Model::StrategyRole).toString(), QString());
    QCOMPARE(model.data(r, Model::StateRole).toInt(), int(State::Idle));
    QCOMPARE(model.data(r, Model::StateTextRole).toString(), QStringLiteral("Idle"));
    QCOMPARE(model.data(r, Model::SizeRole).toInt(), 2);
    QCOMPARE(model.data(s, Model::SizeRole).toInt(), 3);
    QCOMPARE(model.data(r, Model::ChildCountRole).toInt(), 2);
    QCOMPARE(model.data(f, Model::ChildCountRole).toInt(), 0);
    QCOMPARE(model.data(f, Model::HasMailboxRole).toBool(), false);
    // Custom roles answer in every column.
    QCOMPARE(model.data(model.indexOf(&root, Model::LastExitColumn), Model::NameRole).toString(), QStringLiteral("root"));

    root.start();
    QTRY_COMPARE_WITH_TIMEOUT(steady->running(), 3, Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(root.restarts(), qint64(2), Timeout);
    QTRY_COMPARE_WITH_TIMEOUT(root.state(), State::Running, Timeout);
    // Nothing is read between flushes: the rows show what the insertion saw until flush().
    QCOMPARE(model.data(r, Model::StateRole).toInt(), int(State::Idle));
    model.flush();
    QCOMPARE(model.data(r, Model::StateRole).toInt(), int(State::Running));
    QCOMPARE(model.data(r, Model::RunningRole).toInt(), 2);
    QCOMPARE(model.data(r, Model::RestartsRole).toLongLong(), qint64(2));
    QCOMPARE(model.data(r, Model::FailedRole).toLongLong(), root.childFailures());
    QCOMPARE(model.data(r, Model::StartedRole).toLongLong(), root.statistics().childrenRestarted);
    QCOMPARE(model.data(s, Model::RunningRole).toInt(), 3);
    QCOMPARE(model.data(s, Model::StartedRole).toLongLong(), steady->started());
    QCOMPARE(model.data(f, Model::StartedRole).toLongLong(), flaky->started());
    QCOMPARE(model.data(f, Model::FailedRole).toLongLong(), flaky->failed());
    QCOMPARE(model.data(f, Model::RestartsRole).toLongLong(), flaky->restarted());
    QCOMPARE(rowDiffers(model, r, &root), QString());
    QCOMPARE(rowDiffers(model, f, flaky), QString());
    QCOMPARE(rowDiffers(model, s, steady), QString());

    // A name given later is polled too, and reported with its own roles only.
    steady->setObjectName(QStringLiteral("renamed"));
    QSignalSpy changed(&model, &Model::dataChanged);
    model.flush();
    QCOMPARE(model.data(s, Model::NameRole).toString(), QStringLiteral("renamed"));
    QList<int> roles;
    for (const auto &args : changed) {
        const auto topLeft = args.at(0).value<QModelIndex>();
        const auto bottomRight = args.at(1).value<QModelIndex>();
        if (topLeft.parent() == r && topLeft.row() <= s.row() && s.row() <= bottomRight.row())
            roles = args.at(2).value<QList<int>>();
    }
    QVERIFY(roles.contains(Model::NameRole));
    QVERIFY(roles.contains(Qt::DisplayRole));
    QVERIFY(!roles.contains(Model::StateRole)); // (every second, running rows get UptimeRole as well)
    QVERIFY(!roles.contains(Model::RestartsRole));
}

void tst_SupervisionTreeModel::roles_restartBudget()
{
    Supervisor root;
    root.setMaxRestarts(5);
    root.setRestartPeriod(60000);
    root.setBackoff(stage::Backoff::none());
    auto runs = std::make_shared<std::atomic<int>>(0);
    addGroup(&root, QStringLiteral("flaky"), [runs] { return failTwiceThenIdle(runs); });
    Supervisor unlimited;
    unlimited.setMaxRestarts(-1);

    Model model;
    model.addRoot(&root);
    model.addRoot(&unlimited);
    root.start();
    QTRY_COMPARE_WITH_TIMEOUT(root.recentRestarts(), 2, Timeout);
    model.flush();
    const QModelIndex r = model.indexOf(&root);
    QCOMPARE(model.data(r, Model::RecentRestartsRole).toInt(), 2);
    QCOMPARE(model.data(r, Model::MaxRestartsRole).toInt(), 5);
    QCOMPARE(model.data(r, Model::RestartBudgetRole).toDouble(), 0.4);
    QCOMPARE(model.data(model.indexOf(&root, Model::BudgetColumn)).toString(), QStringLiteral("2/5"));
    const QModelIndex u = model.indexOf(&unlimited);
    QCOMPARE(model.data(u, Model::MaxRestartsRole).toInt(), -1);
    QCOMPARE(model.data(u, Model::RestartBudgetRole).toDouble(), -1.0);
    QCOMPARE(model.data(model.indexOf(&unlimited, Model::BudgetColumn)).toString(), QStringLiteral("unlimited"));

    // A large window (read at most once a second while restarts go on): read at once when the
    // node starts restarting.
    Group standalone;
    standalone.setBackoff(stage::Backoff::none());
    standalone.setMaxRestarts(1000);
    standalone.setRestartPeriod(60000);
    model.addRoot(&standalone);
    auto standaloneRuns = std::make_shared<std::atomic<int>>(0);
    standalone.spawn([standaloneRuns] { return failTwiceThenIdle(standaloneRuns); });
    QTRY_COMPARE_WITH_TIMEOUT(standalone.recentRestarts(), 2, Timeout);
    model.flush();
    const QModelIndex s = model.indexOf(&standalone);
    QCOMPARE(model.data(s, Model::RecentRestartsRole).toInt(), 2);
    QCOMPARE(model.data(s, Model::RestartBudgetRole).toDouble(), 0.002);
    stage::waitFor(standalone.shutdown());
}

void tst_SupervisionTreeModel::roles_uptimeHistoryAndLastExit()
{
    Supervisor root;
    root.setObjectName(QStringLiteral("root"));
    root.setMaxRestarts(-1);
    root.setBackoff(stage::Backoff::none());
    Group *group = addGroup(&root, QStringLiteral("worker"), idle);
    Model model;
    model.setRoot(&root);
    const QModelIndex g = model.indexOf(group);
    QCOMPARE(model.data(g, Model::UptimeRole).toLongLong(), qint64(0)); // Idle
    QCOMPARE(model.data(model.indexOf(group, Model::UptimeColumn)).toString(), QString());

    root.start();
    QTRY_COMPARE_WITH_TIMEOUT(group->state(), State::Running, Timeout);
    model.flush();
    const qint64 first = model.data(g, Model::UptimeRole).toLongLong();
    QVERIFY(first >= 0);
    // It grows with time (read from the history's timestamp, not from the last flush).
    QTRY_VERIFY_WITH_TIMEOUT(model.data(g, Model::UptimeRole).toLongLong() >= first + 1100, Timeout);
    QVERIFY(model.data(model.indexOf(group, Model::UptimeColumn)).toString().endsWith(QStringLiteral(" s")));

    const QVariantList history = model.data(g, Model::HistoryRole).toList();
    QCOMPARE(history.size(), group->history().size());
    QVERIFY(history.size() >= 2);
    const QVariantMap last = history.last().toMap();
    QCOMPARE(last.value(QStringLiteral("state")).toInt(), int(State::Running));
    QCOMPARE(last.value(QStringLiteral("stateText")).toString(), QStringLiteral("Running"));
    QCOMPARE(last.value(QStringLiteral("timestamp")).toLongLong(), group->history().last().timestamp);
    QVERIFY(last.contains(QStringLiteral("reason")));
    QCOMPARE(model.data(g, Model::LastExitReasonRole).toString(), QString()); // never exited

    // Stopped: no uptime, and the reason of the stop is the last exit.
    QVERIFY(root.terminateChild(group));
    QTRY_COMPARE_WITH_TIMEOUT(group->state(), State::Stopped, Timeout);
    model.flush();
    QCOMPARE(model.data(g, Model::UptimeRole).toLongLong(), qint64(0));
    QCOMPARE(model.data(g, Model::StateTextRole).toString(), QStringLiteral("Stopped"));
    QVERIFY(!group->stateReason().isEmpty());
    QCOMPARE(model.data(g, Model::LastExitReasonRole).toString(), group->stateReason());
    QCOMPARE(model.data(model.indexOf(group, Model::LastExitColumn)).toString(), group->stateReason());

    // Started again: a fresh uptime, and the last exit stays.
    QVERIFY(root.restartChild(group));
    QTRY_COMPARE_WITH_TIMEOUT(group->state(), State::Running, Timeout);
    model.flush();
    QVERIFY(model.data(g, Model::UptimeRole).toLongLong() < 1000);
    QCOMPARE(model.data(g, Model::LastExitReasonRole).toString(), QStringLiteral("shut down"));
}

void tst_SupervisionTreeModel::roles_mailbox()
{
    Supervisor root;
    Group *group = addGroup(&root, QStringLiteral("consumer"), idle);
    Group *plain = addGroup(&root, QStringLiteral("plain"), idle);
    const stage::Mailbox<int> mailbox(8);
    mailbox.setMaxRedeliveries(0);
    group->setMailbox(mailbox.object());
    Model model;
    model.setRoot(&root);
    const QModelIndex g = model.indexOf(group);
    QCOMPARE(model.data(g, Model::HasMailboxRole).toBool(), true);
    QCOMPARE(model.data(g, Model::MailboxDepthRole).toInt(), 0);
    QCOMPARE(model.data(model.indexOf(plain), Model::HasMailboxRole).toBool(), false);
    QCOMPARE(model.data(model.indexOf(plain), Model::DeadLetterReasonsRole).toStringList(), QStringList());
    QCOMPARE(model.data(model.indexOf(plain, Model::MailboxColumn)).toString(), QString());

    QCOMPARE(mailbox.trySend(1), stage::SendStatus::Sent);
    QCOMPARE(mailbox.trySend(2), stage::SendStatus::Sent);
    QCOMPARE(mailbox.trySend(3), stage::SendStatus::Sent);
    // One message dead-lettered: taken by a consumer that fails while holding it.
    QTest::ignoreMessage(QtWarningMsg, "Mailbox: a message failed 1 consumer(s) and was moved to the dead letters");
    QVERIFY_THROWS_EXCEPTION(std::runtime_error, stage::waitFor([](stage::Mailbox<int> mb) -> QCoro::Task<> {
        auto delivery = co_await mb.receive();
        throw std::runtime_error("poison");
    }(mailbox)));
    QCOMPARE(mailbox.count(), 2);
    QCOMPARE(mailbox.deadLetterCount(), 1);
    QSignalSpy changed(&model, &Model::dataChanged);
    model.flush();
    QCOMPARE(changed.size(), 1); // the group's row only
    QCOMPARE(changed.first().at(0).value<QModelIndex>(), g);
    const auto roles = changed.first().at(2).value<QList<int>>();
    QVERIFY(roles.contains(Model::MailboxDepthRole));
    QVERIFY(roles.contains(Model::DeadLettersRole));
    QVERIFY(roles.contains(Model::DeadLetterReasonsRole));
    QCOMPARE(model.data(g, Model::MailboxDepthRole).toInt(), 2);
    QCOMPARE(model.data(g, Model::DeadLettersRole).toInt(), 1);
    QCOMPARE(model.data(g, Model::DeadLetterReasonsRole).toStringList(), mailbox.object()->deadLetterReasons());
    QCOMPARE(model.data(g, Model::DeadLetterReasonsRole).toStringList().size(), 1);
    QCOMPARE(model.data(model.indexOf(group, Model::MailboxColumn)).toString(), QStringLiteral("depth 2, dead 1"));

    group->setMailbox(nullptr);
    model.flush();
    QCOMPARE(model.data(g, Model::HasMailboxRole).toBool(), false);
    QCOMPARE(model.data(g, Model::MailboxDepthRole).toInt(), 0);
    while (mailbox.tryReceive()) // drained (acknowledged), so that it closes empty
        ;
}

void tst_SupervisionTreeModel::roles_sparklineCountsTheRestarts()
{
    Supervisor root;
    root.setMaxRestarts(-1);
    root.setBackoff(stage::Backoff::none());
    addGroup(&root, QStringLiteral("crash"), crash);
    Model model;
    model.setRoot(&root);
    const QModelIndex r = model.indexOf(&root);
    QCOMPARE(model.data(r, Model::RestartSparklineRole).toList(), QVariantList(12, QVariant(0)));
    root.start();
    QTRY_VERIFY_WITH_TIMEOUT(root.restarts() > 100, Timeout);
    model.flush();
    QTRY_VERIFY_WITH_TIMEOUT(root.restarts() > 1000, Timeout);
    stage::waitFor(root.shutdown());
    model.flush();
    const QVariantList sparkline = model.data(r, Model::RestartSparklineRole).toList();
    QCOMPARE(sparkline.size(), 12);
    qint64 sum = 0;
    for (const QVariant &v : sparkline)
        sum += v.toInt();
    // Every restart since the row was inserted (with 0), in the buckets of the last minute.
    QCOMPARE(sum, root.restarts());
    QCOMPARE(model.data(r, Model::RestartsRole).toLongLong(), root.restarts());
    QVERIFY(sparkline.last().toInt() > 0 || sparkline.at(10).toInt() > 0);
}

void tst_SupervisionTreeModel::display_perColumn()
{
    Supervisor root;
    root.setMaxRestarts(3);
    Group *unnamed = addGroup(&root, QString(), idle);
    Model model;
    model.setRoot(&root);
    QCOMPARE(model.data(model.indexOf(unnamed, Model::NameColumn)).toString(), QStringLiteral("Group")); // the kind
    QCOMPARE(model.data(model.indexOf(&root, Model::StateColumn)).toString(), QStringLiteral("Idle"));
    QCOMPARE(model.data(model.indexOf(&root, Model::RestartsColumn)).toLongLong(), qint64(0));
    QCOMPARE(model.data(model.indexOf(&root, Model::BudgetColumn)).toString(), QStringLiteral("0/3"));
    QCOMPARE(model.data(model.indexOf(&root, Model::UptimeColumn)).toString(), QString());
    QCOMPARE(model.data(model.indexOf(&root, Model::LastExitColumn)).toString(), QString());
    root.start();
    QTRY_COMPARE_WITH_TIMEOUT(root.state(), State::Running, Timeout);
    model.flush();
    QCOMPARE(model.data(model.indexOf(&root, Model::StateColumn)).toString(), QStringLiteral("Running"));
    QVERIFY(model.data(model.indexOf(&root, Model::UptimeColumn)).toString().endsWith(QStringLiteral(" s")));
}

void tst_SupervisionTreeModel::addChild_insertsRowsAtOnce()
{
    Supervisor root;
    root.setObjectName(QStringLiteral("root"));
    Model model;
    Tester tester(&model, Tester::FailureReportingMode::Fatal);
    model.setRoot(&root);
    QSignalSpy inserted(&model, &Model::rowsInserted);
    auto *group = new Group;
    group->setObjectName(QStringLiteral("late"));
    QVERIFY(root.addChild(group));
    // No event loop in between: at once.
    QCOMPARE(inserted.size(), 1);
    QCOMPARE(inserted.first().at(0).value<QModelIndex>(), model.indexOf(&root));
    QCOMPARE(inserted.first().at(1).toInt(), 0);
    QCOMPARE(inserted.first().at(2).toInt(), 0);
    QCOMPARE(model.data(model.indexOf(group), Model::NameRole).toString(), QStringLiteral("late"));
    addGroup(&root, QStringLiteral("later"), idle);
    QCOMPARE(inserted.size(), 2);
    QCOMPARE(inserted.last().at(1).toInt(), 1);
    QCOMPARE(mismatch(model, {&root}), QString());
}

void tst_SupervisionTreeModel::addSubtree_appearsWithItsChildren()
{
    Supervisor root;
    root.setObjectName(QStringLiteral("root"));
    root.setMaxRestarts(-1);
    Model model;
    Tester tester(&model, Tester::FailureReportingMode::Fatal);
    model.setRoot(&root);
    root.start();
    Supervisor *sub = newSupervisor(QStringLiteral("sub"));
    addGroup(sub, QStringLiteral("x"), idle);
    Supervisor *deeper = newSupervisor(QStringLiteral("deeper"));
    sub->addChild(deeper);
    addGroup(deeper, QStringLiteral("y"), idle);
    QSignalSpy inserted(&model, &Model::rowsInserted);
    QVERIFY(root.addChild(sub));
    QCOMPARE(inserted.size(), 1); // one row, its subtree with it
    QCOMPARE(model.rowCount(model.indexOf(sub)), 2);
    QCOMPARE(model.rowCount(model.indexOf(deeper)), 1);
    QCOMPARE(mismatch(model, {&root}), QString());
    // Grown later, below: rows at once as well.
    addGroup(deeper, QStringLiteral("z"), idle);
    QCOMPARE(inserted.size(), 2);
    QCOMPARE(inserted.last().at(0).value<QModelIndex>(), model.indexOf(deeper));
    QTRY_COMPARE_WITH_TIMEOUT(root.state(), State::Running, Timeout);
    QCOMPARE(mismatch(model, {&root}), QString());
}

void tst_SupervisionTreeModel::removeChild_removesRowsAtOnce()
{
    Supervisor root;
    root.setObjectName(QStringLiteral("root"));
    Group *a = addGroup(&root, QStringLiteral("a"), idle);
    Group *b = addGroup(&root, QStringLiteral("b"), idle);
    Group *c = addGroup(&root, QStringLiteral("c"), idle);
    Model model;
    Tester tester(&model, Tester::FailureReportingMode::Fatal);
    model.setRoot(&root);
    root.start();
    QTRY_COMPARE_WITH_TIMEOUT(root.state(), State::Running, Timeout);
    QSignalSpy removed(&model, &Model::rowsRemoved);
    QVERIFY(root.removeChild(b));
    QCOMPARE(removed.size(), 1);
    QCOMPARE(removed.first().at(1).toInt(), 1);
    QVERIFY(!model.indexOf(b).isValid());
    QCOMPARE(model.indexOf(c).row(), 1);
    QCOMPARE(mismatch(model, {&root}), QString());
    std::unique_ptr<Group> owned(b); // handed back to us
    stage::waitFor(b->shutdown());
    owned.reset(); // not shown: nothing happens
    QCOMPARE(removed.size(), 1);
    // Added back elsewhere in the order: the last row.
    QVERIFY(root.removeChild(a));
    QVERIFY(root.addChild(a));
    QCOMPARE(model.indexOf(a).row(), 1);
    QCOMPARE(mismatch(model, {&root}), QString());
}

void tst_SupervisionTreeModel::deleteChild_removesItsRow()
{
    Supervisor root;
    root.setObjectName(QStringLiteral("root"));
    root.setMaxRestarts(-1);
    root.setBackoff(stage::Backoff::none());
    Group *a = addGroup(&root, QStringLiteral("a"), crash);
    addGroup(&root, QStringLiteral("b"), idle);
    Model model;
    Tester tester(&model, Tester::FailureReportingMode::Fatal);
    model.setRoot(&root);
    root.start();
    QTRY_VERIFY_WITH_TIMEOUT(root.restarts() > 10, Timeout);
    QSignalSpy removed(&model, &Model::rowsRemoved);
    delete a; // restarting thousands of times a second
    QCOMPARE(removed.size(), 1);
    QCOMPARE(removed.first().at(1).toInt(), 0);
    QCOMPARE(mismatch(model, {&root}), QString());
    QTRY_COMPARE_WITH_TIMEOUT(root.childCount(), 1, Timeout);
    QCOMPARE(mismatch(model, {&root}), QString());
}

void tst_SupervisionTreeModel::deleteSupervisor_removesItsSubtree()
{
    Supervisor root;
    root.setObjectName(QStringLiteral("root"));
    root.setMaxRestarts(-1);
    root.setBackoff(stage::Backoff::none());
    addGroup(&root, QStringLiteral("first"), idle);
    Supervisor *sub = newSupervisor(QStringLiteral("sub"));
    root.addChild(sub);
    Group *x = selfRestarting(sub, QStringLiteral("x"), crash);
    Supervisor *deeper = newSupervisor(QStringLiteral("deeper"));
    sub->addChild(deeper);
    addGroup(deeper, QStringLiteral("y"), idle);
    Group *z = selfRestarting(deeper, QStringLiteral("z"), crash);
    addGroup(&root, QStringLiteral("last"), idle);
    Model model;
    Tester tester(&model, Tester::FailureReportingMode::Fatal);
    model.setRoot(&root);
    root.start();
    QTRY_VERIFY_WITH_TIMEOUT(x->restarted() > 10 && z->restarted() > 10, Timeout);
    delete sub;
    QCOMPARE(model.rowCount(model.indexOf(&root)), 2);
    QCOMPARE(mismatch(model, {&root}), QString());
    QTRY_COMPARE_WITH_TIMEOUT(root.childCount(), 2, Timeout);
    QCOMPARE(mismatch(model, {&root}), QString());
}

void tst_SupervisionTreeModel::deleteRoot_emptiesTheModel()
{
    auto root = std::make_unique<Supervisor>();
    Supervisor *sub = newSupervisor(QStringLiteral("sub"));
    root->addChild(sub);
    addGroup(sub, QStringLiteral("x"), idle);
    Model model;
    Tester tester(&model, Tester::FailureReportingMode::Fatal);
    model.setRoot(root.get());
    root->start();
    QSignalSpy rootChanged(&model, &Model::rootChanged);
    root.reset();
    QCOMPARE(model.rowCount(), 0);
    QCOMPARE(model.root(), nullptr);
    QCOMPARE(model.roots(), QList<Node *>());
    QCOMPARE(rootChanged.size(), 1);
    QCOMPARE(rootChanged.first().at(0).value<Node *>(), nullptr);
}

void tst_SupervisionTreeModel::deferredSignals_rowsFollowTheTree()
{
    // Inside a slot of a Stage signal, Stage holds the signals of what the slot does until it
    // returns: childAdded() for a node deleted meanwhile, a subtree announced after its own
    // children, a child removed and added back. The rows end up as the tree is.
    Supervisor root;
    root.setObjectName(QStringLiteral("root"));
    Model model;
    Tester tester(&model, Tester::FailureReportingMode::Fatal);
    model.setRoot(&root);
    Supervisor *sub = nullptr;
    Group *a = nullptr, *b = nullptr;
    int calls = 0;
    auto *trigger = new Group;
    trigger->setObjectName(QStringLiteral("trigger"));
    // The argument may dangle (see "gone" below): compared, never read.
    connect(&root, &Supervisor::childAdded, &model, [&](Node *node) {
        if (node != trigger || calls++)
            return;
        sub = newSupervisor(QStringLiteral("sub"));
        QVERIFY(root.addChild(sub)); // announced before the children added below
        a = addGroup(sub, QStringLiteral("a"), idle);
        b = addGroup(sub, QStringLiteral("b"), idle);
        QVERIFY(sub->removeChild(a));
        QVERIFY(sub->addChild(a)); // [b, a]
        auto *gone = new Group;
        gone->setObjectName(QStringLiteral("gone"));
        QVERIFY(root.addChild(gone));
        delete gone; // childAdded(gone) comes with a dangling pointer
        auto *moved = new Group;
        moved->setObjectName(QStringLiteral("moved"));
        QVERIFY(root.addChild(moved));
        QVERIFY(root.removeChild(moved));
        QVERIFY(sub->addChild(moved)); // [b, a, moved]
    });
    QVERIFY(root.addChild(trigger));
    QCOMPARE(calls, 1);
    QVERIFY(sub && a && b);
    QCOMPARE(sub->childNodes().size(), 3);
    QCOMPARE(sub->childNodes().at(1), a);
    QCOMPARE(mismatch(model, {&root}), QString());
    QTRY_COMPARE_WITH_TIMEOUT(root.childCount(), 2, Timeout);
    QCOMPARE(mismatch(model, {&root}), QString());
}

void tst_SupervisionTreeModel::changesFromSlots_keepTheModelConsistent()
{
    Supervisor root;
    root.setObjectName(QStringLiteral("root"));
    root.setMaxRestarts(-1);
    root.setBackoff(stage::Backoff::none());
    Model model;
    model.setFlushInterval(10);
    Tester tester(&model, Tester::FailureReportingMode::Fatal);
    model.setRoot(&root);
    for (int i = 0; i < 6; ++i)
        addGroup(&root, QStringLiteral("g%1").arg(i), crash);
    root.start();

    // 1. A supervisor's slot removes and deletes the child that just exited.
    int exits = 0;
    auto exitConnection = connect(&root, &Supervisor::childExited, &model, [&](Node *node, bool, const QString &) {
        if (++exits == 5) {
            root.removeChild(node);
            delete node;
        }
    });
    QTRY_VERIFY_WITH_TIMEOUT(exits >= 5, Timeout);
    disconnect(exitConnection);
    QCOMPARE(root.childCount(), 5);
    QCOMPARE(mismatch(model, {&root}), QString());

    // 2. A slot of rowsInserted deletes another row's node.
    QPointer<Node> victim = root.childNodes().first();
    auto insertedConnection = connect(&model, &Model::rowsInserted, &model, [&] {
        delete victim.data();
    });
    addGroup(&root, QStringLiteral("new1"), crash);
    disconnect(insertedConnection);
    QVERIFY(!victim);
    QCOMPARE(mismatch(model, {&root}), QString());

    // 3. A slot of rowsAboutToBeRemoved deletes another node: its row goes right after.
    victim = root.childNodes().last();
    auto aboutConnection = connect(&model, &Model::rowsAboutToBeRemoved, &model, [&] {
        delete victim.data();
    });
    delete root.childNodes().first();
    disconnect(aboutConnection);
    QVERIFY(!victim);
    QCOMPARE(mismatch(model, {&root}), QString());

    // 4. A slot of rowsAboutToBeInserted deletes the node being inserted.
    QPointer<Group> doomed = new Group;
    doomed->setObjectName(QStringLiteral("doomed"));
    auto beforeInsert = connect(&model, &Model::rowsAboutToBeInserted, &model, [&] { delete doomed.data(); });
    root.addChild(doomed);
    disconnect(beforeInsert);
    QVERIFY(!doomed);
    QCOMPARE(mismatch(model, {&root}), QString());

    // 5. Slots of dataChanged delete a node and add one while the flush emits.
    int changes = 0;
    auto changedConnection = connect(&model, &Model::dataChanged, &model, [&] {
        if (++changes == 3) {
            delete root.childNodes().first();
            addGroup(&root, QStringLiteral("new2"), crash);
            model.flush(); // inside a flush: nothing
        }
    });
    QTRY_VERIFY_WITH_TIMEOUT(changes > 6, Timeout);
    disconnect(changedConnection);
    QCOMPARE(mismatch(model, {&root}), QString());

    // 6. A slot of rowsRemoved deletes another node.
    victim = root.childNodes().last();
    auto removedConnection = connect(&model, &Model::rowsRemoved, &model, [&] { delete victim.data(); });
    delete root.childNodes().first();
    disconnect(removedConnection);
    QVERIFY(!victim);
    QCOMPARE(mismatch(model, {&root}), QString());
    QCOMPARE(root.childCount(), 1);
}

void tst_SupervisionTreeModel::deleteModel_fromASlot_data()
{
    // The signals after which a model may be deleted (Qt reads its model after
    // rowsAboutToBeInserted() and rowsAboutToBeRemoved(): not those).
    QTest::addColumn<QString>("signal");
    QTest::newRow("rowsInserted") << QStringLiteral("rowsInserted");
    QTest::newRow("rowsRemoved") << QStringLiteral("rowsRemoved");
    QTest::newRow("dataChanged") << QStringLiteral("dataChanged");
    QTest::newRow("rootChanged") << QStringLiteral("rootChanged");
}

void tst_SupervisionTreeModel::deleteModel_fromASlot()
{
    QFETCH(QString, signal);
    Supervisor root;
    root.setMaxRestarts(-1);
    root.setBackoff(stage::Backoff::none());
    for (int i = 0; i < 3; ++i)
        selfRestarting(&root, QStringLiteral("g%1").arg(i), crash);
    Supervisor other;
    root.start();
    QPointer<Model> model = new Model;
    model->setRoot(&root);
    auto kill = [&model] { delete model.data(); };
    if (signal == QStringLiteral("rowsInserted")) {
        connect(model.data(), &Model::rowsInserted, kill);
        selfRestarting(&root, QStringLiteral("late"), crash);
    } else if (signal == QStringLiteral("rowsRemoved")) {
        connect(model.data(), &Model::rowsRemoved, kill);
        delete root.childNodes().first();
    } else if (signal == QStringLiteral("dataChanged")) {
        connect(model.data(), &Model::dataChanged, kill);
        root.childNodes().first()->setObjectName(QStringLiteral("renamed"));
        model->flush();
    } else {
        connect(model.data(), &Model::rootChanged, kill);
        model->setRoot(&other);
    }
    QVERIFY(!model);
    // The tree goes on without it.
    selfRestarting(&root, QStringLiteral("after"), crash);
    delete root.childNodes().first();
    QTRY_VERIFY_WITH_TIMEOUT(root.childNodes().last()->isRunning(), Timeout);
}

void tst_SupervisionTreeModel::restartingTree_coalescesDataChanged()
{
    Supervisor root;
    root.setObjectName(QStringLiteral("root"));
    root.setMaxRestarts(-1);
    root.setBackoff(stage::Backoff::none());
    qint64 restartsBefore = 0;
    std::vector<Group *> groups;
    for (int i = 0; i < 20; ++i)
        groups.push_back(selfRestarting(&root, QStringLiteral("g%1").arg(i), crash));
    auto totalRestarts = [&groups] {
        qint64 n = 0;
        for (Group *g : groups)
            n += g->restarted();
        return n;
    };
    Model model;
    QCOMPARE(model.flushInterval(), 100);
    Tester tester(&model, Tester::FailureReportingMode::Fatal);
    model.setRoot(&root);
    QSignalSpy resets(&model, &Model::modelReset);
    QSignalSpy layouts(&model, &Model::layoutChanged);

    struct Emission
    {
        qint64 at;
        int first, last;
        QList<int> roles;
    };
    std::vector<Emission> emissions;
    QStringList errors;
    QElapsedTimer clock;
    clock.start();
    connect(&model, &Model::dataChanged, &model,
            [&](const QModelIndex &topLeft, const QModelIndex &bottomRight, const QList<int> &roles) {
                emissions.push_back(Emission{clock.elapsed(), topLeft.row(), bottomRight.row(), roles});
                if (roles.isEmpty())
                    errors << QStringLiteral("a dataChanged() without roles");
                if (topLeft.column() != 0 || bottomRight.column() != Model::ColumnCount - 1)
                    errors << QStringLiteral("a dataChanged() not over every column");
                if (topLeft.parent() != bottomRight.parent())
                    errors << QStringLiteral("a dataChanged() over two parents");
                for (int role : roles)
                    if (role != Qt::DisplayRole && (role < Model::NodeRole || role > Model::ChildCountRole))
                        errors << QStringLiteral("unknown role %1").arg(role);
                // The rows show what the nodes are, when the signal arrives.
                for (int row = topLeft.row(); row <= bottomRight.row(); ++row) {
                    const QModelIndex index = model.index(row, 0, topLeft.parent());
                    const QString differs = rowDiffers(model, index, model.nodeAt(index));
                    if (!differs.isEmpty())
                        errors << differs;
                }
            });
    root.start();
    QTRY_VERIFY_WITH_TIMEOUT(!emissions.empty(), Timeout);
    emissions.clear();
    restartsBefore = totalRestarts();
    // Measure one second of a tree restarting as fast as it can.
    QTest::qWait(1000);
    const qint64 restarts = totalRestarts() - restartsBefore;
    QVERIFY2(errors.isEmpty(), qPrintable(errors.mid(0, 5).join(QLatin1Char('\n'))));
    int batches = 0;
    qint64 previous = -1000;
    for (const Emission &e : emissions) {
        if (e.at - previous > 50)
            ++batches;
        previous = e.at;
    }
    qInfo("%lld restarts, %d dataChanged() in %d flushes", restarts, int(emissions.size()), batches);
    QVERIFY(restarts > 100);
    QVERIFY2(batches >= 3 && batches <= 12, qPrintable(QString::number(batches)));
    // The root's row and one run of its 20 rows per flush, at most.
    QVERIFY(int(emissions.size()) <= batches * 21);
    QCOMPARE(resets.size(), 0);
    QCOMPARE(layouts.size(), 0);
    // Every group row was reported with its counters.
    bool sawGroupRun = false;
    for (const Emission &e : emissions)
        sawGroupRun = sawGroupRun || (e.roles.contains(Model::StartedRole) && e.roles.contains(Model::RestartsRole)
                                      && e.first == 0 && e.last == 19);
    QVERIFY(sawGroupRun);
}

void tst_SupervisionTreeModel::noView_noTimerAndNoSignals()
{
    Supervisor root;
    root.setMaxRestarts(-1);
    root.setBackoff(stage::Backoff::none());
    for (int i = 0; i < 5; ++i)
        addGroup(&root, QStringLiteral("g%1").arg(i), crash);
    Model model;
    model.setFlushInterval(20);
    TimerCounter timers(&model);
    model.setRoot(&root);
    root.start();
    QTRY_VERIFY_WITH_TIMEOUT(root.restarts() > 100, Timeout);
    // A window of 15 flush intervals with the tree restarting: no timer reaches the model.
    QTest::qWait(300);
    QCOMPARE(timers.count, 0);
    QCOMPARE(model.data(model.indexOf(&root), Model::RestartsRole).toLongLong(), qint64(0)); // never polled
    // Rows are kept without a view.
    QSignalSpy inserted(&model, &Model::rowsInserted);
    addGroup(&root, QStringLiteral("late"), idle);
    QCOMPARE(inserted.size(), 1);
    QCOMPARE(timers.count, 0);

    // A view connects: the timer runs and the rows catch up.
    {
        QSignalSpy changed(&model, &Model::dataChanged);
        QTRY_VERIFY_WITH_TIMEOUT(timers.count > 2, Timeout);
        QTRY_VERIFY_WITH_TIMEOUT(!changed.isEmpty(), Timeout);
        QVERIFY(model.data(model.indexOf(&root), Model::RestartsRole).toLongLong() > 0);
    }
    // It is gone: the timer stops at its next tick.
    QTest::qWait(100);
    const int after = timers.count;
    QTest::qWait(300);
    QCOMPARE(timers.count, after);
}

void tst_SupervisionTreeModel::flushInterval_defaultAndBadInput()
{
    Model model;
    QCOMPARE(model.flushInterval(), 100);
    QSignalSpy changed(&model, &Model::flushIntervalChanged);
    model.setFlushInterval(50);
    QCOMPARE(model.flushInterval(), 50);
    QCOMPARE(changed.size(), 1);
    QCOMPARE(changed.first().at(0).toInt(), 50);
    model.setFlushInterval(50);
    QCOMPARE(changed.size(), 1);
    QTest::ignoreMessage(QtWarningMsg, "SupervisionTreeModel::setFlushInterval: the interval must be >= 0, got -1; ignored");
    model.setFlushInterval(-1);
    QCOMPARE(model.flushInterval(), 50);
    QCOMPARE(changed.size(), 1);
    QCOMPARE(Model::staticMetaObject.property(Model::staticMetaObject.indexOfProperty("flushInterval")).read(&model).toInt(), 50);
}

void tst_SupervisionTreeModel::flushInterval_zeroFlushesOnlyOnRequest()
{
    Supervisor root;
    root.setMaxRestarts(-1);
    root.setBackoff(stage::Backoff::none());
    addGroup(&root, QStringLiteral("crash"), crash);
    Model model;
    model.setFlushInterval(0);
    TimerCounter timers(&model);
    model.setRoot(&root);
    QSignalSpy changed(&model, &Model::dataChanged);
    root.start();
    QTRY_VERIFY_WITH_TIMEOUT(root.restarts() > 100, Timeout);
    QTest::qWait(200); // a window: nothing flushes by itself
    QCOMPARE(timers.count, 0);
    QCOMPARE(changed.size(), 0);
    model.flush();
    QCOMPARE(changed.size(), 2); // the root's row, the group's row
    // An interval set while a view is connected starts the timer.
    model.setFlushInterval(10);
    QTRY_VERIFY_WITH_TIMEOUT(changed.size() > 4, Timeout);
    QVERIFY(timers.count > 0);
}

void tst_SupervisionTreeModel::roots_severalAndBadInput()
{
    Supervisor one, two;
    one.setObjectName(QStringLiteral("one"));
    two.setObjectName(QStringLiteral("two"));
    Group *inside = addGroup(&one, QStringLiteral("inside"), idle);
    Model model;
    Tester tester(&model, Tester::FailureReportingMode::Fatal);
    QSignalSpy rootChanged(&model, &Model::rootChanged);
    QCOMPARE(model.root(), nullptr);
    model.addRoot(&one);
    model.addRoot(&two);
    QCOMPARE(model.roots(), (QList<Node *>{&one, &two}));
    QCOMPARE(model.root(), &one);
    QCOMPARE(rootChanged.size(), 1);
    QCOMPARE(mismatch(model, {&one, &two}), QString());

    QTest::ignoreMessage(QtWarningMsg, "SupervisionTreeModel::addRoot: the node is null; ignored");
    model.addRoot(nullptr);
    QTest::ignoreMessage(QtWarningMsg, "SupervisionTreeModel::addRoot: two is shown already; ignored");
    model.addRoot(&two);
    QTest::ignoreMessage(QtWarningMsg, "SupervisionTreeModel::addRoot: inside is shown already; ignored");
    model.addRoot(inside);
    QTest::ignoreMessage(QtWarningMsg, "SupervisionTreeModel::removeRoot: inside is not a root of this model; ignored");
    model.removeRoot(inside);
    {
        stagetest::ScopedThread thread;
        Group *foreign = nullptr;
        QMetaObject::invokeMethod(
            thread.context(), [&] {
                foreign = new Group;
                foreign->setObjectName(QStringLiteral("foreign"));
            },
            Qt::BlockingQueuedConnection);
        QTest::ignoreMessage(QtWarningMsg,
                             "SupervisionTreeModel::addRoot: foreign lives on another thread than the model; ignored");
        model.addRoot(foreign);
        QTest::ignoreMessage(QtWarningMsg,
                             "SupervisionTreeModel::setRoot: foreign lives on another thread than the model; ignored");
        model.setRoot(foreign);
        QMetaObject::invokeMethod(thread.context(), [&] { delete foreign; }, Qt::BlockingQueuedConnection);
    }
    QCOMPARE(model.roots(), (QList<Node *>{&one, &two}));
    QCOMPARE(rootChanged.size(), 1);

    model.removeRoot(&one);
    QCOMPARE(model.roots(), QList<Node *>{&two});
    QCOMPARE(rootChanged.size(), 2);
    QCOMPARE(rootChanged.last().at(0).value<Node *>(), &two);
    model.setRoot(inside); // a node inside another tree may be shown alone
    QCOMPARE(model.roots(), QList<Node *>{inside});
    model.setRoot(inside); // unchanged: nothing
    QCOMPARE(rootChanged.size(), 3);
    model.setRoot(nullptr);
    QCOMPARE(model.rowCount(), 0);
    QCOMPARE(rootChanged.size(), 4);
    QCOMPARE(rootChanged.last().at(0).value<Node *>(), nullptr);
    // The property, as QML sets it.
    QVERIFY(model.setProperty("root", QVariant::fromValue<Node *>(&one)));
    QCOMPARE(model.root(), &one);
}

void tst_SupervisionTreeModel::root_adoptedByAShownSupervisorMovesUnderIt()
{
    Supervisor top;
    top.setObjectName(QStringLiteral("top"));
    auto *other = newSupervisor(QStringLiteral("other"));
    addGroup(other, QStringLiteral("x"), idle);
    Model model;
    Tester tester(&model, Tester::FailureReportingMode::Fatal);
    model.addRoot(&top);
    model.addRoot(other);
    QCOMPARE(model.rowCount(), 2);
    QVERIFY(top.addChild(other));
    QCOMPARE(model.roots(), QList<Node *>{&top});
    QCOMPARE(mismatch(model, {&top}), QString());
}

void tst_SupervisionTreeModel::churn_staysConsistentUnderTheTester()
{
    // Random changes for three seconds while crash groups restart as fast as they can: children
    // added (groups and whole subtrees), removed (deleted, kept, or added back elsewhere),
    // deleted, stopped and restarted by request, some from inside a slot of the root, with a
    // flush every 10 ms, and QAbstractItemModelTester (Fatal) checking every signal.
    const quint32 seed = QRandomGenerator::global()->generate();
    qInfo("seed %u", seed);
    m_random.seed(seed);
    auto chance = [this](int percent) { return int(m_random() % 100) < percent; };
    auto pick = [this](int n) { return int(m_random() % quint32(n)); };

    Supervisor root;
    root.setObjectName(QStringLiteral("root"));
    root.setMaxRestarts(-1);
    root.setBackoff(stage::Backoff::none());
    Model model;
    model.setFlushInterval(10);
    Tester tester(&model, Tester::FailureReportingMode::Fatal);
    model.setRoot(&root);
    std::vector<QPointer<Node>> detached;
    int serial = 0;

    auto supervisors = [&root] {
        std::vector<Supervisor *> all{&root};
        for (size_t i = 0; i < all.size(); ++i)
            for (Node *n : all[i]->childNodes())
                if (auto *s = qobject_cast<Supervisor *>(n))
                    all.push_back(s);
        return all;
    };
    auto nodeCount = [&supervisors] {
        int n = 0;
        for (Supervisor *s : supervisors())
            n += s->childCount();
        return n;
    };
    auto newGroup = [&] {
        auto *g = new Group;
        g->setObjectName(QStringLiteral("g%1").arg(++serial));
        g->setBackoff(stage::Backoff::none());
        if (chance(50)) { // W5's: restarts its worker itself; otherwise every failure escalates
            g->setMaxRestarts(10'000'000);
            g->setRestartPeriod(1000);
        }
        return g;
    };
    bool inOp = false;
    auto randomOp = [&] {
        // One at a time: the slot below must not delete what an op in progress holds (a Stage
        // call delivers the signals it queued, childExited() included, before it returns).
        if (inOp)
            return;
        inOp = true;
        struct Done
        {
            bool &flag;
            ~Done() { flag = false; }
        } done{inOp};
        const auto all = supervisors();
        Supervisor *s = all[size_t(pick(int(all.size())))];
        const QList<Node *> children = s->childNodes();
        const int op = pick(100);
        if (op < 25 && nodeCount() < 60) {
            Group *g = newGroup();
            s->addChild(g);
            if (chance(70))
                g->spawn(crash);
            else
                g->spawn(idle);
        } else if (op < 35 && nodeCount() < 60) {
            Supervisor *sub = newSupervisor(QStringLiteral("s%1").arg(++serial));
            const bool childrenFirst = chance(50);
            if (!childrenFirst)
                s->addChild(sub);
            for (int i = pick(4); i > 0; --i) {
                Group *g = newGroup();
                sub->addChild(g);
                g->spawn(chance(50) ? crash : idle);
            }
            if (childrenFirst)
                s->addChild(sub);
        } else if (op < 55 && !children.isEmpty()) {
            Node *n = children[pick(int(children.size()))];
            s->removeChild(n);
            if (chance(50))
                delete n;
            else if (chance(50))
                n->deleteLater();
            else
                detached.push_back(n);
        } else if (op < 70 && !children.isEmpty()) {
            delete children[pick(int(children.size()))];
        } else if (op < 80 && !detached.empty()) {
            const size_t i = size_t(pick(int(detached.size())));
            Node *n = detached[i].data();
            detached.erase(detached.begin() + qsizetype(i));
            if (n && !n->supervisor() && s->isRunning() && nodeCount() < 60)
                s->addChild(n);
            else
                delete n;
        } else if (op < 90 && !children.isEmpty()) {
            Node *n = children[pick(int(children.size()))];
            if (chance(50))
                s->terminateChild(n);
            else if (s->isRunning())
                s->restartChild(n);
        } else if (op < 91) {
            model.setRoot(nullptr);
            model.setRoot(&root);
        }
    };
    // Some changes from inside a slot of the root (delivered from the event loop), where Stage
    // holds back what they emit until the slot returns.
    connect(&root, &Supervisor::childExited, &model, [&](Node *, bool, const QString &) {
        if (chance(2))
            randomOp();
    });
    root.start();
    QElapsedTimer clock;
    clock.start();
    int ops = 0;
    while (clock.elapsed() < 3000) {
        for (int i = 0; i < 5; ++i, ++ops)
            randomOp();
        QCoreApplication::processEvents();
        if (nodeCount() < 10)
            for (int i = 0; i < 5; ++i)
                selfRestarting(&root, QStringLiteral("refill%1").arg(++serial), crash);
    }
    QCOMPARE(mismatch(model, {&root}), QString());
    model.flush();
    QCOMPARE(mismatch(model, {&root}), QString());
    qInfo("%d random changes, %d nodes at the end, %lld restarts by the root", ops, nodeCount(), root.restarts());
    for (const auto &n : detached)
        delete n.data();
}

QTEST_GUILESS_MAIN(tst_SupervisionTreeModel)
#include "tst_supervisiontreemodel.moc"
