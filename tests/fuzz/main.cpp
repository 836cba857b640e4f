// stage-fuzz: the libFuzzer target (scripts/stage fuzz; a 60 s run seeded with tests/fuzz/corpus is
// part of scripts/stage test). Reproduce a crash with: build-asan/tests/fuzz/stage-fuzz crash-file
//
// Each input is decoded into a sequence of API calls on a small world built fresh for it:
// mailboxes (bounded and unbounded, capacities from the input, including 0 and negative ones),
// groups whose workers consume a mailbox (main thread, or one thread of their own), supervisors
// (all three strategies; groups stop workers by unwinding or, chosen by the input, with
// StopMode::Destroy) and WorkerHandles. The operations: send / trySend / sendBlocking(0 ms),
// close, delete a mailbox's QObject (closes it), tryReceive, takeDeadLetters, setMaxRedeliveries,
// create / spawn / setSize (negative too) / shutdown / delete a group, create / start / shutdown /
// delete a supervisor, addChild (itself, an ancestor, an adopted node, null) / removeChild, start /
// stop / restart a WorkerHandle, and "process events" (one pass, or a few milliseconds).
// What a worker does with a message is the message's behaviour (from the input): ack, throw while
// holding it, hang in a cancellable sleep, ack and return, yield while holding it, ack then throw,
// hang in a foreign (non-cancellable) QCoro sleep, or throw stage::Cancelled without a stop.
//
// Messages are a move-only type whose destructor reports to a tracker, so every message is
// accounted for exactly: it is refused by its send, acknowledged once by a consumer (a second
// processing after an acknowledgement is a violation), taken from the dead letters, or discarded
// by the one documented path: the last handle of a mailbox dropped with messages still queued
// (counted by the "destroyed with N message(s) still queued" warning, which must match). A message
// destroyed anywhere else is lost: a violation.
//
// Slot actions (issue #20: "a slot may delete the emitter, its supervisor or its children, or call
// any public function of them, from any of its signals"): an operation connects a slot (a direct
// connection whose context object belongs to the world) to a signal of a live object: any signal
// of a Group (Node's stateChanged, for any state or one given state, gaveUp, stopped,
// statisticsChanged, supervisorChanged; workerFinished, sizeChanged), of a Supervisor (Node's and
// childExited, childRestarted, childAdded, childRemoved, childCountChanged), of a mailbox's
// MailboxBase (countChanged, closedChanged, statisticsChanged, maxRedeliveriesChanged) or of a
// WorkerHandle (all of them). When it fires (once, or every time), the slot does one action
// chosen by the input: delete the emitter, deleteLater() it, delete its supervisor, shut it down
// (a handle: requestStop()), start (Supervisor::start(), a group's spawn, a handle's start),
// restart a WorkerHandle, setSize(0) or setSize(up) on a group, addChild / removeChild on the
// supervisor, close a mailbox, or delete another object of the world. Every object is reached
// through a QPointer; an object whose deletion has begun is "dying" (from the delete, or from
// the DeferredDelete event of a deleteLater()) until its QObject::destroyed(), and is never
// touched again. Slot actions are bounded per input (a slot that resizes a group on sizeChanged
// every time would otherwise ping-pong forever). Checked: a slot fires only for a live emitter
// whose deletion has not begun (after a node is deleted, none of its signals is seen again, nor
// those of the children its deletion takes with it), a one-shot slot fires at most once, and
// every firing is counted as exactly one action run or skipped. A slot must never fire while a
// Stage object is being destroyed (what a deletion queues, the supervisor's childCountChanged for
// one, is delivered from the event loop once the object is gone; the regress-slot-during-*
// inputs found the old flush at the end of the destructor's body): each such firing is a
// violation. STAGE_FUZZ_STRICT=0 in the environment only counts them and leaves the dying object
// alone.
//
// Opcodes are the input byte % 26; the inputs of the corpus written before the slots (op % 24)
// had their opcode bytes rewritten as op % 24, so that they mean what they meant. Bytes 234..255
// are actor operations (see "actors" below); the corpus's opcode bytes in that range, written
// before, were rewritten as op % 26 (STAGE_FUZZ_LEGACY_OPS=1 prints where they are).
//
// Invariants checked after every step (mailboxes consumed only on the main thread; the others,
// and everything, at the end):
//   acknowledged == acks observed;  deadLettered == dead letters taken + deadLetterCount();
//   redelivered + deadLettered == consumers that unwound while holding a message;
//   delivered == acknowledged + redelivered + deadLettered + messages held now;
//   messages known to be in the mailbox <= queued <= those + sends in flight;
//   count() + held + deadLetterCount() <= messages in the system;
//   GroupStatistics::isConsistent(), running >= 0; node states in range; supervisors:
//   children == childCount() == childNodes().size(), runningChildren <= children, each child's
//   supervisor() and parent() is the supervisor, childFailures <= childExits.
// At the end (close every mailbox, shut everything down, process events): no node running, no
// group with a running worker, no worker frame alive, every send resolved; then delete all and
// check every mailbox exactly (queued == messages entered, delivered == acknowledged +
// redelivered + deadLettered, count() == messages still in it), drop the last handles and check
// that exactly count() messages were discarded and nothing else was lost. ASan, UBSan and LSan
// watch the rest.

#include <stage/stage.h>

#include <qcoro/qcorotimer.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QElapsedTimer>
#include <QtCore/QHash>
#include <QtCore/QPointer>
#include <QtCore/QRegularExpression>
#include <QtCore/QSet>
#include <QtCore/QThread>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <vector>

using namespace std::chrono_literals;
using stage::Group;
using stage::Node;
using stage::RestartType;
using stage::Supervisor;

