// stage-soak: the chaos soak test (scripts/stage soak [--seconds N] [--seed S] [--messages M]).
//
// A supervision tree of four levels (root > process > flaky > groups), with all three strategies
// and groups on the main thread and on threads of their own, consumes three bounded mailboxes
// fed by 4 producer threads (sendBlocking). A controller on the main thread injects faults from a
// seeded generator: start storms (a group's next K runs throw at once: absorbed by the group, or
// beyond its intensity escalated, up to a supervisor exceeding its own), resizes, cancellations
// (a worker stopped while it holds a message), children added and removed at run time, and
// workers that hang (a plain QThread::msleep loop, no cancellation point) past their group's
// shutdownTimeout; one kind of hang is removed from its supervisor while it hangs and must be
// reported abandoned. Per delivery, a pure function of (seed, id, previous deliveries) decides
// whether the consumer yields or sleeps while holding the message (a cancellation point), throws
// before processing it, or throws after processing it but before acknowledging it; a poison
// message (a pure function of (seed, id)) always throws and must end among the dead letters.
//
// Exactness: a consumer throws only while it holds a message whose failures() is below the
// mailbox's maxRedeliveries (poison messages aside), so an ordinary message is never dead-lettered;
// it acknowledges a message right after processing it unless it throws; every Stage awaitable it
// awaits while holding a message is wrapped to count the Cancelled. Hence, exactly:
//   processed (unique ids) = sent - poison;  lost = 0;  duplicates = throwsAfter
//   processings           = acknowledged + throwsAfter
//   redelivered + deadLettered = throwsBefore + throwsAfter + poisonThrows + cancelledHolding
//   deadLettered = poison sent (each with failures = maxRedeliveries + 1), delivered = acknowledged
//   + redelivered + deadLettered, acknowledged = sent - deadLettered, queued = sent, count = 0
// and per group: failed = its throws (= observed Failed exits), started = bodies that began +
// runs stopped before they started, the other counters = the workerFinished() exits observed;
// per supervisor: childRestarted()/gaveUp() signals = childrenRestarted/escalations, and restarts
// + escalations = the childExited() signals whose restart type asked for a restart.
// After the drain and the shutdown: no frame alive, no group running, no hang in progress.
// Every decision comes from the seed; the interleavings do not, and the checks hold for all.

#include <stage/stage.h>
#ifdef STAGE_SOAK_REDIS
#include "redisserver.h" // redis/tests: a redis-server of the soak's own
#include <stage/redis.h>
#endif

#include <QtCore/QCoreApplication>
#include <QtCore/QElapsedTimer>
#include <QtCore/QEventLoop>
#include <QtCore/QLoggingCategory>
#include <QtCore/QMutex>
#include <QtCore/QPointer>
#include <QtCore/QThread>
#include <QtCore/QTimer>
#ifdef STAGE_SOAK_DURABLE
#include <stage/durablestore.h>

#include <QtCore/QTemporaryDir>
#include <QtCore/QtEndian>
#endif

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_set>
#include <variant>
#include <vector>

using namespace std::chrono_literals;
using stage::Node;
using stage::RestartType;
using stage::Supervisor;
using Strategy = stage::Supervisor::Strategy;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int Producers = 4;
constexpr int Boxes = 3;
constexpr int MaxRedeliveries = 4;
constexpr int BoxCapacity = 2048;
constexpr quint64 PoisonEvery = 5000;          // about one id in 5000 is poison
constexpr quint32 DefaultIdCap = 64u << 20;    // ids a time-limited run may send (one byte each)
constexpr int StaticShutdownTimeout = 200;     // ms
constexpr int DynamicShutdownTimeout = 100;    // ms
constexpr int ForcedHangMarginMs = 1000;       // a removed hanging worker hangs this long past its timeout
constexpr int GroupMaxRestarts = 200;          // per GroupRestartPeriod, for the static groups
constexpr int GroupRestartPeriod = 1000;

quint64 mix(quint64 x) noexcept // splitmix64's finaliser
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

struct Msg
{
    quint32 id = 0;
    std::unique_ptr<quint64> check; // on the heap: ASan sees a message freed twice or leaked
};

#ifdef STAGE_SOAK_REDIS
// --backend redis: a Msg through a Redis stream (RedisCodec's QDataStream form).
QDataStream &operator<<(QDataStream &s, const Msg &m)
{
    return s << m.id << (m.check ? *m.check : quint64(0));
}
QDataStream &operator>>(QDataStream &s, Msg &m)
{
    quint64 check = 0;
    s >> m.id >> check;
    m.check = std::make_unique<quint64>(check);
    return s;
}
#endif

/* What a consumer does with one delivery: a pure function of (seed, id, previous deliveries). */
struct Plan
{
    int holdMs = -1;      // >= 0: co_await stage::sleep(holdMs) while holding it (0 = a yield)
    bool throwBefore = false;
    bool throwAfter = false;
    bool poison = false;
};

struct BoxCounters
{
    std::atomic<qint64> sent{0};
    std::atomic<qint64> poisonSent{0};
    std::atomic<qint64> processings{0};
    std::atomic<qint64> throwsBefore{0};
    std::atomic<qint64> throwsAfter{0};
    std::atomic<qint64> poisonThrows{0};
    std::atomic<qint64> cancelledHolding{0};
    std::atomic<qint64> holds{0};
};

struct Soak
{
    quint64 seed = 1;
    quint32 idCap = 0;                 // ids 0 .. idCap - 1 may be sent
    uint8_t *processed = nullptr;      // per id: times processed (saturating at 255)
    BoxCounters box[Boxes];
    std::atomic<qint64> sentPerProducer[Producers] = {};
    std::atomic<qint64> stormThrows{0};
    std::atomic<qint64> corrupt{0};
    std::atomic<qint64> hangsStarted{0};
    std::atomic<qint64> hangsInProgress{0};
    std::atomic<qint64> hangsStoppedLate{0}; // hangs that ended after their worker was asked to stop
    std::atomic<qint64> liveFrames{0};
    std::atomic<qint64> sendRetries{0};
    std::atomic<bool> stopProducing{false};
    std::atomic<int> producersDone{0};

    ~Soak() { std::free(processed); }

    static int boxOf(quint64 seed, quint32 id) { return int(mix(seed ^ (quint64(id) * 0x100000001b3ull) ^ 0xb0c5) % Boxes); }
    bool isPoison(quint32 id) const { return mix(seed ^ (quint64(id) << 20) ^ 0x9015u) % PoisonEvery == 0; }

    Plan plan(quint32 id, int previousDeliveries, int failures) const
    {
        Plan p;
        const quint64 h = mix(seed * 31 + (quint64(id) << 8) + quint64(previousDeliveries));
        const quint64 r = h % 100000;
        if (r < 500)
            p.holdMs = 0; // 0.5 %: a yield
        else if (r < 550)
            p.holdMs = 1 + int((h >> 32) % 3); // 0.05 %: 1-3 ms
        if (isPoison(id)) {
            p.poison = true;
            return p;
        }
        const quint64 f = (h >> 20) % 100000;
        const bool budget = failures < MaxRedeliveries; // never dead-letter an ordinary message
        if (budget && f < 100)
            p.throwBefore = true; // 0.1 %
        else if (budget && f < 200)
            p.throwAfter = true; // 0.1 %
        return p;
    }

    void process(const Msg &m, int box)
    {
        if (!m.check || *m.check != mix(m.id))
            corrupt.fetch_add(1, std::memory_order_relaxed);
        if (m.id < idCap) {
            std::atomic_ref<uint8_t> count(processed[m.id]);
            uint8_t old = count.load(std::memory_order_relaxed);
            while (old < 255 && !count.compare_exchange_weak(old, uint8_t(old + 1), std::memory_order_relaxed)) {}
        } else {
            corrupt.fetch_add(1, std::memory_order_relaxed);
        }
        this->box[box].processings.fetch_add(1, std::memory_order_relaxed);
    }
};

/* The per-group fault knobs and counters; outlives the group (frames keep it). */
struct GroupCtl
{
    QString name;
    int box = 0;
    bool dynamic = false;
    int shutdownTimeout = StaticShutdownTimeout;
    QPointer<stage::Group> group;

    // Written by the controller, read by the workers.
    std::atomic<int> stormBudget{0};       // the next runs throw at once, this many times
    std::atomic<int> hangRequests{0};      // the next deliveries hang, this many times
    std::atomic<int> hangMaxMs{0};
    std::atomic<qint64> hangReleaseNs{0};  // steady_clock: a hang ends then (0: at hangMaxMs)

    // Written by the workers.
    std::atomic<qint64> bodies{0};
    std::atomic<qint64> throws{0};
    std::atomic<qint64> liveFrames{0};
    std::atomic<int> hanging{0};
    std::atomic<qint64> hangsStarted{0};

    // Main thread only: what workerFinished()/gaveUp() reported.
    qint64 exitCompleted = 0, exitFailed = 0, exitCancelled = 0, exitAbandoned = 0, preStartStops = 0;
    // Faults thrown after the run's stop was requested: a stop, whatever the body throws.
    qint64 throwsAsStops = 0;
    qint64 gaveUp = 0;
    bool forcedHangPending = false; // a hang was requested: remove the group once it hangs
    bool forcedHang = false;        // removed while one of its workers hung: must report it abandoned
    bool removed = false;
    bool checked = false;
};

struct SupCtl
{
    QString name;
    Supervisor *sv = nullptr;
    qint64 exitedSignals = 0, exitedFailedSignals = 0, restartOrEscalateExpected = 0;
    qint64 restartedSignals = 0, gaveUp = 0;
    qint64 childGaveUps = 0; // gaveUp() of its children while they were its children
};

struct FrameCount
{
    Soak *soak;
    GroupCtl *g;
    FrameCount(Soak *s, GroupCtl *c) : soak(s), g(c)
    {
        soak->liveFrames.fetch_add(1);
        g->liveFrames.fetch_add(1);
    }
    ~FrameCount()
    {
        g->liveFrames.fetch_sub(1);
        soak->liveFrames.fetch_sub(1);
    }
    FrameCount(const FrameCount &) = delete;
    FrameCount &operator=(const FrameCount &) = delete;
};

