#include <stage/detail/pool.h>

#include <QtCore/QByteArray>
#include <QtCore/QtGlobal>

#include <cstdint>
#include <cstdlib>
#if defined(Q_OS_UNIX)
#include <sys/mman.h>
#elif defined(Q_OS_WIN)
#include <malloc.h>
#endif
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>
#if defined(Q_OS_LINUX)
#include <pthread.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define STAGE_POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STAGE_POOL_ASAN 1
#endif
#endif

#ifdef STAGE_POOL_ASAN
#include <sanitizer/asan_interface.h>
#define STAGE_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define STAGE_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#ifndef STAGE_POOL
#define STAGE_POOL 0 // the library's objects bypass the pool (tests still exercise SmallPool, poisoned)
#endif
#else
#define STAGE_POISON(p, n) ((void)(p), (void)(n))
#define STAGE_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#ifndef STAGE_POOL
#define STAGE_POOL 1
#endif

namespace stage::detail {

namespace {
struct FreeBlock
{
    FreeBlock *next;
};
constexpr std::size_t kHeaderBytes = 64; // the first block starts on a cache line
} // namespace

// A chunk: this header, then blocks of one size. Chunks are aligned to their size, so a block's
// chunk is its address rounded down. Guarded by its size class's mutex.
struct SmallPool::Chunk
{
    Chunk *previous = nullptr; // in withRoom, while listed
    Chunk *next = nullptr;
    FreeBlock *freeList = nullptr;
    std::uint32_t untouched = kHeaderBytes; // offset of the first byte never handed out
    std::uint32_t live = 0;                 // blocks handed out
    std::uint32_t blockBytes = 0;
    bool listed = false;

    // Starts a chunk in fresh \a memory (kChunkBytes, aligned to it), for blocks of \a bytes.
    static Chunk *create(void *memory, std::size_t bytes) noexcept
    {
        auto *chunk = new (memory) Chunk;
        chunk->blockBytes = std::uint32_t(bytes);
        STAGE_POISON(static_cast<char *>(memory) + kHeaderBytes, kChunkBytes - kHeaderBytes);
        return chunk;
    }

    bool hasRoom() const noexcept { return freeList || untouched + blockBytes <= kChunkBytes; }

    // A block, of which ASan lets the caller use \a bytes (the rest of its size stays poisoned).
    void *take(std::size_t bytes) noexcept
    {
        ++live;
        if (FreeBlock *b = freeList) {
            STAGE_UNPOISON(b, sizeof(FreeBlock));
            freeList = b->next;
            b->~FreeBlock();
            STAGE_POISON(b, blockBytes);
            STAGE_UNPOISON(b, bytes);
            return b;
        }
        void *block = reinterpret_cast<char *>(this) + untouched;
        untouched += blockBytes;
        STAGE_UNPOISON(block, bytes);
        return block;
    }

