// The SQLite journal of Stage::Durable, driven directly through its hooks (detail::DurableLog),
// the way a journaled Mailbox drives it: what reaches the file, what a reopen reads back, and
// how bad files are refused. The mailbox-level tests are in tst_durablestore.cpp.
#define STAGE_DURABLE_NO_MAILBOX
#include <stage/durablestore.h>

#include <QtCore/QCryptographicHash>
#include <QtCore/QFile>
#include <QtCore/QTemporaryDir>
#include <QtTest/QSignalSpy>
#include <QtTest/QTest>

#include <sqlite3.h>
#include <sys/stat.h>

using namespace std::chrono_literals;
using stage::DurableStore;
using stage::detail::DurableLog;
using stage::detail::DurableStoredMessage;
using stage::detail::DurableStoreAccess;

namespace {

QByteArray fileHash(const QString &path)
{
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return {};
    return QCryptographicHash::hash(f.readAll(), QCryptographicHash::Sha256);
}

std::unique_ptr<DurableLog> openLog(DurableStore &store, const QString &name, std::vector<DurableStoredMessage> &stored,
                                    int maxRedeliveries = 3)
{
    return std::make_unique<DurableLog>(DurableStoreAccess::engine(store), name, 1024, maxRedeliveries, stored);
}

QByteArrayList bodies(const std::vector<DurableStoredMessage> &stored)
{
    QByteArrayList list;
    for (const auto &m : stored)
        list << m.body;
    return list;
}

void runSql(const QString &path, const char *sql)
{
    sqlite3 *db = nullptr;
    QCOMPARE(sqlite3_open(QFile::encodeName(path).constData(), &db), SQLITE_OK);
    char *err = nullptr;
    const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
    const QString message = QString::fromUtf8(err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
    QVERIFY2(rc == SQLITE_OK, qPrintable(message));
}

} // namespace

class tst_DurableJournal : public QObject
{
    Q_OBJECT

private Q_SLOTS:
    void init() { QVERIFY(m_dir.isValid()); }

    void create_ownerOnlyFileMode()
    {
        const QString path = m_dir.filePath(QStringLiteral("mode.stage"));
        const mode_t old = ::umask(0); // the most permissive umask: the mode must not come from it
        {
            DurableStore store(path);
            ::umask(old);
            QVERIFY2(store.isOpen(), qPrintable(store.errorString()));
            std::vector<DurableStoredMessage> stored;
            auto log = openLog(store, QStringLiteral("m"), stored);
            quint64 ticket = 0;
            log->append(QByteArray("x"), ticket);
            QVERIFY(log->waitDurable(ticket, std::chrono::steady_clock::now() + 10s));
            for (const QString &file : {path, path + QStringLiteral("-wal")}) {
                struct stat st;
                QVERIFY2(::stat(QFile::encodeName(file).constData(), &st) == 0, qPrintable(file));
                QCOMPARE(st.st_mode & 0777, mode_t(0600));
            }
            QVERIFY(!QFile::exists(path + QStringLiteral("-shm"))); // exclusive locking: no shared memory file
        }
        ::umask(old);
    }

    void append_survivesReopenInOrder()
    {
        const QString path = m_dir.filePath(QStringLiteral("order.stage"));
        {
            DurableStore store(path);
            std::vector<DurableStoredMessage> stored;
            auto log = openLog(store, QStringLiteral("m"), stored);
            QVERIFY(stored.empty());
            quint64 ticket = 0, previous = 0;
            for (int i = 0; i < 100; ++i) {
                log->append(QByteArray::number(i), ticket);
                QVERIFY(ticket > previous); // tickets grow with each append
                previous = ticket;
            }
            QCOMPARE(log->lastTicket(), ticket);
            QVERIFY(log->waitDurable(ticket, std::chrono::steady_clock::now() + 10s));
        }
        DurableStore store(path);
        QVERIFY2(store.isOpen(), qPrintable(store.errorString()));
        std::vector<DurableStoredMessage> stored;
        auto log = openLog(store, QStringLiteral("m"), stored);
        QCOMPARE(int(stored.size()), 100);
        for (int i = 0; i < 100; ++i) {
            QCOMPARE(stored[i].body, QByteArray::number(i));
            QCOMPARE(stored[i].deliveries, 0u);
            QCOMPARE(stored[i].failures, 0u);
            QVERIFY(!stored[i].dead);
            if (i)
                QVERIFY(stored[i].id > stored[i - 1].id);
        }
        // New ids continue after the stored ones.
        quint64 ticket = 0;
        QVERIFY(log->append(QByteArray("new"), ticket) > stored.back().id);
    }

