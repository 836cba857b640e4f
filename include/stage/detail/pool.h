#pragma once

// The small-block pool a group's per-worker bookkeeping comes from: its slots, the workers' cores
// (with their shared_ptr control blocks), mailbox cores and waiters.

#include <stage/detail/spinmutex.h>
#include <stage/global.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <new>

namespace stage::detail {

/*
    A pool of blocks of 16 to 512 bytes (in steps of 16), carved from 256 KiB chunks, one list of
    chunks per size.

    Why: a group that starts thousands of workers allocates a slot and a core for each on a heap
    that has nothing free yet, where malloc takes its slow path (about 185 instructions a block,
    W4); here a block costs a short critical section (about 40 instructions) and no per-block
    header, and a burst's chunks are mapped in one system call each (see populate in pool.cpp).

    Objects that two threads write at high rates need care: blocks of one size are packed side by
    side whichever thread allocated them (malloc keeps a thread's blocks in its own arena). Mailbox
    cores and waiters come from here in whole cache lines (PoolAllocator<T, 64>, and the waiters'
    classes of 64 to 256 bytes), so that each starts a line and none shares one with a neighbour;
    the core's layout then gives the producers and the consumer a line each. (With blocks of
    16-byte steps, W1's core landed where the control block's counts share a line with the fields
    both sides read, and W1 fell from about 20 M to 11-13 M messages/s; to 8 M with the producer's
    and the consumer's waiters side by side as well.)

    Guarantees:
    - Any thread allocates and frees; a block may be freed on another thread than the one that
      allocated it. Each size has its own spin lock, held for a few instructions.
    - Every block is 16-byte aligned, and a block whose size is a multiple of 64 bytes starts a
      cache line (chunks start one, their header is one line, and a size's blocks are contiguous).
    - Memory goes back: a chunk is a mapping of its own (mmap), unmapped as soon as its last
      block is freed, except one per size (the spare), kept so that a worker restarting in a
      loop does not map a chunk each time.
    - A pool constructed with prepareAhead (the process-wide one) has a helper thread, named
      stage-pool: when a size starts a second chunk with none emptied in between (a burst), the
      helper maps its spare and faults its pages in while the allocating thread goes on with the
      chunk it has. A size going back and forth across the end of a chunk (a worker restarting
      in a loop) is no burst and wakes nobody. The helper only fills an empty spare place: a
      burst leaves one empty chunk per size behind (the spare, which before the helper only
      existed once a chunk had emptied). On W4's machine (a VM, where a fresh page costs 1.3 to
      2.5 us) this takes about 12,000 page faults of 100,000 spawns off the spawning thread.
      The helper is started by the first burst's thread and inherits its CPU affinity and
      scheduling policy (a spawning thread pinned to one core leaves the helper no other).
    - allocate() throws std::bad_alloc when the system has no memory; free() never throws.
    - Not fork-safe: a child forked while another thread holds a size's lock, the helper
      included (it takes them at times the application does not see), must not use Stage
      before exec; a forked child has no helper (malloc has fork handlers for this; the pool has
      none).

    Stage uses one process-wide pool (poolAllocate/poolFree below); tests make their own.
*/
class STAGE_EXPORT SmallPool
{
public:
    static constexpr std::size_t kMaxBytes = 512;
    static constexpr std::size_t kChunkBytes = 256 * 1024;

    struct Chunk; // a header, then blocks of one size

    /* With \a prepareAhead, a size in a burst (one that starts a second chunk) has its next chunk
       mapped and faulted in ahead of use on a helper thread (started by the first burst, one per
       pool, asleep otherwise), so that the allocating thread does not take those page faults
       itself. Without it (tests that count chunks), everything happens in the caller. */
    explicit SmallPool(bool prepareAhead = false) noexcept : m_prepareAhead(prepareAhead) {}
    /* Stops the helper thread, if any; frees the chunks it keeps; blocks still allocated are
       leaked, with a warning. */
    ~SmallPool();
    SmallPool(const SmallPool &) = delete;
    SmallPool &operator=(const SmallPool &) = delete;

