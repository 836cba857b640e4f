#include "flakyserver.h"

#include <QtCore/QTimer>
#include <QtNetwork/QTcpSocket>

FlakyServer::FlakyServer(quint32 seed, QObject *parent) : QObject(parent), m_random(seed)
{
    connect(&m_server, &QTcpServer::newConnection, this, &FlakyServer::accept);
}

bool FlakyServer::listen()
{
    if (!m_server.listen(QHostAddress::LocalHost, 0)) {
        qWarning("FlakyServer::listen: %s", qPrintable(m_server.errorString()));
        return false;
    }
    return true;
}

QByteArray FlakyServer::valueFor(const QByteArray &key)
{
    // Something that looks like a reading: a deterministic function of the key.
    const uint h = qHash(key, 7u);
    return QByteArray::number(10 + h % 30) + '.' + QByteArray::number(h / 30 % 10) + "C";
}

QByteArray FlakyServer::checksum(const QByteArray &key, const QByteArray &value)
{
    const QByteArray both = key + ' ' + value;
    return QByteArray::number(qChecksum(both), 16);
}

void FlakyServer::accept()
{
    while (QTcpSocket *socket = m_server.nextPendingConnection()) {
        ++m_stats.connections;
        socket->setParent(this);
        connect(socket, &QTcpSocket::disconnected, socket, &QObject::deleteLater);
        connect(socket, &QTcpSocket::readyRead, socket, [this, socket] {
            if (socket->canReadLine())
                answer(socket, socket->readLine().trimmed());
        });
    }
}

void FlakyServer::answer(QTcpSocket *socket, const QByteArray &line)
{
    if (!line.startsWith("GET ")) {
        socket->disconnectFromHost();
        return;
    }
    const QByteArray key = line.mid(4);
    const double dice = m_random.generateDouble();
    if (key.startsWith("poison") || dice < garbageRate) {
        ++m_stats.garbage;
        QByteArray noise;
        for (int i = 0; i < 24; ++i)
            noise += char(33 + m_random.bounded(90));
        socket->write(noise + '\n');
        socket->disconnectFromHost();
        return;
    }
    if (dice < garbageRate + dropRate) {
        ++m_stats.dropped;
        socket->abort();
        socket->deleteLater();
        return;
    }
    const bool slow = dice < garbageRate + dropRate + slowRate;
    const int delay = slow ? slowMs : 2 + int(m_random.bounded(30));
    if (slow)
        ++m_stats.slow;
    // The socket is the context: if the client gave up and it is gone, nothing is sent.
    QTimer::singleShot(delay, socket, [this, socket, key] {
        const QByteArray value = valueFor(key);
        socket->write("OK " + key + ' ' + value + ' ' + checksum(key, value) + '\n');
        socket->disconnectFromHost();
        ++m_stats.answered;
    });
}
