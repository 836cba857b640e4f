#pragma once

#include <stage/detail/mailboxcore.h>
#include <stage/detail/pool.h>
#include <stage/detail/waiter.h>

#include <QtCore/QObject>

#include <chrono>
#include <exception>
#include <memory>
#include <optional>
#include <vector>

namespace stage {

template<typename T>
class Mailbox;
namespace detail {
template<typename T>
class ReceiveAwaitable;
template<typename T>
class SendAwaitable;
template<typename T>
class FlushAwaitable;
struct MailboxAccess;
}

/*! A snapshot of a mailbox's counters. */
class STAGE_EXPORT MailboxStatistics
{
    Q_GADGET
    Q_PROPERTY(qint64 queued MEMBER queued)
    Q_PROPERTY(qint64 delivered MEMBER delivered)
    Q_PROPERTY(qint64 acknowledged MEMBER acknowledged)
    Q_PROPERTY(qint64 redelivered MEMBER redelivered)
    Q_PROPERTY(qint64 deadLettered MEMBER deadLettered)
    Q_PROPERTY(qint64 deadLettersDropped MEMBER deadLettersDropped)

public:
    qint64 queued = 0;       //!< messages accepted by a send (journaled: and those the journal brought in)
    qint64 delivered = 0;    //!< deliveries handed to consumers (a redelivery counts again)
    qint64 acknowledged = 0; //!< deliveries acknowledged
    qint64 redelivered = 0;  //!< deliveries put back because their consumer failed or stopped
    qint64 deadLettered = 0; //!< messages moved to the dead letters (including those dropped since)
    qint64 deadLettersDropped = 0; //!< dead letters dropped, oldest first, to keep the deadLetterLimit
};

/*!
    The QObject side of a stage::Mailbox<T>: properties and signals for signal/slot and QML users.

    Notifications are coalesced: countChanged(), closedChanged() and statisticsChanged() are
    emitted at most once per turn of this object's event loop, with the latest values (a change
    may be skipped, the last one never is), and cost nothing while no one is connected.
    Thread: lives on the thread that created the mailbox; its signals are emitted there.
    Deleting it (for instance through its QObject parent) closes the mailbox; the handles go on
    working, so what was queued can still be drained.
*/
class STAGE_EXPORT MailboxBase : public QObject
{
    Q_OBJECT
    Q_PROPERTY(int count READ count NOTIFY countChanged)
    Q_PROPERTY(int capacity READ capacity CONSTANT)
    Q_PROPERTY(bool closed READ isClosed NOTIFY closedChanged)
    Q_PROPERTY(int maxRedeliveries READ maxRedeliveries WRITE setMaxRedeliveries NOTIFY maxRedeliveriesChanged)
    Q_PROPERTY(int deadLetterCount READ deadLetterCount NOTIFY statisticsChanged)
    Q_PROPERTY(QStringList deadLetterReasons READ deadLetterReasons NOTIFY statisticsChanged)
    Q_PROPERTY(int deadLetterLimit READ deadLetterLimit WRITE setDeadLetterLimit NOTIFY deadLetterLimitChanged)
    Q_PROPERTY(qint64 deadLettersDropped READ deadLettersDropped NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 queued READ queued NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 delivered READ delivered NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 acknowledged READ acknowledged NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 redelivered READ redelivered NOTIFY statisticsChanged)
    Q_PROPERTY(qint64 deadLettered READ deadLettered NOTIFY statisticsChanged)

public:
    ~MailboxBase() override;

