#include <stage/durablestore.h>

#include "durableengine_p.h"

#include <QtCore/QMetaObject>
#include <QtCore/QPointer>

#include <mutex>

namespace stage {

const QLoggingCategory &lcDurable()
{
    return lcDurableInternal();
}

namespace detail {

void warnUndecodable(const QString &mailbox, quint64 id, const QString &reason)
{
    qCWarning(lcDurableInternal,
              "DurableStore::mailbox: message %llu of \"%s\" is kept in the file as a dead letter only (%s; "
              "T has no default constructor to stand for it)",
              static_cast<unsigned long long>(id), qPrintable(mailbox), qPrintable(reason));
}

DurableMailboxOptions checkedOptions(const DurableMailboxOptions &options)
{
    DurableMailboxOptions checked = options;
    const DurableMailboxOptions defaults;
    if (checked.capacity < 1 && checked.capacity != -1) {
        qCWarning(lcDurableInternal, "DurableStore::mailbox: capacity must be >= 1 or -1, got %d; unbounded",
                  checked.capacity);
        checked.capacity = -1;
    }
    if (checked.maxMessageSize <= 0) {
        qCWarning(lcDurableInternal, "DurableStore::mailbox: maxMessageSize must be > 0, got %lld; %lld",
                  static_cast<long long>(checked.maxMessageSize), static_cast<long long>(defaults.maxMessageSize));
        checked.maxMessageSize = defaults.maxMessageSize;
    }
    if (checked.maxRedeliveries < 0) {
        qCWarning(lcDurableInternal, "DurableStore::mailbox: maxRedeliveries must be >= 0, got %d; %d",
                  checked.maxRedeliveries, defaults.maxRedeliveries);
        checked.maxRedeliveries = defaults.maxRedeliveries;
    }
    return checked;
}

DurableLog::DurableLog(std::shared_ptr<DurableEngine> engine, const QString &name, qint64 maxMessageSize,
                       int maxRedeliveries, std::vector<DurableStoredMessage> &stored)
    : m_engine(std::move(engine)), m_name(name), m_maxMessageSize(maxMessageSize)
{
    m_key = m_engine->openMailbox(name, maxRedeliveries, stored);
}

DurableLog::~DurableLog()
{
    if (!m_engine->flush(std::chrono::steady_clock::now() + std::chrono::seconds(5)) && !m_engine->hasFailed())
        qCWarning(lcDurableInternal, "DurableStore: closing the mailbox \"%s\" before its last operations "
                                     "were committed (still pending after 5 s)",
                  qPrintable(m_name));
    m_engine->closeMailbox(m_name);
}

void DurableLog::throwTooLarge(qsizetype size) const
{
    throw JournalError(QStringLiteral("DurableStore: a message of %1 bytes is larger than the limit of the "
                                      "mailbox \"%2\" (%3 bytes); it was not sent")
                           .arg(size)
                           .arg(m_name)
                           .arg(m_maxMessageSize)
                           .toStdString());
}

void DurableLog::throwEncodeFailed(const QString &why) const
{
    throw JournalError(
        QStringLiteral("DurableStore: a message for the mailbox \"%1\" could not be encoded: %2; it was not sent")
            .arg(m_name, why)
            .toStdString());
}

quint64 DurableLog::append(QByteArray &&bytes, quint64 &ticket)
{
    const quint64 id = m_engine->append(m_key, std::move(bytes), ticket);
    m_lastTicket.store(ticket, std::memory_order_release);
    return id;
}

void DurableLog::delivered(quint64 id) noexcept
{
    m_engine->post(DurableEngine::Op{id, m_key, {}, 0, DurableEngine::OpKind::Delivered});
}

void DurableLog::acknowledged(quint64 id) noexcept
{
    m_engine->post(DurableEngine::Op{id, m_key, {}, 0, DurableEngine::OpKind::Gone});
}

void DurableLog::requeued(quint64 id, quint32 failures) noexcept
{
    m_engine->post(DurableEngine::Op{id, m_key, {}, failures, DurableEngine::OpKind::Requeued});
}

void DurableLog::dropped(quint64 id) noexcept
{
    m_engine->post(DurableEngine::Op{id, m_key, {}, 0, DurableEngine::OpKind::Gone});
}

void DurableLog::deadLettered(quint64 id, quint32 failures, const QString &reason) noexcept
{
    try {
        m_engine->post(DurableEngine::Op{id, m_key, reason.toUtf8(), failures, DurableEngine::OpKind::Dead});
    } catch (...) {
    }
}

void DurableLog::deadLettersRemoved(const std::vector<quint64> &ids) noexcept
{
    try {
        std::vector<DurableEngine::Op> ops;
        ops.reserve(ids.size());
        for (quint64 id : ids)
            ops.push_back(DurableEngine::Op{id, m_key, {}, 0, DurableEngine::OpKind::Gone});
        m_engine->postMany(std::move(ops));
    } catch (...) {
    }
}

void DurableLog::whenDurable(quint64 ticket, Waiter *waiter)
{
    m_engine->whenDurable(ticket, waiter);
}

bool DurableLog::waitDurable(quint64 ticket, std::chrono::steady_clock::time_point deadline)
{
    return m_engine->waitDurable(ticket, deadline);
}

} // namespace detail

// The writer thread reports a failure through this: the store may be gone by then.
struct DurableStore::Relay
{
    std::mutex mutex;
    DurableStore *store = nullptr;
};

DurableStore::DurableStore(const QString &fileName, QObject *parent)
    : DurableStore(fileName, Durability::ProcessCrash, parent)
{}

DurableStore::DurableStore(const QString &fileName, Durability durability, QObject *parent)
    : QObject(parent),
      m_engine(std::make_shared<detail::DurableEngine>(fileName, durability == Durability::PowerLoss)),
      m_durability(durability), m_relay(std::make_shared<Relay>())
{
    m_relay->store = this;
    m_engine->setErrorHandler([relay = m_relay](const QString &message) {
        std::lock_guard lock(relay->mutex);
        if (DurableStore *store = relay->store) {
            QMetaObject::invokeMethod(
                store, [store, message] { Q_EMIT store->errorOccurred(message); }, Qt::QueuedConnection);
        }
    });
}

DurableStore::~DurableStore()
{
    {
        std::lock_guard lock(m_relay->mutex);
        m_relay->store = nullptr;
    }
    m_engine->setErrorHandler({});
}

QString DurableStore::fileName() const
{
    return m_engine->fileName();
}

DurableStore::Durability DurableStore::durability() const
{
    return m_durability;
}

bool DurableStore::isOpen() const
{
    return m_engine->isOpen();
}

QString DurableStore::errorString() const
{
    return m_engine->errorString();
}

bool DurableStore::flushBlocking(std::chrono::milliseconds timeout)
{
    const auto deadline = timeout.count() < 0 ? std::chrono::steady_clock::time_point::max()
                                              : std::chrono::steady_clock::now() + timeout;
    return m_engine->flush(deadline);
}

qint64 DurableStore::commitCount() const
{
    return m_engine->commits();
}

qint64 DurableStore::rowsWritten() const
{
    return m_engine->rowsWritten();
}

} // namespace stage