    // Lists a block given back (its object has ended).
    void putBack(void *block) noexcept
    {
        STAGE_POISON(block, blockBytes);
        STAGE_UNPOISON(block, sizeof(FreeBlock));
        freeList = ::new (block) FreeBlock{freeList};
        STAGE_POISON(block, blockBytes);
    }
};
static_assert(sizeof(SmallPool::Chunk) <= kHeaderBytes);

namespace {
void link(SmallPool::Chunk *&head, SmallPool::Chunk *chunk) noexcept
{
    chunk->previous = nullptr;
    chunk->next = head;
    if (head)
        head->previous = chunk;
    head = chunk;
    chunk->listed = true;
}

void unlink(SmallPool::Chunk *&head, SmallPool::Chunk *chunk) noexcept
{
    if (chunk->previous)
        chunk->previous->next = chunk->next;
    else
        head = chunk->next;
    if (chunk->next)
        chunk->next->previous = chunk->previous;
    chunk->previous = chunk->next = nullptr;
    chunk->listed = false;
}

// Chunks are their own mappings, aligned to their size (a block's chunk is its address rounded
// down): two chunks' worth is mapped and the ends that are not aligned are unmapped, so only the
// chunk's own pages count against the address space, and an empty chunk goes back to the system
// at once. (With aligned_alloc, glibc maps twice the size, and once a chunk has been unmapped it
// raises its mmap threshold and carves later chunks from the heap, whose freed chunks cannot
// serve an aligned request: more resident memory, found in review.)
void *mapChunk() noexcept
{
    constexpr std::size_t size = SmallPool::kChunkBytes;
#if defined(Q_OS_UNIX)
    void *mapped = mmap(nullptr, 2 * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mapped == MAP_FAILED)
        return nullptr;
    const auto start = reinterpret_cast<std::uintptr_t>(mapped);
    const std::uintptr_t aligned = (start + size - 1) & ~std::uintptr_t(size - 1);
    if (aligned > start)
        munmap(mapped, aligned - start);
    if (const std::uintptr_t tail = start + 2 * size - (aligned + size))
        munmap(reinterpret_cast<void *>(aligned + size), tail);
    return reinterpret_cast<void *>(aligned);
#elif defined(Q_OS_WIN)
    return _aligned_malloc(size, size);
#else
    return std::aligned_alloc(size, size);
#endif
}

void unmapChunk(void *chunk) noexcept
{
    STAGE_UNPOISON(chunk, SmallPool::kChunkBytes);
#if defined(Q_OS_UNIX)
    munmap(chunk, SmallPool::kChunkBytes);
#elif defined(Q_OS_WIN)
    _aligned_free(chunk);
#else
    std::free(chunk);
#endif
}

// Maps the whole chunk now, in one system call: on the machine of W4 (a VM) that costs about a
// quarter less than taking a page fault for each page as the blocks get used. The chunk is about
// to be used up anyway. Before Linux 5.14 (EINVAL), and elsewhere, pages fault in as before.
void populateChunk(void *memory) noexcept
{
#if defined(MADV_POPULATE_WRITE)
    (void)madvise(memory, SmallPool::kChunkBytes, MADV_POPULATE_WRITE);
#else
    Q_UNUSED(memory);
#endif
}

std::size_t classOf(std::size_t bytes) noexcept
{
    return bytes ? (bytes - 1) / 16 : 0;
}
} // namespace

// The helper thread of a pool that prepares ahead: sleeps until a size in a burst asks for its
// next chunk, then maps one and faults its pages in, while the allocating thread goes on.
struct SmallPool::Helper
{
    std::mutex mutex;
    std::condition_variable wake;
    std::uint32_t requested = 0; // a bit per size class (under mutex)
    bool quit = false;           // under mutex
    std::thread thread;
};
static_assert(SmallPool::kMaxBytes / 16 <= 32, "a bit per size class in Helper::requested");

namespace {
// Writes each page of a fresh chunk once. A page fault takes the mapping's own lock (Linux 6.4
// and later; before, the address space's lock for reading, a few microseconds at a time), where
// MADV_POPULATE_WRITE holds the address space's lock for the whole call, and the allocating
// thread's heap growth waits for it: populating in 64 KiB pieces here made W4's spawn slower
// (median 0.65 against 0.57 us in ten pairs). The chunk is this thread's until it is handed over.
void faultIn(void *memory) noexcept
{
    constexpr std::size_t page = 4096; // the smallest page size: larger pages are only written twice
    auto *bytes = static_cast<volatile unsigned char *>(memory);
    for (std::size_t offset = 0; offset < SmallPool::kChunkBytes; offset += page)
        bytes[offset] = 0;
}
} // namespace

void SmallPool::prepareAhead(std::size_t sizeClass) noexcept
{
    std::call_once(m_helperStarted, [this] {
        auto *helper = new (std::nothrow) Helper;
        if (!helper)
            return;
        try {
            helper->thread = std::thread([this, helper] { runHelper(helper); });
        } catch (...) { // no thread to be had: the allocating thread faults its chunks in itself
            delete helper;
            return;
        }
        m_helper = helper;
    });
    if (Helper *helper = m_helper) {
        {
            std::lock_guard lock(helper->mutex);
            helper->requested |= std::uint32_t(1) << sizeClass;
        }
        helper->wake.notify_one();
    }
}

void SmallPool::runHelper(Helper *helper) noexcept
{
#if defined(Q_OS_LINUX)
    pthread_setname_np(pthread_self(), "stage-pool");
#endif
    std::unique_lock lock(helper->mutex);
    for (;;) {
        helper->wake.wait(lock, [helper] { return helper->quit || helper->requested; });
        if (helper->quit)
            return;
        const std::uint32_t requested = std::exchange(helper->requested, 0);
        lock.unlock();
        for (std::size_t c = 0; c < kClasses; ++c) {
            if (requested & (std::uint32_t(1) << c))
                prepareSpare(c);
        }
        lock.lock();
    }
}

void SmallPool::prepareSpare(std::size_t sizeClass) noexcept
{
    SizeClass &k = m_classes[sizeClass];
    {
        std::lock_guard lock(k.mutex);
        if (k.spare)
            return;
    }
    void *memory = mapChunk();
    if (!memory)
        return; // the allocating thread will meet the shortage itself, and throw
    faultIn(memory);
    Chunk *chunk = Chunk::create(memory, (sizeClass + 1) * kGranule);
    {
        std::lock_guard lock(k.mutex);
        if (!k.spare) {
            k.spare = std::exchange(chunk, nullptr);
            ++k.chunks;
        }
    }
    if (chunk) // a chunk emptied meanwhile and became the spare
        unmapChunk(chunk);
}

SmallPool::~SmallPool()
{
    if (Helper *helper = m_helper) {
        {
            std::lock_guard lock(helper->mutex);
            helper->quit = true;
        }
        helper->wake.notify_one();
        helper->thread.join();
        delete helper;
    }
    if (const std::size_t live = liveBlocks())
        qWarning("stage: a SmallPool destroyed with %zu blocks still allocated; their chunks leak", live);
    for (SizeClass &k : m_classes) {
        // A listed chunk always has a live block: an empty one becomes the spare or is freed.
        if (k.spare)
            unmapChunk(k.spare);
    }
}

std::size_t SmallPool::total(std::size_t SizeClass::*counter) const noexcept
{
    std::size_t n = 0;
    for (const SizeClass &k : m_classes) {
        std::lock_guard lock(k.mutex);
        n += k.*counter;
    }
    return n;
}

std::size_t SmallPool::chunkCount() const noexcept
{
    return total(&SizeClass::chunks);
}

std::size_t SmallPool::liveBlocks() const noexcept
{
    return total(&SizeClass::live);
}

void *SmallPool::allocate(std::size_t bytes)
{
    if (Q_UNLIKELY(bytes > kMaxBytes))
        return ::operator new(bytes);
    const std::size_t c = classOf(bytes);
    SizeClass &k = m_classes[c];
    k.mutex.lock();
    Chunk *chunk = k.withRoom;
    if (Q_UNLIKELY(!chunk))
        return allocateFromNewChunk(k, c, bytes);
    void *block = chunk->take(bytes);
    ++k.live;
    if (!chunk->hasRoom())
        unlink(k.withRoom, chunk);
    k.mutex.unlock();
    return block;
}

void *SmallPool::allocateFromNewChunk(SizeClass &k, std::size_t sizeClass, std::size_t bytes)
{
    // A size that starts a second chunk with none emptied in between is in a burst (a group
    // starting thousands of workers): the next chunk is prepared ahead on the helper thread, if
    // the pool has one. A size whose live count goes back and forth across the end of a chunk
    // (a worker restarting in a loop) starts the spare each time and empties it again: no
    // burst, the spare serves, nothing is mapped. A chunk mapped here while others are held has
    // its page faults taken at once, not one page at a time.
    Chunk *chunk = std::exchange(k.spare, nullptr);
    const bool burst = ++k.started >= 2;
    if (!chunk) {
        const bool populate = k.chunks > 0;
        k.mutex.unlock(); // the system calls outside the lock
        void *memory = mapChunk();
        if (!memory)
            throw std::bad_alloc();
        chunk = Chunk::create(memory, (sizeClass + 1) * kGranule);
        if (populate)
            populateChunk(memory);
        k.mutex.lock(); // another thread may have listed a chunk meanwhile: both serve
        ++k.chunks;
    }
    link(k.withRoom, chunk);
    void *block = chunk->take(bytes); // a new chunk has room for many blocks
    ++k.live;
    k.mutex.unlock();
    if (burst && m_prepareAhead)
        prepareAhead(sizeClass);
    return block;
}

void SmallPool::free(void *block, std::size_t bytes) noexcept
{
    if (!block)
        return;
    if (Q_UNLIKELY(bytes > kMaxBytes)) {
        ::operator delete(block);
        return;
    }
    const std::size_t c = classOf(bytes);
    auto *chunk = reinterpret_cast<Chunk *>(reinterpret_cast<std::uintptr_t>(block) & ~std::uintptr_t(kChunkBytes - 1));
    Q_ASSERT(chunk->blockBytes == (c + 1) * kGranule);
    SizeClass &k = m_classes[c];
    Chunk *release = nullptr;
    k.mutex.lock();
    chunk->putBack(block);
    --k.live;
    if (--chunk->live == 0) {
        k.started = 0;
        if (chunk->listed)
            unlink(k.withRoom, chunk);
        if (!k.spare) { // kept, as new: its touched pages are resident already
            chunk->freeList = nullptr;
            chunk->untouched = kHeaderBytes;
            k.spare = chunk;
        } else {
            release = chunk;
            --k.chunks;
        }
    } else if (!chunk->listed) {
        link(k.withRoom, chunk);
    }
    k.mutex.unlock();
    if (release)
        unmapChunk(release);
}

#if STAGE_POOL
namespace {
SmallPool &processPool()
{
    // Leaked: blocks are freed until the very end of the process. STAGE_POOL_HELPER=0 (or off,
    // false, no) turns the helper thread off: every chunk is then faulted in by the thread that
    // needs it.
    static auto *pool = [] {
        const QByteArray helper = qgetenv("STAGE_POOL_HELPER").trimmed().toLower();
        const bool off = helper == "0" || helper == "off" || helper == "false" || helper == "no";
        return new SmallPool(!off);
    }();
    return *pool;
}
} // namespace

void *poolAllocate(std::size_t bytes)
{
    return processPool().allocate(bytes);
}

void poolFree(void *block, std::size_t bytes) noexcept
{
    processPool().free(block, bytes);
}
#else
void *poolAllocate(std::size_t bytes)
{
    return ::operator new(bytes);
}

void poolFree(void *block, std::size_t) noexcept
{
    ::operator delete(block);
}
#endif

} // namespace stage::detail