    int count() const; //!< Messages queued now (not those held by consumers); NOTIFY countChanged(). Thread: any.
    /*! The capacity, or -1 for an unbounded mailbox. */
    int capacity() const;
    bool isClosed() const; //!< See Mailbox::isClosed(); NOTIFY closedChanged(). Thread: any.
    int maxRedeliveries() const; //!< See Mailbox::maxRedeliveries(). Thread: any.
    void setMaxRedeliveries(int count); //!< See Mailbox::setMaxRedeliveries(); NOTIFY maxRedeliveriesChanged().
    int deadLetterCount() const; //!< Dead letters kept now; NOTIFY statisticsChanged(). Thread: any.
    /*! The reasons of the dead letters kept now, oldest first; they stay (see Mailbox::takeDeadLetters()). */
    QStringList deadLetterReasons() const;
    /*! See Mailbox::deadLetterLimit(). */
    int deadLetterLimit() const;
    void setDeadLetterLimit(int limit); //!< See Mailbox::setDeadLetterLimit(); NOTIFY deadLetterLimitChanged().
    MailboxStatistics statistics() const; //!< All the counters at once (see MailboxStatistics). Thread: any.
    qint64 queued() const; //!< MailboxStatistics::queued; NOTIFY statisticsChanged().
    qint64 delivered() const; //!< MailboxStatistics::delivered; NOTIFY statisticsChanged().
    qint64 acknowledged() const; //!< MailboxStatistics::acknowledged; NOTIFY statisticsChanged().
    qint64 redelivered() const; //!< MailboxStatistics::redelivered; NOTIFY statisticsChanged().
    qint64 deadLettered() const; //!< MailboxStatistics::deadLettered; NOTIFY statisticsChanged().
    qint64 deadLettersDropped() const; //!< MailboxStatistics::deadLettersDropped; NOTIFY statisticsChanged().

    /*! Closes the mailbox (see Mailbox::close()). */
    Q_INVOKABLE void close();

Q_SIGNALS:
    void countChanged(int count);          //!< count() changed (coalesced: see the class).
    void closedChanged(bool closed);       //!< The mailbox was closed (coalesced).
    void statisticsChanged();              //!< A counter or the dead letters changed (coalesced).
    void maxRedeliveriesChanged(int count); //!< maxRedeliveries() changed to \a count.
    void deadLetterLimitChanged(int limit); //!< deadLetterLimit() changed to \a limit.

protected:
    /// \cond internal
    bool event(QEvent *event) override;
    void connectNotify(const QMetaMethod &signal) override;
    /// \endcond

private:
    friend class detail::MailboxCoreBase;
    explicit MailboxBase(std::weak_ptr<detail::MailboxCoreBase> core, QObject *parent);

    std::weak_ptr<detail::MailboxCoreBase> m_core;
    int m_lastCount = 0;
    bool m_lastClosed = false;
};

/*!
    A message handed to a consumer by Mailbox::receive(), which it owns until acknowledged.

    It is acknowledged by ack(), or when it is destroyed normally (in a receive loop: when the
    next iteration begins; also when the body returns normally after a stop). Destroyed by an
    exception unwinding the consumer, it is put back at the front of its mailbox for the next
    consumer instead (at-least-once), and whether that counts against the message is the rule
    of the worker's end (see WorkerExit::Kind):
    \list
    \li The consumer's worker was asked to stop (a shutdown, a sibling's restart, a resize, a
        removal, WorkerHandle::requestStop()): a stop, however the body unwinds, with
        stage::Cancelled or with any other exception thrown on the way out. The message goes
        back uncounted: failures() does not grow, and it is never dead-lettered for it, even with
        maxRedeliveries() 0.
    \li The worker was stopped because it was judged faulty (its group's heartbeat watchdog: it
        hung): a failure. So is any exception when no stop was requested. The message's
        failures() grows, and a message whose consumers failed more than
        Mailbox::maxRedeliveries() times goes to the dead letters with the failure's reason
        (a message that hangs every consumer is dead-lettered too, instead of looping forever).
    \endlist
    Dead-lettering fails the replies the message carries (see Mailbox::takeDeadLetters()).
    Thread: used by the consumer that received it. Move-only.
*/
template<typename T>
class Delivery
{
public:
    /*! Takes over \a other's message; \a other no longer owns one (isAcknowledged() is true for it). */
    Delivery(Delivery &&other) noexcept
        : m_core(std::move(other.m_core)), m_item(std::move(other.m_item)), m_worker(other.m_worker),
          m_uncaught(other.m_uncaught), m_destroyDepth(other.m_destroyDepth)
    {
        other.m_core.reset();
    }
    /*! Releases the message held now (acknowledged, as by destruction), then takes over \a other's. */
    Delivery &operator=(Delivery &&other) noexcept
    {
        if (this != &other) {
            release();
            m_core = std::move(other.m_core);
            m_item = std::move(other.m_item);
            m_worker = other.m_worker;
            m_uncaught = other.m_uncaught;
            m_destroyDepth = other.m_destroyDepth;
            other.m_core.reset();
        }
        return *this;
    }
    ~Delivery() { release(); }

