#include "executor_p.h"
#include "worker_p.h"

#include <stage/detail/pool.h>
#include <stage/detail/waiter.h>

#include <mutex>
#include <memory>

namespace stage::detail {

namespace {
// initial-exec: a direct %fs access instead of a __tls_get_addr call per use (5% of W3).
[[gnu::tls_model("initial-exec")]] thread_local WorkerCore *t_currentWorker = nullptr;
// True while Stage itself runs a segment (a start or a resumption): the current worker is then
// known, even when it is null (a plain coroutine), and no frame lookup is needed.
[[gnu::tls_model("initial-exec")]] thread_local bool t_contextKnown = false;
// How many WorkerCore::destroyBody() calls enclose what runs now (reset inside a resumption).
[[gnu::tls_model("initial-exec")]] thread_local int t_destroyDepth = 0;

// Frames may end on another thread than the one that registered them (a foreign awaitable may
// resume them anywhere), so one table for the process, under a mutex; it is touched once at each
// start and end of a body or child, and looked up only when a Stage awaitable has no context.
// Open addressing (linear probing, backward-shift erase): 16 bytes an entry at a load of at most
// 80%, no allocation per entry (every idle worker has one).
//
// Registrations are inserted in batches: a group starting 100,000 workers inserts each frame at a
// random slot of a table of megabytes, a cache and TLB miss each (on W4's machine, 94% of the
// insert's samples were on that one load: a fifth of the spawning thread's time at 300,000
// workers). A batch prefetches its 16 slots, then inserts: the misses, and the page walks of
// their TLB misses, overlap. (Prefetching each slot at its registration instead, 16 earlier,
// was worse: a prefetch that misses the TLB holds up the next instructions for its page walk,
// 6-7% of the samples against 4-5% at 300,000 workers.)
class FrameTable
{
public:
    void insert(void *frame, WorkerCore *worker)
    {
        m_pending[m_pendingCount++] = Entry{frame, worker};
        if (m_pendingCount == kBatch)
            flush();
    }

    void erase(void *frame)
    {
        // Everywhere it may be: a frame is registered once, but a table that trusts that would
        // keep a stale entry if it ever were not, and answer for the next frame at that address.
        // In order: a later registration of a frame must stay later (find and flush take the
        // latest), so no swap with the last.
        std::size_t kept = 0;
        for (std::size_t k = 0; k < m_pendingCount; ++k) {
            if (m_pending[k].frame != frame)
                m_pending[kept++] = m_pending[k];
        }
        m_pendingCount = kept;
        if (!m_size)
            return;
        std::size_t i = indexOf(frame);
        if (!m_slots[i].frame)
            return;
        const std::size_t mask = m_capacity - 1;
        for (std::size_t j = (i + 1) & mask; m_slots[j].frame; j = (j + 1) & mask) {
            // Moves back an entry whose home slot is not cyclically in (i, j].
            const std::size_t home = hash(m_slots[j].frame) & mask;
            if (((j - home) & mask) >= ((j - i) & mask)) {
                m_slots[i] = m_slots[j];
                i = j;
            }
        }
        m_slots[i] = Entry{};
        --m_size;
        if (m_capacity > 1024 && m_size * 16 < m_capacity)
            rehash(m_capacity / 4); // hand the memory of a burst back
    }

    // Room for \a more entries without a rehash (a burst of starts rehashes once, not per doubling).
    void reserve(std::size_t more)
    {
        std::size_t capacity = m_capacity ? m_capacity : 64;
        while ((m_size + m_pendingCount + more) * 5 > capacity * 4)
            capacity *= 2;
        if (capacity != m_capacity)
            rehash(capacity);
    }

    WorkerCore *find(void *frame) const
    {
        for (std::size_t k = m_pendingCount; k-- > 0;) { // the latest registration first
            if (m_pending[k].frame == frame)
                return m_pending[k].worker;
        }
        if (!m_size)
            return nullptr;
        return m_slots[indexOf(frame)].worker;
    }

private:
    struct Entry
    {
        void *frame = nullptr;
        WorkerCore *worker = nullptr;
    };
    static constexpr std::size_t kBatch = 16; // about the misses a core keeps in flight

    void flush()
    {
        if ((m_size + m_pendingCount) * 5 > m_capacity * 4)
            reserve(0);
        for (std::size_t k = 0; k < m_pendingCount; ++k)
            prefetchForWrite(&m_slots[hash(m_pending[k].frame) & (m_capacity - 1)]);
        for (std::size_t k = 0; k < m_pendingCount; ++k) {
            const std::size_t i = indexOf(m_pending[k].frame);
            if (!m_slots[i].frame)
                ++m_size;
            m_slots[i] = m_pending[k];
        }
        m_pendingCount = 0;
    }