bool claim(std::atomic<int> &budget)
{
    int n = budget.load(std::memory_order_relaxed);
    while (n > 0 && !budget.compare_exchange_weak(n, n - 1)) {}
    return n > 0;
}

/* Busy outside any Stage awaitable: no cancellation point, so a stop cannot end it. Bounded. */
void hang(stage::Worker &worker, Soak *soak, GroupCtl *g)
{
    soak->hangsStarted.fetch_add(1);
    soak->hangsInProgress.fetch_add(1);
    g->hangsStarted.fetch_add(1);
    g->hanging.fetch_add(1);
    const auto start = Clock::now();
    const auto limit = start + std::chrono::milliseconds(g->hangMaxMs.load());
    for (;;) {
        QThread::msleep(2);
        const auto now = Clock::now();
        const qint64 release = g->hangReleaseNs.load();
        if (release != 0 ? now.time_since_epoch().count() >= release : now >= limit)
            break;
        if (now - start > 5s)
            break; // whatever happens, the process can exit
    }
    if (worker.isStopRequested())
        soak->hangsStoppedLate.fetch_add(1);
    g->hanging.fetch_sub(1);
    soak->hangsInProgress.fetch_sub(1);
}

QCoro::Task<> consumer(stage::Worker &worker, std::shared_ptr<Soak> soakRef, std::shared_ptr<GroupCtl> ctl,
                       stage::Mailbox<Msg> mailbox)
{
    Soak *const soak = soakRef.get();
    GroupCtl *const g = ctl.get();
    BoxCounters &box = soak->box[g->box];
    FrameCount frame(soak, g);
    g->bodies.fetch_add(1);
    if (claim(g->stormBudget)) {
        soak->stormThrows.fetch_add(1);
        g->throws.fetch_add(1);
        throw std::runtime_error("soak: storm fault at start");
    }
    for (;;) {
        worker.heartbeat();
        stage::Delivery<Msg> delivery = co_await mailbox.receive();
        const quint32 id = delivery->id;
        const Plan plan = soak->plan(id, delivery.previousDeliveries(), delivery.failures());
        if (plan.holdMs >= 0) {
            box.holds.fetch_add(1, std::memory_order_relaxed);
            try {
                co_await stage::sleep(std::chrono::milliseconds(plan.holdMs));
            } catch (const stage::Cancelled &) {
                box.cancelledHolding.fetch_add(1);
                throw;
            }
        }
        if (g->hangRequests.load(std::memory_order_relaxed) > 0 && claim(g->hangRequests)) {
            hang(worker, soak, g);
            if (worker.isStopRequested()) {
                // Stopped meanwhile (and perhaps reported abandoned): a synchronous cancellation
                // point; the message it held goes back. Otherwise it processes the message.
                box.cancelledHolding.fetch_add(1);
                worker.throwIfStopRequested();
            }
        }
        if (plan.poison) {
            box.poisonThrows.fetch_add(1);
            g->throws.fetch_add(1);
            throw std::runtime_error("soak: poison message");
        }
        if (plan.throwBefore) {
            box.throwsBefore.fetch_add(1);
            g->throws.fetch_add(1);
            throw std::runtime_error("soak: fault before processing");
        }
        soak->process(*delivery, g->box);
        if (plan.throwAfter) {
            box.throwsAfter.fetch_add(1);
            g->throws.fetch_add(1);
            throw std::runtime_error("soak: fault after processing, before the ack");
        }
        delivery.ack();
    }
}

// Log lines -------------------------------------------------------------------------------------

QMutex logMutex;
QtMessageHandler previousHandler = nullptr;
std::atomic<qint64> expectedWarnings{0};
std::atomic<qint64> unexpectedWarnings{0};
std::atomic<qint64> infoLines{0};

void messageHandler(QtMsgType type, const QMessageLogContext &context, const QString &message)
{
    if (type == QtDebugMsg || type == QtInfoMsg) {
        infoLines.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    static const char *const expected[] = {
        "giving up",                       // groups and supervisors exceeding their intensity
        "(root) failed",                   // the root exceeding its own
        "moved to the dead letters",       // poison messages
        "did not stop within",             // hanging workers, abandoned
    };
    if (type == QtWarningMsg) {
        const QByteArray text = message.toUtf8();
        for (const char *e : expected) {
            if (text.contains(e)) {
                expectedWarnings.fetch_add(1, std::memory_order_relaxed);
                return;
            }
        }
    }
    unexpectedWarnings.fetch_add(1);
    QMutexLocker lock(&logMutex);
    previousHandler(type, context, QStringLiteral("[unexpected] ") + message);
}

// The run ---------------------------------------------------------------------------------------

struct Options
{
    quint64 seed = 0;
    bool seedGiven = false;
    int seconds = -1;
    qint64 messages = -1;
    bool redis = false; // --backend redis
    bool durable = false; // --backend durable
};

// --backend durable: the three mailboxes are durable mailboxes (Stage::Durable) in one SQLite file
// of the soak's own (a temp directory), one mailbox per box; a Msg is its id and check, 12 bytes.
stage::Mailbox<Msg> durableBox(quint64 seed, int box, int capacity)
{
#ifdef STAGE_SOAK_DURABLE
    // Both end with the application (post routines run in reverse: the store first).
    static QTemporaryDir *dir = nullptr;
    static stage::DurableStore *store = nullptr;
    if (!store) {
        dir = new QTemporaryDir;
        qAddPostRoutine([] { delete dir; });
        store = new stage::DurableStore(dir->filePath(QStringLiteral("soak.stage")));
        qAddPostRoutine([] { delete store; });
        if (!store->isOpen())
            qFatal("stage-soak: --backend durable: %s", qPrintable(store->errorString()));
    }
    stage::DurableCodec<Msg> codec;
    codec.encode = [](const Msg &m) {
        QByteArray bytes(12, Qt::Uninitialized);
        qToLittleEndian<quint32>(m.id, bytes.data());
        qToLittleEndian<quint64>(m.check ? *m.check : 0, bytes.data() + 4);
        return bytes;
    };
    codec.decode = [](const QByteArray &bytes) {
        if (bytes.size() != 12)
            throw std::runtime_error("not a soak message");
        Msg m;
        m.id = qFromLittleEndian<quint32>(bytes.constData());
        m.check = std::make_unique<quint64>(qFromLittleEndian<quint64>(bytes.constData() + 4));
        return m;
    };
    stage::DurableMailboxOptions options;
    options.capacity = capacity;
    return store->mailbox<Msg>(QStringLiteral("soak-%1-%2").arg(seed).arg(box), options, std::move(codec));
#else
    Q_UNUSED(seed);
    Q_UNUSED(box);
    Q_UNUSED(capacity);
    qFatal("stage-soak: built without Stage::Durable");
#endif
}

// --backend redis: the three mailboxes are Redis mailboxes (Stage::Redis) on a redis-server of the
// soak's own (a unix socket in a temp directory, no persistence), one stream per box and seed.
stage::Mailbox<Msg> redisBox(quint64 seed, int box, int capacity)
{
#ifdef STAGE_SOAK_REDIS
    // Both end with the application (post routines run in reverse: the connection first).
    static stagetest::RedisServer *server = nullptr;
    static stage::RedisConnection *connection = nullptr;
    if (!connection) {
        server = new stagetest::RedisServer;
        qAddPostRoutine([] { delete server; });
        if (!stagetest::RedisServer::available() || !server->start())
            qFatal("stage-soak: --backend redis: redis-server is missing or did not start");
        connection = new stage::RedisConnection(server->url());
        qAddPostRoutine([] { delete connection; });
        if (!connection->waitForConnected(std::chrono::seconds(10)))
            qFatal("stage-soak: --backend redis: %s", qPrintable(connection->errorString()));
    }
    stage::RedisMailboxOptions options;
    options.capacity = capacity;
    options.prefetch = capacity;
    return connection->mailbox<Msg>(QStringLiteral("soak-%1-%2").arg(seed).arg(box), options);
#else
    Q_UNUSED(seed);
    Q_UNUSED(box);
    Q_UNUSED(capacity);
    qFatal("stage-soak: built without Stage::Redis");
#endif
}

/* --backend memory|redis. False (with a message) for anything else. */
bool parseBackend(const char *value, Options &o)
{
    const std::string v = value;
    o.redis = v == "redis";
    o.durable = v == "durable";
#ifndef STAGE_SOAK_DURABLE
    if (o.durable) {
        std::fprintf(stderr, "stage-soak: --backend durable: built without Stage::Durable (libsqlite3)\n");
        return false;
    }
#endif
#ifndef STAGE_SOAK_REDIS
    if (o.redis) {
        std::fprintf(stderr, "stage-soak: --backend redis: built without Stage::Redis (hiredis)\n");
        return false;
    }
#endif
    if (v != "memory" && v != "redis" && v != "durable") {
        std::fprintf(stderr, "stage-soak: --backend must be memory, redis or durable, not '%s'\n", value);
        return false;
    }
    return true;
}

bool parse(int argc, char **argv, Options &o)
{
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&](const char *name) -> const char * {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "stage-soak: %s needs a value\n", name);
                return nullptr;
            }
            return argv[++i];
        };
        if (a == "--seed") {
            const char *v = value("--seed");
            if (!v)
                return false;
            o.seed = std::strtoull(v, nullptr, 0);
            o.seedGiven = true;
        } else if (a == "--seconds") {
            const char *v = value("--seconds");
            if (!v)
                return false;
            o.seconds = std::atoi(v);
        } else if (a == "--messages") {
            const char *v = value("--messages");
            if (!v)
                return false;
            o.messages = std::strtoll(v, nullptr, 0);
        } else if (a == "--backend") {
            const char *v = value("--backend");
            if (!v || !parseBackend(v, o))
                return false;
        } else if (a == "-h" || a == "--help") {
            std::printf("usage: stage-soak [--seconds N] [--seed S] [--messages M] [--backend memory|redis|durable]\n"
                        "  --seconds N   produce for N seconds (default 60 unless --messages is given)\n"
                        "  --seed S      the seed of every decision (default: random, printed)\n"
                        "  --messages M  stop producing after M messages; with --seconds N, spread them\n"
                        "                evenly over N seconds\n"
                        "  --backend B   memory (default) or redis: the mailboxes on a redis-server of\n"
                        "                the soak's own (Stage::Redis); durable: in a SQLite file of its\n"
                        "                own (Stage::Durable)\n"
                        "A time-limited run sends at most 64 Mi messages (one byte of bookkeeping each).\n"
                        "Exit status 0 only if every check holds.\n");
            std::exit(0);
        } else {
            std::fprintf(stderr, "stage-soak: unknown argument '%s' (try --help)\n", a.c_str());
            return false;
        }
    }
    if (o.seconds < 0 && o.messages < 0)
        o.seconds = 60;
    if (o.messages > qint64(0xffffffffu) - 8) {
        std::fprintf(stderr, "stage-soak: --messages too large\n");
        return false;
    }
    return true;
}