    void acknowledged_isForgotten_data()
    {
        QTest::addColumn<bool>("sameBatch"); // acknowledged before the append was committed, or after
        QTest::newRow("after commit") << false;
        QTest::newRow("same batch") << true;
    }
    void acknowledged_isForgotten()
    {
        QFETCH(bool, sameBatch);
        const QString path = m_dir.filePath(QStringLiteral("ack-%1.stage").arg(sameBatch));
        {
            DurableStore store(path);
            std::vector<DurableStoredMessage> stored;
            auto log = openLog(store, QStringLiteral("m"), stored);
            quint64 ticket = 0;
            std::vector<quint64> ids;
            for (int i = 0; i < 10; ++i)
                ids.push_back(log->append(QByteArray::number(i), ticket));
            if (!sameBatch)
                QVERIFY(store.flushBlocking(10s));
            for (int i = 0; i < 10; i += 2) { // 0, 2, 4, 6, 8 handed out and acknowledged
                log->delivered(ids[i]);
                log->acknowledged(ids[i]);
            }
            log->acknowledged(ids[0]); // twice: ignored
            log->dropped(ids[9]);      // a policy dropped it
            QVERIFY(store.flushBlocking(10s));
            QVERIFY(store.commitCount() >= 1);
        }
        DurableStore store(path);
        std::vector<DurableStoredMessage> stored;
        auto log = openLog(store, QStringLiteral("m"), stored);
        QCOMPARE(bodies(stored), (QByteArrayList{"1", "3", "5", "7"}));
    }

    void held_countsOneFailurePerDeath()
    {
        // A process that dies while a consumer holds a message: the message comes back with its
        // delivery count and one failure more; past maxRedeliveries (2 here) it is a dead letter.
        const QString path = m_dir.filePath(QStringLiteral("held.stage"));
        quint64 id = 0;
        {
            DurableStore store(path);
            std::vector<DurableStoredMessage> stored;
            auto log = openLog(store, QStringLiteral("m"), stored, 2);
            quint64 ticket = 0;
            id = log->append(QByteArray("poison"), ticket);
            log->append(QByteArray("fine"), ticket);
            QVERIFY(store.flushBlocking(10s));
        }
        for (quint32 death = 1; death <= 3; ++death) {
            DurableStore store(path);
            std::vector<DurableStoredMessage> stored;
            auto log = openLog(store, QStringLiteral("m"), stored, 2);
            QCOMPARE(int(stored.size()), 2);
            QCOMPARE(stored[0].id, id);
            QCOMPARE(stored[0].deliveries, death - 1);
            QCOMPARE(stored[0].failures, death - 1);
            QVERIFY(!stored[0].dead);
            QCOMPARE(stored[1].failures, 0u); // never delivered: no failure
            log->delivered(id);                // handed out, and the process "dies" holding it
            QVERIFY(store.flushBlocking(10s));
        }
        DurableStore store(path);
        std::vector<DurableStoredMessage> stored;
        auto log = openLog(store, QStringLiteral("m"), stored, 2);
        QCOMPARE(int(stored.size()), 2);
        QCOMPARE(stored[0].failures, 3u);
        QCOMPARE(stored[0].deliveries, 3u);
        QVERIFY(stored[0].dead);
        QCOMPARE(stored[0].reason, QStringLiteral("the process ended while a consumer held it"));
        QVERIFY(!stored[1].dead);
    }

