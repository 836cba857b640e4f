#include "qmlstage.h"

#include <stage/registry.h>

#include <QtQml/QQmlEngine>
#include <QtQml/QQmlInfo>

namespace stage::qml {

QmlStage::QmlStage(QObject *parent) : QObject(parent) {}

QStringList QmlStage::workers() const
{
    return registeredWorkers();
}

QStringList QmlStage::mailboxes() const
{
    return registeredMailboxes();
}

MailboxBase *QmlStage::mailbox(const QString &name) const
{
    MailboxBase *box = registeredMailbox(name);
    if (!box)
        qmlWarning(this) << "no mailbox is registered as \"" << name
                         << "\" (stage::registerMailbox(); registered: " << registeredMailboxes().join(QStringLiteral(", "))
                         << ")";
    else
        QQmlEngine::setObjectOwnership(box, QQmlEngine::CppOwnership);
    return box;
}

Backoff QmlStage::noBackoff() const
{
    return Backoff::none();
}

Backoff QmlStage::exponentialBackoff(int initialMs, int maximumMs, double multiplier, double jitter,
                                     int resetAfterMs) const
{
    if (initialMs < 0 || maximumMs < initialMs || multiplier < 1.0 || jitter < 0.0 || jitter > 1.0 || resetAfterMs < 0) {
        qmlWarning(this) << "exponentialBackoff(" << initialMs << ", " << maximumMs << ", " << multiplier << ", "
                         << jitter << ", " << resetAfterMs
                         << "): needs 0 <= initialMs <= maximumMs, multiplier >= 1, 0 <= jitter <= 1, resetAfterMs >= 0;"
                            " the default backoff is used";
        return Backoff();
    }
    return Backoff::exponential(std::chrono::milliseconds(initialMs), std::chrono::milliseconds(maximumMs), multiplier,
                                jitter, std::chrono::milliseconds(resetAfterMs));
}

} // namespace stage::qml
