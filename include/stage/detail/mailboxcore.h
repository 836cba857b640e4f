#pragma once

// The mailbox machinery. Not API: the names in stage::detail may change.

#include <stage/detail/journal.h>
#include <stage/detail/ringqueue.h>
#include <stage/detail/spinmutex.h>
#include <stage/detail/waiter.h>
#include <stage/reply.h>

#include <QtCore/QStringList>
#include <QtCore/QString>

#include <atomic>
#include <condition_variable>
#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace stage {

class MailboxBase;

namespace detail {

class WorkerCore;

/* True when \a worker (may be null) was asked to stop because it was judged faulty (a group's
   heartbeat watchdog): its end is a failure, also for the message it held. */
STAGE_EXPORT bool isStoppedAsFaulty(const WorkerCore *worker) noexcept;

/* How many dead letters a mailbox keeps by default (Mailbox::deadLetterLimit()). */
constexpr int DefaultDeadLetterLimit = 1000;

/* The throttle of the "dropped dead letters" log line (under the dead letters' mutex). */
struct DeadLetterDropLog
{
    qint64 lastLineNs = 0;   // steady clock of the last line; 0: none yet
    qint64 notLogged = 0;    // drops since that line
};

/*
    What does not depend on T: capacity, counters, the QObject side and its coalesced
    notifications, the reasons of dead letters. Locks: inMutex guards the producer side (the
    incoming queue, the waiting consumers and senders, closing), outMutex the consumer side; when
    both are taken, outMutex first.
*/
class STAGE_EXPORT MailboxCoreBase : public std::enable_shared_from_this<MailboxCoreBase>
{
public:
    MailboxCoreBase(int capacity, QObject *parent);
    virtual ~MailboxCoreBase();
    MailboxCoreBase(const MailboxCoreBase &) = delete;
    MailboxCoreBase &operator=(const MailboxCoreBase &) = delete;

    /* Creates the QObject side now if it gets a \a parent; otherwise object() creates it on
       first use. Called once by the handle after construction. */
    void createObject(QObject *parent);
    /* The QObject side; created on first use (on the calling thread) if it had no parent. */
    MailboxBase *object();

    int capacity() const noexcept { return m_capacity; }
    bool isBounded() const noexcept { return m_capacity > 0; }
    bool isClosed() const noexcept { return m_closed.load(std::memory_order_acquire); }
    /* A durable or distributed mailbox: a journal keeps its messages (fixed at construction). */
    bool isJournaled() const noexcept { return m_journaled; }
    /* Messages queued now (not counting those held by consumers). */
    virtual int count() const noexcept = 0;
    /* The counters (they live in the typed core, where its layout wants them). */
    virtual void counters(qint64 &queued, qint64 &delivered, qint64 &acknowledged, qint64 &redelivered,
                          qint64 &deadLettered, qint64 &deadLettersDropped) const noexcept = 0;
    int maxRedeliveries() const noexcept { return m_maxRedeliveries.load(std::memory_order_relaxed); }
    /* Validates, stores and notifies. Any thread. */
    void changeMaxRedeliveries(int n);
    /* Validates, stores (dropping the oldest letters beyond it) and notifies. Any thread. */
    void changeDeadLetterLimit(int n);

    virtual void close() = 0;
    virtual int deadLetterCount() const = 0;
    /* The reasons of the dead letters kept now, oldest first (not taken). */
    virtual QStringList deadLetterReasons() const = 0;
    virtual int deadLetterLimit() const = 0;

    /* Coalesced: at most one QObject notification per turn of the object's event loop, and none
       at all while nobody is connected to the object's signals. Any thread. */
    void noteChanged() noexcept
    {
        if (m_watched.load(std::memory_order_relaxed))
            postNotification();
    }
    void setWatched(bool watched) noexcept { m_watched.store(watched, std::memory_order_relaxed); }
    void notificationDelivered() noexcept { m_notifyPending.store(false, std::memory_order_release); }
    void objectDestroyed() noexcept;

    /* Settles the dead letter \a letter once (later calls do nothing): sets its reason to
       \a reason if given, then fails the replies it carries with that reason. */
    virtual void settleDeadLetter(quint64 letter, const QString *reason) = 0;

protected:
    /* Called by the typed core after it dead-lettered \a letter in \a worker's body (null: not
       known). The letter is settled with the worker's failure as its reason when the body ends,
       which is at once when the failure escapes it; if the body caught it and goes on, a job
       posted to \a worker's thread settles it at the next turn of its event loop
       (\a postSettle: only when it carries replies). No worker: settled now. */
    void scheduleDeadLetterSettle(quint64 letter, WorkerCore *worker, bool postSettle);
    /* Virtual stores of the typed core: false if unchanged. */
    virtual bool storeDeadLetterLimit(int n) = 0;
    void logDeadLetter(int failures);
    /* Emits \a signal(\a value) of the QObject side, if any: at once on its thread, queued from others. */
    void emitOnObject(void (MailboxBase::*signal)(int), int value);
    /* \a dropped letters were dropped to keep \a limit; under the dead letters' mutex, returns
       whether to log (at most one line a second) and how many the line covers. */
    static bool dropLogDue(DeadLetterDropLog &log, qint64 dropped, qint64 &lineCount) noexcept;
    void logDeadLettersDropped(qint64 count, int limit, qint64 total);

