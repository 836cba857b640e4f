#include "durableengine_p.h"

#include <stage/detail/waiter.h>
#include <stage/errors.h>

#include <QtCore/QFile>

#include <sqlite3.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_map>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace stage {

Q_LOGGING_CATEGORY(lcDurableInternal, "stage.durable")

namespace detail {

namespace {

// 'Stg1': what PRAGMA application_id holds in a Stage durable store.
constexpr int kApplicationId = 0x53746731;
// The schema this code writes and reads (PRAGMA user_version).
constexpr int kSchemaVersion = 1;
// How long a connection waits for a lock another process holds before it gives up.
constexpr int kBusyTimeoutMs = 1000;

const char kHeldReason[] = "the process ended while a consumer held it";

struct Statement
{
    sqlite3_stmt *stmt = nullptr;
    ~Statement() { sqlite3_finalize(stmt); }
};

} // namespace

DurableEngine::DurableEngine(const QString &fileName, bool fullSync) : m_fileName(fileName), m_fullSync(fullSync)
{
    m_thread = std::thread([this] { threadMain(); });
    std::unique_lock lock(m_mutex);
    m_committed.wait(lock, [this] { return m_state != State::Opening; });
}

DurableEngine::~DurableEngine()
{
    {
        std::lock_guard lock(m_mutex);
        m_stopping = true;
    }
    m_wake.notify_all();
    m_thread.join(); // applies what is queued first
    // Waiters still listed can only be those of a failed store (settled already) or none.
    for (auto &entry : m_waiters) {
        entry.second->publishError(std::make_exception_ptr(
            JournalError("DurableStore: the store was closed before the message was committed")));
        entry.second->deref();
    }
}

bool DurableEngine::isOpen() const
{
    std::lock_guard lock(m_mutex);
    return m_state == State::Open;
}

bool DurableEngine::hasFailed() const
{
    std::lock_guard lock(m_mutex);
    return m_state == State::Failed;
}

QString DurableEngine::errorString() const
{
    std::lock_guard lock(m_mutex);
    return m_error;
}

void DurableEngine::setErrorHandler(std::function<void(const QString &)> handler)
{
    std::lock_guard lock(m_mutex);
    m_onError = std::move(handler);
}

QString DurableEngine::sqliteError(const char *what) const
{
    const int code = m_db ? sqlite3_extended_errcode(m_db) : SQLITE_CANTOPEN;
    const int primary = code & 0xff;
    QString cause;
    if (primary == SQLITE_NOTADB)
        cause = QStringLiteral("the file is not a SQLite database (corrupt, or another kind of file)");
    else if (primary == SQLITE_CORRUPT)
        cause = QStringLiteral("the file is corrupt");
    else if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
        cause = QStringLiteral("the file is in use by another process (or another DurableStore)");
    else if (primary == SQLITE_FULL)
        cause = QStringLiteral("the disk is full");
    else if (primary == SQLITE_READONLY || primary == SQLITE_PERM || primary == SQLITE_CANTOPEN)
        cause = QStringLiteral("the file cannot be written");
    else if (primary == SQLITE_IOERR)
        cause = QStringLiteral("the file could not be written or read");
    QString detail = QString::fromUtf8(m_db ? sqlite3_errmsg(m_db) : sqlite3_errstr(code));
    if (const int systemError = m_db ? sqlite3_system_errno(m_db) : 0)
        detail += QStringLiteral("; system: %1").arg(QString::fromLocal8Bit(std::strerror(systemError)));
    return QStringLiteral("%1: %2%3(SQLite: %4)")
        .arg(QString::fromLatin1(what), cause, cause.isEmpty() ? QString() : QStringLiteral(" "), detail);
}

bool DurableEngine::exec(const char *sql, QString &error)
{
    if (sqlite3_exec(m_db, sql, nullptr, nullptr, nullptr) == SQLITE_OK)
        return true;
    error = sqliteError(sql);
    return false;
}

bool DurableEngine::openFile(QString &error)
{
    const QByteArray path = QFile::encodeName(m_fileName);
    if (path.isEmpty()) {
        error = QStringLiteral("no file name given");
        return false;
    }
    // Created here, owner-only from the first byte: SQLite would create it with 0644 (less the
    // umask), and it gives the -wal file the mode of the database file.
    const int fd = ::open(path.constData(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        ::close(fd);
    } else if (errno != EEXIST) {
        error = QStringLiteral("cannot create the file: %1").arg(QString::fromLocal8Bit(std::strerror(errno)));
        return false;
    } else {
        struct stat st;
        if (::stat(path.constData(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
            qCWarning(lcDurableInternal, "DurableStore: %s is readable or writable by others (mode %o); "
                                         "Stage creates its files with mode 600",
                      path.constData(), unsigned(st.st_mode & 0777));
    }

    if (sqlite3_open_v2(path.constData(), &m_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr)
        != SQLITE_OK) {
        error = sqliteError("open");
        return false;
    }
    sqlite3_extended_result_codes(m_db, 1);
    sqlite3_busy_timeout(m_db, kBusyTimeoutMs);
    // One process (one connection) at a time: the WAL then needs no shared-memory file either.
    if (!exec("PRAGMA locking_mode=EXCLUSIVE", error))
        return false;

    // Read only, until the file is known to be ours (or empty): a foreign file is never written.
    auto readInt = [&](const char *sql, qint64 &value) {
        Statement s;
        if (sqlite3_prepare_v2(m_db, sql, -1, &s.stmt, nullptr) != SQLITE_OK) {
            error = sqliteError(sql);
            return false;
        }
        const int rc = sqlite3_step(s.stmt);
        if (rc != SQLITE_ROW) {
            error = sqliteError(sql);
            return false;
        }
        value = sqlite3_column_int64(s.stmt, 0);
        return true;
    };
    qint64 applicationId = 0, userVersion = 0, objects = 0;
    if (!readInt("PRAGMA application_id", applicationId) || !readInt("PRAGMA user_version", userVersion)
        || !readInt("SELECT count(*) FROM sqlite_schema", objects))
        return false;
    bool create = false;
    if (applicationId == kApplicationId) {
        if (userVersion > kSchemaVersion) {
            error = QStringLiteral("the file has schema version %1, newer than this Stage reads (%2): "
                                   "written by a newer Stage; it was not changed")
                        .arg(userVersion)
                        .arg(kSchemaVersion);
            return false;
        }
        if (userVersion < 1) {
            error = QStringLiteral("the file is a Stage store of an unknown schema version %1").arg(userVersion);
            return false;
        }
    } else if (applicationId == 0 && objects == 0) {
        create = true;
    } else {
        error = QStringLiteral("the file is a SQLite database of another application (application_id %1, "
                               "%2 schema objects), not a Stage durable store; it was not changed")
                    .arg(applicationId)
                    .arg(objects);
        return false;
    }
    if (!create) {
        Statement check;
        if (sqlite3_prepare_v2(m_db, "PRAGMA quick_check(1)", -1, &check.stmt, nullptr) != SQLITE_OK
            || sqlite3_step(check.stmt) != SQLITE_ROW) {
            error = sqliteError("integrity check");
            return false;
        }
        const QString verdict = QString::fromUtf8(reinterpret_cast<const char *>(sqlite3_column_text(check.stmt, 0)));
        if (verdict != QLatin1String("ok")) {
            error = QStringLiteral("the file is corrupt (integrity check: %1); it was not changed").arg(verdict);
            return false;
        }
    }

    {
        Statement wal;
        if (sqlite3_prepare_v2(m_db, "PRAGMA journal_mode=WAL", -1, &wal.stmt, nullptr) != SQLITE_OK
            || sqlite3_step(wal.stmt) != SQLITE_ROW) {
            error = sqliteError("PRAGMA journal_mode=WAL");
            return false;
        }
        const char *mode = reinterpret_cast<const char *>(sqlite3_column_text(wal.stmt, 0));
        if (!mode || std::strcmp(mode, "wal") != 0) {
            error = QStringLiteral("the file system does not support SQLite's WAL mode (journal mode %1)")
                        .arg(QString::fromUtf8(mode ? mode : "?"));
            return false;
        }
    }
    if (!exec(m_fullSync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", error))
        return false;
    if (create) {
        static const char schema[] =
            "BEGIN IMMEDIATE;"
            "CREATE TABLE stage_mailboxes(key INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE) STRICT;"
            "CREATE TABLE stage_messages(id INTEGER PRIMARY KEY, mailbox INTEGER NOT NULL, body BLOB NOT NULL,"
            " deliveries INTEGER NOT NULL, failures INTEGER NOT NULL, held INTEGER NOT NULL,"
            " dead INTEGER NOT NULL, reason TEXT) STRICT;"
            "PRAGMA application_id=1400137521;" // kApplicationId
            "PRAGMA user_version=1;"
            "COMMIT;";
        static_assert(kApplicationId == 1400137521);
        if (!exec(schema, error)) {
            sqlite3_exec(m_db, "ROLLBACK", nullptr, nullptr, nullptr);
            return false;
        }
    } else if (!exec("BEGIN IMMEDIATE; COMMIT;", error)) { // takes the file's lock now
        return false;
    }

    auto prepare = [&](const char *sql, sqlite3_stmt *&stmt) {
        if (sqlite3_prepare_v3(m_db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) == SQLITE_OK)
            return true;
        error = QStringLiteral("the Stage tables are missing or damaged: %1").arg(sqliteError(sql));
        return false;
    };
    if (!prepare("BEGIN IMMEDIATE", m_begin) || !prepare("COMMIT", m_commit) || !prepare("ROLLBACK", m_rollback)
        || !prepare("INSERT INTO stage_messages(id, mailbox, body, deliveries, failures, held, dead, reason)"
                    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    m_insert)
        || !prepare("DELETE FROM stage_messages WHERE id = ?1", m_delete)
        || !prepare("UPDATE stage_messages SET deliveries = deliveries + ?2, failures = coalesce(?3, failures),"
                    " held = coalesce(?4, held) WHERE id = ?1",
                    m_update)
        || !prepare("UPDATE stage_messages SET deliveries = deliveries + ?2, failures = ?3, held = 0, dead = 1,"
                    " reason = ?4 WHERE id = ?1",
                    m_markDead))
        return false;
    qint64 maxId = 0;
    if (!readInt("SELECT coalesce(max(id), 0) FROM stage_messages", maxId))
        return false;
    m_nextId = quint64(maxId) + 1;
    return true;
}

void DurableEngine::threadMain()
{
    QString error;
    const bool ok = openFile(error);
    {
        std::lock_guard lock(m_mutex);
        m_state = ok ? State::Open : State::Failed;
        m_error = error;
    }
    if (!ok)
        qCWarning(lcDurableInternal, "DurableStore: cannot open %s: %s", qPrintable(m_fileName), qPrintable(error));
    m_committed.notify_all();

    std::vector<Op> batch;
    std::vector<Task *> tasks;
    for (;;) {
        quint64 upto = 0;
        bool stopping = false;
        {
            std::unique_lock lock(m_mutex);
            for (;;) {
                bool haveOps;
                {
                    std::lock_guard queueLock(m_queueLock);
                    haveOps = !m_queue.empty();
                    m_writerIdle.store(!haveOps, std::memory_order_relaxed);
                }
                if (haveOps || !m_tasks.empty() || m_stopping)
                    break;
                m_wake.wait(lock); // a poster that finds m_writerIdle takes m_mutex to notify
            }
            m_writerIdle.store(false, std::memory_order_relaxed);
            tasks.swap(m_tasks);
            stopping = m_stopping;
        }
        {
            std::lock_guard queueLock(m_queueLock);
            batch.swap(m_queue);
            upto = m_seq;
        }
        if (batch.empty() && tasks.empty() && stopping)
            break; // stopping, and nothing left
        for (Task *task : tasks) {
            if (!hasFailed())
                task->run(m_db);
            std::lock_guard lock(m_mutex);
            task->done = true;
        }
        if (!tasks.empty()) {
            tasks.clear();
            m_committed.notify_all();
        }
        if (batch.empty())
            continue;
        if (!hasFailed()) {
            QString batchError;
            if (applyBatch(batch, batchError)) {
                m_commits.fetch_add(1, std::memory_order_relaxed);
                std::lock_guard lock(m_mutex);
                m_committedSeq = std::max(m_committedSeq, upto);
            } else {
                fail(batchError);
            }
        }
        batch.clear();
        settleWaiters();
        m_committed.notify_all();
    }

    for (sqlite3_stmt *s : {m_begin, m_commit, m_rollback, m_insert, m_delete, m_update, m_markDead})
        sqlite3_finalize(s);
    if (m_db && sqlite3_close(m_db) != SQLITE_OK)
        qCWarning(lcDurableInternal, "DurableStore: closing %s: %s", qPrintable(m_fileName), sqlite3_errmsg(m_db));
    m_db = nullptr;
}

bool DurableEngine::applyBatch(std::vector<Op> &batch, QString &error)
{
    // The messages of the batch, in the order first seen. Ids are mostly recent and close
    // together (one counter for the file): a dense index over their range when it is small,
    // a hash map otherwise.
    quint64 minId = ~quint64(0), maxId = 0;
    for (const Op &op : batch) {
        minId = std::min(minId, op.id);
        maxId = std::max(maxId, op.id);
    }
    const bool dense = maxId - minId < quint64(4 * batch.size() + 4096);
    m_denseIndex.clear();
    if (dense)
        m_denseIndex.assign(std::size_t(maxId - minId + 1), -1);
    std::unordered_map<quint64, int> sparseIndex;
    m_pending.clear();
    m_pending.reserve(batch.size());
    std::vector<Pending> &pending = m_pending;
    std::vector<quint64> order;
    order.reserve(batch.size());
    for (int i = 0; i < int(batch.size()); ++i) {
        const Op &op = batch[i];
        int *slot;
        if (dense) {
            slot = &m_denseIndex[std::size_t(op.id - minId)];
        } else {
            slot = &sparseIndex.try_emplace(op.id, -1).first->second;
        }
        if (*slot < 0) {
            *slot = int(pending.size());
            pending.emplace_back();
            pending.back().key = op.key;
            order.push_back(op.id);
        }
        Pending &p = pending[*slot];
        switch (op.kind) {
        case OpKind::Append:
            p.append = i;
            break;
        case OpKind::Delivered:
            ++p.deliveries;
            p.held = 1;
            break;
        case OpKind::Requeued:
            p.held = 0;
            p.failures = op.failures;
            break;
        case OpKind::Gone:
            p.final = Pending::Gone;
            break;
        case OpKind::Dead:
            p.final = Pending::Dead;
            p.failures = op.failures;
            p.held = 0;
            p.deadReason = i;
            break;
        }
    }

    auto step = [&](sqlite3_stmt *s) {
        const int rc = sqlite3_step(s);
        if (rc != SQLITE_DONE)
            error = sqliteError(sqlite3_sql(s)); // before the reset, which may clear the cause
        sqlite3_reset(s);
        return rc == SQLITE_DONE;
    };
    if (!step(m_begin))
        return false;
    qint64 rows = 0;
    bool ok = true;
    for (std::size_t n = 0; n < order.size(); ++n) {
        const quint64 id = order[n];
        const Pending &p = pending[n]; // pending is in the order first seen too
        if (p.append >= 0) {
            if (p.final == Pending::Gone)
                continue; // appended and acknowledged (or dropped) within the batch
            const QByteArray &body = batch[p.append].bytes;
            sqlite3_bind_int64(m_insert, 1, qint64(id));
            sqlite3_bind_int64(m_insert, 2, p.key);
            sqlite3_bind_blob(m_insert, 3, body.constData(), int(body.size()), SQLITE_STATIC);
            sqlite3_bind_int64(m_insert, 4, p.deliveries);
            sqlite3_bind_int64(m_insert, 5, std::max<qint64>(p.failures, 0));
            sqlite3_bind_int(m_insert, 6, std::max(p.held, 0));
            sqlite3_bind_int(m_insert, 7, p.final == Pending::Dead ? 1 : 0);
            if (p.final == Pending::Dead) {
                const QByteArray &reason = batch[p.deadReason].bytes;
                sqlite3_bind_text(m_insert, 8, reason.constData(), int(reason.size()), SQLITE_STATIC);
            } else {
                sqlite3_bind_null(m_insert, 8);
            }
            ok = step(m_insert);
        } else if (p.final == Pending::Gone) {
            sqlite3_bind_int64(m_delete, 1, qint64(id));
            ok = step(m_delete);
        } else if (p.final == Pending::Dead) {
            const QByteArray &reason = batch[p.deadReason].bytes;
            sqlite3_bind_int64(m_markDead, 1, qint64(id));
            sqlite3_bind_int64(m_markDead, 2, p.deliveries);
            sqlite3_bind_int64(m_markDead, 3, p.failures);
            sqlite3_bind_text(m_markDead, 4, reason.constData(), int(reason.size()), SQLITE_STATIC);
            ok = step(m_markDead);
        } else {
            sqlite3_bind_int64(m_update, 1, qint64(id));
            sqlite3_bind_int64(m_update, 2, p.deliveries);
            if (p.failures >= 0)
                sqlite3_bind_int64(m_update, 3, p.failures);
            else
                sqlite3_bind_null(m_update, 3);
            if (p.held >= 0)
                sqlite3_bind_int(m_update, 4, p.held);
            else
                sqlite3_bind_null(m_update, 4);
            ok = step(m_update);
        }
        if (!ok)
            break;
        ++rows;
    }
    if (ok && step(m_commit)) {
        m_rowsWritten.fetch_add(rows, std::memory_order_relaxed);
        return true;
    }
    const QString firstError = error;
    sqlite3_step(m_rollback);
    sqlite3_reset(m_rollback);
    error = firstError;
    return false;
}

void DurableEngine::fail(const QString &error)
{
    std::function<void(const QString &)> handler;
    {
        std::lock_guard lock(m_mutex);
        if (m_state == State::Failed)
            return;
        m_state = State::Failed;
        m_error = error;
        {
            std::lock_guard queueLock(m_queueLock);
            m_queue.clear();
        }
        handler = m_onError;
    }
    qCCritical(lcDurableInternal, "DurableStore: %s failed: %s; sends fail with stage::JournalError from now on",
               qPrintable(m_fileName), qPrintable(error));
    if (handler)
        handler(error);
}

void DurableEngine::settleWaiters()
{
    std::vector<std::pair<quint64, Waiter *>> due;
    bool failed;
    QString error;
    {
        std::lock_guard lock(m_mutex);
        failed = m_state == State::Failed;
        error = m_error;
        auto later = [](const auto &a, const auto &b) { return a.first > b.first; };
        while (!m_waiters.empty() && (failed || m_waiters.front().first <= m_committedSeq)) {
            std::pop_heap(m_waiters.begin(), m_waiters.end(), later);
            due.push_back(m_waiters.back());
            m_waiters.pop_back();
        }
    }
    for (auto &[ticket, waiter] : due) {
        // The mailbox claimed the waiter before whenDurable(): publish it, exactly once.
        if (failed)
            waiter->publishError(std::make_exception_ptr(
                JournalError(QStringLiteral("DurableStore %1: %2").arg(m_fileName, error).toStdString())));
        else
            waiter->publish(Waiter::Outcome::Value);
        waiter->deref();
    }
}

void DurableEngine::runOnWriter(const std::function<void(sqlite3 *)> &run)
{
    Task task{run};
    {
        std::unique_lock lock(m_mutex);
        if (m_state != State::Open)
            throw JournalError(QStringLiteral("DurableStore %1: %2").arg(m_fileName, m_error).toStdString());
        m_tasks.push_back(&task);
        m_wake.notify_one();
        m_committed.wait(lock, [&] { return task.done; });
    }
}

qint64 DurableEngine::openMailbox(const QString &name, int maxRedeliveries, std::vector<DurableStoredMessage> &stored)
{
    {
        std::lock_guard lock(m_mutex);
        if (m_state == State::Open && m_openNames.contains(name))
            throw JournalError(
                QStringLiteral("DurableStore %1: the mailbox \"%2\" is open already").arg(m_fileName, name).toStdString());
        m_openNames.insert(name);
    }
    qint64 key = 0;
    QString error;
    bool ran = false;
    try {
        runOnWriter([&](sqlite3 *db) {
            ran = true;
            const QByteArray utf8 = name.toUtf8();
            auto fail = [&](const char *what) {
                error = sqliteError(what);
                sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
            };
            if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK)
                return fail("BEGIN");
            {
                Statement s;
                if (sqlite3_prepare_v2(db, "INSERT INTO stage_mailboxes(name) VALUES(?1) ON CONFLICT(name) DO NOTHING",
                                       -1, &s.stmt, nullptr)
                    != SQLITE_OK)
                    return fail("INSERT INTO stage_mailboxes");
                sqlite3_bind_text(s.stmt, 1, utf8.constData(), int(utf8.size()), SQLITE_STATIC);
                if (sqlite3_step(s.stmt) != SQLITE_DONE)
                    return fail("INSERT INTO stage_mailboxes");
            }
            {
                Statement s;
                if (sqlite3_prepare_v2(db, "SELECT key FROM stage_mailboxes WHERE name = ?1", -1, &s.stmt, nullptr)
                    != SQLITE_OK)
                    return fail("SELECT FROM stage_mailboxes");
                sqlite3_bind_text(s.stmt, 1, utf8.constData(), int(utf8.size()), SQLITE_STATIC);
                if (sqlite3_step(s.stmt) != SQLITE_ROW)
                    return fail("SELECT FROM stage_mailboxes");
                key = sqlite3_column_int64(s.stmt, 0);
            }
            std::vector<quint64> newlyDead;
            {
                Statement s;
                if (sqlite3_prepare_v2(db, "SELECT id, body, deliveries, failures, held, dead, reason"
                                           " FROM stage_messages WHERE mailbox = ?1 ORDER BY id",
                                       -1, &s.stmt, nullptr)
                    != SQLITE_OK)
                    return fail("SELECT FROM stage_messages");
                sqlite3_bind_int64(s.stmt, 1, key);
                int rc;
                while ((rc = sqlite3_step(s.stmt)) == SQLITE_ROW) {
                    DurableStoredMessage m;
                    m.id = quint64(sqlite3_column_int64(s.stmt, 0));
                    m.body = QByteArray(static_cast<const char *>(sqlite3_column_blob(s.stmt, 1)),
                                        sqlite3_column_bytes(s.stmt, 1));
                    m.deliveries = quint32(std::max<qint64>(sqlite3_column_int64(s.stmt, 2), 0));
                    m.failures = quint32(std::max<qint64>(sqlite3_column_int64(s.stmt, 3), 0));
                    const bool held = sqlite3_column_int(s.stmt, 4) != 0;
                    m.dead = sqlite3_column_int(s.stmt, 5) != 0;
                    if (const auto *reason = sqlite3_column_text(s.stmt, 6))
                        m.reason = QString::fromUtf8(reinterpret_cast<const char *>(reason));
                    if (held && !m.dead) {
                        ++m.failures; // its consumer died with the process
                        if (qint64(m.failures) > maxRedeliveries) {
                            m.dead = true;
                            m.reason = QString::fromLatin1(kHeldReason);
                            newlyDead.push_back(m.id);
                        }
                    }
                    stored.push_back(std::move(m));
                }
                if (rc != SQLITE_DONE)
                    return fail("SELECT FROM stage_messages");
            }
            // What the dead process held counts one failure, recorded now: a message that kills
            // the process every time it is handled ends among the dead letters.
            {
                Statement s;
                if (sqlite3_prepare_v2(db, "UPDATE stage_messages SET failures = failures + 1, held = 0"
                                           " WHERE mailbox = ?1 AND held = 1 AND dead = 0",
                                       -1, &s.stmt, nullptr)
                    != SQLITE_OK)
                    return fail("UPDATE stage_messages");
                sqlite3_bind_int64(s.stmt, 1, key);
                if (sqlite3_step(s.stmt) != SQLITE_DONE)
                    return fail("UPDATE stage_messages");
            }
            if (!newlyDead.empty()) {
                Statement s;
                if (sqlite3_prepare_v2(db, "UPDATE stage_messages SET dead = 1, reason = ?2 WHERE id = ?1", -1,
                                       &s.stmt, nullptr)
                    != SQLITE_OK)
                    return fail("UPDATE stage_messages");
                for (quint64 id : newlyDead) {
                    sqlite3_bind_int64(s.stmt, 1, qint64(id));
                    sqlite3_bind_text(s.stmt, 2, kHeldReason, -1, SQLITE_STATIC);
                    if (sqlite3_step(s.stmt) != SQLITE_DONE)
                        return fail("UPDATE stage_messages");
                    sqlite3_reset(s.stmt);
                }
            }
            if (sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK)
                return fail("COMMIT");
        });
    } catch (...) {
        closeMailbox(name);
        throw;
    }
    if (!ran || !error.isEmpty()) {
        closeMailbox(name);
        if (error.isEmpty())
            error = errorString();
        else
            fail(error);
        throw JournalError(
            QStringLiteral("DurableStore %1: cannot open the mailbox \"%2\": %3").arg(m_fileName, name, error).toStdString());
    }
    return key;
}

void DurableEngine::closeMailbox(const QString &name)
{
    std::lock_guard lock(m_mutex);
    m_openNames.remove(name);
}

void DurableEngine::wakeWriter()
{
    std::lock_guard lock(m_mutex); // the writer is between its last look and its wait, or waiting
    m_wake.notify_one();
}

quint64 DurableEngine::append(qint64 key, QByteArray &&bytes, quint64 &ticket)
{
    quint64 id = 0;
    bool wake = false;
    {
        std::lock_guard lock(m_queueLock);
        if (m_state.load(std::memory_order_acquire) == State::Open) {
            id = m_nextId++;
            ticket = ++m_seq;
            m_queue.push_back(Op{id, key, std::move(bytes), 0, OpKind::Append});
            wake = takeWakeUpLocked();
        }
    }
    if (id == 0)
        throw JournalError(QStringLiteral("DurableStore %1: %2").arg(m_fileName, errorString()).toStdString());
    if (wake)
        wakeWriter();
    return id;
}

void DurableEngine::post(Op &&op) noexcept
{
    bool wake = false;
    try {
        std::lock_guard lock(m_queueLock);
        if (m_state.load(std::memory_order_acquire) != State::Open)
            return;
        m_queue.push_back(std::move(op));
        ++m_seq;
        wake = takeWakeUpLocked();
    } catch (...) {
        // Out of memory: the operation is lost; the message comes back at the next open.
    }
    if (wake)
        wakeWriter();
}

void DurableEngine::postMany(std::vector<Op> &&ops) noexcept
{
    bool wake = false;
    try {
        std::lock_guard lock(m_queueLock);
        if (m_state.load(std::memory_order_acquire) != State::Open)
            return;
        for (Op &op : ops) {
            m_queue.push_back(std::move(op));
            ++m_seq;
        }
        wake = takeWakeUpLocked();
    } catch (...) {
    }
    if (wake)
        wakeWriter();
}

void DurableEngine::whenDurable(quint64 ticket, Waiter *waiter)
{
    QString error;
    {
        std::lock_guard lock(m_mutex);
        if (ticket > m_committedSeq) {
            if (m_state == State::Open) {
                waiter->ref();
                m_waiters.emplace_back(ticket, waiter);
                std::push_heap(m_waiters.begin(), m_waiters.end(),
                               [](const auto &a, const auto &b) { return a.first > b.first; });
                return;
            }
            error = m_error;
        }
    }
    if (error.isEmpty()) { // durable already (publish() only posts the resumption)
        waiter->publish(Waiter::Outcome::Value);
        return;
    }
    waiter->publishError(std::make_exception_ptr(
        JournalError(QStringLiteral("DurableStore %1: %2").arg(m_fileName, error).toStdString())));
}

bool DurableEngine::waitDurable(quint64 ticket, std::chrono::steady_clock::time_point deadline)
{
    std::unique_lock lock(m_mutex);
    auto done = [&] { return m_committedSeq >= ticket || m_state != State::Open; };
    if (deadline == std::chrono::steady_clock::time_point::max())
        m_committed.wait(lock, done);
    else if (!m_committed.wait_until(lock, deadline, done))
        return false;
    if (m_committedSeq >= ticket)
        return true;
    throw JournalError(QStringLiteral("DurableStore %1: %2").arg(m_fileName, m_error).toStdString());
}

bool DurableEngine::flush(std::chrono::steady_clock::time_point deadline)
{
    std::unique_lock lock(m_mutex);
    quint64 target;
    {
        std::lock_guard queueLock(m_queueLock);
        target = m_seq;
    }
    auto done = [&] { return m_committedSeq >= target || m_state != State::Open; };
    if (deadline == std::chrono::steady_clock::time_point::max())
        m_committed.wait(lock, done);
    else if (!m_committed.wait_until(lock, deadline, done))
        return false;
    return m_committedSeq >= target;
}

} // namespace detail
} // namespace stage
