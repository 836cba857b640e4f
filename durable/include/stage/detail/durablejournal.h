#pragma once

// The SQLite journal of a durable mailbox (Stage::Durable). Not API: the names in stage::detail
// may change. See stage::DurableStore.

#include <stage/detail/journal.h>
#include <stage/errors.h>

#include <QtCore/QByteArray>
#include <QtCore/QDataStream>
#include <QtCore/QIODevice>
#include <QtCore/QString>

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <vector>

#if defined(STAGE_STATIC)
#  define STAGE_DURABLE_EXPORT
#elif defined(STAGE_BUILDING_DURABLE)
#  define STAGE_DURABLE_EXPORT Q_DECL_EXPORT
#else
#  define STAGE_DURABLE_EXPORT Q_DECL_IMPORT
#endif

namespace stage {
namespace detail {

class DurableEngine;

/* A message of a mailbox as the file holds it at open (DurableLog::open()). */
struct DurableStoredMessage
{
    quint64 id = 0;
    QByteArray body;
    quint32 deliveries = 0; // times handed to a consumer before
    quint32 failures = 0;   // times a consumer failed holding it (a process that died holding it: one)
    bool dead = false;      // a dead letter (reason says why)
    QString reason;
};

/*
    One mailbox's channel to its store's writer thread: the non-template side of
    DurableJournal<T>. Every hook queues an operation (a mutex and a vector push, no I/O) for the
    writer thread, which applies the operations that arrived while its previous commit ran in
    one transaction, in the order of the calls.
*/
class STAGE_DURABLE_EXPORT DurableLog
{
public:
    /* Opens (creates) the mailbox \a name in \a engine's file and returns what it holds, in id
       order, through \a stored: a message a dead process held counts one failure more (recorded
       at once), and one whose failures then exceed \a maxRedeliveries is a dead letter with the
       reason \a heldReason. Thread: any (waits for the writer thread). Throws stage::JournalError
       if the store failed or the name is open already in this store. */
    DurableLog(std::shared_ptr<DurableEngine> engine, const QString &name, qint64 maxMessageSize,
               int maxRedeliveries, std::vector<DurableStoredMessage> &stored);
    /* Waits (at most 5 s) until what this mailbox recorded is committed, then frees the name. */
    ~DurableLog();
    DurableLog(const DurableLog &) = delete;
    DurableLog &operator=(const DurableLog &) = delete;

    const QString &name() const noexcept { return m_name; }
    qint64 maxMessageSize() const noexcept { return m_maxMessageSize; }
    /* Throws stage::JournalError naming the mailbox, \a size and the limit. */
    [[noreturn]] void throwTooLarge(qsizetype size) const;
    /* Throws stage::JournalError naming the mailbox and \a why (a codec's failure). */
    [[noreturn]] void throwEncodeFailed(const QString &why) const;