    // The layout is by cache line, for a core allocated by Mailbox: a pool block that starts a
    // line, with the 16-byte shared_ptr control block in front (libstdc++), whose counts the
    // consumer changes at each message (each Delivery holds a reference). Line 0 is those counts
    // and the first 48 bytes here, which neither side touches per message; line 1 starts with
    // the three fields that both sides read at each message and nobody writes then (closed,
    // watched, capacity). The typed core's lines follow; see there.
private:
    MailboxBase *m_object = nullptr;

protected:
    std::atomic<int> m_maxRedeliveries{3};
    mutable SpinMutex auxMutex; // the QObject side (against its destruction on its thread), dead letters

private:
    void postNotification() noexcept;

    std::atomic<bool> m_notifyPending{false};
    bool m_ownsObject : 1 = false;
    bool m_objectGone : 1 = false; // deleted by its parent: not recreated

protected:
    std::atomic<bool> roomSignalled{false}; // written once per sleep of a blocked sender, and its wake-up

private:
    char m_padLine0[5];                     // the rest of line 0

protected:
    // Line 1:
    std::atomic<bool> m_closed{false};

private:
    std::atomic<bool> m_watched{false};

protected:
    bool m_journaled = false; // set by the typed core's constructor, before the core is shared
    const int m_capacity; // > 0 bounded, -1 unbounded
};

STAGE_EXPORT int checkedCapacity(int capacity);
STAGE_EXPORT std::exception_ptr mailboxClosedError(const char *function);
[[noreturn]] STAGE_EXPORT void throwMailboxClosed(const char *function);

/* A send or flush to a journaled mailbox waiting for its journal's commit (JournalBase::whenDurable). */
class CommitWaiter final : public Waiter
{};

template<typename T>
struct MailboxItem
{
    T value;
    quint32 failures = 0;   // times a consumer failed while holding it
    quint32 deliveries = 0; // times it was handed to a consumer
    quint64 id = 0;         // the journal's id (a journaled mailbox), else 0
};

template<typename T>
struct DeadLetterRecord
{
    quint64 id;
    T value;
    QString reason;
    int failures;
    bool settled = false; // its replies failed (and its reason final)
    quint64 journalId = 0; // its message's id in the journal (a journaled mailbox)
};

template<typename T>
class MailboxCore final : public MailboxCoreBase
{
public:
    using Item = MailboxItem<T>;

    using Record = DeadLetterRecord<T>;
    // The dead letters, allocated by the first one or by a limit set (the pointer under
    // auxMutex, written once): most mailboxes never have one, and every idle worker may own a
    // mailbox (W4). Their own mutex, not auxMutex: the replies are failed under it.
    struct DeadLetters
    {
        std::mutex mutex;
        std::deque<Record> records; // oldest first
        quint64 lastId = 0;
        std::atomic<int> limit{DefaultDeadLetterLimit}; // written under mutex
        DeadLetterDropLog dropLog;
        // A journaled mailbox's journal: here, created with the core, so that an in-memory
        // mailbox pays nothing for it (the core's lines are full). Never changes.
        std::shared_ptr<Journal<T>> journal;
    };
    // What a send to a journaled mailbox carries through the push: its bytes (encoded before
    // any lock is taken), then the commit ticket its append got.
    struct Outgoing
    {
        QByteArray bytes;
        quint64 ticket = 0;
        bool encoded = false;
    };
    enum class Push { Sent, Full, Closed };

    // A consumer waiting for a message; a producer hands the message over through it.
    class ReceiveWaiter final : public Waiter
    {
    public:
        explicit ReceiveWaiter(std::shared_ptr<MailboxCore> c) : core(std::move(c)) {}
        ~ReceiveWaiter() override
        {
            if (item) // handed over, but the consumer's thread ended before it resumed
                core->requeueFront(std::move(*item));
        }
        std::shared_ptr<MailboxCore> core;
        std::optional<Item> item;
        ReceiveWaiter *nextWaiting = nullptr; // in core's list of waiting consumers (inMutex)

    private:
        void disarm() noexcept override { core->unlistConsumer(this); }
    };