namespace {

[[noreturn]] void violation(const char *what, long long a = 0, long long b = 0)
{
    std::fprintf(stderr, "stage-fuzz: INVARIANT VIOLATED: %s (%lld, %lld)\n", what, a, b);
    std::fflush(stderr);
    std::abort();
}
#define CHECK(cond, ...) \
    do { \
        if (!(cond)) \
            violation("" #cond __VA_OPT__(, ) __VA_ARGS__); \
    } while (0)

constexpr int MaxIds = 512;
constexpr uint8_t ActorOpBase = 234; // opcode bytes from here on are actor operations (9 * 26: below, op % 26)
constexpr int MaxSteps = 96;

enum class St : uint8_t {
    Unused,
    Sending,   // a coroutine send is in flight: the value is in the awaitable or in the mailbox
    Dropped,   // destroyed while Sending (the send failed; confirmed when the send throws)
    InSystem,  // accepted by a send: queued, held, handed over, or an untaken dead letter
    Acked,     // processed and acknowledged by a consumer
    Dead,      // taken from the dead letters
    Discarded, // destroyed with its mailbox's last handle, counted by the warning
    Refused,   // its send failed; the value was the sender's
};

struct BoxRec;

struct Tracker
{
    std::mutex mutex;
    St state[MaxIds] = {};
    int box[MaxIds] = {};
    bool destroyed[MaxIds] = {};
    int nextId = 0;
    std::atomic<int> frames{0};        // worker frames alive (all worlds)
    std::atomic<int> sendsInFlight{0}; // producer coroutines alive
    int discardBox = -1;               // the mailbox whose last handle is being dropped
    int discardBudget = 0;
    std::atomic<long long> loggedLost{0};

    void reset()
    {
        for (auto &s : state)
            s = St::Unused;
        for (auto &d : destroyed)
            d = false;
        nextId = 0;
        discardBox = -1;
        discardBudget = 0;
        loggedLost = 0;
    }

    void onDestroyed(int id)
    {
        std::lock_guard lock(mutex);
        CHECK(id >= 0 && id < MaxIds, id);
        CHECK(!destroyed[id], id); // two objects carried one message
        destroyed[id] = true;
        switch (state[id]) {
        case St::Sending:
            state[id] = St::Dropped;
            break;
        case St::InSystem:
            // The only documented way a message in a mailbox dies: its last handle was dropped
            // with it queued.
            if (discardBox == box[id] && discardBudget > 0) {
                --discardBudget;
                state[id] = St::Discarded;
                break;
            }
            violation("a message was LOST: destroyed while in the system", id, box[id]);
        case St::Acked:
        case St::Dead:
        case St::Refused:
            break;
        default:
            violation("a message destroyed in an impossible state", id, int(state[id]));
        }
    }
};

Tracker g;

/* The message: move-only, its destructor tells the tracker. The payload is on the heap so that
   ASan sees a message freed twice or leaked. */
struct Msg
{
    int id = -1;
    int behaviour = 0;
    std::unique_ptr<int> check;

    Msg(int i, int b) : id(i), behaviour(b), check(std::make_unique<int>(i * 7 + 3)) {}
    Msg(Msg &&o) noexcept : id(std::exchange(o.id, -1)), behaviour(o.behaviour), check(std::move(o.check)) {}
    Msg &operator=(Msg &&o) noexcept
    {
        if (this != &o) {
            gone();
            id = std::exchange(o.id, -1);
            behaviour = o.behaviour;
            check = std::move(o.check);
        }
        return *this;
    }
    ~Msg() { gone(); }
    void gone()
    {
        if (id < 0)
            return;
        CHECK(check && *check == id * 7 + 3, id);
        g.onDestroyed(std::exchange(id, -1));
    }
};

using Box = stage::Mailbox<Msg>;

struct BoxRec
{
    int index = 0;
    std::optional<Box> handle;     // the world's handle: dropped only at the end
    bool threaded = false;         // consumed on a thread of its own: exact checks at the end only
    std::atomic<int> held{0};      // deliveries held by consumers now
    std::atomic<long long> unwound{0}; // consumers that unwound holding an unacknowledged delivery
    std::atomic<long long> acked{0};
    long long deadTaken = 0;
};

/* Counts a worker frame. */
struct FrameCount
{
    FrameCount() { g.frames.fetch_add(1); }
    ~FrameCount() { g.frames.fetch_sub(1); }
};

/* Held by a consumer while it holds a delivery (declared after it: destroyed first). Every
   normal path acknowledges first, so one destroyed unacknowledged was unwound by an exception, or
   destroyed in place by a StopMode::Destroy stop: either way its delivery goes back or dies. */
struct Holder
{
    BoxRec *rec;
    bool acked = false;
    explicit Holder(BoxRec *r) : rec(r) { rec->held.fetch_add(1); }
    ~Holder()
    {
        rec->held.fetch_sub(1);
        if (!acked)
            rec->unwound.fetch_add(1);
    }
};

void markAcked(BoxRec *rec, int id)
{
    std::lock_guard lock(g.mutex);
    CHECK(id >= 0 && id < MaxIds, id);
    // Processed twice after an acknowledgement, or a refused / dead message delivered: a violation.
    CHECK(g.state[id] == St::InSystem || g.state[id] == St::Sending, id, int(g.state[id]));
    CHECK(g.box[id] == rec->index, id, g.box[id]);
    g.state[id] = St::Acked;
    rec->acked.fetch_add(1);
}

struct Fail : std::runtime_error
{
    Fail() : std::runtime_error("fuzz failure") {}
};

void ackNow(BoxRec *rec, stage::Delivery<Msg> &d, Holder &h)
{
    markAcked(rec, d->id);
    d.ack();
    h.acked = true;
}

/* The consumer: receives from its mailbox and does what each message says. */
QCoro::Task<> consume(stage::Worker &worker, std::shared_ptr<BoxRec> rec, Box box, int onClosed)
{
    FrameCount frame;
    for (;;) {
        bool closed = false;
        std::optional<stage::Delivery<Msg>> d;
        try {
            d.emplace(co_await box.receive());
        } catch (const stage::MailboxClosed &) {
            closed = true;
        }
        if (closed) {
            if (onClosed == 0)
                co_return;
            if (onClosed == 1)
                throw Fail();
            co_await stage::sleep(1h); // idle until stopped
            co_return;
        }
        Holder h(rec.get());
        switch ((*d)->behaviour) {
        case 0: // ack
            ackNow(rec.get(), *d, h);
            break;
        case 1: // fail while holding
            throw Fail();
        case 2: // hang (a cancellation point) while holding
            co_await stage::sleep(1h);
            ackNow(rec.get(), *d, h);
            break;
        case 3: // ack, then finish
            ackNow(rec.get(), *d, h);
            co_return;
        case 4: // yield while holding, then ack
            co_await stage::sleep(0ms);
            ackNow(rec.get(), *d, h);
            break;
        case 5: // ack, then fail
            ackNow(rec.get(), *d, h);
            throw Fail();
        case 6: // hang outside any cancellation point (abandoned if stopped meanwhile), then ack
            co_await QCoro::sleepFor(1ms);
            ackNow(rec.get(), *d, h);
            break;
        default: // a stage::Cancelled without a stop: a failure
            throw stage::Cancelled();
        }
        worker.heartbeat();
    }
}

/* A coroutine send (waits while full). */
QCoro::Task<> produce(Box box, int id, int behaviour)
{
    g.sendsInFlight.fetch_add(1);
    bool ok = true;
    try {
        Msg m(id, behaviour);
        co_await box.send(std::move(m));
    } catch (const stage::MailboxClosed &) {
        ok = false;
    }
    {
        std::lock_guard lock(g.mutex);
        const St s = g.state[id];
        if (ok) {
            CHECK(s != St::Dropped && s != St::Refused, id, int(s)); // "sent" but destroyed
            if (s == St::Sending)
                g.state[id] = St::InSystem;
        } else {
            // MailboxClosed: the value was not queued (so no one processed it).
            CHECK(s == St::Dropped || s == St::Sending, id, int(s));
            g.state[id] = St::Refused;
        }
    }
    g.sendsInFlight.fetch_sub(1);
}

struct GroupRec
{
    QPointer<Group> group;
    std::shared_ptr<BoxRec> box;
    int onClosed = 0;
    bool spawned = false;
};

struct HandleRec
{
    QPointer<stage::WorkerHandle> handle; // a slot may delete it
    std::shared_ptr<BoxRec> box;
    int starts = 0;
    int finishes = 0;
};

struct Input
{
    const uint8_t *p;
    size_t n;
    const uint8_t *start = nullptr;
    uint8_t u8()
    {
        if (!n)
            return 0;
        --n;
        return *p++;
    }
    bool empty() const { return n == 0; }
};

void processEvents(int passes)
{
    for (int i = 0; i < passes; ++i) {
        QCoreApplication::processEvents(QEventLoop::AllEvents);
        QCoreApplication::sendPostedEvents(nullptr, QEvent::DeferredDelete);
    }
}

int spinBudgetMs = 0; // per input: keeps one input within milliseconds

void spinFor(int ms)
{
    ms = std::min(ms, spinBudgetMs);
    spinBudgetMs -= ms;
    QElapsedTimer timer;
    timer.start();
    do {
        processEvents(1);
    } while (timer.elapsed() < ms);
}

// ---- actors (issue #17): asks and tells of stage::Actor under faults ----------------------------
//
// Opcode bytes 234..255 (op % 26 would be 0..21) are actor operations ((byte - 234) % 8): a new
// actor in one of two slots (on the main thread or a thread of its own, bounded or not, a root or
// a supervisor's child, its askTimeout and maxRedeliveries from the input), tell, ask (a
// coroutine), askFuture (slot code), restart / stop / start, delete / deleteLater, setAskTimeout
// / setMaxRedeliveries, and a nested ask (the handler asks the other actor, or itself). What a
// handler does is the message's behaviour: answer, throw (restart and redelivery, dead letter
// after maxRedeliveries), sleep, hang until stopped, ask the other actor, throw
// stage::Cancelled, a foreign sleep; a replying handler answers now, defers its answer to a
// coroutine, drops its reply, or throws.
// Checked: every ask ends exactly once (its value, which must be the right one, or TimeoutError,
// DeadLettered, BrokenReply, MailboxClosed: never another exception, never silently), a handler
// never completes twice for one message, and at the end every ask has ended and every actor
// coroutine has finished.

struct Job
{
    int id = 0;
    int behaviour = 0;
};
struct DeferJob
{
    int id = 0;
    int behaviour = 0;
};
struct Note
{
    int id = 0;
    int behaviour = 0;
};
using FuzzActorProtocol = stage::Protocol<int(Job), int(DeferJob), void(Note)>;
using FuzzActor = stage::Actor<FuzzActorProtocol>;
using FuzzRef = stage::ActorRef<FuzzActorProtocol>;

constexpr int MaxAsks = 256;

enum class AskEnd : uint8_t { Value, Timeout, DeadLettered, Broken, Closed, Invalid };

struct ActorTracker
{
    std::mutex mutex;
    int nextId = 0;
    int ends[MaxAsks] = {};       // how many times each ask ended (must end exactly once)
    int completions[MaxAsks] = {}; // a handler completed for the message (at most once)
    int attempts[MaxAsks] = {};    // handler entries
    std::atomic<int> coroutines{0}; // ask coroutines, deferred answers and nested asks alive
    FuzzRef refs[2]; // the world's references, for nested asks (guarded by the mutex)
    std::array<std::atomic<long long>, 6> endKinds{};

    void reset()
    {
        std::lock_guard lock(mutex);
        nextId = 0;
        for (int i = 0; i < MaxAsks; ++i)
            ends[i] = completions[i] = attempts[i] = 0;
    }
    void setRef(int slot, FuzzRef ref)
    {
        FuzzRef old; // released outside the lock
        std::lock_guard lock(mutex);
        old = std::exchange(refs[slot % 2], std::move(ref));
    }
    FuzzRef ref(int slot)
    {
        std::lock_guard lock(mutex);
        return refs[slot % 2];
    }
    int newId()
    {
        std::lock_guard lock(mutex);
        return nextId < MaxAsks ? nextId++ : -1;
    }
    void ended(int id, AskEnd kind)
    {
        std::lock_guard lock(mutex);
        CHECK(id >= 0 && id < MaxAsks, id);
        CHECK(++ends[id] == 1, id, ends[id]); // an ask resolved twice
        endKinds[int(kind)].fetch_add(1);
    }
    int attempt(int id)
    {
        std::lock_guard lock(mutex);
        return attempts[id]++;
    }
    void completed(int id)
    {
        std::lock_guard lock(mutex);
        CHECK(++completions[id] == 1, id, completions[id]); // handled again after it completed
    }
};

ActorTracker ga;

struct CoroutineCount
{
    CoroutineCount() { ga.coroutines.fetch_add(1); }
    ~CoroutineCount() { ga.coroutines.fetch_sub(1); }
};

int jobAnswer(int id) { return id * 3 + 1; }
int deferAnswer(int id) { return id * 5 + 2; }

/* How an ask ended: its exception's kind (anything else is a violation). */
AskEnd askEndOf(std::exception_ptr error)
{
    try {
        std::rethrow_exception(error);
    } catch (const stage::DeadLettered &) {
        return AskEnd::DeadLettered;
    } catch (const stage::BrokenReply &) {
        return AskEnd::Broken;
    } catch (const stage::TimeoutError &) {
        return AskEnd::Timeout;
    } catch (const stage::MailboxClosed &) {
        return AskEnd::Closed;
    } catch (const stage::InvalidOperation &) {
        return AskEnd::Invalid;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "stage-fuzz: an ask failed with %s\n", e.what());
        violation("an ask failed with an undocumented exception (a handler's own, or a cancel)");
    } catch (...) {
        violation("an ask failed with a non-std exception");
    }
}

/* A nested ask from a handler (its result is ignored: a timeout, a cycle or a self-ask refusal). */
QCoro::Task<> nestedAsk(int slot, int timeoutMs)
{
    CoroutineCount count;
    FuzzRef copy = ga.ref(slot);
    if (copy.isNull())
        co_return;
    try {
        co_await copy.ask(Job{-1, 0}, std::chrono::milliseconds(1 + timeoutMs));
    } catch (const std::exception &) {
    }
}

/* A deferred answer: after \a ms, from a coroutine started by the replying handler. */
QCoro::Task<> answerLater(stage::Reply<int> reply, int id, int ms)
{
    CoroutineCount count;
    co_await stage::sleep(std::chrono::milliseconds(ms)); // cancelled with the actor's run: the reply breaks
    reply.send(deferAnswer(id));
}

void spawnFuzzActor(FuzzActor &actor)
{
    actor.spawn(
        [] { return 0; },
        [](int &handled, const Job &m) -> QCoro::Task<int> {
            if (m.id < 0) { // a nested ask's probe
                co_return 0;
            }
            const int attempt = ga.attempt(m.id);
            const int param = m.behaviour >> 3;
            switch (m.behaviour & 7) {
            case 1: // throw (the first param % 4 attempts, or always with param 3)
                if (param % 4 == 3 || attempt < param % 4)
                    throw Fail();
                break;
            case 2:
                co_await stage::sleep(std::chrono::milliseconds(param % 8));
                break;
            case 3: // hang until stopped (the caller times out)
                co_await stage::sleep(1h);
                break;
            case 4:
                co_await nestedAsk(param, param % 16);
                break;
            case 5:
                if (attempt == 0)
                    throw stage::Cancelled();
                break;
            case 6:
                co_await QCoro::sleepFor(1ms);
                break;
            default:
                break;
            }
            ++handled;
            ga.completed(m.id);
            co_return jobAnswer(m.id);
        },
        [](int &handled, DeferJob &m, stage::Reply<int> &reply) {
            const int attempt = ga.attempt(m.id);
            const int param = m.behaviour >> 2;
            switch (m.behaviour & 3) {
            case 0:
                reply.send(deferAnswer(m.id));
                break;
            case 1:
                answerLater(std::move(reply), m.id, param % 6);
                break;
            case 2: // dropped: a warning, and the caller gets BrokenReply at once
                break;
            default:
                if (param % 3 == 2 || attempt < param % 3)
                    throw Fail();
                reply.send(deferAnswer(m.id));
                break;
            }
            ++handled;
            ga.completed(m.id);
        },
        [](int &handled, const Note &m) {
            const int attempt = ga.attempt(m.id);
            if ((m.behaviour & 1) && attempt < 1 + (m.behaviour >> 1) % 5)
                throw Fail();
            ++handled;
            ga.completed(m.id);
        });
}

/* One ask as a coroutine: records how it ended. */
template<typename M>
QCoro::Task<> askOnce(FuzzRef ref, M message, int timeoutMs, int expected)
{
    CoroutineCount count;
    const int id = message.id;
    AskEnd end = AskEnd::Value;
    try {
        const int value = co_await ref.ask(std::move(message), std::chrono::milliseconds(timeoutMs));
        CHECK(value == expected, value, expected);
    } catch (...) {
        end = askEndOf(std::current_exception());
    }
    ga.ended(id, end);
}

struct ActorRec
{
    QPointer<FuzzActor> actor;
    FuzzRef ref; // kept after the actor is gone: asks then fail with MailboxClosed
};

/* The actors of one input: kept apart from the rest of the world. */
struct ActorWorld
{
    std::array<ActorRec, 2> actors;
    QObject *ctx = nullptr; // the world's context object, for askFuture's continuations

