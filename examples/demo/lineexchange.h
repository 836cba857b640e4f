#pragma once
// One request/answer exchange over TCP: connect, send a line, read a line, within a deadline.

#include <QtCore/QTimer>
#include <QtNetwork/QTcpSocket>

/*
    Created by a coroutine on its own thread (the socket and the timer live there). It drives
    itself from that thread's event loop and emits finished() exactly once; the coroutine awaits
    it with stage::signal(), which is a cancellation point: a stopped fetcher unwinds at once and
    the exchange (the socket) is destroyed with its frame. Check isFinished() before awaiting:
    nothing is emitted twice.
*/
class LineExchange : public QObject
{
    Q_OBJECT

public:
    enum class Outcome { Pending, Answered, Dropped, TimedOut };

    LineExchange(quint16 port, const QByteArray &line, int timeoutMs)
    {
        m_timer.setSingleShot(true);
        connect(&m_timer, &QTimer::timeout, this, [this] { finish(Outcome::TimedOut); });
        connect(&m_socket, &QTcpSocket::connected, this, [this, line] { m_socket.write(line + '\n'); });
        connect(&m_socket, &QTcpSocket::readyRead, this, [this] {
            if (m_socket.canReadLine()) {
                m_answer = m_socket.readLine().trimmed();
                finish(Outcome::Answered);
            }
        });
        connect(&m_socket, &QTcpSocket::disconnected, this, [this] { finish(Outcome::Dropped); });
        connect(&m_socket, &QTcpSocket::errorOccurred, this, [this] { finish(Outcome::Dropped); });
        m_timer.start(timeoutMs);
        m_socket.connectToHost(QHostAddress::LocalHost, port);
    }

    ~LineExchange() override
    {
        m_socket.disconnect(this); // no finish() from the socket's own teardown
        m_socket.abort();
    }

    bool isFinished() const { return m_outcome != Outcome::Pending; }
    Outcome outcome() const { return m_outcome; }
    QByteArray answer() const { return m_answer; }

Q_SIGNALS:
    void finished();

private:
    void finish(Outcome outcome)
    {
        if (m_outcome != Outcome::Pending)
            return;
        m_outcome = outcome;
        m_timer.stop();
        emit finished();
    }

    QTimer m_timer;
    QTcpSocket m_socket;
    Outcome m_outcome = Outcome::Pending;
    QByteArray m_answer;
};
