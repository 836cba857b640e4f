#include "qmlgroup.h"

#include <stage/registry.h>
#include <stage/supervisor.h>

#include <QtQml/QQmlInfo>

namespace stage::qml {

QmlGroup::QmlGroup(QObject *parent) : Group(parent)
{
    connect(this, &Node::stateChanged, this, &QmlGroup::runningChanged);
    // Added to a supervisor after it completed (a JS push onto a Supervisor's nodes): resolve then.
    connect(this, &Node::supervisorChanged, this, [this](Supervisor *above) {
        if (above && m_complete && !m_resolved && state() == State::Idle)
            resolve();
    });
    connect(this, &Group::sizeChanged, this, &QmlGroup::settingsChanged);
    connect(this, &Group::threadCountChanged, this, &QmlGroup::settingsChanged);
    connect(this, &Group::maxRestartsChanged, this, &QmlGroup::settingsChanged);
    connect(this, &Group::restartPeriodChanged, this, &QmlGroup::settingsChanged);
    connect(this, &Group::shutdownTimeoutChanged, this, &QmlGroup::settingsChanged);
    connect(this, &Group::heartbeatTimeoutChanged, this, &QmlGroup::settingsChanged);
}

QmlGroup::~QmlGroup() = default;

QQmlListProperty<QObject> QmlGroup::data()
{
    return QQmlListProperty<QObject>(this, nullptr, &appendData, &dataCount, &dataAt, &clearData, &replaceData,
                                     &removeLastData);
}

void QmlGroup::appendData(QQmlListProperty<QObject> *list, QObject *object)
{
    auto *self = static_cast<QmlGroup *>(list->object);
    if (!object)
        return;
    // Helpers (Timer, Connections, …) are kept; a node here is refused when it completes (it
    // finds this Group as its closest node and warns with its own file and line).
    self->m_data.removeIf([](const QPointer<QObject> &o) { return o.isNull(); });
    self->m_data.append(object);
    if (!object->parent())
        object->setParent(self);
}

qsizetype QmlGroup::dataCount(QQmlListProperty<QObject> *list)
{
    auto *self = static_cast<QmlGroup *>(list->object);
    self->m_data.removeIf([](const QPointer<QObject> &o) { return o.isNull(); });
    return self->m_data.size();
}

QObject *QmlGroup::dataAt(QQmlListProperty<QObject> *list, qsizetype index)
{
    auto *self = static_cast<QmlGroup *>(list->object);
    self->m_data.removeIf([](const QPointer<QObject> &o) { return o.isNull(); });
    return index >= 0 && index < self->m_data.size() ? self->m_data.at(index).data() : nullptr;
}

void QmlGroup::clearData(QQmlListProperty<QObject> *list)
{
    static_cast<QmlGroup *>(list->object)->m_data.clear();
}

void QmlGroup::replaceData(QQmlListProperty<QObject> *list, qsizetype index, QObject *object)
{
    auto *self = static_cast<QmlGroup *>(list->object);
    self->m_data.removeIf([](const QPointer<QObject> &o) { return o.isNull(); });
    if (index >= 0 && index < self->m_data.size())
        self->m_data[index] = object;
}

void QmlGroup::removeLastData(QQmlListProperty<QObject> *list)
{
    auto *self = static_cast<QmlGroup *>(list->object);
    self->m_data.removeIf([](const QPointer<QObject> &o) { return o.isNull(); });
    if (!self->m_data.isEmpty())
        self->m_data.removeLast();
}

void QmlGroup::setWorker(const QString &worker)
{
    if (m_worker == worker)
        return;
    if (m_resolved) {
        qmlWarning(this) << "worker is fixed once the group is complete (it runs \"" << m_worker << "\"); ignored";
        return;
    }
    m_worker = worker;
    emit workerChanged();
}

void QmlGroup::setArguments(const QVariantMap &arguments)
{
    if (m_arguments == arguments)
        return;
    if (m_resolved) {
        qmlWarning(this) << "arguments are fixed once the group is complete; ignored";
        return;
    }
    m_arguments = arguments;
    emit argumentsChanged();
}

void QmlGroup::setRunning(bool running)
{
    if (!m_complete)
        m_wantRunning = running;
    else
        support::setRunning(this, running);
}

void QmlGroup::setQmlSize(int size)
{
    if (support::accept(this, "size", size, 0, ">= 0"))
        setSize(size);
}

void QmlGroup::setQmlThreadCount(int count)
{
    if (support::accept(this, "threadCount", count, 0, ">= 0"))
        setThreadCount(count);
}

void QmlGroup::setQmlMaxRestarts(int count)
{
    if (support::accept(this, "maxRestarts", count, -1, ">= 0 (or -1: unlimited)"))
        setMaxRestarts(count);
}

void QmlGroup::setQmlRestartPeriod(int milliseconds)
{
    if (support::accept(this, "restartPeriod", milliseconds, 1, "> 0 ms"))
        setRestartPeriod(milliseconds);
}

void QmlGroup::setQmlShutdownTimeout(int milliseconds)
{
    if (support::accept(this, "shutdownTimeout", milliseconds, 0, ">= 0 ms"))
        setShutdownTimeout(milliseconds);
}

void QmlGroup::setQmlHeartbeatTimeout(int milliseconds)
{
    if (support::accept(this, "heartbeatTimeout", milliseconds, 0, ">= 0 ms (0: no watchdog)"))
        setHeartbeatTimeout(milliseconds);
}

bool QmlGroup::start()
{
    if (!supervisor() && !m_resolved) {
        m_wantRunning = true;
        return resolve();
    }
    return Node::start();
}

void QmlGroup::shutdown()
{
    if (supervisor()) {
        qmlWarning(this) << "shutdown() is for a root; this node's supervisor stops it with stop()";
        return;
    }
    (void)Group::shutdown();
}

void QmlGroup::fail(const QString &reason)
{
    qmlWarning(this) << reason;
    setState(State::Failed, reason);
}

/* Gives the group its factory: spawn() starts it at once when it is a root, waits for its
   supervisor otherwise. */
bool QmlGroup::resolve()
{
    if (m_resolved)
        return true;
    if (m_worker.isEmpty()) {
        fail(QStringLiteral("Group has no worker: set worker to a name registered with stage::registerWorker() "
                            "(registered: %1)")
                 .arg(registeredWorkers().join(QStringLiteral(", "))));
        return false;
    }
    WorkerFactory factory = registeredWorkerFactory(m_worker, m_arguments);
    if (!factory) {
        fail(QStringLiteral("unknown worker \"%1\": no body is registered under that name with "
                            "stage::registerWorker() (registered: %2)")
                 .arg(m_worker, registeredWorkers().join(QStringLiteral(", "))));
        return false;
    }
    m_resolved = true;
    return spawn(std::move(factory));
}

void QmlGroup::classBegin() {}

void QmlGroup::componentComplete()
{
    m_complete = true;
    if (Node *above = support::ancestorNode(this); above && !supervisor() && qobject_cast<Group *>(above)) {
        fail(QStringLiteral("a Group cannot be inside a Group (%1): only a Supervisor holds nodes")
                 .arg(above->objectName().isEmpty() ? QStringLiteral("unnamed") : above->objectName()));
        return;
    }
    if (!support::joinAncestor(this) && supervisor() == nullptr && support::ancestorNode(this)) {
        setState(State::Failed, QStringLiteral("its Supervisor refused it"));
        return;
    }
    if (supervisor()) {
        if (m_wantRunning)
            qmlWarning(this) << "running: true is ignored on a supervised node: its supervisor "
                             << supervisor()->objectName() << " starts it";
        resolve(); // the supervisor starts it (at once if it runs already)
        return;
    }
    if (m_wantRunning) {
        resolve();
    } else if (!parent()) {
        // An Instantiator parents what it creates only after completing it: look again on the
        // next turn of the event loop, and join the supervisor above then.
        QMetaObject::invokeMethod(
            this,
            [this] {
                if (supervisor() || !parent() || state() != State::Idle)
                    return;
                if (Node *above = support::ancestorNode(this); above && qobject_cast<Group *>(above)) {
                    fail(QStringLiteral("a Group cannot be inside a Group (%1): only a Supervisor holds nodes")
                             .arg(above->objectName().isEmpty() ? QStringLiteral("unnamed") : above->objectName()));
                    return;
                }
                if (support::joinAncestor(this) && supervisor())
                    resolve();
            },
            Qt::QueuedConnection);
    }
}

} // namespace stage::qml