/* Runs the event loop until pred() holds or timeout passes; true if it held. */
bool spinUntil(const std::function<bool()> &pred, std::chrono::milliseconds timeout)
{
    const auto deadline = Clock::now() + timeout;
    while (!pred()) {
        if (Clock::now() >= deadline)
            return false;
        QEventLoop loop;
        QTimer::singleShot(5, &loop, &QEventLoop::quit);
        loop.exec();
    }
    return true;
}

class Checks
{
public:
    void expect(bool ok, const QString &what)
    {
        ++m_total;
        if (ok)
            return;
        ++m_failed;
        std::printf("CHECK FAILED: %s\n", qPrintable(what));
        std::fflush(stdout);
    }
    template<typename A, typename B>
    void equal(A a, B b, const QString &what)
    {
        expect(qint64(a) == qint64(b), QStringLiteral("%1: %2 != %3").arg(what).arg(qint64(a)).arg(qint64(b)));
    }
    int failed() const { return m_failed; }
    int total() const { return m_total; }

private:
    int m_failed = 0;
    int m_total = 0;
};

// The actor subtree (issue #17) ------------------------------------------------------------------
//
//  root
//  `-- actors (one-for-one): ledger (main thread), vault (a thread of its own), relay (main thread)
//
// Every chaos tick (25 ms) the main thread asks and tells them (ask(), askFuture()), a client
// thread asks with askBlocking(), and, until the drain, the controller restarts one of them now
// and then (Node::restart(), Supervisor::restartChild()), on top of the root's own restarts. A
// Deposit's handler may throw before processing (a pure function of (seed, id, attempt), below
// maxRedeliveries: redelivered to the restarted actor) or yield first (a cancellation point for
// the restarts); a poison id always throws and must end dead-lettered. relay answers a Forward
// later, from a coroutine that asks vault (a deferred reply).
// Checked at the end: every ask ended exactly once; a value is the right one and its message was
// processed exactly once; a dead letter only for a poison id; no message processed twice; every
// tell accepted was processed once or (poison) dead-lettered; no other exception ever reached a
// caller. Timeouts (5 s) and broken replies (a deferred reply cut by relay's restart) are
// resolutions, counted and printed.

namespace actorsoak {

struct Deposit
{
    quint32 id = 0;
};
struct Forward
{
    quint32 id = 0;
};
struct Note
{
    quint32 id = 0;
};
using LedgerProtocol = stage::Protocol<quint64(Deposit), quint64(Forward), void(Note)>;
using LedgerRef = stage::ActorRef<LedgerProtocol>;

constexpr quint32 MaxCalls = 1u << 20;
constexpr int ActorMaxRedeliveries = 3;
constexpr quint64 ActorPoisonEvery = 2000;

enum End : int { Value, Timeout, DeadLettered, Broken, Closed, Other, EndKinds };

quint64 answer(quint32 id) { return mix(id) | 1; }

/* What the actors and the callers share (outlives both). */
struct State
{
    quint64 seed = 1;
    std::atomic<quint32> nextId{0};
    std::unique_ptr<std::atomic<uint8_t>[]> processed{new std::atomic<uint8_t>[MaxCalls]()};
    std::unique_ptr<std::atomic<uint8_t>[]> attempts{new std::atomic<uint8_t>[MaxCalls]()};
    std::unique_ptr<std::atomic<uint8_t>[]> ends{new std::atomic<uint8_t>[MaxCalls]()};
    std::unique_ptr<std::atomic<uint8_t>[]> isTell{new std::atomic<uint8_t>[MaxCalls]()};
    std::atomic<qint64> endKinds[EndKinds] = {};
    std::atomic<qint64> wrongValues{0}, throwsBefore{0}, asks{0}, tells{0}, tellsRefused{0}, blockingAsks{0};
    std::atomic<qint64> callersAlive{0};
    LedgerRef vault; // for relay's deferred replies

    bool isPoison(quint32 id) const { return mix(seed ^ (quint64(id) << 21) ^ 0xac7u) % ActorPoisonEvery == 0; }
    quint32 newId()
    {
        const quint32 id = nextId.fetch_add(1);
        return id < MaxCalls ? id : MaxCalls;
    }
    /* The handler's entry for \a id: throws by the plan, or returns whether to yield first. */
    bool enter(quint32 id)
    {
        const int attempt = attempts[id].fetch_add(1);
        if (isPoison(id))
            throw std::runtime_error("poison");
        const quint64 h = mix(seed * 131 + (quint64(id) << 8) + quint64(attempt));
        if (attempt < ActorMaxRedeliveries && h % 1000 < 8) {
            throwsBefore.fetch_add(1);
            throw std::runtime_error("actor fault");
        }
        return (h >> 16) % 100 < 10;
    }
    void process(quint32 id) { processed[id].fetch_add(1); }
    std::unique_ptr<std::atomic<uint8_t>[]> endKind{new std::atomic<uint8_t>[MaxCalls]()};
    std::unique_ptr<std::atomic<uint8_t>[]> kindOfCall{new std::atomic<uint8_t>[MaxCalls]()}; // 0 ask, 1 future, 2 forward, 3 blocking
    void ended(quint32 id, End kind)
    {
        endKind[id].store(uint8_t(kind));
        ends[id].fetch_add(1);
        endKinds[kind].fetch_add(1);
    }
};

End endOf(std::exception_ptr error)
{
    try {
        std::rethrow_exception(error);
    } catch (const stage::DeadLettered &) {
        return DeadLettered;
    } catch (const stage::BrokenReply &) {
        return Broken;
    } catch (const stage::TimeoutError &) {
        return Timeout;
    } catch (const stage::MailboxClosed &) {
        return Closed;
    } catch (const std::exception &e) {
        std::printf("actor soak: an ask failed with %s\n", e.what());
        return Other;
    }
}

/* relay's deferred answer: asks vault, answers the Forward with vault's answer (or its failure). */
QCoro::Task<> forwardLater(std::shared_ptr<State> st, quint32 id, stage::Reply<quint64> reply)
{
    try {
        reply.send(co_await st->vault.ask(Deposit{id}));
    } catch (const stage::DeadLettered &e) {
        reply.fail(e);
    } catch (const std::exception &) {
        // the reply breaks: the caller gets stage::BrokenReply (relay's restart cut this short)
    }
}

void spawnLedger(stage::Actor<LedgerProtocol> &actor, std::shared_ptr<State> st)
{
    actor.spawn(
        [] { return quint64(0); },
        [st](quint64 &sum, const Deposit &m) -> QCoro::Task<quint64> {
            if (st->enter(m.id))
                co_await stage::sleep(0ms); // a cancellation point: a restart may land here
            st->process(m.id);
            sum += m.id;
            co_return answer(m.id);
        },
        [st](quint64 &, Forward &m, stage::Reply<quint64> &reply) {
            forwardLater(st, m.id, std::move(reply)); // noreply: answered later
        },
        [st](quint64 &sum, const Note &m) {
            st->enter(m.id);
            st->process(m.id);
            sum += m.id;
        });
}

template<typename M>
QCoro::Task<> askOne(std::shared_ptr<State> st, LedgerRef ref, M message)
{
    st->callersAlive.fetch_add(1);
    const quint32 id = message.id;
    try {
        const quint64 value = co_await ref.ask(std::move(message));
        if (value != answer(id))
            st->wrongValues.fetch_add(1);
        st->ended(id, Value);
    } catch (...) {
        st->ended(id, endOf(std::current_exception()));
    }
    st->callersAlive.fetch_sub(1);
}

class ActorSoak
{
public:
    void build(Supervisor *root, quint64 seed)
    {
        st = std::make_shared<State>();
        st->seed = seed;
        rng.seed(mix(seed ^ 0xac70));
        sup = new Supervisor(Strategy::OneForOne);
        sup->setObjectName(QStringLiteral("actors"));
        sup->setMaxRestarts(1'000'000); // the actors' faults never escalate to the root
        sup->setRestartPeriod(1000);
        sup->setBackoff(stage::Backoff::none());
        root->addChild(sup);
        const char *names[] = {"ledger", "vault", "relay"};
        for (int i = 0; i < 3; ++i) {
            auto *actor = new stage::Actor<LedgerProtocol>;
            actor->setObjectName(QString::fromLatin1(names[i]));
            actor->setBackoff(stage::Backoff::none());
            actor->setMaxRestarts(1'000'000);
            actor->setMaxRedeliveries(ActorMaxRedeliveries);
            if (i == 1)
                actor->setThreadCount(1);
            sup->addChild(actor, RestartType::Permanent);
            spawnLedger(*actor, st);
            actors[i] = actor;
            refs[i] = actor->ref();
        }
        st->vault = refs[1];
        client = std::thread([st = st, vault = refs[1], ledger = refs[0], stop = &stopClient, done = &clientDone] {
            for (quint64 k = 0; !stop->load(); ++k) {
                const quint32 id = st->newId();
                if (id >= MaxCalls)
                    break;
                st->blockingAsks.fetch_add(1);
                st->kindOfCall[id].store(3);
                try {
                    const quint64 value = (k % 2 ? vault : ledger).askBlocking(Deposit{id});
                    if (value != answer(id))
                        st->wrongValues.fetch_add(1);
                    st->ended(id, Value);
                } catch (...) {
                    st->ended(id, endOf(std::current_exception()));
                }
                std::this_thread::sleep_for(2ms);
            }
            done->store(true);
        });
    }