    ~ActorWorld()
    {
        ga.setRef(0, FuzzRef());
        ga.setRef(1, FuzzRef());
    }

    /* \a usable: whether the world may touch an object (not being deleted). */
    template<typename Usable>
    void step(uint8_t op, Input &in, std::array<QPointer<Supervisor>, 3> &sups, Usable usable)
    {
        const uint8_t a = in.u8();
        ActorRec &rec = actors[a % 2];
        switch (op % 8) {
        case 0: { // a new actor
            const uint8_t b = in.u8();
            if (rec.actor)
                break;
            auto *actor = (b & 1) ? new FuzzActor(1 + (b >> 1) % 3) : new FuzzActor;
            actor->setObjectName(QStringLiteral("actor%1").arg(a % 2));
            actor->setBackoff(stage::Backoff::none());
            actor->setAskTimeout(1 + (b >> 3) % 24);
            actor->setMaxRedeliveries((b >> 5) % 4);
            actor->setShutdownTimeout(10);
            if (a & 0x10)
                actor->setThreadCount(1);
            if (a & 0x20) { // a supervisor's child (if it has one), started with it
                if (Supervisor *s = sups[(a >> 6) % sups.size()]; s && usable(s))
                    s->addChild(actor, RestartType((b >> 1) % 3));
            }
            rec.actor = actor;
            rec.ref = actor->ref();
            ga.setRef(a % 2, rec.ref);
            spawnFuzzActor(*actor);
            break;
        }
        case 1: { // tell
            const uint8_t b = in.u8();
            if (rec.ref.isNull())
                break;
            const int id = ga.newId();
            if (id < 0)
                break;
            const stage::SendStatus status = rec.ref.tell(Note{id, b});
            // A tell has no reply: it ends now, with its status (what the handler does is checked
            // by the completions).
            ga.ended(id, status == stage::SendStatus::Sent ? AskEnd::Value : AskEnd::Closed);
            break;
        }
        case 2: // ask
        case 7: { // ask a replying handler
            const uint8_t b = in.u8(), t = in.u8();
            if (rec.ref.isNull())
                break;
            const int id = ga.newId();
            if (id < 0)
                break;
            const int timeout = (t & 0x80) ? -1 : 1 + t % 24; // -1: the actor's askTimeout
            if (op % 8 == 2)
                askOnce(rec.ref, Job{id, b}, timeout, jobAnswer(id));
            else
                askOnce(rec.ref, DeferJob{id, b}, timeout, deferAnswer(id));
            break;
        }
        case 3: { // askFuture, continued on the world's context
            const uint8_t b = in.u8(), t = in.u8();
            if (rec.ref.isNull())
                break;
            const int id = ga.newId();
            if (id < 0)
                break;
            auto *coroutine = new CoroutineCount; // until the continuation runs
            rec.ref.askFuture(Job{id, b}, std::chrono::milliseconds(1 + t % 24))
                .then(ctx,
                      [id, coroutine](int value) {
                          CHECK(value == jobAnswer(id), value, jobAnswer(id));
                          ga.ended(id, AskEnd::Value);
                          delete coroutine;
                      })
                .onFailed(ctx, [id, coroutine] {
                    ga.ended(id, askEndOf(std::current_exception()));
                    delete coroutine;
                });
            break;
        }
        case 4: { // restart, stop, start
            const uint8_t b = in.u8();
            if (!rec.actor)
                break;
            switch (b % 3) {
            case 0:
                rec.actor->restart();
                break;
            case 1:
                rec.actor->stop();
                break;
            default:
                rec.actor->start();
                break;
            }
            break;
        }
        case 5: // delete, deleteLater
            if (rec.actor) {
                if (a & 0x40)
                    rec.actor->deleteLater();
                else
                    delete rec.actor.data();
            }
            break;
        case 6: { // setAskTimeout (0 refused), setMaxRedeliveries
            const uint8_t b = in.u8();
            if (!rec.actor)
                break;
            if (b & 1)
                rec.actor->setAskTimeout(int(b >> 1) % 24); // 0: refused with a warning
            else
                rec.actor->setMaxRedeliveries(int(b >> 1) % 5 - 1);
            break;
        }
        }
    }

    void check()
    {
        for (auto &rec : actors) {
            if (!rec.actor)
                continue;
            const stage::GroupStatistics s = rec.actor->statistics();
            CHECK(s.isConsistent(), s.started, s.running);
            CHECK(rec.actor->size() == 1, rec.actor->size());
            CHECK(rec.actor->expiredAsks() >= 0);
        }
    }