    // A coroutine waiting for room; a consumer moves its value into the queue.
    class SendWaiter final : public Waiter
    {
    public:
        SendWaiter(std::shared_ptr<MailboxCore> c, T &&v, Outgoing &&o)
            : core(std::move(c)), value(std::move(v)), out(std::move(o))
        {}
        std::shared_ptr<MailboxCore> core;
        std::optional<T> value; // empty once queued
        Outgoing out;           // a journaled mailbox's
        SendWaiter *nextWaiting = nullptr; // in core's list of waiting senders (inMutex)

    private:
        void disarm() noexcept override { core->unlistSender(this); }
    };

    MailboxCore(int capacity, QObject *parent) : MailboxCoreBase(capacity, parent) {}
    /* A journaled mailbox (Stage::Durable, Stage::Redis; see detail/journal.h). */
    MailboxCore(int capacity, QObject *parent, std::shared_ptr<Journal<T>> journal)
        : MailboxCoreBase(capacity, parent)
    {
        dead = std::make_unique<DeadLetters>();
        dead->journal = std::move(journal);
        m_journaled = true;
    }

    /* A journaled mailbox's journal (isJournaled() only). Any thread. */
    Journal<T> *journal() const noexcept { return dead->journal.get(); }

    /* Messages queued: pushed (written under the producer lock) minus taken (under the consumer
       lock); two single-writer counters on two cache lines, instead of one both sides write. */
    int count() const noexcept override
    {
        return int(m_pushed.load(std::memory_order_seq_cst) - m_taken.load(std::memory_order_seq_cst));
    }
    void counters(qint64 &q, qint64 &d, qint64 &a, qint64 &r, qint64 &dl, qint64 &dd) const noexcept override
    {
        q = queued.load(std::memory_order_relaxed);
        d = delivered.load(std::memory_order_relaxed);
        a = acknowledged.load(std::memory_order_relaxed);
        r = redelivered.load(std::memory_order_relaxed);
        dl = deadLettered.load(std::memory_order_relaxed);
        dd = deadLettersDropped.load(std::memory_order_relaxed);
    }

    ~MailboxCore() override
    {
        checkLayout();
        if (const std::size_t lost = in.size() + out.size(); lost && !isJournaled()) // a journal keeps them
            logLost(lost);
        if (dead) { // the letters die with the mailbox: their callers hear why, not just "broken"
            std::lock_guard lock(dead->mutex);
            for (auto &record : dead->records)
                settleLocked(record);
        }
    }

    // Producer side ---------------------------------------------------------------------------

    bool isFull() const noexcept { return isBounded() && count() >= m_capacity; }

    /* inMutex held: true if one more message fits. Reads the consumers' counter only when the
       room counted at the last look is used up. */
    bool takeRoomLocked() noexcept
    {
        if (!isBounded())
            return true;
        if (roomCredit <= 0) {
            roomCredit = m_capacity - count();
            if (roomCredit <= 0)
                return false;
        }
        --roomCredit;
        return true;
    }

    /* Queues \a value (moved from only on Sent). A journaled mailbox encodes it first (into
       \a out, given or not; the journal's encode() may throw: nothing queued), appends it (the
       ticket in \a out) and queues it locally if its journal does. */
    Push tryPush(T &value, Outgoing *out = nullptr)
    {
        Outgoing local;
        if (isJournaled()) [[unlikely]]
            out = encode(value, out ? out : &local);
        {
            std::lock_guard lock(inMutex);
            if (isClosed())
                return Push::Closed;
            if (isJournaled() && !journal()->queuesLocally()) [[unlikely]] {
                appendRemoteLocked(*out);
            } else {
                if (!takeRoomLocked())
                    return Push::Full;
                pushLocked(Item{std::move(value)}, out);
            }
        }
        noteChanged();
        return Push::Sent;
    }

    /* Encodes \a value into \a out unless done already (a retried push). */
    Outgoing *encode(const T &value, Outgoing *out)
    {
        if (!out->encoded) {
            out->bytes = journal()->encode(value);
            out->encoded = true;
        }
        return out;
    }

