#pragma once

//  Not part of the Stage API: shared by the QML types of the Stage module.

#include <stage/node.h>
#include <stage/policy.h>
#include <stage/supervisor.h>

#include <QtCore/QObject>
#include <QtCore/QVariantList>
#include <QtQml/qqml.h>

namespace stage {
class Supervisor;
}

namespace stage::qml {

/*
    The attached object of Supervisor: \c{Supervisor.restartType} on any node declared in (or
    added to) a Supervisor, the restart type of that node as a child (OTP's child spec "restart"):
    Permanent by default. A Group's own \c restartType is that of its workers.
*/
class SupervisorAttached : public QObject
{
    Q_OBJECT
    QML_ANONYMOUS
    /* This node's restart type as a child: Stage.Permanent (default), Stage.Transient or Stage.Temporary. */
    Q_PROPERTY(int restartType READ restartType WRITE setRestartType NOTIFY restartTypeChanged)
    /* The supervisor this node is a child of, or null. */
    Q_PROPERTY(stage::Supervisor *supervisor READ supervisor NOTIFY supervisorChanged)

public:
    explicit SupervisorAttached(QObject *attachee);

    int restartType() const { return int(m_restartType); }
    void setRestartType(int type);
    RestartType restartTypeValue() const { return m_restartType; }
    Supervisor *supervisor() const;

Q_SIGNALS:
    /* Notifications of restartType and supervisor. */
    void restartTypeChanged();
    void supervisorChanged();

private:
    RestartType m_restartType = RestartType::Permanent;
};

/* What the QML Supervisor and Group share (they derive from different core classes). */
namespace support {
/* Node::history() as a JS array of { timestamp, time, state, stateText, reason }. */
QVariantList history(const Node *node);
QString stateText(Node::State state);
/* The restart type a node's attached Supervisor.restartType asks for (Permanent if none). */
RestartType attachedRestartType(QObject *node);
/* The closest QObject ancestor that is a Node (what a late node joins), or nullptr. */
Node *ancestorNode(QObject *object);
/* Joins the node to the closest ancestor supervisor (a late node: createObject, Loader);
   warns (qmlWarning) and returns false when the ancestor is a Group or the supervisor refuses. */
bool joinAncestor(Node *node);
/* \a value if it is at least \a minimum; otherwise a qmlWarning ("<name> must be <rule>, got V;
   ignored") and false. */
bool accept(const QObject *object, const char *name, int value, int minimum, const char *rule);
/* `running` written from QML once complete: a root starts or stops (its most derived start() and
   stop()); a supervised node warns and ignores it. */
void setRunning(Node *node, bool running);
/* A node given to a list property that cannot take it: warns and keeps it out. */
void refuseNode(QObject *list, QObject *node, const char *why);
} // namespace support

} // namespace stage::qml
