#include "filefeed.h"

#include <QtCore/QDir>
#include <QtCore/QFile>

namespace {
const char *const vocabulary[] = {
    "stage",   "worker",  "restart", "mailbox", "message", "supervisor", "signal", "thread",
    "reply",   "queue",   "qt",      "quick",   "index",   "word",       "file",   "device",
    "heart",   "beat",    "watch",   "dog",     "storm",   "poison",     "letter", "dead",
    "alive",   "socket",  "server",  "flaky",   "garbage", "answer",     "slow",   "hash",
    "erlang",  "otp",     "let",     "it",      "crash",   "recover",    "lost",   "nothing"};
} // namespace

FileFeed::FileFeed(stage::Mailbox<PathMessage> paths, Ledger *ledger, quint32 seed, QObject *parent)
    : QObject(parent), m_paths(std::move(paths)), m_ledger(ledger), m_random(seed),
      m_dir(QDir::tempPath() + QStringLiteral("/stage-demo-XXXXXX"))
{
    connect(&m_generator, &QTimer::timeout, this, &FileFeed::writeFile);
    connect(&m_watcher, &QFileSystemWatcher::directoryChanged, this, &FileFeed::scan);
}

bool FileFeed::start(int initialFiles, int intervalMs)
{
    if (!m_dir.isValid()) {
        qWarning("FileFeed::start: cannot create a temporary folder: %s", qPrintable(m_dir.errorString()));
        return false;
    }
    for (int i = 0; i < initialFiles; ++i)
        writeFile();
    m_watcher.addPath(m_dir.path());
    scan(); // what was written before the watcher
    m_generator.start(intervalMs);
    return true;
}

void FileFeed::pause()
{
    m_generator.stop();
}

void FileFeed::resume()
{
    if (!m_generator.isActive())
        m_generator.start();
}

void FileFeed::writeFile()
{
    const int words = 40 + int(m_random.bounded(360));
    QByteArray text;
    for (int i = 0; i < words; ++i) {
        text += vocabulary[m_random.bounded(int(std::size(vocabulary)))];
        text += (i % 12 == 11) ? '\n' : ' ';
    }
    writeAtomically(QStringLiteral("doc-%1.txt").arg(++m_written, 4, 10, QLatin1Char('0')), text);
}

QString FileFeed::writeCorruptFile()
{
    const QString name = QStringLiteral("corrupt-%1.txt").arg(++m_corrupt);
    QByteArray bytes("\x7f" "CORRUPT\0", 9);
    for (int i = 0; i < 64; ++i)
        bytes += char(m_random.bounded(256));
    writeAtomically(name, bytes);
    return name;
}

void FileFeed::writeAtomically(const QString &name, const QByteArray &contents)
{
    const QString temporary = m_dir.filePath(QLatin1Char('.') + name + QStringLiteral(".part"));
    QFile file(temporary);
    if (!file.open(QIODevice::WriteOnly) || file.write(contents) != contents.size()) {
        qWarning("FileFeed: cannot write %s: %s", qPrintable(temporary), qPrintable(file.errorString()));
        return;
    }
    file.close();
    QFile::rename(temporary, m_dir.filePath(name));
}

void FileFeed::scan()
{
    const QStringList names = QDir(m_dir.path()).entryList({QStringLiteral("*.txt")}, QDir::Files, QDir::Name);
    for (const QString &name : names) {
        if (m_seen.contains(name))
            continue;
        const quint64 id = m_nextId++;
        m_ledger->noteSent(id); // before the send: a fast consumer may finish it at once
        if (m_paths.trySend(PathMessage{id, m_dir.filePath(name)}) != stage::SendStatus::Sent) {
            m_ledger->takeBack(id);
            continue; // closed (the app is ending): not sent, so not lost
        }
        m_seen.insert(name);
    }
}
