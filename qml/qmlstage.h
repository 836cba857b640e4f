#pragma once

//  Not part of the Stage API: the QML singleton Stage and the registrations of core types.

#include <stage/group.h>
#include <stage/mailbox.h>
#include <stage/node.h>
#include <stage/policy.h>
#include <stage/supervisiontreemodel.h>
#include <stage/supervisor.h>

#include <QtCore/QObject>
#include <QtCore/QStringList>
#include <QtQml/QJSValue>
#include <QtQml/qqml.h>

namespace stage::qml {

/*
    The singleton Stage: the enums shared by every node (Stage.Transient, Stage.Destroy), the
    registry (which workers and mailboxes C++ registered), and backoff values.
*/
class QmlStage : public QObject
{
    Q_OBJECT
    QML_NAMED_ELEMENT(Stage)
    QML_SINGLETON

public:
    enum RestartType {
        Permanent = int(stage::RestartType::Permanent),
        Transient = int(stage::RestartType::Transient),
        Temporary = int(stage::RestartType::Temporary),
    };
    Q_ENUM(RestartType)
    enum StopMode {
        Unwind = int(stage::StopMode::Unwind),
        Destroy = int(stage::StopMode::Destroy),
    };
    Q_ENUM(StopMode)

    explicit QmlStage(QObject *parent = nullptr);

    /* The worker names registered with stage::registerWorker(), sorted. */
    Q_INVOKABLE QStringList workers() const;
    /* The mailbox names registered with stage::registerMailbox(), sorted. */
    Q_INVOKABLE QStringList mailboxes() const;
    /* The mailbox registered as \a name; an unknown name throws a ReferenceError (reported with the
       caller's file and line). */
    Q_INVOKABLE stage::MailboxBase *mailbox(const QString &name) const;
    /* Restarts at once, always (Backoff::none()). */
    Q_INVOKABLE stage::Backoff noBackoff() const;
    /* Backoff::exponential() (bad values throw a RangeError): the first restart immediate, then initialMs doubling (by
       \a multiplier) up to maximumMs, with jitter, reset after resetAfterMs of healthy running. */
    Q_INVOKABLE stage::Backoff exponentialBackoff(int initialMs = 10, int maximumMs = 5000, double multiplier = 2.0,
                                                  double jitter = 0.2, int resetAfterMs = 5000) const;

    /* What SupervisorView's actions do, for any node (built in QML or in C++). A child goes
       through its supervisor (restartChild, terminateChild); a root acts on itself (start()
       also after a shutdown; stop() shuts it down). False, with a warning, when refused. */
    Q_INVOKABLE bool start(stage::Node *node) const;
    Q_INVOKABLE bool stop(stage::Node *node) const;
    Q_INVOKABLE bool restart(stage::Node *node) const;
    /* Sets a group's size (>= 0); false with a warning for another node or a negative size. */
    Q_INVOKABLE bool resize(stage::Node *node, int size) const;

private:
    void throwError(QJSValue::ErrorType type, const QString &message) const;
};

// Core types seen from QML: the nodes' common base, mailboxes (created in C++), value types.
struct NodeForeign
{
    Q_GADGET
    QML_FOREIGN(stage::Node)
    QML_NAMED_ELEMENT(Node)
    QML_UNCREATABLE("Node is the base of Supervisor and Group")
};

struct MailboxForeign
{
    Q_GADGET
    QML_FOREIGN(stage::MailboxBase)
    QML_NAMED_ELEMENT(Mailbox)
    QML_UNCREATABLE("a Mailbox is created in C++ (stage::Mailbox<T>) and registered with stage::registerMailbox()")
};

struct SupervisionTreeModelForeign
{
    Q_GADGET
    QML_FOREIGN(stage::SupervisionTreeModel)
    QML_NAMED_ELEMENT(SupervisionTreeModel)
};

struct NodeEventForeign
{
    Q_GADGET
    QML_FOREIGN(stage::NodeEvent)
    QML_VALUE_TYPE(nodeEvent)
};

struct BackoffForeign
{
    Q_GADGET
    QML_FOREIGN(stage::Backoff)
    QML_VALUE_TYPE(backoff)
};

struct GroupStatisticsForeign
{
    Q_GADGET
    QML_FOREIGN(stage::GroupStatistics)
    QML_VALUE_TYPE(groupStatistics)
};

struct SupervisorStatisticsForeign
{
    Q_GADGET
    QML_FOREIGN(stage::SupervisorStatistics)
    QML_VALUE_TYPE(supervisorStatistics)
};

struct MailboxStatisticsForeign
{
    Q_GADGET
    QML_FOREIGN(stage::MailboxStatistics)
    QML_VALUE_TYPE(mailboxStatistics)
};

} // namespace stage::qml
