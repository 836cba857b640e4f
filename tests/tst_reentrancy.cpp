// The re-entrancy matrix (issue #20), in the spirit of KJob's testEmitAtMostOnce: every signal of
// every node type (stage::Group, stage::Supervisor, with what they inherit from stage::Node), of
// stage::MailboxBase and of stage::WorkerHandle, x every action a slot may take on the emitter or
// its tree, x where the workers run (the group's thread, or two threads of the group's own).
//
// A row builds a small world, connects one slot (a direct connection) to its signal and drives
// the world through a script that makes the signal fire: failing workers with small restart
// limits (Restarting, Failed, gaveUp), a run-time child added and removed, shutdown (Stopping,
// Stopped). The first emission that matches the row's condition runs the row's action, once.
// From then on the script stops driving: the world settles, everything still alive is shut down,
// and the row checks what is documented: the action ran once, no frame is left, the statistics
// add up, a supervisor's children are what childNodes() says, and every surviving node ended
// Stopped or Failed (a handle Idle or Finished). A crash or a sanitizer report is a failure too:
// the ASan+UBSan build is the judge. Run one row with
//     tst_reentrancy <function>:<row>        (tst_reentrancy -datatags lists them)
//
// Row names read <emitter>/<signal>[:<state>]/<action>/<placement>, for instance
// "group/stateChanged:Stopped/deleteEmitter/main". Emitters:
//   group            a standalone Group of 2 workers restarting them itself at most twice (the
//                    second restart waits 5 ms: Restarting), then giving up (Failed)
//   supervisedGroup  the same Group, first of two children of a root Supervisor (maxRestarts 2):
//                    its third failure escalates and the supervisor restarts it
//   supervisor       a root Supervisor (maxRestarts 2) of two groups that escalate every failure
//                    (2 workers and 1); a third group is added and removed at run time
//   childSupervisor  the same Supervisor under a root Supervisor of its own (maxRestarts 0)
//   mailbox          the MailboxBase of the mailbox the first group of that supervisor reads
//   workerHandle     a WorkerHandle whose worker reads a mailbox; a hanging run is abandoned
// For supervisorChanged, a supervised node is removed from its supervisor and added back.
// Actions (the target is the emitter's, or for a supervisor or a mailbox, its first group's):
//   deleteEmitter, deleteLaterEmitter, deleteSupervisor (the emitter's supervisor, or the
//   consumers' for a mailbox), shutdown (Group/Supervisor::shutdown(), WorkerHandle::requestStop()),
//   start (Group::spawn() for a standalone group, which is refused once spawned; Supervisor::start()
//   on a supervisor emitter, on the root for a supervised group or a mailbox; WorkerHandle::start()),
//   restart (a node has no restart call: a worker is told to fail, and restarts by policy;
//   WorkerHandle::restart()), setSize0 and setSizeUp (the target group), addChild (a new group)
//   and removeChild (the target group) on the supervisor, closeMailbox (the one the target reads).
//
// Waits spin a local event loop polled every millisecond (not QTRY's 10 ms steps: rows are many);
// each has a failsafe (kPhaseMs while driving, stagetest::Timeout for the checks).

#include "testutil.h"

#include <stage/stage.h>

#include <QCoro/QCoroTimer>

#include <QtCore/QElapsedTimer>
#include <QtCore/QEventLoop>
#include <QtCore/QLoggingCategory>
#include <QtCore/QMetaEnum>
#include <QtCore/QPointer>
#include <QtCore/QTimer>
#include <QtTest/QTest>

#include <atomic>
#include <functional>
#include <memory>
#include <stdexcept>
#include <vector>

