#include <stage/group.h>
#include <stage/mailbox.h>
#include <stage/supervisiontreemodel.h>
#include <stage/supervisor.h>

#include <QtCore/QBasicTimer>
#include <QtCore/QDateTime>
#include <QtCore/QElapsedTimer>
#include <QtCore/QHash>
#include <QtCore/QLoggingCategory>
#include <QtCore/QMetaEnum>
#include <QtCore/QMetaMethod>
#include <QtCore/QPointer>
#include <QtCore/QThread>
#include <QtCore/QTimerEvent>

#include <algorithm>
#include <array>
#include <climits>
#include <deque>
#include <vector>

Q_LOGGING_CATEGORY(lcModel, "stage.model", QtInfoMsg)

namespace stage {

namespace {

using Model = SupervisionTreeModel;

constexpr int kBuckets = 12;        // the sparkline: a minute ...
constexpr qint64 kBucketMs = 5000;  // ... in buckets of 5 s
constexpr qint64 kUptimeTickMs = 1000;
// recentRestarts() counts its window, up to maxRestarts + 1 timestamps: read every flush up to
// this many, at most once per kRecentPollMs above (W5's groups have 10,000,000).
constexpr int kCheapWindow = 64;
constexpr qint64 kRecentPollMs = 1000;

/* A role as a bit of a mask: the custom roles in order, DisplayRole last. */
constexpr quint32 bit(Model::Role role)
{
    return 1u << (role - Model::NodeRole);
}
constexpr int kCustomRoles = Model::ChildCountRole - Model::NodeRole + 1;
static_assert(kCustomRoles < 31, "one bit per role, and one for DisplayRole");
constexpr quint32 kDisplay = 1u << 31;

// What a change of a polled value invalidates.
constexpr quint32 kHistoryBits = bit(Model::UptimeRole) | bit(Model::LastExitReasonRole) | bit(Model::HistoryRole) | kDisplay;
constexpr quint32 kStateBits = bit(Model::StateRole) | bit(Model::StateTextRole) | kHistoryBits;
constexpr quint32 kBudgetBits = bit(Model::RestartBudgetRole) | kDisplay;
constexpr quint32 kMailboxBits = bit(Model::HasMailboxRole) | bit(Model::MailboxDepthRole) | bit(Model::DeadLettersRole)
    | bit(Model::DeadLetterReasonsRole) | kDisplay;

bool isRunningState(Node::State state)
{
    return state == Node::State::Starting || state == Node::State::Running || state == Node::State::Restarting;
}

const QString &stateText(Node::State state)
{
    static const std::array<QString, 7> texts = [] {
        std::array<QString, 7> t;
        const QMetaEnum e = QMetaEnum::fromType<Node::State>();
        for (int i = 0; i < int(t.size()); ++i)
            t[size_t(i)] = QString::fromLatin1(e.valueToKey(i));
        return t;
    }();
    const int i = int(state);
    static const QString none;
    return i >= 0 && i < int(texts.size()) ? texts[size_t(i)] : none;
}

QString strategyText(int strategy)
{
    if (strategy < 0)
        return QString();
    return QString::fromLatin1(QMetaEnum::fromType<Supervisor::Strategy>().valueToKey(strategy));
}

QString kindOf(const Node *node)
{
    // A kind of node may name itself (an actor is a Group, yet "Actor"); its subclasses (the QML
    // types) inherit the name.
    const QMetaObject *meta = node->metaObject();
    const int info = meta->indexOfClassInfo("StageKind");
    if (info >= 0)
        return QString::fromLatin1(meta->classInfo(info).value());
    const QString name = QString::fromLatin1(meta->className());
    const qsizetype colons = name.lastIndexOf(QLatin1String("::"));
    return colons < 0 ? name : name.mid(colons + 2);
}

QString uptimeText(qint64 ms)
{
    const qint64 s = ms / 1000;
    if (s < 60)
        return QStringLiteral("%1 s").arg(s);
    if (s < 3600)
        return QStringLiteral("%1 min %2 s").arg(s / 60).arg(s % 60);
    return QStringLiteral("%1 h %2 min").arg(s / 3600).arg((s % 3600) / 60);
}

/* What a flush compares: the values a view shows, as the last flush (or the insertion) saw them. */
struct Snapshot
{
    QString name;
    QString reason;
    Node::State state = Node::State::Idle;
    int strategy = -1; // Supervisor::Strategy, -1 for other kinds
    int size = 0;
    int running = 0;
    int recent = 0;
    int maxRestarts = -1;
    qint64 started = 0;
    qint64 failed = 0;
    qint64 restarts = 0;
    const void *mailbox = nullptr; // compared, never dereferenced
    int depth = 0;
    int dead = 0;
};

} // namespace

/* One shown node. Its address is the internalPointer of its indexes, stable while it is shown. */
struct TreeRecord
{
    Node *node = nullptr; // nullptr once destroyed (dead), until its row is removed
    TreeRecord *parent = nullptr;
    int row = 0;
    std::vector<TreeRecord *> children;
    Supervisor *supervisor = nullptr;
    Group *group = nullptr;
    QString kind;
    Snapshot snap;
    std::array<int, kBuckets> sparkline{};
    quint32 pending = 0; // roles changed and not emitted yet
    quint64 dirtyMark = 0;
    qint64 polledMs = 0; // the model's clock when snap was taken
    qint64 recentPolledMs = 0; // ... when snap.recent was
    bool nameChanged = false;
    bool dead = false;
    QMetaObject::Connection destroyedConnection;
    QMetaObject::Connection nameConnection;
    QMetaObject::Connection addedConnection;
    QMetaObject::Connection removedConnection;
    // Read from history() when asked; valid until a flush sees the node change.
    mutable bool historyRead = false;
    mutable qint64 runningSince = -1; // ms since the epoch; -1: not running
    mutable QString lastExit;
};

class SupervisionTreeModelPrivate
{
public:
    explicit SupervisionTreeModelPrivate(SupervisionTreeModel *model) : q(model) { clock.start(); }