    static void prefetchForWrite(const void *address) noexcept
    {
#if defined(__GNUC__)
        __builtin_prefetch(address, 1);
#else
        Q_UNUSED(address);
#endif
    }

    static std::size_t hash(const void *frame) noexcept
    {
        auto x = quint64(reinterpret_cast<quintptr>(frame));
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdULL;
        x ^= x >> 33;
        return std::size_t(x);
    }

    // The slot holding \a frame, or the empty slot that ends its probe sequence.
    std::size_t indexOf(const void *frame) const noexcept
    {
        const std::size_t mask = m_capacity - 1;
        std::size_t i = hash(frame) & mask;
        while (m_slots[i].frame && m_slots[i].frame != frame)
            i = (i + 1) & mask;
        return i;
    }

    void rehash(std::size_t capacity)
    {
        std::unique_ptr<Entry[]> old = std::move(m_slots);
        const std::size_t oldCapacity = m_capacity;
        m_slots = std::make_unique<Entry[]>(capacity);
        m_capacity = capacity;
        for (std::size_t k = 0; k < oldCapacity; ++k) {
            if (old[k].frame)
                m_slots[indexOf(old[k].frame)] = old[k];
        }
    }

    std::unique_ptr<Entry[]> m_slots;
    std::size_t m_capacity = 0; // a power of two, or 0
    std::size_t m_size = 0;     // in m_slots
    Entry m_pending[kBatch];    // registered, not yet in m_slots
    std::size_t m_pendingCount = 0;
};

SpinMutex g_framesMutex; // held for a few dozen instructions (a batch: a few hundred; a rehash: once per doubling)
FrameTable &frames()
{
    static auto *table = new FrameTable; // leaked: used at exit
    return *table;
}
} // namespace

void registerFrame(void *frame, WorkerCore *worker) noexcept
{
    if (!frame || !worker)
        return;
    std::lock_guard lock(g_framesMutex);
    frames().insert(frame, worker);
}

void reserveFrames(std::size_t count)
{
    std::lock_guard lock(g_framesMutex);
    frames().reserve(count);
}

void unregisterFrame(void *frame) noexcept
{
    if (!frame)
        return;
    std::lock_guard lock(g_framesMutex);
    frames().erase(frame);
}

WorkerCore *workerOfFrame(void *frame) noexcept
{
    std::lock_guard lock(g_framesMutex);
    return frames().find(frame);
}

WorkerCore *currentWorker() noexcept
{
    return t_currentWorker;
}

bool isStopRequested(const WorkerCore *worker) noexcept
{
    return worker && worker->isStopRequested();
}

std::stop_token stopTokenOf(const WorkerCore *worker) noexcept
{
    return worker ? const_cast<WorkerCore *>(worker)->stopToken() : std::stop_token();
}

CurrentWorkerScope::CurrentWorkerScope(WorkerCore *worker) noexcept
    : m_previous(t_currentWorker), m_previousKnown(t_contextKnown), m_previousDepth(t_destroyDepth)
{
    t_currentWorker = worker;
    t_contextKnown = true;
    t_destroyDepth = 0;
}

CurrentWorkerScope::~CurrentWorkerScope()
{
    t_currentWorker = m_previous;
    t_contextKnown = m_previousKnown;
    t_destroyDepth = m_previousDepth;
}

int bodyDestructionDepth() noexcept
{
    return t_destroyDepth;
}

BodyDestructionScope::BodyDestructionScope() noexcept
{
    ++t_destroyDepth;
}

BodyDestructionScope::~BodyDestructionScope()
{
    --t_destroyDepth;
}

Waiter::Waiter() noexcept : m_worker(currentWorker()) {}

// The per-thread cache of freed waiter blocks: four size classes, at most 128 blocks
// each. A block freed on another thread than the one that allocated it simply joins that
// thread's cache. The cache is plain data (no guard on access); a second thread_local with a
// destructor, touched when the cache is first used, frees it when the thread ends, after which
// blocks go straight back to the pool.
#if defined(__SANITIZE_ADDRESS__)
#define STAGE_WAITER_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STAGE_WAITER_CACHE 0
#endif
#endif
#ifndef STAGE_WAITER_CACHE
#define STAGE_WAITER_CACHE 1
#endif

#if STAGE_WAITER_CACHE
namespace {
constexpr std::size_t kClassBytes = 64;
constexpr std::size_t kClasses = 4;
constexpr int kMaxCached = 128;

// Classes of 64, 128, 192 and 256 bytes, from the pool: whole cache lines, each block starting
// one, so that two threads' waiters never share a line (a producer's and its consumer's waiter
// are written at each hand-over), and a group starting many workers gets its waiters' pages
// mapped a chunk at a time (W4).
std::size_t sizeClass(std::size_t size) noexcept
{
    return (size + kClassBytes - 1) / kClassBytes - 1; // 1..64 -> 0, 65..128 -> 1, ...
}
std::size_t classBytes(std::size_t c) noexcept
{
    return (c + 1) * kClassBytes;
}

struct FreeBlock
{
    FreeBlock *next;
};

struct WaiterCache
{
    FreeBlock *heads[kClasses];
    int counts[kClasses];
    int state; // 0: not in use yet, 1: in use (the reaper is registered), 2: the thread is ending
};
[[gnu::tls_model("initial-exec")]] thread_local WaiterCache t_waiterCache = {};

struct WaiterCacheReaper
{
    ~WaiterCacheReaper()
    {
        t_waiterCache.state = 2;
        for (std::size_t c = 0; c < kClasses; ++c) {
            while (FreeBlock *b = t_waiterCache.heads[c]) {
                t_waiterCache.heads[c] = b->next;
                poolFree(static_cast<void *>(b), classBytes(c));
            }
            t_waiterCache.counts[c] = 0;
        }
    }
};
thread_local WaiterCacheReaper t_waiterCacheReaper;

} // namespace

void *Waiter::operator new(std::size_t size)
{
    const std::size_t c = sizeClass(size);
    if (c >= kClasses)
        return ::operator new(size);
    WaiterCache &cache = t_waiterCache;
    if (FreeBlock *b = cache.heads[c]) {
        cache.heads[c] = b->next;
        --cache.counts[c];
        return b;
    }
    return poolAllocate(classBytes(c)); // any block of the class fits any waiter of it
}

void Waiter::operator delete(void *block, std::size_t size) noexcept
{
    const std::size_t c = sizeClass(size);
    WaiterCache &cache = t_waiterCache;
    if (c >= kClasses) {
        ::operator delete(block);
        return;
    }
    if (cache.state == 2 || cache.counts[c] >= kMaxCached) {
        poolFree(block, classBytes(c));
        return;
    }
    if (cache.state == 0) {
        cache.state = 1;
        (void)&t_waiterCacheReaper; // odr-use: constructs it, so its destructor runs at thread end
        static_cast<void>(t_waiterCacheReaper);
    }
    auto *b = static_cast<FreeBlock *>(block);
    b->next = cache.heads[c];
    cache.heads[c] = b;
    ++cache.counts[c];
}
#else
void *Waiter::operator new(std::size_t size)
{
    return ::operator new(size);
}

void Waiter::operator delete(void *block, std::size_t) noexcept
{
    ::operator delete(block);
}
#endif

Waiter::~Waiter()
{
    stopListening(); // dropped before it ran
    if (m_home)
        m_home->deref();
}

void Waiter::stopListening() noexcept
{
    if (m_listening) {
        WorkerCore::stopListening(m_worker, this);
        m_listening = false;
    }
}

void Waiter::suspend(std::coroutine_handle<> handle, bool listenToStop)
{
    Q_ASSERT(!m_handle);
    m_handle = handle;
    if (!m_worker && !t_contextKnown) // resumed by a foreign awaitable: the frame may be a worker's
        m_worker = workerOfFrame(handle.address());
    m_home = Executor::current();
    m_home->ref();
    if (listenToStop && m_worker)
        m_worker->listenForStop(this);
}

void Waiter::bindHome()
{
    Q_ASSERT(!m_handle && !m_home);
    m_home = Executor::current();
    m_home->ref();
}

void Waiter::publish(Outcome outcome) noexcept
{
    Q_ASSERT(isClaimed() && m_home);
    m_outcome = outcome;
    ref(); // the reference run() or drop() releases
    m_home->post(this);
}

void Waiter::resumeHere(Outcome outcome) noexcept
{
    Q_ASSERT(isClaimed() && m_home && m_home->isCurrent());
    m_outcome = outcome;
    ref();
    run();
}

bool Waiter::settleError(std::exception_ptr error) noexcept
{
    if (!claim())
        return false;
    publishError(std::move(error));
    return true;
}

void Waiter::publishError(std::exception_ptr error) noexcept
{
    m_error = std::move(error);
    publish(Outcome::Error);
}

void Waiter::rethrowError() const
{
    std::rethrow_exception(m_error);
}

void Waiter::run() noexcept
{
    disarm();
    // A stop settling this waiter on another thread meanwhile holds a reference of its own.
    stopListening();
    if (m_outcome == Outcome::Cancelled && (m_flags.load(std::memory_order_relaxed) & DestroyBody)) {
        // StopMode::Destroy, and the body itself waits here: the body is suspended, so its
        // worker (which the frame awaiting the body keeps) is alive.
        m_worker->destroyBody();
        deref();
        return;
    }
    if (m_handle) {
        CurrentWorkerScope scope(m_worker);
        m_handle.resume();
    } else {
        fire();
    }
    deref();
}

void Waiter::drop() noexcept
{
    // The home thread has ended: the frame can never resume.
    deref();
}

} // namespace stage::detail