namespace reentrancy {

using namespace std::chrono_literals;
using stage::Group;
using stage::Node;
using stage::Supervisor;
using stage::WorkerExit;
using stage::WorkerHandle;
using stagetest::Timeout;
using State = stage::Node::State;
using HandleState = stage::WorkerHandle::State;

constexpr int kPhaseMs = 5000; // failsafe of one step of a script (a step takes milliseconds)
constexpr int kSettleMs = 5;   // after the action: let its consequences run before the final shutdown
constexpr auto kHang = 100ms;  // a hanging worker (no cancellation point) outlives the handle's 10 ms stop timeout

enum class Kind { Group, SupervisedGroup, Supervisor, ChildSupervisor, Mailbox, Handle };

enum class Sig {
    // stage::Node (Group and Supervisor)
    StateStarting,
    StateRunning,
    StateRestarting,
    StateStopping,
    StateStopped,
    StateFailed,
    GaveUp,
    Stopped,
    Statistics,
    SupervisorChanged, // supervised nodes only
    // stage::Group
    WorkerFinished,
    // stage::Supervisor
    ChildExited,
    ChildRestarted,
    ChildAdded,
    ChildRemoved,
    ChildCountChanged,
    // stage::MailboxBase
    MailboxCount,
    MailboxClosed,
    MailboxStatistics,
    // stage::WorkerHandle
    HandleStateRunning,
    HandleStateStopping,
    HandleStateFinished,
    HandleRunningChanged,
    HandleStarted,
    HandleFinished,
    HandleStopTimeoutChanged,
    HandleAbandonedCountChanged,
    HandleAbandonedWorkerFinished,
};

enum class Action {
    DeleteEmitter,
    DeleteLaterEmitter,
    DeleteSupervisor,
    Shutdown,
    Start,
    Restart,
    SetSizeZero,
    SetSizeUp,
    AddChild,
    RemoveChild,
    CloseMailbox,
};

const char *kindName(Kind kind)
{
    switch (kind) {
    case Kind::Group: return "group";
    case Kind::SupervisedGroup: return "supervisedGroup";
    case Kind::Supervisor: return "supervisor";
    case Kind::ChildSupervisor: return "childSupervisor";
    case Kind::Mailbox: return "mailbox";
    case Kind::Handle: return "workerHandle";
    }
    return "?";
}

const char *sigName(Sig sig)
{
    switch (sig) {
    case Sig::StateStarting: return "stateChanged:Starting";
    case Sig::StateRunning: return "stateChanged:Running";
    case Sig::StateRestarting: return "stateChanged:Restarting";
    case Sig::StateStopping: return "stateChanged:Stopping";
    case Sig::StateStopped: return "stateChanged:Stopped";
    case Sig::StateFailed: return "stateChanged:Failed";
    case Sig::GaveUp: return "gaveUp";
    case Sig::Stopped: return "stopped";
    case Sig::Statistics: return "statisticsChanged";
    case Sig::SupervisorChanged: return "supervisorChanged";
    case Sig::WorkerFinished: return "workerFinished";
    case Sig::ChildExited: return "childExited";
    case Sig::ChildRestarted: return "childRestarted";
    case Sig::ChildAdded: return "childAdded";
    case Sig::ChildRemoved: return "childRemoved";
    case Sig::ChildCountChanged: return "childCountChanged";
    case Sig::MailboxCount: return "countChanged";
    case Sig::MailboxClosed: return "closedChanged";
    case Sig::MailboxStatistics: return "statisticsChanged";
    case Sig::HandleStateRunning: return "stateChanged:Running";
    case Sig::HandleStateStopping: return "stateChanged:Stopping";
    case Sig::HandleStateFinished: return "stateChanged:Finished";
    case Sig::HandleRunningChanged: return "runningChanged";
    case Sig::HandleStarted: return "started";
    case Sig::HandleFinished: return "finished";
    case Sig::HandleStopTimeoutChanged: return "stopTimeoutChanged";
    case Sig::HandleAbandonedCountChanged: return "abandonedCountChanged";
    case Sig::HandleAbandonedWorkerFinished: return "abandonedWorkerFinished";
    }
    return "?";
}

const char *actionName(Action action)
{
    switch (action) {
    case Action::DeleteEmitter: return "deleteEmitter";
    case Action::DeleteLaterEmitter: return "deleteLaterEmitter";
    case Action::DeleteSupervisor: return "deleteSupervisor";
    case Action::Shutdown: return "shutdown";
    case Action::Start: return "start";
    case Action::Restart: return "restart";
    case Action::SetSizeZero: return "setSize0";
    case Action::SetSizeUp: return "setSizeUp";
    case Action::AddChild: return "addChild";
    case Action::RemoveChild: return "removeChild";
    case Action::CloseMailbox: return "closeMailbox";
    }
    return "?";
}

std::vector<Sig> signalsOf(Kind kind)
{
    const std::vector<Sig> node{Sig::StateStarting, Sig::StateRunning, Sig::StateRestarting, Sig::StateStopping,
                                Sig::StateStopped,  Sig::StateFailed,  Sig::GaveUp,          Sig::Stopped,
                                Sig::Statistics};
    switch (kind) {
    case Kind::Group:
    case Kind::SupervisedGroup: {
        auto sigs = node;
        if (kind == Kind::SupervisedGroup)
            sigs.push_back(Sig::SupervisorChanged);
        sigs.push_back(Sig::WorkerFinished);
        return sigs;
    }
    case Kind::Supervisor:
    case Kind::ChildSupervisor: {
        auto sigs = node;
        if (kind == Kind::ChildSupervisor)
            sigs.push_back(Sig::SupervisorChanged);
        sigs.insert(sigs.end(), {Sig::ChildExited, Sig::ChildRestarted, Sig::ChildAdded, Sig::ChildRemoved,
                                 Sig::ChildCountChanged});
        return sigs;
    }
    case Kind::Mailbox:
        return {Sig::MailboxCount, Sig::MailboxClosed, Sig::MailboxStatistics};
    case Kind::Handle:
        return {Sig::HandleStateRunning,     Sig::HandleStateStopping,         Sig::HandleStateFinished,
                Sig::HandleRunningChanged,   Sig::HandleStarted,               Sig::HandleFinished,
                Sig::HandleStopTimeoutChanged, Sig::HandleAbandonedCountChanged, Sig::HandleAbandonedWorkerFinished};
    }
    return {};
}

std::vector<Action> actionsOf(Kind kind)
{
    switch (kind) {
    case Kind::Group: // no supervisor, no children
        return {Action::DeleteEmitter, Action::DeleteLaterEmitter, Action::Shutdown,  Action::Start,
                Action::Restart,       Action::SetSizeZero,        Action::SetSizeUp, Action::CloseMailbox};
    case Kind::Supervisor: // a root: no supervisor to delete
        return {Action::DeleteEmitter, Action::DeleteLaterEmitter, Action::Shutdown, Action::Start,
                Action::Restart,       Action::SetSizeZero,        Action::SetSizeUp, Action::AddChild,
                Action::RemoveChild,   Action::CloseMailbox};
    case Kind::SupervisedGroup:
    case Kind::ChildSupervisor:
    case Kind::Mailbox:
        return {Action::DeleteEmitter, Action::DeleteLaterEmitter, Action::DeleteSupervisor, Action::Shutdown,
                Action::Start,         Action::Restart,            Action::SetSizeZero,      Action::SetSizeUp,
                Action::AddChild,      Action::RemoveChild,        Action::CloseMailbox};
    case Kind::Handle:
        return {Action::DeleteEmitter, Action::DeleteLaterEmitter, Action::Shutdown,
                Action::Start,         Action::Restart,            Action::CloseMailbox};
    }
    return {};
}

/* Spins a local event loop until \a pred holds (polled every millisecond) or \a timeoutMs passed,
   then runs the deleteLater()s still pending. */
template<typename Pred>
bool waitUntil(Pred pred, int timeoutMs)
{
    stagetest::spinUntil(pred, timeoutMs);
    QCoreApplication::sendPostedEvents(nullptr, QEvent::DeferredDelete);
    return pred();
}

void spin(int ms)
{
    waitUntil([] { return false; }, ms);
}

enum Command { Fail = 1, Return = 2, Work = 3, Hang = 4 };

/* A mailbox and what the workers reading it saw. Atomics: workers may run on the group's threads. */
struct Feed
{
    explicit Feed(QObject *owner) : box(owner) {}

