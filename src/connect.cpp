#include <stage/connect.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QEvent>
#include <QtCore/QLoggingCategory>
#include <QtCore/QThread>

#include <chrono>

Q_LOGGING_CATEGORY(lcConnect, "stage.connect", QtInfoMsg)

namespace stage {

namespace {
const QEvent::Type NotifyEvent = static_cast<QEvent::Type>(QEvent::registerEventType());

qint64 nowNs() noexcept
{
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

const char *policyName(SignalFeed::Overflow overflow) noexcept
{
    switch (overflow) {
    case SignalFeed::Overflow::Reject:
        return "Reject";
    case SignalFeed::Overflow::DropOldest:
        return "DropOldest";
    case SignalFeed::Overflow::Block:
        return "Block";
    }
    return "?";
}
} // namespace

namespace detail {

void warnConnect(const char *what)
{
    qCWarning(lcConnect, "%s", what);
}

void warnConnectFailed(const QByteArray &signal)
{
    qCWarning(lcConnect, "stage::connect: QObject::connect refused %s; not connected", signal.constData());
}

bool warnIfClosed(bool closed)
{
    if (closed)
        qCWarning(lcConnect, "stage::connect: the mailbox is closed; not connected");
    return closed;
}

FeedState::FeedState(SignalFeed::Overflow o, QByteArray s) : overflow(o), signal(std::move(s)) {}

FeedState::~FeedState() = default;

SignalFeed *FeedState::createFeed(const std::shared_ptr<FeedState> &state)
{
    auto *feed = new SignalFeed(state);
    std::lock_guard lock(state->m_mutex);
    state->m_feed = feed;
    return feed;
}

void FeedState::attach(const QMetaObject::Connection &connection)
{
    bool endNow;
    {
        std::lock_guard lock(m_mutex);
        m_connection = connection;
        m_attached = true;
        endNow = ended.load(std::memory_order_acquire);
    }
    if (endNow) // an emission found the mailbox closed before the connection was known
        QObject::disconnect(connection);
}

void FeedState::noteFull() noexcept
{
    rejected.fetch_add(1, std::memory_order_relaxed);
    overflowSinceSignal.fetch_add(1, std::memory_order_relaxed);
    fullSinceLine.fetch_add(1, std::memory_order_relaxed);
    logDue();
    notify();
}

void FeedState::noteDropped() noexcept
{
    dropped.fetch_add(1, std::memory_order_relaxed);
    overflowSinceSignal.fetch_add(1, std::memory_order_relaxed);
    droppedSinceLine.fetch_add(1, std::memory_order_relaxed);
    logDue();
    notify();
}

void FeedState::noteMapFailed(std::exception_ptr error) noexcept
{
    rejected.fetch_add(1, std::memory_order_relaxed);
    const bool first = mapFailedSinceLine.fetch_add(1, std::memory_order_relaxed) == 0;
    if (first) {
        // The first failure since the last line says why; the line's count says how many.
        QByteArray why = "an exception that is not a std::exception";
        try {
            std::rethrow_exception(error);
        } catch (const std::exception &e) {
            why = e.what();
        } catch (...) {
        }
        qCWarning(lcConnect, "stage::connect: the map of %s threw (%s); the emission was not queued (counted in rejected)",
                  signal.constData(), why.constData());
    }
    logDue();
    if (watched.load(std::memory_order_relaxed))
        notify();
}

bool FeedState::blockAllowedHere() noexcept
{
    QThread *here = QThread::currentThread();
    const QCoreApplication *app = QCoreApplication::instance();
    const bool eventLoop = here->loopLevel() > 0 || (app && here == app->thread());
    if (!eventLoop)
        return true;
    if (!blockRefusalLogged.exchange(true, std::memory_order_relaxed))
        qCWarning(lcConnect,
                  "stage::connect: Block refused: %s was emitted on a thread with an event loop (%s), which "
                  "blocking could freeze or deadlock; its emissions there are handled as under Reject (queued "
                  "if there is room, else rejected and counted). Block is for threads without an event loop",
                  signal.constData(), here == (app ? app->thread() : nullptr) ? "the main thread" : "a QThread running exec()");
    return false;
}

void FeedState::noteClosed() noexcept
{
    rejectedClosed.fetch_add(1, std::memory_order_relaxed);
    if (ended.load(std::memory_order_relaxed))
        return; // a racing emission: the connection is ending already
    qCInfo(lcConnect, "stage::connect: the mailbox fed by %s is closed; the connection ends", signal.constData());
    end();
}

void FeedState::end() noexcept
{
    if (ended.exchange(true, std::memory_order_acq_rel))
        return;
    QMetaObject::Connection connection;
    {
        std::lock_guard lock(m_mutex);
        if (m_attached)
            connection = m_connection;
    }
    if (connection) // thread-safe, and allowed from inside the slot
        QObject::disconnect(connection);
    notify();
}

void FeedState::slotDestroyed() noexcept
{
    // Qt destroys the slot while disconnecting it (perhaps with its own locks held): only a
    // flag and a posted event here, no disconnect.
    if (ended.exchange(true, std::memory_order_acq_rel))
        return;
    notify();
}

void FeedState::feedDestroyed() noexcept
{
    std::lock_guard lock(m_mutex);
    m_feed = nullptr;
}

void FeedState::notify() noexcept
{
    if (notifyPending.exchange(true, std::memory_order_acq_rel))
        return;
    // Under the lock: the feed cannot be deleted meanwhile (its destructor takes it).
    std::lock_guard lock(m_mutex);
    if (m_feed)
        QCoreApplication::postEvent(m_feed, new QEvent(NotifyEvent));
}

void FeedState::logDue() noexcept
{
    const qint64 now = nowNs();
    qint64 last = lastLineNs.load(std::memory_order_relaxed);
    if (last != 0 && now - last < 1'000'000'000)
        return; // at most a line a second; the next one says how many it covers
    if (!lastLineNs.compare_exchange_strong(last, now, std::memory_order_relaxed))
        return; // another thread writes this line
    const qint64 full = fullSinceLine.exchange(0, std::memory_order_relaxed);
    const qint64 drops = droppedSinceLine.exchange(0, std::memory_order_relaxed);
    mapFailedSinceLine.store(0, std::memory_order_relaxed);
    const char *policy = policyName(overflow);
    if (full > 0)
        qCWarning(lcConnect,
                  "stage::connect: the mailbox fed by %s is full; %lld emission(s) rejected (%s policy; %lld "
                  "rejected in all)",
                  signal.constData(), full, policy, rejected.load(std::memory_order_relaxed));
    if (drops > 0)
        qCWarning(lcConnect,
                  "stage::connect: the mailbox fed by %s is full; %lld of its oldest message(s) dropped to make room "
                  "(DropOldest policy; %lld dropped in all)",
                  signal.constData(), drops, dropped.load(std::memory_order_relaxed));
}

} // namespace detail

SignalFeed::SignalFeed(std::shared_ptr<detail::FeedState> state) : m_state(std::move(state)) {}

SignalFeed::~SignalFeed()
{
    m_state->feedDestroyed();
}

SignalFeed::Overflow SignalFeed::overflow() const
{
    return m_state->overflow;
}

bool SignalFeed::isConnected() const
{
    return !m_state->ended.load(std::memory_order_acquire);
}

FeedStatistics SignalFeed::statistics() const
{
    FeedStatistics s;
    s.sent = sent();
    s.rejected = rejected();
    s.dropped = dropped();
    s.rejectedClosed = rejectedClosed();
    return s;
}

qint64 SignalFeed::sent() const
{
    return m_state->sent.load(std::memory_order_relaxed);
}

qint64 SignalFeed::rejected() const
{
    return m_state->rejected.load(std::memory_order_relaxed);
}

qint64 SignalFeed::dropped() const
{
    return m_state->dropped.load(std::memory_order_relaxed);
}

qint64 SignalFeed::rejectedClosed() const
{
    return m_state->rejectedClosed.load(std::memory_order_relaxed);
}

bool SignalFeed::event(QEvent *event)
{
    if (event->type() != NotifyEvent)
        return QObject::event(event);
    m_state->notifyPending.store(false, std::memory_order_release); // a later change posts again
    const qint64 overflow = m_state->overflowSinceSignal.exchange(0, std::memory_order_acq_rel);
    const bool ended = m_state->ended.load(std::memory_order_acquire);
    QPointer<SignalFeed> self(this); // a slot may delete the feed
    if (overflow > 0)
        Q_EMIT overflowed(overflow);
    if (self && m_state->watched.load(std::memory_order_relaxed))
        Q_EMIT statisticsChanged();
    if (self && ended && !m_endReported) {
        m_endReported = true;
        Q_EMIT disconnected();
        if (self)
            deleteLater();
    }
    return true;
}

void SignalFeed::connectNotify(const QMetaMethod &signal)
{
    if (signal == QMetaMethod::fromSignal(&SignalFeed::statisticsChanged))
        m_state->watched.store(true, std::memory_order_relaxed);
    QObject::connectNotify(signal);
}

} // namespace stage