    /* One chaos tick: calls, and (unless \a quiet) now and then a restart. */
    void tick(bool quiet)
    {
        if (calling) {
            for (int i = 0; i < 12; ++i) {
                const quint32 id = st->newId();
                if (id >= MaxCalls)
                    break;
                const quint64 r = rng();
                LedgerRef &ref = refs[r % 3];
                switch ((r >> 8) % 4) {
                case 0: { // a tell
                    st->isTell[id].store(1);
                    const auto status = ref.tell(Note{id});
                    if (status == stage::SendStatus::Sent)
                        st->tells.fetch_add(1);
                    else
                        st->tellsRefused.fetch_add(1);
                    st->ended(id, status == stage::SendStatus::Sent ? Value : Closed);
                    break;
                }
                case 1: { // askFuture, from slot code
                    st->asks.fetch_add(1);
                    st->callersAlive.fetch_add(1);
                    st->kindOfCall[id].store(1);
                    ref.askFuture(Deposit{id})
                        .then(sup, [st = st, id](quint64 value) {
                            if (value != answer(id))
                                st->wrongValues.fetch_add(1);
                            st->ended(id, Value);
                            st->callersAlive.fetch_sub(1);
                        })
                        .onFailed(sup, [st = st, id] {
                            st->ended(id, endOf(std::current_exception()));
                            st->callersAlive.fetch_sub(1);
                        });
                    break;
                }
                case 2: // a Forward: relay and ledger answer it later (they ask vault)
                    st->asks.fetch_add(1);
                    st->kindOfCall[id].store(2);
                    askOne(st, r % 3 == 1 ? refs[2] : ref, Forward{id});
                    break;
                default:
                    st->asks.fetch_add(1);
                    askOne(st, ref, Deposit{id});
                    break;
                }
            }
        }
        if (quiet || rng() % 100 >= 8)
            return;
        auto *actor = actors[rng() % 3].data();
        if (!actor)
            return;
        if (rng() % 2) {
            actor->restart();
            ++restarts;
        } else if (sup->restartChild(actor)) {
            ++restartChilds;
        }
    }

    /* Before the drain: no more calls. */
    void stopCalls()
    {
        calling = false;
        stopClient.store(true);
        // The client's askBlocking() runs its ask on the actors' thread (this one): keep its loop
        // running until the client is done.
        spinUntil([this] { return clientDone.load(); }, 30s);
        if (client.joinable())
            client.join();
    }

    /* Every call has ended and every accepted tell is settled (processed or dead-lettered). */
    bool drained() const
    {
        if (st->callersAlive.load() != 0)
            return false;
        const quint32 n = std::min(st->nextId.load(), MaxCalls);
        qint64 settledTells = 0;
        for (quint32 id = 0; id < n; ++id) {
            if (st->ends[id].load() == 0)
                return false;
            if (st->isTell[id].load() && st->processed[id].load() > 0)
                ++settledTells;
        }
        qint64 poisonTells = 0;
        for (quint32 id = 0; id < n; ++id)
            poisonTells += st->isTell[id].load() && st->isPoison(id);
        return settledTells + poisonTells >= st->tells.load();
    }

    /* After the tree's shutdown, before it is deleted. */
    void verify(Checks &checks)
    {
        const quint32 n = std::min(st->nextId.load(), MaxCalls);
        qint64 twice = 0, duplicates = 0, unended = 0, lostTells = 0, deadLetters = 0, deadNotPoison = 0;
        std::unordered_set<quint32> deadIds;
        for (auto &a : actors) {
            if (!a)
                continue;
            for (auto &letter : a->takeDeadLetters()) {
                ++deadLetters;
                const quint32 id = std::visit([](auto &l) { return l.message.id; }, letter.value.letter);
                deadIds.insert(id);
                deadNotPoison += !st->isPoison(id);
            }
        }
        for (quint32 id = 0; id < n; ++id) {
            const int ends = st->ends[id].load();
            unended += ends == 0;
            twice += ends > 1;
            const int processed = st->processed[id].load();
            duplicates += processed > 1;
            if (processed > 1 || (st->endKind[id].load() == Timeout && !st->isTell[id].load()))
                std::printf("  actors: id %u: processed %d, attempts %d, tell %d, call kind %d, ended %d as %d\n", id,
                            processed, int(st->attempts[id].load()), int(st->isTell[id].load()),
                            int(st->kindOfCall[id].load()), ends, int(st->endKind[id].load()));
            if (st->isTell[id].load()) {
                if (processed == 0 && !deadIds.count(id))
                    lostTells += 1; // accepted, never processed, not a dead letter (refused tells end Closed)
            }
        }
        lostTells -= st->tellsRefused.load();
        checks.equal(unended, 0, QStringLiteral("actors: calls that never ended"));
        checks.equal(twice, 0, QStringLiteral("actors: calls that ended twice"));
        checks.equal(duplicates, 0, QStringLiteral("actors: messages processed twice"));
        checks.equal(st->wrongValues.load(), 0, QStringLiteral("actors: wrong answers"));
        checks.equal(st->endKinds[Other].load(), 0, QStringLiteral("actors: asks failed with an undocumented exception"));
        checks.equal(deadNotPoison, 0, QStringLiteral("actors: ordinary messages dead-lettered"));
        checks.equal(lostTells, 0, QStringLiteral("actors: tells accepted and lost"));
        qint64 expired = 0;
        for (auto &a : actors)
            if (a)
                expired += a->expiredAsks();
        std::printf("  actors: %u calls (%lld asks, %lld blocking, %lld tells + %lld refused): value %lld, timeout %lld, "
                    "dead letter %lld, broken %lld, closed %lld, other %lld; %lld faults thrown, %lld dead letters, "
                    "%lld expired asks, restarts %lld + restartChild %lld\n",
                    n, st->asks.load(), st->blockingAsks.load(), st->tells.load(), st->tellsRefused.load(),
                    st->endKinds[Value].load() - st->tells.load() - 0, st->endKinds[Timeout].load(),
                    st->endKinds[DeadLettered].load(), st->endKinds[Broken].load(),
                    st->endKinds[Closed].load() - st->tellsRefused.load(), st->endKinds[Other].load(),
                    st->throwsBefore.load(), deadLetters, expired, restarts, restartChilds);
    }

    ~ActorSoak()
    {
        stopClient.store(true);
        if (client.joinable())
            client.join();
    }

private:
    std::shared_ptr<State> st;
    std::mt19937_64 rng;
    QPointer<Supervisor> sup;
    std::array<QPointer<stage::Actor<LedgerProtocol>>, 3> actors;
    std::array<LedgerRef, 3> refs;
    std::thread client;
    std::atomic<bool> stopClient{false};
    std::atomic<bool> clientDone{false};
    bool calling = true;
    qint64 restarts = 0, restartChilds = 0;
};

} // namespace actorsoak

const char *stateName(Node::State s)
{
    switch (s) {
    case Node::State::Idle: return "Idle";
    case Node::State::Starting: return "Starting";
    case Node::State::Running: return "Running";
    case Node::State::Restarting: return "Restarting";
    case Node::State::Stopping: return "Stopping";
    case Node::State::Stopped: return "Stopped";
    case Node::State::Failed: return "Failed";
    }
    return "?";
}

class Soaker
{
public:
    Soaker(const Options &options) : opt(options), rng(mix(options.seed ^ 0xc0ffee))
    {
        soak = std::make_shared<Soak>();
        soak->seed = opt.seed;
        soak->idCap = opt.messages >= 0 ? quint32(opt.messages) : DefaultIdCap;
        soak->processed = static_cast<uint8_t *>(std::calloc(std::max<quint32>(soak->idCap, 1), 1));
        for (auto &m : boxes) {
            m = opt.redis     ? redisBox(opt.seed, int(&m - boxes), BoxCapacity)
                : opt.durable ? durableBox(opt.seed, int(&m - boxes), BoxCapacity)
                              : stage::Mailbox<Msg>(BoxCapacity);
            m.setMaxRedeliveries(MaxRedeliveries);
            m.setDeadLetterLimit(std::numeric_limits<int>::max()); // every poison message is checked at the end
        }
    }

    int run();

private:
    // Tree
    SupCtl *addSupervisor(const QString &name, Strategy strategy, Supervisor *parent, int maxRestarts, int period);
    std::shared_ptr<GroupCtl> makeGroup(const QString &name, int box, int threads, int size, bool dynamic,
                                        int shutdownTimeout, int maxRestarts, const stage::Backoff &backoff,
                                        Supervisor *parent, RestartType type);
    void buildTree();
    // Chaos
    void tick();
    void act();
    void addDynamic();
    void removeDynamic(const std::shared_ptr<GroupCtl> &g);
    void reap(bool all);
    void quiesce();
    // Checks
    void checkGroup(GroupCtl &g);
    void checkSupervisor(const SupCtl &s);
    void verify(double producingSeconds, double drainSeconds, double shutdownSeconds, double totalSeconds);
    void progress();
    QString dumpTree() const;

    Options opt;
    std::mt19937_64 rng;
    std::shared_ptr<Soak> soak;
    stage::Mailbox<Msg> boxes[Boxes];
    Supervisor *root = nullptr;
    std::vector<std::unique_ptr<SupCtl>> sups;
    std::vector<std::shared_ptr<GroupCtl>> staticGroups;
    std::vector<std::shared_ptr<GroupCtl>> dynamicGroups;  // under a supervisor now
    std::vector<std::shared_ptr<GroupCtl>> graveyard;      // removed, still stopping
    std::vector<std::shared_ptr<GroupCtl>> allGroups;      // every group ever made (for the summary)
    std::vector<std::pair<std::shared_ptr<GroupCtl>, int>> pendingRestores; // cancellations to undo
    std::vector<std::thread> producers;
    QTimer chaos;
    Checks checks;
    int dynamicCounter = 0;
    bool quiet = false;
    bool finishing = false;
    QElapsedTimer clock;
    qint64 lastProgressMs = 0;

