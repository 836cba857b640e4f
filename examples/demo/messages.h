#pragma once
// The messages the demo's mailboxes carry, and the ledger that accounts for every one of them.

#include <stage/reply.h>

#include <QtCore/QByteArray>
#include <QtCore/QDataStream>
#include <QtCore/QHash>
#include <QtCore/QMutex>
#include <QtCore/QSet>
#include <QtCore/QString>

/* A file for the indexer to count (mailbox "paths"). */
struct PathMessage
{
    quint64 id = 0;
    QString path;
};

/* What the requester asks the fetcher for (mailbox "requests"), and the answer. */
struct FetchQuery
{
    quint64 id = 0;
    QString key;
};
struct FetchAnswer
{
    quint64 id = 0;
    QString key;
    QString value;
    int attempts = 0; // connections it took (the server drops some)
};
// A dead-lettered request fails its reply with stage::DeadLettered at once (stage::Request).
using FetchRequest = stage::Request<FetchQuery, FetchAnswer>;

/* An image for the thumbnailer, a child process (mailbox "images"), and what it makes of it.
   They cross the process boundary in their QDataStream form. */
struct ImageJob
{
    quint64 id = 0;
    QByteArray image; // the "IMG1" format of isolated.cpp
};
struct Thumbnail
{
    quint64 id = 0;
    int width = 0, height = 0;
    quint32 checksum = 0; // of the 8x8 thumbnail
    qint64 pid = 0;       // the child process that made it
};
inline QDataStream &operator<<(QDataStream &s, const ImageJob &j) { return s << j.id << j.image; }
inline QDataStream &operator>>(QDataStream &s, ImageJob &j) { return s >> j.id >> j.image; }
inline QDataStream &operator<<(QDataStream &s, const Thumbnail &t)
{
    return s << t.id << qint32(t.width) << qint32(t.height) << t.checksum << t.pid;
}
inline QDataStream &operator>>(QDataStream &s, Thumbnail &t)
{
    qint32 w = 0, h = 0;
    s >> t.id >> w >> h >> t.checksum >> t.pid;
    t.width = w;
    t.height = h;
    return s;
}
// A dead-lettered image (its child crashed on it every time) fails its reply with DeadLettered.
using ImageRequest = stage::Request<ImageJob, Thumbnail>;

/*
    Accounts for the messages of one mailbox by id, from the application's side: the producer
    notes an id before sending it (and takes it back if the send is refused); the consumer notes
    it once it has acknowledged the delivery. Thread: any (a mutex).

    "Lost" is what was sent and is neither done, nor dead-lettered, nor still in the mailbox
    (queued, or held by a consumer). At the end, with every consumer stopped, nothing is held and
    the check is exact, id by id (Ledger::missing()).
*/
class Ledger
{
public:
    void noteSent(quint64 id)
    {
        QMutexLocker lock(&m_mutex);
        m_sent.insert(id);
    }
    void takeBack(quint64 id)
    {
        QMutexLocker lock(&m_mutex);
        m_sent.remove(id);
    }
    /* Called after Delivery::ack(): a second call for an id is a duplicate (at-least-once). */
    void noteDone(quint64 id)
    {
        QMutexLocker lock(&m_mutex);
        if (m_done.contains(id))
            ++m_duplicates;
        else
            m_done.insert(id);
    }

    struct Counts
    {
        qint64 sent = 0;
        qint64 done = 0;
        qint64 duplicates = 0;
    };
    Counts counts() const
    {
        QMutexLocker lock(&m_mutex);
        return {m_sent.size(), m_done.size(), m_duplicates};
    }
    /* The ids sent that are neither done nor in \a accounted (dead letters, what is left queued). */
    QSet<quint64> missing(const QSet<quint64> &accounted) const
    {
        QMutexLocker lock(&m_mutex);
        QSet<quint64> out = m_sent;
        out.subtract(m_done);
        out.subtract(accounted);
        return out;
    }

private:
    mutable QMutex m_mutex;
    QSet<quint64> m_sent;
    QSet<quint64> m_done;
    qint64 m_duplicates = 0;
};