    stage::Mailbox<int> box;       // unbounded; its QObject side is a child of the world's boxOwner
    std::atomic<int> entered{0};   // bodies that began
    std::atomic<int> failStarts{0}; // the next bodies to begin throw at once, this many
    std::atomic<int> failures{0};
    std::atomic<int> worked{0};    // Work messages done
    std::atomic<int> hanging{0};   // bodies in a Hang (no cancellation point)
};

struct Frames
{
    std::atomic<int> alive{0};
};

struct FrameGuard
{
    explicit FrameGuard(Frames *f) : frames(f) { frames->alive.fetch_add(1); }
    ~FrameGuard() { frames->alive.fetch_sub(1); }
    Frames *frames;
};

bool takeOne(std::atomic<int> &counter)
{
    int n = counter.load();
    while (n > 0)
        if (counter.compare_exchange_weak(n, n - 1))
            return true;
    return false;
}

/* Reads commands: Fail throws, Return returns, Work takes 2 ms holding the message, Hang waits
   on a foreign timer (no cancellation point). MailboxClosed escapes: a failure. */
QCoro::Task<> workerBody(std::shared_ptr<Feed> feed, std::shared_ptr<Frames> frames)
{
    FrameGuard guard(frames.get());
    feed->entered.fetch_add(1);
    if (takeOne(feed->failStarts)) {
        feed->failures.fetch_add(1);
        throw std::runtime_error("failing at start");
    }
    for (;;) {
        auto delivery = co_await feed->box.receive();
        const int command = *delivery;
        if (command == Work) {
            co_await stage::sleep(2ms); // a stop here puts the message back
            delivery.ack();
            feed->worked.fetch_add(1);
            continue;
        }
        delivery.ack();
        if (command == Fail) {
            feed->failures.fetch_add(1);
            throw std::runtime_error("told to fail");
        }
        if (command == Return)
            co_return;
        if (command == Hang) {
            feed->hanging.fetch_add(1);
            co_await QCoro::sleepFor(kHang);
            feed->hanging.fetch_sub(1);
        }
    }
}

stage::WorkerFactory factoryFor(std::shared_ptr<Feed> feed, std::shared_ptr<Frames> frames)
{
    return [feed, frames](stage::Worker &) { return workerBody(feed, frames); };
}

bool terminal(const Node *node)
{
    return !node || node->state() == State::Stopped || node->state() == State::Failed
        || node->state() == State::Idle;
}

bool ended(const Node *node)
{
    return node->state() == State::Stopped || node->state() == State::Failed;
}

QString stateName(State state)
{
    return QString::fromLatin1(QMetaEnum::fromType<State>().valueToKey(int(state)));
}

/* Everything one row builds; the teardown deletes what is left. */
struct World
{
    explicit World(Kind k, bool t) : kind(k), threads(t) {}
    ~World();

    std::shared_ptr<Feed> feed(std::shared_ptr<Feed> &slot)
    {
        if (!slot)
            slot = std::make_shared<Feed>(&boxOwner);
        return slot;
    }
    Group *makeGroup(const QString &name, int size, bool absorbs)
    {
        auto *g = new Group;
        g->setObjectName(name);
        g->setSize(size);
        g->setThreadCount(threads ? 2 : 0);
        g->setShutdownTimeout(2000);
        g->setRestartPeriod(60000);
        if (absorbs) { // restarts its workers itself, twice; the second restart waits 5 ms (Restarting)
            g->setMaxRestarts(2);
            g->setBackoff(stage::Backoff::exponential(5ms, 5ms, 2.0, 0.0, 60s));
        } else {
            g->setBackoff(stage::Backoff::none());
        }
        nodes.append(g);
        return g;
    }
    Supervisor *makeSupervisor(const QString &name, int maxRestarts)
    {
        auto *sv = new Supervisor(Supervisor::Strategy::OneForOne);
        sv->setObjectName(name);
        sv->setMaxRestarts(maxRestarts);
        sv->setRestartPeriod(60000);
        sv->setBackoff(stage::Backoff::none());
        nodes.append(sv);
        return sv;
    }
    QList<Group *> groups() const
    {
        QList<Group *> out;
        for (const auto &n : nodes)
            if (auto *g = qobject_cast<Group *>(n.data()))
                out.append(g);
        return out;
    }
    QList<Supervisor *> supervisors() const
    {
        QList<Supervisor *> out;
        for (const auto &n : nodes)
            if (auto *s = qobject_cast<Supervisor *>(n.data()))
                out.append(s);
        return out;
    }
    QList<std::shared_ptr<Feed>> feeds() const
    {
        QList<std::shared_ptr<Feed>> out;
        for (const auto *f : {&fA, &fB, &fC, &fD, &fG, &fH})
            if (*f)
                out.append(*f);
        return out;
    }
    QObject *emitter() const;