    // Action counts
    qint64 aStormSmall = 0, aStormBig = 0, aStormFlaky = 0, aResize = 0, aCancel = 0, aAdd = 0, aRemove = 0,
           aHangForced = 0, aHangPlain = 0, aRootRestart = 0, forcedHangs = 0, aAddSkipped = 0;

    // Totals folded in by checkGroup()
    qint64 gThrowsAsStops = 0; // faults thrown after a stop request: Cancelled
    qint64 gStarted = 0, gFailed = 0, gCancelled = 0, gAbandoned = 0, gRestarted = 0, gCompleted = 0;

    actorsoak::ActorSoak actorSoak; // the actor subtree: its own calls, faults and checks
};

SupCtl *Soaker::addSupervisor(const QString &name, Strategy strategy, Supervisor *parent, int maxRestarts, int period)
{
    auto *sv = new Supervisor(strategy);
    sv->setObjectName(name);
    sv->setMaxRestarts(maxRestarts);
    sv->setRestartPeriod(period);
    sv->setBackoff(stage::Backoff::exponential(1ms, 50ms, 2.0, 0.2, 1000ms));
    auto ctl = std::make_unique<SupCtl>();
    ctl->name = name;
    ctl->sv = sv;
    SupCtl *c = ctl.get();
    QObject::connect(sv, &Supervisor::childExited, sv, [c, sv](Node *node, bool failed, const QString &) {
        ++c->exitedSignals;
        if (failed)
            ++c->exitedFailedSignals;
        const RestartType type = sv->childRestartType(node);
        if (type == RestartType::Permanent || (type == RestartType::Transient && failed))
            ++c->restartOrEscalateExpected;
    });
    QObject::connect(sv, &Supervisor::childRestarted, sv, [c] { ++c->restartedSignals; });
    QObject::connect(sv, &Node::gaveUp, sv, [this, c, sv] {
        ++c->gaveUp;
        if (Supervisor *above = sv->supervisor()) {
            for (auto &s : sups)
                if (s->sv == above)
                    ++s->childGaveUps;
        }
    });
    sups.push_back(std::move(ctl));
    if (parent) {
        if (!parent->addChild(sv))
            qFatal("stage-soak: addChild refused for %s", qPrintable(name));
    } else {
        root = sv;
    }
    return c;
}

std::shared_ptr<GroupCtl> Soaker::makeGroup(const QString &name, int box, int threads, int size, bool dynamic,
                                            int shutdownTimeout, int maxRestarts, const stage::Backoff &backoff,
                                            Supervisor *parent, RestartType type)
{
    auto ctl = std::make_shared<GroupCtl>();
    ctl->name = name;
    ctl->box = box;
    ctl->dynamic = dynamic;
    ctl->shutdownTimeout = shutdownTimeout;
    auto *g = new stage::Group;
    g->setObjectName(name);
    g->setThreadCount(threads);
    g->setSize(size);
    g->setShutdownTimeout(shutdownTimeout);
    g->setMaxRestarts(maxRestarts);
    g->setRestartPeriod(GroupRestartPeriod);
    g->setBackoff(backoff);
    ctl->group = g;
    GroupCtl *c = ctl.get();
    QObject::connect(g, &stage::Group::workerFinished, g, [c](const stage::WorkerExit &exit) {
        switch (exit.kind) {
        case stage::WorkerExit::Kind::Completed: ++c->exitCompleted; break;
        case stage::WorkerExit::Kind::Failed:
            ++c->exitFailed;
            if (!exit.reason.startsWith(QLatin1String("soak: ")))
                std::printf("note: %s: a run failed for a reason the soak did not throw: %s (generation %d)\n",
                            qPrintable(c->name), qPrintable(exit.reason), exit.generation);
            break;
        case stage::WorkerExit::Kind::Cancelled:
            ++c->exitCancelled;
            if (exit.reason == QLatin1String("stopped before it started"))
                ++c->preStartStops;
            if (exit.reason.startsWith(QLatin1String("stopped; while unwinding it threw: soak: ")))
                ++c->throwsAsStops;
            break;
        case stage::WorkerExit::Kind::Abandoned: ++c->exitAbandoned; break;
        }
    });
    QObject::connect(g, &Node::gaveUp, g, [this, c, g] {
        ++c->gaveUp;
        if (Supervisor *above = g->supervisor()) {
            for (auto &s : sups)
                if (s->sv == above)
                    ++s->childGaveUps;
        }
    });
    if (!parent->addChild(g, type)) {
        delete g;
        return nullptr;
    }
    auto s = soak;
    auto mailbox = boxes[box];
    // A plain factory (not a coroutine): the body gets its data as parameters.
    g->spawn([s, ctl, mailbox](stage::Worker &worker) { return consumer(worker, s, ctl, mailbox); });
    allGroups.push_back(ctl);
    return ctl;
}

void Soaker::buildTree()
{
    //  root (one-for-one)
    //  |-- ingest (one-for-all): A-main (main thread, 2 workers), A-pool (2 threads, 3 workers)   box 0
    //  |-- process (rest-for-one): B-main (main, 1), B-pool (1 thread, 2)                        box 1
    //  |   `-- flaky (one-for-one, 2 restarts / 2 s): C-pool (2 threads, 2), C-main (main, 1)     box 2
    //  `-- dynamic groups, added to and removed from any supervisor at run time
    addSupervisor(QStringLiteral("root"), Strategy::OneForOne, nullptr, 50, 1000);
    SupCtl *ingest = addSupervisor(QStringLiteral("ingest"), Strategy::OneForAll, root, 10, 1000);
    SupCtl *process = addSupervisor(QStringLiteral("process"), Strategy::RestForOne, root, 10, 1000);
    const auto none = stage::Backoff::none();
    staticGroups.push_back(makeGroup(QStringLiteral("A-main"), 0, 0, 2, false, StaticShutdownTimeout,
                                     GroupMaxRestarts, none, ingest->sv, RestartType::Permanent));
    staticGroups.push_back(makeGroup(QStringLiteral("A-pool"), 0, 2, 3, false, StaticShutdownTimeout,
                                     GroupMaxRestarts, none, ingest->sv, RestartType::Permanent));
    staticGroups.push_back(makeGroup(QStringLiteral("B-main"), 1, 0, 1, false, StaticShutdownTimeout,
                                     GroupMaxRestarts, none, process->sv, RestartType::Permanent));
    staticGroups.push_back(makeGroup(QStringLiteral("B-pool"), 1, 1, 2, false, StaticShutdownTimeout,
                                     GroupMaxRestarts, none, process->sv, RestartType::Permanent));
    SupCtl *flaky = addSupervisor(QStringLiteral("flaky"), Strategy::OneForOne, process->sv, 2, 2000);
    staticGroups.push_back(makeGroup(QStringLiteral("C-pool"), 2, 2, 2, false, StaticShutdownTimeout,
                                     GroupMaxRestarts, none, flaky->sv, RestartType::Permanent));
    staticGroups.push_back(makeGroup(QStringLiteral("C-main"), 2, 0, 1, false, StaticShutdownTimeout,
                                     GroupMaxRestarts, none, flaky->sv, RestartType::Transient));
    actorSoak.build(root, opt.seed);
    QObject::connect(root, &Node::gaveUp, root, [this] {
        // The application's answer to a root that gave up: start it again (from the event loop).
        QTimer::singleShot(0, root, [this] {
            if (!finishing && root->state() == Node::State::Failed) {
                ++aRootRestart;
                root->start();
            }
        });
    });
}

std::shared_ptr<GroupCtl> pick(std::mt19937_64 &rng, const std::vector<std::shared_ptr<GroupCtl>> &v)
{
    if (v.empty())
        return nullptr;
    return v[rng() % v.size()];
}

void Soaker::addDynamic()
{
    if (dynamicGroups.size() >= 6)
        return;
    const int n = dynamicCounter++;
    const int box = int(rng() % Boxes);
    const int threads = int(rng() % 3); // 0: the main thread
    const int size = 1 + int(rng() % 3);
    const quint64 r = rng() % 10;
    const int maxRestarts = r == 0 ? -1 : r < 3 ? 5 : GroupMaxRestarts; // -1: every failure escalates
    const stage::Backoff backoff = rng() % 2 ? stage::Backoff::none() : stage::Backoff::exponential(1ms, 20ms);
    const RestartType types[] = {RestartType::Permanent, RestartType::Transient, RestartType::Temporary};
    const RestartType type = types[rng() % 3];
    Supervisor *parent = sups[rng() % sups.size()]->sv;
    if (parent->state() == Node::State::Stopping) {
        // Refused by Supervisor::addChild ("has been shut down") while its own supervisor stops
        // it for a restart (a finding of this soak: see the report); try again later.
        ++aAddSkipped;
        return;
    }
    auto g = makeGroup(QStringLiteral("dyn-%1").arg(n), box, threads, size, true, DynamicShutdownTimeout, maxRestarts,
                       backoff, parent, type);
    if (g) {
        dynamicGroups.push_back(g);
        ++aAdd;
    }
}

void Soaker::removeDynamic(const std::shared_ptr<GroupCtl> &g)
{
    stage::Group *group = g->group;
    Supervisor *sv = group ? group->supervisor() : nullptr;
    if (!sv || !sv->removeChild(group))
        qFatal("stage-soak: removeChild failed for %s", qPrintable(g->name));
    g->removed = true;
    dynamicGroups.erase(std::find(dynamicGroups.begin(), dynamicGroups.end(), g));
    graveyard.push_back(g);
    ++aRemove;
}

