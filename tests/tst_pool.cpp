// stage::detail::SmallPool, the pool the objects of each worker come from: blocks, chunks that
// are reused and given back, frees from other threads, and the allocator over the process pool.
// The pool is tested on its own instances, so that the sanitizer build (where the library's
// objects bypass the process pool) exercises it too, with ASan poisoning of free blocks.

#include <stage/detail/pool.h>

#include <QtTest/QtTest>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

using stage::detail::SmallPool;

#if defined(__SANITIZE_ADDRESS__)
#define TST_POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TST_POOL_ASAN 1
#endif
#endif
#ifdef TST_POOL_ASAN
#include <sanitizer/asan_interface.h>
#endif
#if defined(__SANITIZE_THREAD__)
#define TST_POOL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TST_POOL_TSAN 1
#endif
#endif
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define TST_POOL_VALGRIND 1
#endif
#if defined(Q_OS_LINUX)
#include <sys/resource.h>
#endif

namespace {

constexpr std::size_t kUsable = SmallPool::kChunkBytes - 64; // a chunk less its header

std::size_t blocksPerChunk(std::size_t bytes)
{
    const std::size_t block = (bytes + 15) / 16 * 16;
    return kUsable / block;
}

} // namespace

class tst_Pool : public QObject
{
    Q_OBJECT

private slots:
    void blocks_alignedDistinctAndCounted();
    void zeroBytes_getsTheSmallestBlock();
    void freedBlock_isReusedFirst();
    void emptyChunks_goBackButOneIsKept();
    void chunks_fillInTurnAndRelistWhenAFullOneFrees();
    void freesFromOtherThreads_keepTheCountsExact_data();
    void freesFromOtherThreads_keepTheCountsExact();
    void processPool_largeBlocksAndAllocateShared();
    void lineSizedBlocks_startACacheLine();
    void prepareAhead_burstFindsItsNextChunkFaultedIn();
    void prepareAhead_leavesOneSpareAndStopsWithThePool();
    void prepareAhead_restartLoopAcrossAChunkEnd_mapsNothing();
    void asan_poisonsAllButTheBytesAskedFor();
};

void tst_Pool::blocks_alignedDistinctAndCounted()
{
    SmallPool pool;
    std::vector<std::pair<void *, std::size_t>> blocks;
    for (std::size_t bytes = 1; bytes <= SmallPool::kMaxBytes; ++bytes) {
        void *p = pool.allocate(bytes);
        QVERIFY(p);
        QCOMPARE(reinterpret_cast<std::uintptr_t>(p) % 16, std::uintptr_t(0));
        std::memset(p, int(bytes & 0xff), bytes); // writable over its whole size (ASan checks)
        blocks.emplace_back(p, bytes);
    }
    QCOMPARE(pool.liveBlocks(), SmallPool::kMaxBytes);
    QCOMPARE(pool.chunkCount(), SmallPool::kMaxBytes / 16); // one chunk per size of 16 bytes
    // No two blocks overlap, and none was written over by another.
    std::sort(blocks.begin(), blocks.end());
    for (std::size_t i = 0; i + 1 < blocks.size(); ++i)
        QVERIFY(static_cast<char *>(blocks[i].first) + blocks[i].second <= blocks[i + 1].first);
    for (const auto &block : blocks) {
        const std::size_t bytes = block.second;
        const auto *c = static_cast<const unsigned char *>(block.first);
        QVERIFY(std::all_of(c, c + bytes, [bytes](unsigned char v) { return v == (bytes & 0xff); }));
        pool.free(block.first, bytes);
    }
    QCOMPARE(pool.liveBlocks(), std::size_t(0));
    QCOMPARE(pool.chunkCount(), SmallPool::kMaxBytes / 16); // each size keeps its (now empty) chunk
    pool.free(nullptr, 8); // ignored
    QCOMPARE(pool.liveBlocks(), std::size_t(0));
}

void tst_Pool::zeroBytes_getsTheSmallestBlock()
{
    SmallPool pool;
    void *a = pool.allocate(0);
    void *b = pool.allocate(16);
    QVERIFY(a && b && a != b);
    QCOMPARE(std::abs(static_cast<char *>(b) - static_cast<char *>(a)), std::ptrdiff_t(16)); // the same size
    QCOMPARE(pool.chunkCount(), std::size_t(1));
    pool.free(a, 0);
    pool.free(b, 16);
    QCOMPARE(pool.liveBlocks(), std::size_t(0));
}