    Kind kind;
    bool threads;
    QObject boxOwner; // first: destroyed last
    QObject recorder; // receives the handle's bookkeeping connections
    std::shared_ptr<Frames> frames = std::make_shared<Frames>();
    std::shared_ptr<Feed> fA, fB, fC, fD, fG, fH;
    QPointer<Supervisor> root; // the top of the tree: sv itself, or its own supervisor
    QPointer<Supervisor> sv;   // the supervisor of a and b
    QPointer<Group> a, b, c, d, g;
    QPointer<WorkerHandle> handle;
    QPointer<stage::MailboxBase> boxObject;
    std::unique_ptr<stagetest::ScopedThread> handleThread;
    QList<QPointer<Node>> nodes; // every node made, for the checks and the teardown
    std::unique_ptr<QObject> context; // receives the row's slot; deleted to disconnect it
    // The handle's runs, as its signals told (connected before the row's slot).
    int handleStarted = 0;
    int handleFinished = 0;
    int handleAbandonedFinished = 0;
};

QObject *World::emitter() const
{
    switch (kind) {
    case Kind::Group:
        return g;
    case Kind::SupervisedGroup:
        return a;
    case Kind::Supervisor:
    case Kind::ChildSupervisor:
        return sv;
    case Kind::Mailbox:
        return boxObject;
    case Kind::Handle:
        return handle;
    }
    return nullptr;
}

World::~World()
{
    context.reset();
    if (root)
        delete root.data();
    if (g)
        delete g.data();
    if (handle)
        delete handle.data();
    for (const auto &n : nodes) // removed children, handed back to the test
        if (n && !n->parent())
            delete n.data();
    for (const auto &n : nodes) // whatever was left (a child of a deleted-later supervisor...)
        if (n)
            delete n.data();
    QCoreApplication::sendPostedEvents(nullptr, QEvent::DeferredDelete);
    // Frames end on their own (a hanging one after kHang): keep their threads until they have.
    // After a failed check some may never end (a worker started behind a shutdown): wait less.
    waitUntil([this] { return frames->alive.load() == 0; }, QTest::currentTestFailed() ? 1000 : Timeout);
}

/* One row: its world, its action, whether (and when) the action ran. */
struct Row
{
    World *world = nullptr;
    Kind kind = Kind::Group;
    Sig sig = Sig::StateStarting;
    Action action = Action::DeleteEmitter;
    bool fired = false;
    int actions = 0;
    QString firedIn;  // the step of the script during which it fired
    QString step;     // the current step
    QStringList stalled; // steps that reached their failsafe without the action firing
};

void perform(Row &row)
{
    World &w = *row.world;
    Group *target = w.kind == Kind::Group ? w.g.data() : w.a.data(); // setSize, removeChild
    const std::shared_ptr<Feed> feed = w.kind == Kind::Group ? w.fG : w.kind == Kind::Handle ? w.fH : w.fA;
    switch (row.action) {
    case Action::DeleteEmitter:
        delete w.emitter();
        break;
    case Action::DeleteLaterEmitter:
        if (QObject *e = w.emitter())
            e->deleteLater();
        break;
    case Action::DeleteSupervisor: {
        Supervisor *above = w.kind == Kind::ChildSupervisor ? w.root.data() : w.sv.data();
        delete above;
        break;
    }
    case Action::Shutdown:
        switch (w.kind) {
        case Kind::Group:
        case Kind::SupervisedGroup:
            if (target)
                target->shutdown();
            break;
        case Kind::Supervisor:
        case Kind::ChildSupervisor:
            if (w.sv)
                w.sv->shutdown();
            break;
        case Kind::Mailbox:
            if (w.root)
                w.root->shutdown();
            break;
        case Kind::Handle:
            if (w.handle)
                w.handle->requestStop();
            break;
        }
        break;
    case Action::Start:
        switch (w.kind) {
        case Kind::Group:
            if (w.g)
                w.g->spawn(factoryFor(w.fG, w.frames)); // refused: it has its factory
            break;
        case Kind::SupervisedGroup:
        case Kind::Mailbox:
            if (w.root)
                w.root->start();
            break;
        case Kind::Supervisor:
        case Kind::ChildSupervisor:
            if (w.sv)
                w.sv->start(); // refused for a child supervisor
            break;
        case Kind::Handle:
            if (w.handle)
                w.handle->start(factoryFor(w.fH, w.frames), w.handleThread ? w.handleThread->get() : nullptr);
            break;
        }
        break;
    case Action::Restart:
        if (w.kind == Kind::Handle) {
            if (w.handle)
                w.handle->restart();
        } else {
            feed->box.trySend(Fail);
        }
        break;
    case Action::SetSizeZero:
        if (target)
            target->setSize(0);
        break;
    case Action::SetSizeUp:
        if (target)
            target->setSize(target->size() + 1);
        break;
    case Action::AddChild: {
        Supervisor *sv = w.sv;
        if (!sv)
            break;
        QPointer<Group> added = w.makeGroup(QStringLiteral("D"), 1, false);
        w.d = added;
        if (!sv->addChild(added)) {
            delete added.data();
            break;
        }
        if (added)
            added->spawn(factoryFor(w.feed(w.fD), w.frames));
        break;
    }
    case Action::RemoveChild:
        if (w.sv && target)
            w.sv->removeChild(target);
        break;
    case Action::CloseMailbox:
        feed->box.close();
        break;
    }
}

void hit(Row *row, bool matches)
{
    if (!matches || row->fired)
        return;
    row->fired = true;
    row->firedIn = row->step;
    perform(*row);
    ++row->actions;
}

/* Connects the row's slot: a direct connection to the emitter, hitting on the row's condition. */
void hook(Row &row)
{
    World &w = *row.world;
    QObject *ctx = w.context.get();
    Row *r = &row;
    auto onState = [r](State want) { return [r, want](State s, const QString &) { hit(r, s == want); }; };
    auto onHandleState = [r](HandleState want) { return [r, want](HandleState s) { hit(r, s == want); }; };
    const auto type = Qt::DirectConnection;
    if (auto *node = qobject_cast<Node *>(w.emitter())) {
        switch (row.sig) {
        case Sig::StateStarting:
            QObject::connect(node, &Node::stateChanged, ctx, onState(State::Starting), type);
            return;
        case Sig::StateRunning:
            QObject::connect(node, &Node::stateChanged, ctx, onState(State::Running), type);
            return;
        case Sig::StateRestarting:
            QObject::connect(node, &Node::stateChanged, ctx, onState(State::Restarting), type);
            return;
        case Sig::StateStopping:
            QObject::connect(node, &Node::stateChanged, ctx, onState(State::Stopping), type);
            return;
        case Sig::StateStopped:
            QObject::connect(node, &Node::stateChanged, ctx, onState(State::Stopped), type);
            return;
        case Sig::StateFailed:
            QObject::connect(node, &Node::stateChanged, ctx, onState(State::Failed), type);
            return;
        case Sig::GaveUp:
            QObject::connect(node, &Node::gaveUp, ctx, [r](const QString &) { hit(r, true); }, type);
            return;
        case Sig::Stopped:
            QObject::connect(node, &Node::stopped, ctx, [r] { hit(r, true); }, type);
            return;
        case Sig::Statistics:
            QObject::connect(node, &Node::statisticsChanged, ctx, [r] { hit(r, true); }, type);
            return;
        case Sig::SupervisorChanged:
            QObject::connect(node, &Node::supervisorChanged, ctx, [r](Supervisor *) { hit(r, true); }, type);
            return;
        default:
            break;
        }
    }
    if (auto *group = qobject_cast<Group *>(w.emitter())) {
        if (row.sig == Sig::WorkerFinished) {
            QObject::connect(group, &Group::workerFinished, ctx, [r](const WorkerExit &) { hit(r, true); }, type);
            return;
        }
    }
    if (auto *sv = qobject_cast<Supervisor *>(w.emitter())) {
        switch (row.sig) {
        case Sig::ChildExited:
            QObject::connect(
                sv, &Supervisor::childExited, ctx, [r](Node *, bool, const QString &) { hit(r, true); }, type);
            return;
        case Sig::ChildRestarted:
            QObject::connect(sv, &Supervisor::childRestarted, ctx, [r](Node *) { hit(r, true); }, type);
            return;
        case Sig::ChildAdded:
            QObject::connect(sv, &Supervisor::childAdded, ctx, [r](Node *) { hit(r, true); }, type);
            return;
        case Sig::ChildRemoved:
            QObject::connect(sv, &Supervisor::childRemoved, ctx, [r](Node *) { hit(r, true); }, type);
            return;
        case Sig::ChildCountChanged:
            QObject::connect(sv, &Supervisor::childCountChanged, ctx, [r](int) { hit(r, true); }, type);
            return;
        default:
            break;
        }
    }
    if (auto *box = qobject_cast<stage::MailboxBase *>(w.emitter())) {
        switch (row.sig) {
        case Sig::MailboxCount:
            QObject::connect(box, &stage::MailboxBase::countChanged, ctx, [r](int) { hit(r, true); }, type);
            return;
        case Sig::MailboxClosed:
            QObject::connect(box, &stage::MailboxBase::closedChanged, ctx, [r](bool) { hit(r, true); }, type);
            return;
        case Sig::MailboxStatistics:
            QObject::connect(box, &stage::MailboxBase::statisticsChanged, ctx, [r] { hit(r, true); }, type);
            return;
        default:
            break;
        }
    }
    if (auto *h = qobject_cast<WorkerHandle *>(w.emitter())) {
        switch (row.sig) {
        case Sig::HandleStateRunning:
            QObject::connect(h, &WorkerHandle::stateChanged, ctx, onHandleState(HandleState::Running), type);
            return;
        case Sig::HandleStateStopping:
            QObject::connect(h, &WorkerHandle::stateChanged, ctx, onHandleState(HandleState::Stopping), type);
            return;
        case Sig::HandleStateFinished:
            QObject::connect(h, &WorkerHandle::stateChanged, ctx, onHandleState(HandleState::Finished), type);
            return;
        case Sig::HandleRunningChanged:
            QObject::connect(h, &WorkerHandle::runningChanged, ctx, [r](bool) { hit(r, true); }, type);
            return;
        case Sig::HandleStarted:
            QObject::connect(h, &WorkerHandle::started, ctx, [r](int) { hit(r, true); }, type);
            return;
        case Sig::HandleFinished:
            QObject::connect(h, &WorkerHandle::finished, ctx, [r](const WorkerExit &) { hit(r, true); }, type);
            return;
        case Sig::HandleStopTimeoutChanged:
            QObject::connect(h, &WorkerHandle::stopTimeoutChanged, ctx, [r](int) { hit(r, true); }, type);
            return;
        case Sig::HandleAbandonedCountChanged:
            QObject::connect(h, &WorkerHandle::abandonedCountChanged, ctx, [r](int) { hit(r, true); }, type);
            return;
        case Sig::HandleAbandonedWorkerFinished:
            QObject::connect(h, &WorkerHandle::abandonedWorkerFinished, ctx, [r](const WorkerExit &) { hit(r, true); },
                             type);
            return;
        default:
            break;
        }
    }
    qFatal("hook: %s has no signal %s", kindName(row.kind), sigName(row.sig));
}

/*
    One step of a script: does \a act, then waits until \a done (or the action has fired). Does
    nothing once the action has fired: from then on the world is left to the action. \a act runs
    before the action has fired, so the world is whole when it starts; a call in it that fires
    the action ends what it may do (check row.fired between calls).
*/
template<typename Act, typename Done>
void step(Row &row, const char *name, Act act, Done done)
{
    if (row.fired)
        return;
    row.step = QString::fromLatin1(name);
    act();
    if (!waitUntil([&] { return row.fired || done(); }, kPhaseMs))
        row.stalled.append(row.step);
}

/* Removes \a node from \a above (it stops and is handed back), then adds it back (it starts again). */
void leaveAndReturn(Row &row, Supervisor *above, Node *node)
{
    step(row, "leave the supervisor", [&] { above->removeChild(node); }, [&] { return ended(node); });
    step(row, "return to it", [&] { above->addChild(node); },
         [&] { return node->state() == State::Running && above->state() == State::Running; });
}

/* Drives the world until the row's signal has fired (or the script is over). */
void runScript(Row &row)
{
    World &w = *row.world;
    const bool failingEnd = row.sig == Sig::StateFailed || row.sig == Sig::GaveUp;
    switch (w.kind) {
    case Kind::Group: {
        auto fG = w.fG;
        Group *g = w.g;
        step(row, "spawn", [&] { g->spawn(factoryFor(fG, w.frames)); }, [&] { return fG->entered >= 2; });
        step(
            row, "fail twice",
            [&] {
                fG->failStarts = 1; // the first restart fails at once: the second waits 5 ms
                fG->box.trySend(Fail);
            },
            [&] { return fG->entered >= 4 && g->restarted() >= 2 && g->state() == State::Running; });
        if (failingEnd)
            step(row, "give up", [&] { fG->box.trySend(Fail); }, [&] { return ended(g); });
        else
            step(row, "shutdown", [&] { g->shutdown(); }, [&] { return ended(g); });
        break;
    }
    case Kind::SupervisedGroup: {
        auto fA = w.fA;
        auto fB = w.fB;
        Group *a = w.a;
        Supervisor *sv = w.sv;
        step(row, "start", [&] { sv->start(); },
             [&] { return fA->entered >= 2 && fB->entered >= 1 && sv->state() == State::Running; });
        if (row.sig == Sig::SupervisorChanged)
            leaveAndReturn(row, sv, a);
        step(
            row, "fail twice",
            [&] {
                fA->failStarts = 1;
                fA->box.trySend(Fail);
            },
            [&] { return fA->entered >= 4 && a->restarted() >= 2 && a->state() == State::Running; });
        step(row, "give up to the supervisor", [&] { fA->box.trySend(Fail); },
             [&] {
                 return fA->entered >= 6 && sv->restarts() >= 1 && a->state() == State::Running
                     && sv->state() == State::Running;
             });
        step(row, "shutdown", [&] { sv->shutdown(); }, [&] { return ended(sv); });
        break;
    }
    case Kind::Supervisor:
    case Kind::ChildSupervisor: {
        auto fA = w.fA;
        auto fB = w.fB;
        Group *a = w.a;
        Supervisor *sv = w.sv;
        Supervisor *root = w.root;
        step(row, "start", [&] { root->start(); },
             [&] { return fA->entered >= 2 && fB->entered >= 1 && root->state() == State::Running; });
        if (row.sig == Sig::SupervisorChanged)
            leaveAndReturn(row, root, sv);
        auto fC = w.feed(w.fC);
        step(
            row, "add a child",
            [&] {
                QPointer<Group> c = w.makeGroup(QStringLiteral("C"), 1, false);
                w.c = c;
                sv->addChild(c);
                if (!row.fired && c)
                    c->spawn(factoryFor(fC, w.frames));
            },
            [&] { return fC->entered >= 1 && sv->state() == State::Running; });
        step(row, "remove it", [&] { sv->removeChild(w.c); }, [&] { return !w.c || ended(w.c); });
        step(row, "a child fails", [&] { fA->box.trySend(Fail); },
             [&] {
                 return fA->entered >= 4 && sv->restarts() >= 1 && a->state() == State::Running
                     && sv->state() == State::Running;
             });
        if (failingEnd) {
            step(
                row, "give up",
                [&] {
                    fA->failStarts = 100; // every restart of a fails at once
                    fA->box.trySend(Fail);
                },
                [&] { return ended(root); });
        } else {
            step(row, "shutdown", [&] { root->shutdown(); }, [&] { return ended(root); });
        }
        break;
    }
    case Kind::Mailbox: {
        auto fA = w.fA;
        auto fB = w.fB;
        Supervisor *sv = w.sv;
        step(row, "start", [&] { sv->start(); },
             [&] { return fA->entered >= 2 && fB->entered >= 1 && sv->state() == State::Running; });
        step(
            row, "work",
            [&] {
                for (int i = 0; i < 6 && !row.fired; ++i)
                    fA->box.trySend(Work);
            },
            [&] { return fA->worked >= 6; });
        step(row, "close", [&] { fA->box.close(); }, [&] { return ended(sv); }); // its readers fail: sv gives up
        break;
    }
    case Kind::Handle: {
        auto fH = w.fH;
        WorkerHandle *h = w.handle;
        QThread *thread = w.handleThread ? w.handleThread->get() : nullptr;
        step(row, "start", [&] { h->start(factoryFor(fH, w.frames), thread); }, [&] { return fH->entered >= 1; });
        step(row, "fail", [&] { fH->box.trySend(Fail); }, [&] { return h->state() == HandleState::Finished; });
        step(row, "restart", [&] { h->restart(); }, [&] { return fH->entered >= 2; });
        step(row, "stop timeout", [&] { h->setStopTimeout(10); }, [] { return true; });
        step(row, "hang", [&] { fH->box.trySend(Hang); }, [&] { return fH->hanging >= 1; });
        step(row, "abandon", [&] { h->requestStop(); }, [&] {
            return h->state() == HandleState::Finished && w.handleAbandonedFinished >= 1 && h->abandonedCount() == 0;
        });
        break;
    }
    }
}

/* Builds the world of \a row (before its slot is connected). */
void build(World &w)
{
    switch (w.kind) {
    case Kind::Group:
        w.feed(w.fG);
        w.g = w.makeGroup(QStringLiteral("G"), 2, true);
        break;
    case Kind::SupervisedGroup:
    case Kind::Supervisor:
    case Kind::ChildSupervisor:
    case Kind::Mailbox: {
        Supervisor *sv = w.makeSupervisor(QStringLiteral("S"), 2);
        w.sv = sv;
        w.root = sv;
        if (w.kind == Kind::ChildSupervisor) {
            Supervisor *root = w.makeSupervisor(QStringLiteral("R"), 0);
            w.root = root;
            root->addChild(sv);
        }
        auto fA = w.feed(w.fA);
        auto fB = w.feed(w.fB);
        Group *a = w.makeGroup(QStringLiteral("A"), 2, w.kind == Kind::SupervisedGroup);
        w.a = a;
        sv->addChild(a);
        a->spawn(factoryFor(fA, w.frames)); // waits for its supervisor
        Group *b = w.makeGroup(QStringLiteral("B"), 1, false);
        w.b = b;
        sv->addChild(b);
        b->spawn(factoryFor(fB, w.frames));
        if (w.kind == Kind::Mailbox)
            w.boxObject = fA->box.object();
        break;
    }
    case Kind::Handle: {
        w.feed(w.fH);
        if (w.threads)
            w.handleThread = std::make_unique<stagetest::ScopedThread>(QStringLiteral("handle-thread"));
        auto *h = new WorkerHandle;
        w.handle = h;
        QObject::connect(h, &WorkerHandle::started, &w.recorder, [&w](int) { ++w.handleStarted; });
        QObject::connect(h, &WorkerHandle::finished, &w.recorder, [&w](const WorkerExit &) { ++w.handleFinished; });
        QObject::connect(h, &WorkerHandle::abandonedWorkerFinished, &w.recorder,
                         [&w](const WorkerExit &) { ++w.handleAbandonedFinished; });
        break;
    }
    }
}

/* Shuts down whatever still runs (roots first, then any group left behind) and waits for it. */
bool stopEverything(World &w, bool groupsToo)
{
    if (w.root)
        w.root->shutdown();
    if (w.g)
        w.g->shutdown();
    if (w.handle)
        w.handle->requestStop();
    waitUntil([&] { return terminal(w.root); }, Timeout);
    if (groupsToo) {
        // Removed children, never-started ones (added under a supervisor that no longer runs),
        // a group shut down at its supervisor's back: a group's own shutdown ends each of them.
        for (Supervisor *sv : w.supervisors())
            if (!ended(sv))
                sv->shutdown();
        for (Group *g : w.groups())
            if (!ended(g))
                g->shutdown();
    }
    return waitUntil(
        [&] {
            for (const auto &n : w.nodes)
                if (n && (groupsToo ? !ended(n) : !terminal(n)))
                    return false;
            return !w.handle || !w.handle->isRunning();
        },
        Timeout);
}

QString describe(const World &w)
{
    QStringList parts;
    for (const auto &n : w.nodes)
        if (n)
            parts.append(QStringLiteral("%1=%2").arg(n->objectName(), stateName(n->state())));
    if (w.handle)
        parts.append(QStringLiteral("handle=%1").arg(int(w.handle->state())));
    parts.append(QStringLiteral("frames=%1").arg(w.frames->alive.load()));
    return parts.join(QLatin1Char(' '));
}

} // namespace reentrancy

