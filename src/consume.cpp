#include <stage/consume.h>

#include <QtCore/QLoggingCategory>
#include <QtCore/QMetaObject>
#include <QtCore/QThread>

Q_LOGGING_CATEGORY(lcConsume, "stage.consume", QtInfoMsg)

namespace stage::detail {

bool checkConsumeContext(const QObject *context)
{
    if (!context) {
        qCWarning(lcConsume, "stage::consume: the context is null; nothing consumes the mailbox");
        return false;
    }
    QThread *thread = context->thread();
    if (!thread || (thread != QThread::currentThread() && thread->isFinished())) {
        qCWarning(lcConsume, "stage::consume: the context's thread has finished; nothing consumes the mailbox");
        return false;
    }
    return true;
}

void warnConsumeReceiver()
{
    qCWarning(lcConsume, "stage::consume: the context is not an object of the callback's class; nothing consumes the mailbox");
}

Group *startConsumer(QObject *context, std::shared_ptr<ConsumeLink> link, WorkerFactory factory, MailboxBase *mailbox,
                     bool closed, int queued)
{
    auto *group = new Group;
    QString name = QStringLiteral("consume: ") + QLatin1String(context->metaObject()->className());
    if (!context->objectName().isEmpty())
        name += QLatin1Char(' ') + context->objectName();
    group->setObjectName(name);
    if (mailbox)
        group->setMailbox(mailbox);
    if (closed)
        qCWarning(lcConsume, "stage::consume: the mailbox is closed; the consumer drains the %d message(s) left, then stops",
                  queued);
    // The group lives where the callback must run. Both objects then live on one thread, so the
    // context's destroyed() reaches this lambda directly, inside its destruction; the group is
    // the lambda's context, so deleting the group first drops the connection.
    QThread *home = context->thread();
    const bool here = home == QThread::currentThread();
    if (!here)
        group->moveToThread(home);
    QObject::connect(context, &QObject::destroyed, group, [group, link]() {
        link->contextAlive = false;
        delete group; // stops the worker now (a body deleting its context unwinds on its own)
    });
    if (here) {
        group->spawn(std::move(factory));
    } else {
        QMetaObject::invokeMethod(
            group, [group, factory = std::move(factory)]() mutable { group->spawn(std::move(factory)); },
            Qt::QueuedConnection);
    }
    return group;
}

} // namespace stage::detail
