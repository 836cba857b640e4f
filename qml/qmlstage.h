#pragma once

//  Not part of the Stage API: the QML singleton Stage and the registrations of core types.

#include <stage/actor.h>
#include <stage/group.h>
#include <stage/mailbox.h>
#include <stage/node.h>
#include <stage/policy.h>
#include <stage/supervisiontreemodel.h>
#include <stage/supervisor.h>

#include <QtCore/QFuture>
#include <QtCore/QObject>
#include <QtCore/QStringList>
#include <QtCore/QVariant>
#include <QtQml/QJSValue>
#include <QtQml/qqml.h>

#include <map>

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

    /* The actor names registered with stage::registerActor(), sorted. */
    Q_INVOKABLE QStringList actors() const;
    /* Asks actor \a actor the message of type \a type (a Q_GADGET message of its protocol) built
       from \a fields (an object with exactly its properties); \a timeoutMs: the actor's askTimeout
       if undefined. Returns a Promise settled on this engine's thread: the reply, or an Error named
       after the Stage exception (TimeoutError, DeadLettered, BrokenReply, MailboxClosed,
       InvalidOperation) with its what(). Bad input throws (ReferenceError: unknown actor;
       TypeError: unknown message type, bad fields; RangeError: bad timeout), nothing sent. If the
       engine goes first, the answer is dropped. */
    Q_INVOKABLE QJSValue ask(const QString &actor, const QString &type, const QJSValue &fields = QJSValue(),
                             const QJSValue &timeoutMs = QJSValue());
    /* Tells: "Sent", "Full" or "Closed" (stage::SendStatus); bad input throws as ask(). */
    Q_INVOKABLE QString tell(const QString &actor, const QString &type, const QJSValue &fields = QJSValue());

private:
    void throwError(QJSValue::ErrorType type, const QString &message) const;
    struct ResolvedMessage
    {
        stage::detail::RegisteredActor actor; // keeps the entry alive during the call
        const stage::detail::ActorVariantMessage *message = nullptr;
        QVariantMap fields;
    };
    /* The variant message \a type of \a actor and the fields as a map; false after throwing. */
    bool resolveMessage(const char *function, const QString &actor, const QString &type, const QJSValue &fields,
                        ResolvedMessage *out) const;
    void settle(quint64 id, const QFuture<QVariant> &answer);

    struct PendingAsk
    {
        QJSValue resolve; // resolve(value)
        QJSValue reject;  // reject(name, message): rejects with an Error of that name
    };
    std::map<quint64, PendingAsk> m_pending; // the asks not answered yet (dropped with this singleton)
    quint64 m_nextAsk = 0;
    QJSValue m_deferred; // a JS function making {promise, resolve, reject}
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
