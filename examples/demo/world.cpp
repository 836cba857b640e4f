#include "world.h"

#include "isolated.h"

#include <stage/qfuture.h>
#include <stage/registry.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QEventLoop>
#include <QtCore/QTimer>

void Index::addFile(const QString &path, qint64 words)
{
    QMutexLocker lock(&m_mutex);
    auto it = m_entries.find(path);
    if (it != m_entries.end()) { // indexed again (a redelivery after a crash): same file, same count
        m_totals.words += words - it->words;
        it->words = words;
        return;
    }
    m_entries.insert(path, Entry{words, {}});
    ++m_totals.files;
    m_totals.words += words;
}

QStringList Index::unhashed(int max) const
{
    QMutexLocker lock(&m_mutex);
    QStringList out;
    for (auto it = m_entries.cbegin(); it != m_entries.cend() && out.size() < max; ++it)
        if (it->sha256.isEmpty())
            out.append(it.key());
    return out;
}

void Index::setHashes(const QHash<QString, QByteArray> &hashes)
{
    QMutexLocker lock(&m_mutex);
    for (auto it = hashes.cbegin(); it != hashes.cend(); ++it) {
        auto entry = m_entries.find(it.key());
        if (entry == m_entries.end() || !entry->sha256.isEmpty())
            continue;
        entry->sha256 = it.value();
        ++m_totals.hashed;
    }
}

Index::Totals Index::totals() const
{
    QMutexLocker lock(&m_mutex);
    return m_totals;
}

DemoWorld::DemoWorld(const Options &opts, QObject *parent)
    : QObject(parent), options(opts), faults(workerNames()), paths(this), requests(this), images(64, this),
      m_feed(paths, &pathsLedger, opts.seed, this), m_server(opts.seed * 7919u + 1u, this),
      m_imageRandom(opts.seed * 104729u + 7u)
{
    paths.object()->setObjectName(QStringLiteral("paths"));
    requests.object()->setObjectName(QStringLiteral("requests"));
    images.object()->setObjectName(QStringLiteral("images"));
    m_imageTimer.setInterval(opts.imageIntervalMs);
    connect(&m_imageTimer, &QTimer::timeout, this, [this] {
        if (isProducing())
            sendImage(isolated::makeImage(m_imageRandom));
    });
    connect(&m_feed, &FileFeed::note, this, [this](const QString &text) { emit note(QStringLiteral("files"), text); });
}

DemoWorld::~DemoWorld()
{
    // The app is ending: what is still queued goes with it, quietly.
    m_imageTimer.stop();
    paths.close();
    requests.close();
    images.close();
    while (paths.tryReceive()) {
    }
    while (requests.tryReceive()) {
    }
    while (images.tryReceive()) {
    }
    for (const QString &name : workerNames())
        stage::unregisterWorker(name);
    stage::unregisterMailbox(QStringLiteral("paths"));
    stage::unregisterMailbox(QStringLiteral("requests"));
}

QStringList DemoWorld::workerNames()
{
    return {QStringLiteral("indexer"), QStringLiteral("hasher"), QStringLiteral("fetcher"),
            QStringLiteral("requester"), QStringLiteral("poller")};
}

bool DemoWorld::start()
{
    registerWorkers();
    stage::registerMailbox(QStringLiteral("paths"), paths);
    stage::registerMailbox(QStringLiteral("requests"), requests);
    if (!m_server.listen())
        return false;
    m_serverPort.store(m_server.port());
    m_imageTimer.start();
    return m_feed.start(options.initialFiles, options.fileIntervalMs);
}

void DemoWorld::setProducing(bool on)
{
    m_producing.store(on);
    if (on)
        m_feed.resume();
    else
        m_feed.pause();
}

bool DemoWorld::waitForHangs(int timeoutMs)
{
    if (faults.hangsInProgress.load() == 0)
        return true;
    // hangEnded() is queued to this thread by the frame that ends its hang: wait for it.
    QEventLoop loop;
    QTimer deadline;
    deadline.setSingleShot(true);
    connect(&deadline, &QTimer::timeout, &loop, &QEventLoop::quit);
    const auto connection = connect(this, &DemoWorld::hangEnded, &loop, [this, &loop] {
        if (faults.hangsInProgress.load() == 0)
            loop.quit();
    });
    deadline.start(timeoutMs);
    if (faults.hangsInProgress.load() > 0)
        loop.exec();
    disconnect(connection);
    return faults.hangsInProgress.load() == 0;
}

void DemoWorld::noteHangBegan(const QString &worker)
{
    faults.hangsInProgress.fetch_add(1);
    QMetaObject::invokeMethod(this, [this, worker] { emit hangBegan(worker); }, Qt::QueuedConnection);
}

void DemoWorld::noteHangEnded()
{
    faults.hangsInProgress.fetch_sub(1);
    QMetaObject::invokeMethod(this, &DemoWorld::hangEnded, Qt::QueuedConnection);
}

void DemoWorld::sendPoisonRequest()
{
    const quint64 id = nextRequestId();
    auto [request, answer] = stage::makeRequest<FetchAnswer>(FetchQuery{id, QStringLiteral("poison-%1").arg(id)});
    // Nobody waits for this answer: its reply fails with DeadLettered when the mailbox gives up.
    requestsLedger.noteSent(id);
    if (requests.trySend(std::move(request)) != stage::SendStatus::Sent)
        requestsLedger.takeBack(id);
}

void DemoWorld::sendPoisonImage()
{
    sendImage(isolated::makePoisonImage());
}

void DemoWorld::sendImage(QByteArray image)
{
    const quint64 id = m_nextImageId++;
    auto [request, answer] = stage::makeRequest<Thumbnail>(ImageJob{id, std::move(image)});
    imagesLedger.noteSent(id);
    if (images.trySend(std::move(request)) != stage::SendStatus::Sent) {
        imagesLedger.takeBack(id);
        return;
    }
    imagesSent.fetch_add(1);
    // The answer comes back on this thread (no timeout: it is answered, dead-lettered, or broken
    // when the app ends). The child answers before it acknowledges: noted done after the ack.
    // stage::then(): the continuation is dropped if this world goes first (QFuture's own
    // onFailed(context, ...) is not safe then in Qt 6.4).
    stage::then(stage::toFuture(std::move(answer)), this, [this](const QFuture<Thumbnail> &future) {
        try {
            const Thumbnail thumbnail = future.result();
            imagesLedger.noteDone(thumbnail.id);
            thumbnails.fetch_add(1);
            thumbnailPids.insert(thumbnail.pid);
        } catch (const stage::DeadLettered &) {
            imagesDeadLettered.fetch_add(1);
        } catch (const std::exception &) {
            // Broken when the app ends.
        }
    });
}

void DemoWorld::post(const QString &node, const QString &text)
{
    QMetaObject::invokeMethod(this, [this, node, text] { emit note(node, text); }, Qt::QueuedConnection);
}
