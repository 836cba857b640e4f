#include "worker_p.h"

#include <stage/detail/journal.h>
#include <stage/mailbox.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QEvent>
#include <QtCore/QMetaMethod>
#include <QtCore/QThread>

Q_LOGGING_CATEGORY(lcStageMailbox, "stage.mailbox", QtInfoMsg)

namespace stage {

const QLoggingCategory &lcMailbox()
{
    return lcStageMailbox();
}

namespace {
const QEvent::Type NotifyEvent = static_cast<QEvent::Type>(QEvent::registerEventType());
} // namespace

namespace detail {

JournalBase::~JournalBase() = default;

int checkedCapacity(int capacity)
{
    if (capacity >= 1)
        return capacity;
    qCWarning(lcMailbox, "Mailbox: the capacity must be >= 1 (use Mailbox() for an unbounded one), got %d; using 1",
              capacity);
    return 1;
}

std::exception_ptr mailboxClosedError(const char *function)
{
    return std::make_exception_ptr(MailboxClosed(std::string(function) + ": the mailbox is closed"));
}

void throwMailboxClosed(const char *function)
{
    std::rethrow_exception(mailboxClosedError(function));
}

MailboxStatistics statisticsOf(const MailboxCoreBase &core)
{
    MailboxStatistics s;
    core.counters(s.queued, s.delivered, s.acknowledged, s.redelivered, s.deadLettered, s.deadLettersDropped);
    return s;
}

MailboxCoreBase::MailboxCoreBase(int capacity, QObject *) : m_capacity(capacity) {}

MailboxCoreBase::~MailboxCoreBase()
{
    std::lock_guard lock(auxMutex);
    if (!m_object)
        return;
    m_object->m_core.reset();
    if (m_ownsObject) {
        if (m_object->thread() == QThread::currentThread())
            delete m_object;
        else
            m_object->deleteLater();
    }
}

void MailboxCoreBase::createObject(QObject *parent)
{
    if (!parent)
        return; // created on first use: most mailboxes are never watched
    auto *object = new MailboxBase(weak_from_this(), parent);
    std::lock_guard lock(auxMutex);
    m_object = object;
}

MailboxBase *MailboxCoreBase::object()
{
    std::lock_guard lock(auxMutex);
    if (!m_object && !m_objectGone) {
        m_object = new MailboxBase(weak_from_this(), nullptr);
        m_ownsObject = true;
    }
    return m_object;
}

void MailboxCoreBase::objectDestroyed() noexcept
{
    {
        std::lock_guard lock(auxMutex);
        m_object = nullptr;
        m_objectGone = true;
    }
    close();
}

void MailboxCoreBase::postNotification() noexcept
{
    if (m_notifyPending.exchange(true, std::memory_order_acq_rel))
        return;
    std::lock_guard lock(auxMutex);
    if (m_object)
        QCoreApplication::postEvent(m_object, new QEvent(NotifyEvent));
}

void MailboxCoreBase::changeMaxRedeliveries(int n)
{
    if (n < 0) {
        qCWarning(lcMailbox, "Mailbox::setMaxRedeliveries: the count must be >= 0, got %d; ignored", n);
        return;
    }
    if (m_maxRedeliveries.exchange(n, std::memory_order_relaxed) == n)
        return;
    emitOnObject(&MailboxBase::maxRedeliveriesChanged, n);
}

void MailboxCoreBase::changeDeadLetterLimit(int n)
{
    if (n < 0) {
        qCWarning(lcMailbox, "Mailbox::setDeadLetterLimit: the limit must be >= 0, got %d; ignored", n);
        return;
    }
    if (!storeDeadLetterLimit(n))
        return;
    emitOnObject(&MailboxBase::deadLetterLimitChanged, n);
}

void MailboxCoreBase::emitOnObject(void (MailboxBase::*signal)(int), int value)
{
    QPointer<MailboxBase> local; // the object, if it lives on this thread (only it deletes it)
    {
        std::lock_guard lock(auxMutex);
        if (!m_object)
            return;
        if (m_object->thread() == QThread::currentThread()) {
            local = m_object;
        } else { // queued, under the lock: the object cannot be deleted meanwhile
            QMetaObject::invokeMethod(
                m_object, [o = QPointer<MailboxBase>(m_object), signal, value] { if (o) emit (o->*signal)(value); },
                Qt::QueuedConnection);
        }
    }
    if (local) // outside the lock: a connected slot may read the mailbox
        emit (local->*signal)(value);
}

void MailboxCoreBase::logDeadLetter(int failures)
{
    qCWarning(lcMailbox, "Mailbox: a message failed %d consumer(s) and was moved to the dead letters", failures);
}

bool MailboxCoreBase::dropLogDue(DeadLetterDropLog &log, qint64 dropped, qint64 &lineCount) noexcept
{
    const qint64 now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::steady_clock::now().time_since_epoch()).count();
    log.notLogged += dropped;
    if (log.lastLineNs != 0 && now - log.lastLineNs < 1'000'000'000)
        return false; // at most a line a second; the next one says how many it covers
    log.lastLineNs = now;
    lineCount = std::exchange(log.notLogged, 0);
    return true;
}

void MailboxCoreBase::logDeadLettersDropped(qint64 count, int limit, qint64 total)
{
    qCWarning(lcMailbox, "Mailbox: dropped %lld of the oldest dead letter(s) to keep at most %d (%lld dropped in all)",
              count, limit, total);
}

void MailboxCoreBase::scheduleDeadLetterSettle(quint64 letter, WorkerCore *worker, bool postSettle)
{
    if (!worker) { // no worker to wait for (a plain coroutine, a thread): its reason is all there is
        settleDeadLetter(letter, nullptr);
        return;
    }
    // The reason is the worker's failure, known once its frame has unwound: when the exception
    // escapes the body, this runs before control returns to the event loop.
    worker->addEndHook([weak = weak_from_this(), letter](const WorkerExit &exit) {
        auto core = weak.lock();
        if (!core)
            return;
        // Only a failure's reason is the message's: a worker that caught the exception and ended
        // later for another cause (a stop, a normal return) says nothing about this message. A
        // letter settled already (by the job below, by a take) keeps the reason its replies got.
        core->settleDeadLetter(letter, exit.kind == WorkerExit::Kind::Failed ? &exit.reason : nullptr);
    });
    if (!postSettle)
        return; // nothing waits on it: the reason may come whenever the worker ends
    // The body caught the exception and goes on: its end may be far away, and a caller waits.
    // This runs after the present turn of the worker's event loop, after the hook if the body
    // ended in it.
    Executor *home = Executor::acquire(worker->home);
    if (!home) {
        settleDeadLetter(letter, nullptr);
        return;
    }
    home->post(makeJob([weak = weak_from_this(), letter] {
        if (auto core = weak.lock())
            core->settleDeadLetter(letter, nullptr);
    }));
    home->deref();
}

} // namespace detail

// MailboxBase

MailboxBase::MailboxBase(std::weak_ptr<detail::MailboxCoreBase> core, QObject *parent)
    : QObject(parent), m_core(std::move(core))
{}

MailboxBase::~MailboxBase()
{
    if (auto core = m_core.lock())
        core->objectDestroyed();
}

void MailboxBase::connectNotify(const QMetaMethod &signal)
{
    if (signal == QMetaMethod::fromSignal(&MailboxBase::countChanged)
        || signal == QMetaMethod::fromSignal(&MailboxBase::closedChanged)
        || signal == QMetaMethod::fromSignal(&MailboxBase::statisticsChanged)) {
        if (auto core = m_core.lock())
            core->setWatched(true); // from now on: coalesced notifications
    }
}

bool MailboxBase::event(QEvent *event)
{
    if (event->type() != NotifyEvent)
        return QObject::event(event);
    auto core = m_core.lock();
    if (!core)
        return true;
    core->notificationDelivered();
    const int count = core->count();
    const bool closed = core->isClosed();
    QPointer<MailboxBase> alive(this);
    if (count != m_lastCount) {
        m_lastCount = count;
        emit countChanged(count);
    }
    if (alive && closed != m_lastClosed) {
        m_lastClosed = closed;
        emit closedChanged(closed);
    }
    if (alive)
        emit statisticsChanged();
    return true;
}

int MailboxBase::count() const
{
    auto core = m_core.lock();
    return core ? core->count() : 0;
}

int MailboxBase::capacity() const
{
    auto core = m_core.lock();
    return core ? core->capacity() : 0;
}

bool MailboxBase::isClosed() const
{
    auto core = m_core.lock();
    return core ? core->isClosed() : true;
}

int MailboxBase::maxRedeliveries() const
{
    auto core = m_core.lock();
    return core ? core->maxRedeliveries() : 0;
}

void MailboxBase::setMaxRedeliveries(int count)
{
    if (auto core = m_core.lock())
        core->changeMaxRedeliveries(count);
}

int MailboxBase::deadLetterCount() const
{
    auto core = m_core.lock();
    return core ? core->deadLetterCount() : 0;
}

QStringList MailboxBase::deadLetterReasons() const
{
    const auto core = m_core.lock();
    return core ? core->deadLetterReasons() : QStringList();
}

int MailboxBase::deadLetterLimit() const
{
    auto core = m_core.lock();
    return core ? core->deadLetterLimit() : 0;
}

void MailboxBase::setDeadLetterLimit(int limit)
{
    if (auto core = m_core.lock())
        core->changeDeadLetterLimit(limit);
}

MailboxStatistics MailboxBase::statistics() const
{
    auto core = m_core.lock();
    return core ? detail::statisticsOf(*core) : MailboxStatistics{};
}

qint64 MailboxBase::queued() const
{
    return statistics().queued;
}

qint64 MailboxBase::delivered() const
{
    return statistics().delivered;
}

qint64 MailboxBase::acknowledged() const
{
    return statistics().acknowledged;
}

qint64 MailboxBase::redelivered() const
{
    return statistics().redelivered;
}

qint64 MailboxBase::deadLettered() const
{
    return statistics().deadLettered;
}

qint64 MailboxBase::deadLettersDropped() const
{
    return statistics().deadLettersDropped;
}

void MailboxBase::close()
{
    if (auto core = m_core.lock())
        core->close();
}

} // namespace stage

// Replies

#include <stage/reply.h>

namespace stage::detail {

void warnReplyTwice()
{
    qCWarning(lcMailbox, "Reply::send: the reply was already sent (a reply is one-shot); ignored");
}

void throwBrokenReply()
{
    throw BrokenReply("stage::Reply: the sender was destroyed without a reply");
}

void throwReplyTimeout(std::chrono::milliseconds timeout)
{
    throw TimeoutError("stage::ReplyReceiver::wait: no reply within " + std::to_string(timeout.count()) + " ms");
}

void throwReplyTaken()
{
    throw InvalidOperation("stage::ReplyReceiver: the reply was already received (or is awaited twice at once)");
}

} // namespace stage::detail