    /* Deletes the actors and waits until every ask has ended and every coroutine finished. */
    void teardown()
    {
        QElapsedTimer settle;
        settle.start();
        auto allEnded = [] {
            std::lock_guard lock(ga.mutex);
            for (int id = 0; id < ga.nextId; ++id)
                if (ga.ends[id] != 1)
                    return false;
            return true;
        };
        // First the asks end by themselves (an answer, a dead letter or their timeout: 24 ms at
        // most, from the last call); then the actors go, breaking what is still pending.
        while (!allEnded() && settle.elapsed() < 60)
            processEvents(1);
        for (auto &rec : actors) {
            if (rec.actor) {
                rec.actor->shutdown();
            }
        }
        for (auto &rec : actors)
            delete rec.actor.data();
        QElapsedTimer timer;
        timer.start();
        auto done = [] {
            std::lock_guard lock(ga.mutex);
            for (int id = 0; id < ga.nextId; ++id)
                if (ga.ends[id] != 1)
                    return false;
            return ga.coroutines.load() == 0;
        };
        while (!done() && timer.elapsed() < 5000)
            processEvents(1);
        {
            std::lock_guard lock(ga.mutex);
            for (int id = 0; id < ga.nextId; ++id)
                CHECK(ga.ends[id] == 1, id, ga.ends[id]); // an ask never ended: lost silently
            CHECK(ga.coroutines.load() == 0, ga.coroutines.load());
        }
        if (qEnvironmentVariableIsSet("STAGE_FUZZ_VERBOSE") && ga.nextId > 0) {
            std::fprintf(stderr, "stage-fuzz: %d actor call(s) ended: value %lld, timeout %lld, dead letter %lld, broken %lld, "
                         "closed %lld, invalid %lld\n", ga.nextId, ga.endKinds[0].load(), ga.endKinds[1].load(),
                         ga.endKinds[2].load(), ga.endKinds[3].load(), ga.endKinds[4].load(), ga.endKinds[5].load());
        }
        for (auto &k : ga.endKinds)
            k.store(0);
        ga.setRef(0, FuzzRef());
        ga.setRef(1, FuzzRef());
        for (auto &rec : actors)
            rec.ref = FuzzRef();
    }
};

bool legal(Node::State s)
{
    return int(s) >= int(Node::State::Idle) && int(s) <= int(Node::State::Failed);
}

/* What a slot does when its signal fires. */
enum class Act : uint8_t {
    DeleteEmitter,
    DeleteLaterEmitter,
    DeleteSupervisor, // the emitter's supervisor (a mailbox: its consumers'; a handle: none)
    Shutdown,         // Group / Supervisor::shutdown(), WorkerHandle::requestStop()
    Start,            // Supervisor::start(), a group's spawn (or its root's start), WorkerHandle::start()
    Restart,          // WorkerHandle::restart() (the emitter, or a handle of the world)
    SetSizeZero,
    SetSizeUp,
    AddChild,         // on the emitter (a supervisor) or its supervisor: a node of the world
    RemoveChild,      // the emitter from its supervisor, or a child of the emitting supervisor
    CloseMailbox,
    DeleteOther,      // another object of the world: a group, supervisor, handle or mailbox object
    Count
};
constexpr int ActCount = int(Act::Count);

const char *actName(Act a)
{
    static const char *const names[] = {"deleteEmitter", "deleteLaterEmitter", "deleteSupervisor", "shutdown",
                                        "start",         "restart",            "setSize0",         "setSizeUp",
                                        "addChild",      "removeChild",        "closeMailbox",     "deleteOther"};
    return names[int(a)];
}

enum class EmitterKind : uint8_t { Group, Supervisor, Mailbox, Handle };

/* One slot connected by the input. */
struct SlotRec
{
    EmitterKind kind = EmitterKind::Group;
    int index = 0;                // the emitter's slot in the world (groups, sups, handles)
    std::shared_ptr<BoxRec> box;  // a mailbox emitter's mailbox
    QPointer<QObject> emitter;
    int serial = -1;              // the emitter's serial (World::serials)
    const char *signal = "";
    Act action = Act::DeleteEmitter;
    uint8_t arg = 0;
    bool every = false;
    int fires = 0;
    int ran = 0;
    QMetaObject::Connection connection;
};

constexpr int MaxSlots = 16;
constexpr int MaxSlotActions = 64; // per input: slots that feed each other would loop forever

/* Marks an object dying when its deleteLater() is carried out (the DeferredDelete event reaches
   the filters before the object's destructor runs). */
struct DeferredDeleteFilter : QObject
{
    std::function<void(QObject *)> onDelete;
    bool eventFilter(QObject *watched, QEvent *event) override
    {
        if (event->type() == QEvent::DeferredDelete)
            onDelete(watched);
        return false;
    }
};

bool strictDestruction()
{
    static const bool strict = qEnvironmentVariableIsEmpty("STAGE_FUZZ_STRICT")
        || qEnvironmentVariableIntValue("STAGE_FUZZ_STRICT") != 0;
    return strict;
}

bool verbose()
{
    static const bool v = qEnvironmentVariableIsSet("STAGE_FUZZ_VERBOSE");
    return v;
}

struct World
{
    std::vector<std::shared_ptr<BoxRec>> boxes; // every mailbox of the input (kept to the end)
    std::array<std::shared_ptr<BoxRec>, 3> boxSlots;
    std::array<GroupRec, 4> groups;
    std::array<QPointer<Supervisor>, 3> sups;
    std::array<HandleRec, 2> handles;
    ActorWorld actorWorld; // the actors: opcode bytes 234..255

    // Slots and the objects they may delete.
    std::vector<std::unique_ptr<SlotRec>> slotRecs;
    std::vector<uint8_t> deleted;             // by serial: its deletion has begun (or it is gone)
    QHash<const QObject *, int> serials;      // the tracked objects alive now
    QSet<const QObject *> dying;              // deletion begun, destroyed() not yet emitted
    long long slotFires = 0, slotSkipped = 0, slotOverBudget = 0, firedWhileDying = 0;
    std::array<long long, ActCount> actionRuns{};
    int actionBudget = MaxSlotActions;
    bool tearingDown = false;
    // Declared last, destroyed first: every connection the world made goes with it.
    std::unique_ptr<DeferredDeleteFilter> ctx = [this] {
        auto f = std::make_unique<DeferredDeleteFilter>();
        f->onDelete = [this](QObject *o) { beginDelete(o); };
        return f;
    }();

    std::shared_ptr<BoxRec> boxAt(uint8_t b)
    {
        auto &slot = boxSlots[b % boxSlots.size()];
        if (!slot)
            slot = newBox(-1);
        return slot;
    }
    std::shared_ptr<BoxRec> newBox(int capacity) // -1: unbounded
    {
        auto rec = std::make_shared<BoxRec>();
        rec->index = int(boxes.size());
        if (capacity == -1)
            rec->handle.emplace();
        else
            rec->handle.emplace(capacity); // 0 and negative: "using 1", with a warning
        if (capacity != -1)
            CHECK(rec->handle->capacity() == std::max(1, capacity), capacity, rec->handle->capacity());
        else
            CHECK(rec->handle->capacity() == -1);
        boxes.push_back(rec);
        return rec;
    }
    Node *nodeAt(uint8_t b)
    {
        b %= 8;
        if (b < 4)
            return groups[b].group.data();
        if (b < 7)
            return sups[b - 4].data();
        return nullptr;
    }

    // ---- the objects slots may delete ------------------------------------------------------

    /* Gives \a o a serial (once) and forgets it, dying or not, when it is destroyed. */
    int track(QObject *o)
    {
        if (const auto it = serials.constFind(o); it != serials.cend())
            return *it;
        const int serial = int(deleted.size());
        deleted.push_back(0);
        serials.insert(o, serial);
        QObject::connect(o, &QObject::destroyed, ctx.get(), [this, o, serial] {
            deleted[serial] = 1;
            serials.remove(o);
            dying.remove(o);
        });
        return serial;
    }
    /* \a o is about to be destroyed: it and the nodes it owns (a supervisor deletes its
       children) are dying and will never be touched again. */
    void beginDelete(QObject *o)
    {
        auto mark = [this](QObject *x) {
            deleted[track(x)] = 1;
            dying.insert(x);
        };
        mark(o);
        for (Node *child : o->findChildren<Node *>())
            mark(child);
    }
    /* Alive, and its deletion has not begun. */
    bool usable(const QObject *o) const { return o && !dying.contains(o); }
    void deleteObject(QObject *o)
    {
        if (!usable(o))
            return;
        beginDelete(o);
        QPointer<QObject> p(o);
        delete o;
        CHECK(!p); // gone at once
    }
    GroupRec *recOf(const Group *group)
    {
        for (auto &gr : groups)
            if (group && gr.group == group)
                return &gr;
        return nullptr;
    }
    HandleRec *recOf(const stage::WorkerHandle *handle)
    {
        for (auto &h : handles)
            if (handle && h.handle == handle)
                return &h;
        return nullptr;
    }