void Soaker::act()
{
    const quint64 r = rng() % 100;
    if (r < 14) { // a storm the group absorbs
        auto g = pick(rng, staticGroups);
        g->stormBudget.fetch_add(1 + int(rng() % (GroupMaxRestarts / 2)));
        ++aStormSmall;
    } else if (r < 20) { // beyond the group's intensity: it escalates to its supervisor
        auto g = pick(rng, staticGroups);
        g->stormBudget.fetch_add(GroupMaxRestarts + 1 + int(rng() % GroupMaxRestarts));
        ++aStormBig;
    } else if (r < 22) { // beyond flaky's intensity too: flaky escalates to process (rest-for-one)
        auto g = staticGroups[4]; // C-pool
        g->stormBudget.fetch_add((GroupMaxRestarts + 1) * 4 + int(rng() % 100));
        ++aStormFlaky;
    } else if (r < 34) { // resize
        auto g = pick(rng, rng() % 4 ? staticGroups : dynamicGroups);
        if (g && g->group) {
            g->group->setSize(1 + int(rng() % 4));
            ++aResize;
        }
    } else if (r < 46) { // cancel the newest worker (whatever it holds), start it again next tick
        auto g = pick(rng, staticGroups);
        const int size = g->group->size();
        if (size > 1) {
            g->group->setSize(size - 1);
            pendingRestores.emplace_back(g, size);
            ++aCancel;
        }
    } else if (r < 58) {
        addDynamic();
    } else if (r < 68) {
        std::vector<std::shared_ptr<GroupCtl>> candidates;
        for (auto &g : dynamicGroups)
            if (!g->forcedHangPending)
                candidates.push_back(g);
        if (auto g = pick(rng, candidates))
            removeDynamic(g);
    } else if (r < 72) { // a hang, removed from its supervisor while it hangs: must be abandoned
        std::vector<std::shared_ptr<GroupCtl>> candidates;
        for (auto &g : dynamicGroups)
            if (!g->forcedHangPending && g->group && g->group->threadCount() > 0 && g->hangsStarted.load() == 0)
                candidates.push_back(g);
        if (auto g = pick(rng, candidates)) {
            g->hangReleaseNs.store(0);
            g->hangMaxMs.store(3000);
            g->forcedHangPending = true;
            g->hangRequests.store(1);
            ++aHangForced;
        }
    } else if (r < 76) { // a hang on a static group's thread, past its shutdown timeout
        std::vector<std::shared_ptr<GroupCtl>> candidates;
        for (auto &g : staticGroups)
            if (g->group->threadCount() > 0 && g->hanging.load() == 0 && g->hangRequests.load() == 0)
                candidates.push_back(g);
        if (auto g = pick(rng, candidates)) {
            g->hangReleaseNs.store(0);
            g->hangMaxMs.store(2 * g->shutdownTimeout + 100);
            g->hangRequests.store(1);
            ++aHangPlain;
        }
    }
}

void Soaker::tick()
{
    for (auto &[g, size] : std::exchange(pendingRestores, {}))
        if (g->group && g->group->size() < size)
            g->group->setSize(size);
    // Forced hangs: once the worker hangs, remove its group; it must report the worker abandoned.
    for (auto g : std::vector<std::shared_ptr<GroupCtl>>(dynamicGroups)) {
        if (!g->forcedHangPending || g->hanging.load() == 0)
            continue;
        const auto release = Clock::now() + std::chrono::milliseconds(g->shutdownTimeout + ForcedHangMarginMs);
        g->hangReleaseNs.store(release.time_since_epoch().count());
        g->forcedHangPending = false;
        g->forcedHang = true;
        ++forcedHangs;
        removeDynamic(g);
    }
    reap(false);
    if (!quiet && rng() % 100 < 25)
        act();
    actorSoak.tick(quiet);
    progress();
}

void Soaker::reap(bool all)
{
    for (auto it = graveyard.begin(); it != graveyard.end();) {
        GroupCtl &g = **it;
        stage::Group *group = g.group;
        const bool done = !group || ((group->state() == Node::State::Stopped || group->state() == Node::State::Failed)
                                     && group->running() == 0 && g.liveFrames.load() == 0);
        if (!done && !all) {
            ++it;
            continue;
        }
        checkGroup(g);
        delete group;
        it = graveyard.erase(it);
    }
}

void Soaker::quiesce()
{
    quiet = true;
    for (auto &g : allGroups) {
        g->stormBudget.store(0);
        g->hangRequests.store(0);
        if (!g->forcedHang && !g->forcedHangPending)
            g->hangReleaseNs.store(Clock::now().time_since_epoch().count()); // end plain hangs now
    }
    for (auto &[g, size] : std::exchange(pendingRestores, {}))
        if (g->group && g->group->size() < size)
            g->group->setSize(size);
    // A forced hang requested but not started yet: drop it; one that hangs: remove it as usual.
    for (auto &g : dynamicGroups)
        if (g->forcedHangPending && g->hanging.load() == 0)
            g->forcedHangPending = false;
}

void Soaker::progress()
{
    const qint64 now = clock.elapsed();
    if (now - lastProgressMs < 5000)
        return;
    lastProgressMs = now;
    qint64 sent = 0, processings = 0, redelivered = 0, dead = 0;
    for (int b = 0; b < Boxes; ++b) {
        sent += soak->box[b].sent.load();
        processings += soak->box[b].processings.load();
        const auto s = boxes[b].statistics();
        redelivered += s.redelivered;
        dead += s.deadLettered;
    }
    std::printf("[%6.1f s] sent %lld, processings %lld, redelivered %lld, dead-lettered %lld, frames %lld, "
                "dynamic groups %zu, root %s\n",
                double(now) / 1000.0, sent, processings, redelivered, dead, soak->liveFrames.load(),
                dynamicGroups.size(), stateName(root->state()));
    std::fflush(stdout);
}

QString Soaker::dumpTree() const
{
    QString out;
    std::function<void(const Node *, int)> walk = [&](const Node *node, int depth) {
        out += QString(depth * 2, QLatin1Char(' ')) + node->objectName() + QStringLiteral(" ")
            + QString::fromLatin1(stateName(node->state()));
        if (auto *g = qobject_cast<const stage::Group *>(node))
            out += QStringLiteral(" running=%1 size=%2").arg(g->running()).arg(g->size());
        out += QLatin1Char('\n');
        if (auto *sv = qobject_cast<const Supervisor *>(node))
            for (Node *child : sv->childNodes())
                walk(child, depth + 1);
    };
    walk(root, 1);
    return out;
}

void Soaker::checkGroup(GroupCtl &g)
{
    if (g.checked)
        return;
    g.checked = true;
    stage::Group *group = g.group;
    if (!group) {
        checks.expect(false, QStringLiteral("%1: the group was deleted before its check").arg(g.name));
        return;
    }
    const auto s = group->statistics();
    const QString n = g.name;
    checks.expect(s.isConsistent(), QStringLiteral("%1: statistics inconsistent (started %2 != running %3 + "
                                                   "completed %4 + failed %5 + cancelled %6 + abandoned %7)")
                                        .arg(n).arg(s.started).arg(s.running).arg(s.completed).arg(s.failed)
                                        .arg(s.cancelled).arg(s.abandoned));
    checks.equal(s.running, 0, n + QStringLiteral(": running after its stop"));
    checks.equal(g.liveFrames.load(), 0, n + QStringLiteral(": frames alive after its stop"));
    checks.equal(g.hanging.load(), 0, n + QStringLiteral(": hanging after its stop"));
    checks.equal(s.completed, g.exitCompleted, n + QStringLiteral(": completed vs workerFinished(Completed)"));
    checks.equal(s.completed, 0, n + QStringLiteral(": completed (no body returns)"));
    checks.equal(s.failed, g.exitFailed, n + QStringLiteral(": failed vs workerFinished(Failed)"));
    checks.equal(s.failed + g.throwsAsStops, g.throws.load(),
                 n + QStringLiteral(": failed + faults thrown after a stop request vs the faults its bodies threw"));
    checks.equal(s.cancelled, g.exitCancelled, n + QStringLiteral(": cancelled vs workerFinished(Cancelled)"));
    checks.equal(s.abandoned, g.exitAbandoned, n + QStringLiteral(": abandoned vs workerFinished(Abandoned)"));
    // A run abandoned before its thread could begin it (a hang blocks the thread) never begins:
    // its late "stopped before it started" is not reported. So, between:
    checks.expect(g.bodies.load() + g.preStartStops <= s.started
                      && s.started <= g.bodies.load() + g.preStartStops + s.abandoned,
                  QStringLiteral("%1: started %2 not within bodies begun %3 + runs stopped before they started %4 "
                                 "(+ abandoned %5)")
                      .arg(n).arg(s.started).arg(g.bodies.load()).arg(g.preStartStops).arg(s.abandoned));
    checks.expect(s.restarted <= s.failed + s.abandoned,
                  QStringLiteral("%1: restarted %2 > failed %3 + abandoned %4 (restart type transient)")
                      .arg(n).arg(s.restarted).arg(s.failed).arg(s.abandoned));
    if (g.forcedHang)
        checks.expect(s.abandoned >= 1, QStringLiteral("%1: removed while a worker hung past its shutdown timeout, "
                                                       "but no worker was reported abandoned").arg(n));
    checks.expect(!group->isRunning(), QStringLiteral("%1: still %2 after its stop").arg(n, stateName(group->state())));
    gStarted += s.started;
    gFailed += s.failed;
    gThrowsAsStops += g.throwsAsStops;
    gCancelled += s.cancelled;
    gAbandoned += s.abandoned;
    gRestarted += s.restarted;
    gCompleted += s.completed;
}