    /* Blocks the calling thread while full, until \a deadline. */
    template<typename Clock, typename Duration>
    Push pushBlocking(T &value, std::chrono::time_point<Clock, Duration> deadline, Outgoing *out = nullptr)
    {
        Outgoing local;
        if (isJournaled()) [[unlikely]] {
            out = encode(value, out ? out : &local);
            if (!journal()->queuesLocally()) // nothing queued here: never full
                return tryPush(value, out);
        }
        {
            std::unique_lock lock(inMutex);
            while (!isClosed() && !takeRoomLocked()) {
                // The consumer usually drains on the other core: spin a little (unlocked)
                // before paying for a sleep and a wake-up.
                lock.unlock();
                const auto spinUntil = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
                for (int i = 0; isFull() && !isClosed(); ++i) {
                    // Yield rather than pause: if the consumer shares this core, it must run.
                    std::this_thread::yield();
                    if ((i & 7) == 7 && std::chrono::steady_clock::now() > spinUntil)
                        break;
                }
                lock.lock();
                if (isClosed() || !isFull())
                    continue;
                // Announce the sleep, then look again: a consumer bumps its counter without this
                // lock, then looks for sleepers (seq_cst on both sides: one sees the other).
                blockedSenders.fetch_add(1, std::memory_order_seq_cst);
                roomSignalled.store(false, std::memory_order_seq_cst); // a stale signal would hide this sleep
                if (!isFull()) {
                    blockedSenders.fetch_sub(1, std::memory_order_seq_cst);
                    continue;
                }
                if (!room)
                    room = std::make_unique<std::condition_variable_any>();
                bool timedOut = false;
                if (deadline == std::chrono::time_point<Clock, Duration>::max())
                    room->wait(lock);
                else
                    timedOut = room->wait_until(lock, deadline) == std::cv_status::timeout;
                blockedSenders.fetch_sub(1, std::memory_order_seq_cst);
                if (timedOut && isFull() && !isClosed())
                    return Push::Full;
            }
            if (isClosed())
                return Push::Closed;
            pushLocked(Item{std::move(value)}, out);
        }
        noteChanged();
        return Push::Sent;
    }

    /* Home thread, from await_suspend: queues the waiter's value if there is room by now, else
       lists it. False: no need to suspend. */
    bool waitForRoom(SendWaiter *waiter)
    {
        std::lock_guard lock(inMutex);
        if (waiter->isClaimed())
            return true; // stopped meanwhile: the resumption is posted
        // Announced before the last look, as in pushBlocking().
        waitingSenders.fetch_add(1, std::memory_order_seq_cst);
        if (isClosed() || takeRoomLocked()) {
            waitingSenders.fetch_sub(1, std::memory_order_seq_cst);
            // The worker's stop claims without this lock: it may have won since the look above.
            if (!waiter->claim()) {
                if (!isClosed() && isBounded())
                    ++roomCredit; // the room taken goes back
                return true; // the stop's resumption is posted
            }
            if (!isClosed())
                return !pushWaiterLocked(waiter, false); // a journaled one waits for its commit
            return false;
        }
        waiter->ref();
        senders.push(waiter);
        return true;
    }

    void unlistSender(SendWaiter *waiter) noexcept { unlist(senders, waitingSenders, waiter); }

    // Consumer side ---------------------------------------------------------------------------

    /* Takes the next message, if any (delivered: counted by the caller). */
    std::optional<Item> tryTake()
    {
        std::optional<Item> item;
        {
            std::lock_guard lock(outMutex);
            if (out.empty()) {
                std::lock_guard inLock(inMutex);
                if (in.empty())
                    return std::nullopt;
                out.swap(in); // the whole batch in one lock of the producer side
            }
            item.emplace(std::move(out.front()));
            out.pop_front();
            // seq_cst, then afterTake() looks for sleeping senders (they announce, then look).
            m_taken.store(m_taken.load(std::memory_order_relaxed) + 1, std::memory_order_seq_cst);
            if (waitingConsumers.load(std::memory_order_relaxed) > 0 && !out.empty())
                chainWakeLocked(); // more work and idle consumers: pass some on
        }
        afterTake();
        return item;
    }

    /* Home thread, from await_suspend: hands a message over at once if one arrived by now, else
       lists the waiter. False: no need to suspend. */
    bool waitForMessage(ReceiveWaiter *waiter)
    {
        {
            std::lock_guard lock(outMutex);
            std::lock_guard inLock(inMutex);
            if (waiter->isClaimed())
                return true; // stopped meanwhile: the resumption is posted
            if (out.empty() && !in.empty())
                out.swap(in);
            if (out.empty()) {
                if (isClosed()) // await_resume reports the close, unless a stop won since the look above
                    return !waiter->claim();
                waiter->ref();
                consumers.push(waiter);
                waitingConsumers.fetch_add(1, std::memory_order_relaxed);
                return true;
            }
            // A message arrived meanwhile: it is this waiter's now, taken under the locks (a
            // consumer on another thread could take it before await_resume() otherwise, and
            // this one would find an open mailbox empty). Unless the worker's stop, which claims
            // without these locks, won since the look above: its resumption is posted, and the
            // message stays for another consumer (resuming here as well would resume the frame
            // twice: a crash found by tst_mailboxstress, about one run in 40).
            if (!waiter->claim())
                return true;
            waiter->item.emplace(std::move(out.front()));
            out.pop_front();
            m_taken.store(m_taken.load(std::memory_order_relaxed) + 1, std::memory_order_seq_cst);
            if (!consumers.empty() && !out.empty() && handOffLocked(out.front())) {
                out.pop_front();
                m_taken.store(m_taken.load(std::memory_order_relaxed) + 1, std::memory_order_seq_cst);
            }
        }
        afterTake();
        return false;
    }