    struct Work
    {
        enum Type { Reconcile, InsertRoot, RemoveRoot, ClearRoots } type;
        QPointer<Node> node;
    };

    using Records = std::vector<TreeRecord *>;

    TreeRecord *recordOf(const QModelIndex &index) const
    {
        if (!index.isValid() || index.model() != q)
            return nullptr;
        return static_cast<TreeRecord *>(index.internalPointer());
    }
    Records &listOf(TreeRecord *parent) { return parent ? parent->children : roots; }
    const Records &listOf(const TreeRecord *parent) const { return parent ? parent->children : roots; }
    QModelIndex indexOfRecord(TreeRecord *record, int column = 0) const
    {
        return record ? q->createIndex(record->row, column, record) : QModelIndex();
    }
    Node *firstRoot() const
    {
        for (TreeRecord *r : roots)
            if (!r->dead)
                return r->node;
        return nullptr;
    }
    bool checkThread(const char *function) const
    {
        if (QThread::currentThread() == q->thread())
            return true;
        qCWarning(lcModel, "%s: called from another thread than the model's; ignored", function);
        return false;
    }

    // Structure: every change goes through process(), one step at a time.
    void enqueue(Work::Type type, Node *node);
    void process(TreeRecord *deadNow = nullptr);
    void reconcile(Node *supervisorNode);
    void insertRoot(Node *node);
    bool removeRows(TreeRecord *parent, int first, int last);
    bool insertRows(TreeRecord *parent, int first, const QList<Node *> &nodes);
    TreeRecord *build(Node *node, TreeRecord *parent, int row);
    TreeRecord *trackedInSubtree(Node *node) const;
    void release(TreeRecord *record, bool disconnect);
    void sweep();
    void onDestroyed(QObject *object);

    // Status.
    quint32 poll(TreeRecord *record, qint64 now);
    void emitPending(const QPointer<SupervisionTreeModel> &self);
    void updateTimer();
    void readHistory(const TreeRecord *record) const;
    QVariant display(const TreeRecord *record, int column) const;
    qint64 uptime(const TreeRecord *record) const;