    void requeuedAndDeadLettered_persist()
    {
        const QString path = m_dir.filePath(QStringLiteral("dead.stage"));
        quint64 a = 0, b = 0, c = 0;
        {
            DurableStore store(path);
            std::vector<DurableStoredMessage> stored;
            auto log = openLog(store, QStringLiteral("m"), stored);
            quint64 ticket = 0;
            a = log->append(QByteArray("a"), ticket);
            b = log->append(QByteArray("b"), ticket);
            c = log->append(QByteArray("c"), ticket);
            QVERIFY(store.flushBlocking(10s));
            log->delivered(a);
            log->requeued(a, 1); // its consumer failed: back in the queue, not held
            log->delivered(b);
            log->deadLettered(b, 4, QStringLiteral("boom: bad input"));
            log->delivered(c);
            log->deadLettered(c, 4, QStringLiteral("taken"));
            log->deadLettersRemoved({c});
            QVERIFY(store.flushBlocking(10s));
        }
        DurableStore store(path);
        std::vector<DurableStoredMessage> stored;
        auto log = openLog(store, QStringLiteral("m"), stored);
        QCOMPARE(int(stored.size()), 2);
        QCOMPARE(stored[0].id, a);
        QCOMPARE(stored[0].deliveries, 1u);
        QCOMPARE(stored[0].failures, 1u); // requeued, not held: no failure added by the reopen
        QVERIFY(!stored[0].dead);
        QCOMPARE(stored[1].id, b);
        QVERIFY(stored[1].dead);
        QCOMPARE(stored[1].failures, 4u);
        QCOMPARE(stored[1].reason, QStringLiteral("boom: bad input"));
    }

    void twoMailboxes_shareOneFile()
    {
        const QString path = m_dir.filePath(QStringLiteral("two.stage"));
        {
            DurableStore store(path);
            std::vector<DurableStoredMessage> s1, s2;
            auto one = openLog(store, QStringLiteral("one"), s1);
            auto two = openLog(store, QStringLiteral("two"), s2);
            quint64 ticket = 0;
            one->append(QByteArray("1a"), ticket);
            two->append(QByteArray("2a"), ticket);
            one->append(QByteArray("1b"), ticket);
            QVERIFY(two->waitDurable(ticket, std::chrono::steady_clock::now() + 10s));
            // A name is open once at a time.
            std::vector<DurableStoredMessage> s3;
            QVERIFY_THROWS_EXCEPTION(stage::JournalError, openLog(store, QStringLiteral("one"), s3));
        }
        DurableStore store(path);
        std::vector<DurableStoredMessage> s1, s2;
        auto two = openLog(store, QStringLiteral("two"), s2);
        auto one = openLog(store, QStringLiteral("one"), s1);
        QCOMPARE(bodies(s1), (QByteArrayList{"1a", "1b"}));
        QCOMPARE(bodies(s2), (QByteArrayList{"2a"}));
        one.reset(); // closing frees the name
        std::vector<DurableStoredMessage> again;
        QVERIFY(openLog(store, QStringLiteral("one"), again));
        QCOMPARE(bodies(again), (QByteArrayList{"1a", "1b"}));
    }