    void newHandle(HandleRec &h, uint8_t a)
    {
        auto *handle = new stage::WorkerHandle;
        h.handle = handle;
        h.starts = h.finishes = 0;
        h.box.reset();
        track(handle);
        handle->setStopTimeout(a % 3);
        QObject::connect(handle, &stage::WorkerHandle::finished, handle, [&h] { ++h.finishes; });
    }
    /* Starts \a h's worker reading its mailbox (chosen by \a a the first time). */
    bool startHandle(HandleRec &h, uint8_t a)
    {
        if (!h.box) {
            h.box = boxAt(a);
            if (h.box->threaded) {
                h.box.reset();
                return false;
            }
        }
        QPointer<stage::WorkerHandle> handle = h.handle;
        const bool ok = handle->start([rec = h.box, box = *h.box->handle](stage::Worker &w) {
            return consume(w, rec, box, 2);
        });
        if (ok && handle == h.handle)
            ++h.starts;
        return ok;
    }

    // ---- slots -----------------------------------------------------------------------------

    template<typename Sender, typename Signal, typename Fn>
    void hook(SlotRec *r, Sender *sender, Signal signal, const char *name, Fn &&fn)
    {
        r->signal = name;
        r->connection = QObject::connect(sender, signal, ctx.get(), std::forward<Fn>(fn), Qt::DirectConnection);
    }
    template<typename Sender, typename Signal>
    void hook(SlotRec *r, Sender *sender, Signal signal, const char *name)
    {
        hook(r, sender, signal, name, [this, r] { fire(r); });
    }
    /* Node's signals: stateChanged (any state, or one), gaveUp, stopped, statisticsChanged,
       supervisorChanged. Returns false if \a sig is not one of them. */
    bool hookNode(SlotRec *r, Node *node, int sig)
    {
        static const char *const states[] = {"stateChanged:Idle",     "stateChanged:Starting", "stateChanged:Running",
                                             "stateChanged:Restarting", "stateChanged:Stopping", "stateChanged:Stopped",
                                             "stateChanged:Failed"};
        if (sig == 0) {
            hook(r, node, &Node::stateChanged, "stateChanged");
        } else if (sig <= 7) {
            const auto want = Node::State(sig - 1);
            hook(r, node, &Node::stateChanged, states[sig - 1], [this, r, want](Node::State state) {
                if (state == want)
                    fire(r);
            });
        } else if (sig == 8) {
            hook(r, node, &Node::gaveUp, "gaveUp");
        } else if (sig == 9) {
            hook(r, node, &Node::stopped, "stopped");
        } else if (sig == 10) {
            hook(r, node, &Node::statisticsChanged, "statisticsChanged");
        } else if (sig == 11) {
            hook(r, node, &Node::supervisorChanged, "supervisorChanged");
        } else {
            return false;
        }
        return true;
    }

    /* Connects a slot: the emitter (kind and slot), the signal, the action and its argument. */
    void connectSlot(Input &in, bool every)
    {
        const uint8_t e = in.u8(), sig = in.u8(), action = in.u8(), arg = in.u8();
        if (slotRecs.size() >= MaxSlots)
            return;
        auto r = std::make_unique<SlotRec>();
        r->kind = EmitterKind(e % 4);
        r->action = Act(action % ActCount);
        r->arg = arg;
        r->every = every;
        QObject *emitter = nullptr;
        switch (r->kind) {
        case EmitterKind::Group: {
            r->index = (e >> 2) % groups.size();
            Group *group = groups[r->index].group;
            if (!group)
                return;
            emitter = group;
            const int n = sig % 14;
            if (n == 12)
                hook(r.get(), group, &Group::workerFinished, "workerFinished");
            else if (n == 13)
                hook(r.get(), group, &Group::sizeChanged, "sizeChanged");
            else
                hookNode(r.get(), group, n);
            break;
        }
        case EmitterKind::Supervisor: {
            r->index = (e >> 2) % sups.size();
            Supervisor *sup = sups[r->index];
            if (!sup)
                return;
            emitter = sup;
            const int n = sig % 17;
            switch (n) {
            case 12: hook(r.get(), sup, &Supervisor::childExited, "childExited"); break;
            case 13: hook(r.get(), sup, &Supervisor::childRestarted, "childRestarted"); break;
            case 14: hook(r.get(), sup, &Supervisor::childAdded, "childAdded"); break;
            case 15: hook(r.get(), sup, &Supervisor::childRemoved, "childRemoved"); break;
            case 16: hook(r.get(), sup, &Supervisor::childCountChanged, "childCountChanged"); break;
            default: hookNode(r.get(), sup, n); break;
            }
            break;
        }
        case EmitterKind::Mailbox: {
            r->box = boxAt(e >> 2);
            r->index = r->box->index;
            stage::MailboxBase *object = r->box->handle->object();
            if (!object)
                return; // deleted: the mailbox is closed
            emitter = object;
            switch (sig % 4) {
            case 0: hook(r.get(), object, &stage::MailboxBase::countChanged, "countChanged"); break;
            case 1: hook(r.get(), object, &stage::MailboxBase::closedChanged, "closedChanged"); break;
            case 2: hook(r.get(), object, &stage::MailboxBase::statisticsChanged, "statisticsChanged"); break;
            default: hook(r.get(), object, &stage::MailboxBase::maxRedeliveriesChanged, "maxRedeliveriesChanged"); break;
            }
            break;
        }
        case EmitterKind::Handle: {
            using H = stage::WorkerHandle;
            r->index = (e >> 2) % handles.size();
            H *handle = handles[r->index].handle;
            if (!handle)
                return;
            emitter = handle;
            static const char *const states[] = {"stateChanged:Idle", "stateChanged:Running", "stateChanged:Stopping",
                                                 "stateChanged:Finished"};
            const int n = sig % 11;
            switch (n) {
            case 0: hook(r.get(), handle, &H::stateChanged, "stateChanged"); break;
            case 1:
            case 2:
            case 3:
            case 4: {
                const auto want = H::State(n - 1);
                hook(r.get(), handle, &H::stateChanged, states[n - 1], [this, r = r.get(), want](H::State state) {
                    if (state == want)
                        fire(r);
                });
                break;
            }
            case 5: hook(r.get(), handle, &H::runningChanged, "runningChanged"); break;
            case 6: hook(r.get(), handle, &H::started, "started"); break;
            case 7: hook(r.get(), handle, &H::finished, "finished"); break;
            case 8: hook(r.get(), handle, &H::stopTimeoutChanged, "stopTimeoutChanged"); break;
            case 9: hook(r.get(), handle, &H::abandonedCountChanged, "abandonedCountChanged"); break;
            default: hook(r.get(), handle, &H::abandonedWorkerFinished, "abandonedWorkerFinished"); break;
            }
            break;
        }
        }
        CHECK(r->connection);
        r->emitter = emitter;
        r->serial = track(emitter);
        slotRecs.push_back(std::move(r));
    }

    static const char *kindName(EmitterKind k)
    {
        static const char *const names[] = {"group", "supervisor", "mailbox", "handle"};
        return names[int(k)];
    }

    void fire(SlotRec *r)
    {
        // The emitter is alive (Qt disconnects a destroyed sender) and its deletion has not begun:
        // after a node is deleted (or its supervisor, which takes it along), none of its signals
        // comes again.
        CHECK(r->emitter, r->serial);
        if (deleted[r->serial])
            violation("a signal of an object whose deletion had begun", r->serial);
        CHECK(r->every || r->fires == 0, r->fires); // a one-shot slot is disconnected at once
        ++r->fires;
        ++slotFires;
        if (!r->every)
            QObject::disconnect(r->connection);
        if (!dying.isEmpty()) {
            // A Stage object's destructor has begun (a QPointer to it is still set) and a slot runs.
            ++firedWhileDying;
            if (strictDestruction())
                violation("a signal was delivered while a Stage object was being destroyed", dying.size(), r->serial);
        }
        bool ran = false;
        if (actionBudget > 0) {
            --actionBudget;
            ran = runAction(*r);
        } else {
            ++slotOverBudget;
        }
        if (ran) {
            ++actionRuns[int(r->action)];
            ++r->ran;
        } else {
            ++slotSkipped;
        }
        if (verbose())
            std::fprintf(stderr, "stage-fuzz: slot %s %d %s -> %s%s\n", kindName(r->kind), r->index, r->signal,
                         actName(r->action), ran ? "" : " (skipped)");
    }

    /* The group a slot acts on: the emitter; a supervisor's first group child; a group reading
       the emitting mailbox; for a handle, a group of the world. */
    Group *targetGroup(const SlotRec &r)
    {
        QObject *e = r.emitter;
        switch (r.kind) {
        case EmitterKind::Group:
            return usable(e) ? static_cast<Group *>(e) : nullptr;
        case EmitterKind::Supervisor:
            if (usable(e))
                for (Node *child : static_cast<Supervisor *>(e)->childNodes())
                    if (auto *group = qobject_cast<Group *>(child); usable(group))
                        return group;
            break;
        case EmitterKind::Mailbox:
            for (auto &gr : groups)
                if (usable(gr.group) && gr.box == r.box)
                    return gr.group;
            return nullptr;
        case EmitterKind::Handle:
            break;
        }
        Group *group = groups[r.arg % groups.size()].group;
        return usable(group) ? group : nullptr;
    }
    /* The supervisor of the emitter (of the group reading a mailbox); none for a handle. */
    Supervisor *targetSupervisor(const SlotRec &r)
    {
        Node *node = nullptr;
        if (r.kind == EmitterKind::Group || r.kind == EmitterKind::Supervisor)
            node = usable(r.emitter) ? static_cast<Node *>(r.emitter.data()) : nullptr;
        else if (r.kind == EmitterKind::Mailbox)
            node = targetGroup(r);
        Supervisor *sup = node ? node->supervisor() : nullptr;
        return usable(sup) ? sup : nullptr;
    }

