// The frame registry (stage::detail::registerFrame and friends): how a Stage awaitable resumed by
// a foreign awaitable finds its worker by frame address. Registrations are inserted into the table
// in batches, so every case here crosses a batch boundary: a frame must be found (and forgotten)
// the same whether it still waits in the batch or is in the table already.

#include <stage/detail/waiter.h>

#include <QtTest/QtTest>

#include <algorithm>
#include <random>
#include <thread>
#include <vector>

using stage::detail::WorkerCore;
using stage::detail::registerFrame;
using stage::detail::reserveFrames;
using stage::detail::unregisterFrame;
using stage::detail::workerOfFrame;

namespace {

// Stand-ins: the registry compares addresses only, and never dereferences either pointer.
struct alignas(16) FakeFrame
{
    char bytes[48];
};

WorkerCore *fakeWorker(std::size_t n)
{
    return reinterpret_cast<WorkerCore *>(std::uintptr_t(0x10000) + 16 * (n + 1));
}

} // namespace

class tst_FrameRegistry : public QObject
{
    Q_OBJECT

private slots:
    void registeredFrames_foundUntilUnregistered();
    void unregisteredWhileStillBatched_isForgotten();
    void reRegisteredAddress_answersForTheNewWorker();
    void registeredTwiceWhileBatched_latestWinsAfterAnotherIsRemoved();
    void reserveWithRegistrationsBatched_keepsThem();
    void nullFrameOrWorker_isIgnored();
    void manyThreads_registerAndUnregisterTheirOwn();
};

void tst_FrameRegistry::registeredFrames_foundUntilUnregistered()
{
    constexpr std::size_t n = 1000; // 62 batches and a partial one
    std::vector<FakeFrame> frames(n);
    for (std::size_t i = 0; i < n; ++i) {
        registerFrame(&frames[i], fakeWorker(i));
        QCOMPARE(workerOfFrame(&frames[i]), fakeWorker(i)); // at once, batched or not
    }
    for (std::size_t i = 0; i < n; ++i)
        QCOMPARE(workerOfFrame(&frames[i]), fakeWorker(i));

    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; ++i)
        order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937(20261202));
    for (std::size_t k = 0; k < n; ++k) {
        unregisterFrame(&frames[order[k]]);
        QCOMPARE(workerOfFrame(&frames[order[k]]), nullptr);
        if (k + 1 < n) { // the others are still found (backward-shift erase keeps their probes)
            for (std::size_t other : {order[k + 1], order[n - 1]})
                QCOMPARE(workerOfFrame(&frames[other]), fakeWorker(other));
        }
    }
    for (std::size_t i = 0; i < n; ++i)
        QCOMPARE(workerOfFrame(&frames[i]), nullptr);
}

void tst_FrameRegistry::unregisteredWhileStillBatched_isForgotten()
{
    // Fewer than a batch: all of them are still waiting to be inserted into the table.
    FakeFrame frames[5];
    for (std::size_t i = 0; i < 5; ++i)
        registerFrame(&frames[i], fakeWorker(i));
    unregisterFrame(&frames[1]);
    unregisterFrame(&frames[3]);
    QCOMPARE(workerOfFrame(&frames[0]), fakeWorker(0));
    QCOMPARE(workerOfFrame(&frames[1]), nullptr);
    QCOMPARE(workerOfFrame(&frames[2]), fakeWorker(2));
    QCOMPARE(workerOfFrame(&frames[3]), nullptr);
    QCOMPARE(workerOfFrame(&frames[4]), fakeWorker(4));

    // Enough more to push the rest into the table: the forgotten ones stay forgotten.
    std::vector<FakeFrame> more(40);
    for (std::size_t i = 0; i < more.size(); ++i)
        registerFrame(&more[i], fakeWorker(100 + i));
    QCOMPARE(workerOfFrame(&frames[1]), nullptr);
    QCOMPARE(workerOfFrame(&frames[3]), nullptr);
    QCOMPARE(workerOfFrame(&frames[4]), fakeWorker(4));
    QCOMPARE(workerOfFrame(&more.back()), fakeWorker(100 + more.size() - 1));

    for (std::size_t i : {0, 2, 4})
        unregisterFrame(&frames[i]);
    for (FakeFrame &f : more)
        unregisterFrame(&f);
    for (std::size_t i = 0; i < 5; ++i)
        QCOMPARE(workerOfFrame(&frames[i]), nullptr);
    for (FakeFrame &f : more)
        QCOMPARE(workerOfFrame(&f), nullptr);
}