using namespace reentrancy;

class tst_Reentrancy : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void initTestCase();

    void group_data() { addRows(Kind::Group); }
    void group() { run(); }
    void supervisedGroup_data() { addRows(Kind::SupervisedGroup); }
    void supervisedGroup() { run(); }
    void supervisor_data() { addRows(Kind::Supervisor); }
    void supervisor() { run(); }
    void childSupervisor_data() { addRows(Kind::ChildSupervisor); }
    void childSupervisor() { run(); }
    void mailbox_data() { addRows(Kind::Mailbox); }
    void mailbox() { run(); }
    void workerHandle_data() { addRows(Kind::Handle); }
    void workerHandle() { run(); }

private:
    static void addRows(Kind kind);
    void run();
    void checkWorld(World &w);
};

void tst_Reentrancy::initTestCase()
{
    // Refusals (a start while running, a spawn twice), giving up and abandoning warn by design;
    // thousands of rows would drown the report. STAGE_REENTRANCY_VERBOSE=1 shows them.
    if (qEnvironmentVariableIsEmpty("STAGE_REENTRANCY_VERBOSE"))
        QLoggingCategory::setFilterRules(QStringLiteral("stage.*.info=false\nstage.*.warning=false"));
}

void tst_Reentrancy::addRows(Kind kind)
{
    QTest::addColumn<int>("kind");
    QTest::addColumn<int>("sig");
    QTest::addColumn<int>("action");
    QTest::addColumn<bool>("threads");
    for (Sig sig : signalsOf(kind))
        for (Action action : actionsOf(kind))
            for (bool threads : {false, true})
                QTest::newRow(qPrintable(QStringLiteral("%1/%2/%3/%4")
                                             .arg(QLatin1String(kindName(kind)), QLatin1String(sigName(sig)),
                                                  QLatin1String(actionName(action)),
                                                  threads ? QStringLiteral("threads") : QStringLiteral("main"))))
                    << int(kind) << int(sig) << int(action) << threads;
}

