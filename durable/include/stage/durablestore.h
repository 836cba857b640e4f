#pragma once

#include <stage/detail/durablejournal.h>
#ifndef STAGE_DURABLE_NO_MAILBOX
#include <stage/mailbox.h>
#endif

#include <QtCore/QObject>
#include <QtCore/QString>

#include <chrono>
#include <memory>
#include <optional>
#include <type_traits>
#include <vector>

namespace stage {

template<typename T>
class Mailbox;
class DurableStore;

namespace detail {
/* The store's engine, for DurableJournal and the tests. */
struct DurableStoreAccess
{
    static std::shared_ptr<DurableEngine> engine(const DurableStore &store);
};
} // namespace detail

/*! Log category of durable stores (opening, failures, undecodable messages): \c stage.durable. */
STAGE_DURABLE_EXPORT const QLoggingCategory &lcDurable();

/*! How a durable mailbox is made (DurableStore::mailbox()). */
struct DurableMailboxOptions
{
    /*! The bound of the in-memory queue, >= 1, or -1 (the default) for unbounded (anything else
        is refused with a warning and means unbounded). What the file holds at open is injected
        whatever the capacity. */
    int capacity = -1;
    /*! The largest encoded message accepted, in bytes (default 1 MiB; <= 0 is refused with a
        warning and means the default): a send of a larger one fails with stage::JournalError and
        queues nothing. */
    qint64 maxMessageSize = 1024 * 1024;
    /*! The mailbox's Mailbox::maxRedeliveries() (default 3; negative is refused with a warning
        and means 3), also applied at open to what a dead process held. */
    int maxRedeliveries = 3;
};

/*!
    A SQLite file that keeps durable mailboxes: what they hold survives the process (kill -9, a
    crash) and, with Durability::PowerLoss, the machine.

    \code
    stage::DurableStore store(QDir(dataDir).filePath("outbox.stage"));  // created, mode 0600
    if (!store.isOpen())
        qFatal("%s", qPrintable(store.errorString()));
    stage::Mailbox<Upload> outbox = store.mailbox<Upload>("uploads");    // what the file held is back
    co_await outbox.send(Upload{...});      // completes once the message is committed to the file
    auto upload = co_await outbox.receive(); // as any Mailbox; the ack is recorded too
    \endcode

    The mailboxes it makes are ordinary stage::Mailbox<T> (consumers, Delivery, redelivery, dead
    letters, close and drain, statistics, the QObject side: all as documented there), whose
    messages are also recorded in the file:
    \list
    \li A send completes only once its message is committed (co_await send(), sendBlocking());
        trySend() does not wait, and Mailbox::flush() waits for every send before it. A send that
        could not be committed fails with stage::JournalError.
    \li What was sent and not acknowledged when the process ended is queued again, in order, by
        the next mailbox() of that name (in any process, after this one ended). A message a
        consumer held (delivered, not acknowledged) when the process died counts one failure
        ("the process ended while a consumer held it") and keeps its delivery count; one that
        then exceeds maxRedeliveries is a dead letter. Dead letters are kept in the file until
        taken (Mailbox::takeDeadLetters()) or dropped beyond the dead-letter limit.
    \li Acknowledgements, deliveries and requeues are recorded too, grouped with the sends: an
        acknowledgement made just before the process died may not be (the message then comes
        back once more: delivery is at-least-once).
    \li A stored message that cannot be decoded (the type changed, a foreign codec) becomes a dead
        letter whose reason says so (a default-constructed T stands for its value; for a T that
        is not default-constructible it stays in the file only, with a warning).
    \endlist

    Durability: the file is in SQLite's WAL mode. Durability::ProcessCrash (the default,
    \c synchronous=NORMAL) survives the process's death in any way; a power loss or an OS crash
    may roll back the last commits (never corrupt the file). Durability::PowerLoss
    (\c synchronous=FULL) syncs every commit to the disk: slower, survives those too.

    Threads: one writer thread per store owns the SQLite connection. Every operation of every
    mailbox of the store is queued to it (no I/O on the caller's thread), and it commits all the
    operations that arrived while its previous commit ran in one transaction (group commit).
    A message sent and acknowledged before its transaction began never reaches the disk.

    Errors: the constructor opens the file and never throws. isOpen() is false and errorString()
    says why when it cannot be used: it cannot be created or written, it is not a SQLite file
    or is corrupt, it is a SQLite database of another application, its schema is newer than this
    Stage reads, or another process has it open. Such a file is never changed. mailbox() on a
    store that is not open throws stage::JournalError. A failure after opening (a disk full, an
    I/O error) is logged under \c stage.durable, makes isOpen() false, emits errorOccurred()
    once, and fails the pending and later sends with stage::JournalError; what was committed
    before stays in the file.

    Files: the file is created with mode 0600 (never readable by others, not even briefly), and
    SQLite gives its \c -wal file the same mode. One process at a time: the file is locked while
    a store has it open (released when the process ends, however it ends). Several mailboxes (of
    different names and types) may share one file; a name is open at most once at a time.

    Lifetime: the mailboxes keep the file open after the DurableStore is deleted; it is closed
    (what is queued committed first) when the store and every mailbox it made are gone.
*/
class STAGE_DURABLE_EXPORT DurableStore : public QObject
{
    Q_OBJECT
    Q_PROPERTY(QString fileName READ fileName CONSTANT)
    Q_PROPERTY(Durability durability READ durability CONSTANT)
    Q_PROPERTY(bool open READ isOpen NOTIFY errorOccurred)
    Q_PROPERTY(QString errorString READ errorString NOTIFY errorOccurred)

public:
    /*! What a committed message survives. */
    enum class Durability {
        ProcessCrash, //!< the process's death (kill -9): SQLite synchronous=NORMAL (the default)
        PowerLoss,    //!< also a power loss or an OS crash: synchronous=FULL, one sync per commit
    };
    Q_ENUM(Durability)