    void unlistConsumer(ReceiveWaiter *waiter) noexcept { unlist(consumers, waitingConsumers, waiter); }

    /* Puts a message back at the front: its consumer failed or stopped while holding it. */
    void requeueFront(Item &&item)
    {
        {
            std::lock_guard lock(outMutex);
            std::lock_guard inLock(inMutex);
            if (isJournaled()) [[unlikely]]
                journal()->requeued(item.id, item.failures);
            if (!handOffLocked(item)) {
                out.push_front(std::move(item)); // may exceed the capacity: nothing is dropped
                m_pushed.store(m_pushed.load(std::memory_order_relaxed) + 1, std::memory_order_seq_cst);
            }
        }
        noteChanged();
    }

    /* The cold path of a Delivery unwinding: moves \a item to the dead letters (dropping the
       oldest beyond the limit) and arranges for its replies to fail (see
       scheduleDeadLetterSettle()). \a faulty: its consumer was stopped as faulty. */
    void deadLetter(Item &&item, WorkerCore *worker, bool faulty)
    {
        DeadLetters &d = deadLetters();
        const int failures = int(item.failures);
        quint64 id;
        std::deque<Record> dropped;
        bool kept;
        {
            std::lock_guard lock(d.mutex);
            id = ++d.lastId;
            d.records.push_back(Record{id, std::move(item.value),
                                       faulty ? QStringLiteral("its consumer was stopped as faulty while holding it")
                                              : QStringLiteral("its consumer failed while holding it"),
                                       failures, false, item.id});
            dropOverflowLocked(d, dropped);
            kept = dropped.empty() || dropped.back().id != id;
        }
        deadLettered.fetch_add(1, std::memory_order_relaxed);
        logDeadLetter(failures);
        settleDropped(d, dropped);
        if (kept)
            scheduleDeadLetterSettle(id, worker, CarriesReplies<T>);
        noteChanged();
    }

    /* Settles what is not settled yet (the replies fail with the reason known now), then hands
       every letter over. */
    std::vector<Record> takeDeadLetters()
    {
        DeadLetters *d = deadLettersIfAny();
        if (!d)
            return {};
        std::vector<Record> letters;
        {
            std::lock_guard lock(d->mutex);
            letters.reserve(d->records.size());
            for (auto &record : d->records) {
                settleLocked(record);
                letters.push_back(std::move(record));
            }
            d->records.clear();
        }
        if (isJournaled()) [[unlikely]]
            noteDeadLettersRemoved(letters);
        return letters;
    }

    int deadLetterCount() const override
    {
        DeadLetters *d = deadLettersIfAny();
        if (!d)
            return 0;
        std::lock_guard lock(d->mutex);
        return int(d->records.size());
    }

    QStringList deadLetterReasons() const override
    {
        QStringList reasons;
        DeadLetters *d = deadLettersIfAny();
        if (!d)
            return reasons;
        std::lock_guard lock(d->mutex);
        reasons.reserve(qsizetype(d->records.size()));
        for (const auto &record : d->records)
            reasons.append(record.reason);
        return reasons;
    }

    int deadLetterLimit() const override
    {
        DeadLetters *d = deadLettersIfAny();
        return d ? d->limit.load(std::memory_order_relaxed) : DefaultDeadLetterLimit;
    }

    void settleDeadLetter(quint64 letter, const QString *reason) override
    {
        DeadLetters *d = deadLettersIfAny();
        if (!d)
            return;
        std::lock_guard lock(d->mutex);
        // Newest last, and the one wanted is usually among the newest.
        for (auto it = d->records.rbegin(); it != d->records.rend(); ++it) {
            if (it->id == letter) {
                if (!it->settled && reason)
                    it->reason = *reason;
                settleLocked(*it);
                return;
            }
            if (it->id < letter)
                return; // ids grow from front to back: taken or dropped already
        }
    }

    void close() override
    {
        // Claimed and posted under the lock, as in handOffLocked(): a listed waiter cannot resume
        // (its disarm() takes this lock), so no reference dropped here is the last one.
        std::exception_ptr closedError;
        {
            std::lock_guard lock(inMutex);
            if (isClosed())
                return;
            m_closed.store(true, std::memory_order_release);
            while (ReceiveWaiter *w = consumers.pop()) { // they drain what is left, then get MailboxClosed
                if (w->claim())
                    w->publish(Waiter::Outcome::Value);
                w->deref();
            }
            while (SendWaiter *w = senders.pop()) {
                if (!closedError)
                    closedError = mailboxClosedError("Mailbox::send");
                w->settleError(closedError);
                w->deref();
            }
            waitingConsumers.store(0, std::memory_order_relaxed);
            waitingSenders.store(0, std::memory_order_relaxed);
            if (room)
                room->notify_all();
        }
        if (isJournaled()) [[unlikely]]
            journal()->mailboxClosed();
        noteChanged();
    }

