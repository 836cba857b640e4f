#pragma once
// Crash isolation in the demo: the thumbnailer, a stage::ProcessGroup whose child processes call
// a fragile "image codec" that segfaults on a truncated image.

#include "messages.h"

#include <stage/processgroup.h>

#include <QtCore/QRandomGenerator>
#include <QtQml/QQmlParserStatus>
#include <QtQml/qqmlregistration.h>

namespace isolated {

/* An image of the codec's "IMG1" format (a header, then width x height grey pixels). */
QByteArray makeImage(QRandomGenerator &random);
/* An image whose header promises more rows than it has: the codec segfaults on it. */
QByteArray makePoisonImage();

/*
    Registers the entry point "thumbnailer" (ImageJob in, Thumbnail out). Call it first in
    main(), before stage::runChildProcess(): a child process runs it, the app checks the name.
*/
void registerEntries();

} // namespace isolated

/*
    ProcessGroup in the demo's QML (import StageDemo): a stage::ProcessGroup whose children run
    the registered entry point \c entry, fed from the world's mailbox of that name ("images"
    for "thumbnailer", the only one). Every property of stage::ProcessGroup and stage::Group
    (size, maxRestarts, restartPeriod, backoff, shutdownTimeout, heartbeatTimeout, maxInFlight,
    processCount, processedMessages...) is there, with its NOTIFY signal, so the tree model and
    the inspector show it like any node. Spawned once the declaration is complete, under its
    Supervisor, which starts it. GUI thread.
*/
class DemoProcessGroup : public stage::ProcessGroup, public QQmlParserStatus
{
    Q_OBJECT
    Q_INTERFACES(QQmlParserStatus)
    QML_NAMED_ELEMENT(ProcessGroup)
    Q_PROPERTY(QString entry READ entry WRITE setEntry NOTIFY entryChanged)

public:
    explicit DemoProcessGroup(QObject *parent = nullptr);

    QString entry() const { return m_entry; }
    void setEntry(const QString &entry);

    void classBegin() override {}
    void componentComplete() override;

Q_SIGNALS:
    void entryChanged();

private:
    QString m_entry;
};