void tst_Reentrancy::run()
{
    QFETCH(int, kind);
    QFETCH(int, sig);
    QFETCH(int, action);
    QFETCH(bool, threads);

    World w(Kind(kind), threads);
    w.context = std::make_unique<QObject>();
    Row row;
    row.world = &w;
    row.kind = Kind(kind);
    row.sig = Sig(sig);
    row.action = Action(action);

    build(w);
    hook(row);
    runScript(row);

    if (row.fired)
        spin(kSettleMs); // the action's consequences (a deleteLater, restarts, stops) run
    row.step = QStringLiteral("final shutdown");
    // The slot may still fire here (a signal the script did not reach until the shutdown).
    QVERIFY2(stopEverything(w, false),
             qPrintable(QStringLiteral("the final shutdown did not end: %1").arg(describe(w))));
    w.context.reset(); // the slot, disconnected: what follows is the test's own cleanup
    QVERIFY2(stopEverything(w, true),
             qPrintable(QStringLiteral("not every node ended Stopped or Failed: %1").arg(describe(w))));
    // A frame ends before its end is reported (a handle's abandoned one: abandonedWorkerFinished()).
    QVERIFY2(waitUntil([&] { return w.frames->alive.load() == 0 && (!w.handle || w.handle->abandonedCount() == 0); },
                       Timeout),
             qPrintable(QStringLiteral("frames left: %1").arg(describe(w))));
    if (!row.stalled.isEmpty()) // the script waited for something that did not come: worth a look
        qWarning("%s: the script stalled in: %s (the action fired in: %s)", QTest::currentDataTag(),
                 qPrintable(row.stalled.join(QStringLiteral(", "))), qPrintable(row.firedIn));
    else if (!qEnvironmentVariableIsEmpty("STAGE_REENTRANCY_VERBOSE"))
        qInfo("%s: the action fired in step '%s'", QTest::currentDataTag(), qPrintable(row.firedIn));

    QVERIFY2(row.actions == 1,
             qPrintable(QStringLiteral("the action ran %1 time(s); the script stalled in: %2")
                            .arg(row.actions)
                            .arg(row.stalled.join(QStringLiteral(", ")))));
    checkWorld(w);
}

