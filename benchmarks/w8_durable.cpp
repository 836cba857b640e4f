// W8: a durable queue through stage::DurableStore (Stage::Durable), as ../shared/peers/WORKLOADS.md
// describes it and the sqlite peer measures its ceiling.
//
//   msgs_per_s  1 producer std::thread sends 200,000 messages (a Message: a sequence number and
//               64 payload bytes, encoded by the default QDataStream codec) into a durable
//               Mailbox<Message> kept in one file on local disk (WAL, synchronous=NORMAL: the
//               store's default). It keeps at most 1,024 sends in flight: trySend() 1,024, then
//               flushBlocking() until they are committed (as the peer's transactions of 1,024).
//               1 consumer coroutine on the main thread receives and acknowledges each message,
//               checking the sequence (in order, nothing missing) and the payload. The clock runs
//               from the first send until the last acknowledgement is committed
//               (DurableStore::flushBlocking()); then the file must hold nothing.
//   rows_per_msg  rows the writer thread inserted, updated or deleted per message: the store
//               groups what arrives during one commit, and a message acknowledged before its
//               transaction began never reaches the file (the peer writes 2 per message).
//
// The file lives in a fresh directory under ${PEERS_DISK_DIR:-/var/tmp}, as the peer's (/tmp may
// be tmpfs), removed afterwards.
#include "bench.h"
#include "queueworkload.h"

#include <stage/durablestore.h>
#include <stage/stage.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QDataStream>
#include <QtCore/QElapsedTimer>
#include <QtCore/QTemporaryDir>

#include <atomic>
#include <thread>

namespace {

using bench::queue::Message;
using bench::queue::kMessages;

std::vector<bench::Figure> run()
{
    QTemporaryDir dir(qEnvironmentVariable("PEERS_DISK_DIR", QStringLiteral("/var/tmp")) + QStringLiteral("/stage-w8.XXXXXX"));
    if (!dir.isValid())
        qFatal("W8: cannot make a directory under PEERS_DISK_DIR");
    stage::DurableStore store(dir.filePath(QStringLiteral("w8.stage")));
    if (!store.isOpen())
        qFatal("W8: %s", qPrintable(store.errorString()));
    double seconds = 0;
    double rowsPerMessage = 0;
    {
        stage::Mailbox<Message> box = store.mailbox<Message>(QStringLiteral("w8"));
        QElapsedTimer timer;
        timer.start();
        bench::queue::produceAndConsume(box, "W8");
        if (!store.flushBlocking(std::chrono::minutes(2))) // the acknowledgements are durable
            qFatal("W8: acknowledgements not committed");
        seconds = double(timer.nsecsElapsed()) / 1e9;
        rowsPerMessage = double(store.rowsWritten()) / double(kMessages);
    }
    // Nothing may be left in the file: a reopen finds the mailbox empty.
    {
        stage::Mailbox<Message> again = store.mailbox<Message>(QStringLiteral("w8"));
        if (again.count() != 0 || again.deadLetterCount() != 0)
            qFatal("W8: %d messages left in the file", again.count());
    }
    return {{"stage", "msgs_per_s", double(kMessages) / seconds}, {"stage", "rows_per_msg", rowsPerMessage}};
}

} // namespace

STAGE_BENCHMARK("W8", "durable queue: 200,000 messages through a DurableStore mailbox, 1,024 sends in flight", run);
