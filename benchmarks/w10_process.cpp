// W10: crash-isolated workers through stage::ProcessGroup (Stage::Process).
//
//   msgs_per_s  1 producer thread sends 100,000 messages (an 8-byte sequence number, a flags byte
//               and 64 payload bytes, checked by the child) with sendBlocking() into a
//               Mailbox<QByteArray> of capacity 1024, read by a ProcessGroup of 2 children, each
//               holding at most 512 unacknowledged (1024 in flight in all, as the qt peer); from
//               the first send until the last acknowledgement. The children have connected (a
//               warm-up of 1,000 messages) before the clock starts.
//   restart_ms  20 times: a ProcessGroup of 1 child is sent a message flagged Hold; the child, on
//               the first delivery of it, writes its pid to a marker file and sleeps; the
//               parent sees the marker and kills that pid with SIGKILL; the time runs from the
//               kill until the message is acknowledged by the replacement (redelivered: the
//               marker exists, so it does not hold again). One child, so that the replacement is
//               the one that processes it (with 2, the surviving child would take it at once).
//               The group keeps a warm spare (ProcessGroup::setWarmSpare(true)): a child started
//               ahead, connected and idle, which the restarted worker run takes; so the figure
//               is noticing the death, the group's restart and the redelivery, and not fork +
//               exec + loading Qt + connecting (the next spare starts after the restart, in the
//               background, and has connected before the next kill: the loop waits for it).
//
// The children are this binary run again: stage-bench's main() does not call
// stage::runChildProcess(), so a static initializer of this file does it (reading argv from
// /proc/self/cmdline), before main(), and exits.
#include "bench.h"

#include <stage/processgroup.h>
#include <stage/stage.h>

#include <QtCore/QCoreApplication>
#include <QtCore/QElapsedTimer>
#include <QtCore/QFile>
#include <QtCore/QTemporaryDir>
#include <QtCore/QtEndian>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>
#include <unistd.h>

