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
#include <QtCore/QPointer>
#include <QtCore/QRegularExpression>
#include <QtCore/QThread>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
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
    stage::WorkerHandle *handle = nullptr;
    std::shared_ptr<BoxRec> box;
    int starts = 0;
    int finishes = 0;
};

struct Input
{
    const uint8_t *p;
    size_t n;
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

bool legal(Node::State s)
{
    return int(s) >= int(Node::State::Idle) && int(s) <= int(Node::State::Failed);
}

struct World
{
    std::vector<std::shared_ptr<BoxRec>> boxes; // every mailbox of the input (kept to the end)
    std::array<std::shared_ptr<BoxRec>, 3> boxSlots;
    std::array<GroupRec, 4> groups;
    std::array<QPointer<Supervisor>, 3> sups;
    std::array<HandleRec, 2> handles;

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
        switch (op % 24) {
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
            delete rec->handle->object();
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
                gr.group->setSize(size);
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
            delete gr.group.data();
            break;
        }
        case 14: { // a new supervisor in a slot
            auto &s = sups[in.u8() % sups.size()];
            const uint8_t a = in.u8();
            if (s)
                break;
            s = new Supervisor(Supervisor::Strategy(a % 3));
            s->setBackoff(stage::Backoff::none());
            s->setMaxRestarts(int((a >> 2) % 6) - 1);
            break;
        }
        case 15: { // addChild: anything, including null, itself, an ancestor, an adopted node
            Supervisor *s = sups[in.u8() % sups.size()];
            Node *child = nodeAt(in.u8());
            const auto type = RestartType(in.u8() % 3);
            if (!s)
                break;
            const bool ok = s->addChild(child, type);
            if (ok) {
                CHECK(child && child->supervisor() == s && child->parent() == s);
            } else if (child == s) {
                CHECK(s->supervisor() != s);
            }
            break;
        }
        case 16: { // removeChild (a stranger too)
            Supervisor *s = sups[in.u8() % sups.size()];
            Node *child = nodeAt(in.u8());
            if (!s || !child)
                break;
            const bool wasChild = child->supervisor() == s;
            const bool ok = s->removeChild(child);
            CHECK(ok == wasChild, ok, wasChild);
            if (ok)
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
            delete s.data();
            break;
        }
        case 20: { // a WorkerHandle: start / stop / restart
            auto &h = handles[in.u8() % handles.size()];
            const uint8_t a = in.u8();
            if (!h.handle) {
                h.handle = new stage::WorkerHandle;
                h.handle->setStopTimeout(a % 3);
                QObject::connect(h.handle, &stage::WorkerHandle::finished, h.handle, [&h] { ++h.finishes; });
            }
            switch ((a >> 2) % 3) {
            case 0:
                if (!h.box) {
                    h.box = boxAt(a >> 4);
                    if (h.box->threaded) {
                        h.box.reset();
                        break;
                    }
                }
                if (h.handle->start([rec = h.box, box = *h.box->handle](stage::Worker &w) {
                        return consume(w, rec, box, 2);
                    }))
                    ++h.starts;
                break;
            case 1:
                h.handle->requestStop();
                break;
            default:
                if (h.handle->restart())
                    ++h.starts;
                break;
            }
            break;
        }
        case 21:
        case 22:
            processEvents(1 + in.u8() % 4);
            break;
        default:
            spinFor(in.u8() % 3);
            break;
        }
    }

    void spawn(GroupRec &gr)
    {
        gr.spawned = true;
        const bool ok = gr.group->spawn([rec = gr.box, box = *gr.box->handle, onClosed = gr.onClosed](
                                            stage::Worker &w) { return consume(w, rec, box, onClosed); });
        CHECK(ok || gr.group->state() != Node::State::Idle, int(ok));
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

    void checkAll(bool final = false)
    {
        for (auto &rec : boxes)
            checkBox(*rec, final);
        checkNodes(final);
    }

    void teardown()
    {
        // Close every mailbox (pending sends fail, consumers drain and see MailboxClosed), stop
        // everything, and let it end.
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

        // Delete everything: the roots (a supervisor deletes its children).
        for (bool again = true; again;) {
            again = false;
            for (auto &s : sups)
                if (s && !s->parent()) {
                    delete s.data();
                    again = true;
                }
            for (auto &gr : groups)
                if (gr.group && !gr.group->parent()) {
                    delete gr.group.data();
                    again = true;
                }
        }
        for (auto &s : sups)
            CHECK(!s);
        for (auto &gr : groups)
            CHECK(!gr.group);
        for (auto &h : handles) {
            delete h.handle;
            h.handle = nullptr;
            h.box.reset();
        }
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
    spinBudgetMs = 8;
    {
        World world;
        Input in{data, size};
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