void Soaker::checkSupervisor(const SupCtl &c)
{
    const auto s = c.sv->statistics();
    const QString n = c.name;
    checks.equal(s.childrenRestarted, c.restartedSignals, n + QStringLiteral(": childrenRestarted vs childRestarted()"));
    checks.equal(s.escalations, c.gaveUp, n + QStringLiteral(": escalations vs gaveUp()"));
    checks.equal(s.restarts + s.escalations, c.restartOrEscalateExpected,
                 n + QStringLiteral(": restarts + escalations vs childExited() calling for a restart"));
    checks.expect(c.exitedSignals <= s.childExits,
                  QStringLiteral("%1: childExited() %2 > childExits %3").arg(n).arg(c.exitedSignals).arg(s.childExits));
    checks.expect(c.exitedFailedSignals <= s.childFailures && s.childFailures <= s.childExits,
                  QStringLiteral("%1: childFailures %2 not within [childExited(failed) %3, childExits %4]")
                      .arg(n).arg(s.childFailures).arg(c.exitedFailedSignals).arg(s.childExits));
    checks.expect(s.childFailures <= c.childGaveUps,
                  QStringLiteral("%1: childFailures %2 > gaveUp() of its children %3").arg(n).arg(s.childFailures)
                      .arg(c.childGaveUps));
    checks.equal(s.runningChildren, 0, n + QStringLiteral(": running children after the shutdown"));
    checks.expect(!c.sv->isRunning(), QStringLiteral("%1: still %2 after the shutdown").arg(n, stateName(c.sv->state())));
}

void Soaker::verify(double producingSeconds, double drainSeconds, double shutdownSeconds, double totalSeconds)
{
    // Nothing runs any more.
    checks.equal(soak->liveFrames.load(), 0, QStringLiteral("worker frames alive after the shutdown"));
    checks.equal(soak->hangsInProgress.load(), 0, QStringLiteral("hangs in progress after the shutdown"));
    for (auto &g : allGroups)
        if (!g->removed)
            checkGroup(*g);
    for (auto &s : sups)
        checkSupervisor(*s);

    // Dead letters.
    std::unordered_set<quint32> dead;
    qint64 deadTaken = 0, deadDuplicated = 0, deadOrdinary = 0, deadBadFailures = 0;
    for (int b = 0; b < Boxes; ++b) {
        for (auto &letter : boxes[b].takeDeadLetters()) {
            ++deadTaken;
            if (!letter.value.check || *letter.value.check != mix(letter.value.id))
                soak->corrupt.fetch_add(1);
            if (!dead.insert(letter.value.id).second)
                ++deadDuplicated;
            if (!soak->isPoison(letter.value.id))
                ++deadOrdinary;
            if (letter.failures != MaxRedeliveries + 1)
                ++deadBadFailures;
        }
    }

    // Per id: lost, duplicates, never-sent ids processed.
    qint64 sent = 0, unique = 0, duplicates = 0, lost = 0, poisonSent = 0, poisonProcessed = 0, poisonNotDead = 0,
           phantom = 0, saturated = 0;
    std::vector<bool> wasSent;
    qint64 maxId = 0;
    for (int p = 0; p < Producers; ++p)
        maxId = std::max(maxId, p + Producers * soak->sentPerProducer[p].load());
    for (int p = 0; p < Producers; ++p) {
        const qint64 count = soak->sentPerProducer[p].load();
        sent += count;
        for (qint64 k = 0; k < count; ++k) {
            const quint32 id = quint32(p + Producers * k);
            const int times = soak->processed[id];
            if (times == 255)
                ++saturated;
            if (soak->isPoison(id)) {
                ++poisonSent;
                if (times)
                    ++poisonProcessed;
                if (!dead.count(id))
                    ++poisonNotDead;
                continue;
            }
            if (times == 0) {
                if (!dead.count(id))
                    ++lost;
            } else {
                ++unique;
                duplicates += times - 1;
            }
        }
    }
    for (qint64 id = 0; id < std::min<qint64>(soak->idCap, maxId + Producers); ++id) {
        const int p = int(id % Producers);
        if (id / Producers >= soak->sentPerProducer[p].load() && soak->processed[id])
            ++phantom;
    }

    qint64 throwsBefore = 0, throwsAfter = 0, poisonThrows = 0, cancelledHolding = 0, processings = 0, holds = 0;
    stage::MailboxStatistics total;
    for (int b = 0; b < Boxes; ++b) {
        const BoxCounters &c = soak->box[b];
        const auto s = boxes[b].statistics();
        const QString n = QStringLiteral("mailbox %1").arg(b);
        // A Redis mailbox counts a message twice in this one process: its send (the XADD) and its
        // arrival from the stream (the journal's feed).
        checks.equal(s.queued, (opt.redis ? 2 : 1) * c.sent.load(), n + QStringLiteral(": queued vs sent"));
        checks.equal(s.deadLettered, c.poisonSent.load(), n + QStringLiteral(": dead-lettered vs poison sent"));
        checks.equal(s.acknowledged, c.sent.load() - s.deadLettered, n + QStringLiteral(": acknowledged vs sent - dead-lettered"));
        checks.equal(s.delivered, s.acknowledged + s.redelivered + s.deadLettered,
                     n + QStringLiteral(": delivered vs acknowledged + redelivered + dead-lettered"));
        checks.equal(s.redelivered + s.deadLettered,
                     c.throwsBefore.load() + c.throwsAfter.load() + c.poisonThrows.load() + c.cancelledHolding.load(),
                     n + QStringLiteral(": redelivered + dead-lettered vs failures and cancellations while holding"));
        checks.equal(c.processings.load(), s.acknowledged + c.throwsAfter.load(),
                     n + QStringLiteral(": processings vs acknowledged + throws after processing"));
        checks.equal(boxes[b].count(), 0, n + QStringLiteral(": messages left queued"));
        checks.equal(boxes[b].deadLetterCount(), 0, n + QStringLiteral(": dead letters left after taking them"));
        throwsBefore += c.throwsBefore.load();
        throwsAfter += c.throwsAfter.load();
        poisonThrows += c.poisonThrows.load();
        cancelledHolding += c.cancelledHolding.load();
        processings += c.processings.load();
        holds += c.holds.load();
        total.queued += s.queued;
        total.delivered += s.delivered;
        total.acknowledged += s.acknowledged;
        total.redelivered += s.redelivered;
        total.deadLettered += s.deadLettered;
    }
    checks.equal(lost, 0, QStringLiteral("lost messages (sent, never processed, not dead-lettered)"));
    checks.equal(duplicates, throwsAfter, QStringLiteral("duplicate processings vs failures after processing, before the ack"));
    checks.equal(unique, sent - poisonSent, QStringLiteral("ids processed vs ordinary ids sent"));
    checks.equal(processings, unique + duplicates, QStringLiteral("processings vs unique + duplicates"));
    checks.equal(deadTaken, poisonSent, QStringLiteral("dead letters taken vs poison ids sent"));
    checks.equal(total.deadLettered, deadTaken, QStringLiteral("dead-lettered counter vs dead letters taken"));
    checks.equal(deadDuplicated, 0, QStringLiteral("ids dead-lettered twice"));
    checks.equal(deadOrdinary, 0, QStringLiteral("ordinary (non-poison) ids dead-lettered"));
    checks.equal(deadBadFailures, 0, QStringLiteral("dead letters whose failures != maxRedeliveries + 1"));
    checks.equal(poisonProcessed, 0, QStringLiteral("poison ids processed"));
    checks.equal(poisonNotDead, 0, QStringLiteral("poison ids sent but not dead-lettered"));
    checks.equal(phantom, 0, QStringLiteral("ids processed that were never sent"));
    checks.equal(saturated, 0, QStringLiteral("ids processed 255 times or more"));
    checks.equal(soak->corrupt.load(), 0, QStringLiteral("corrupt messages"));
    checks.equal(soak->producersDone.load(), Producers, QStringLiteral("producers finished"));
    checks.equal(gFailed + gThrowsAsStops, soak->stormThrows.load() + throwsBefore + throwsAfter + poisonThrows,
                 QStringLiteral("groups' failed + faults thrown after a stop request vs every fault thrown"));
    checks.expect(gAbandoned >= forcedHangs, QStringLiteral("abandoned %1 < hanging workers removed %2").arg(gAbandoned).arg(forcedHangs));
    checks.equal(unexpectedWarnings.load(), 0, QStringLiteral("unexpected warnings (printed above with [unexpected])"));

    qint64 exits = 0, childFailures = 0, supRestarts = 0, childrenRestarted = 0, escalations = 0;
    for (auto &s : sups) {
        const auto st = s->sv->statistics();
        exits += st.childExits;
        childFailures += st.childFailures;
        supRestarts += st.restarts;
        childrenRestarted += st.childrenRestarted;
        escalations += st.escalations;
    }

    auto rate = [](qint64 n, double s) { return s > 0 ? double(n) / s : 0.0; };
    std::printf("\n== stage-soak summary (seed %llu) ==\n", static_cast<unsigned long long>(opt.seed));
    std::printf("  wall time                  %8.2f s  (producing %.2f s, drain %.2f s, shutdown %.2f s)\n",
                totalSeconds, producingSeconds, drainSeconds, shutdownSeconds);
    std::printf("  messages sent              %10lld  (%.0f/s while producing; %lld send retries on a full mailbox)\n",
                sent, rate(sent, producingSeconds), soak->sendRetries.load());
    std::printf("  processed (unique ids)     %10lld  (%.0f/s over the run)\n", unique, rate(unique, producingSeconds + drainSeconds));
    std::printf("  processings (total)        %10lld\n", processings);
    std::printf("  delivered                  %10lld\n", total.delivered);
    std::printf("  acknowledged               %10lld\n", total.acknowledged);
    std::printf("  redelivered                %10lld\n", total.redelivered);
    std::printf("  dead-lettered              %10lld  (poison ids sent %lld)\n", total.deadLettered, poisonSent);
    std::printf("  lost                       %10lld\n", lost);
    std::printf("  duplicates                 %10lld  (failures after processing, before the ack: %lld)\n", duplicates, throwsAfter);
    std::printf("  failures before processing %10lld\n", throwsBefore);
    std::printf("  poison throws              %10lld\n", poisonThrows);
    std::printf("  cancelled holding a message%10lld  (of %lld holds across a Stage awaitable)\n", cancelledHolding, holds);
    std::printf("  storm throws at start      %10lld\n", soak->stormThrows.load());
    std::printf("  hangs                      %10lld  (%lld ended after their stop; forced abandonments %lld)\n",
                soak->hangsStarted.load(), soak->hangsStoppedLate.load(), forcedHangs);
    std::printf("  groups (all %zu): started %lld, failed %lld, cancelled %lld, abandoned %lld, restarted %lld, completed %lld\n",
                allGroups.size(), gStarted, gFailed, gCancelled, gAbandoned, gRestarted, gCompleted);
    std::printf("  supervisors: child exits %lld (failed %lld), restarts %lld, children restarted %lld, escalations %lld\n",
                exits, childFailures, supRestarts, childrenRestarted, escalations);
    std::printf("  actions: storms %lld small / %lld big / %lld flaky, resizes %lld, cancellations %lld, children added %lld (%lld skipped: "
                "parent stopping) / removed %lld, hangs %lld forced / %lld plain, root restarted %lld\n",
                aStormSmall, aStormBig, aStormFlaky, aResize, aCancel, aAdd, aAddSkipped, aRemove, aHangForced, aHangPlain, aRootRestart);
    std::printf("  log: %lld expected warnings, %lld unexpected, %lld info/debug lines\n", expectedWarnings.load(),
                unexpectedWarnings.load(), infoLines.load());
    std::printf("\n  %-8s %-9s %9s %9s %9s %9s %9s %9s\n", "group", "state", "started", "failed", "cancelled",
                "abandoned", "restarted", "hangs");
    for (auto &g : allGroups) {
        if (g->dynamic)
            continue;
        const auto s = g->group->statistics();
        std::printf("  %-8s %-9s %9lld %9lld %9lld %9lld %9lld %9lld\n", qPrintable(g->name),
                    stateName(g->group->state()), s.started, s.failed, s.cancelled, s.abandoned, s.restarted,
                    g->hangsStarted.load());
    }
    std::printf("  (%d dynamic groups, checked as they were removed or at the end)\n", dynamicCounter);
    std::printf("\n  %-8s %-9s %9s %9s %9s %9s %9s\n", "super", "state", "exits", "failures", "restarts", "restarted",
                "escalated");
    for (auto &c : sups) {
        const auto s = c->sv->statistics();
        std::printf("  %-8s %-9s %9lld %9lld %9lld %9lld %9lld\n", qPrintable(c->name), stateName(c->sv->state()),
                    s.childExits, s.childFailures, s.restarts, s.childrenRestarted, s.escalations);
    }
    std::printf("\n  checks: %d, failed: %d\n", checks.total(), checks.failed());
}