    quint64 append(QByteArray &&bytes, quint64 &ticket);
    void delivered(quint64 id) noexcept;
    void acknowledged(quint64 id) noexcept;
    void requeued(quint64 id, quint32 failures) noexcept;
    void dropped(quint64 id) noexcept;
    void deadLettered(quint64 id, quint32 failures, const QString &reason) noexcept;
    void deadLettersRemoved(const std::vector<quint64> &ids) noexcept;
    quint64 lastTicket() const noexcept { return m_lastTicket.load(std::memory_order_acquire); }
    void whenDurable(quint64 ticket, Waiter *waiter);
    bool waitDurable(quint64 ticket, std::chrono::steady_clock::time_point deadline);

private:
    std::shared_ptr<DurableEngine> m_engine;
    QString m_name;
    qint64 m_key = 0; // the mailbox's row in the file
    qint64 m_maxMessageSize;
    std::atomic<quint64> m_lastTicket{0};
};

/* How a T becomes bytes in the file and back: QDataStream (Qt 6.4's format) by default. */
template<typename T>
struct DurableCodec
{
    /* Throws (any std::exception) if \a value cannot be encoded. */
    std::function<QByteArray(const T &value)> encode;
    /* Throws (any std::exception: its what() becomes the dead letter's reason) if \a bytes are
       not a T. */
    std::function<T(const QByteArray &bytes)> decode;
};

template<typename T>
DurableCodec<T> dataStreamCodec()
{
    static_assert(QTypeTraits::has_ostream_operator_v<QDataStream, T>
                      && QTypeTraits::has_istream_operator_v<QDataStream, T>,
                  "stage::DurableStore::mailbox<T>: T needs QDataStream operators << and >> (or pass a "
                  "stage::DurableCodec<T> that encodes and decodes it)");
    static_assert(std::is_default_constructible_v<T>,
                  "stage::DurableStore::mailbox<T>: the QDataStream codec needs a default-constructible T "
                  "(or pass a stage::DurableCodec<T>)");
    DurableCodec<T> codec;
    codec.encode = [](const T &value) {
        QByteArray bytes;
        bytes.reserve(128); // small messages are encoded without regrowing (a quarter of the cost)
        QDataStream stream(&bytes, QIODevice::WriteOnly);
        stream.setVersion(QDataStream::Qt_6_4);
        stream << value;
        if (stream.status() != QDataStream::Ok)
            throw std::runtime_error("QDataStream could not write the value");
        return bytes;
    };
    codec.decode = [](const QByteArray &bytes) {
        QDataStream stream(bytes);
        stream.setVersion(QDataStream::Qt_6_4);
        T value{};
        stream >> value;
        if (stream.status() != QDataStream::Ok)
            throw std::runtime_error("QDataStream could not read a value from the stored bytes");
        if (!stream.atEnd())
            throw std::runtime_error("QDataStream left bytes unread (the stored message is not this type)");
        return value;
    };
    return codec;
}

/* The journal a durable Mailbox<T> is made with (stage::DurableStore::mailbox()). */
template<typename T>
class DurableJournal final : public Journal<T>
{
public:
    DurableJournal(std::shared_ptr<DurableEngine> engine, const QString &name, qint64 maxMessageSize,
                   int maxRedeliveries, DurableCodec<T> codec, std::vector<DurableStoredMessage> &stored)
        : m_log(std::move(engine), name, maxMessageSize, maxRedeliveries, stored), m_codec(std::move(codec))
    {}

    bool queuesLocally() const noexcept override { return true; }
    QByteArray encode(const T &value) override
    {
        QByteArray bytes;
        try {
            bytes = m_codec.encode(value);
        } catch (const JournalError &) {
            throw;
        } catch (const std::exception &e) {
            m_log.throwEncodeFailed(QString::fromUtf8(e.what()));
        } catch (...) {
            m_log.throwEncodeFailed(QStringLiteral("an unknown exception"));
        }
        if (bytes.size() > m_log.maxMessageSize())
            m_log.throwTooLarge(bytes.size());
        return bytes;
    }
    /* Decodes a stored message; empty with \a error set if it cannot. Never throws. */
    std::optional<T> decode(const QByteArray &bytes, QString &error) const
    {
        try {
            return m_codec.decode(bytes);
        } catch (const std::exception &e) {
            error = QString::fromUtf8(e.what());
        } catch (...) {
            error = QStringLiteral("an unknown exception");
        }
        return std::nullopt;
    }

    quint64 append(QByteArray &&bytes, quint64 &ticket) override { return m_log.append(std::move(bytes), ticket); }
    void delivered(quint64 id) noexcept override { m_log.delivered(id); }
    void acknowledged(quint64 id) noexcept override { m_log.acknowledged(id); }
    void requeued(quint64 id, quint32 failures) noexcept override { m_log.requeued(id, failures); }
    void dropped(quint64 id) noexcept override { m_log.dropped(id); }
    void deadLettered(quint64 id, quint32 failures, const QString &reason) noexcept override
    {
        m_log.deadLettered(id, failures, reason);
    }
    void deadLettersRemoved(const std::vector<quint64> &ids) noexcept override { m_log.deadLettersRemoved(ids); }
    quint64 lastTicket() const noexcept override { return m_log.lastTicket(); }
    void whenDurable(quint64 ticket, Waiter *waiter) override { m_log.whenDurable(ticket, waiter); }
    bool waitDurable(quint64 ticket, std::chrono::steady_clock::time_point deadline) override
    {
        return m_log.waitDurable(ticket, deadline);
    }

    DurableLog &log() noexcept { return m_log; }

private:
    DurableLog m_log;
    DurableCodec<T> m_codec;
};

} // namespace detail

using detail::DurableCodec;

} // namespace stage