void tst_Reentrancy::checkWorld(World &w)
{
    for (Group *g : w.groups()) {
        const stage::GroupStatistics s = g->statistics();
        QVERIFY2(s.isConsistent() && s.running == 0,
                 qPrintable(QStringLiteral("group %1: started %2 != running %3 + completed %4 + failed %5 + "
                                           "cancelled %6 + abandoned %7")
                                .arg(g->objectName())
                                .arg(s.started)
                                .arg(s.running)
                                .arg(s.completed)
                                .arg(s.failed)
                                .arg(s.cancelled)
                                .arg(s.abandoned)));
        QVERIFY2(ended(g), qPrintable(QStringLiteral("group %1 is %2").arg(g->objectName(), stateName(g->state()))));
    }
    for (Supervisor *sv : w.supervisors()) {
        const QList<Node *> children = sv->childNodes();
        const stage::SupervisorStatistics s = sv->statistics();
        QCOMPARE(sv->childCount(), int(children.size()));
        QCOMPARE(s.children, int(children.size()));
        QCOMPARE(s.runningChildren, 0);
        QVERIFY2(s.childFailures <= s.childExits && s.restarts <= s.childExits,
                 qPrintable(QStringLiteral("supervisor %1: %2 exits, %3 failures, %4 restarts")
                                .arg(sv->objectName())
                                .arg(s.childExits)
                                .arg(s.childFailures)
                                .arg(s.restarts)));
        for (Node *child : children) {
            bool known = false;
            for (const auto &n : w.nodes)
                known = known || (n && n.data() == child);
            QVERIFY2(known, qPrintable(QStringLiteral("supervisor %1 lists a deleted child").arg(sv->objectName())));
            QCOMPARE(child->supervisor(), sv);
            QCOMPARE(child->parent(), static_cast<QObject *>(sv));
        }
        QVERIFY2(ended(sv),
                 qPrintable(QStringLiteral("supervisor %1 is %2").arg(sv->objectName(), stateName(sv->state()))));
    }
    for (const auto &n : w.nodes)
        if (n && n->supervisor())
            QVERIFY2(n->supervisor()->childNodes().contains(n.data()),
                     qPrintable(QStringLiteral("%1 names a supervisor that does not list it").arg(n->objectName())));
    for (const auto &feed : w.feeds()) {
        const stage::MailboxStatistics s = feed->box.statistics();
        QVERIFY2(s.queued == feed->box.count() + s.acknowledged + s.deadLettered
                     && s.delivered == s.acknowledged + s.redelivered + s.deadLettered,
                 qPrintable(QStringLiteral("mailbox: queued %1, count %2, delivered %3, acknowledged %4, "
                                           "redelivered %5, dead-lettered %6")
                                .arg(s.queued)
                                .arg(feed->box.count())
                                .arg(s.delivered)
                                .arg(s.acknowledged)
                                .arg(s.redelivered)
                                .arg(s.deadLettered)));
    }
    if (w.handle) {
        QVERIFY2(w.handle->state() == HandleState::Idle || w.handle->state() == HandleState::Finished,
                 qPrintable(QStringLiteral("handle state %1").arg(int(w.handle->state()))));
        QCOMPARE(w.handleFinished, w.handleStarted); // finished() exactly once per run
        QCOMPARE(w.handle->abandonedCount(), 0);
    }
}

QTEST_GUILESS_MAIN(tst_Reentrancy)
#include "tst_reentrancy.moc"