    // Journaled mailboxes ---------------------------------------------------------------------

    /* A Delivery was made of \a item (its deliveries counted already). */
    void noteDelivered(const Item &item) noexcept
    {
        if (isJournaled()) [[unlikely]]
            journal()->delivered(item.id);
    }
    /* A Delivery of message \a id was acknowledged. */
    void noteAcknowledged(quint64 id) noexcept
    {
        acknowledged.fetch_add(1, std::memory_order_relaxed);
        if (isJournaled()) [[unlikely]]
            journal()->acknowledged(id);
        noteChanged();
    }
    /* \a item was taken to be dropped by a policy (stage::connect()'s DropOldest). */
    void noteDropped(const Item &item) noexcept
    {
        if (isJournaled()) [[unlikely]]
            journal()->dropped(item.id);
    }

    /* The journal's feed: queues \a item at the back (or hands it to a waiting consumer),
       beyond the capacity if need be. False if the mailbox is closed (the item is left). */
    bool inject(Item &item)
    {
        {
            std::lock_guard lock(inMutex);
            if (isClosed())
                return false;
            queued.store(queued.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
            if (consumers.empty() || !handOffLocked(item)) {
                in.push_back(std::move(item));
                m_pushed.store(m_pushed.load(std::memory_order_relaxed) + 1, std::memory_order_seq_cst);
            }
        }
        noteChanged();
        return true;
    }

    /* A dead letter the journal kept: settled already (its replies, if any, are long gone). */
    void injectDeadLetter(T &&value, quint64 id, quint32 failures, const QString &reason)
    {
        DeadLetters &d = deadLetters();
        std::deque<Record> dropped;
        {
            std::lock_guard lock(d.mutex);
            d.records.push_back(Record{++d.lastId, std::move(value), reason, int(failures), true, id});
            dropOverflowLocked(d, dropped);
        }
        settleDropped(d, dropped);
        noteChanged();
    }

    /* A journaled send: publishes \a waiter (claimed) once \a ticket is durable. */
    void publishWhenDurable(quint64 ticket, Waiter *waiter) noexcept
    {
        try {
            journal()->whenDurable(ticket, waiter);
        } catch (...) {
            waiter->publishError(std::current_exception());
        }
    }

    /* A FIFO of waiters linked through their nextWaiting (inMutex): no allocation to wait. A
       waiter is listed while it has a successor or is the last one. */
    template<typename W>
    struct WaitList
    {
        W *head = nullptr;
        W *tail = nullptr;

        bool empty() const noexcept { return !head; }
        bool contains(const W *w) const noexcept { return w->nextWaiting || tail == w; }
        void push(W *w) noexcept
        {
            w->nextWaiting = nullptr;
            (tail ? tail->nextWaiting : head) = w;
            tail = w;
        }
        W *pop() noexcept
        {
            W *w = head;
            if (w) {
                head = w->nextWaiting;
                if (!head)
                    tail = nullptr;
                w->nextWaiting = nullptr;
            }
            return w;
        }
        void remove(W *w) noexcept // w is listed
        {
            W *previous = nullptr;
            for (W *p = head; p != w; p = p->nextWaiting)
                previous = p;
            (previous ? previous->nextWaiting : head) = w->nextWaiting;
            if (tail == w)
                tail = previous;
            w->nextWaiting = nullptr;
        }
    };

    // Lines 1 to 3 of the block (see MailboxCoreBase): what the producers write per message and
    // what the consumer writes (or reads) per message each have a line of their own, so that
    // neither side's writes take the other's line away. Mailbox allocates the core with
    // PoolAllocator<..., 64>, which puts the control block and the core in 256 bytes (4 lines)
    // that start a line; static_asserts in checkLayout() hold the offsets. (Allocated another
    // way, a sanitizer build's core works the same, with lines shared at random.) Small, because
    // every idle worker of a group may own a mailbox (W4).

    // Line 1, after the base class's fields that both sides read (neither side per message):
    std::unique_ptr<std::condition_variable_any> room; // blocked (thread) senders; created by the first
    WaitList<SendWaiter> senders;                // inMutex; each holds a reference
    std::unique_ptr<DeadLetters> dead;           // auxMutex (written once)
    std::atomic<qint64> redelivered{0};          // the rare counters
    std::atomic<qint64> deadLettered{0};
    std::atomic<qint64> deadLettersDropped{0};
    // Line 2, the producers per message:
    std::atomic<qint64> m_pushed{0};             // inMutex
    std::atomic<qint64> queued{0};               // inMutex
    SpinMutex inMutex;
    int roomCredit = 0;                          // inMutex; room known without reading the consumers' counter
    RingQueue<Item> in;                          // inMutex
    WaitList<ReceiveWaiter> consumers;           // inMutex; each holds a reference; read per push
    // Line 3, the consumer per message (the three counts of waiters are read at each take and
    // written when a side starts or stops waiting):
    SpinMutex outMutex;
    std::atomic<int> waitingConsumers{0};
    std::atomic<int> waitingSenders{0};
    std::atomic<int> blockedSenders{0};
    std::atomic<qint64> m_taken{0};              // outMutex
    std::atomic<qint64> delivered{0};
    std::atomic<qint64> acknowledged{0};
    RingQueue<Item> out;                         // outMutex

private:
    // The offsets the comment above the fields describes, for this ABI's types (the object
    // starts 16 bytes into its line-aligned block). Compilers that lay out differently skip it.
    static constexpr void checkLayout() noexcept
    {
#if defined(__GLIBCXX__) && defined(__x86_64__)
        QT_WARNING_PUSH
        QT_WARNING_DISABLE_GCC("-Winvalid-offsetof")
        QT_WARNING_DISABLE_CLANG("-Winvalid-offsetof")
        constexpr std::size_t line = 64, front = 16; // the control block
        static_assert((offsetof(MailboxCore, m_closed) + front) / line == 1);
        static_assert((offsetof(MailboxCore, m_capacity) + sizeof(int) - 1 + front) / line == 1);
        static_assert((offsetof(MailboxCore, m_pushed) + front) % line == 0);
        static_assert(offsetof(MailboxCore, consumers) + sizeof(consumers) - offsetof(MailboxCore, m_pushed) == line);
        static_assert((offsetof(MailboxCore, outMutex) + front) % line == 0);
        static_assert(offsetof(MailboxCore, out) + sizeof(out) - offsetof(MailboxCore, outMutex) == line);
        static_assert(offsetof(MailboxCore, deadLettersDropped) + sizeof(deadLettersDropped) + front <= 2 * line);
        static_assert(sizeof(MailboxCore) + front <= 4 * line);
        QT_WARNING_POP
#endif
    }

    // Home thread, when a waiter resumes: drops it from its list if it is still there.
    template<typename W>
    void unlist(WaitList<W> &list, std::atomic<int> &waiting, W *waiter) noexcept
    {
        std::lock_guard lock(inMutex);
        if (!list.contains(waiter))
            return;
        list.remove(waiter);
        waiting.fetch_sub(1, std::memory_order_relaxed);
        waiter->deref();
    }

    // inMutex held; room already taken. A journaled mailbox appends first (\a out: encoded); if
    // the append throws, the room goes back and nothing is queued.
    void pushLocked(Item &&item, Outgoing *out = nullptr)
    {
        if (isJournaled()) [[unlikely]] {
            try {
                item.id = journal()->append(std::move(out->bytes), out->ticket);
            } catch (...) {
                if (isBounded())
                    ++roomCredit;
                throw;
            }
        }
        queued.store(queued.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        if (!consumers.empty() && handOffLocked(item)) {
            ++roomCredit; // handed over: it never occupied the queue
            return;
        }
        in.push_back(std::move(item));
        m_pushed.store(m_pushed.load(std::memory_order_relaxed) + 1, std::memory_order_seq_cst);
    }

    // inMutex held: a send to a journal that does not queue locally (Redis): appended only.
    void appendRemoteLocked(Outgoing &out)
    {
        journal()->append(std::move(out.bytes), out.ticket);
        queued.store(queued.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    }

    // inMutex held, \a waiter claimed, room taken: queues its value. In-memory: published now if
    // \a publish. Journaled: published once its append is durable, whatever \a publish says;
    // an append that throws publishes the error. True if it was queued and is not published
    // (a journaled one waits for its commit, or \a publish was false).
    bool pushWaiterLocked(SendWaiter *w, bool publish)
    {
        try {
            pushLocked(Item{std::move(*w->value)}, &w->out);
        } catch (...) {
            w->publishError(std::current_exception()); // the room went back in pushLocked()
            return false;
        }
        w->value.reset();
        if (isJournaled()) [[unlikely]] {
            publishWhenDurable(w->out.ticket, w);
            return false;
        }
        if (publish)
            w->publish(Waiter::Outcome::Value);
        return true;
    }

    // inMutex held. Consumers wait only while both queues are empty, so handing over keeps FIFO.
    bool handOffLocked(Item &item)
    {
        while (ReceiveWaiter *w = consumers.pop()) {
            waitingConsumers.fetch_sub(1, std::memory_order_relaxed);
            if (w->claim()) {
                w->item.emplace(std::move(item));
                w->publish(Waiter::Outcome::Value);
                w->deref();
                return true;
            }
            w->deref(); // it was stopped: its resumption is on its way
        }
        return false;
    }

    // outMutex held, out non-empty.
    void chainWakeLocked()
    {
        std::lock_guard inLock(inMutex);
        if (!consumers.empty() && handOffLocked(out.front())) {
            out.pop_front(); // it left the queue: counted as taken, or count() would drift up
            m_taken.store(m_taken.load(std::memory_order_relaxed) + 1, std::memory_order_seq_cst);
        }
    }

    // After a take: room for whoever waits to send (exact: every take makes room for one).
    void afterTake()
    {
        if (!isBounded())
            return;
        if (waitingSenders.load(std::memory_order_seq_cst) > 0) {
            std::lock_guard lock(inMutex);
            while (!senders.empty() && takeRoomLocked()) {
                SendWaiter *w = senders.pop();
                waitingSenders.fetch_sub(1, std::memory_order_relaxed);
                if (w->claim()) {
                    pushWaiterLocked(w, true);
                } else {
                    ++roomCredit; // it was stopped: the room goes to the next one
                }
                w->deref();
            }
        }
        // Blocked threads: one wake-up per sleep (roomSignalled), not one system call per take.
        if (blockedSenders.load(std::memory_order_seq_cst) > 0
            && !roomSignalled.exchange(true, std::memory_order_seq_cst)) {
            std::lock_guard lock(inMutex);
            if (room)
                room->notify_all();
        }
    }

    // The dead letters, created by the first use.
    DeadLetters &deadLetters()
    {
        std::lock_guard lock(auxMutex);
        if (!dead)
            dead = std::make_unique<DeadLetters>();
        return *dead;
    }
    DeadLetters *deadLettersIfAny() const noexcept
    {
        std::lock_guard lock(auxMutex);
        return dead.get();
    }

    // Under d.mutex: moves the oldest letters beyond the limit to \a dropped.
    void dropOverflowLocked(DeadLetters &d, std::deque<Record> &dropped)
    {
        const std::size_t limit = std::size_t(d.limit.load(std::memory_order_relaxed));
        while (d.records.size() > limit) {
            dropped.push_back(std::move(d.records.front()));
            d.records.pop_front();
        }
    }

    // Not locked: the letters are the caller's. Fails their replies, counts and logs the drop.
    void settleDropped(DeadLetters &d, std::deque<Record> &dropped)
    {
        if (dropped.empty())
            return;
        for (auto &record : dropped)
            settleLocked(record);
        if (isJournaled()) [[unlikely]]
            noteDeadLettersRemoved(dropped);
        const qint64 total = deadLettersDropped.fetch_add(qint64(dropped.size()), std::memory_order_relaxed)
            + qint64(dropped.size());
        qint64 lineCount = 0;
        bool log;
        {
            std::lock_guard lock(d.mutex);
            log = dropLogDue(d.dropLog, qint64(dropped.size()), lineCount);
        }
        if (log)
            logDeadLettersDropped(lineCount, d.limit.load(std::memory_order_relaxed), total);
        dropped.clear(); // their messages are destroyed here, outside every lock
    }

    // Tells the journal that \a letters left the dead letters.
    template<typename Letters>
    void noteDeadLettersRemoved(const Letters &letters) noexcept
    {
        try {
            std::vector<quint64> ids;
            ids.reserve(letters.size());
            for (const auto &record : letters)
                if (record.journalId)
                    ids.push_back(record.journalId);
            if (!ids.empty())
                journal()->deadLettersRemoved(ids);
        } catch (...) {
            // No memory for the list: the journal keeps them, to be shown again at its next open.
        }
    }

    // The letter's own (under its dead letters' mutex, or the caller's alone): its replies fail
    // once, with its reason as it is now; a journaled mailbox's journal records it with it.
    void settleLocked(Record &record) noexcept
    {
        if (record.settled)
            return;
        record.settled = true;
        if (isJournaled()) [[unlikely]]
            journal()->deadLettered(record.journalId, quint32(record.failures), record.reason);
        if constexpr (CarriesReplies<T>) {
            try {
                const DeadLettered why(record.failures, record.reason.toStdString());
                failReplies(record.value, why);
            } catch (...) {
                // A hook that throws (or no memory for the reason): the replies it did not reach
                // stay pending, and break when the letter is dropped.
            }
        }
    }

    bool storeDeadLetterLimit(int n) override
    {
        if (n == DefaultDeadLetterLimit && !deadLettersIfAny())
            return false;
        DeadLetters &d = deadLetters();
        std::deque<Record> dropped;
        {
            std::lock_guard lock(d.mutex);
            if (d.limit.load(std::memory_order_relaxed) == n)
                return false;
            d.limit.store(n, std::memory_order_relaxed);
            dropOverflowLocked(d, dropped);
        }
        settleDropped(d, dropped);
        noteChanged();
        return true;
    }

    void logLost(std::size_t lost);
};

template<typename T>
void MailboxCore<T>::logLost(std::size_t lost)
{
    qCWarning(lcMailbox, "Mailbox: destroyed with %zu message(s) still queued", lost);
}

} // namespace detail
} // namespace stage
