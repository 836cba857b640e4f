#pragma once

// The producer and consumer shared by W8 (durable) and W9 (Redis), as ../shared/peers/WORKLOADS.md
// describes them: 200,000 messages (a sequence number and 64 payload bytes, encoded by the default
// QDataStream codec), 1 producer std::thread keeping at most 1,024 sends in flight (trySend()
// 1,024, then flushBlocking() until the journal has them durable), 1 consumer coroutine on the
// calling thread receiving and acknowledging each, checking the sequence (in order, nothing
// missing) and the payload.

#include <stage/stage.h>

#include <QtCore/QByteArray>
#include <QtCore/QDataStream>

#include <algorithm>
#include <chrono>
#include <thread>

namespace bench::queue {

constexpr quint64 kMessages = 200'000;
constexpr quint64 kInFlight = 1'024;
constexpr int kPayloadSize = 64;

struct Message
{
    quint64 seq = 0;
    QByteArray payload;
    friend QDataStream &operator<<(QDataStream &s, const Message &m) { return s << m.seq << m.payload; }
    friend QDataStream &operator>>(QDataStream &s, Message &m) { return s >> m.seq >> m.payload; }
};

inline QByteArray payloadOf(quint64 seq)
{
    QByteArray p(kPayloadSize, Qt::Uninitialized);
    for (int i = 0; i < kPayloadSize; ++i)
        p[i] = char(seq * 131 + quint64(i));
    return p;
}

inline QCoro::Task<quint64> consume(stage::Mailbox<Message> box, const char *workload)
{
    quint64 last = 0;
    while (last < kMessages) {
        auto message = co_await box.receive();
        if (message->seq != last + 1)
            qFatal("%s: received %llu after %llu", workload, static_cast<unsigned long long>(message->seq),
                   static_cast<unsigned long long>(last));
        if (message->payload != payloadOf(message->seq))
            qFatal("%s: payload of %llu", workload, static_cast<unsigned long long>(message->seq));
        last = message->seq;
    } // each acknowledged by the next iteration (the last by the frame's end)
    co_return last;
}

/* Runs the producer thread and the consumer (on this thread) to the end; fails the benchmark
   unless all kMessages came through in order and nothing is left queued. */
inline void produceAndConsume(const stage::Mailbox<Message> &box, const char *workload)
{
    std::thread producer([box, workload] {
        for (quint64 seq = 1; seq <= kMessages;) {
            const quint64 end = std::min(seq + kInFlight, kMessages + 1);
            for (; seq < end; ++seq) {
                if (box.trySend(Message{seq, payloadOf(seq)}) != stage::SendStatus::Sent)
                    qFatal("%s: trySend refused", workload);
            }
            if (!box.flushBlocking(std::chrono::minutes(2)))
                qFatal("%s: sends not durable within 2 minutes", workload);
        }
    });
    const quint64 last = stage::waitFor(consume(box, workload), std::chrono::minutes(5));
    producer.join();
    if (last != kMessages || box.count() != 0)
        qFatal("%s: %llu received, %d left", workload, static_cast<unsigned long long>(last), box.count());
}

} // namespace bench::queue
