#include <stage/mailbox.h>
#include <stage/registry.h>

#include <QtCore/QHash>
#include <QtCore/QLoggingCategory>
#include <QtCore/QMutex>
#include <QtCore/QPointer>

Q_LOGGING_CATEGORY(lcRegistry, "stage.registry", QtInfoMsg)

namespace stage {

namespace {
struct Registry
{
    QMutex mutex;
    QHash<QString, std::shared_ptr<const RegisteredWorker>> workers;
    QHash<QString, QPointer<MailboxBase>> mailboxes;
};

Registry &registry()
{
    static Registry instance;
    return instance;
}
} // namespace

bool detail::registerWorkerImpl(const QString &name, RegisteredWorker body)
{
    if (name.isEmpty()) {
        qCWarning(lcRegistry, "stage::registerWorker: the name is empty; ignored");
        return false;
    }
    if (!body) {
        qCWarning(lcRegistry, "stage::registerWorker: the body of \"%s\" is empty; ignored", qPrintable(name));
        return false;
    }
    Registry &r = registry();
    QMutexLocker lock(&r.mutex);
    r.workers.insert(name, std::make_shared<const RegisteredWorker>(std::move(body)));
    return true;
}

bool unregisterWorker(const QString &name)
{
    Registry &r = registry();
    QMutexLocker lock(&r.mutex);
    return r.workers.remove(name) > 0;
}

bool isWorkerRegistered(const QString &name)
{
    Registry &r = registry();
    QMutexLocker lock(&r.mutex);
    return r.workers.contains(name);
}

QStringList registeredWorkers()
{
    Registry &r = registry();
    QMutexLocker lock(&r.mutex);
    QStringList names = r.workers.keys();
    lock.unlock();
    names.sort();
    return names;
}

WorkerFactory registeredWorkerFactory(const QString &name, const QVariantMap &arguments)
{
    Registry &r = registry();
    QMutexLocker lock(&r.mutex);
    const auto body = r.workers.value(name);
    lock.unlock();
    if (!body)
        return {};
    return [body, arguments](Worker &worker) { return (*body)(worker, arguments); };
}

bool registerMailbox(const QString &name, MailboxBase *mailbox)
{
    if (name.isEmpty()) {
        qCWarning(lcRegistry, "stage::registerMailbox: the name is empty; ignored");
        return false;
    }
    if (!mailbox) {
        qCWarning(lcRegistry, "stage::registerMailbox: the mailbox \"%s\" is null; ignored", qPrintable(name));
        return false;
    }
    Registry &r = registry();
    QMutexLocker lock(&r.mutex);
    r.mailboxes.insert(name, mailbox);
    return true;
}

bool unregisterMailbox(const QString &name)
{
    Registry &r = registry();
    QMutexLocker lock(&r.mutex);
    return r.mailboxes.remove(name) > 0;
}

MailboxBase *registeredMailbox(const QString &name)
{
    Registry &r = registry();
    QMutexLocker lock(&r.mutex);
    return r.mailboxes.value(name).data();
}

QStringList registeredMailboxes()
{
    Registry &r = registry();
    QMutexLocker lock(&r.mutex);
    QStringList names;
    for (auto it = r.mailboxes.cbegin(); it != r.mailboxes.cend(); ++it)
        if (it.value())
            names.append(it.key());
    lock.unlock();
    names.sort();
    return names;
}

} // namespace stage