void tst_Pool::freedBlock_isReusedFirst()
{
    SmallPool pool;
    void *a = pool.allocate(200);
    void *b = pool.allocate(200);
    pool.free(a, 200);
    QCOMPARE(pool.allocate(208), a); // 200 and 208 share a size
    pool.free(a, 208);
    pool.free(b, 200);
    QCOMPARE(pool.liveBlocks(), std::size_t(0));
}

void tst_Pool::emptyChunks_goBackButOneIsKept()
{
    SmallPool pool;
    const std::size_t perChunk = blocksPerChunk(336);
    std::vector<void *> blocks;
    for (std::size_t i = 0; i < 3 * perChunk + 1; ++i)
        blocks.push_back(pool.allocate(336));
    QCOMPARE(pool.chunkCount(), std::size_t(4));
    QCOMPARE(pool.liveBlocks(), 3 * perChunk + 1);
    for (void *p : blocks)
        pool.free(p, 336);
    QCOMPARE(pool.liveBlocks(), std::size_t(0));
    QCOMPARE(pool.chunkCount(), std::size_t(1)); // three went back to malloc, one is kept

    // The kept chunk serves the next burst from its start, before any new chunk.
    blocks.clear();
    for (std::size_t i = 0; i < perChunk; ++i)
        blocks.push_back(pool.allocate(336));
    QCOMPARE(pool.chunkCount(), std::size_t(1));
    blocks.push_back(pool.allocate(336));
    QCOMPARE(pool.chunkCount(), std::size_t(2));
    for (void *p : blocks)
        pool.free(p, 336);
    QCOMPARE(pool.chunkCount(), std::size_t(1));

    // A worker restarting in a loop (one block allocated and freed, again and again) allocates
    // no chunk after the first.
    for (int i = 0; i < 10'000; ++i)
        pool.free(pool.allocate(336), 336);
    QCOMPARE(pool.chunkCount(), std::size_t(1));
    QCOMPARE(pool.liveBlocks(), std::size_t(0));
}

void tst_Pool::chunks_fillInTurnAndRelistWhenAFullOneFrees()
{
    SmallPool pool;
    const std::size_t perChunk = blocksPerChunk(64);
    std::vector<void *> first, second;
    for (std::size_t i = 0; i < perChunk; ++i)
        first.push_back(pool.allocate(64));
    for (std::size_t i = 0; i < perChunk; ++i)
        second.push_back(pool.allocate(64));
    QCOMPARE(pool.chunkCount(), std::size_t(2)); // both full
    const auto chunkOf = [](void *p) { return reinterpret_cast<std::uintptr_t>(p) / SmallPool::kChunkBytes; };
    QVERIFY(chunkOf(first.front()) != chunkOf(second.front()));

    // A block freed in the first (full) chunk makes it serve again: no third chunk.
    void *freed = first[perChunk / 2];
    pool.free(freed, 64);
    QCOMPARE(pool.allocate(64), freed);
    QCOMPARE(pool.chunkCount(), std::size_t(2));
    // Full again: the next block needs a third chunk.
    void *third = pool.allocate(64);
    QCOMPARE(pool.chunkCount(), std::size_t(3));
    pool.free(third, 64);
    QCOMPARE(pool.chunkCount(), std::size_t(3)); // the third is now the kept empty one
    for (void *p : first)
        pool.free(p, 64);
    QCOMPARE(pool.chunkCount(), std::size_t(2)); // the first went back
    for (void *p : second)
        pool.free(p, 64);
    QCOMPARE(pool.chunkCount(), std::size_t(1));
    QCOMPARE(pool.liveBlocks(), std::size_t(0));
}

void tst_Pool::freesFromOtherThreads_keepTheCountsExact_data()
{
    QTest::addColumn<bool>("prepareAhead");
    QTest::newRow("alone") << false;
    QTest::newRow("with the helper") << true;
}

void tst_Pool::freesFromOtherThreads_keepTheCountsExact()
{
    // Four threads allocate blocks of mixed sizes and hand half of them to a neighbour, which
    // checks their contents and frees them; every thread also frees its own other half. With the
    // helper, its spares arrive in the middle of it all.
    QFETCH(bool, prepareAhead);
    SmallPool pool(prepareAhead);
    constexpr int kThreads = 4;
    constexpr int kRounds = 20'000;
    struct Mailbox
    {
        std::mutex mutex;
        std::vector<std::pair<std::uint64_t *, std::size_t>> blocks;
    };
    Mailbox boxes[kThreads];
    std::atomic<int> corrupt{0};
    std::atomic<int> done{0};
    const auto check = [&](std::uint64_t *p, std::size_t bytes) {
        for (std::size_t i = 0; i < bytes / 8; ++i) {
            if (p[i] != reinterpret_cast<std::uintptr_t>(p) + i)
                corrupt.fetch_add(1);
        }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            std::mt19937 random(t + 1);
            for (int i = 0; i < kRounds; ++i) {
                const std::size_t bytes = 8 * (1 + random() % 64); // 8..512
                auto *p = static_cast<std::uint64_t *>(pool.allocate(bytes));
                for (std::size_t k = 0; k < bytes / 8; ++k)
                    p[k] = reinterpret_cast<std::uintptr_t>(p) + k;
                if (i % 2) {
                    std::lock_guard lock(boxes[(t + 1) % kThreads].mutex);
                    boxes[(t + 1) % kThreads].blocks.emplace_back(p, bytes);
                } else {
                    check(p, bytes);
                    pool.free(p, bytes);
                }
                if (i % 64 == 0) {
                    std::vector<std::pair<std::uint64_t *, std::size_t>> mine;
                    {
                        std::lock_guard lock(boxes[t].mutex);
                        mine.swap(boxes[t].blocks);
                    }
                    for (auto [q, n] : mine) {
                        check(q, n);
                        pool.free(q, n);
                    }
                }
            }
            done.fetch_add(1);
        });
    }
    for (auto &thread : threads)
        thread.join();
    for (auto &box : boxes) {
        for (auto [q, n] : box.blocks) {
            check(q, n);
            pool.free(q, n);
        }
    }
    QCOMPARE(done.load(), kThreads);
    QCOMPARE(corrupt.load(), 0);
    QCOMPARE(pool.liveBlocks(), std::size_t(0));
    QVERIFY(pool.chunkCount() <= SmallPool::kMaxBytes / 16); // at most the kept one of each size
}