    bool runAction(SlotRec &r)
    {
        QObject *e = r.emitter;
        if (!usable(e))
            return false;
        const uint8_t a = r.arg;
        switch (r.action) {
        case Act::DeleteEmitter:
            deleteObject(e);
            return true;
        case Act::DeleteLaterEmitter:
            e->installEventFilter(ctx.get());
            e->deleteLater();
            return true;
        case Act::DeleteSupervisor: {
            Supervisor *sup = targetSupervisor(r);
            if (!sup)
                return false;
            deleteObject(sup);
            return true;
        }
        case Act::Shutdown:
            switch (r.kind) {
            case EmitterKind::Group:
                static_cast<Group *>(e)->shutdown(std::chrono::milliseconds(a % 3));
                return true;
            case EmitterKind::Supervisor:
                static_cast<Supervisor *>(e)->shutdown();
                return true;
            case EmitterKind::Handle:
                static_cast<stage::WorkerHandle *>(e)->requestStop();
                return true;
            case EmitterKind::Mailbox:
                if (Group *group = targetGroup(r)) {
                    group->shutdown(std::chrono::milliseconds(a % 3));
                    return true;
                }
                return false;
            }
            return false;
        case Act::Start:
            switch (r.kind) {
            case EmitterKind::Supervisor:
                // A child asks its supervisor (restartChild); a root starts, also again after its
                // shutdown: not while tearing down (the teardown has shut every root down).
                if (tearingDown)
                    return false;
                static_cast<Supervisor *>(e)->start();
                return true;
            case EmitterKind::Handle: {
                // Not while tearing down: the teardown has asked every handle to stop.
                HandleRec *h = recOf(static_cast<stage::WorkerHandle *>(e));
                if (!h || tearingDown || h->handle->isRunning())
                    return false;
                startHandle(*h, a);
                return true;
            }
            case EmitterKind::Group:
            case EmitterKind::Mailbox: {
                Group *group = targetGroup(r);
                GroupRec *gr = recOf(group);
                if (!gr)
                    return false;
                if (!gr->spawned) {
                    spawn(*gr);
                    return true;
                }
                Supervisor *root = group->supervisor();
                while (root && root->supervisor())
                    root = root->supervisor();
                if (!usable(root) || tearingDown)
                    return false;
                root->start();
                return true;
            }
            }
            return false;
        case Act::Restart: {
            HandleRec *h = r.kind == EmitterKind::Handle ? recOf(static_cast<stage::WorkerHandle *>(e))
                                                         : &handles[a % handles.size()];
            if (!h || !usable(h->handle) || tearingDown)
                return false;
            QPointer<stage::WorkerHandle> handle = h->handle;
            if (handle->restart() && handle == h->handle)
                ++h->starts;
            return true;
        }
        case Act::SetSizeZero:
        case Act::SetSizeUp: {
            QPointer<Group> group = targetGroup(r);
            if (!group)
                return false;
            const int size = r.action == Act::SetSizeZero ? 0 : std::min(group->size() + 1 + a % 2, 4);
            const long long fires = slotFires;
            group->setSize(size);
            if (usable(group) && slotFires == fires) // see AddChild
                CHECK(group->size() == size, size, group->size());
            return true;
        }
        case Act::AddChild: {
            QPointer<Supervisor> sup = r.kind == EmitterKind::Supervisor ? static_cast<Supervisor *>(e)
                                                                           : targetSupervisor(r);
            if (!sup)
                sup = sups[a % sups.size()];
            QPointer<Node> child = nodeAt(a >> 2);
            if (!usable(sup) || (child && !usable(child)))
                return false;
            const long long fires = slotFires;
            const bool ok = sup->addChild(child, RestartType((a >> 5) % 3));
            // Inside a flush of queued signals, the call's own signals wait for this slot to
            // return; but a slot of a signal emitted outside any Stage operation (a coalesced
            // statisticsChanged, a MailboxBase's) makes this call the outermost operation, and
            // its signals reach their slots before it returns.
            if (ok && usable(sup) && usable(child) && slotFires == fires)
                CHECK(child->supervisor() == sup && child->parent() == sup);
            return true;
        }
        case Act::RemoveChild: {
            QPointer<Supervisor> sup;
            QPointer<Node> child;
            if (r.kind == EmitterKind::Supervisor) {
                sup = static_cast<Supervisor *>(e);
                const QList<Node *> children = sup->childNodes();
                if (!children.isEmpty())
                    child = children[a % children.size()];
                else
                    child = nodeAt(a); // a stranger: refused
            } else if (r.kind == EmitterKind::Group) {
                child = static_cast<Node *>(e);
                sup = targetSupervisor(r);
            } else {
                child = targetGroup(r);
                sup = targetSupervisor(r);
            }
            if (!usable(sup) || !usable(child))
                return false;
            const bool wasChild = child->supervisor() == sup;
            const long long fires = slotFires;
            const bool ok = sup->removeChild(child);
            CHECK(ok == wasChild, ok, wasChild);
            if (ok && usable(child) && slotFires == fires) // see AddChild
                CHECK(child->supervisor() == nullptr && child->parent() == nullptr);
            return true;
        }
        case Act::CloseMailbox: {
            std::shared_ptr<BoxRec> box = r.box;
            if (!box) {
                if (r.kind == EmitterKind::Group)
                    box = groups[r.index].box;
                else if (r.kind == EmitterKind::Handle)
                    box = handles[r.index].box;
            }
            if (!box)
                box = boxSlots[a % boxSlots.size()];
            if (!box)
                return false;
            box->handle->close();
            CHECK(box->handle->isClosed());
            return true;
        }
        case Act::DeleteOther: {
            const int which = a % 10;
            QObject *victim = nullptr;
            if (which < 4)
                victim = groups[which].group;
            else if (which < 7)
                victim = sups[which - 4];
            else if (which < 9)
                victim = handles[which - 7].handle;
            else if (const auto &box = boxSlots[(a >> 4) % boxSlots.size()])
                victim = box->handle->object();
            if (!usable(victim))
                return false;
            deleteObject(victim);
            return true;
        }
        case Act::Count:
            break;
        }
        return false;
    }

    int newId(BoxRec &rec, St st)
    {
        std::lock_guard lock(g.mutex);
        if (g.nextId >= MaxIds)
            return -1;
        const int id = g.nextId++;
        g.state[id] = st;
        g.box[id] = rec.index;
        return id;
    }

    void trySendOrBlocking(Input &in, bool blocking)
    {
        auto rec = boxAt(in.u8());
        const int behaviour = in.u8() % 8;
        const int id = newId(*rec, St::InSystem); // before the send: a threaded consumer may take it at once
        if (id < 0)
            return;
        Msg m(id, behaviour);
        const stage::SendStatus s = blocking ? rec->handle->sendBlocking(std::move(m), 0ms)
                                             : rec->handle->trySend(std::move(m));
        if (s == stage::SendStatus::Sent) {
            CHECK(m.id == -1); // moved from when sent
            return;
        }
        CHECK(m.id == id); // not moved from otherwise
        if (s == stage::SendStatus::Closed)
            CHECK(rec->handle->isClosed());
        std::lock_guard lock(g.mutex);
        CHECK(g.state[id] == St::InSystem);
        g.state[id] = St::Refused;
    }