namespace {

constexpr int kMessages = 100'000;
constexpr int kWarmUp = 1'000; // fits the mailbox (trySend)
constexpr int kChildren = 2;
constexpr int kWindowPerChild = 512;
constexpr int kKills = 20;
constexpr int kPayloadSize = 64;
constexpr quint8 kHold = 1;

QByteArray makeMessage(quint64 seq, quint8 flags)
{
    QByteArray m(8 + 1 + kPayloadSize, Qt::Uninitialized);
    qToBigEndian<quint64>(seq, m.data());
    m[8] = char(flags);
    for (int i = 0; i < kPayloadSize; ++i)
        m[9 + i] = char(seq * 131 + quint64(i));
    return m;
}

void handle(const QByteArray &m)
{
    if (m.size() != 8 + 1 + kPayloadSize)
        throw std::runtime_error("W10: bad message size");
    const quint64 seq = qFromBigEndian<quint64>(m.constData());
    for (int i = 0; i < kPayloadSize; ++i)
        if (m[9 + i] != char(seq * 131 + quint64(i)))
            throw std::runtime_error("W10: bad payload");
    if (quint8(m[8]) & kHold) {
        QFile marker(qEnvironmentVariable("STAGE_W10_DIR") + QStringLiteral("/hold-%1").arg(seq));
        if (!marker.exists()) { // the first delivery: hold until killed
            QFile temporary(marker.fileName() + QStringLiteral(".tmp"));
            temporary.open(QIODevice::WriteOnly);
            temporary.write(QByteArray::number(qint64(::getpid())));
            temporary.close();
            temporary.rename(marker.fileName());
            std::this_thread::sleep_for(std::chrono::seconds(60));
        }
    }
}

bool runChildIfAsked()
{
    stage::registerProcessEntry(QStringLiteral("w10"), handle);
    QFile cmdline(QStringLiteral("/proc/self/cmdline"));
    if (!cmdline.open(QIODevice::ReadOnly))
        return false;
    const QList<QByteArray> parts = cmdline.readAll().split('\0');
    bool child = false;
    for (const QByteArray &part : parts)
        child = child || part.startsWith("--stage-process=");
    if (!child)
        return false;
    static std::vector<std::string> storage;
    static std::vector<char *> argv;
    for (const QByteArray &part : parts)
        if (!part.isEmpty())
            storage.emplace_back(part.toStdString());
    for (auto &s : storage)
        argv.push_back(s.data());
    argv.push_back(nullptr);
    int argc = int(storage.size());
    const auto code = stage::runChildProcess(argc, argv.data());
    std::fflush(nullptr);
    std::_Exit(code.value_or(0));
}

[[maybe_unused]] const bool childHandled = runChildIfAsked();

// Runs the event loop until done(). \a poll: done() changes without an event of this thread (a
// file appears): check every 100 us. Otherwise block until there is something to do: a busy loop
// would take a core from the children (the machine has 2).
void waitUntil(const std::function<bool()> &done, const char *what, bool poll = false)
{
    QElapsedTimer failsafe;
    failsafe.start();
    while (!done()) {
        if (poll) {
            QCoreApplication::processEvents(QEventLoop::AllEvents);
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        } else {
            QCoreApplication::processEvents(QEventLoop::WaitForMoreEvents);
        }
        if (failsafe.elapsed() > 60'000)
            qFatal("W10: timed out waiting for %s", what);
    }
}

double throughput()
{
    stage::Mailbox<QByteArray> mailbox(1024);
    stage::ProcessGroup group;
    group.setSize(kChildren);
    group.setMaxInFlight(kWindowPerChild);
    group.setBackoff(stage::Backoff::none());
    group.spawn(QStringLiteral("w10"), mailbox);
    for (int i = 1; i <= kWarmUp; ++i)
        mailbox.trySend(makeMessage(quint64(i), 0));
    waitUntil([&] { return group.processedMessages() == kWarmUp; }, "the warm-up");

    QElapsedTimer timer;
    timer.start();
    std::thread producer([mailbox] {
        for (int i = 1; i <= kMessages; ++i)
            mailbox.sendBlocking(makeMessage(quint64(kWarmUp + i), 0));
    });
    waitUntil([&] { return group.processedMessages() == kWarmUp + kMessages; }, "the acknowledgements");
    const double seconds = double(timer.nsecsElapsed()) / 1e9;
    producer.join();
    const auto stats = mailbox.statistics();
    if (stats.acknowledged != kWarmUp + kMessages || stats.redelivered != 0 || group.failed() != 0)
        qFatal("W10: %lld acknowledged, %lld redelivered", stats.acknowledged, stats.redelivered);
    return kMessages / seconds;
}

double restartMs()
{
    QTemporaryDir dir;
    qputenv("STAGE_W10_DIR", dir.path().toLocal8Bit());
    stage::Mailbox<QByteArray> mailbox(1024);
    stage::ProcessGroup group;
    group.setBackoff(stage::Backoff::none());
    group.setWarmSpare(true);
    group.spawn(QStringLiteral("w10"), mailbox);
    std::vector<double> samples;
    for (int k = 1; k <= kKills; ++k) {
        // The spare has started and connected (the child and the spare: 2 processes).
        waitUntil([&] { return group.processCount() == 2 && group.isSpareReady(); }, "the warm spare", true);
        const qint64 before = group.processedMessages();
        mailbox.trySend(makeMessage(quint64(k), kHold));
        QFile marker(dir.filePath(QStringLiteral("hold-%1").arg(k)));
        waitUntil([&] { return marker.exists(); }, "a child holding the message", true);
        marker.open(QIODevice::ReadOnly);
        const pid_t pid = pid_t(marker.readAll().toLongLong());
        QElapsedTimer timer;
        timer.start();
        ::kill(pid, SIGKILL);
        waitUntil([&] { return group.processedMessages() == before + 1; }, "the redelivered message");
        samples.push_back(double(timer.nsecsElapsed()) / 1e6);
    }
    if (group.failed() != kKills || mailbox.statistics().redelivered != kKills)
        qFatal("W10: %lld failures for %d kills", group.failed(), kKills);
    std::sort(samples.begin(), samples.end());
    return (samples[kKills / 2 - 1] + samples[kKills / 2]) / 2;
}

std::vector<bench::Figure> run()
{
    const double rate = throughput();
    const double ms = restartMs();
    return {{"stage", "msgs_per_s", rate}, {"stage", "restart_ms", ms}};
}

} // namespace

STAGE_BENCHMARK("W10", "crash-isolated workers: 2 child processes fed from a mailbox; SIGKILL to restart", run);