void tst_Pool::processPool_largeBlocksAndAllocateShared()
{
    // Above the pool's largest size, a block is ::operator new's (no chunk), here and in the
    // process pool.
    SmallPool pool;
    void *big = pool.allocate(SmallPool::kMaxBytes + 1);
    std::memset(big, 1, SmallPool::kMaxBytes + 1);
    QCOMPARE(pool.chunkCount(), std::size_t(0));
    QCOMPARE(pool.liveBlocks(), std::size_t(0));
    pool.free(big, SmallPool::kMaxBytes + 1);
    void *large = stage::detail::poolAllocate(4096);
    std::memset(large, 1, 4096);
    stage::detail::poolFree(large, 4096);

    // allocate_shared: the block outlives the object while a weak_ptr holds the control block.
    struct Counted
    {
        explicit Counted(int *alive) : alive(alive) { ++*alive; }
        ~Counted() { --*alive; }
        int *alive;
        char payload[100];
    };
    int alive = 0;
    std::weak_ptr<Counted> weak;
    {
        auto shared = std::allocate_shared<Counted>(stage::detail::PoolAllocator<Counted>(), &alive);
        QCOMPARE(alive, 1);
        weak = shared;
    }
    QCOMPARE(alive, 0);
    QVERIFY(weak.expired());
    weak.reset(); // frees the block (ASan would report a mismatch or a double free)
}