    T &value() noexcept { return m_item.value; }                   //!< The message (a consumer may modify it; a redelivery sees the change).
    const T &value() const noexcept { return m_item.value; }       //!< The message.
    T &operator*() noexcept { return m_item.value; }               //!< The message.
    const T &operator*() const noexcept { return m_item.value; }   //!< The message.
    T *operator->() noexcept { return &m_item.value; }             //!< The message's members.
    const T *operator->() const noexcept { return &m_item.value; } //!< The message's members.

    /*! Acknowledges the message now: it will not be redelivered, whatever happens next. */
    void ack() noexcept
    {
        if (m_core) {
            m_core->noteAcknowledged(m_item.id);
            m_core.reset();
        }
    }
    bool isAcknowledged() const noexcept { return !m_core; } //!< True once ack() was called (or the delivery was moved from).
    /*! How many times this message was handed to a consumer before this delivery. */
    int previousDeliveries() const noexcept { return int(m_item.deliveries) - 1; }
    /*! How many consumers failed while holding this message before. */
    int failures() const noexcept { return int(m_item.failures); }

private:
    friend class Mailbox<T>;
    friend class detail::ReceiveAwaitable<T>;
    Delivery(std::shared_ptr<detail::MailboxCore<T>> core, detail::MailboxItem<T> &&item, detail::WorkerCore *worker)
        : m_core(std::move(core)), m_item(std::move(item)), m_worker(worker), m_uncaught(std::uncaught_exceptions()),
          m_destroyDepth(detail::bodyDestructionDepth())
    {}

    void release() noexcept
    {
        if (!m_core)
            return;
        auto core = std::move(m_core);
        // Destroyed in place by a StopMode::Destroy stop (its worker may be unknown: taken after a
        // foreign co_await), and not made during that destruction: a stop, as an unwinding.
        const bool destroyed = detail::bodyDestructionDepth() > m_destroyDepth;
        if (std::uncaught_exceptions() <= m_uncaught && !destroyed) {
            core->noteAcknowledged(m_item.id);
            return;
        }
        // Unwinding (or a StopMode::Destroy stop destroying the body): the consumer failed or
        // was stopped while holding the message.
        try {
            detail::MailboxItem<T> item = std::move(m_item);
            // A delivery taken after a foreign co_await does not know its worker; the unwinding
            // runs in a Stage resumption, which does.
            detail::WorkerCore *worker = m_worker ? m_worker : detail::currentWorker();
            // A stop is not the message's fault, however the body unwinds; a stop because the
            // worker was judged faulty (it hung on this message, perhaps) is.
            const bool stopRequested = destroyed || detail::isStopRequested(worker);
            const bool faulty = stopRequested && detail::isStoppedAsFaulty(worker);
            const bool stopped = stopRequested && !faulty;
            if (!stopped)
                ++item.failures;
            if (!stopped && int(item.failures) > core->maxRedeliveries()) {
                core->deadLetter(std::move(item), worker, faulty);
            } else {
                core->redelivered.fetch_add(1, std::memory_order_relaxed);
                core->requeueFront(std::move(item));
            }
        } catch (...) {
            // Moving T threw while unwinding: nothing sane is left to do with the message.
        }
    }

