#pragma once

//  Not part of the Stage API: the QML type Supervisor of the Stage module.

#include "qmlnodesupport.h"

#include <stage/supervisor.h>

#include <QtCore/QPointer>
#include <QtQml/QQmlListProperty>
#include <QtQml/QQmlParserStatus>
#include <QtQml/qqml.h>

namespace stage::qml {

/*
    Supervisor in QML: a stage::Supervisor whose children are the nodes declared in it, in start
    order (the default property), started only once the whole declaration is complete.
    Thread: the GUI (QML engine) thread, like every QML object.
*/
class QmlSupervisor : public stage::Supervisor, public QQmlParserStatus
{
    Q_OBJECT
    Q_INTERFACES(QQmlParserStatus)
    QML_NAMED_ELEMENT(Supervisor)
    QML_ATTACHED(stage::qml::SupervisorAttached)
    Q_CLASSINFO("DefaultProperty", "nodes")
    /*
        The default property: the Supervisor and Group children declared inside, in start order (other
        objects are kept but not supervised).
    */
    Q_PROPERTY(QQmlListProperty<QObject> nodes READ nodes)
    /*
        On a root: true starts the tree once the declaration is complete (and again after a shutdown), false
        shuts it down. On a supervised node it is ignored with a warning. Reads true while Starting, Running
        or Restarting.
    */
    Q_PROPERTY(bool running READ isRunning WRITE setRunning NOTIFY runningChanged)
    /*
        stage::Supervisor::maxRestarts() (default 3; -1: unlimited); below -1 is a warning with the file and
        line, and ignored.
    */
    Q_PROPERTY(int maxRestarts READ maxRestarts WRITE setQmlMaxRestarts NOTIFY settingsChanged)
    /* stage::Supervisor::restartPeriod() in ms (default 5000); below 1 is a warning, and ignored. */
    Q_PROPERTY(int restartPeriod READ restartPeriod WRITE setQmlRestartPeriod NOTIFY settingsChanged)
    /* Node::history() as an array of { timestamp, time, state, stateText, reason }, oldest first. */
    Q_PROPERTY(QVariantList history READ historyList NOTIFY runningChanged)
    /* The state's name: "Idle", "Starting", "Running", "Restarting", "Stopping", "Stopped" or "Failed". */
    Q_PROPERTY(QString stateText READ stateText NOTIFY runningChanged)
    /*
        stage::Supervisor::statistics(), a supervisorStatistics value (children, runningChildren,
        childExits, childFailures, restarts, childrenRestarted, escalations).
    */
    Q_PROPERTY(stage::SupervisorStatistics statistics READ statistics NOTIFY statisticsChanged)
    /* Restarts within the last restartPeriod: the restart budget in use. */
    Q_PROPERTY(int recentRestarts READ recentRestarts NOTIFY statisticsChanged)

public:
    explicit QmlSupervisor(QObject *parent = nullptr);
    ~QmlSupervisor() override;

    static SupervisorAttached *qmlAttachedProperties(QObject *object) { return new SupervisorAttached(object); }

    QQmlListProperty<QObject> nodes();
    void setRunning(bool running);
    void setQmlMaxRestarts(int count);
    void setQmlRestartPeriod(int milliseconds);
    QVariantList historyList() const { return support::history(this); }
    QString stateText() const { return support::stateText(state()); }

    /* start(), stop() and restart() are Node's slots (a child goes through its supervisor). */
    /* Stops every child in reverse start order; a root only (a child: stop()). */
    Q_INVOKABLE void shutdown();

    void classBegin() override;
    void componentComplete() override;

Q_SIGNALS:
    /* Parameterless notifications for the QML properties (moc needs them so). */
    void runningChanged();
    void settingsChanged();

private:
    static void appendNode(QQmlListProperty<QObject> *list, QObject *object);
    static qsizetype nodeCount(QQmlListProperty<QObject> *list);
    static QObject *nodeAt(QQmlListProperty<QObject> *list, qsizetype index);
    static void clearNodes(QQmlListProperty<QObject> *list);
    static void replaceNode(QQmlListProperty<QObject> *list, qsizetype index, QObject *object);
    static void removeLastNode(QQmlListProperty<QObject> *list);
    void take(QObject *object);
    void prune();

    QList<QPointer<QObject>> m_nodes;
    bool m_complete = false;
    bool m_wantRunning = false;
};

} // namespace stage::qml
