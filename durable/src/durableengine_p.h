#pragma once

//
//  W A R N I N G
//  -------------
// Not part of the Stage API: the engine behind stage::DurableStore. We mean it.

#include <stage/detail/durablejournal.h>
#include <stage/detail/spinmutex.h>

#include <QtCore/QByteArray>
#include <QtCore/QHash>
#include <QtCore/QLoggingCategory>
#include <QtCore/QSet>
#include <QtCore/QString>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace stage {

Q_DECLARE_LOGGING_CATEGORY(lcDurableInternal)

namespace detail {

/*
    One SQLite file and the thread that writes it. Every operation on the file runs on that
    thread (the sqlite3* is its own): the hooks of the journals queue operations (Op) under
    m_mutex, and the thread takes everything queued at once, applies it in one transaction
    (coalesced per message: a message appended and acknowledged within one batch never reaches
    the file), commits, and reports the commit (m_committedSeq, the waiters). Other work (opening
    a mailbox) is a task run on the thread and waited for.

    The file: application_id 'Stg1', user_version 1, WAL, locking_mode EXCLUSIVE (one process at
    a time; a second one is refused with a clear error), synchronous NORMAL or FULL.
        stage_mailboxes(key INTEGER PRIMARY KEY, name TEXT UNIQUE)
        stage_messages(id INTEGER PRIMARY KEY, mailbox, body, deliveries, failures, held, dead, reason)
    held: handed to a consumer and not given back (a process that dies leaves it 1).
*/
class DurableEngine
{
public:
    enum class OpKind : quint8 { Append, Delivered, Requeued, Gone, Dead };
    struct Op
    {
        quint64 id;
        qint64 key;
        QByteArray bytes; // Append: the message; Dead: the reason (UTF-8)
        quint32 failures;
        OpKind kind;
    };

    DurableEngine(const QString &fileName, bool fullSync);
    ~DurableEngine();
    DurableEngine(const DurableEngine &) = delete;
    DurableEngine &operator=(const DurableEngine &) = delete;

    bool isOpen() const;
    bool hasFailed() const;
    QString errorString() const;
    const QString &fileName() const noexcept { return m_fileName; }
    /* Called (on the writer thread) once when the store fails after opening. */
    void setErrorHandler(std::function<void(const QString &)> handler);

    /* Runs \a task on the writer thread and waits for it. Throws stage::JournalError if the
       store is not open (the task does not run). */
    void runOnWriter(const std::function<void(sqlite3 *)> &task);

    /* Registers the mailbox \a name (refused if open already) and reads what the file holds. */
    qint64 openMailbox(const QString &name, int maxRedeliveries, std::vector<DurableStoredMessage> &stored);
    void closeMailbox(const QString &name);

    /* Hooks: under m_mutex, no I/O. append throws stage::JournalError once the store failed. */
    quint64 append(qint64 key, QByteArray &&bytes, quint64 &ticket);
    void post(Op &&op) noexcept;
    void postMany(std::vector<Op> &&ops) noexcept;

    void whenDurable(quint64 ticket, Waiter *waiter);
    bool waitDurable(quint64 ticket, std::chrono::steady_clock::time_point deadline);
    /* Waits until every operation queued before the call is committed. */
    bool flush(std::chrono::steady_clock::time_point deadline);

    // Counters for tests and benchmarks (any thread).
    qint64 commits() const { return m_commits.load(std::memory_order_relaxed); }
    qint64 rowsWritten() const { return m_rowsWritten.load(std::memory_order_relaxed); }

private:
    struct Task
    {
        std::function<void(sqlite3 *)> run;
        bool done = false;
    };
    // What one batch does to one message, coalesced: the transaction writes its final state.
    struct Pending
    {
        qint64 key = 0;
        int append = -1;      // index of its Append op in the batch
        int deadReason = -1;  // index of its last Dead op
        quint32 deliveries = 0;
        qint64 failures = -1; // -1: unchanged
        int held = -1;        // -1: unchanged
        enum Final : quint8 { None, Gone, Dead } final = None;
    };

    void threadMain();
    bool openFile(QString &error);
    bool applyBatch(std::vector<Op> &batch, QString &error);
    void fail(const QString &error);
    void settleWaiters();
    bool exec(const char *sql, QString &error);
    /* m_queueLock held: whether the writer sleeps and must be woken (it is marked awake). */
    bool takeWakeUpLocked() noexcept { return m_writerIdle.exchange(false, std::memory_order_relaxed); }
    void wakeWriter();
    QString sqliteError(const char *what) const;

    const QString m_fileName;
    const bool m_fullSync;
    sqlite3 *m_db = nullptr;
    sqlite3_stmt *m_begin = nullptr, *m_commit = nullptr, *m_rollback = nullptr, *m_insert = nullptr,
                 *m_delete = nullptr, *m_update = nullptr, *m_markDead = nullptr;

    // Two locks: the hooks' path takes only m_queueLock (a spin mutex around a vector push: the
    // producer, the consumers and the writer's swap contend on it for a few instructions);
    // everything else (state changes, waiters, tasks, the writer's sleep) is under m_mutex.
    // Order: m_mutex, then m_queueLock.
    mutable std::mutex m_mutex;
    std::condition_variable m_wake;      // the writer: work queued, or stop
    std::condition_variable m_committed; // waitDurable(), flush(), tasks done, opened
    SpinMutex m_queueLock;
    std::vector<Op> m_queue;    // m_queueLock
    quint64 m_seq = 0;          // m_queueLock: operations queued (an append's ticket is its sequence number)
    quint64 m_nextId = 1;       // m_queueLock
    std::atomic<bool> m_writerIdle{false}; // set under m_queueLock by the writer before it sleeps
    std::vector<Task *> m_tasks;
    quint64 m_committedSeq = 0; // operations committed
    bool m_stopping = false;
    enum class State { Opening, Open, Failed };
    std::atomic<State> m_state{State::Opening}; // written under m_mutex
    QString m_error;
    QSet<QString> m_openNames;
    std::vector<std::pair<quint64, Waiter *>> m_waiters; // a heap, smallest ticket first
    std::function<void(const QString &)> m_onError;

    // applyBatch()'s scratch space, kept between batches (writer thread only).
    std::vector<Pending> m_pending;
    std::vector<int> m_denseIndex;

    std::atomic<qint64> m_commits{0};
    std::atomic<qint64> m_rowsWritten{0};
    std::thread m_thread;
};

} // namespace detail
} // namespace stage