    std::shared_ptr<detail::MailboxCore<T>> m_core;
    detail::MailboxItem<T> m_item; // moved from once the delivery is
    detail::WorkerCore *m_worker = nullptr;
    int m_uncaught = 0;
    int m_destroyDepth = 0;
};

/*!
    A message moved to the dead letters, with the reason its last consumer failed. Its replies
    (see stage::failReplies()) have failed with stage::DeadLettered; the rest of it is intact.
*/
template<typename T>
struct DeadLetter
{
    T value;          //!< the message, intact
    QString reason;   //!< why its last consumer failed (the exception's what(), when known)
    int failures = 0; //!< how many consumers failed while holding it
};

/*! The outcome of Mailbox::trySend() and Mailbox::sendBlocking(). */
enum class SendStatus {
    Sent,   //!< queued
    Full,   //!< no room (trySend), or no room before the timeout (sendBlocking); the value is yours
    Closed, //!< the mailbox is closed; the value is yours
};

namespace detail {

STAGE_EXPORT MailboxStatistics statisticsOf(const MailboxCoreBase &core);

template<typename T>
class ReceiveAwaitable : public AwaitableBase
{
    using Core = MailboxCore<T>;
    using Item = MailboxItem<T>;

public:
    explicit ReceiveAwaitable(std::shared_ptr<Core> core) noexcept : m_core(std::move(core)) {}
    ReceiveAwaitable(ReceiveAwaitable &&other) noexcept(std::is_nothrow_move_constructible_v<T>)
        : AwaitableBase(other), m_core(std::move(other.m_core)), m_waiter(std::move(other.m_waiter))
    {
        if (other.m_hasItem)
            setItem(std::move(other.m_item));
    }
    ReceiveAwaitable &operator=(ReceiveAwaitable &&) = delete;
    ~ReceiveAwaitable() { resetItem(); }

    bool await_ready()
    {
        if (AwaitableBase::await_ready())
            return true;
        // The fast path: no suspension while messages are queued.
        if (auto item = m_core->tryTake()) {
            setItem(std::move(*item));
            return true;
        }
        return m_core->isClosed();
    }

    bool await_suspend(std::coroutine_handle<> handle)
    {
        markSuspended();
        m_waiter = makeWaiter<typename Core::ReceiveWaiter>(m_core);
        m_waiter->suspend(handle);
        return m_core->waitForMessage(m_waiter.get());
    }

    [[gnu::always_inline]] Delivery<T> await_resume()
    {
        if (!m_waiter && isStopRequested(currentWorker())) {
            // Not suspended, and stopped (perhaps from another thread after await_ready() took a
            // message on the fast path): the message goes back, undelivered, as in the suspended
            // case below. One look at the stop only: a second one could throw with it taken.
            if (m_hasItem)
                m_core->requeueFront(std::move(m_item));
            throw Cancelled();
        }
        WorkerCore *worker = m_waiter ? m_waiter->worker() : currentWorker();
        if (m_waiter) {
            m_waiter->rethrowIfFailed();
            if (m_waiter->item)
                setItem(std::move(*m_waiter->item));
            m_waiter->item.reset();
            if (isStopRequested(worker)) {
                // Stopped while the message was being handed over: it goes back, undelivered.
                if (m_hasItem)
                    m_core->requeueFront(std::move(m_item));
                throw Cancelled();
            }
        }
        if (!m_hasItem) {
            if (auto item = m_core->tryTake())
                setItem(std::move(*item));
            else
                throwMailboxClosed("Mailbox::receive");
        }
        ++m_item.deliveries;
        m_core->delivered.fetch_add(1, std::memory_order_relaxed);
        m_core->noteDelivered(m_item);
        m_core->noteChanged();
        return Delivery<T>(std::move(m_core), std::move(m_item), worker); // no second reference count
    }

private:
    // An optional<Item> whose flag sits in the tail padding of AwaitableBase: 8 bytes less in
    // every frame suspended on a receive (an idle worker's).
    void setItem(Item &&item)
    {
        resetItem();
        ::new (static_cast<void *>(&m_item)) Item(std::move(item));
        m_hasItem = true;
    }
    void resetItem() noexcept
    {
        if (m_hasItem) {
            m_item.~Item();
            m_hasItem = false;
        }
    }

    bool m_hasItem = false;
    std::shared_ptr<Core> m_core;
    union {
        Item m_item;
    };
    WaiterRef<typename Core::ReceiveWaiter> m_waiter;
};

template<typename T>
class SendAwaitable : public AwaitableBase
{
    using Core = MailboxCore<T>;

public:
    SendAwaitable(std::shared_ptr<Core> core, T &&value) : m_core(std::move(core)), m_value(std::move(value)) {}