    SupervisionTreeModel *q;
    Records roots;
    QHash<const QObject *, TreeRecord *> records; // the live ones
    std::deque<Work> work;
    bool processing = false;
    bool needSweep = false;
    bool flushing = false;
    bool flushAfterProcessing = false;
    Node *announcedRoot = nullptr; // root() as rootChanged() last told
    quint64 version = 0; // bumped by every row insertion or removal
    QBasicTimer timer;
    int flushInterval = 100;
    QElapsedTimer clock;
    qint64 lastUptimeTickMs = 0;
    qint64 bucket = 0; // the sparkline's newest bucket: clock ms / kBucketMs
    quint64 flushEpoch = 0;
    quint64 rootsDirtyMark = 0;
};

// Structure

void SupervisionTreeModelPrivate::enqueue(Work::Type type, Node *node)
{
    work.push_back(Work{type, QPointer<Node>(node)});
}

/*
    Runs the queued structural work. Only one process() runs at a time: what a slot of our own
    row signals asks for (a node it deletes, a child it adds) is queued and done by the loop in
    progress, after the step that emitted, never inside a begin/end pair.
*/
void SupervisionTreeModelPrivate::process(TreeRecord *deadNow)
{
    if (processing)
        return;
    processing = true;
    const QPointer<SupervisionTreeModel> self(q);
    if (deadNow && !removeRows(deadNow->parent, deadNow->row, deadNow->row))
        return;
    for (;;) {
        if (!work.empty()) {
            const Work w = work.front();
            work.pop_front();
            switch (w.type) {
            case Work::Reconcile:
                if (w.node)
                    reconcile(w.node);
                break;
            case Work::InsertRoot:
                if (w.node)
                    insertRoot(w.node);
                break;
            case Work::RemoveRoot:
                if (TreeRecord *r = w.node ? records.value(w.node) : nullptr; r && !r->parent)
                    removeRows(nullptr, r->row, r->row);
                break;
            case Work::ClearRoots:
                if (!roots.empty())
                    removeRows(nullptr, 0, int(roots.size()) - 1);
                break;
            }
        } else if (needSweep) {
            needSweep = false;
            sweep();
        } else {
            break;
        }
        if (!self)
            return;
    }
    processing = false;
    Node *root = firstRoot();
    if (root != announcedRoot) {
        announcedRoot = root;
        emit q->rootChanged(root);
        if (!self)
            return;
    }
    if (flushAfterProcessing) {
        flushAfterProcessing = false;
        q->flush();
    }
}

/* Brings the rows of a shown supervisor in line with its childNodes(), one step at a time. */
void SupervisionTreeModelPrivate::reconcile(Node *supervisorNode)
{
    const QPointer<SupervisionTreeModel> self(q);
    for (;;) {
        TreeRecord *p = records.value(supervisorNode);
        if (!p || !p->supervisor)
            return;
        const QList<Node *> real = p->supervisor->childNodes();
        Records &rows = p->children;
        const int n = int(rows.size());
        const int m = int(real.size());
        int i = 0;
        while (i < n && i < m && !rows[size_t(i)]->dead && rows[size_t(i)]->node == real[i])
            ++i;
        if (i == n && i == m)
            return;
        // A row whose node is gone or is no longer this supervisor's child: it and the stale
        // rows right after it leave together.
        auto stale = [&](const TreeRecord *r) { return r->dead || r->node->supervisor() != p->supervisor; };
        if (i < n && stale(rows[size_t(i)])) {
            int last = i;
            while (last + 1 < n && stale(rows[size_t(last + 1)]))
                ++last;
            if (!removeRows(p, i, last) || !self)
                return;
            continue;
        }
        if (i >= m)
            return; // cannot happen: a row that is not stale is one of real[i..]
        // real[i] belongs at row i. Shown elsewhere (or further down): it leaves its place first.
        if (TreeRecord *elsewhere = records.value(real[i])) {
            if (!removeRows(elsewhere->parent, elsewhere->row, elsewhere->row))
                return;
            continue;
        }
        if (TreeRecord *inside = trackedInSubtree(real[i])) {
            if (!removeRows(inside->parent, inside->row, inside->row))
                return;
            continue;
        }
        int end = i + 1;
        while (end < m && !records.contains(real[end]) && !trackedInSubtree(real[end]))
            ++end;
        if (!insertRows(p, i, real.mid(i, end - i)))
            return;
    }
}

void SupervisionTreeModelPrivate::insertRoot(Node *node)
{
    for (;;) {
        if (records.contains(node))
            return; // it joined a shown tree meanwhile
        if (TreeRecord *inside = trackedInSubtree(node)) {
            if (!removeRows(inside->parent, inside->row, inside->row))
                return;
            continue;
        }
        insertRows(nullptr, int(roots.size()), QList<Node *>{node});
        return;
    }
}

/* The first shown node in \a node's real subtree (itself included), or nullptr. */
TreeRecord *SupervisionTreeModelPrivate::trackedInSubtree(Node *node) const
{
    std::vector<Node *> stack{node};
    while (!stack.empty()) {
        Node *n = stack.back();
        stack.pop_back();
        if (TreeRecord *r = records.value(n))
            return r;
        if (auto *s = qobject_cast<Supervisor *>(n)) {
            const QList<Node *> children = s->childNodes();
            stack.insert(stack.end(), children.begin(), children.end());
        }
    }
    return nullptr;
}

/* Returns false if the model was deleted by a slot of its signals (nothing may be touched then). */
bool SupervisionTreeModelPrivate::removeRows(TreeRecord *parent, int first, int last)
{
    const QPointer<SupervisionTreeModel> self(q);
    q->beginRemoveRows(indexOfRecord(parent), first, last);
    if (!self)
        return false;
    Records &list = listOf(parent);
    const Records removed(list.begin() + first, list.begin() + last + 1);
    list.erase(list.begin() + first, list.begin() + last + 1);
    for (size_t i = size_t(first); i < list.size(); ++i)
        list[i]->row = int(i);
    ++version;
    if (parent)
        parent->pending |= bit(Model::ChildCountRole);
    for (TreeRecord *r : removed)
        release(r, true);
    q->endRemoveRows();
    return bool(self);
}

bool SupervisionTreeModelPrivate::insertRows(TreeRecord *parent, int first, const QList<Node *> &nodes)
{
    const QPointer<SupervisionTreeModel> self(q);
    Records built;
    built.reserve(size_t(nodes.size()));
    for (int i = 0; i < nodes.size(); ++i)
        built.push_back(build(nodes[i], parent, first + i));
    q->beginInsertRows(indexOfRecord(parent), first, first + int(nodes.size()) - 1);
    if (!self)
        return false; // (Qt itself cannot survive that: it reads the model after the signal)
    // A slot of rowsAboutToBeInserted may have deleted one of them: it stays (dead) until the
    // sweep that follows, a row like any other meanwhile.
    Records &list = listOf(parent);
    list.insert(list.begin() + first, built.begin(), built.end());
    for (size_t i = size_t(first); i < list.size(); ++i)
        list[i]->row = int(i);
    ++version;
    if (parent)
        parent->pending |= bit(Model::ChildCountRole);
    q->endInsertRows();
    return bool(self);
}

TreeRecord *SupervisionTreeModelPrivate::build(Node *node, TreeRecord *parent, int row)
{
    auto *r = new TreeRecord;
    r->node = node;
    r->parent = parent;
    r->row = row;
    r->supervisor = qobject_cast<Supervisor *>(node);
    r->group = r->supervisor ? nullptr : qobject_cast<Group *>(node);
    static const QString supervisorKind = QStringLiteral("Supervisor");
    static const QString groupKind = QStringLiteral("Group");
    r->kind = r->supervisor                                                             ? supervisorKind
              : r->group && r->group->metaObject()->indexOfClassInfo("StageKind") < 0 ? groupKind
                                                                                       : kindOf(node);
    records.insert(node, r);
    r->destroyedConnection = QObject::connect(node, &QObject::destroyed, q, [this](QObject *o) { onDestroyed(o); });
    // A name changes seldom: told, not polled (objectName() is a bindable property's read).
    r->nameConnection = QObject::connect(node, &QObject::objectNameChanged, q, [r] { r->nameChanged = true; });
    r->snap.name = node->objectName();
    if (Supervisor *s = r->supervisor) {
        // The argument may be a node deleted since (the signal waited for an operation to
        // finish): never read; the supervisor's childNodes() says what is.
        r->addedConnection = QObject::connect(s, &Supervisor::childAdded, q, [this, s](Node *) {
            enqueue(Work::Reconcile, s);
            process();
        });
        r->removedConnection = QObject::connect(s, &Supervisor::childRemoved, q, [this, s](Node *) {
            enqueue(Work::Reconcile, s);
            process();
        });
    }
    const qint64 now = clock.elapsed();
    // Spread the throttled reads of recentRestarts() over the second.
    r->recentPolledMs = now - qint64(qHash(node) % quint64(kRecentPollMs));
    poll(r, now);
    r->polledMs = now;
    if (Supervisor *s = r->supervisor) {
        const QList<Node *> children = s->childNodes();
        r->children.reserve(size_t(children.size()));
        for (int i = 0; i < children.size(); ++i)
            r->children.push_back(build(children[i], r, i));
    }
    r->pending = 0;
    return r;
}

/* Forgets \a record and its subtree (no signal) and frees them. */
void SupervisionTreeModelPrivate::release(TreeRecord *record, bool disconnect)
{
    std::vector<TreeRecord *> stack{record};
    while (!stack.empty()) {
        TreeRecord *r = stack.back();
        stack.pop_back();
        stack.insert(stack.end(), r->children.begin(), r->children.end());
        if (!r->dead) {
            auto it = records.find(r->node);
            if (it != records.end() && it.value() == r)
                records.erase(it);
        }
        if (disconnect) {
            QObject::disconnect(r->destroyedConnection);
            QObject::disconnect(r->nameConnection);
            QObject::disconnect(r->addedConnection);
            QObject::disconnect(r->removedConnection);
        }
        delete r;
    }
}

/* Removes the rows of destroyed nodes that could not be removed when they were destroyed. */
void SupervisionTreeModelPrivate::sweep()
{
    for (;;) {
        TreeRecord *found = nullptr;
        std::vector<TreeRecord *> stack(roots.rbegin(), roots.rend());
        while (!stack.empty() && !found) {
            TreeRecord *r = stack.back();
            stack.pop_back();
            if (r->dead)
                found = r;
            else
                stack.insert(stack.end(), r->children.rbegin(), r->children.rend());
        }
        if (!found || !removeRows(found->parent, found->row, found->row))
            return;
    }
}

void SupervisionTreeModelPrivate::onDestroyed(QObject *object)
{
    // Emitted by ~QObject: the Node part is gone already. Only the address is used.
    TreeRecord *r = records.value(object);
    if (!r)
        return;
    records.remove(object);
    r->dead = true;
    r->node = nullptr;
    r->supervisor = nullptr;
    r->group = nullptr;
    if (processing) {
        needSweep = true; // inside a step: removed by the loop in progress, after that step
        return;
    }
    process(r);
}

// Status

/* Reads \a record's node, updates its snapshot, and returns the roles that changed. */
quint32 SupervisionTreeModelPrivate::poll(TreeRecord *record, qint64 now)
{
    Node *node = record->node;
    Snapshot &s = record->snap;
    quint32 changed = 0;
    auto update = [&changed](auto &field, const auto &value, quint32 bits) {
        if (field != value) {
            field = value;
            changed |= bits;
        }
    };
    if (record->nameChanged) {
        record->nameChanged = false;
        update(s.name, node->objectName(), bit(Model::NameRole) | kDisplay);
    }
    update(s.state, node->state(), kStateBits);
    update(s.reason, node->stateReason(), bit(Model::StateReasonRole) | kHistoryBits);
    // recentRestarts() of a limit above kCheapWindow: at once when a node starts restarting (or
    // its limit changes), then once per kRecentPollMs while restarts go on or the window empties.
    auto readRecent = [&](qint64 restartsBefore, int maxBefore) {
        if (s.maxRestarts < 0) // unlimited: nothing is counted
            return s.recent != 0 || s.maxRestarts != maxBefore;
        if (s.maxRestarts != maxBefore)
            return true;
        if (s.restarts == restartsBefore && s.recent == 0)
            return false; // it grows only with a restart
        if (s.maxRestarts <= kCheapWindow || s.recent == 0)
            return true;
        return now - record->recentPolledMs >= kRecentPollMs;
    };
    if (Group *g = record->group) {
        const qint64 restartsBefore = s.restarts;
        const int maxBefore = s.maxRestarts;
        update(s.size, g->size(), bit(Model::SizeRole));
        update(s.running, g->running(), bit(Model::RunningRole));
        update(s.started, g->started(), bit(Model::StartedRole) | kHistoryBits);
        update(s.failed, g->failed(), bit(Model::FailedRole) | kHistoryBits);
        update(s.restarts, g->restarted(), bit(Model::RestartsRole) | kHistoryBits);
        update(s.maxRestarts, g->maxRestarts(), bit(Model::MaxRestartsRole) | kBudgetBits);
        if (readRecent(restartsBefore, maxBefore)) {
            record->recentPolledMs = now;
            update(s.recent, g->recentRestarts(), bit(Model::RecentRestartsRole) | kBudgetBits);
        }
        MailboxBase *mailbox = g->mailbox();
        update(s.mailbox, static_cast<const void *>(mailbox), kMailboxBits);
        update(s.depth, mailbox ? mailbox->count() : 0, bit(Model::MailboxDepthRole) | kDisplay);
        update(s.dead, mailbox ? mailbox->deadLetterCount() : 0,
               bit(Model::DeadLettersRole) | bit(Model::DeadLetterReasonsRole) | kDisplay);
    } else if (Supervisor *sv = record->supervisor) {
        const qint64 restartsBefore = s.restarts;
        const int maxBefore = s.maxRestarts;
        const SupervisorStatistics st = sv->statistics();
        update(s.strategy, int(sv->strategy()), bit(Model::StrategyRole));
        update(s.size, st.children, bit(Model::SizeRole));
        update(s.running, st.runningChildren, bit(Model::RunningRole));
        update(s.started, st.childrenRestarted, bit(Model::StartedRole) | kHistoryBits);
        update(s.failed, st.childFailures, bit(Model::FailedRole) | kHistoryBits);
        update(s.restarts, st.restarts, bit(Model::RestartsRole) | kHistoryBits);
        update(s.maxRestarts, sv->maxRestarts(), bit(Model::MaxRestartsRole) | kBudgetBits);
        if (readRecent(restartsBefore, maxBefore)) {
            record->recentPolledMs = now;
            update(s.recent, sv->recentRestarts(), bit(Model::RecentRestartsRole) | kBudgetBits);
        }
    }
    if (changed & kHistoryBits)
        record->historyRead = false;
    return changed;
}

void SupervisionTreeModelPrivate::readHistory(const TreeRecord *record) const
{
    if (record->historyRead)
        return;
    record->historyRead = true;
    record->runningSince = -1;
    record->lastExit.clear();
    if (record->dead)
        return;
    const QList<NodeEvent> history = record->node->history();
    bool lastExitFound = false;
    for (qsizetype i = history.size() - 1; i >= 0 && !lastExitFound; --i) {
        const Node::State st = history[i].state;
        if (st == Node::State::Stopped || st == Node::State::Failed || st == Node::State::Restarting) {
            record->lastExit = history[i].reason;
            lastExitFound = true;
        }
    }
    if (!lastExitFound) {
        const Node::State st = record->snap.state;
        if (st == Node::State::Stopped || st == Node::State::Failed || st == Node::State::Restarting)
            record->lastExit = record->snap.reason;
    }
    if (history.isEmpty() || !isRunningState(history.last().state))
        return;
    // The last entry into Starting/Running from a state that was not running; the oldest event
    // kept if the history no longer reaches it.
    qsizetype i = history.size() - 1;
    while (i > 0 && isRunningState(history[i - 1].state))
        --i;
    record->runningSince = history[i].timestamp;
}

qint64 SupervisionTreeModelPrivate::uptime(const TreeRecord *record) const
{
    if (!isRunningState(record->snap.state))
        return 0;
    readHistory(record);
    if (record->runningSince < 0)
        return 0;
    return std::max<qint64>(0, QDateTime::currentMSecsSinceEpoch() - record->runningSince);
}

QVariant SupervisionTreeModelPrivate::display(const TreeRecord *record, int column) const
{
    const Snapshot &s = record->snap;
    switch (column) {
    case Model::NameColumn:
        return s.name.isEmpty() ? record->kind : s.name;
    case Model::StateColumn:
        return stateText(s.state);
    case Model::RestartsColumn:
        return qlonglong(s.restarts);
    case Model::BudgetColumn:
        if (record->group || record->supervisor) {
            if (s.maxRestarts < 0)
                return QStringLiteral("unlimited");
            return QStringLiteral("%1/%2").arg(s.recent).arg(s.maxRestarts);
        }
        return QString();
    case Model::UptimeColumn: {
        const qint64 ms = uptime(record);
        return isRunningState(s.state) ? uptimeText(ms) : QString();
    }
    case Model::MailboxColumn:
        if (!s.mailbox)
            return QString();
        return QStringLiteral("depth %1, dead %2").arg(s.depth).arg(s.dead);
    case Model::LastExitColumn:
        readHistory(record);
        return record->lastExit;
    default:
        return QVariant();
    }
}

void SupervisionTreeModelPrivate::emitPending(const QPointer<SupervisionTreeModel> &self)
{
    // The parents with rows to report, collected from scratch whenever a slot changed the rows.
    std::vector<TreeRecord *> parents;
    bool rootsDirty = false;
    auto collect = [&] {
        ++flushEpoch;
        parents.clear();
        rootsDirty = false;
        for (TreeRecord *r : std::as_const(records)) {
            if (!r->pending)
                continue;
            if (!r->parent) {
                rootsDirty = true;
            } else if (r->parent->dirtyMark != flushEpoch) {
                r->parent->dirtyMark = flushEpoch;
                parents.push_back(r->parent);
            }
        }
    };
    collect();
    quint64 seen = version;
    for (;;) {
        TreeRecord *parent = nullptr;
        if (rootsDirty) {
            rootsDirty = false;
        } else if (!parents.empty()) {
            parent = parents.back();
            parents.pop_back();
        } else {
            return;
        }
        for (size_t i = 0;;) {
            // Re-read after every signal: a slot may have changed the rows (then all is collected
            // again and this list is not touched any more: its parent may be gone).
            const Records &list = listOf(parent);
            while (i < list.size() && !list[i]->pending)
                ++i;
            if (i == list.size())
                break;
            size_t end = i;
            quint32 mask = 0;
            while (end < list.size() && list[end]->pending) {
                mask |= list[end]->pending;
                list[end]->pending = 0;
                ++end;
            }
            QList<int> roles;
            for (int b = 0; b < kCustomRoles; ++b)
                if (mask & (1u << b))
                    roles.append(Model::NodeRole + b);
            if (mask & kDisplay)
                roles.append(Qt::DisplayRole);
            emit q->dataChanged(q->createIndex(int(i), 0, list[i]),
                                q->createIndex(int(end - 1), Model::ColumnCount - 1, list[end - 1]), roles);
            if (!self)
                return;
            if (version != seen) {
                seen = version;
                collect();
                break;
            }
            i = end;
        }
    }
}

void SupervisionTreeModelPrivate::updateTimer()
{
    static const QMetaMethod dataChanged = QMetaMethod::fromSignal(&QAbstractItemModel::dataChanged);
    if (flushInterval > 0 && q->isSignalConnected(dataChanged)) {
        if (!timer.isActive())
            timer.start(flushInterval, q);
    } else {
        timer.stop();
    }
}

// SupervisionTreeModel

SupervisionTreeModel::SupervisionTreeModel(QObject *parent)
    : QAbstractItemModel(parent), d(std::make_unique<SupervisionTreeModelPrivate>(this))
{
}

SupervisionTreeModel::~SupervisionTreeModel()
{
    d->timer.stop();
    for (TreeRecord *r : d->roots)
        d->release(r, true);
    d->roots.clear();
}

Node *SupervisionTreeModel::root() const
{
    return d->firstRoot();
}

void SupervisionTreeModel::setRoot(Node *root)
{
    if (!d->checkThread("SupervisionTreeModel::setRoot"))
        return;
    if (root && root->thread() != thread()) {
        qCWarning(lcModel, "SupervisionTreeModel::setRoot: %s lives on another thread than the model; ignored",
                  qPrintable(root->objectName()));
        return;
    }
    if (d->roots.size() == 1 && d->roots.front()->node == root && !d->roots.front()->dead)
        return;
    d->enqueue(SupervisionTreeModelPrivate::Work::ClearRoots, nullptr);
    if (root)
        d->enqueue(SupervisionTreeModelPrivate::Work::InsertRoot, root);
    d->process();
}

void SupervisionTreeModel::addRoot(Node *root)
{
    if (!d->checkThread("SupervisionTreeModel::addRoot"))
        return;
    if (!root) {
        qCWarning(lcModel, "SupervisionTreeModel::addRoot: the node is null; ignored");
        return;
    }
    if (root->thread() != thread()) {
        qCWarning(lcModel, "SupervisionTreeModel::addRoot: %s lives on another thread than the model; ignored",
                  qPrintable(root->objectName()));
        return;
    }
    const bool queued = std::any_of(d->work.begin(), d->work.end(), [root](const auto &w) {
        return w.type == SupervisionTreeModelPrivate::Work::InsertRoot && w.node == root;
    });
    if (queued || d->records.contains(root)) {
        qCWarning(lcModel, "SupervisionTreeModel::addRoot: %s is shown already; ignored", qPrintable(root->objectName()));
        return;
    }
    d->enqueue(SupervisionTreeModelPrivate::Work::InsertRoot, root);
    d->process();
}

void SupervisionTreeModel::removeRoot(Node *root)
{
    if (!d->checkThread("SupervisionTreeModel::removeRoot"))
        return;
    TreeRecord *r = root ? d->records.value(root) : nullptr;
    if (!r || r->parent) {
        qCWarning(lcModel, "SupervisionTreeModel::removeRoot: %s is not a root of this model; ignored",
                  root ? qPrintable(root->objectName()) : "(null)");
        return;
    }
    d->enqueue(SupervisionTreeModelPrivate::Work::RemoveRoot, root);
    d->process();
}

QList<Node *> SupervisionTreeModel::roots() const
{
    QList<Node *> nodes;
    nodes.reserve(qsizetype(d->roots.size()));
    for (TreeRecord *r : d->roots)
        if (!r->dead)
            nodes.append(r->node);
    return nodes;
}

Node *SupervisionTreeModel::nodeAt(const QModelIndex &index) const
{
    const TreeRecord *r = d->recordOf(index);
    return r && !r->dead ? r->node : nullptr;
}

QModelIndex SupervisionTreeModel::indexOf(Node *node, int column) const
{
    if (column < 0 || column >= ColumnCount)
        return QModelIndex();
    TreeRecord *r = node ? d->records.value(node) : nullptr;
    return r ? createIndex(r->row, column, r) : QModelIndex();
}

int SupervisionTreeModel::flushInterval() const
{
    return d->flushInterval;
}

void SupervisionTreeModel::setFlushInterval(int milliseconds)
{
    if (!d->checkThread("SupervisionTreeModel::setFlushInterval"))
        return;
    if (milliseconds < 0) {
        qCWarning(lcModel, "SupervisionTreeModel::setFlushInterval: the interval must be >= 0, got %d; ignored",
                  milliseconds);
        return;
    }
    if (d->flushInterval == milliseconds)
        return;
    d->flushInterval = milliseconds;
    d->timer.stop();
    d->updateTimer();
    emit flushIntervalChanged(milliseconds);
}

void SupervisionTreeModel::flush()
{
    if (!d->checkThread("SupervisionTreeModel::flush"))
        return;
    if (d->flushing)
        return;
    if (d->processing) {
        d->flushAfterProcessing = true; // rows are changing: right after
        return;
    }
    d->flushing = true;
    const QPointer<SupervisionTreeModel> self(this);
    const qint64 now = d->clock.elapsed();
    const qint64 bucket = now / kBucketMs;
    const qint64 shift = bucket - d->bucket;
    const bool uptimeTick = now - d->lastUptimeTickMs >= kUptimeTickMs;
    if (uptimeTick)
        d->lastUptimeTickMs = now;
    d->bucket = bucket;
    std::vector<Supervisor *> mismatched;
    for (TreeRecord *r : std::as_const(d->records)) {
        const qint64 restartsBefore = r->snap.restarts;
        quint32 changed = d->poll(r, now);
        if (shift > 0) {
            const bool any = std::any_of(r->sparkline.begin(), r->sparkline.end(), [](int v) { return v != 0; });
            if (any) {
                if (shift >= kBuckets) {
                    r->sparkline.fill(0);
                } else {
                    std::move(r->sparkline.begin() + shift, r->sparkline.end(), r->sparkline.begin());
                    std::fill(r->sparkline.end() - shift, r->sparkline.end(), 0);
                }
                changed |= bit(RestartSparklineRole);
            }
        }
        // Restarts seen after a long gap (no flush for over a bucket: no view) are not placed.
        const bool gap = now - r->polledMs > kBucketMs;
        r->polledMs = now;
        if (r->snap.restarts > restartsBefore && !gap) {
            r->sparkline.back() += int(std::min<qint64>(r->snap.restarts - restartsBefore, INT_MAX / 2));
            changed |= bit(RestartSparklineRole);
        }
        if (uptimeTick && isRunningState(r->snap.state))
            changed |= bit(UptimeRole) | kDisplay;
        r->pending |= changed;
        // A safety net: rows that missed a childAdded()/childRemoved() catch up.
        if (r->supervisor && r->snap.size != int(r->children.size()))
            mismatched.push_back(r->supervisor);
    }
    for (Supervisor *s : mismatched)
        d->enqueue(SupervisionTreeModelPrivate::Work::Reconcile, s);
    if (!mismatched.empty())
        d->process();
    if (!self)
        return;
    d->emitPending(self);
    if (self)
        d->flushing = false;
}

QModelIndex SupervisionTreeModel::index(int row, int column, const QModelIndex &parent) const
{
    if (row < 0 || column < 0 || column >= ColumnCount)
        return QModelIndex();
    const TreeRecord *p = nullptr;
    if (parent.isValid()) {
        p = d->recordOf(parent);
        if (!p || parent.column() != 0)
            return QModelIndex();
    }
    const auto &list = d->listOf(p);
    if (row >= int(list.size()))
        return QModelIndex();
    return createIndex(row, column, list[size_t(row)]);
}

QModelIndex SupervisionTreeModel::parent(const QModelIndex &child) const
{
    const TreeRecord *r = d->recordOf(child);
    if (!r || !r->parent)
        return QModelIndex();
    return createIndex(r->parent->row, 0, r->parent);
}

QModelIndex SupervisionTreeModel::sibling(int row, int column, const QModelIndex &index) const
{
    const TreeRecord *r = d->recordOf(index);
    if (!r || row < 0 || column < 0 || column >= ColumnCount)
        return QModelIndex();
    const auto &list = d->listOf(r->parent);
    if (row >= int(list.size()))
        return QModelIndex();
    return createIndex(row, column, list[size_t(row)]);
}

int SupervisionTreeModel::rowCount(const QModelIndex &parent) const
{
    if (!parent.isValid())
        return int(d->roots.size());
    const TreeRecord *p = d->recordOf(parent);
    if (!p || parent.column() != 0)
        return 0;
    return int(p->children.size());
}

int SupervisionTreeModel::columnCount(const QModelIndex &) const
{
    return ColumnCount;
}

bool SupervisionTreeModel::hasChildren(const QModelIndex &parent) const
{
    return rowCount(parent) > 0;
}

QVariant SupervisionTreeModel::data(const QModelIndex &index, int role) const
{
    const TreeRecord *r = d->recordOf(index);
    if (!r)
        return QVariant();
    const Snapshot &s = r->snap;
    switch (role) {
    case Qt::DisplayRole:
        return d->display(r, index.column());
    case NodeRole:
        return QVariant::fromValue(r->dead ? nullptr : r->node);
    case NameRole:
        return s.name;
    case KindRole:
        return r->kind;
    case StateRole:
        return int(s.state);
    case StateTextRole:
        return stateText(s.state);
    case StateReasonRole:
        return s.reason;
    case StrategyRole:
        return strategyText(s.strategy);
    case SizeRole:
        return s.size;
    case RunningRole:
        return s.running;
    case StartedRole:
        return qlonglong(s.started);
    case FailedRole:
        return qlonglong(s.failed);
    case RestartsRole:
        return qlonglong(s.restarts);
    case RecentRestartsRole:
        return s.recent;
    case MaxRestartsRole:
        return s.maxRestarts;
    case RestartBudgetRole:
        if (s.maxRestarts < 0)
            return -1.0;
        if (s.maxRestarts == 0)
            return s.recent > 0 ? 1.0 : 0.0;
        return double(s.recent) / double(s.maxRestarts);
    case UptimeRole:
        return d->uptime(r);
    case LastExitReasonRole:
        d->readHistory(r);
        return r->lastExit;
    case HistoryRole: {
        QVariantList list;
        if (r->dead)
            return list;
        const QList<NodeEvent> history = r->node->history();
        list.reserve(history.size());
        for (const NodeEvent &e : history) {
            list.append(QVariantMap{{QStringLiteral("timestamp"), e.timestamp},
                                    {QStringLiteral("state"), int(e.state)},
                                    {QStringLiteral("stateText"), stateText(e.state)},
                                    {QStringLiteral("reason"), e.reason}});
        }
        return list;
    }
    case HasMailboxRole:
        return s.mailbox != nullptr;
    case MailboxDepthRole:
        return s.depth;
    case DeadLettersRole:
        return s.dead;
    case DeadLetterReasonsRole: {
        MailboxBase *mailbox = r->group ? r->group->mailbox() : nullptr;
        return mailbox ? mailbox->deadLetterReasons() : QStringList();
    }
    case RestartSparklineRole: {
        QVariantList list;
        list.reserve(kBuckets);
        for (int v : r->sparkline)
            list.append(v);
        return list;
    }
    case ChildCountRole:
        return int(r->children.size());
    default:
        return QVariant();
    }
}

QVariant SupervisionTreeModel::headerData(int section, Qt::Orientation orientation, int role) const
{
    if (orientation != Qt::Horizontal || role != Qt::DisplayRole)
        return QAbstractItemModel::headerData(section, orientation, role);
    switch (section) {
    case NameColumn:
        return QStringLiteral("Name");
    case StateColumn:
        return QStringLiteral("State");
    case RestartsColumn:
        return QStringLiteral("Restarts");
    case BudgetColumn:
        return QStringLiteral("Budget");
    case UptimeColumn:
        return QStringLiteral("Uptime");
    case MailboxColumn:
        return QStringLiteral("Mailbox");
    case LastExitColumn:
        return QStringLiteral("Last exit");
    default:
        return QVariant();
    }
}

Qt::ItemFlags SupervisionTreeModel::flags(const QModelIndex &index) const
{
    const TreeRecord *r = d->recordOf(index);
    if (!r)
        return Qt::NoItemFlags;
    Qt::ItemFlags f = Qt::ItemIsEnabled | Qt::ItemIsSelectable;
    if (!r->supervisor && !r->dead)
        f |= Qt::ItemNeverHasChildren;
    return f;
}

QHash<int, QByteArray> SupervisionTreeModel::roleNames() const
{
    static const QHash<int, QByteArray> names = [this] {
        QHash<int, QByteArray> n = QAbstractItemModel::roleNames();
        n.insert(NodeRole, "node");
        n.insert(NameRole, "name");
        n.insert(KindRole, "kind");
        n.insert(StateRole, "state");
        n.insert(StateTextRole, "stateText");
        n.insert(StateReasonRole, "stateReason");
        n.insert(StrategyRole, "strategy");
        n.insert(SizeRole, "size");
        n.insert(RunningRole, "running");
        n.insert(StartedRole, "started");
        n.insert(FailedRole, "failed");
        n.insert(RestartsRole, "restarts");
        n.insert(RecentRestartsRole, "recentRestarts");
        n.insert(MaxRestartsRole, "maxRestarts");
        n.insert(RestartBudgetRole, "restartBudget");
        n.insert(UptimeRole, "uptime");
        n.insert(LastExitReasonRole, "lastExitReason");
        n.insert(HistoryRole, "history");
        n.insert(HasMailboxRole, "hasMailbox");
        n.insert(MailboxDepthRole, "mailboxDepth");
        n.insert(DeadLettersRole, "deadLetters");
        n.insert(DeadLetterReasonsRole, "deadLetterReasons");
        n.insert(RestartSparklineRole, "restartSparkline");
        n.insert(ChildCountRole, "childCount");
        return n;
    }();
    return names;
}

void SupervisionTreeModel::timerEvent(QTimerEvent *event)
{
    if (event->timerId() != d->timer.timerId()) {
        QAbstractItemModel::timerEvent(event);
        return;
    }
    static const QMetaMethod dataChanged = QMetaMethod::fromSignal(&QAbstractItemModel::dataChanged);
    if (!isSignalConnected(dataChanged)) {
        d->timer.stop(); // the last view is gone: no more polling until one connects
        return;
    }
    flush();
}

void SupervisionTreeModel::connectNotify(const QMetaMethod &signal)
{
    static const QMetaMethod dataChanged = QMetaMethod::fromSignal(&QAbstractItemModel::dataChanged);
    if (signal == dataChanged) {
        // A view connects from the model's thread; anyone else gets the timer started there.
        if (QThread::currentThread() == thread())
            d->updateTimer();
        else
            QMetaObject::invokeMethod(this, [this] { d->updateTimer(); }, Qt::QueuedConnection);
    }
    QAbstractItemModel::connectNotify(signal);
}

} // namespace stage
