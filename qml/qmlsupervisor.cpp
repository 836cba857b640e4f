#include "qmlsupervisor.h"

#include <QtQml/QQmlInfo>

namespace stage::qml {

QmlSupervisor::QmlSupervisor(QObject *parent) : Supervisor(parent)
{
    connect(this, &Node::stateChanged, this, &QmlSupervisor::runningChanged);
    connect(this, &Supervisor::maxRestartsChanged, this, &QmlSupervisor::settingsChanged);
    connect(this, &Supervisor::restartPeriodChanged, this, &QmlSupervisor::settingsChanged);
}

QmlSupervisor::~QmlSupervisor()
{
    // The helpers declared in it go first (before ~Supervisor stops and deletes the children):
    // a Loader or an Instantiator among them then destroys the nodes it made through its own
    // path, releasing what it keeps for them.
    QList<QPointer<QObject>> helpers;
    for (QObject *object : children())
        if (!qobject_cast<Node *>(object))
            helpers.append(object);
    for (const QPointer<QObject> &helper : std::as_const(helpers))
        delete helper.data(); // (deleting one may have deleted another)
}

QQmlListProperty<QObject> QmlSupervisor::nodes()
{
    return QQmlListProperty<QObject>(this, nullptr, &appendNode, &nodeCount, &nodeAt, &clearNodes, &replaceNode,
                                     &removeLastNode);
}

void QmlSupervisor::prune()
{
    m_nodes.removeIf([](const QPointer<QObject> &object) { return object.isNull(); });
}

void QmlSupervisor::appendNode(QQmlListProperty<QObject> *list, QObject *object)
{
    auto *self = static_cast<QmlSupervisor *>(list->object);
    if (!object)
        return;
    self->prune();
    self->m_nodes.append(object);
    if (auto *node = qobject_cast<Node *>(object)) {
        if (node->supervisor() == self)
            return;
        // The engine parents declared objects without a ChildAdded event: register here, in
        // declaration order, which is the start order.
        if (!self->addChild(node, support::attachedRestartType(node)))
            support::refuseNode(self, node, "this node cannot join the Supervisor (see the stage.supervisor warning)");
    } else if (!object->parent()) {
        object->setParent(self);
    }
}

qsizetype QmlSupervisor::nodeCount(QQmlListProperty<QObject> *list)
{
    auto *self = static_cast<QmlSupervisor *>(list->object);
    self->prune();
    return self->m_nodes.size();
}

QObject *QmlSupervisor::nodeAt(QQmlListProperty<QObject> *list, qsizetype index)
{
    auto *self = static_cast<QmlSupervisor *>(list->object);
    self->prune();
    return index >= 0 && index < self->m_nodes.size() ? self->m_nodes.at(index).data() : nullptr;
}

void QmlSupervisor::take(QObject *object)
{
    if (auto *node = qobject_cast<Node *>(object); node && node->supervisor() == this)
        removeChild(node); // stopped, handed back (parent nullptr)
}

void QmlSupervisor::clearNodes(QQmlListProperty<QObject> *list)
{
    auto *self = static_cast<QmlSupervisor *>(list->object);
    const auto nodes = std::exchange(self->m_nodes, {});
    for (auto it = nodes.rbegin(); it != nodes.rend(); ++it)
        if (*it)
            self->take(*it);
}

void QmlSupervisor::replaceNode(QQmlListProperty<QObject> *list, qsizetype index, QObject *object)
{
    auto *self = static_cast<QmlSupervisor *>(list->object);
    self->prune();
    if (index < 0 || index >= self->m_nodes.size())
        return;
    QPointer<QObject> old = self->m_nodes.at(index);
    self->m_nodes.removeAt(index);
    if (old)
        self->take(old);
    if (!object)
        return;
    // A supervisor's children are in start order: the new one is the last.
    appendNode(list, object);
}

void QmlSupervisor::removeLastNode(QQmlListProperty<QObject> *list)
{
    auto *self = static_cast<QmlSupervisor *>(list->object);
    self->prune();
    if (self->m_nodes.isEmpty())
        return;
    QPointer<QObject> last = self->m_nodes.takeLast();
    if (last)
        self->take(last);
}

void QmlSupervisor::setRunning(bool running)
{
    if (!m_complete)
        m_wantRunning = running;
    else
        support::setRunning(this, running);
}

void QmlSupervisor::setQmlMaxRestarts(int count)
{
    if (support::accept(this, "maxRestarts", count, -1, ">= 0 (or -1: unlimited)"))
        setMaxRestarts(count);
}

void QmlSupervisor::setQmlRestartPeriod(int milliseconds)
{
    if (support::accept(this, "restartPeriod", milliseconds, 1, "> 0 ms"))
        setRestartPeriod(milliseconds);
}

void QmlSupervisor::shutdown()
{
    if (supervisor()) {
        qmlWarning(this) << "shutdown() is for a root; this node's supervisor stops it with stop()";
        return;
    }
    (void)Supervisor::shutdown();
}

void QmlSupervisor::classBegin() {}

void QmlSupervisor::componentComplete()
{
    // Children complete first, the root last: a root starts the whole declared tree here.
    m_complete = true;
    support::joinAncestor(this); // a late node (createObject, Loader) joins the running tree
    if (supervisor()) {
        if (m_wantRunning)
            qmlWarning(this) << "running: true is ignored on a supervised node: its supervisor "
                             << supervisor()->objectName() << " starts it";
        return;
    }
    if (m_wantRunning) {
        start();
    } else if (!parent()) {
        // An Instantiator parents what it creates only after completing it: look again on the
        // next turn of the event loop, and join the supervisor above then.
        QMetaObject::invokeMethod(
            this,
            [this] {
                if (!supervisor() && parent() && state() == State::Idle)
                    support::joinAncestor(this);
            },
            Qt::QueuedConnection);
    }
}

} // namespace stage::qml