    bool await_ready()
    {
        if (AwaitableBase::await_ready())
            return true;
        if (m_core->isJournaled()) [[unlikely]] {
            m_status = m_core->tryPush(*m_value, &m_out); // encode() may throw: nothing queued
            // Queued: not done before its append is durable.
            return m_status == Core::Push::Closed;
        }
        m_status = m_core->tryPush(*m_value);
        return m_status != Core::Push::Full;
    }

    bool await_suspend(std::coroutine_handle<> handle)
    {
        markSuspended();
        if (m_status == Core::Push::Sent) { // journaled, queued: wait for the commit
            m_commit = makeWaiter<CommitWaiter>();
            m_commit->suspend(handle, false); // bounded; a stop now would lose a queued send's outcome
            m_commit->claim();
            m_core->publishWhenDurable(m_out.ticket, m_commit.get());
            return true;
        }
        m_waiter = makeWaiter<typename Core::SendWaiter>(m_core, std::move(*m_value), std::move(m_out));
        m_waiter->suspend(handle);
        return m_core->waitForRoom(m_waiter.get());
    }

    void await_resume()
    {
        if (m_commit) {
            m_commit->rethrowIfFailed(); // a stage::JournalError
            return;
        }
        if (!m_waiter && m_status == Core::Push::Sent)
            return; // queued by await_ready(): a stop requested since then is the next awaitable's
        throwIfStoppedBeforeSuspending();
        if (m_waiter) {
            m_waiter->rethrowIfFailed();
            if (m_waiter->value) // not queued: the mailbox closed meanwhile
                throwMailboxClosed("Mailbox::send");
            return;
        }
        if (m_status == Core::Push::Closed)
            throwMailboxClosed("Mailbox::send");
    }

private:
    std::shared_ptr<Core> m_core;
    std::optional<T> m_value;
    typename Core::Push m_status = Core::Push::Full;
    WaiterRef<typename Core::SendWaiter> m_waiter;
    typename Core::Outgoing m_out;      // a journaled mailbox's
    WaiterRef<CommitWaiter> m_commit;   // a journaled send queued at once, waiting for its commit
};

/* Mailbox::flush(): waits until what was appended to the journal before it is durable. */
template<typename T>
class FlushAwaitable
{
public:
    explicit FlushAwaitable(std::shared_ptr<MailboxCore<T>> core) : m_core(std::move(core)) {}

    bool await_ready()
    {
        if (!m_core->isJournaled())
            return true;
        m_ticket = m_core->journal()->lastTicket();
        return m_ticket == 0;
    }
    void await_suspend(std::coroutine_handle<> handle)
    {
        m_commit = makeWaiter<CommitWaiter>();
        m_commit->suspend(handle, false); // bounded: the stop is the next awaitable's
        m_commit->claim();
        m_core->publishWhenDurable(m_ticket, m_commit.get());
    }
    void await_resume() const
    {
        if (m_commit)
            m_commit->rethrowIfFailed(); // a stage::JournalError
    }

private:
    std::shared_ptr<MailboxCore<T>> m_core;
    quint64 m_ticket = 0;
    WaiterRef<CommitWaiter> m_commit;
};

} // namespace detail

/*!
    A reliable, multi-producer multi-consumer queue of T that outlives every consumer: the
    second degree of Stage.

    \code
    stage::Mailbox<Job> jobs(1024);                 // bounded; stage::Mailbox<Job>() is unbounded
    group.spawn([jobs](stage::Worker &) -> QCoro::Task<> {
        for (;;) {
            auto job = co_await jobs.receive();     // a Delivery<Job>
            run(*job);                              // throws? the job goes back to the front
        }                                           // acknowledged here, by the next iteration
    });
    co_await jobs.send(Job{...});                   // from a coroutine; waits while full
    jobs.sendBlocking(Job{...});                    // from any thread, no event loop needed
    \endcode

    A Mailbox is a handle: copies share one queue, which lives as long as any handle (or a
    pending receive or send) does. Producers may be on any thread; a consumer's coroutine resumes
    on its own thread. Order is FIFO per producer; a redelivered message goes to the front.
    Delivery is at-least-once (see stage::Delivery): a message is never lost because its consumer
    failed, was cancelled or was stopped for good (a group that gives up, shutdown): it stays in
    the mailbox, or among the dead letters after more than maxRedeliveries() failures (default 3).
    A stop does not count as a failure, whatever the consumer throws while stopping, unless the
    worker was stopped as faulty (a missed heartbeat): then it does.
    Dead letters: kept for inspection (takeDeadLetters()), at most deadLetterLimit() of them
    (default 1000; the oldest are dropped, counted in MailboxStatistics::deadLettersDropped).
    A dead-lettered request does not strand its caller: the replies it carries fail at once with
    stage::DeadLettered (a stage::BrokenReply), for Reply<R>, Request<Q, R>, std::optional,
    std::variant and std::unique_ptr of those, and any type with a stageFailReplies() hook (see
    stage::failReplies()).
    Wake-ups are batched: a waiting consumer is woken when the queue goes from empty to non-empty,
    and then drains it without suspending; no event and no allocation per message.
    Closing: close() refuses further sends; receivers drain what is queued, then get
    stage::MailboxClosed. Nothing queued is lost by closing.
*/
template<typename T>
class Mailbox
{
    using Core = detail::MailboxCore<T>;

public:
    /*! An unbounded mailbox; its QObject side gets \a parent. */
    explicit Mailbox(QObject *parent = nullptr) : Mailbox(-1, parent, Unchecked{}) {}
    /*! A mailbox of \a capacity (>= 1; anything else is refused with a warning and becomes 1). */
    explicit Mailbox(int capacity, QObject *parent = nullptr)
        : Mailbox(detail::checkedCapacity(capacity), parent, Unchecked{})
    {}