void tst_Pool::lineSizedBlocks_startACacheLine()
{
    // A mailbox core's layout gives each side a cache line of its own, which holds only if its
    // block starts a line: every block of a size that is a multiple of 64 does, in the first
    // chunk and the next, and after a free.
    SmallPool pool;
    for (std::size_t bytes = 64; bytes <= SmallPool::kMaxBytes; bytes += 64) {
        std::vector<void *> blocks;
        for (std::size_t i = 0; i < blocksPerChunk(bytes) + 3; ++i) {
            blocks.push_back(pool.allocate(bytes));
            QCOMPARE(reinterpret_cast<std::uintptr_t>(blocks.back()) % 64, std::uintptr_t(0));
        }
        QCOMPARE(pool.chunkCount(), std::size_t(bytes / 64 + 1)); // two of this size, one kept of each before
        pool.free(blocks[1], bytes);
        QCOMPARE(pool.allocate(bytes), blocks[1]);
        for (void *p : blocks)
            pool.free(p, bytes);
    }
    QCOMPARE(pool.liveBlocks(), std::size_t(0));

    // PoolAllocator<T, 64> asks for whole lines; the process pool (not in sanitizer builds,
    // where it is ::operator new) puts them at the start of one.
    using Line = stage::detail::PoolAllocator<char[100], 64>;
    QCOMPARE(Line::blockBytes(1), std::size_t(128));
    QCOMPARE(Line::blockBytes(2), std::size_t(256));
    QCOMPARE(stage::detail::PoolAllocator<char[100]>::blockBytes(1), std::size_t(112));
    struct Payload
    {
        char bytes[200];
    };
    auto shared = std::allocate_shared<Payload>(stage::detail::PoolAllocator<Payload, 64>());
    std::memset(shared->bytes, 1, sizeof(shared->bytes));
#if defined(__GLIBCXX__) && !defined(TST_POOL_ASAN) && !(defined(STAGE_POOL) && STAGE_POOL == 0)
    // libstdc++'s control block: 16 bytes in front of the object, at the start of the block.
    QCOMPARE((reinterpret_cast<std::uintptr_t>(shared.get()) - 16) % 64, std::uintptr_t(0));
#endif
}

namespace {
// Page faults taken by this thread (or with \a process, by all of them) so far: Linux only; -1
// elsewhere, and under valgrind and TSan (whose shadow memory faults in as the test writes).
long pageFaults(bool process = false)
{
#if defined(Q_OS_LINUX) && !defined(TST_POOL_TSAN)
#ifdef TST_POOL_VALGRIND
    if (RUNNING_ON_VALGRIND)
        return -1;
#endif
    rusage usage{};
    if (getrusage(process ? RUSAGE_SELF : RUSAGE_THREAD, &usage) == 0)
        return usage.ru_minflt;
#endif
    return -1;
}
} // namespace

void tst_Pool::prepareAhead_burstFindsItsNextChunkFaultedIn()
{
    SmallPool pool(/*prepareAhead=*/true);
    constexpr std::size_t bytes = 256;
    const std::size_t perChunk = blocksPerChunk(bytes);
    std::vector<void *> blocks;
    blocks.reserve(3 * perChunk);
    for (std::size_t i = 0; i < perChunk; ++i)
        blocks.push_back(pool.allocate(bytes));
    QCOMPARE(pool.chunkCount(), std::size_t(1)); // a first chunk is no burst: nothing ahead
    QTest::qWait(50);
    QCOMPARE(pool.chunkCount(), std::size_t(1));

    blocks.push_back(pool.allocate(bytes)); // a second chunk: a burst
    QTRY_COMPARE(pool.chunkCount(), std::size_t(3)); // the third, prepared by the helper meanwhile
    for (std::size_t i = 1; i < perChunk; ++i) // the rest of the second
        blocks.push_back(pool.allocate(bytes));
    QCOMPARE(pool.chunkCount(), std::size_t(3));

    // The third chunk's 64 pages were faulted in by the helper: filling it (every byte written)
    // costs this thread next to no page fault (without the helper: one per page, or the same in
    // the system call that populates it).
    const long faultsBefore = pageFaults();
    const auto chunkOf = [](void *p) { return reinterpret_cast<std::uintptr_t>(p) / SmallPool::kChunkBytes; };
    for (std::size_t i = 0; i < perChunk; ++i) {
        blocks.push_back(pool.allocate(bytes));
        std::memset(blocks.back(), 0x5a, bytes);
        QCOMPARE(chunkOf(blocks.back()), chunkOf(blocks[blocks.size() - 1 - i]));
    }
    const long faults = faultsBefore < 0 ? -1 : pageFaults() - faultsBefore;
    QVERIFY(chunkOf(blocks.back()) != chunkOf(blocks[perChunk]));
    if (faults >= 0)
        QVERIFY2(faults < 16, qPrintable(QStringLiteral("%1 page faults while filling a prepared chunk of 64 pages").arg(faults)));
    QTRY_COMPARE(pool.chunkCount(), std::size_t(4)); // and the burst goes on: the next is prepared

    for (void *p : blocks)
        pool.free(p, bytes);
    QCOMPARE(pool.liveBlocks(), std::size_t(0));
    QTRY_COMPARE(pool.chunkCount(), std::size_t(1)); // the spare only, as without the helper
}