void tst_FrameRegistry::reRegisteredAddress_answersForTheNewWorker()
{
    // A frame freed and another allocated at its address: the registry must answer for the new
    // worker, both when the old entry had reached the table and when it had not.
    std::vector<FakeFrame> frames(64);
    for (std::size_t i = 0; i < frames.size(); ++i)
        registerFrame(&frames[i], fakeWorker(i));
    unregisterFrame(&frames[0]);  // in the table by now
    unregisterFrame(&frames[63]); // perhaps still batched
    registerFrame(&frames[0], fakeWorker(1000));
    registerFrame(&frames[63], fakeWorker(1063));
    QCOMPARE(workerOfFrame(&frames[0]), fakeWorker(1000));
    QCOMPARE(workerOfFrame(&frames[63]), fakeWorker(1063));
    std::vector<FakeFrame> more(40); // both reach the table
    for (std::size_t i = 0; i < more.size(); ++i)
        registerFrame(&more[i], fakeWorker(2000 + i));
    QCOMPARE(workerOfFrame(&frames[0]), fakeWorker(1000));
    QCOMPARE(workerOfFrame(&frames[63]), fakeWorker(1063));

    for (FakeFrame &f : frames)
        unregisterFrame(&f);
    for (FakeFrame &f : more)
        unregisterFrame(&f);
    QCOMPARE(workerOfFrame(&frames[0]), nullptr);
    QCOMPARE(workerOfFrame(&frames[63]), nullptr);
}

void tst_FrameRegistry::registeredTwiceWhileBatched_latestWinsAfterAnotherIsRemoved()
{
    // Stage registers a frame once, but the registry must not depend on it: with two
    // registrations of one frame in the batch, removing another frame of the batch must not
    // reorder them (found in review: a swap with the last made the older one win).
    static FakeFrame frames[32];
    int wrong = 0;
    for (int attempt = 0; attempt < 16; ++attempt) { // at least one attempt lies inside one batch
        FakeFrame *other = &frames[2 * attempt];
        FakeFrame *twice = &frames[2 * attempt + 1];
        registerFrame(other, fakeWorker(1));
        registerFrame(twice, fakeWorker(2));
        registerFrame(twice, fakeWorker(3));
        unregisterFrame(other);
        if (workerOfFrame(twice) != fakeWorker(3))
            ++wrong;
        std::vector<FakeFrame> more(20); // through the table too
        for (FakeFrame &f : more)
            registerFrame(&f, fakeWorker(4));
        if (workerOfFrame(twice) != fakeWorker(3))
            ++wrong;
        for (FakeFrame &f : more)
            unregisterFrame(&f);
        unregisterFrame(twice);
        if (workerOfFrame(twice) != nullptr)
            ++wrong;
    }
    QCOMPARE(wrong, 0);
}

void tst_FrameRegistry::reserveWithRegistrationsBatched_keepsThem()
{
    FakeFrame frames[7];
    for (std::size_t i = 0; i < 7; ++i)
        registerFrame(&frames[i], fakeWorker(i));
    reserveFrames(100'000); // a group about to start 100,000 workers: the table grows at once
    for (std::size_t i = 0; i < 7; ++i)
        QCOMPARE(workerOfFrame(&frames[i]), fakeWorker(i));
    for (FakeFrame &f : frames)
        unregisterFrame(&f);
    for (FakeFrame &f : frames)
        QCOMPARE(workerOfFrame(&f), nullptr);
}

void tst_FrameRegistry::nullFrameOrWorker_isIgnored()
{
    FakeFrame frame;
    registerFrame(nullptr, fakeWorker(0));
    registerFrame(&frame, nullptr);
    QCOMPARE(workerOfFrame(&frame), nullptr);
    QCOMPARE(workerOfFrame(nullptr), nullptr);
    unregisterFrame(nullptr); // nothing to do, and no harm
}

void tst_FrameRegistry::manyThreads_registerAndUnregisterTheirOwn()
{
    // Frames end on whichever thread resumed them last: registrations, lookups and removals come
    // from any thread, interleaved; each thread must always see exactly its own.
    constexpr int threads = 4;
    constexpr std::size_t perThread = 3000;
    std::vector<std::vector<FakeFrame>> frames(threads, std::vector<FakeFrame>(perThread));
    std::atomic<int> wrong{0};
    std::vector<std::thread> running;
    for (int t = 0; t < threads; ++t) {
        running.emplace_back([&, t] {
            auto &mine = frames[t];
            const auto worker = [t](std::size_t i) { return fakeWorker(std::size_t(t) * perThread + i); };
            for (int round = 0; round < 3; ++round) {
                for (std::size_t i = 0; i < perThread; ++i) {
                    registerFrame(&mine[i], worker(i));
                    if (i % 7 == 0 && workerOfFrame(&mine[i / 2]) != worker(i / 2))
                        ++wrong;
                }
                for (std::size_t i = 0; i < perThread; i += 2)
                    unregisterFrame(&mine[i]);
                for (std::size_t i = 0; i < perThread; ++i) {
                    if (workerOfFrame(&mine[i]) != (i % 2 ? worker(i) : nullptr))
                        ++wrong;
                }
                for (std::size_t i = 1; i < perThread; i += 2)
                    unregisterFrame(&mine[i]);
            }
        });
    }
    for (std::thread &t : running)
        t.join();
    QCOMPARE(wrong.load(), 0);
    for (auto &mine : frames) {
        for (FakeFrame &f : mine)
            QCOMPARE(workerOfFrame(&f), nullptr);
    }
}

QTEST_GUILESS_MAIN(tst_FrameRegistry)
#include "tst_frameregistry.moc"
