#include "qmlnodesupport.h"
#include "qmlsupervisor.h"

#include <stage/group.h>
#include <stage/supervisor.h>

#include <QtCore/QMetaEnum>
#include <QtCore/QPointer>
#include <QtQml/QQmlInfo>

namespace stage::qml {

SupervisorAttached::SupervisorAttached(QObject *attachee) : QObject(attachee)
{
    if (auto *node = qobject_cast<Node *>(attachee))
        connect(node, &Node::supervisorChanged, this, &SupervisorAttached::supervisorChanged);
}

void SupervisorAttached::setRestartType(int type)
{
    if (type < int(RestartType::Permanent) || type > int(RestartType::Temporary)) {
        qmlWarning(parent()) << "Supervisor.restartType: " << type
                             << " is not a restart type (Stage.Permanent, Stage.Transient or Stage.Temporary); ignored";
        return;
    }
    if (int(m_restartType) == type)
        return;
    m_restartType = RestartType(type);
    if (auto *node = qobject_cast<Node *>(parent()); node && node->supervisor())
        node->supervisor()->setChildRestartType(node, m_restartType);
    emit restartTypeChanged();
}

Supervisor *SupervisorAttached::supervisor() const
{
    auto *node = qobject_cast<Node *>(parent());
    return node ? node->supervisor() : nullptr;
}

namespace support {

QString stateText(Node::State state)
{
    return QString::fromLatin1(QMetaEnum::fromType<Node::State>().valueToKey(int(state)));
}

QVariantList history(const Node *node)
{
    QVariantList list;
    const auto events = node->history();
    list.reserve(events.size());
    for (const NodeEvent &event : events) {
        list.append(QVariantMap{{QStringLiteral("timestamp"), event.timestamp},
                                {QStringLiteral("time"), event.time()},
                                {QStringLiteral("state"), int(event.state)},
                                {QStringLiteral("stateText"), stateText(event.state)},
                                {QStringLiteral("reason"), event.reason}});
    }
    return list;
}

RestartType attachedRestartType(QObject *node)
{
    auto *attached = qobject_cast<SupervisorAttached *>(qmlAttachedPropertiesObject<QmlSupervisor>(node, false));
    return attached ? attached->restartTypeValue() : RestartType::Permanent;
}

Node *ancestorNode(QObject *object)
{
    for (QObject *above = object->parent(); above; above = above->parent())
        if (auto *node = qobject_cast<Node *>(above))
            return node;
    return nullptr;
}

bool joinAncestor(Node *node)
{
    if (node->supervisor())
        return true;
    Node *above = ancestorNode(node);
    if (!above)
        return false;
    auto *supervisor = qobject_cast<Supervisor *>(above);
    if (!supervisor) {
        qmlWarning(node) << "a " << node->metaObject()->className() << " cannot be inside a Group ("
                         << above->objectName() << "): only a Supervisor holds nodes; it is not started";
        return false;
    }
    if (!supervisor->addChild(node, attachedRestartType(node))) {
        qmlWarning(node) << "the Supervisor " << supervisor->objectName()
                         << " refused this node (see the stage.supervisor warning); it is not started";
        return false;
    }
    return true;
}

bool accept(const QObject *object, const char *name, int value, int minimum, const char *rule)
{
    if (value >= minimum)
        return true;
    qmlWarning(object) << name << " must be " << rule << ", got " << value << "; ignored";
    return false;
}

void setRunning(Node *node, bool running)
{
    if (Supervisor *above = node->supervisor()) {
        qmlWarning(node) << "running is decided by the supervisor " << above->objectName()
                         << " of this node; ignored (use start(), stop() or restart())";
        return;
    }
    if (running != node->isRunning())
        QMetaObject::invokeMethod(node, running ? "start" : "stop", Qt::DirectConnection);
}

void refuseNode(QObject *list, QObject *node, const char *why)
{
    qmlWarning(node) << why << " (in " << list->metaObject()->className() << " " << list->objectName()
                     << "); it is not started";
}

} // namespace support
} // namespace stage::qml