    /*!
        Queues \a value, waiting while the mailbox is full.
        Thread: any coroutine; resumes on its own thread.
        Cancellation: a cancellation point; if cancelled, \a value was not queued (it is dropped).
        Errors: throws stage::MailboxClosed if the mailbox is (or gets) closed before \a value
        was queued.
    */
    detail::SendAwaitable<T> send(T value) const { return detail::SendAwaitable<T>(m_core, std::move(value)); }

    /*!
        Queues \a value if there is room now; moved from only when Sent. Thread: any.
        A journaled mailbox: Sent means appended to the journal, not yet durable: flush() (or a
        later send()) tells when it is; the journal's encoding errors are thrown
        (stage::JournalError), nothing queued.
    */
    SendStatus trySend(T &&value) const { return toStatus(m_core->tryPush(value)); }
    /*! As trySend(T &&), with a copy of \a value. */
    SendStatus trySend(const T &value) const
    {
        T copy(value);
        return trySend(std::move(copy));
    }

    /*!
        Queues \a value, blocking the calling thread while the mailbox is full, at most
        \a timeout (negative: no limit). For threads without an event loop (std::thread); never
        call it on the thread of a consumer of this mailbox. Moved from only when Sent. Thread: any.
    */
    SendStatus sendBlocking(T &&value, std::chrono::milliseconds timeout = std::chrono::milliseconds(-1)) const
    {
        const auto deadline = timeout.count() < 0 ? std::chrono::steady_clock::time_point::max()
                                                   : std::chrono::steady_clock::now() + timeout;
        if (m_core->isJournaled()) [[unlikely]] {
            typename Core::Outgoing out;
            const auto push = m_core->pushBlocking(value, deadline, &out);
            if (push == Core::Push::Sent) // then the commit, however long it takes
                m_core->journal()->waitDurable(out.ticket, std::chrono::steady_clock::time_point::max());
            return toStatus(push);
        }
        return toStatus(m_core->pushBlocking(value, deadline));
    }