int Soaker::run()
{
    clock.start();
    buildTree();
    if (!root->start())
        qFatal("stage-soak: the root did not start");

    const qint64 limit = opt.messages >= 0 ? opt.messages : qint64(soak->idCap);
    // --messages M with --seconds N: the M messages are spread evenly over the N seconds, so
    // that the tree's faults act on them all along (unpaced, a million take well under a second).
    const double pace = opt.messages > 0 && opt.seconds > 0 ? double(opt.seconds) / double(opt.messages) : 0.0;
    const auto producingStart = Clock::now();
    for (int p = 0; p < Producers; ++p) {
        producers.emplace_back([soak = soak, boxes = std::vector<stage::Mailbox<Msg>>(boxes, boxes + Boxes), p, limit,
                                pace, producingStart] {
            for (qint64 k = 0;; ++k) {
                const qint64 id = p + qint64(Producers) * k;
                if (id >= limit || soak->stopProducing.load(std::memory_order_relaxed))
                    break;
                if (pace > 0 && k % 16 == 0) {
                    const auto due = producingStart + std::chrono::duration_cast<Clock::duration>(
                                                          std::chrono::duration<double>(double(id) * pace));
                    std::this_thread::sleep_until(due);
                }
                const int b = Soak::boxOf(soak->seed, quint32(id));
                Msg m;
                m.id = quint32(id);
                m.check = std::make_unique<quint64>(mix(m.id));
                bool sent = false;
                while (!soak->stopProducing.load(std::memory_order_relaxed)) {
                    const auto status = boxes[b].sendBlocking(std::move(m), 100ms);
                    if (status == stage::SendStatus::Sent) {
                        sent = true;
                        break;
                    }
                    if (status == stage::SendStatus::Closed)
                        break;
                    soak->sendRetries.fetch_add(1, std::memory_order_relaxed);
                }
                if (!sent)
                    break;
                soak->box[b].sent.fetch_add(1, std::memory_order_relaxed);
                if (soak->isPoison(quint32(id)))
                    soak->box[b].poisonSent.fetch_add(1, std::memory_order_relaxed);
                soak->sentPerProducer[p].store(k + 1, std::memory_order_relaxed);
            }
            soak->producersDone.fetch_add(1);
        });
    }

    chaos.setInterval(25);
    QObject::connect(&chaos, &QTimer::timeout, [this] { tick(); });
    chaos.start();

    // Produce.
    const auto producingLimit = pace > 0 ? std::chrono::milliseconds(3'600'000) // paced: until all M are sent
                                : opt.seconds >= 0 ? std::chrono::milliseconds(qint64(opt.seconds) * 1000)
                                                   : std::chrono::milliseconds(3'600'000);
    spinUntil([this] { return soak->producersDone.load() == Producers; }, producingLimit);
    soak->stopProducing.store(true);
    for (auto &t : producers)
        t.join();
    const double producingSeconds = double(clock.elapsed()) / 1000.0;
    std::printf("[%6.1f s] producers stopped; draining\n", producingSeconds);
    std::fflush(stdout);

    // Drain: no new faults (the per-message ones go on); every message processed or dead-lettered.
    quiesce();
    qint64 lastSettled = -1;
    auto lastChange = Clock::now();
    bool stalled = false;
    const bool drained = spinUntil(
        [&] {
            qint64 settled = soak->hangsInProgress.load();
            for (int b = 0; b < Boxes; ++b) {
                const auto s = boxes[b].statistics();
                settled += s.acknowledged + s.deadLettered + s.redelivered;
            }
            if (settled != lastSettled) {
                lastSettled = settled;
                lastChange = Clock::now();
            } else if (Clock::now() - lastChange > 30s) {
                stalled = true; // no progress for 30 s: report, do not wait for the full limit
                return true;
            }
            if (soak->hangsInProgress.load() != 0)
                return false;
            for (auto &g : dynamicGroups)
                if (g->forcedHangPending)
                    return false;
            for (int b = 0; b < Boxes; ++b) {
                const auto s = boxes[b].statistics();
                if (boxes[b].count() != 0 || s.acknowledged + s.deadLettered != soak->box[b].sent.load())
                    return false;
            }
            return true;
        },
        180s);
    actorSoak.stopCalls();
    checks.expect(spinUntil([this] { return actorSoak.drained(); }, 60s),
                  QStringLiteral("actors: calls still pending 60 s after the drain"));
    const double drainSeconds = double(clock.elapsed()) / 1000.0 - producingSeconds;
    if (!drained || stalled) {
        QString counts;
        for (int b = 0; b < Boxes; ++b) {
            const auto s = boxes[b].statistics();
            counts += QStringLiteral(" [box %1: sent %2, queued now %3, acknowledged %4, dead %5]")
                          .arg(b).arg(soak->box[b].sent.load()).arg(boxes[b].count()).arg(s.acknowledged).arg(s.deadLettered);
        }
        checks.expect(false, QStringLiteral("the drain %1;%2 the tree:\n%3")
                                 .arg(stalled ? QStringLiteral("made no progress for 30 s") : QStringLiteral("did not finish within 180 s"),
                                      counts, dumpTree()));
    }
    chaos.stop();

    // Shut the tree down; removed groups still stopping are waited for too.
    finishing = true;
    const qint64 shutdownStart = clock.elapsed();
    try {
        stage::waitFor(root->shutdown(), 60s);
    } catch (const std::exception &e) {
        checks.expect(false, QStringLiteral("root shutdown: %1; the tree:\n%2").arg(QString::fromUtf8(e.what()), dumpTree()));
    }
    const bool quiet = spinUntil(
        [this] {
            reap(false);
            return graveyard.empty() && soak->liveFrames.load() == 0;
        },
        30s);
    checks.expect(quiet, QStringLiteral("frames still alive 30 s after the shutdown: %1").arg(soak->liveFrames.load()));
    reap(true);
    const double shutdownSeconds = double(clock.elapsed() - shutdownStart) / 1000.0;

    verify(producingSeconds, drainSeconds, shutdownSeconds, double(clock.elapsed()) / 1000.0);
    actorSoak.verify(checks);

    for (auto &b : boxes)
        b.close();
    delete root; // the tree, its threads
    root = nullptr;

    if (checks.failed()) {
        std::printf("\nstage-soak: FAILED (%d of %d checks); reproduce with: stage-soak --seed %llu%s\n", checks.failed(),
                    checks.total(), static_cast<unsigned long long>(opt.seed),
                    qPrintable((opt.seconds >= 0 ? QStringLiteral(" --seconds %1").arg(opt.seconds) : QString())
                               + (opt.messages >= 0 ? QStringLiteral(" --messages %1").arg(opt.messages) : QString())));
        return 1;
    }
    std::printf("\nstage-soak: PASSED (%d checks, seed %llu)\n", checks.total(), static_cast<unsigned long long>(opt.seed));
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    Options options;
    if (!parse(argc, argv, options))
        return 2;
    if (!options.seedGiven)
        options.seed = std::random_device{}() | (quint64(std::random_device{}()) << 32);
    // The seed first, so that any failure can be reproduced.
    std::printf("stage-soak: seed %llu (reproduce: stage-soak --seed %llu%s%s)\n",
                static_cast<unsigned long long>(options.seed), static_cast<unsigned long long>(options.seed),
                options.seconds >= 0 ? (" --seconds " + std::to_string(options.seconds)).c_str() : "",
                options.messages >= 0 ? (" --messages " + std::to_string(options.messages)).c_str() : "");
    std::fflush(stdout);

    QCoreApplication app(argc, argv);
    previousHandler = qInstallMessageHandler(messageHandler);
    int rc;
    {
        Soaker soaker(options);
        rc = soaker.run();
    }
    qInstallMessageHandler(previousHandler);
    return rc;
}