    void step(Input &in)
    {
        const uint8_t op = in.u8();
        static const bool legacyOps = qEnvironmentVariableIsSet("STAGE_FUZZ_LEGACY_OPS");
        if (op >= ActorOpBase && legacyOps) // the meaning before actors: op % 26; say where it is
            std::fprintf(stderr, "stage-fuzz: legacy opcode at offset %td\n", in.p - 1 - in.start);
        if (op >= ActorOpBase && !legacyOps) { // an actor operation
            if (verbose())
                std::fprintf(stderr, "stage-fuzz: step: actor op %d\n", (op - ActorOpBase) % 8);
            actorWorld.ctx = ctx.get();
            actorWorld.step(uint8_t(op - ActorOpBase), in, sups, [this](const QObject *o) { return usable(o); });
            return;
        }
        if (verbose())
            std::fprintf(stderr, "stage-fuzz: step: op %d\n", op % 26);
        switch (op % 26) {
        case 0: { // a new mailbox in a slot (the old one is kept to the end)
            const uint8_t kind = in.u8();
            const int8_t c = int8_t(in.u8());
            const int capacity = (kind & 1) ? -1 : int(c) % 5; // -4 .. 4
            boxSlots[kind / 2 % boxSlots.size()] = newBox(capacity);
            break;
        }
        case 1:
            trySendOrBlocking(in, false);
            break;
        case 2:
            trySendOrBlocking(in, true);
            break;
        case 3: { // a coroutine send (waits while full)
            auto rec = boxAt(in.u8());
            const int behaviour = in.u8() % 8;
            const int id = newId(*rec, St::Sending);
            if (id >= 0)
                produce(*rec->handle, id, behaviour);
            break;
        }
        case 4:
            boxAt(in.u8())->handle->close();
            break;
        case 5: { // delete the mailbox's QObject side: documented to close the mailbox
            auto rec = boxAt(in.u8());
            if (QObject *object = rec->handle->object())
                deleteObject(object);
            CHECK(rec->handle->isClosed());
            CHECK(rec->handle->object() == nullptr); // not recreated
            break;
        }
        case 6: { // a receive outside any worker
            auto rec = boxAt(in.u8());
            const bool explicitAck = in.u8() & 1;
            if (rec->threaded)
                break;
            if (auto d = rec->handle->tryReceive()) {
                markAcked(rec.get(), (*d)->id);
                if (explicitAck)
                    d->ack();
                // else: acknowledged by its destruction
            }
            break;
        }
        case 7: { // take the dead letters
            auto rec = boxAt(in.u8());
            takeDead(*rec);
            break;
        }
        case 8: // maxRedeliveries, negative included (refused)
            boxAt(in.u8())->handle->setMaxRedeliveries(int(in.u8() % 6) - 1);
            break;
        case 9: { // a new group in a slot
            auto &gr = groups[in.u8() % groups.size()];
            const uint8_t a = in.u8(), b = in.u8();
            if (gr.group)
                break;
            auto *group = new Group;
            gr.group = group;
            track(group);
            gr.box = boxAt(a);
            gr.onClosed = (a >> 2) % 3;
            gr.spawned = false;
            group->setBackoff(stage::Backoff::none());
            group->setSize(b % 4);
            group->setRestartType(RestartType((b >> 2) % 3));
            group->setMaxRestarts(int((b >> 4) % 6) - 1);
            group->setShutdownTimeout((a >> 4) % 4);
            if ((a + b) & 0x08) // stops destroy a body waiting in a Stage awaitable in place
                group->setStopMode(stage::StopMode::Destroy);
            if ((a & 0xc0) == 0xc0) { // one thread of its own
                group->setThreadCount(1);
                gr.box->threaded = true;
            }
            if (b & 0x80)
                spawn(gr);
            break;
        }
        case 10: {
            auto &gr = groups[in.u8() % groups.size()];
            if (gr.group && !gr.spawned)
                spawn(gr);
            break;
        }
        case 11: { // setSize, negative included (refused)
            auto &gr = groups[in.u8() % groups.size()];
            const int size = int(int8_t(in.u8())) % 5;
            if (gr.group) {
                const int before = gr.group->size();
                const long long fires = slotFires;
                gr.group->setSize(size);
                if (gr.group && slotFires == fires) // a slot may have resized or deleted it
                    CHECK(gr.group->size() == (size >= 0 ? size : before), size, gr.group->size());
            }
            break;
        }
        case 12: {
            auto &gr = groups[in.u8() % groups.size()];
            const int timeout = in.u8() % 3;
            if (gr.group)
                gr.group->shutdown(std::chrono::milliseconds(timeout));
            break;
        }
        case 13: { // delete a group (running, holding messages, supervised or not)
            auto &gr = groups[in.u8() % groups.size()];
            if (gr.group)
                deleteObject(gr.group);
            break;
        }
        case 14: { // a new supervisor in a slot
            auto &s = sups[in.u8() % sups.size()];
            const uint8_t a = in.u8();
            if (s)
                break;
            auto *sup = new Supervisor(Supervisor::Strategy(a % 3));
            s = sup;
            track(sup);
            sup->setBackoff(stage::Backoff::none());
            sup->setMaxRestarts(int((a >> 2) % 6) - 1);
            break;
        }
        case 15: { // addChild: anything, including null, itself, an ancestor, an adopted node
            QPointer<Supervisor> s = sups[in.u8() % sups.size()];
            QPointer<Node> child = nodeAt(in.u8());
            const bool isNull = !child;
            const auto type = RestartType(in.u8() % 3);
            if (!s)
                break;
            const long long fires = slotFires;
            const bool ok = s->addChild(child, type);
            if (slotFires != fires) // a slot (childAdded...) may have removed or deleted either
                break;
            if (ok) {
                CHECK(!isNull && child && child->supervisor() == s && child->parent() == s);
            } else if (child.data() == static_cast<Node *>(s.data())) {
                CHECK(s->supervisor() != s);
            }
            break;
        }
        case 16: { // removeChild (a stranger too)
            QPointer<Supervisor> s = sups[in.u8() % sups.size()];
            QPointer<Node> child = nodeAt(in.u8());
            if (!s || !child)
                break;
            const bool wasChild = child->supervisor() == s;
            const long long fires = slotFires;
            const bool ok = s->removeChild(child);
            CHECK(ok == wasChild, ok, wasChild);
            if (ok && child && slotFires == fires)
                CHECK(child->supervisor() == nullptr && child->parent() == nullptr);
            break;
        }
        case 17: {
            Supervisor *s = sups[in.u8() % sups.size()];
            if (s)
                s->start();
            break;
        }
        case 18: {
            Supervisor *s = sups[in.u8() % sups.size()];
            if (s)
                s->shutdown();
            break;
        }
        case 19: { // delete a supervisor (it deletes its children)
            auto &s = sups[in.u8() % sups.size()];
            if (s)
                deleteObject(s);
            break;
        }
        case 20: { // a WorkerHandle: start / stop / restart
            auto &h = handles[in.u8() % handles.size()];
            const uint8_t a = in.u8();
            if (!h.handle)
                newHandle(h, a);
            switch ((a >> 2) % 3) {
            case 0:
                startHandle(h, a >> 4);
                break;
            case 1:
                h.handle->requestStop();
                break;
            default: {
                QPointer<stage::WorkerHandle> handle = h.handle;
                if (handle->restart() && handle == h.handle)
                    ++h.starts;
                break;
            }
            }
            break;
        }
        case 21:
        case 22:
            processEvents(1 + in.u8() % 4);
            break;
        case 24: // a slot that acts once
        case 25: // a slot that acts every time its signal fires
            connectSlot(in, op % 26 == 25);
            break;
        default:
            spinFor(in.u8() % 3);
            break;
        }
    }

    void spawn(GroupRec &gr)
    {
        gr.spawned = true;
        QPointer<Group> group = gr.group;
        const long long fires = slotFires;
        const bool ok = group->spawn([rec = gr.box, box = *gr.box->handle, onClosed = gr.onClosed](
                                         stage::Worker &w) { return consume(w, rec, box, onClosed); });
        if (group && slotFires == fires)
            CHECK(ok || group->state() != Node::State::Idle, int(ok));
    }

    void takeDead(BoxRec &rec)
    {
        auto letters = rec.handle->takeDeadLetters();
        std::lock_guard lock(g.mutex);
        for (auto &letter : letters) {
            const int id = letter.value.id;
            CHECK(id >= 0 && id < MaxIds, id);
            CHECK(g.state[id] == St::InSystem, id, int(g.state[id]));
            CHECK(g.box[id] == rec.index, id);
            CHECK(letter.failures > 0, id, letter.failures);
            g.state[id] = St::Dead;
            ++rec.deadTaken;
        }
        // the letters (and their messages) are destroyed here, outside the lock
        g.mutex.unlock();
        letters.clear();
        g.mutex.lock();
    }

    struct Census
    {
        long long inSystem = 0, sending = 0, acked = 0, dead = 0, discarded = 0;
    };
    Census census(const BoxRec &rec)
    {
        Census c;
        std::lock_guard lock(g.mutex);
        for (int id = 0; id < g.nextId; ++id) {
            if (g.box[id] != rec.index)
                continue;
            switch (g.state[id]) {
            case St::InSystem: ++c.inSystem; break;
            case St::Sending: ++c.sending; break;
            case St::Acked: ++c.acked; break;
            case St::Dead: ++c.dead; break;
            case St::Discarded: ++c.discarded; break;
            default: break;
            }
        }
        return c;
    }

    void checkBox(BoxRec &rec, bool final)
    {
        if (rec.threaded && !final)
            return;
        const Box &box = *rec.handle;
        const stage::MailboxStatistics s = box.statistics();
        const int count = box.count();
        const int deadNow = box.deadLetterCount();
        const long long held = rec.held.load();
        const Census c = census(rec);
        CHECK(count >= 0, count);
        CHECK(held >= 0, held);
        CHECK(s.acknowledged == rec.acked.load(), s.acknowledged, rec.acked.load());
        CHECK(s.acknowledged == c.acked, s.acknowledged, c.acked);
        CHECK(s.deadLettered == rec.deadTaken + deadNow, s.deadLettered, rec.deadTaken + deadNow);
        CHECK(s.deadLettered == c.dead + deadNow, s.deadLettered, c.dead + deadNow);
        CHECK(s.redelivered + s.deadLettered == rec.unwound.load(), s.redelivered + s.deadLettered, rec.unwound.load());
        CHECK(s.delivered == s.acknowledged + s.redelivered + s.deadLettered + held, s.delivered,
              s.acknowledged + s.redelivered + s.deadLettered + held);
        const long long entered = c.inSystem + c.acked + c.dead;
        CHECK(entered <= s.queued && s.queued <= entered + c.sending, s.queued, entered);
        CHECK(count + held + deadNow <= c.inSystem + c.sending, count + held + deadNow, c.inSystem + c.sending);
        if (final) {
            CHECK(c.sending == 0, c.sending);
            CHECK(held == 0, held);
            CHECK(s.queued == entered, s.queued, entered);
            CHECK(count + deadNow == c.inSystem, count + deadNow, c.inSystem);
        }
    }