    /*! Opens (or creates) \a fileName with Durability::ProcessCrash. Blocks while the file is
        opened and checked (a quick integrity check of an existing file). Never throws. */
    explicit DurableStore(const QString &fileName, QObject *parent = nullptr);
    /*! Opens (or creates) \a fileName with \a durability. */
    DurableStore(const QString &fileName, Durability durability, QObject *parent = nullptr);
    /*! If no mailbox of this store remains, commits what is queued and closes the file; otherwise
        the mailboxes keep it open (closed with the last of them). Never throws. */
    ~DurableStore() override;

    /*! The file's name as given to the constructor. Thread: any. */
    QString fileName() const;
    /*! How durable a commit is (fixed at construction). Thread: any. */
    Durability durability() const;
    /*! True while the file is usable. Thread: any. */
    bool isOpen() const;
    /*! Why the store is not open (empty while it is). Thread: any. */
    QString errorString() const;

    /*!
        A durable mailbox named \a name in this file, holding at once what the file kept for that
        name (see the class description). Messages are encoded with QDataStream (Qt 6.4's
        format): T needs operator<< and operator>> on QDataStream (checked at compile time), and
        a default constructor.
        Thread: any (blocks while the writer thread reads the name's messages).
        Errors: throws stage::JournalError if the store is not open, \a name is open already in
        this store, or the file cannot be read.
    */
    template<typename T>
    Mailbox<T> mailbox(const QString &name, const DurableMailboxOptions &options = {});
    /*! As above, encoded by \a codec (both functions must be set; a decode that throws makes the
        stored message a dead letter with its what() as the reason). */
    template<typename T>
    Mailbox<T> mailbox(const QString &name, const DurableMailboxOptions &options, DurableCodec<T> codec);