    /* A block of at least \a bytes (0 counts as 1); above kMaxBytes, ::operator new(\a bytes). */
    void *allocate(std::size_t bytes);
    /* Gives back a block from allocate(\a bytes) of this pool, with the same \a bytes; null is
       ignored. */
    void free(void *block, std::size_t bytes) noexcept;

    /* Chunks held now, including the kept empty ones. Takes each size's lock. */
    std::size_t chunkCount() const noexcept;
    /* Blocks allocated and not yet freed. Takes each size's lock. */
    std::size_t liveBlocks() const noexcept;

private:
    struct alignas(64) SizeClass
    {
        mutable SpinMutex mutex;
        Chunk *withRoom = nullptr; // chunks with a free block or untouched room, most recent first
        Chunk *spare = nullptr;    // one empty chunk, kept
        std::size_t chunks = 0;    // held, the spare included
        std::size_t live = 0;      // blocks handed out
        std::size_t started = 0;   // chunks started since one last emptied: 2 or more is a burst
    };
    static constexpr std::size_t kGranule = 16;
    static constexpr std::size_t kClasses = kMaxBytes / kGranule;

    void *allocateFromNewChunk(SizeClass &k, std::size_t sizeClass, std::size_t bytes); // called with k locked; unlocks it
    struct Helper;
    void prepareAhead(std::size_t sizeClass) noexcept; // asks the helper for a spare of this size
    void runHelper(Helper *helper) noexcept;           // the helper thread: waits for requests, serves them
    void prepareSpare(std::size_t sizeClass) noexcept; // the helper thread: maps and faults one in
    std::size_t total(std::size_t SizeClass::*counter) const noexcept; // over the sizes, each under its lock

    SizeClass m_classes[kClasses];
    const bool m_prepareAhead = false;
    std::once_flag m_helperStarted;
    Helper *m_helper = nullptr; // set once, by the first burst (m_helperStarted)
};

/*
    The process-wide pool: a block of \a bytes, any size (above SmallPool::kMaxBytes it is
    ::operator new). Sanitizer builds, and builds with STAGE_POOL=0 (the valgrind tree), use
    ::operator new for every size so that the tools see each object. Throws std::bad_alloc.
*/
STAGE_EXPORT void *poolAllocate(std::size_t bytes);
/* Gives back a block from poolAllocate(\a bytes), on any thread. */
STAGE_EXPORT void poolFree(void *block, std::size_t bytes) noexcept;

/*
    A standard allocator over the process-wide pool, for std::allocate_shared. With \a Line = 64,
    requests are rounded up to whole cache lines, so that (SmallPool's guarantee) every block
    starts a cache line: for objects whose layout separates what different threads write per
    operation (a mailbox core), which only works when the offset of the block in its line is known.
*/
template<typename T, std::size_t Line = 16>
struct PoolAllocator
{
    static_assert(Line == 16 || Line == 64, "blocks are 16-byte aligned, or start a cache line");
    using value_type = T;
    template<typename U>
    struct rebind
    {
        using other = PoolAllocator<U, Line>;
    };

    PoolAllocator() noexcept = default;
    template<typename U>
    PoolAllocator(const PoolAllocator<U, Line> &) noexcept
    {
    }

    static constexpr std::size_t blockBytes(std::size_t n) noexcept
    {
        return (n * sizeof(T) + Line - 1) / Line * Line;
    }
    T *allocate(std::size_t n)
    {
        static_assert(alignof(T) <= 16, "the pool aligns blocks to 16 bytes");
        return static_cast<T *>(poolAllocate(blockBytes(n)));
    }
    void deallocate(T *p, std::size_t n) noexcept { poolFree(p, blockBytes(n)); }

    template<typename U>
    bool operator==(const PoolAllocator<U, Line> &) const noexcept
    {
        return true;
    }
};

} // namespace stage::detail
