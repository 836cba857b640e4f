#pragma once
// The demo's background work: what the supervision tree runs, and what it achieved.

#include "faults.h"
#include "filefeed.h"
#include "flakyserver.h"
#include "messages.h"

#include <stage/mailbox.h>
#include <stage/worker.h>

#include <QtCore/QHash>
#include <QtCore/QMutex>
#include <QtCore/QObject>
#include <QtCore/QRandomGenerator>
#include <QtCore/QTimer>

#include <atomic>

/* The published index: words per file and, once the hasher got to it, the file's SHA-256. Thread: any. */
class Index
{
public:
    void addFile(const QString &path, qint64 words);
    /* Up to \a max indexed files that have no hash yet. */
    QStringList unhashed(int max) const;
    void setHashes(const QHash<QString, QByteArray> &hashes);

    struct Totals
    {
        qint64 files = 0, words = 0, hashed = 0;
    };
    Totals totals() const;

private:
    struct Entry
    {
        qint64 words = 0;
        QByteArray sha256;
    };
    mutable QMutex m_mutex;
    QHash<QString, Entry> m_entries;
    Totals m_totals;
};

/*
    Owns the work the tree's workers do: the three mailboxes and their ledgers, the file feed, the
    flaky server, the simulated device, the image source, the index and the fault flags; registers
    the worker bodies by name ("indexer", "hasher", "fetcher", "requester", "poller") and the
    mailboxes ("paths", "requests") for the QML declaration to use. The images go to the
    thumbnailer, a ProcessGroup (isolated.h): the world sends one every imageIntervalMs and
    counts the thumbnails its child processes answer with (on the GUI thread). Lives on the GUI thread; worker bodies reach it
    from their own threads through the thread-safe parts only (mailboxes, ledgers, index, faults,
    atomics, post()).

    Must outlive the tree, and every abandoned worker frame: waitForHangs() before destroying it.
*/
class DemoWorld : public QObject
{
    Q_OBJECT

public:
    struct Options
    {
        quint32 seed = 1;
        int initialFiles = 24;
        int fileIntervalMs = 350;
        int requestIntervalMs = 250;
        int pollIntervalMs = 120;
        double deviceHangRate = 0.004; // per poll: a natural hang every ~30 s
        int hangMs = 3000;             // how long an injected foreign hang lasts
        int fetchTimeoutMs = 800;      // the fetcher's wait for the server, per attempt
        int imageIntervalMs = 300;     // a new image for the thumbnailer
    };

    explicit DemoWorld(const Options &options, QObject *parent = nullptr);
    ~DemoWorld() override;

    /* Registers the workers and mailboxes, starts the server and the feed. */
    bool start();
    /* Stops producing (no new files, no new requests) so the mailboxes can drain. */
    void setProducing(bool on);
    bool isProducing() const { return m_producing.load(); }
    /* Spins the event loop until no injected foreign hang is in progress (at most \a timeoutMs). */
    bool waitForHangs(int timeoutMs);

    /* Sends a request the server always answers with garbage: it ends in the dead letters. */
    void sendPoisonRequest();
    /* Sends an image the thumbnailer's codec segfaults on: its child processes crash on it until
       it is dead-lettered; the app carries on. */
    void sendPoisonImage();
    /* Writes a file the indexer always fails on. */
    QString writeCorruptFile() { return m_feed.writeCorruptFile(); }

    const Options options;
    Faults faults;
    Index index;
    Ledger pathsLedger;
    Ledger requestsLedger;
    stage::Mailbox<PathMessage> paths;
    stage::Mailbox<FetchRequest> requests;
    Ledger imagesLedger;
    stage::Mailbox<ImageRequest> images;
    FileFeed &feed() { return m_feed; }
    /* The flaky server's port: set by start(), before any worker runs. Thread: any. */
    quint16 serverPort() const { return m_serverPort.load(); }
    FlakyServer &server() { return m_server; }

    // The requester's view of its requests (GUI thread).
    std::atomic<qint64> requestsSent{0}, requestsAnswered{0}, requestsDeadLettered{0}, requestsTimedOut{0},
        fetchAttempts{0};
    // The thumbnailer's answers (GUI thread): thumbnails made, images dead-lettered, and the
    // distinct child processes that made them.
    std::atomic<qint64> imagesSent{0}, thumbnails{0}, imagesDeadLettered{0};
    QSet<qint64> thumbnailPids;
    // The poller's readings (GUI thread).
    std::atomic<qint64> readings{0};
    std::atomic<int> lastReadingCentis{0};

    quint64 nextRequestId() { return m_nextRequestId.fetch_add(1); }
    /* A worker (\a worker: its registered name) began an injected foreign hang. Thread: any. */
    void noteHangBegan(const QString &worker);
    /* A worker's injected foreign hang is over (its frame has unwound). Thread: any. */
    void noteHangEnded();
    /* Posts \a text for the event log from any thread. */
    void post(const QString &node, const QString &text);

    static QStringList workerNames();

Q_SIGNALS:
    /* A worker or the world has something to say (on the GUI thread). */
    void note(const QString &node, const QString &text);
    void hangEnded();
    /* A worker began a hang that only a stop and the shutdown timeout can end. */
    void hangBegan(const QString &worker);

private:
    void registerWorkers();
    void sendImage(QByteArray image);

    FileFeed m_feed;
    FlakyServer m_server;
    std::atomic<bool> m_producing{true};
    std::atomic<quint16> m_serverPort{0};
    std::atomic<quint64> m_nextRequestId{1};
    quint64 m_nextImageId = 1;
    QRandomGenerator m_imageRandom;
    QTimer m_imageTimer;
};