    void checkNodes(bool final)
    {
        for (auto &gr : groups) {
            Group *group = gr.group;
            if (!group)
                continue;
            const stage::GroupStatistics s = group->statistics();
            CHECK(s.isConsistent(), s.started, s.running);
            CHECK(s.running >= 0, s.running);
            CHECK(legal(group->state()), int(group->state()));
            if (auto *sup = group->supervisor())
                CHECK(group->parent() == sup);
            if (final) {
                CHECK(!group->isRunning(), int(group->state()));
                CHECK(s.running == 0, s.running, int(group->state()));
            }
        }
        for (auto &sp : sups) {
            Supervisor *s = sp;
            if (!s)
                continue;
            const stage::SupervisorStatistics st = s->statistics();
            const QList<Node *> children = s->childNodes();
            CHECK(legal(s->state()), int(s->state()));
            CHECK(st.children == s->childCount() && st.children == children.size(), st.children, children.size());
            CHECK(st.runningChildren >= 0 && st.runningChildren <= st.children, st.runningChildren, st.children);
            CHECK(st.childFailures <= st.childExits, st.childFailures, st.childExits);
            int running = 0;
            for (Node *child : children) {
                CHECK(child && child->supervisor() == s && child->parent() == s);
                CHECK(child != s);
                running += child->isRunning();
            }
            CHECK(st.runningChildren == running, st.runningChildren, running);
            if (final)
                CHECK(!s->isRunning(), int(s->state()));
        }
    }

    /* Each firing of a slot ran its action or was skipped (counted), and a one-shot slot fired once at most. */
    void checkSlots()
    {
        long long fires = 0, ran = 0, runs = 0;
        for (const auto &r : slotRecs) {
            CHECK(r->every || r->fires <= 1, r->fires);
            CHECK(r->ran <= r->fires, r->ran, r->fires);
            fires += r->fires;
            ran += r->ran;
        }
        for (long long n : actionRuns)
            runs += n;
        CHECK(fires == slotFires, fires, slotFires);
        CHECK(ran == runs, ran, runs);
        CHECK(runs + slotSkipped == slotFires, runs + slotSkipped, slotFires);
        CHECK(runs <= MaxSlotActions && runs + slotSkipped - slotOverBudget <= MaxSlotActions, runs, slotOverBudget);
        CHECK(dying.isEmpty(), dying.size()); // every deletion that began has ended
    }

    void checkAll(bool final = false)
    {
        actorWorld.check();
        for (auto &rec : boxes)
            checkBox(*rec, final);
        checkNodes(final);
        checkSlots();
    }

    void teardown()
    {
        // Close every mailbox (pending sends fail, consumers drain and see MailboxClosed), stop
        // everything, and let it end. The slots stay connected (and may delete objects) to the
        // end, but no longer start or restart a handle: the teardown has asked them to stop.
        tearingDown = true;
        actorWorld.ctx = ctx.get();
        actorWorld.teardown(); // first: every ask ends, the actors' coroutines finish
        for (auto &rec : boxes)
            rec->handle->close();
        for (auto &s : sups)
            if (s)
                s->shutdown();
        for (auto &gr : groups)
            if (gr.group)
                gr.group->shutdown();
        for (auto &h : handles)
            if (h.handle)
                h.handle->requestStop();
        QElapsedTimer timer;
        timer.start();
        auto quiet = [&] {
            if (g.frames.load() != 0 || g.sendsInFlight.load() != 0)
                return false;
            for (auto &gr : groups)
                if (gr.group && (gr.group->isRunning() || gr.group->statistics().running != 0))
                    return false;
            for (auto &s : sups)
                if (s && s->isRunning())
                    return false;
            for (auto &h : handles)
                if (h.handle && h.handle->isRunning())
                    return false;
            return true;
        };
        while (!quiet() && timer.elapsed() < 5000)
            processEvents(1);
        CHECK(g.sendsInFlight.load() == 0, g.sendsInFlight.load());
        CHECK(g.frames.load() == 0, g.frames.load()); // a worker frame never ended
        checkAll(true);
        for (auto &h : handles) {
            if (!h.handle)
                continue;
            CHECK(!h.handle->isRunning());
            CHECK(h.finishes == h.starts, h.finishes, h.starts); // finished() once per run
        }
        checkSlots();

        // Delete everything: the roots (a supervisor deletes its children); deleteLater()s first.
        processEvents(1);
        for (bool again = true; again;) {
            again = false;
            for (auto &s : sups)
                if (s && !s->parent()) {
                    deleteObject(s);
                    again = true;
                }
            for (auto &gr : groups)
                if (gr.group && !gr.group->parent()) {
                    deleteObject(gr.group);
                    again = true;
                }
        }
        for (auto &s : sups)
            CHECK(!s);
        for (auto &gr : groups)
            CHECK(!gr.group);
        for (auto &h : handles) {
            if (h.handle)
                deleteObject(h.handle);
            h.box.reset();
        }
        checkSlots();
        for (auto &r : slotRecs)
            r->box.reset();
        for (auto &gr : groups)
            gr.box.reset();
        for (auto &slot : boxSlots)
            slot.reset();
        // A frame's factory (and its captures) goes when the frame's end has been reported.
        auto released = [&] {
            for (auto &rec : boxes)
                if (rec.use_count() != 1)
                    return false;
            return true;
        };
        timer.restart();
        do {
            processEvents(1);
        } while (!released() && timer.elapsed() < 5000);
        CHECK(g.frames.load() == 0, g.frames.load());

        // Every mailbox, exactly; then its last handle goes with what is still queued.
        for (auto &rec : boxes) {
            takeDead(*rec);
            checkBox(*rec, true);
            CHECK(rec.use_count() == 1, rec.use_count()); // no frame or factory kept it
            const int count = rec->handle->count();
            {
                std::lock_guard lock(g.mutex);
                g.discardBox = rec->index;
                g.discardBudget = count;
            }
            g.loggedLost = 0;
            rec->handle.reset();
            CHECK(g.discardBudget == 0, g.discardBudget, count);   // the core died with them
            CHECK(g.loggedLost.load() == count, g.loggedLost.load(), count); // and said so
            g.discardBox = -1;
        }
        boxes.clear();
        if (verbose()) {
            std::fprintf(stderr, "stage-fuzz: %zu slot(s), %lld firing(s), %lld skipped (%lld over budget), %lld while an object was being destroyed; actions run:",
                         slotRecs.size(), slotFires, slotSkipped, slotOverBudget, firedWhileDying);
            for (int i = 0; i < ActCount; ++i)
                if (actionRuns[i])
                    std::fprintf(stderr, " %s %lld", actName(Act(i)), actionRuns[i]);
            std::fprintf(stderr, "\n");
        }
        std::lock_guard lock(g.mutex);
        for (int id = 0; id < g.nextId; ++id) {
            const St s = g.state[id];
            CHECK(s == St::Acked || s == St::Dead || s == St::Discarded || s == St::Refused, id, int(s));
            CHECK(g.destroyed[id], id);
        }
    }
};

const QRegularExpression lostPattern(QStringLiteral("destroyed with (\\d+) message\\(s\\) still queued"));

void messageHandler(QtMsgType type, const QMessageLogContext &, const QString &message)
{
    if (type == QtFatalMsg) {
        std::fprintf(stderr, "stage-fuzz: qFatal: %s\n", qPrintable(message));
        std::abort();
    }
    // A leaked thread (a group's worker thread that did not finish in time) would only show as a
    // leak at exit: say which input did it.
    if (message.contains(QStringLiteral("leaked"))) {
        std::fprintf(stderr, "stage-fuzz: INVARIANT VIOLATED: Stage reported a leak: %s\n", qPrintable(message));
        std::abort();
    }
    const auto match = lostPattern.match(message);
    if (match.hasMatch())
        g.loggedLost.fetch_add(match.captured(1).toLongLong());
    if (std::getenv("STAGE_FUZZ_VERBOSE"))
        std::fprintf(stderr, "%s\n", qPrintable(message));
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    qInstallMessageHandler(messageHandler);
    static QCoreApplication app(*argc, *argv);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g.reset();
    ga.reset();
    spinBudgetMs = 8;
    {
        World world;
        Input in{data, size, data};
        for (int i = 0; i < MaxSteps && !in.empty(); ++i) {
            world.step(in);
            world.checkAll();
        }
        world.teardown();
    }
    processEvents(1);
    CHECK(g.frames.load() == 0, g.frames.load());
    return 0;
}