void tst_Pool::prepareAhead_leavesOneSpareAndStopsWithThePool()
{
    // Bursts in several sizes at once, and pools destroyed while their helper is still at work
    // (the destructor waits for it; ASan and LSan see every chunk unmapped or kept).
    for (int round = 0; round < 20; ++round) {
        SmallPool pool(/*prepareAhead=*/true);
        std::vector<std::pair<void *, std::size_t>> blocks;
        for (std::size_t bytes : {64, 208, 256, 128}) {
            for (std::size_t i = 0; i < blocksPerChunk(bytes) + 1; ++i)
                blocks.emplace_back(pool.allocate(bytes), bytes);
        }
        if (round % 2) { // half of the rounds: everything freed first, then only spares remain
            for (auto [p, bytes] : blocks)
                pool.free(p, bytes);
            QTRY_COMPARE(pool.chunkCount(), std::size_t(4));
            QCOMPARE(pool.liveBlocks(), std::size_t(0));
        } else { // the other half: freed at once, and the pool destroyed while its helper may still be at work
            QVERIFY(pool.chunkCount() >= 8);
            for (auto [p, bytes] : blocks)
                pool.free(p, bytes);
        }
    }
}

void tst_Pool::prepareAhead_restartLoopAcrossAChunkEnd_mapsNothing()
{
    // Two chunks exactly full, then a worker restarting in a loop: each run allocates a block
    // (starting a third chunk) and frees it (emptying that chunk again). That is no burst: the
    // kept chunk serves every run, and neither this thread nor the helper maps or faults in a
    // chunk per run (found in review: 8,700-9,200 page faults in 300 runs, a chunk mapped,
    // faulted in and unmapped about every other run).
    SmallPool pool(/*prepareAhead=*/true);
    constexpr std::size_t bytes = 256;
    const std::size_t perChunk = blocksPerChunk(bytes);
    std::vector<void *> full;
    for (std::size_t i = 0; i < 2 * perChunk; ++i)
        full.push_back(pool.allocate(bytes));
    QTRY_COMPARE(pool.chunkCount(), std::size_t(3)); // the second chunk was a burst: a spare ahead
    constexpr int runs = 300;
    const long before = pageFaults(/*process=*/true);
    for (int i = 0; i < runs; ++i) {
        void *p = pool.allocate(bytes);
        std::memset(p, 0x11, bytes);
        pool.free(p, bytes);
        if (i % 10 == 0)
            QThread::usleep(200); // time for a helper that was woken to do its harm
        QCOMPARE(pool.chunkCount(), std::size_t(3));
    }
    QTest::qWait(50);
    const long faults = before < 0 ? -1 : pageFaults(/*process=*/true) - before;
    QCOMPARE(pool.chunkCount(), std::size_t(3));
    if (faults >= 0)
        QVERIFY2(faults < 64, qPrintable(QStringLiteral("%1 page faults in %2 runs").arg(faults).arg(runs)));
    for (void *p : full)
        pool.free(p, bytes);
    QCOMPARE(pool.liveBlocks(), std::size_t(0));
    QCOMPARE(pool.chunkCount(), std::size_t(1));
}

void tst_Pool::asan_poisonsAllButTheBytesAskedFor()
{
#ifndef TST_POOL_ASAN
    QSKIP("ASan builds only");
#else
    SmallPool pool;
    auto *fresh = static_cast<char *>(pool.allocate(193)); // a 208-byte block, from untouched room
    QVERIFY(!__asan_region_is_poisoned(fresh, 193));
    QVERIFY(__asan_address_is_poisoned(fresh + 193));
    QVERIFY(__asan_address_is_poisoned(fresh + 207));
    auto *other = static_cast<char *>(pool.allocate(208));
    pool.free(fresh, 193);
    QVERIFY(__asan_address_is_poisoned(fresh)); // freed: a use after free is caught
    QVERIFY(__asan_address_is_poisoned(fresh + 100));
    auto *again = static_cast<char *>(pool.allocate(200)); // the same block, from the free list
    QCOMPARE(again, fresh);
    QVERIFY(!__asan_region_is_poisoned(again, 200));
    QVERIFY(__asan_address_is_poisoned(again + 200));
    QVERIFY(!__asan_region_is_poisoned(other, 208));
    pool.free(again, 200);
    pool.free(other, 208);
#endif
}

QTEST_GUILESS_MAIN(tst_Pool)
#include "tst_pool.moc"
