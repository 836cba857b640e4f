#pragma once
// A small, deliberately flaky line server on 127.0.0.1 for the fetcher to talk to.

#include <QtCore/QRandomGenerator>
#include <QtNetwork/QTcpServer>

#include <atomic>

/*
    Protocol: the client sends "GET <key>\n"; the server answers "OK <key> <value> <crc>\n" and
    closes, where <crc> is qChecksum("<key> <value>") in hex. Lives on the GUI thread.

    It misbehaves at random (seeded): it drops the connection without answering (dropRate), answers
    after slowMs, longer than the fetcher waits (slowRate), or sends a line of garbage
    (garbageRate). A key that starts with "poison" is always answered with garbage.
*/
class FlakyServer : public QObject
{
    Q_OBJECT

public:
    explicit FlakyServer(quint32 seed, QObject *parent = nullptr);

    bool listen();
    quint16 port() const { return m_server.serverPort(); }

    double dropRate = 0.08;
    double slowRate = 0.06;
    double garbageRate = 0.03;
    int slowMs = 1600;

    struct Stats
    {
        int connections = 0, answered = 0, dropped = 0, slow = 0, garbage = 0;
    };
    Stats stats() const { return m_stats; }

    /* The value the server answers for \a key, and its checksum: what a client checks. */
    static QByteArray valueFor(const QByteArray &key);
    static QByteArray checksum(const QByteArray &key, const QByteArray &value);

private:
    void accept();
    void answer(class QTcpSocket *socket, const QByteArray &line);

    QTcpServer m_server;
    QRandomGenerator m_random;
    Stats m_stats;
};
