#include "worker_p.h"

#include <stage/detail/mailboxcore.h>
#include <stage/guard.h>

#include <QtCore/QThread>

#include <cstring>
#include <typeinfo>
#include <mutex>
#include <unordered_map>

namespace stage {

quint64 Worker::id() const noexcept
{
    return d->id;
}

int Worker::generation() const noexcept
{
    return d->generation;
}

std::stop_token Worker::stopToken() const noexcept
{
    return d->stopToken();
}

bool Worker::isStopRequested() const noexcept
{
    return d->isStopRequested();
}

void Worker::throwIfStopRequested() const
{
    if (d->isStopRequested())
        throw Cancelled();
}

QThread *Worker::thread() const noexcept
{
    return d->home;
}

void Worker::heartbeat() noexcept
{
    d->lastHeartbeatNs.store(detail::Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    d->iterations.store(d->iterations.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

Worker *Worker::current() noexcept
{
    detail::WorkerCore *core = detail::currentWorker();
    return core ? &core->worker : nullptr;
}

namespace detail {

namespace {

// The stop lists of all workers share a few locks, chosen by the worker's address, so that a
// waiter can take its worker's lock even after that worker is gone.
SpinMutex &stopLock(const WorkerCore *worker) noexcept
{
    static SpinMutex locks[64];
    const auto x = quint64(reinterpret_cast<quintptr>(worker)) * 0x9e3779b97f4a7c15ULL;
    return locks[x >> 58];
}

// The coroutine that awaits a body (runBody below). It runs from its start to its end on its own;
// its frame lives inside the WorkerCore (no allocation of its own) and keeps the core alive until
// the frame has been destroyed.
struct BodyRun
{
    struct promise_type
    {
        promise_type(WorkerCore *core, void *) noexcept : keep(core->shared_from_this()) {}

        static void *operator new(std::size_t size, WorkerCore *core, void *)
        {
            if (size <= sizeof(core->bodyFrame))
                return static_cast<void *>(core->bodyFrame);
            void *frame = ::operator new(size);
            core->setRunner(frame);
            return frame;
        }
        static void operator delete(void *frame, std::size_t size) noexcept
        {
            if (size > sizeof(WorkerCore::bodyFrame))
                ::operator delete(frame);
        }

        // Destroys the frame (inside the core), then lets the core go.
        struct FinalAwaiter
        {
            bool await_ready() const noexcept { return false; }
            void await_suspend(std::coroutine_handle<promise_type> frame) const noexcept
            {
                const std::shared_ptr<WorkerCore> keep = std::move(frame.promise().keep);
                frame.destroy();
            }
            void await_resume() const noexcept {}
        };

        BodyRun get_return_object() noexcept { return {}; }
        std::suspend_never initial_suspend() noexcept { return {}; }
        FinalAwaiter final_suspend() noexcept { return {}; }
        void return_void() noexcept {}
        void unhandled_exception() noexcept { std::terminate(); } // finishBody() catches everything

        std::shared_ptr<WorkerCore> keep;
    };
};

// libstdc++'s exception_ptr holds the address of the thrown object (its only member), and a
// handler's type_info tells whether that handler catches an exception of a given type and where
// its subobject is (__do_catch: what the personality routine asks while unwinding). Together they
// read a failed body's exception without throwing it again: before, every failure paid a second
// throw to reach what(), half of the unwinder's time in a restart loop (W5). A self-test at first
// use checks both against a real catch; where it fails (another ABI), Stage rethrows as before.
#if defined(__GLIBCXX__)
const void *handlerObject(const std::exception_ptr &error, const std::type_info &handler) noexcept
{
    static_assert(sizeof(std::exception_ptr) == sizeof(void *), "libstdc++'s exception_ptr changed");
    const std::type_info *thrown = error ? error.__cxa_exception_type() : nullptr;
    if (!thrown)
        return nullptr;
    void *object;
    std::memcpy(&object, &error, sizeof(object));
    return handler.__do_catch(thrown, &object, 1) ? object : nullptr;
}

struct ProbeBase
{
    virtual ~ProbeBase() = default;
    int base = 1;
};
struct ProbeError : ProbeBase, std::runtime_error // std::exception at a nonzero offset
{
    ProbeError() : std::runtime_error("probe") {}
};
struct ProbeCancelled : ProbeBase, Cancelled
{
};

// STAGE_CLASSIFY_BY_RETHROW=1 in the environment turns the peek off, so that the tests can run
// the fallback too.
bool handlerObjectWorks() noexcept
{
    static const bool works = [] {
        if (qEnvironmentVariableIntValue("STAGE_CLASSIFY_BY_RETHROW") == 1)
            return false;
        bool exceptionFound = false;
        try {
            throw ProbeError();
        } catch (const std::exception &e) {
            const std::exception_ptr error = std::current_exception();
            exceptionFound = handlerObject(error, typeid(std::exception)) == &e
                && handlerObject(error, typeid(Cancelled)) == nullptr
                && handlerObject(error, typeid(int)) == nullptr;
        }
        try {
            throw ProbeCancelled();
        } catch (const Cancelled &c) {
            const std::exception_ptr error = std::current_exception();
            return exceptionFound && handlerObject(error, typeid(Cancelled)) == &c
                && handlerObject(error, typeid(std::exception)) == static_cast<const std::exception *>(&c);
        }
    }();
    return works;
}
#endif

/* The E (std::exception or Cancelled) that `catch (const E &)` would bind to \a error's
   exception, or null; \a known is false when only a rethrow can tell. */
template<typename E>
const E *caughtAs(const std::exception_ptr &error, bool &known) noexcept
{
#if defined(__GLIBCXX__)
    if (handlerObjectWorks()) {
        known = true;
        return static_cast<const E *>(handlerObject(error, typeid(E)));
    }
#endif
    Q_UNUSED(error);
    known = false;
    return nullptr;
}

// QCoro 0.8's Task has no way to tell an empty task (no coroutine) from a finished one, and
// awaiting an empty one dereferences a null handle. Its only member is the handle.
WorkerExit failure(const std::exception_ptr &error)
{
    WorkerExit exit;
    exit.kind = WorkerExit::Kind::Failed;
    exit.error = error;
    exit.reason = describeException(error);
    return exit;
}

// QCoro 0.8's Task<void> promise keeps the body's exception in a private member that only a
// rethrow reads (co_await task). A stop unwinds every idle worker with stage::Cancelled, so that
// second throw (~0.8 us here) is most of what a mass stop costs (W4's shutdown, W6). The mirror
// reads the member instead; a self-test at first use checks it against a real promise, and if
// it does not match (another QCoro layout), Stage falls back to the rethrow.
struct PromiseMirror
{
    std::vector<std::coroutine_handle<>> awaiting;
    std::atomic<bool> destroyHandle;
    std::exception_ptr exception;
};
using VoidPromise = QCoro::detail::TaskPromise<void>;
static_assert(sizeof(PromiseMirror) == sizeof(VoidPromise), "QCoro's TaskPromise<void> layout changed");

VoidPromise &promiseOf(void *frame) noexcept
{
    return std::coroutine_handle<VoidPromise>::from_address(frame).promise();
}

const std::exception_ptr &storedException(void *frame) noexcept
{
    return reinterpret_cast<const PromiseMirror &>(promiseOf(frame)).exception;
}

QCoro::Task<> throwsInt()
{
    throw 42;
    co_return;
}

bool mirrorWorks() noexcept
{
    static const bool works = [] {
        QCoro::Task<> task = throwsInt(); // eager: finished, with the exception stored
        void *frame = frameOf(task);
        if (!frame || !std::coroutine_handle<>::from_address(frame).done())
            return false;
        const auto &mirror = reinterpret_cast<const PromiseMirror &>(promiseOf(frame));
        const std::exception_ptr &e = mirror.exception;
        if (!e || e.__cxa_exception_type() == nullptr || *e.__cxa_exception_type() != typeid(int)
            || !mirror.awaiting.empty())
            return false;
        try {
            promiseOf(frame).result(); // must rethrow that same object
        } catch (...) {
            return std::current_exception() == e;
        }
        return false;
    }();
    return works;
}

// Awaits the body without rethrowing what it threw.
struct BodyAwaiter
{
    WorkerCore *core;
    void *frame;
    bool await_ready() const noexcept { return std::coroutine_handle<>::from_address(frame).done(); }
    void await_suspend(std::coroutine_handle<> awaiting)
    {
        // This awaiter lives in the runner's frame, which the body may resume and free on another
        // thread (after a foreign awaitable) as soon as it is listed: listing is the last thing.
        WorkerCore *const c = core;
        void *const f = frame;
        c->setBody(f); // a stop may destroy it from now on (StopMode::Destroy)
        promiseOf(f).addAwaitingCoroutine(awaiting);
    }
    void await_resume() const noexcept {}
};

// Takes the frame out of a QCoro 0.8 task (its only member is the handle): the caller then owns
// it as the task did.
void *releaseFrame(QCoro::Task<> &task) noexcept
{
    void *frame = frameOf(task);
    void *const none = nullptr;
    std::memcpy(static_cast<void *>(&task), &none, sizeof(none));
    return frame;
}

// Awaits the body, whose frame it owns as the QCoro::Task did. Only the core and the frame's
// address live across the suspension: the frame that every idle worker keeps is small;
// finishBody() does the rest. WorkerCore::destroyBody() destroys it instead when a stop destroys
// the body.
BodyRun runBody(WorkerCore *core, void *frame)
{
    co_await BodyAwaiter{core, frame};
    core->finishBody(frame);
    // What ~Task() does: the second of the task and the body's final suspension frees the frame.
    if (promiseOf(frame).setDestroyHandle())
        std::coroutine_handle<>::from_address(frame).destroy();
}

// Lives in the core's bodyFrame, unused until the body starts: posting a start allocates nothing.
class StartJob final : public Job
{
public:
    explicit StartJob(std::shared_ptr<WorkerCore> core) : m_core(std::move(core)) {}
    static StartJob *create(WorkerCore *core)
    {
        static_assert(sizeof(StartJob) <= sizeof(core->bodyFrame) && alignof(StartJob) <= alignof(WorkerCore));
        return ::new (static_cast<void *>(core->bodyFrame)) StartJob(core->shared_from_this());
    }
    void run() noexcept override
    {
        const auto core = release();
        core->runOnHome(); // may build the body's frame where this job was
    }
    void drop() noexcept override
    {
        const auto core = release();
        WorkerExit exit;
        exit.kind = WorkerExit::Kind::Failed;
        exit.reason = QStringLiteral("the worker's thread ended before the worker started");
        core->end(std::move(exit));
    }

private:
    // Frees the room in the core (the job ends here) and keeps the core alive.
    std::shared_ptr<WorkerCore> release() noexcept
    {
        auto core = std::move(m_core);
        this->~StartJob();
        return core;
    }

    std::shared_ptr<WorkerCore> m_core;
};

class EndJob final : public Job
{
public:
    EndJob(std::shared_ptr<WorkerCore> core, WorkerExit exit) : m_core(std::move(core)), m_exit(std::move(exit)) {}
    void run() noexcept override
    {
        if (m_core->listener)
            m_core->listener->workerEnded(m_core, std::move(m_exit));
        delete this;
    }
    void drop() noexcept override
    {
        if (m_core->listener)
            m_core->listener->workerEndDropped(m_core, std::move(m_exit));
        delete this;
    }

private:
    std::shared_ptr<WorkerCore> m_core;
    WorkerExit m_exit;
};

} // namespace

void WorkerCore::finishBody(void *frame) noexcept
{
    m_body.store(nullptr, std::memory_order_release); // no longer destroyable by a stop
    // Classifies the body's end.
    WorkerExit::Kind kind = WorkerExit::Kind::Completed;
    QString reason;
    std::exception_ptr error;
    if (mirrorWorks()) {
        error = storedException(frame);
    } else {
        try {
            promiseOf(frame).result(); // what co_await task would do
        } catch (...) {
            error = std::current_exception();
        }
    }
    // The rule: after a stop request, the end is a stop however the body ends (see StopCause),
    // an exception it threw while unwinding included; only a Fault stop's exception is the
    // body's failure (the owner that judged it faulty reports the rest of that end as one).
    const bool stopRequested = isStopRequested();
    if (!error) {
        if (stopRequested) {
            kind = WorkerExit::Kind::Cancelled;
            reason = QStringLiteral("returned after a stop request");
        }
    } else if (*error.__cxa_exception_type() == typeid(Cancelled) && stopRequested) {
        kind = WorkerExit::Kind::Cancelled; // the common stop: no rethrow to tell what it is
        reason = QStringLiteral("cancelled");
        error = nullptr;
    } else if (bool known; caughtAs<Cancelled>(error, known) || !known) {
        kind = WorkerExit::Kind::Failed;
        try {
            std::rethrow_exception(error);
        } catch (const Cancelled &) {
            if (isStopRequested()) {
                kind = WorkerExit::Kind::Cancelled; // a subclass of Cancelled
                reason = QStringLiteral("cancelled");
                error = nullptr;
            } else {
                reason = QStringLiteral("stage::Cancelled was thrown without a stop request");
            }
        } catch (const std::exception &e) {
            reason = QString::fromUtf8(e.what());
        } catch (...) {
            reason = describeException(error);
        }
    } else {
        kind = WorkerExit::Kind::Failed; // not a Cancelled: its reason without a second throw
        reason = describeException(error);
    }
    if (kind == WorkerExit::Kind::Failed && stopRequested && !isStoppedAsFaulty()) {
        // Stopped, and something else than stage::Cancelled escaped on the way out: still a stop.
        kind = WorkerExit::Kind::Cancelled;
        reason = QStringLiteral("stopped; while unwinding it threw: ") + reason;
        error = nullptr;
    }
    report(kind, std::move(reason), std::move(error), frame);
}

void WorkerCore::report(WorkerExit::Kind kind, QString reason, std::exception_ptr error, void *frame) noexcept
{
    unregisterFrame(frame); // before the frame is freed and its address reused
    WorkerExit exit;
    exit.kind = kind;
    exit.reason = std::move(reason);
    exit.error = std::move(error);
    Rare *rare;
    {
        std::lock_guard lock(stopLock(this));
        rare = m_rare.get();
    }
    if (rare) { // the hooks are the home thread's; only the pointer may race with stopToken()
        for (const auto &hook : std::exchange(rare->endHooks, {}))
            hook(exit);
    }
    end(std::move(exit));
}

void WorkerCore::destroyBody() noexcept
{
    void *const frame = m_body.exchange(nullptr, std::memory_order_acq_rel);
    Q_ASSERT(frame);
    void *runner;
    {
        std::lock_guard lock(stopLock(this));
        runner = m_rare && m_rare->runner ? m_rare->runner : static_cast<void *>(bodyFrame);
    }
    auto run = std::coroutine_handle<BodyRun::promise_type>::from_address(runner);
    const std::shared_ptr<WorkerCore> keep = std::move(run.promise().keep); // this, until the end
    {
        // The destructors of the body's locals run here, as the worker's own execution: a
        // Delivery among them sees the destruction and goes back to its mailbox, uncounted.
        CurrentWorkerScope scope(this);
        BodyDestructionScope destroying;
        unregisterFrame(frame); // before its address can be reused
        std::coroutine_handle<>::from_address(frame).destroy(); // suspended, never finished: ours
    }
    run.destroy(); // it was suspended awaiting the body, which is gone: nothing of it runs
    report(WorkerExit::Kind::Cancelled, QStringLiteral("cancelled"), nullptr, nullptr);
}

void WorkerCore::setRunner(void *frame)
{
    std::lock_guard lock(stopLock(this));
    rareLocked().runner = frame;
}

void WorkerCore::markForDestroyLocked(Waiter *waiter) noexcept
{
    void *const body = m_body.load(std::memory_order_acquire);
    // A body not yet (or no longer) awaited reads as null: the stop then unwinds it, which is
    // always correct, only slower.
    if (destroyOnStop && body && waiter->m_handle.address() == body)
        waiter->m_flags.fetch_or(Waiter::DestroyBody, std::memory_order_relaxed);
}

WorkerCore::Rare &WorkerCore::rareLocked()
{
    if (!m_rare)
        m_rare = std::make_unique<Rare>();
    return *m_rare;
}

void WorkerCore::addEndHook(std::function<void(const WorkerExit &)> hook)
{
    Rare *rare;
    {
        std::lock_guard lock(stopLock(this));
        rare = &rareLocked();
    }
    rare->endHooks.push_back(std::move(hook));
}

bool isStoppedAsFaulty(const WorkerCore *worker) noexcept
{
    return worker && worker->isStoppedAsFaulty();
}

QString describeException(const std::exception_ptr &error)
{
    bool known;
    if (const auto *e = caughtAs<std::exception>(error, known))
        return QString::fromUtf8(e->what());
    try {
        std::rethrow_exception(error);
    } catch (const std::exception &e) {
        return QString::fromUtf8(e.what());
    } catch (const QString &s) {
        return s;
    } catch (const char *s) {
        return QString::fromUtf8(s);
    } catch (const std::string &s) {
        return QString::fromStdString(s);
    } catch (int value) {
        return QStringLiteral("an exception of type int: %1").arg(value);
    } catch (...) {
        return QStringLiteral("an exception not derived from std::exception");
    }
}

WorkerCore::WorkerCore(quint64 id, int generation, std::shared_ptr<const WorkerFactory> factory, QThread *home,
                       WorkerListener *listener)
    : id(id), home(home), factory(std::move(factory)), owner(Executor::current()), generation(generation),
      listener(listener)
{
    owner->ref();
}

WorkerCore::~WorkerCore()
{
    {
        // A waiter of a frame that outlives the core (never resumed) must not reach it later.
        std::lock_guard lock(stopLock(this));
        while (Waiter *w = m_stopListeners) {
            m_stopListeners = w->m_stopNext;
            w->m_stopListed = false;
            w->m_stopPrevious = w->m_stopNext = nullptr;
        }
    }
    owner->deref();
}

void WorkerCore::requestStop(StopCause cause) noexcept
{
    std::stop_source source{std::nostopstate};
    Waiter *settle = nullptr; // unlisted, each with a reference, chained through m_stopNext
    {
        std::lock_guard lock(stopLock(this));
        const quint8 bits = StopRequested | (cause == StopCause::Fault ? StopFault : 0);
        if (m_stop.fetch_or(bits, std::memory_order_acq_rel) & StopRequested)
            return; // stopping already (now as faulty, if this one is)
        settle = std::exchange(m_stopListeners, nullptr);
        Waiter **link = &settle;
        while (Waiter *w = *link) {
            w->m_stopListed = false; // its stopListening() no longer touches the links
            w->m_stopPrevious = nullptr;
            // A reference keeps it alive until settled, whatever its frame does meanwhile, unless
            // its last reference is gone already: an await_suspend() that listed it but did not
            // suspend (a message was there) dropped it on the home thread, whose ~Waiter() now
            // waits for this lock to unlist it. Reviving it from zero freed it twice (found by
            // stage-fuzz, a threaded group shut down): leave it out of the settling.
            int refs = w->m_ref.load(std::memory_order_relaxed);
            while (refs > 0 && !w->m_ref.compare_exchange_weak(refs, refs + 1, std::memory_order_relaxed)) {}
            if (refs == 0) {
                *link = std::exchange(w->m_stopNext, nullptr);
                continue;
            }
            if (!w->isClaimed())
                markForDestroyLocked(w); // read only by the resumption this stop may post
            link = &w->m_stopNext;
        }
        if (m_rare)
            source = m_rare->stopSource;
    }
    // Outside the lock (others share it): publish() posts, and a last deref() frees the waiter,
    // which takes the lock.
    while (Waiter *w = settle) {
        settle = std::exchange(w->m_stopNext, nullptr);
        if (w->claim())
            w->publish(Waiter::Outcome::Cancelled);
        w->deref();
    }
    if (source.stop_possible())
        source.request_stop(); // the callbacks of stopToken()'s users
}

std::stop_token WorkerCore::stopToken() noexcept
{
    std::lock_guard lock(stopLock(this));
    std::stop_source &source = rareLocked().stopSource;
    if (!source.stop_possible()) {
        source = std::stop_source();
        if (m_stop.load(std::memory_order_relaxed))
            source.request_stop(); // a fresh state: no callback yet
    }
    return source.get_token();
}

void WorkerCore::listenForStop(Waiter *waiter) noexcept
{
    {
        std::lock_guard lock(stopLock(this));
        if (!m_stop.load(std::memory_order_relaxed)) {
            waiter->m_stopPrevious = nullptr;
            waiter->m_stopNext = m_stopListeners;
            if (m_stopListeners)
                m_stopListeners->m_stopPrevious = waiter;
            m_stopListeners = waiter;
            waiter->m_stopListed = true;
            waiter->m_listening = true;
            return;
        }
    }
    if (waiter->claim()) { // stopped already: settles at once, as a std::stop_callback would
        {
            std::lock_guard lock(stopLock(this));
            markForDestroyLocked(waiter);
        }
        waiter->publish(Waiter::Outcome::Cancelled);
    }
}

void WorkerCore::stopListening(WorkerCore *worker, Waiter *waiter) noexcept
{
    // Only the lock's address is computed from \a worker: it is dereferenced only while the
    // waiter is listed, which ~WorkerCore() ends under the same lock.
    std::lock_guard lock(stopLock(worker));
    if (!waiter->m_stopListed)
        return;
    if (waiter->m_stopPrevious)
        waiter->m_stopPrevious->m_stopNext = waiter->m_stopNext;
    else
        worker->m_stopListeners = waiter->m_stopNext;
    if (waiter->m_stopNext)
        waiter->m_stopNext->m_stopPrevious = waiter->m_stopPrevious;
    waiter->m_stopListed = false;
    waiter->m_stopPrevious = waiter->m_stopNext = nullptr;
}

quint64 WorkerCore::nextId() noexcept
{
    static std::atomic<quint64> counter{0};
    return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}

void WorkerCore::launch(bool deferred)
{
    if (home == owner->thread() && !deferred) {
        runOnHome();
        return;
    }
    if (home == owner->thread()) { // the core references its owner already
        owner->post(StartJob::create(this));
        return;
    }
    Executor *target = Executor::acquire(home);
    if (!target) {
        WorkerExit exit;
        exit.kind = WorkerExit::Kind::Failed;
        exit.reason = QStringLiteral("the worker's thread has finished");
        end(std::move(exit));
        return;
    }
    target->post(StartJob::create(this));
    target->deref();
}

void WorkerCore::runOnHome() noexcept
{
    if (isStopRequested()) {
        WorkerExit exit;
        exit.kind = WorkerExit::Kind::Cancelled;
        exit.reason = QStringLiteral("stopped before it started");
        end(std::move(exit));
        return;
    }
    CurrentWorkerScope scope(this);
    QCoro::Task<> task;
    try {
        task = (*factory)(worker); // the body runs up to its first suspension here
    } catch (...) {
        end(failure(std::current_exception()));
        return;
    }
    if (!frameOf(task)) {
        WorkerExit exit;
        exit.kind = WorkerExit::Kind::Failed;
        exit.reason = QStringLiteral("the factory returned an empty QCoro::Task");
        end(std::move(exit));
        return;
    }
    void *const frame = releaseFrame(task);
    registerFrame(frame, this);
    runBody(this, frame);
}

void WorkerCore::end(WorkerExit exit) noexcept
{
    exit.id = id;
    exit.generation = generation;
    owner->post(new EndJob(shared_from_this(), std::move(exit)));
}

} // namespace detail
} // namespace stage
