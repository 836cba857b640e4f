#include "qmlstage.h"
#include "qmlnodesupport.h"

#include <stage/registry.h>

#include <QtQml/QQmlEngine>
#include <QtQml/QQmlInfo>

namespace stage::qml {

QmlStage::QmlStage(QObject *parent) : QObject(parent) {}

void QmlStage::throwError(QJSValue::ErrorType type, const QString &message) const
{
    if (QJSEngine *engine = qjsEngine(this))
        engine->throwError(type, message);
    else
        qmlWarning(this) << message;
}

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
    if (!box) {
        // Thrown into the calling binding or function: the engine reports it with its file and line.
        throwError(QJSValue::ReferenceError,
                   QStringLiteral("Stage.mailbox(\"%1\"): no mailbox is registered under that name with "
                                  "stage::registerMailbox() (registered: %2)")
                       .arg(name, registeredMailboxes().join(QStringLiteral(", "))));
        return nullptr;
    }
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
        throwError(QJSValue::RangeError,
                   QStringLiteral("Stage.exponentialBackoff(%1, %2, %3, %4, %5): needs 0 <= initialMs <= maximumMs, "
                                  "multiplier >= 1, 0 <= jitter <= 1, resetAfterMs >= 0")
                       .arg(initialMs)
                       .arg(maximumMs)
                       .arg(multiplier)
                       .arg(jitter)
                       .arg(resetAfterMs));
        return Backoff();
    }
    return Backoff::exponential(std::chrono::milliseconds(initialMs), std::chrono::milliseconds(maximumMs), multiplier,
                                jitter, std::chrono::milliseconds(resetAfterMs));
}

bool QmlStage::start(Node *node) const
{
    if (!node) {
        qmlWarning(this) << "Stage.start(): the node is null";
        return false;
    }
    // The most derived start() (a QML Group first resolves its worker).
    bool ok = false;
    QMetaObject::invokeMethod(node, "start", Qt::DirectConnection, Q_RETURN_ARG(bool, ok));
    return ok;
}

bool QmlStage::stop(Node *node) const
{
    if (!node) {
        qmlWarning(this) << "Stage.stop(): the node is null";
        return false;
    }
    return node->stop();
}

bool QmlStage::restart(Node *node) const
{
    if (!node) {
        qmlWarning(this) << "Stage.restart(): the node is null";
        return false;
    }
    return node->restart();
}

bool QmlStage::resize(Node *node, int size) const
{
    auto *group = qobject_cast<Group *>(node);
    if (!group) {
        qmlWarning(this) << "Stage.resize(): only a Group has a size";
        return false;
    }
    if (size < 0) {
        qmlWarning(this) << "Stage.resize(): the size must be >= 0, got " << size;
        return false;
    }
    group->setSize(size);
    return true;
}

} // namespace stage::qml
