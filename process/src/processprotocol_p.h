#pragma once

//  W A R N I N G
//  Not part of the Stage API. We mean it.
//
// The wire protocol between a ProcessGroup and its children, over a QLocalSocket:
//     quint32 length (big endian) | quint8 type | body (length - 1 bytes)
// Child -> parent:
//     Hello      "STG1" + 32-byte secret            (exactly 37 = 1 + 4 + 32)
//     Ack        quint64 id: every delivery <= id   (exactly 9)
//     Heartbeat  (exactly 1)
//     Failed     UTF-8 reason, at most kMaxReason bytes: the entry point threw; the child exits
//     Reply      quint64 id | the answer's bytes: to a delivery it holds, before its Ack
// Parent -> child:
//     Deliver    quint64 id | quint32 previous deliveries | payload
//     Stop       (exactly 1): exit once the message being handled is done
// Environment of a child: kEnvServer, kEnvSecret (hex), kEnvParent (pid), kEnvHeartbeat (ms).

#include <QtCore/QByteArray>
#include <QtCore/QtEndian>

#include <cstring>

QT_BEGIN_NAMESPACE
class QLocalSocket;
QT_END_NAMESPACE

namespace stage::detail::process {

enum class Frame : quint8 {
    Hello = 1,
    Ack = 2,
    Heartbeat = 3,
    Failed = 4,
    Reply = 5,
    Deliver = 16,
    Stop = 17,
};

constexpr int kHeaderSize = 4;
constexpr int kSecretSize = 32;
constexpr char kMagic[4] = {'S', 'T', 'G', '1'};
constexpr quint32 kHelloLength = 1 + 4 + kSecretSize;
constexpr quint32 kAckLength = 1 + 8;
constexpr int kMaxReason = 4096;
constexpr qint64 kChildMaxFrame = qint64(1) << 30; // what a child accepts from its parent

constexpr char kArgument[] = "--stage-process=";
constexpr char kEnvServer[] = "STAGE_PROCESS_SERVER";
constexpr char kEnvSecret[] = "STAGE_PROCESS_SECRET";
constexpr char kEnvParent[] = "STAGE_PROCESS_PARENT";
constexpr char kEnvHeartbeat[] = "STAGE_PROCESS_HEARTBEAT";

enum ChildExit : int { ExitStopped = 0, ExitUsage = 2, ExitEntryThrew = 70, ExitUnknownEntry = 120 };

inline void appendHeader(QByteArray &out, quint32 length, Frame type)
{
    char header[kHeaderSize + 1];
    qToBigEndian<quint32>(length, header);
    header[kHeaderSize] = char(type);
    out.append(header, sizeof header);
}

inline void appendEmpty(QByteArray &out, Frame type)
{
    appendHeader(out, 1, type);
}

inline void appendAck(QByteArray &out, quint64 id)
{
    appendHeader(out, kAckLength, Frame::Ack);
    char body[8];
    qToBigEndian<quint64>(id, body);
    out.append(body, sizeof body);
}

inline void appendDeliver(QByteArray &out, quint64 id, quint32 previous, const QByteArray &payload)
{
    appendHeader(out, quint32(1 + 8 + 4 + payload.size()), Frame::Deliver);
    char body[12];
    qToBigEndian<quint64>(id, body);
    qToBigEndian<quint32>(previous, body + 8);
    out.append(body, sizeof body);
    out.append(payload);
}

inline void appendHello(QByteArray &out, const QByteArray &secret)
{
    appendHeader(out, kHelloLength, Frame::Hello);
    out.append(kMagic, 4);
    out.append(secret.left(kSecretSize));
}

/* Constant time: a timing does not tell how much of a secret matched. */
inline bool sameSecret(const char *a, const QByteArray &b)
{
    if (b.size() != kSecretSize)
        return false;
    unsigned char diff = 0;
    for (int i = 0; i < kSecretSize; ++i)
        diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
}

} // namespace stage::detail::process

namespace stage::detail {
/* The child's connection to its parent (null in the parent): for tests that play a broken child. */
Q_DECL_EXPORT QLocalSocket *processChannel();
} // namespace stage::detail