    void badFile_isRefusedUnchanged_data()
    {
        QTest::addColumn<QString>("kind");
        QTest::addColumn<QString>("expected"); // in errorString()
        QTest::newRow("garbage") << "garbage" << "not a SQLite database";
        QTest::newRow("foreign") << "foreign" << "another application";
        QTest::newRow("future schema") << "future" << "newer than this Stage reads";
        QTest::newRow("corrupt page") << "corrupt" << "corrupt";
    }
    void badFile_isRefusedUnchanged()
    {
        QFETCH(QString, kind);
        QFETCH(QString, expected);
        const QString path = m_dir.filePath(kind + QStringLiteral(".stage"));
        if (kind == QLatin1String("garbage")) {
            QFile f(path);
            QVERIFY(f.open(QIODevice::WriteOnly));
            QByteArray junk(8192, '\0');
            for (int i = 0; i < junk.size(); ++i)
                junk[i] = char((i * 7919) ^ (i >> 3));
            f.write(junk);
        } else if (kind == QLatin1String("foreign")) {
            runSql(path, "CREATE TABLE contacts(name TEXT); INSERT INTO contacts VALUES('Ada');");
        } else {
            {
                DurableStore store(path);
                std::vector<DurableStoredMessage> stored;
                auto log = openLog(store, QStringLiteral("m"), stored);
                quint64 ticket = 0;
                for (int i = 0; i < 2000; ++i) // several pages of messages
                    log->append(QByteArray(200, char('a' + i % 26)), ticket);
                QVERIFY(store.flushBlocking(10s));
            } // closed: checkpointed into the main file
            if (kind == QLatin1String("future")) {
                runSql(path, "PRAGMA user_version=99");
            } else {
                QFile f(path);
                QVERIFY(f.open(QIODevice::ReadWrite));
                QVERIFY(f.size() > 8 * 4096);
                f.seek(5 * 4096); // the middle of the messages' b-tree: page headers overwritten
                f.write(QByteArray(4096 * 2, '\x5a'));
            }
        }
        QFile::setPermissions(path, QFileDevice::ReadOwner | QFileDevice::WriteOwner); // no warning about the mode
        const QByteArray before = fileHash(path);
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("DurableStore: cannot open .*")));
        DurableStore store(path);
        QVERIFY(!store.isOpen());
        QVERIFY2(store.errorString().contains(expected), qPrintable(store.errorString()));
        std::vector<DurableStoredMessage> stored;
        QVERIFY_THROWS_EXCEPTION(stage::JournalError, openLog(store, QStringLiteral("m"), stored));
        QCOMPARE(fileHash(path), before); // never written
    }

    void unwritablePath_isAClearError()
    {
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("DurableStore: cannot open .*")));
        DurableStore store(m_dir.filePath(QStringLiteral("no/such/dir/x.stage")));
        QVERIFY(!store.isOpen());
        QVERIFY2(store.errorString().contains(QStringLiteral("cannot create the file")), qPrintable(store.errorString()));
    }

    void secondStoreOnOneFile_isRefused()
    {
        const QString path = m_dir.filePath(QStringLiteral("locked.stage"));
        DurableStore first(path);
        QVERIFY(first.isOpen());
        QTest::ignoreMessage(QtWarningMsg, QRegularExpression(QStringLiteral("DurableStore: cannot open .*")));
        DurableStore second(path);
        QVERIFY(!second.isOpen());
        QVERIFY2(second.errorString().contains(QStringLiteral("in use by another process")),
                 qPrintable(second.errorString()));
        QVERIFY(first.isOpen());
    }

    void waitDurable_timesOutOnlyWhenNotCommitted()
    {
        const QString path = m_dir.filePath(QStringLiteral("wait.stage"));
        DurableStore store(path);
        std::vector<DurableStoredMessage> stored;
        auto log = openLog(store, QStringLiteral("m"), stored);
        QCOMPARE(log->lastTicket(), quint64(0));
        QVERIFY(log->waitDurable(0, std::chrono::steady_clock::now())); // nothing appended: durable
        quint64 ticket = 0;
        log->append(QByteArray("x"), ticket);
        QVERIFY(log->waitDurable(ticket, std::chrono::steady_clock::time_point::max()));
        QVERIFY(!log->waitDurable(ticket + 1000, std::chrono::steady_clock::now() + 50ms)); // never appended
    }

private:
    QTemporaryDir m_dir;
};

QTEST_GUILESS_MAIN(tst_DurableJournal)
#include "tst_durablejournal.moc"
