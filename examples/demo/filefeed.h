#pragma once
// The indexer's input: a temporary folder of generated text files, watched by a
// QFileSystemWatcher that sends every new file's path to the "paths" mailbox.

#include "messages.h"

#include <stage/mailbox.h>

#include <QtCore/QFileSystemWatcher>
#include <QtCore/QObject>
#include <QtCore/QRandomGenerator>
#include <QtCore/QSet>
#include <QtCore/QTemporaryDir>
#include <QtCore/QTimer>

/*
    Lives on the GUI thread (the watcher delivers there). Files are written under a temporary
    name and renamed, so the indexer never reads half a file. The watcher coalesces changes
    (QFileSystemWatcher::directoryChanged may skip some); every signal rescans the folder, so a
    file is sent exactly once however the signals were coalesced.
*/
class FileFeed : public QObject
{
    Q_OBJECT

public:
    FileFeed(stage::Mailbox<PathMessage> paths, Ledger *ledger, quint32 seed, QObject *parent = nullptr);

    /* Writes \a initialFiles files, starts watching, then writes one every \a intervalMs. */
    bool start(int initialFiles, int intervalMs);
    /* Stops writing new files (the watcher keeps sending what is already there). */
    void pause();
    void resume();
    bool isPaused() const { return !m_generator.isActive(); }

    /* Writes a corrupt file: the indexer fails on it every time, so it ends in the dead letters. */
    QString writeCorruptFile();

    QString folder() const { return m_dir.path(); }
    int filesWritten() const { return m_written; }
    int pathsSent() const { return int(m_seen.size()); }

Q_SIGNALS:
    void note(const QString &text);

private:
    void writeFile();
    void writeAtomically(const QString &name, const QByteArray &contents);
    void scan();

    stage::Mailbox<PathMessage> m_paths;
    Ledger *m_ledger;
    QRandomGenerator m_random;
    QTemporaryDir m_dir;
    QFileSystemWatcher m_watcher;
    QTimer m_generator;
    QSet<QString> m_seen;
    quint64 m_nextId = 1;
    int m_written = 0;
    int m_corrupt = 0;
};