    /*!
        Blocks until every operation recorded before the call (by any mailbox of this store) is
        committed (true), or \a timeout passes (negative: no limit) or the store fails (false).
        Thread: any.
    */
    bool flushBlocking(std::chrono::milliseconds timeout = std::chrono::milliseconds(-1));

    /*! Transactions committed so far (group commits; each holds many operations). Thread: any. */
    qint64 commitCount() const;
    /*! Rows inserted, updated or deleted so far (what grouping did not spare). Thread: any. */
    qint64 rowsWritten() const;

Q_SIGNALS:
    /*! The store failed after opening (emitted once, on this object's thread); see errorString(). */
    void errorOccurred(const QString &message);

private:
    friend struct detail::DurableStoreAccess;
    std::shared_ptr<detail::DurableEngine> m_engine;
    Durability m_durability;
    struct Relay;
    std::shared_ptr<Relay> m_relay;
};

inline std::shared_ptr<detail::DurableEngine> detail::DurableStoreAccess::engine(const DurableStore &store)
{
    return store.m_engine;
}

namespace detail {
STAGE_DURABLE_EXPORT void warnUndecodable(const QString &mailbox, quint64 id, const QString &reason);
/* \a options with bad values replaced (capacity: unbounded; maxMessageSize: 1 MiB;
   maxRedeliveries: 3), each with a warning. */
STAGE_DURABLE_EXPORT DurableMailboxOptions checkedOptions(const DurableMailboxOptions &options);
}

#ifndef STAGE_DURABLE_NO_MAILBOX

template<typename T>
Mailbox<T> DurableStore::mailbox(const QString &name, const DurableMailboxOptions &options)
{
    return mailbox<T>(name, options, detail::dataStreamCodec<T>());
}

template<typename T>
Mailbox<T> DurableStore::mailbox(const QString &name, const DurableMailboxOptions &options, DurableCodec<T> codec)
{
    if (!codec.encode || !codec.decode)
        throw InvalidOperation("DurableStore::mailbox: the codec needs both encode and decode");
    const DurableMailboxOptions checked = detail::checkedOptions(options);
    std::vector<detail::DurableStoredMessage> stored;
    auto journal = std::make_shared<detail::DurableJournal<T>>(m_engine, name, checked.maxMessageSize,
                                                               checked.maxRedeliveries, std::move(codec), stored);
    Mailbox<T> box = detail::MailboxAccess::makeJournaled<T>(checked.capacity, journal);
    box.setMaxRedeliveries(checked.maxRedeliveries);
    const auto core = detail::MailboxAccess::weakCore(box);
    for (auto &message : stored) {
        QString error;
        std::optional<T> value = journal->decode(message.body, error);
        if (!value) {
            const QString reason = QStringLiteral("the stored message could not be decoded: %1").arg(error);
            journal->log().deadLettered(message.id, message.failures, reason);
            if constexpr (std::is_default_constructible_v<T>)
                detail::MailboxAccess::injectDeadLetter<T>(core, T{}, message.id, message.failures, reason);
            else
                detail::warnUndecodable(name, message.id, reason);
            continue;
        }
        if (!message.dead && message.body.size() > checked.maxMessageSize) {
            // Stored under a larger limit (or by another build): kept, but not handed to a consumer.
            const QString reason = QStringLiteral("the stored message is larger than the limit (%1 > %2 bytes)")
                                       .arg(message.body.size())
                                       .arg(checked.maxMessageSize);
            journal->log().deadLettered(message.id, message.failures, reason);
            detail::MailboxAccess::injectDeadLetter<T>(core, std::move(*value), message.id, message.failures, reason);
            continue;
        }
        if (message.dead)
            detail::MailboxAccess::injectDeadLetter<T>(core, std::move(*value), message.id, message.failures,
                                                       message.reason);
        else
            detail::MailboxAccess::inject<T>(core, std::move(*value), message.id, message.deliveries,
                                             message.failures);
    }
    return box;
}
#endif

} // namespace stage