    /*!
        Waits until every message sent to this mailbox's journal before the call is durable (a
        durable or distributed mailbox: see isJournaled()); at once for an in-memory mailbox.
        With trySend(), this is how a producer keeps many sends in flight and still knows when
        they are safe: send a batch, then flush.
        Thread: a coroutine; resumes on its own thread. Cancellation: not a cancellation point
        (the wait is bounded by the journal's commit). Errors: throws stage::JournalError if the
        journal failed to make them durable.
    */
    detail::FlushAwaitable<T> flush() const { return detail::FlushAwaitable<T>(m_core); }
    /*!
        As flush(), blocking the calling thread at most \a timeout (negative: no limit); false if
        the timeout passed first. Never on the thread of a consumer of this mailbox. Thread: any.
    */
    bool flushBlocking(std::chrono::milliseconds timeout = std::chrono::milliseconds(-1)) const
    {
        if (!m_core->isJournaled())
            return true;
        const quint64 ticket = m_core->journal()->lastTicket();
        if (ticket == 0)
            return true;
        const auto deadline = timeout.count() < 0 ? std::chrono::steady_clock::time_point::max()
                                                   : std::chrono::steady_clock::now() + timeout;
        return m_core->journal()->waitDurable(ticket, deadline);
    }

    /*!
        True for a durable or distributed mailbox, made by Stage::Durable's stage::DurableStore or
        Stage::Redis: a journal keeps its messages outside the process's memory; false for
        a Mailbox constructed directly, which is in memory only.
    */
    bool isJournaled() const { return m_core->isJournaled(); }

    /*!
        Waits for the next message and hands it over as a Delivery.
        Thread: a coroutine; resumes on its own thread. No suspension while messages are queued.
        Cancellation: a cancellation point; if cancelled, no message was taken (one being handed
        over goes back to the front, undelivered).
        Errors: throws stage::MailboxClosed once the mailbox is closed and drained.
    */
    detail::ReceiveAwaitable<T> receive() const { return detail::ReceiveAwaitable<T>(m_core); }

    /*! The next message if one is queued now. Thread: any. */
    std::optional<Delivery<T>> tryReceive() const
    {
        auto item = m_core->tryTake();
        if (!item)
            return std::nullopt;
        ++item->deliveries;
        m_core->delivered.fetch_add(1, std::memory_order_relaxed);
        m_core->noteDelivered(*item);
        m_core->noteChanged();
        return Delivery<T>(m_core, std::move(*item), detail::currentWorker());
    }

    /*! Refuses further sends and wakes every waiter; queued messages stay receivable. Thread: any. */
    void close() const { m_core->close(); }
    bool isClosed() const { return m_core->isClosed(); } //!< True once close() was called. Thread: any.
    /*! Messages queued now (not counting those held by consumers). */
    int count() const { return m_core->count(); }
    /*! The capacity, or -1 when unbounded. */
    int capacity() const { return m_core->capacity(); }

    int maxRedeliveries() const { return m_core->maxRedeliveries(); } //!< See setMaxRedeliveries(). Thread: any.
    /*! Failures a message survives before it is dead-lettered (default 3; negative: refused). Thread: any. */
    void setMaxRedeliveries(int count) const { m_core->changeMaxRedeliveries(count); }

    /*!
        Removes and returns the dead letters, oldest first. Thread: any.

        The replies a dead letter carries (see stage::failReplies()) have failed by then with
        stage::DeadLettered, whose reason is the letter's: the what() of the exception its last
        consumer failed with. When: as soon as that reason is known, that is when the consumer's
        worker body has unwound (at once, in the same turn of the consumer's event loop, when the
        exception escapes the body); at the next turn of that loop if the body caught the
        exception and went on (the reason is then "its consumer failed while holding it"); at
        once outside a worker. Thread: the consumer's, or the thread that takes, drops (see
        setDeadLetterLimit()) or destroys the letter first, with the dead letters locked.
        What is lost: only the replies. The message is kept intact, but a dead letter sent again
        can no longer answer its original caller. A type without the hook keeps its replies
        pending until the letter is dropped (then stage::BrokenReply), as before.
    */
    std::vector<DeadLetter<T>> takeDeadLetters() const
    {
        std::vector<DeadLetter<T>> letters;
        for (auto &record : m_core->takeDeadLetters())
            letters.push_back(DeadLetter<T>{std::move(record.value), std::move(record.reason), record.failures});
        return letters;
    }
    int deadLetterCount() const { return m_core->deadLetterCount(); } //!< Dead letters kept now. Thread: any.
    /*! The most dead letters kept (default 1000). */
    int deadLetterLimit() const { return m_core->deadLetterLimit(); }
    /*!
        Keeps at most \a limit dead letters (>= 0; 0 keeps none): when a new one would exceed it,
        the oldest is dropped, its replies failed first, counted in
        MailboxStatistics::deadLettersDropped and noted in the log (stage.mailbox, at most a line
        a second). Lowering the limit drops the excess at once. A negative \a limit is refused
        with a warning. Thread: any.
    */
    void setDeadLetterLimit(int limit) const { m_core->changeDeadLetterLimit(limit); }

    MailboxStatistics statistics() const { return detail::statisticsOf(*m_core); } //!< The counters now. Thread: any.
    /*! The QObject side; null once it was deleted. */
    MailboxBase *object() const { return m_core->object(); }

    friend bool operator==(const Mailbox &a, const Mailbox &b) { return a.m_core == b.m_core; }

private:
    friend struct detail::MailboxAccess;
    struct Unchecked
    {};
    Mailbox(int capacity, QObject *parent, Unchecked)
        : m_core(std::allocate_shared<Core>(detail::PoolAllocator<Core, 64>(), capacity, parent)) // whole lines: see MailboxCore's layout
    {
        m_core->createObject(parent);
    }
    explicit Mailbox(std::shared_ptr<Core> core, QObject *parent) : m_core(std::move(core))
    {
        m_core->createObject(parent);
    }
    static SendStatus toStatus(typename Core::Push push)
    {
        switch (push) {
        case Core::Push::Sent:
            return SendStatus::Sent;
        case Core::Push::Full:
            return SendStatus::Full;
        case Core::Push::Closed:
            break;
        }
        return SendStatus::Closed;
    }

    std::shared_ptr<Core> m_core;
};

namespace detail {

/* Mailbox's friend: its core, for stage::connect()'s DropOldest (a take that is not a delivery),
   and for the backends of journaled mailboxes (Stage::Durable, Stage::Redis; detail/journal.h). */
struct MailboxAccess
{
    template<typename T>
    static const std::shared_ptr<MailboxCore<T>> &core(const Mailbox<T> &mailbox) noexcept
    {
        return mailbox.m_core;
    }
    template<typename T>
    static std::weak_ptr<MailboxCore<T>> weakCore(const Mailbox<T> &mailbox) noexcept
    {
        return mailbox.m_core;
    }

    /* A Mailbox<T> whose messages \a journal keeps. \a capacity: -1 unbounded or >= 1 (bounds
       the in-memory queue); \a parent: its QObject side's parent. */
    template<typename T>
    static Mailbox<T> makeJournaled(int capacity, std::shared_ptr<Journal<T>> journal, QObject *parent = nullptr)
    {
        Q_ASSERT(journal);
        return Mailbox<T>(std::make_shared<MailboxCore<T>>(capacity < 0 ? -1 : checkedCapacity(capacity), parent,
                                                           std::move(journal)),
                          parent);
    }

    /* The journal's feed. Any thread, not under a lock the journal's hooks take: queues a
       message the journal holds at the back of the in-memory queue (or hands it to a waiting
       consumer), beyond the capacity if need be, with its counts (\a deliveries: times handed to
       a consumer before; \a failures: times a consumer failed holding it). False if the mailbox
       is gone or closed (the message stays the journal's). */
    template<typename T>
    static bool inject(const std::weak_ptr<MailboxCore<T>> &core, T &&value, quint64 id, quint32 deliveries,
                       quint32 failures)
    {
        const auto c = core.lock();
        if (!c)
            return false;
        MailboxItem<T> item{std::move(value), failures, deliveries, id};
        return c->inject(item);
    }

    /* A dead letter the journal kept: shown by takeDeadLetters() and deadLetterReasons() with
       its \a reason; the journal hears deadLettersRemoved() when it is taken or dropped. */
    template<typename T>
    static bool injectDeadLetter(const std::weak_ptr<MailboxCore<T>> &core, T &&value, quint64 id, quint32 failures,
                                 const QString &reason)
    {
        const auto c = core.lock();
        if (!c)
            return false;
        c->injectDeadLetter(std::move(value), id, failures, reason);
        return true;
    }
};

} // namespace detail
} // namespace stage

Q_DECLARE_METATYPE(stage::MailboxStatistics)
